"""Run an artifact with whatever runtime the device has: onnxruntime for .onnx, ai-edge-litert (or the
older tflite-runtime) for .tflite. Each is imported only when a model of its kind is loaded.

Inputs arrive as float batches in the data's layout (the probe's x: NCHW images, NCT sequences, NF
vectors). A channel-last TFLite model gets them transposed; an int8-input model gets them quantized
with the scale and zero-point read from the model itself, never assumed.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgedistill.agent.errors import AgentError, RuntimeUnavailable

CHANNEL_LAST = "NHWC"


@dataclass(frozen=True)
class Quantization:
    scale: float
    zero_point: int
    dtype: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Model(Protocol):
    runtime_name: str
    runtime_version: str
    input_quantization: Quantization | None
    layout: str | None

    def predict(self, x: np.ndarray) -> np.ndarray: ...

    def timed_call(self, x1: np.ndarray) -> Callable[[], Any]: ...


# --------------------------------------------------------------------------------------------------
# which runtimes are here
# --------------------------------------------------------------------------------------------------


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def tflite_runtime_module() -> tuple[str, str, str] | None:
    """(module with Interpreter, runtime name, version) of the installed TFLite runtime, or None."""
    if _has("ai_edge_litert"):
        return "ai_edge_litert.interpreter", "ai-edge-litert", _version("ai-edge-litert")
    if _has("tflite_runtime"):
        return "tflite_runtime.interpreter", "tflite-runtime", _version("tflite-runtime")
    return None


def available_runtimes() -> dict[str, str]:
    """Artifact family ("onnx", "tflite") -> runtime name, for the runtimes installed on this device."""
    out: dict[str, str] = {}
    if _has("onnxruntime"):
        out["onnx"] = "onnxruntime"
    tfl = tflite_runtime_module()
    if tfl is not None:
        out["tflite"] = tfl[1]
    return out


def family(kind: str) -> str:
    if kind.startswith("onnx"):
        return "onnx"
    if kind.startswith("tflite"):
        return "tflite"
    raise AgentError(f"artifact kind {kind!r} is not a model this agent can run")


def runnable_kinds(kinds: tuple[str, ...]) -> list[str]:
    have = available_runtimes()
    return [k for k in kinds if family(k) in have]


# --------------------------------------------------------------------------------------------------
# layout and int8 helpers
# --------------------------------------------------------------------------------------------------


def to_layout(x: np.ndarray, layout: str | None) -> np.ndarray:
    """Data-layout batch -> the model's layout. Only channel-last differs from the data's own."""
    if layout != CHANNEL_LAST:
        return x
    if x.ndim == 4:  # (N, C, H, W) -> (N, H, W, C)
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    if x.ndim == 3:  # (N, C, T) -> (N, 1, T, C): a sequence is an image of height 1
        return np.ascontiguousarray(x.transpose(0, 2, 1)[:, None, :, :])
    raise AgentError(f"layout {layout} needs image or sequence input, got shape {x.shape}")


def resolve_layout(declared: str | None, x: np.ndarray, model_shape: tuple[int, ...]) -> str | None:
    """The declared layout (the artifact's signature), else whichever makes the input fit the model."""
    if declared == CHANNEL_LAST:
        return CHANNEL_LAST
    if tuple(x.shape[1:]) == tuple(model_shape[1:]):
        return None
    if x.ndim in (3, 4) and tuple(to_layout(x[:1], CHANNEL_LAST).shape[1:]) == tuple(model_shape[1:]):
        return CHANNEL_LAST
    raise AgentError(f"the model expects per-sample shape {list(model_shape[1:])}, the probe has {list(x.shape[1:])}")


def quantize(x: np.ndarray, q: Quantization) -> np.ndarray:
    """q = round(x / scale) + zero_point, rounded half away from zero as TFLite's kernels do, saturated."""
    dtype = np.dtype(q.dtype)
    info = np.iinfo(dtype)
    v = x.astype(np.float64) / q.scale
    r = np.sign(v) * np.floor(np.abs(v) + 0.5) + q.zero_point
    return np.clip(r, info.min, info.max).astype(dtype)


def dequantize(raw: np.ndarray, q: Quantization) -> np.ndarray:
    return ((raw.astype(np.float32) - np.float32(q.zero_point)) * np.float32(q.scale)).astype(np.float32)


def tflite_quantization(details: dict[str, Any]) -> Quantization | None:
    """A TFLite tensor's per-tensor quantization read from the interpreter's details; None for float."""
    dtype = np.dtype(details["dtype"])
    if not np.issubdtype(dtype, np.integer):
        return None
    qp = details.get("quantization_parameters") or {}
    scales = np.asarray(qp.get("scales", []), dtype=np.float64).reshape(-1)
    zps = np.asarray(qp.get("zero_points", []), dtype=np.int64).reshape(-1)
    if scales.size == 1 and zps.size == 1 and scales[0] > 0:
        return Quantization(float(scales[0]), int(zps[0]), dtype.name)
    legacy = details.get("quantization")
    if legacy and legacy[0]:
        return Quantization(float(legacy[0]), int(legacy[1]), dtype.name)
    raise AgentError(f"integer tensor {details.get('name', '')!r} has no per-tensor scale/zero-point in the model")


def _batch(x: np.ndarray) -> np.ndarray:
    if x.ndim < 2 or x.shape[0] == 0:
        raise AgentError(f"expected a non-empty batch, got shape {x.shape}")
    return np.ascontiguousarray(x, dtype=np.float32)


# --------------------------------------------------------------------------------------------------
# onnxruntime
# --------------------------------------------------------------------------------------------------


# numpy dtype of each onnxruntime tensor type a model may declare for an input
ORT_NUMPY_TYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def open_onnx_session(path: Path, threads: int) -> tuple[Any, str]:
    """(CPU InferenceSession with `threads` intra-op threads, onnxruntime version); one-line errors."""
    try:
        ort = importlib.import_module("onnxruntime")
    except ImportError as exc:
        raise RuntimeUnavailable("onnxruntime is not installed: pip install onnxruntime") from exc
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise AgentError(f"onnxruntime cannot load {path.name}: {exc}") from exc
    return session, str(ort.__version__)


class OnnxModel:
    runtime_name = "onnxruntime"
    layout: str | None = None

    def __init__(self, path: Path, threads: int = 1) -> None:
        self.session, self.runtime_version = open_onnx_session(path, threads)
        inp = self.session.get_inputs()[0]
        if inp.type != "tensor(float)":
            raise AgentError(
                f"{path.name} takes {inp.type} input; the agent runs float-input ONNX models (int8 QDQ models "
                "quantize inside the graph, with the scale and zero-point stored in the model)"
            )
        self.input_name = inp.name
        # Float input: a QDQ model quantizes inside the graph with the scale/zero-point stored in it.
        self.input_quantization: Quantization | None = None
        self.fixed_batch = inp.shape[0] if inp.shape and isinstance(inp.shape[0], int) else None

    def _run(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self.input_name: x})[0], dtype=np.float32)

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = _batch(x)
        step = self.fixed_batch or x.shape[0]
        return np.concatenate([self._run(x[i : i + step]) for i in range(0, x.shape[0], step)])

    def timed_call(self, x1: np.ndarray) -> Callable[[], Any]:
        xb = _batch(x1[:1])
        return lambda: self.session.run(None, {self.input_name: xb})


