"""The teacher itself quantized to int8 without distillation (artifact kind teacher_int8): the route an
Olive or onnxruntime user takes, evaluated on the same test split, timed by the benchmark step in the
same runtime and threads, and offered to the device-artifact choice next to the student's files.

ONNX teachers are quantized as they are; TorchScript and .pt2 teachers are exported to ONNX first
(torch.onnx, the same exporter as the student's). Float inputs: quantize_static (QDQ, per-channel, the
job's calibration method and samples), as for the student. Integer inputs (token ids): quantize_dynamic
of the MatMul and Gather weights, because static QDQ of attention activations lost accuracy and speed
(docs/benchmarks.md, "Transformer distillation"). A teacher this cannot quantize (TFLite, an operator
the quantizer or exporter refuses) gets no file and a readable reason in state.candidates; the job goes
on: this is a comparison, not the job's output."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.contracts.errors import Cancelled
from edgedistill.workers.pipeline.base import Step
from edgedistill.workers.pipeline.context import RunContext, RunState
from edgedistill.workers.steps.artifacts import record_artifact, staged_file

KIND = "teacher_int8"
FILENAME = "teacher_int8.onnx"
FLOAT_DTYPES = ("float32", "float16", "float64")


class TeacherNotQuantized(Exception):
    """Why this teacher has no int8 candidate (said in the report, never fails the job)."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def by_position(names: tuple[str, ...] | list[str], arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The data's inputs under the model's names: the data names them as the upload did, an exported
    graph as the teacher's signature does; both list them in the teacher's input order."""
    if all(n in arrays for n in names):
        return {n: arrays[n] for n in names}
    return dict(zip(names, arrays.values(), strict=False))


def teacher_onnx(state: RunState, dst: Path) -> Path:
    """The teacher as an ONNX file: its own for ONNX teachers, an export for torch ones."""
    teacher = state.teacher
    if teacher.format == "onnx":
        if getattr(teacher, "_external", None):
            raise TeacherNotQuantized("the ONNX teacher keeps its weights in external data files")
        return Path(teacher.path)
    module = getattr(teacher, "_module", None)
    if teacher.format not in ("torchscript", "pt2") or module is None:
        raise TeacherNotQuantized(
            f"a {teacher.format} teacher: quantizing it needs its float source model (ONNX or torch); "
            "TFLite files are already converted"
        )
    import onnx

    from edgedistill.workers.steps.derived.convert import ConversionError, torch_to_onnx

    names = teacher.io.input_names
    probe = by_position(names, {k: v[:8] for k, v in state.data.inputs_of("train").items()})
    try:
        onnx.save(torch_to_onnx(teacher, probe), str(dst))
    except ConversionError as exc:
        raise TeacherNotQuantized(str(exc)) from exc
    return dst


def quantize_teacher(ctx: RunContext, state: RunState, src: Path, dst: Path) -> dict[str, Any]:
    """src -> dst in int8; returns the quantization facts for the artifact's metadata."""
    from edgedistill.workers.steps.export_multi import calibration_inputs
    from edgedistill.workers.steps.quantize import (
        dynamic_facts,
        quantize_onnx_dynamic,
        quantize_onnx_int8,
        static_facts,
    )

    opts = ctx.spec.options
    io = getattr(state.teacher, "io", None)
    ints = [t.name for t in (io.inputs if io is not None else ()) if t.dtype not in FLOAT_DTYPES]
    try:
        if ints:
            quantize_onnx_dynamic(src, dst, ctx.work_dir)
            why = f"integer inputs ({', '.join(ints)}): static QDQ of attention activations loses accuracy"
            return {**dynamic_facts(), "why": why}
        import onnx

        names = [i.name for i in onnx.load(str(src), load_external_data=False).graph.input]
        samples = by_position(names, calibration_inputs(state, opts.calibration_samples, opts.seed))
        fixed = getattr(state.teacher, "fixed_batch", None)
        quantize_onnx_int8(src, dst, samples, opts.calibration, ctx.work_dir, batch_limit=fixed or None)
    except Cancelled:
        raise
    except Exception as exc:
        raise TeacherNotQuantized(f"onnxruntime could not quantize the teacher: {_first_line(exc)}") from exc
    return static_facts(opts.calibration, int(next(iter(samples.values())).shape[0]))


