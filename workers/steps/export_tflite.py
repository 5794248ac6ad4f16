"""Convert the float student to int8 TFLite with litert-torch (PyTorch -> TFLite, no TensorFlow).

Quantization is PT2E static post-training quantization with litert-torch's PT2EQuantizer (symmetric,
per-channel weights, int8 activations), calibrated on training samples, then litert_torch.convert.

- tflite_int8_full (MCU): int8 input and int8 output. This is what litert-torch produces from a PT2E
  graph by default: the boundary quantize/dequantize pairs are folded into the I/O tensor types.
- tflite_int8 (cpu/mobile): int8 weights and activations with FLOAT input/output. litert-torch has no
  public switch for this (no `inference_input_type`; `_litert_converter_flags` only reaches the
  TensorFlow-based v2 path). The converter's own `strict_qdq_mode` keeps the boundary Q/DQ pairs as
  QUANTIZE/DEQUANTIZE ops, which gives exactly float I/O; we set it for the one conversion call
  (`_strict_qdq_mode`) and then check the file's I/O types, so a litert-torch change fails loudly.

Images and sequences are exported channel-last (litert_torch.to_channel_last_io): the TFLite input is
NHWC (sequences (N, 1, T, C)) and the converter adds no TRANSPOSE op. Batch is fixed at 1.
The converter's per-op debug tensor names are stripped (strip_debug_names): flash is the MCU budget.

MLP students standardise their inputs ((x - mean) / std per feature, folded into the first Linear after
training). Quantising the raw features instead breaks two things: one int8 scale for features of very
different magnitudes (e.g. 0.05 next to 4000) rounds the small ones to nothing, and the folded weights
(W / std) times that input scale make the first FULLY_CONNECTED's requantisation scale
input_scale * weight_scale / output_scale reach hundreds; XNNPACK (ai-edge-litert's default delegate)
refuses any >= 256 ("failed to create XNNPACK runtime ... TfLiteXNNPackDelegate failed to prepare").
So (standardized_export):
- float I/O: the standardisation stays in the graph as float SUB/MUL ops before the QUANTIZE op (only the
  Linear body is annotated for PT2E), so the model still takes the teacher's raw features;
- int8 I/O: the int8 input holds the standardised features; the metadata's input_standardization (mean,
  std) says so, the C header carries both arrays and the runtimes apply it when quantising the input.
"""

from __future__ import annotations

import contextlib
import copy
import os
import threading
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.contracts.errors import PipelineError
from edgedistill.workers.pipeline.base import Step
from edgedistill.workers.pipeline.context import RunContext, RunState
from edgedistill.workers.steps.artifacts import record_artifact, staged_file
from edgedistill.workers.steps.export_multi import (
    calibration_inputs,
    channel_last_inputs,
    check_inputs,
    deploy_module,
    is_multi,
    max_diffs,
    torch_predict_all,
)

FILENAMES = {"tflite_int8": "student_int8.tflite", "tflite_int8_full": "student_int8_full.tflite"}
CHECK_SAMPLES = 256
_CONVERTER_LOCK = threading.Lock()


def _io_float(kind: str) -> bool:
    return kind == "tflite_int8"


def channel_last_module(student: Any, modality: str) -> tuple[Any, str | None]:
    """The module to convert and its input layout: channel-last for images and sequences."""
    import litert_torch
    import torch

    student = student.cpu().eval()
    if modality == "image":
        return litert_torch.to_channel_last_io(student, args=[0]).eval(), "NHWC"
    if modality == "sequence":

        class _SequenceAsImage(torch.nn.Module):
            """(N, C, 1, T) -> the student's (N, C, T); made channel-last this is (N, 1, T, C) with no
            TRANSPOSE op (a (N, T, C) input would need one before the first convolution)."""

            def __init__(self, inner: Any) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.inner(x.squeeze(2))

        return litert_torch.to_channel_last_io(_SequenceAsImage(student), args=[0]).eval(), "NHWC"
    return student, None


@contextlib.contextmanager
def _strict_qdq_mode() -> Iterator[None]:
    """Make litert-torch's converter keep Q/DQ at the model boundary (float I/O) for one call."""
    from litert_torch._convert import litert_converter

    api = litert_converter.converter_api_ext
    original = api.run_convert_to_tfl_passes

    def run_passes(module: Any, pass_manager: Any, config: Any) -> Any:
        if not hasattr(config, "strict_qdq_mode"):
            raise PipelineError("this litert-torch has no strict_qdq_mode: cannot make float-I/O int8 TFLite")
        config.strict_qdq_mode = True
        return original(module, pass_manager, config)

    api.run_convert_to_tfl_passes = run_passes
    try:
        yield
    finally:
        api.run_convert_to_tfl_passes = original