# --------------------------------------------------------------------------------------------------
# TFLite (ai-edge-litert, or tflite-runtime)
# --------------------------------------------------------------------------------------------------


class TfliteModel:
    def __init__(self, path: Path, threads: int = 1, layout: str | None = None) -> None:
        found = tflite_runtime_module()
        if found is None:
            raise RuntimeUnavailable("no TFLite runtime is installed: pip install ai-edge-litert")
        module, self.runtime_name, self.runtime_version = found
        interpreter_cls = importlib.import_module(module).Interpreter
        try:
            self.interpreter = interpreter_cls(model_path=str(path), num_threads=threads)
            self.interpreter.allocate_tensors()
        except Exception as exc:
            raise AgentError(f"{self.runtime_name} cannot load {path.name}: {exc}") from exc
        self.path = path
        self.declared_layout = layout
        self.layout: str | None = layout
        self._details()
        sig = self.inp.get("shape_signature")
        self.dynamic_batch = sig is not None and len(sig) > 0 and int(sig[0]) == -1

    def _details(self) -> None:
        self.inp = self.interpreter.get_input_details()[0]
        self.out = self.interpreter.get_output_details()[0]
        self.input_shape = tuple(int(d) for d in self.inp["shape"])
        self.input_quantization = tflite_quantization(self.inp)
        self.output_quantization = tflite_quantization(self.out)

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Float batch in the data's layout -> the model's layout and input dtype."""
        x = _batch(x)
        self.layout = resolve_layout(self.declared_layout, x, self.input_shape)
        xm = to_layout(x, self.layout)
        if tuple(xm.shape[1:]) != self.input_shape[1:]:
            raise AgentError(
                f"{self.path.name} expects per-sample shape {list(self.input_shape[1:])}, got {list(xm.shape[1:])}"
            )
        if self.input_quantization is not None:
            return quantize(xm, self.input_quantization)
        return xm.astype(self.inp["dtype"], copy=False)

    def invoke(self, xe: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.inp["index"], xe)
        self.interpreter.invoke()
        return np.array(self.interpreter.get_tensor(self.out["index"]))

    def decode(self, raw: np.ndarray) -> np.ndarray:
        if self.output_quantization is not None:
            return dequantize(raw, self.output_quantization)
        return raw.astype(np.float32, copy=False)

    def _set_batch(self, n: int) -> None:
        if self.input_shape[0] != n:
            self.interpreter.resize_tensor_input(self.inp["index"], [n, *self.input_shape[1:]])
            self.interpreter.allocate_tensors()
            self._details()

    def predict(self, x: np.ndarray) -> np.ndarray:
        xe = self.encode(x)
        if self.dynamic_batch:
            self._set_batch(xe.shape[0])
            return self.decode(self.invoke(xe))
        step = self.input_shape[0]  # a static batch (the exports use 1) is fed one slice at a time
        if xe.shape[0] % step:
            raise AgentError(f"{self.path.name} has a static batch of {step}; the probe has {xe.shape[0]} samples")
        return np.concatenate([self.decode(self.invoke(xe[i : i + step])) for i in range(0, xe.shape[0], step)])

    def timed_call(self, x1: np.ndarray) -> Callable[[], Any]:
        xe = self.encode(x1[:1])
        if self.dynamic_batch:
            self._set_batch(1)
        elif self.input_shape[0] != 1:
            raise AgentError(f"{self.path.name} has a static batch of {self.input_shape[0]}; timing needs batch 1")
        return lambda: self.invoke(xe)


def standardize_input(x: np.ndarray, metadata: dict[str, Any]) -> np.ndarray:
    """Full-int8 tabular models take standardised features: (x - mean) / std per feature, as the
    artifact's metadata records it (input_standardization); other models take x as it is."""
    found = metadata.get("input_standardization")
    if not isinstance(found, dict):
        return x
    mean = np.asarray(found.get("mean"), dtype=np.float32)
    std = np.asarray(found.get("std"), dtype=np.float32)
    if mean.ndim != 1 or mean.shape != std.shape or x.shape[-1] != mean.shape[0] or not np.all(std > 0):
        raise AgentError(f"input_standardization does not fit the probe's {x.shape[-1]} features")
    return ((x - mean) / std).astype(np.float32)


def load_model(path: Path, kind: str, *, threads: int, layout: str | None) -> Model:
    fam = family(kind)
    if fam == "onnx":
        return OnnxModel(path, threads)
    return TfliteModel(path, threads, layout if layout == CHANNEL_LAST else None)
