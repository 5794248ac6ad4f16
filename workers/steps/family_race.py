"""options.student.family best: the designed student and the teacher-derived one trained in the same
job, the one that best meets the profile's objective kept, the other measured as a candidate.

1. build_student (plan_rival): the designed student is built as with family auto (sizing search
   included); the derived student (derived/build.py) is built next to it as the rival, or the reason
   there is none is kept for the candidate table.
2. distill (race): the designed student is trained by the job's procedure first, then the rival the
   way a derived job trains it (KD plus hints at the exactly corresponding layers). Both are judged on
   the validation split with the run's headline metric, as the sizing search judges sizes: of those
   keeping options.quality_target of the teacher's figure, the cheaper by the profile's objective
   (estimated int8 bytes on MCUs, MACs elsewhere); when neither keeps it, the better one. The winner
   goes on through the pipeline; the other is state.runner_up.
3. quantize_runner_up (RunnerUpInt8): the runner-up exported and quantized as the student's ONNX int8
   file is (no artifact: it is not the job's output), judged on the test split and timed at batch 1 in
   onnxruntime at the profile's threads, so its candidate row reads like the others.

An over-budget restart shrinks the student that won and runs no second race (said in the report)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgedistill.contracts.errors import Cancelled
from edgedistill.workers.pipeline.base import Step
from edgedistill.workers.pipeline.context import RunContext, RunState
from edgedistill.workers.steps.candidates import RUNNER_UP as KEY  # state.candidates: figures or {"reason"}

if TYPE_CHECKING:
    from torch import nn

    from edgedistill.workers.steps.distill.fitting import Fitted
    from edgedistill.workers.steps.distill.methods import Plan
    from edgedistill.workers.steps.distill.trainer import TrainConfig


FAMILY = "best"


def races(options: Any) -> bool:
    return bool(options.student.family == FAMILY)


def no_race(state: RunState, reason: str) -> None:
    state.runner_up = None
    state.candidates[KEY] = {"reason": reason}


def plan_rival(ctx: RunContext, state: RunState) -> None:
    """build_student's part: the derived rival in state.runner_up, or why there is none."""
    from edgedistill.workers.steps.derived.build import build_derived_student
    from edgedistill.workers.steps.derived.convert import ConversionError

    state.candidates.pop(KEY, None)
    data = state.data
    if getattr(data, "synthetic", False) or ctx.spec.options.method == "data_free":
        no_race(state, "data-free: no validation split to judge two students on")
        return
    try:
        module, arch = build_derived_student(
            state.teacher, state.signature, ctx.spec.profile, data.inputs_of("train"),
            reduction=ctx.spec.options.student.reduction,
        )  # fmt: skip
    except ConversionError as exc:
        no_race(state, f"no derived student: {exc}")
        ctx.emit("progress", {"message": f"family best: {state.candidates[KEY]['reason']}; the designed student only"})
        return
    arch["sizing"] = {"mode": "fixed", "reason": "derived student: the pruning share meets the target cost"}
    state.runner_up = {"module": module, "arch": arch, "role": "rival"}
    ctx.emit("progress", {"message": f"family best: derived rival {arch['params']:,} params, {arch['macs']:,} MACs"})