@contextlib.contextmanager
def _shared_dq_layout_fix() -> Iterator[None]:
    """Work around litert-torch 0.10's layout pass for one call: inserting a (transpose, q, dq) in front of
    one user of a dequantize node replaces that node's meta with the transpose's (a dict shared with the
    new nodes), so the node loses its shape and layout mark, and its next user that wants NHWC fails
    with "Attempting to convert non-NHWC compatible node to NHWC". It happens when one activation feeds
    an NHWC op and an NCHW-only op (BlazeFace's stride-2 blocks: max_pool2d and an asymmetric zero pad).
    The node keeps its own meta here; the inserted nodes get the transpose's, as upstream intends."""
    from litert_torch._convert.fx_passes.optimize_layout_transposes_pass import pass_body

    cls = pass_body.OptimizeLayoutTransposesPass
    original = cls.insert_t_q_dq

    def insert_t_q_dq(self: Any, graph: Any, input_dq: Any, *args: Any) -> Any:
        own = input_dq.meta
        try:
            return original(self, graph, input_dq, *args)
        finally:
            input_dq.meta = own

    cls.insert_t_q_dq = insert_t_q_dq
    try:
        yield
    finally:
        cls.insert_t_q_dq = original


def convert_int8(
    student: Any,
    modality: str,
    calibration: np.ndarray,
    path: Path,
    *,
    float_io: bool,
    qat: Any = None,
) -> str | None:
    """PT2E-quantize the student on the calibration samples (data layout) and write a .tflite.
    Returns the model's input layout ("NHWC" or None for the data's own layout).

    With qat (workers.steps.distill.qat.QatModel, after quantization-aware distillation) the trained
    fake-quant graph is converted with its learned scales instead; nothing is calibrated."""
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    import torch

    from edgedistill.runtimes.common import to_model_layout

    module, layout = (None, qat.layout) if qat is not None else channel_last_module(student, modality)
    calib = to_model_layout(calibration, layout)
    example = (torch.from_numpy(calib[:1].copy()),)
    # The exported graph has a static batch of 1, as the deployed model does.
    samples = ((torch.from_numpy(calib[i : i + 1].copy()),) for i in range(calib.shape[0]))
    _pt2e_to_tflite(module, example, samples, path, float_io=float_io, qat=qat)
    return layout


def _pt2e_to_tflite(
    module: Any, example: tuple[Any, ...], calibration: Iterable[tuple[Any, ...]], path: Path, *, float_io: bool,
    qat: Any = None,
) -> None:  # fmt: skip
    """PT2E int8 of module, calibrated on `calibration` (one argument tuple per batch-1 sample), or with
    qat the trained fake-quant graph with its learned scales (module and calibration unused); converted
    by litert-torch (float I/O: the boundary Q/DQ kept, _strict_qdq_mode) and written to path."""
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    import litert_torch
    import torch
    from litert_torch.quantize import pt2e_quantizer
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import move_exported_model_to_eval, quantize_pt2e

    quantizer = (
        qat.quantizer
        if qat is not None
        else pt2e_quantizer.PT2EQuantizer().set_global(
            pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True)
        )
    )
    with _CONVERTER_LOCK, torch.no_grad(), warnings.catch_warnings():
        # torch's pytree deprecation noise from inside litert-torch, not actionable here.
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        if qat is not None:
            graph = copy.deepcopy(qat.graph)
            move_exported_model_to_eval(graph)
        else:
            graph = torch.export.export(module, example).module()
            graph = quantize_pt2e.prepare_pt2e(graph, quantizer)
            move_exported_model_to_eval(graph)
            for args in calibration:
                graph(*args)
        graph = quantize_pt2e.convert_pt2e(graph, fold_quantize=False)
        move_exported_model_to_eval(graph)
        # The graph was exported from an eval() module and its BN/dropout ops are in inference form;
        # exported modules refuse .eval(), so clear the flag litert-torch checks ourselves.
        for sub in graph.modules():
            sub.training = False
        strict = _strict_qdq_mode() if float_io else contextlib.nullcontext()
        with strict, _shared_dq_layout_fix():
            edge = litert_torch.convert(graph, example, quant_config=QuantConfig(pt2e_quantizer=quantizer))
        edge.export(str(path))


def _example(x: np.ndarray, dtype: str) -> Any:
    import torch

    if dtype in ("float16", "float32", "float64"):
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return torch.from_numpy(np.ascontiguousarray(x.astype(np.int32 if dtype == "int32" else np.int64)))


