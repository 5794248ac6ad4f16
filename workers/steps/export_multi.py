"""Helpers for the exports of students of multi-input / multi-output / token teachers
(students_multi.MultiStudent): which runs need them (is_multi), the module to export
(heads.export_module(student, signature) with the teacher's input and output names), check and
calibration inputs by name, and the check against torch. The exporters themselves live with their
target (export_onnx.export_onnx_multi, export_tflite.export_tflite_multi, quantize.QuantizeOnnx),
which import this module; it imports none of them.

Each artifact's metadata says what differs from the teacher (`changes_vs_teacher`): NHWC image inputs
on TFLite, int64 ids as int32 on TFLite (litert-torch narrows them), int8 I/O on full-int8 models."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgedistill.contracts.errors import PipelineError
from edgedistill.workers.pipeline.context import RunState

CHECK_SAMPLES = 64


def is_multi(state: RunState) -> bool:
    """Whether the artifacts must be made from heads.export_module: a MultiStudent, or any teacher the
    engine trains per output (e.g. skl2onnx label + probabilities, one sigmoid unit), whose exported
    outputs are the teacher's, not the raw student's."""
    from edgedistill.workers.steps.distill.multi import needs_multi
    from edgedistill.workers.steps.students_multi import needs_multi_student

    sig = state.signature
    return sig is not None and (needs_multi_student(sig) or needs_multi(sig))


def deploy_module(state: RunState, float_io: bool = True) -> Any:
    """heads.export_module of the student; a tabular MLP (bare or in a TupleStudent) is exported with
    its input standardisation as float ops in front of the int8 layers (students.FloatStandardized:
    the folded form breaks XNNPACK and int8 accuracy, see export_tflite)."""
    from edgedistill.workers.steps.heads import export_module
    from edgedistill.workers.steps.students import standardized_export
    from edgedistill.workers.steps.students_multi import TupleStudent

    student = state.student
    inner = student.inner if isinstance(student, TupleStudent) else student
    floated, standardization, changed = standardized_export(inner, float_io=float_io)
    if changed or standardization is not None:  # float I/O: float Sub/Div; int8 I/O: standardised input
        student = TupleStudent(floated, channels_last=getattr(student, "channels_last", False))
        return export_module(student, state.signature).cpu().eval()
    if state.export_module is None:
        state.export_module = export_module(student, state.signature)
    return state.export_module.cpu().eval()


def channel_last_inputs(signature: Any) -> list[int]:
    """Indices of the float NCHW image inputs the TFLite export makes NHWC (to_channel_last_io: no
    TRANSPOSE); a teacher's own NHWC input (TFLite teachers) stays as the teacher takes it."""
    return [
        i
        for i, s in enumerate(signature.inputs)
        if len(s.shape) == 4 and s.dtype.startswith("float") and s.layout != "NHWC"
    ]


def check_inputs(state: RunState, n: int = CHECK_SAMPLES) -> dict[str, np.ndarray]:
    data = state.data
    x = data.inputs_of("test")
    if next(iter(x.values())).shape[0] == 0:
        x = data.inputs_of("train")
    return {k: v[:n] for k, v in x.items()}


def torch_predict_all(module: Any, signature: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import torch

    args = []
    for spec in signature.inputs:
        v = inputs[spec.name]
        args.append(torch.from_numpy(np.ascontiguousarray(v.astype(np.int64) if v.dtype.kind in "iub" else v)))
    with torch.inference_mode():
        outs = module.cpu().eval()(*args)
    return {
        name: o.numpy() if not o.dtype.is_floating_point else o.float().numpy()
        for name, o in zip(signature.output_names, outs, strict=True)
    }


def max_diffs(got: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, r in ref.items():
        g = got.get(name)
        if g is None or g.shape != r.shape:
            raise PipelineError(f"output {name!r}: shape {None if g is None else g.shape}, expected {r.shape}")
        out[name] = float(np.max(np.abs(g.astype(np.float64) - r.astype(np.float64)))) if r.size else 0.0
    return out


def calibration_inputs(state: RunState, count: int, seed: int) -> dict[str, np.ndarray]:
    x = state.data.inputs_of("train")
    n = int(next(iter(x.values())).shape[0])
    if n == 0:
        raise PipelineError("no training samples to calibrate the int8 model with")
    idx = np.arange(n) if count >= n else np.sort(np.random.default_rng(seed).choice(n, size=count, replace=False))
    return {k: np.ascontiguousarray(v[idx]) for k, v in x.items()}