def evaluate_teacher_int8(ctx: RunContext, state: RunState, path: Path) -> dict[str, Any]:
    """The quantized teacher's metrics on the test split, as verify judges the student's files."""
    from edgedistill.workers.steps.data import primary_targets
    from edgedistill.workers.steps.distill.multi import needs_multi
    from edgedistill.workers.steps.metrics import evaluate
    from edgedistill.workers.steps.teacher import OnnxTeacher
    from edgedistill.workers.steps.verify_multi import judge_outputs

    data = state.data
    try:
        model = OnnxTeacher(path)
        outs = model.predict_all(by_position(model.io.input_names, data.inputs_of("test")))
    except Exception as exc:
        raise TeacherNotQuantized(f"the int8 teacher does not run in onnxruntime: {_first_line(exc)}") from exc
    if state.signature is not None:  # outputs under the teacher's names, as verify judges them
        outs = dict(zip(state.signature.output_names, outs.values(), strict=False))
    if needs_multi(state.signature):
        return judge_outputs(ctx, state, outs, "onnxruntime")
    teacher = primary_targets(data, state.teacher_outputs["test"])
    got = primary_targets(data, outs)
    m = evaluate(got, task=data.task, teacher=teacher, student=None, labels=data.y_of("test"))
    m["runtime"] = "onnxruntime"
    return m


class QuantizeTeacher(Step):
    """Reads state.teacher, state.data, state.teacher_outputs; writes state.artifacts["teacher_int8"],
    state.metrics["teacher_int8"] and state.candidates["teacher_int8"] (why, when there is no file)."""

    name = "quantize_teacher"
    stage = "verify"
    order = 105  # after verify: a budget restart of the student does not redo this

    def run(self, ctx: RunContext, state: RunState) -> None:
        if not ctx.spec.options.teacher_int8 or state.teacher is None:
            return
        if len(state.data.splits["test"]) == 0:
            state.candidates[KIND] = {"reason": "the test split is empty"}
            return
        ctx.emit("progress", {"message": "quantizing the teacher itself (no distillation) for comparison"})
        started = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory(dir=ctx.work_dir, prefix=".teacher-") as tmp:
                src = teacher_onnx(state, Path(tmp) / "teacher.onnx")
                ctx.check_cancel()
                with staged_file(ctx.work_dir, FILENAME) as out:
                    facts = quantize_teacher(ctx, state, src, out)
                    ctx.check_cancel()
                    metrics = evaluate_teacher_int8(ctx, state, out)
        except Cancelled:
            raise
        except Exception as exc:  # a comparison only: whatever goes wrong is said, the job goes on
            reason = str(exc) if isinstance(exc, TeacherNotQuantized) else f"{type(exc).__name__}: {_first_line(exc)}"
            state.candidates[KIND] = {"reason": reason}
            ctx.emit("progress", {"message": f"no int8 teacher to compare with: {reason}"})
            return
        seconds = time.perf_counter() - started
        from edgedistill.workers.steps.model_info import describe_onnx

        record_artifact(
            ctx,
            state,
            kind=KIND,
            path=ctx.work_dir / FILENAME,
            metadata={
                **describe_onnx(ctx.work_dir / FILENAME),
                "precision": "int8",
                "of": "teacher",
                "quantization": facts,
                "seconds": round(seconds, 2),
            },
        )
        state.metrics[KIND] = metrics
        state.candidates[KIND] = {"seconds": round(seconds, 2), "quantization": facts}