def convert_signature_int8(
    module: Any,
    signature: Any,
    calibration: dict[str, np.ndarray],
    path: Path,
    *,
    float_io: bool,
    qat: Any = None,
) -> dict[str, Any]:
    """PT2E int8 + litert-torch for a module with several inputs/outputs (heads.export_module of a
    student). Image inputs (4-D float) become NHWC (to_channel_last_io: no TRANSPOSE); token ids and
    masks stay integers of the teacher's width (int32 stays int32, others int64); calibration: input
    name -> samples in the data's layout. Returns the metadata the runtimes read: teacher_io (the
    teacher's names in the model's order) and input_layouts (name -> "NHWC").

    With qat (distill.qat_multi, after quantization-aware distillation) its trained fake-quant graph is
    converted with the learned scales (it is already channel-last); nothing is calibrated."""
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    import litert_torch

    from edgedistill.runtimes.common import CHANNEL_LAST, to_model_layout

    specs = signature.inputs
    # a teacher's NHWC input stays NHWC: the student permutes it in the graph (students_multi.ConvEncoder)
    images = channel_last_inputs(signature)
    layouts = {specs[i].name: CHANNEL_LAST for i in images}
    module = module.cpu().eval()
    if images and qat is None:
        module = litert_torch.to_channel_last_io(module, args=images).eval()
    calib = [to_model_layout(calibration[s.name], layouts.get(s.name)) for s in specs]
    n = int(calib[0].shape[0])

    def sample(k: int) -> tuple[Any, ...]:
        return tuple(_example(c[k : k + 1], s.dtype) for c, s in zip(calib, specs, strict=True))

    _pt2e_to_tflite(module, sample(0), (sample(k) for k in range(n)), path, float_io=float_io, qat=qat)
    return {
        "teacher_io": {"inputs": list(signature.input_names), "outputs": list(signature.output_names)},
        "input_layouts": layouts,
    }


def strip_debug_names(path: Path) -> int:
    """Drop the names of non-I/O tensors (litert-torch stores each op's Python module path there,
    about half the file for small models) and the model description; signature defs and the I/O
    tensor names stay, so signature runners keep working. Same idea as flatbuffer_utils.strip_strings,
    which would also drop the signatures. Returns the bytes saved."""
    from ai_edge_litert.tools import flatbuffer_utils

    before = path.stat().st_size
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(path.read_bytes()))
    model.description = None
    for sg in model.subgraphs:
        keep = set(sg.inputs or []) | set(sg.outputs or [])
        for i, tensor in enumerate(sg.tensors):
            if i not in keep:
                tensor.name = None
    path.write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    return before - path.stat().st_size


def _check_io(info: dict[str, Any], kind: str) -> None:
    sig = info["signature"]
    want = "float32" if _io_float(kind) else "int8"
    got = [t["dtype"] for t in sig["inputs"] + sig["outputs"]]
    if any(d != want for d in got):
        raise PipelineError(f"{kind} must have {want} input and output; the converter produced {got}")
    if not _io_float(kind):
        quant = info.get("io_quantization") or {}
        if "input" not in quant or "output" not in quant:
            raise PipelineError(f"{kind}: int8 input/output without scale/zero-point")


