"""Verify for teachers with several inputs/outputs or outputs of any kind: every variant (teacher,
float student, ONNX fp32/int8, TFLite, TFLM) judged per output with the metric of its kind
(metrics.output_metrics) and one headline per variant, then metrics.quality_problem on the
float student and on the artifact the device runs.

The runtimes' dict-based ``predict_all`` (workers.steps.runtimes, the engine contract) are used when
they exist; until then the small fallbacks below run ONNX and TFLite files by input name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.workers.pipeline.context import RunContext, RunState

ONNX_KINDS = ("onnx_fp32", "onnx_int8")
TFLITE_KINDS = ("tflite_int8", "tflite_int8_full")
# TFLite Micro runs one sample at a time: both verify paths judge at most this many test samples.
# Defined here, the lower module, because verify imports this one (never the reverse).
TFLM_MAX_SAMPLES = 500


def _onnx_predict_all(path: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {}
    for i in sess.get_inputs():
        arr = inputs[i.name]
        feeds[i.name] = arr.astype(np.int64 if "int64" in i.type else np.int32 if "int32" in i.type else np.float32)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds), strict=True))


def _tflite_predict_all(path: Path, inputs: dict[str, np.ndarray], layout: str | None) -> dict[str, np.ndarray]:
    """One sample at a time (static batch 1 files), int8 I/O quantised with the file's parameters;
    inputs matched by position in the signature order; 4-D inputs transposed to NHWC when stated."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    ins, outs = it.get_input_details(), it.get_output_details()
    arrays = list(inputs.values())
    n = arrays[0].shape[0]
    result: list[list[np.ndarray]] = [[] for _ in outs]
    for r in range(n):
        for d, a in zip(ins, arrays, strict=True):
            row = a[r : r + 1]
            if layout == "NHWC" and row.ndim == 4:
                row = row.transpose(0, 2, 3, 1)
            scale, zp = d["quantization"]
            if scale and d["dtype"] in (np.int8, np.uint8):
                info = np.iinfo(d["dtype"])
                row = np.clip(np.round(row / scale) + zp, info.min, info.max)
            it.set_tensor(d["index"], np.ascontiguousarray(row, dtype=d["dtype"]))
        it.invoke()
        for j, d in enumerate(outs):
            raw = it.get_tensor(d["index"])
            scale, zp = d["quantization"]
            result[j].append((raw.astype(np.float32) - zp) * scale if scale and raw.dtype != np.float32 else raw.copy())
    return {d["name"]: np.concatenate(r) for d, r in zip(outs, result, strict=True)}


def _by_teacher_names(state: RunState, got: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Artifacts keep the teacher's output names; files that renamed them are matched by position."""
    names = state.signature.output_names
    if all(n in got for n in names):
        return {n: got[n] for n in names}
    return dict(zip(names, got.values(), strict=False))


def predict_variant(state: RunState, kind: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from edgedistill.workers.steps import runtimes

    art = state.artifacts[kind]
    layout = art.metadata.get("signature", {}).get("layout") if isinstance(art.metadata, dict) else None
    if kind in ONNX_KINDS:
        cls = getattr(runtimes, "OnnxModel", None)
        if cls is not None and hasattr(cls, "predict_all"):
            return _by_teacher_names(state, cls(art.path).predict_all(inputs))
        return _by_teacher_names(state, _onnx_predict_all(art.path, inputs))
    cls = getattr(runtimes, "TfliteModel", None)
    if cls is not None and hasattr(cls, "predict_all"):
        return _by_teacher_names(state, cls(art.path).predict_all(inputs))
    return _by_teacher_names(state, _tflite_predict_all(art.path, inputs, layout))


def verify_multi(ctx: RunContext, state: RunState) -> dict[str, Any]:
    """state.metrics for a multi-I/O run: {variant: {runtime, headline, outputs: {name: metrics}}}."""
    import torch

    from edgedistill.workers.steps.distill.multi import _weight, thresholds
    from edgedistill.workers.steps.metrics import evaluate_outputs, quality_problem, variant_headline

    sig, data, opts = state.signature, state.data, ctx.spec.options
    inputs = data.inputs_of("test")
    teacher = state.teacher_outputs["test"]
    kinds = {o.name: str(o.kind) for o in sig.outputs}
    y = data.y_of("test")
    weights = {n: _weight(opts, n) for n in sig.output_names}

    def judge(outs: dict[str, np.ndarray], runtime: str, n: int | None = None) -> dict[str, Any]:
        t = teacher if n is None else {k: v[:n] for k, v in teacher.items()}
        per = evaluate_outputs(
            kinds, outs, t, labels=None if y is None else (y if n is None else y[:n]), primary=data.primary_output,
            thresholds=thresholds(sig, opts), scores={o.name: o.scores for o in sig.outputs if o.scores},
        )  # fmt: skip
        return {"runtime": runtime, "samples": int(next(iter(outs.values())).shape[0]), "outputs": per,
                "headline": variant_headline(per, weights), "quality_problem": quality_problem(per)}  # fmt: skip

    metrics: dict[str, Any] = {"teacher": judge(dict(teacher), "teacher")}
    module = state.export_module
    with torch.inference_mode():
        args = [torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in sig.input_names]
        outs = module.cpu().eval()(*args)
    metrics["student_fp32"] = judge({n: o.numpy() for n, o in zip(sig.output_names, outs, strict=True)}, "torch")
    for kind in (*ONNX_KINDS, *TFLITE_KINDS):
        if kind not in state.artifacts:
            continue
        ctx.check_cancel()
        ctx.emit("progress", {"message": f"evaluating {kind} on {len(data.splits['test'])} test samples per output"})
        runtime = "onnxruntime" if kind in ONNX_KINDS else "ai-edge-litert"
        try:
            metrics[kind] = judge(predict_variant(state, kind, inputs), runtime)
        except Exception as exc:  # one artifact failing to run is reported, the others still judged
            metrics[kind] = {"runtime": runtime, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            state.warnings.append(f"{kind} could not be evaluated per output: {metrics[kind]['error']}")
    if "tflite_int8_full" in state.artifacts and ctx.spec.profile.device_class == "mcu":
        metrics["tflm"] = _judge_tflm(ctx, state, inputs, judge)
    base = metrics["student_fp32"]["headline"]
    for kind in ("onnx_int8", *TFLITE_KINDS, "tflm"):
        if kind in metrics and "headline" in metrics[kind]:
            metrics[kind]["drop_vs_student_fp32_pp"] = 100.0 * (base - metrics[kind]["headline"])
    return metrics


def _judge_tflm(ctx: RunContext, state: RunState, inputs: dict[str, np.ndarray], judge: Any) -> dict[str, Any]:
    """The full-int8 file in the real TFLite Micro interpreter, sample by sample as firmware runs it, on
    the first TFLM_MAX_SAMPLES test samples; an op or type TFLM cannot run is reported, not raised
    (verify's op check names it for MCU profiles)."""
    from edgedistill.workers.steps.runtimes import run_tflm_all

    total = int(next(iter(inputs.values())).shape[0])
    n = min(total, TFLM_MAX_SAMPLES)
    ctx.check_cancel()
    ctx.emit("progress", {"message": f"running the TFLite Micro interpreter on {n} test samples per output"})
    meta = state.artifacts["tflite_int8_full"].metadata
    io = meta.get("teacher_io") or {}
    try:
        outs, arena = run_tflm_all(
            state.artifacts["tflite_int8_full"].path, {k: v[:n] for k, v in inputs.items()},
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