def race(
    ctx: RunContext, state: RunState, plan: Plan, config: TrainConfig, student: nn.Module, fitted: Fitted,
    progress: float,
) -> tuple[nn.Module, Fitted]:  # fmt: skip
    """The distill step's part (module docstring, 2): trains the rival, keeps the winner in
    state.student / state.student_arch (with the race's trail) and the other in state.runner_up.
    plan.terms becomes the winner's terms."""
    from edgedistill.workers.steps.candidates import student_label
    from edgedistill.workers.steps.derived.build import derived_training
    from edgedistill.workers.steps.distill.fitting import epoch_reporter, fit
    from edgedistill.workers.steps.sizing import objective, val_judge

    rival = state.runner_up
    assert rival is not None
    ctx.check_cancel()
    ctx.emit("progress", {"message": "family best: training the derived student as well"})
    rival_module: nn.Module = rival["module"]
    terms, features = derived_training(ctx, state, plan.terms, student=rival_module)
    rival_fit = fit(ctx, state, rival_module, terms, config, on_epoch=epoch_reporter(ctx, progress, progress),
                    features=features)  # fmt: skip
    judge = val_judge(ctx, state)
    opts = ctx.spec.options
    goal = opts.quality_target * judge.teacher
    key, adjective, words = objective(ctx.spec.profile)
    entries = [
        ("designed", student, fitted, dict(state.student_arch), plan.terms),
        ("derived", rival_module, rival_fit, rival["arch"], terms),
    ]
    rows: list[dict[str, Any]] = []
    for family, module, fit_, arch, _ in entries:
        q = judge.score(module, fit_)
        rows.append(
            {
                "family": family,
                "label": student_label(arch),
                "val_metric": q,
                "kept": q / judge.teacher if judge.teacher > 0 else None,
                "met": q >= goal,
                "cost": arch.get(key),
                "params": arch.get("params"),
                "macs": arch.get("macs"),
                "est_int8_bytes": arch.get("est_int8_bytes"),
                "epochs_run": len(fit_.result.curve),
                "seconds": round(fit_.result.seconds, 3),
            }
        )
    met = [r for r in rows if r["met"]]
    won = min(met, key=lambda r: float(r["cost"] or 0)) if met else max(rows, key=lambda r: r["val_metric"])
    lost = next(r for r in rows if r is not won)
    target_txt = f"{100 * opts.quality_target:g} % of the teacher's validation {judge.metric}"
    if len(met) == 2:
        because = f"both kept {target_txt}; the {won['family']} student is the {adjective} ({words})"
    elif met:
        because = f"only the {won['family']} student kept {target_txt}"
    else:
        because = f"neither kept {target_txt}; the {won['family']} student came closer"
    for r in rows:
        r["chosen"] = r is won
    index = 0 if won["family"] == "designed" else 1
    _, w_module, w_fit, w_arch, w_terms = entries[index]
    _, l_module, _, l_arch, _ = entries[1 - index]
    state.student = w_module
    state.student_arch = dict(w_arch)
    if won["family"] == "derived":
        state.sizing = None
    state.student_arch["family_race"] = {
        "objective": words,
        "objective_key": key,
        "metric": judge.metric,
        "teacher": judge.teacher,
        "target": opts.quality_target,
        "split": "val",
        "rows": rows,
        "chosen": won["family"],
        "chosen_because": because,
    }
    l_module.eval()
    state.runner_up = {"module": l_module, "arch": l_arch, "role": "runner_up", "race": lost}
    plan.terms = w_terms
    ctx.emit("progress", {"message": f"family best: kept the {won['family']} student ({because})"})
    return w_module, w_fit


