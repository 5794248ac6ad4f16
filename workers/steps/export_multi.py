"""Exports for students of multi-input / multi-output / token teachers (students_multi.MultiStudent):
what ExportOnnx, QuantizeOnnx and ExportTflite do for single-input students, on
heads.export_module(student, signature) with the teacher's input and output names.

Each artifact's metadata says what differs from the teacher (`changes_vs_teacher`): NHWC image inputs
on TFLite, int64 ids as int32 on TFLite (litert-torch narrows them), int8 I/O on full-int8 models."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgedistill.workers.pipeline.context import RunContext, RunState
from edgedistill.workers.pipeline.errors import PipelineError
from edgedistill.workers.steps.artifacts import record_artifact, staged_file

CHECK_SAMPLES = 64


def is_multi(state: RunState) -> bool:
    """Whether the artifacts must be made from heads.export_module: a MultiStudent, or any teacher the
    engine trains per output (e.g. skl2onnx label + probabilities, one sigmoid unit), whose exported
    outputs are the teacher's, not the raw student's."""
    from edgedistill.workers.steps.build_student import needs_multi_student
    from edgedistill.workers.steps.distill.multi import needs_multi

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


def _check_inputs(state: RunState, n: int = CHECK_SAMPLES) -> dict[str, np.ndarray]:
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


def export_onnx_multi(ctx: RunContext, state: RunState, filename: str, opset: int) -> None:
    import onnx

    from edgedistill.workers.steps.export_onnx import ATOL, RTOL, export_signature_onnx
    from edgedistill.workers.steps.model_info import describe_onnx
    from edgedistill.workers.steps.runtimes import OnnxModel
    from edgedistill.workers.steps.students_multi import example_inputs

    sig = state.signature
    module = deploy_module(state)
    x = _check_inputs(state)
    ref = torch_predict_all(module, sig, x)
    with staged_file(ctx.work_dir, filename) as tmp:
        try:
            examples = tuple(t.long() if not t.dtype.is_floating_point else t for t in example_inputs(sig))
            export_signature_onnx(module, examples, tmp, sig.input_names, sig.output_names)
            onnx.checker.check_model(str(tmp), full_check=True)
        except Exception as exc:
            raise PipelineError(f"ONNX export of the student failed: {exc}", stage="quantize") from exc
        got = OnnxModel(tmp).predict_all(x)
        diffs = max_diffs(got, ref)
        for name, d in diffs.items():
            tol = ATOL + RTOL * float(np.max(np.abs(ref[name]))) if ref[name].size else ATOL
            if d > tol and sig.output(name).kind != "class_index":
                raise PipelineError(f"the exported ONNX output {name!r} disagrees with torch ({d:.3g} > {tol:.3g})")
        info = describe_onnx(tmp)
    # token ids and masks are exported as int64 (what torch's embedding takes); say so if the teacher differs
    changes = [
        f"input {spec.name!r} takes int64 (the teacher's: {spec.dtype})"
        for spec in sig.inputs
        if not spec.dtype.startswith("float") and spec.dtype != "int64"
    ]
    record_artifact(
        ctx,
        state,
        kind="onnx_fp32",
        path=ctx.work_dir / filename,
        metadata={
            **info,
            "precision": "fp32",
            "exporter": f"torch.onnx.export(dynamo=False, opset_version={opset})",
            "teacher_io": {"inputs": list(sig.input_names), "outputs": list(sig.output_names)},
            "changes_vs_teacher": changes,
            "check": {"samples": int(next(iter(x.values())).shape[0]), "max_abs_diff_vs_torch": diffs},
        },
    )


def calibration_inputs(state: RunState, count: int, seed: int) -> dict[str, np.ndarray]:
    x = state.data.inputs_of("train")
    n = int(next(iter(x.values())).shape[0])
    if n == 0:
        raise PipelineError("no training samples to calibrate the int8 model with")
    idx = np.arange(n) if count >= n else np.sort(np.random.default_rng(seed).choice(n, size=count, replace=False))
    return {k: np.ascontiguousarray(v[idx]) for k, v in x.items()}


def export_tflite_multi(ctx: RunContext, state: RunState, kind: str, filename: str, float_io: bool) -> None:
    from edgedistill.workers.steps.export_tflite import convert_signature_int8, strip_debug_names
    from edgedistill.workers.steps.model_info import describe_tflite
    from edgedistill.workers.steps.runtimes import TfliteModel

    opts = ctx.spec.options
    from edgedistill.workers.steps.runtimes import apply_standardization
    from edgedistill.workers.steps.students import standardized_export
    from edgedistill.workers.steps.students_multi import TupleStudent

    sig = state.signature
    module = deploy_module(state, float_io)
    samples = calibration_inputs(state, opts.calibration_samples, opts.seed)
    x = _check_inputs(state)
    ref = torch_predict_all(deploy_module(state), sig, x)  # the float-I/O module: raw features in
    inner = state.student.inner if isinstance(state.student, TupleStudent) else state.student
    standardization = None if float_io else standardized_export(inner, float_io=False)[1]
    if standardization is not None:  # full int8 tabular: the int8 input holds standardised features
        name = sig.input_names[0]
        samples = {name: apply_standardization(samples[name], standardization)}
    with staged_file(ctx.work_dir, filename) as tmp:
        try:
            meta = convert_signature_int8(module, sig, samples, tmp, float_io=float_io)
        except Exception as exc:
            raise PipelineError(f"TFLite conversion ({kind}) of the student failed: {exc}", stage="export") from exc
        saved = strip_debug_names(tmp)
        info = describe_tflite(tmp)
        model = TfliteModel(tmp, standardization=standardization)
        got = model.predict_all(
            x,
            input_names=tuple(meta["teacher_io"]["inputs"]),
            output_names=tuple(meta["teacher_io"]["outputs"]),
            layouts=meta["input_layouts"],
        )
        diffs = max_diffs(got, ref)
        if not all(np.isfinite(v).all() for v in got.values()):
            raise PipelineError(f"the {kind} model produced invalid outputs", stage="export")
    changes = [f"input {n!r} is NHWC (the teacher's is NCHW)" for n in meta["input_layouts"]]
    if standardization is not None:
        meta["input_standardization"] = standardization
        changes.append(
            f"input {sig.input_names[0]!r} takes (x - input_standardization.mean) / input_standardization.std "
            "per feature, then int8"
        )
    for t, spec in zip(info["signature"]["inputs"], sig.inputs, strict=True):
        if t["dtype"] != spec.dtype and not (float_io and spec.dtype.startswith("float")):
            changes.append(f"input {spec.name!r} is {t['dtype']} (the teacher's: {spec.dtype})")
    for t, out in zip(info["signature"]["outputs"], sig.outputs, strict=True):
        if t["dtype"] != out.dtype:
            changes.append(f"output {out.name!r} is {t['dtype']} (the teacher's: {out.dtype})")
    record_artifact(
        ctx,
        state,
        kind=kind,
        path=ctx.work_dir / filename,
        metadata={
            **info,
            **meta,
            "precision": "int8",
            "io": "float32" if float_io else "int8",
            "changes_vs_teacher": changes,
            "stripped_debug_name_bytes": saved,
            "quantization": {
                "tool": "litert-torch PT2E (PT2EQuantizer, symmetric per-channel)",
                "calibration_samples": int(next(iter(samples.values())).shape[0]),
            },
            "check": {"samples": int(next(iter(x.values())).shape[0]), "max_abs_diff_vs_torch": diffs},
        },
    )
