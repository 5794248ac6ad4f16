"""Verify for teachers with several inputs/outputs or outputs of any kind: every variant (teacher,
float student, every model artifact in its runtime wrapper, TFLM) judged per output with the metric of
its kind (metrics.output_metrics) and one headline per variant, then metrics.quality_problem on the
float student and on the artifact the device runs. Artifacts run by name through the wrappers'
predict_all (edgedistill.runtimes), the same code the device agent runs them with."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgedistill.contracts import artifact_kinds
from edgedistill.workers.pipeline.context import RunContext, RunState

TFLM = artifact_kinds.TFLM_VARIANT
# TFLite Micro runs one sample at a time: both verify paths judge at most this many test samples.
# Defined here, the lower module, because verify imports this one (never the reverse).
TFLM_MAX_SAMPLES = 500


def _by_teacher_names(state: RunState, got: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Artifacts keep the teacher's output names; files that renamed them are matched by position."""
    names = state.signature.output_names
    if all(n in got for n in names):
        return {n: got[n] for n in names}
    return dict(zip(names, got.values(), strict=False))


def predict_variant(state: RunState, kind: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every output of the artifact of `kind` by the teacher's name, run by its runtime wrapper."""
    from edgedistill.runtimes import open_model

    art = state.artifacts[kind]
    metadata = art.metadata if isinstance(art.metadata, dict) else None
    return _by_teacher_names(state, open_model(art.path, kind, metadata=metadata).predict_all(inputs))


def judge_outputs(
    ctx: RunContext, state: RunState, outs: dict[str, np.ndarray], runtime: str, n: int | None = None
) -> dict[str, Any]:
    """One variant's outputs by the teacher's names (on the first n test samples) judged per output
    with the metric of its kind, plus the headline across outputs."""
    from edgedistill.workers.steps.distill.multi import _weight, thresholds
    from edgedistill.workers.steps.metrics import evaluate_outputs, quality_problem, variant_headline

    sig, data, opts = state.signature, state.data, ctx.spec.options
    teacher = state.teacher_outputs["test"]
    kinds = {o.name: str(o.kind) for o in sig.outputs}
    y = data.y_of("test")
    weights = {name: _weight(opts, name) for name in sig.output_names}
    t = teacher if n is None else {k: v[:n] for k, v in teacher.items()}
    per = evaluate_outputs(
        kinds, outs, t, labels=None if y is None else (y if n is None else y[:n]), primary=data.primary_output,
        thresholds=thresholds(sig, opts), scores={o.name: o.scores for o in sig.outputs if o.scores},
    )  # fmt: skip
    return {"runtime": runtime, "samples": int(next(iter(outs.values())).shape[0]), "outputs": per,
            "headline": variant_headline(per, weights), "quality_problem": quality_problem(per)}  # fmt: skip


def verify_multi(ctx: RunContext, state: RunState) -> dict[str, Any]:
    """state.metrics for a multi-I/O run: {variant: {runtime, headline, outputs: {name: metrics}}}."""
    import torch

    sig, data = state.signature, state.data
    inputs = data.inputs_of("test")
    teacher = state.teacher_outputs["test"]

    def judge(outs: dict[str, np.ndarray], runtime: str, n: int | None = None) -> dict[str, Any]:
        return judge_outputs(ctx, state, outs, runtime, n)

    metrics: dict[str, Any] = {"teacher": judge(dict(teacher), "teacher")}
    module = state.export_module
    with torch.inference_mode():
        args = [torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in sig.input_names]
        outs = module.cpu().eval()(*args)
    metrics["student_fp32"] = judge({n: o.numpy() for n, o in zip(sig.output_names, outs, strict=True)}, "torch")
    for kind in artifact_kinds.student_model_kinds():
        if kind not in state.artifacts:
            continue
        ctx.check_cancel()
        ctx.emit("progress", {"message": f"evaluating {kind} on {len(data.splits['test'])} test samples per output"})
        runtime = str(artifact_kinds.get(kind).runtime)
        try:
            metrics[kind] = judge(predict_variant(state, kind, inputs), runtime)
        except Exception as exc:  # one artifact failing to run is reported, the others still judged
            metrics[kind] = {"runtime": runtime, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            state.warnings.append(f"{kind} could not be evaluated per output: {metrics[kind]['error']}")
    if artifact_kinds.tflm_kind() in state.artifacts and ctx.spec.profile.device_class == "mcu":
        metrics[TFLM] = _judge_tflm(ctx, state, inputs, judge)
    base = metrics["student_fp32"]["headline"]
    for kind in (*artifact_kinds.int8_kinds(), TFLM):
        if kind in metrics and "headline" in metrics[kind]:
            metrics[kind]["drop_vs_student_fp32_pp"] = 100.0 * (base - metrics[kind]["headline"])
    return metrics


def int8_drops(metrics: dict[str, Any], kinds: tuple[str, ...], budget_pp: float) -> list[str]:
    """A sentence per int8 variant that loses more than budget_pp against the float student: on the
    headline across outputs, or on an anchor-score output's image_agreement (a detector's per-image
    decision, which the per-anchor headline hides among hundreds of empty anchors)."""
    base = metrics.get("student_fp32") or {}
    over: list[str] = []
    for kind in kinds:
        m = metrics.get(kind) or {}
        drop = m.get("drop_vs_student_fp32_pp")
        if drop is not None and drop > budget_pp:
            over.append(f"{kind}: headline {m['headline']:.4f} is {drop:.2f} pp below the float student's")
        for name, out in (m.get("outputs") or {}).items():
            ref = (base.get("outputs") or {}).get(name, {}).get("image_agreement")
            got = out.get("image_agreement")
            if ref is not None and got is not None and 100.0 * (ref - got) > budget_pp:
                over.append(
                    f"{kind}: output {name!r} fires as the teacher's on {100 * got:.1f} % of the images, "
                    f"{100 * (ref - got):.2f} pp below the float student's"
                )
    return over


def _judge_tflm(ctx: RunContext, state: RunState, inputs: dict[str, np.ndarray], judge: Any) -> dict[str, Any]:
    """The full-int8 file in the real TFLite Micro interpreter, sample by sample as firmware runs it, on
    the first TFLM_MAX_SAMPLES test samples; an op or type TFLM cannot run is reported, not raised
    (verify's op check names it for MCU profiles)."""
    from edgedistill.runtimes.tflm import run_tflm_all

    total = int(next(iter(inputs.values())).shape[0])
    n = min(total, TFLM_MAX_SAMPLES)
    ctx.check_cancel()
    ctx.emit("progress", {"message": f"running the TFLite Micro interpreter on {n} test samples per output"})
    art = state.artifacts[artifact_kinds.tflm_kind()]
    meta = art.metadata
    io = meta.get("teacher_io") or {}
    try:
        outs, arena = run_tflm_all(
            art.path, {k: v[:n] for k, v in inputs.items()},
            input_names=tuple(io["inputs"]) if io.get("inputs") else None,
            output_names=tuple(io["outputs"]) if io.get("outputs") else None,
            layouts=meta.get("input_layouts"),
        )  # fmt: skip
    except Exception as exc:
        msg = f"{type(exc).__name__}: {str(exc)[:300]}"
        state.warnings.append(f"tflm could not be evaluated per output: {msg}")
        return {"runtime": "tflite-micro", "error": msg}
    got = judge(outs, "tflite-micro", n)
    got.update({"subset": n < total, "arena_bytes": arena})
    if n < total:
        got["note"] = f"first {n} of {total} test samples (TFLM runs one at a time)"
    return got