class ExportTflite(Step):
    """Reads state.student, state.data; writes state.artifacts["tflite_int8"] and/or
    ["tflite_int8_full"], whichever the profile targets."""

    name = "export_tflite"
    stage = "export"
    order = 80

    def run(self, ctx: RunContext, state: RunState) -> None:
        kinds = [k for k in ("tflite_int8", "tflite_int8_full") if k in ctx.spec.profile.targets]
        if not kinds:
            return
        from edgedistill.runtimes.common import apply_standardization
        from edgedistill.runtimes.litert import run_tflite
        from edgedistill.workers.steps.export_onnx import io_names, max_abs_diff, torch_predict
        from edgedistill.workers.steps.model_info import describe_tflite
        from edgedistill.workers.steps.quantize import calibration_samples
        from edgedistill.workers.steps.students import standardized_export

        if is_multi(state):
            for kind in kinds:
                ctx.check_cancel()
                ctx.emit("progress", {"message": f"converting to {kind} with litert-torch (teacher's I/O names)"})
                export_tflite_multi(ctx, state, kind, FILENAMES[kind], _io_float(kind))
            return
        opts = ctx.spec.options
        data = state.data
        samples = calibration_samples(data.x_of("train"), opts.calibration_samples, opts.seed)
        x_check = data.x_of("test")[:CHECK_SAMPLES]
        if x_check.shape[0] == 0:
            x_check = samples[:CHECK_SAMPLES]
        reference = torch_predict(state.student, x_check)
        teacher_names = io_names(state)

        for kind in kinds:
            ctx.check_cancel()
            float_io = _io_float(kind)
            ctx.emit(
                "progress",
                {
                    "message": f"converting to {kind} with litert-torch "
                    f"({'float' if float_io else 'int8'} I/O, {samples.shape[0]} calibration samples)"
                },
            )
            filename = FILENAMES[kind]
            module, standardization, float_pre = state.student, None, False
            if state.qat_model is None:  # a QAT graph carries its own learned input scale
                module, standardization, float_pre = standardized_export(state.student, float_io)
            with staged_file(ctx.work_dir, filename) as tmp:
                try:
                    layout = convert_int8(
                        module,
                        data.modality,
                        apply_standardization(samples, standardization),
                        tmp,
                        float_io=float_io,
                        qat=state.qat_model,
                    )
                except PipelineError:
                    raise
                except Exception as exc:
                    raise PipelineError(f"TFLite conversion ({kind}) failed: {exc}", stage=self.stage) from exc
                saved = strip_debug_names(tmp)
                info = describe_tflite(tmp)
                _check_io(info, kind)
                got = run_tflite(tmp, x_check, layout=layout, standardization=standardization)
                if got.shape != reference.shape or not np.isfinite(got).all():
                    raise PipelineError(f"the {kind} model produced invalid outputs", stage=self.stage)

            info["signature"]["layout"] = layout or ("NF" if data.modality == "vector" else "as-is")
            if data.modality == "sequence":
                info["signature"]["input_mapping"] = "data (N, C, T) -> model (N, 1, T, C)"
            elif data.modality == "image":
                info["signature"]["input_mapping"] = "data (N, C, H, W) -> model (N, H, W, C)"
            if standardization is not None:
                info["signature"]["input_mapping"] = (
                    "data (N, F) -> (x - input_standardization.mean) / input_standardization.std per feature, "
                    "then quantised to the int8 input"
                )
                info["input_standardization"] = standardization
            elif float_pre:
                info["float_preprocessing"] = "per-feature (x - mean) / std in float before the int8 layers"
            record_artifact(
                ctx,
                state,
                kind=kind,
                path=ctx.work_dir / filename,
                metadata={
                    **info,
                    # litert-torch names the tensors args_0 / output_0: the runtimes, agent and docs map
                    # them back to the teacher's names through this (drop-in use, issue 10).
                    "teacher_io": {"inputs": [teacher_names[0]], "outputs": [teacher_names[1]]},
                    "precision": "int8",
                    "io": "float32" if float_io else "int8",
                    "stripped_debug_name_bytes": saved,
                    "quantization": {
                        "tool": "litert-torch PT2E (PT2EQuantizer, symmetric per-channel)",
                        "activations": "int8",
                        "weights": "int8 per-channel",
                        "calibration": "HistogramObserver (PT2EQuantizer default; options.calibration applies to ONNX)"
                        if state.qat_model is None
                        else "quantization-aware training (fake-quant scales learned while distilling)",
                        "calibration_samples": int(samples.shape[0]) if state.qat_model is None else 0,
                    },
                    "check": {"samples": int(x_check.shape[0]), "max_abs_diff_vs_torch": max_abs_diff(got, reference)},
                },
            )


def export_tflite_multi(ctx: RunContext, state: RunState, kind: str, filename: str, float_io: bool) -> None:
    """ExportTflite for multi students (export_multi.is_multi): one signature with the teacher's names."""
    from edgedistill.runtimes.litert import TfliteModel
    from edgedistill.workers.steps.model_info import describe_tflite

    opts = ctx.spec.options
    from edgedistill.runtimes.common import apply_standardization
    from edgedistill.workers.steps.students import standardized_export
    from edgedistill.workers.steps.students_multi import TupleStudent

    sig = state.signature
    module = deploy_module(state, float_io)
    samples = calibration_inputs(state, opts.calibration_samples, opts.seed)
    x = check_inputs(state)
    ref = torch_predict_all(deploy_module(state), sig, x)  # the float-I/O module: raw features in
    inner = state.student.inner if isinstance(state.student, TupleStudent) else state.student
    qat = state.qat_model  # a QAT graph carries its own learned input scale
    standardization = None if float_io or qat is not None else standardized_export(inner, float_io=False)[1]
    if standardization is not None:  # full int8 tabular: the int8 input holds standardised features
        name = sig.input_names[0]
        samples = {name: apply_standardization(samples[name], standardization)}
    with staged_file(ctx.work_dir, filename) as tmp:
        try:
            meta = convert_signature_int8(module, sig, samples, tmp, float_io=float_io, qat=qat)
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
                "calibration": "HistogramObserver (PT2EQuantizer default)"
                if qat is None
                else "quantization-aware training (fake-quant scales learned while distilling)",
                "calibration_samples": int(next(iter(samples.values())).shape[0]) if qat is None else 0,
            },
            "check": {"samples": int(next(iter(x.values())).shape[0]), "max_abs_diff_vs_torch": diffs},
        },
    )
