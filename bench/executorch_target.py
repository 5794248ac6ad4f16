"""The ExecuTorch target next to the ONNX and TFLite ones on one distilled digits student: file sizes,
top-1 agreement with the float student and accuracy on a held-out test set (never seen by teacher,
student or calibration), and batch-1 latency at 1 thread of each int8 file in its own runtime
(ExecuTorch + XNNPACK, onnxruntime, LiteRT), all timed in this one process with the same timer.

    PYTHONPATH=. .venv/bin/python -m bench.executorch_target [--epochs N] [--teacher-epochs N] [--runs N]

Reads nothing downloaded: scikit-learn's bundled digits, a teacher trained here.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from bench.digits import accuracy, digits_split, export_teacher, train_teacher
from edgedistill.contracts.profiles import builtin_profiles
from edgedistill.contracts.spec import JobOptions, PipelineSpec
from edgedistill.runtimes import open_model
from edgedistill.runtimes.timing import latency_stats, time_calls
from edgedistill.workers.pipeline.context import RunContext, RunState
from edgedistill.workers.pipeline.registry import step_class
from edgedistill.workers.steps.export_executorch import KINDS, ExportExecutorch

STEPS = ("load_teacher", "load_data", "build_student", "distill", "export_onnx", "quantize_onnx", "export_tflite")


def _student_state(root: Path, epochs: int, teacher_epochs: int, seed: int) -> tuple[RunContext, RunState, Any]:
    split = digits_split(seed)
    teacher = train_teacher(split.x_rest, split.y_rest, epochs=teacher_epochs, seed=seed)
    paths = export_teacher(teacher, root / "teacher")
    data = root / "transfer.npz"
    np.savez(data, x=split.x_rest, y=split.y_rest)
    base = builtin_profiles()["cpu-x86"]
    # The profile schema learns the ExecuTorch targets from the artifact-kind registry; a copy until then.
    profile = base.model_copy(update={"targets": [*base.targets, *KINDS]})
    spec = PipelineSpec(
        teacher_path=paths["onnx"],
        data_path=data,
        profile=profile,
        options=JobOptions.model_validate({"seed": seed, "epochs": epochs, "device": "cpu"}),
        out_dir=root / "out",
    )
    ctx = RunContext(spec=spec, work_dir=root / "work")
    ctx.work_dir.mkdir()
    state = RunState()
    for name in STEPS:  # the runner's steps up to the exports (no retries: the digits student fits)
        step_class(name)().run(ctx, state)
    ExportExecutorch().run(ctx, state)
    return ctx, state, split


def _latency(fn: Any, runs: int) -> float:
    return latency_stats(time_calls(fn, warmup=max(10, runs // 10), runs=runs))["p50_ms"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--teacher-epochs", type=int, default=8)
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="et-target-") as tmp:
        _, state, split = _student_state(Path(tmp), args.epochs, args.teacher_epochs, args.seed)
        arts = state.artifacts
        x, y = split.x_test, split.y_test
        with torch.inference_mode():
            student = state.student.cpu().eval()(torch.from_numpy(x)).numpy()
        # one model per file, each at 1 thread; the ExecuTorch thread pool is process-wide and set to 1
        # every artifact through the wrapper the registry names for its kind, as verify and the agent run it
        kinds = ("executorch_fp32", "executorch_int8", "onnx_fp32", "onnx_int8", "tflite_int8")
        models: dict[str, Any] = {k: open_model(arts[k].path, k, threads=1, metadata=arts[k].metadata) for k in kinds}
        x1 = np.ascontiguousarray(x[:1])
        tfl = models.pop("tflite_int8")
        tfl_x1 = tfl.encode(x1)
        calls = {k: m.timed_call(x1) for k, m in models.items()}
        calls["tflite_int8"] = lambda: tfl.invoke_encoded(tfl_x1)
        outputs = {k: m.predict(x) for k, m in models.items()}
        outputs["tflite_int8"] = tfl.predict(x)
        runtime = {"executorch": "executorch + XNNPACK", "onnx": "onnxruntime", "tflite": "ai-edge-litert"}

        arch = state.student_arch
        console = Console(width=150)
        table = Table(
            title=f"digits student ({arch.get('family')}, {arch.get('params'):,} params), held-out test n={len(y)}, "
            f"float student accuracy {accuracy(student, y):.4f}; batch 1, 1 thread, p50 of {args.runs} runs"
        )
        for col in ("artifact", "runtime", "bytes", "agreement vs student", "accuracy", "p50 ms"):
            table.add_column(col, justify="left" if col in ("artifact", "runtime") else "right")
        for kind in ("executorch_fp32", "executorch_int8", "onnx_fp32", "onnx_int8", "tflite_int8"):
            out = outputs[kind]
            table.add_row(
                kind,
                runtime[kind.split("_")[0]],
                f"{arts[kind].size_bytes:,}",
                f"{float(np.mean(out.argmax(1) == student.argmax(1))):.4f}",
                f"{accuracy(out, y):.4f}",
                f"{_latency(calls[kind], args.runs):.4f}",
            )
        console.print(table)
        d = arts["executorch_int8"].metadata["delegation"]
        console.print(
            f"executorch_int8 delegation: {d['delegated_subgraphs']} XNNPACK subgraph(s), {d['delegated_nodes']} "
            f"nodes delegated, not delegated: {d['non_delegated_ops']}"
        )


if __name__ == "__main__":
    main()