# --------------------------------------------------------------------------------------------------
# the runner-up as a measured candidate
# --------------------------------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def measure_runner_up(ctx: RunContext, state: RunState, module: nn.Module, tmp: Path) -> dict[str, Any]:
    """Export (fp32 ONNX, as ExportOnnx), quantize (as QuantizeOnnx), judge on the test split and time
    at batch 1: {"bytes", "metrics", "p50_ms", "threads", "runtime", "quantization"}."""
    import onnx

    from edgedistill.runtimes.onnx import OnnxModel
    from edgedistill.runtimes.timing import latency_stats, time_calls
    from edgedistill.workers.steps.data import primary_targets
    from edgedistill.workers.steps.export_onnx import export_student_onnx, io_names
    from edgedistill.workers.steps.metrics import evaluate
    from edgedistill.workers.steps.quantize import calibration_samples, quantize_onnx_int8, static_facts
    from edgedistill.workers.steps.students import standardized_export

    opts, data = ctx.spec.options, state.data
    fold = getattr(module, "fold_input_standardization", None)
    if callable(fold):
        fold()
    exported, _, _ = standardized_export(module.cpu().eval(), float_io=True)
    x_test = np.ascontiguousarray(data.x_of("test"), dtype=np.float32)
    fp32, int8 = tmp / "runner_up.onnx", tmp / "runner_up_int8.onnx"
    export_student_onnx(exported, x_test[:1], fp32, *io_names(state))
    samples = calibration_samples(data.x_of("train"), opts.calibration_samples, opts.seed)
    quantize_onnx_int8(fp32, int8, samples, opts.calibration, ctx.work_dir)
    onnx.checker.check_model(str(int8))
    threads = ctx.spec.profile.threads
    runner = OnnxModel(int8, threads)
    got = np.concatenate([runner.run_batch(x_test[i : i + 256]) for i in range(0, x_test.shape[0], 256)])
    teacher = primary_targets(data, state.teacher_outputs["test"])
    metrics = evaluate(got, task=data.task, teacher=teacher, student=None, labels=data.y_of("test"))
    x1 = x_test[:1]
    stats = latency_stats(time_calls(lambda: runner.run_batch(x1), warmup=opts.benchmark_warmup,
                                     runs=opts.benchmark_runs))  # fmt: skip
    return {
        "bytes": int(int8.stat().st_size),
        "metrics": metrics,
        "p50_ms": float(stats["p50_ms"]),
        "threads": threads,
        "runtime": f"{runner.runtime_name} (int8 ONNX, measured for comparison)",
        "quantization": static_facts(opts.calibration, int(samples.shape[0])),
    }


class RunnerUpInt8(Step):
    """Reads state.runner_up, state.data, state.teacher_outputs; writes state.candidates["runner_up"]
    (the runner-up's family, arch, validation figures from the race and its int8 test figures, or why
    there are none). A comparison only: whatever goes wrong is said, the job goes on."""

    name = "quantize_runner_up"
    stage = "verify"
    order = 106  # after verify, next to quantize_teacher

    def run(self, ctx: RunContext, state: RunState) -> None:
        from edgedistill.workers.steps.export_multi import is_multi

        up = state.runner_up
        if up is None or up.get("role") != "runner_up":
            return
        facts: dict[str, Any] = {"family": up["race"]["family"], "arch": _arch_facts(up["arch"]), "race": up["race"]}
        if len(state.data.splits["test"]) == 0:
            state.candidates[KEY] = facts | {"reason": "the test split is empty: validation figures only"}
            return
        if is_multi(state):
            state.candidates[KEY] = facts | {
                "reason": "int8 of a runner-up with several inputs or outputs is not measured: validation figures only"
            }
            return
        ctx.emit("progress", {"message": f"quantizing the runner-up ({facts['family']} student) for comparison"})
        started = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory(dir=ctx.work_dir, prefix=".runner-up-") as tmp:
                measured = measure_runner_up(ctx, state, up["module"], Path(tmp))
        except Cancelled:
            raise
        except Exception as exc:
            state.candidates[KEY] = facts | {"reason": f"{type(exc).__name__}: {_first_line(exc)}"}
            ctx.emit("progress", {"message": f"runner-up not measured: {state.candidates[KEY]['reason']}"})
            return
        state.candidates[KEY] = facts | measured | {"seconds": round(time.perf_counter() - started, 2)}
        state.runner_up = None  # the module is not needed any more (and is not JSON)


def _arch_facts(arch: dict[str, Any]) -> dict[str, Any]:
    keep = ("family", "width", "depth", "params", "macs", "est_int8_bytes", "est_arena_bytes", "chosen_because")
    out = {k: arch.get(k) for k in keep if k in arch}
    if "derived" in arch:
        out["pruning_ratio"] = (arch.get("derived") or {}).get("pruning_ratio")
    return out
