"""Thin inference wrappers: float input batch in the data's layout -> float outputs, whatever the
artifact's I/O type and layout. Each runtime is the one a deployment would use: onnxruntime for
.onnx, ai-edge-litert for .tflite and the real TFLite Micro interpreter (tflite-micro) for MCU models.

Layouts: the data is NCHW (images), NCT (sequences) or NF (vectors). A channel-last TFLite model
("NHWC" in its metadata) takes images as (N, H, W, C) and sequences as (N, 1, T, C).
int8 I/O is quantized/dequantized with the scale/zero-point read from the model itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.agent.runtimes import ORT_NUMPY_TYPES
from edgedistill.workers.pipeline.errors import PipelineError
from edgedistill.workers.steps.model_info import tflite_ops

__all__ = [
    "OnnxModel",
    "TfliteModel",
    "dequantize",
    "quantize",
    "run_onnx",
    "run_tflite",
    "run_tflm",
    "run_tflm_all",
    "tflite_ops",
    "to_model_layout",
]

CHANNEL_LAST = "NHWC"
_FD_LOCK = threading.Lock()
_ARENA_RE = re.compile(r"Arena allocation total (\d+) bytes")
# Host-side arena for TFLM: start generous, grow on allocation failure (the host has RAM to spare; the
# figure we report is what TFLM actually used, not this size).
TFLM_START_ARENA = 1 << 20
TFLM_MAX_ARENA = 1 << 30


# --------------------------------------------------------------------------------------------------
# layout and int8 helpers
# --------------------------------------------------------------------------------------------------


def to_model_layout(x: np.ndarray, layout: str | None) -> np.ndarray:
    """Data-layout batch -> the model's input layout. Only NHWC differs from the data's own layout."""
    if layout != CHANNEL_LAST:
        return x
    if x.ndim == 4:  # (N, C, H, W) -> (N, H, W, C)
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    if x.ndim == 3:  # (N, C, T) -> (N, 1, T, C): a sequence is an image of height 1
        return np.ascontiguousarray(x.transpose(0, 2, 1)[:, None, :, :])
    raise PipelineError(f"layout {layout} needs image or sequence input, got shape {x.shape}")


def _qparams(details: dict[str, Any]) -> tuple[float, int]:
    qp = details.get("quantization_parameters") or {}
    scales = np.asarray(qp.get("scales", []), dtype=np.float64).reshape(-1)
    zps = np.asarray(qp.get("zero_points", []), dtype=np.int64).reshape(-1)
    if scales.size != 1 or zps.size != 1:
        # Fall back to the legacy (scale, zero_point) tuple of ai-edge-litert's details.
        legacy = details.get("quantization")
        if legacy and legacy[0]:
            return float(legacy[0]), int(legacy[1])
        raise PipelineError(f"int I/O tensor {details.get('name', '')!r} has no per-tensor scale/zero-point")
    return float(scales[0]), int(zps[0])


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: Any) -> np.ndarray:
    """q = round(x / scale) + zero_point, rounded half away from zero as TFLite's kernels do, saturated."""
    info = np.iinfo(dtype)
    v = x.astype(np.float64) / scale
    q = np.sign(v) * np.floor(np.abs(v) + 0.5) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return ((q.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32)


def _is_int(dtype: Any) -> bool:
    return bool(np.issubdtype(np.dtype(dtype), np.integer))


def _sidecar(path: Path) -> dict[str, Any]:
    side = path.with_name(path.name + ".json")
    if not side.is_file():
        return {}
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def layout_from_sidecar(path: Path) -> str | None:
    """The layout recorded in an artifact's `<file>.json`, if the sidecar exists."""
    layout = (_sidecar(path).get("signature") or {}).get("layout")
    return layout if isinstance(layout, str) else None


Standardization = dict[str, list[float]]


def standardization_from_sidecar(path: Path) -> Standardization | None:
    """The per-feature (x - mean) / std an int8-input MLP expects before quantisation, if recorded."""
    found = _sidecar(path).get("input_standardization")
    if isinstance(found, dict) and isinstance(found.get("mean"), list) and isinstance(found.get("std"), list):
        return {"mean": [float(v) for v in found["mean"]], "std": [float(v) for v in found["std"]]}
    return None


def apply_standardization(x: np.ndarray, standardization: Standardization | None) -> np.ndarray:
    if standardization is None:
        return x
    mean = np.asarray(standardization["mean"], dtype=np.float32)
    std = np.asarray(standardization["std"], dtype=np.float32)
    if x.shape[-1] != mean.shape[0]:
        raise PipelineError(f"input_standardization has {mean.shape[0]} features, the input {x.shape[-1]}")
    return ((x - mean) / std).astype(np.float32)


def _resolve_layout(path: Path, layout: str | None, x: np.ndarray, model_shape: tuple[int, ...]) -> str | None:
    if layout is not None:
        return layout
    found = layout_from_sidecar(path)
    if found is not None:
        return found
    # No metadata: take the data as-is when it fits, else channel-last when that fits.
    if tuple(x.shape[1:]) == tuple(model_shape[1:]):
        return None
    if x.ndim in (3, 4) and tuple(to_model_layout(x[:1], CHANNEL_LAST).shape[1:]) == tuple(model_shape[1:]):
        return CHANNEL_LAST
    return None


def _check_batch(x: np.ndarray) -> np.ndarray:
    if x.ndim < 2 or x.shape[0] == 0:
        raise PipelineError(f"expected a non-empty batch, got shape {x.shape}")
    return np.ascontiguousarray(x, dtype=np.float32)


# --------------------------------------------------------------------------------------------------
# onnxruntime
# --------------------------------------------------------------------------------------------------


class OnnxModel:
    """An onnxruntime CPU session with a fixed thread count."""

    runtime_name = "onnxruntime"

    def __init__(self, path: Path, threads: int = 1) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise PipelineError(f"onnxruntime cannot load {path.name}: {exc}") from exc
        self.runtime_version = str(ort.__version__)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.fixed_batch = inp.shape[0] if inp.shape and isinstance(inp.shape[0], int) else None

    def run_batch(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self.input_name: x})[0], dtype=np.float32)

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        x = _check_batch(x)
        step = self.fixed_batch or batch_size
        outs = [self.run_batch(x[i : i + step]) for i in range(0, x.shape[0], step)]
        return np.concatenate(outs)

    def predict_all(self, inputs: dict[str, np.ndarray], batch_size: int = 256) -> dict[str, np.ndarray]:
        """Every output by name for inputs by name (integer inputs fed as integers)."""
        return onnx_predict_all(self, inputs, batch_size)


def run_onnx(path: Path, x: np.ndarray, threads: int = 1) -> np.ndarray:
    return OnnxModel(path, threads).predict(x)


# --------------------------------------------------------------------------------------------------
# ai-edge-litert
# --------------------------------------------------------------------------------------------------


class TfliteModel:
    """An ai-edge-litert Interpreter; encode() prepares a float batch once so a benchmark can time
    invoke_encoded() alone."""

    runtime_name = "ai-edge-litert"

    def __init__(
        self, path: Path, threads: int = 1, layout: str | None = None, standardization: Standardization | None = None
    ) -> None:
        import ai_edge_litert
        from ai_edge_litert.interpreter import Interpreter

        self.path = path
        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
            self.interpreter.allocate_tensors()
        except Exception as exc:
            raise PipelineError(f"ai-edge-litert cannot load {path.name}: {exc}") from exc
        self.runtime_version = str(getattr(ai_edge_litert, "__version__", "unknown"))
        self.inp = self.interpreter.get_input_details()[0]
        self.out = self.interpreter.get_output_details()[0]
        self.layout = layout
        self.standardization = standardization or standardization_from_sidecar(path)
        self.input_shape = tuple(int(d) for d in self.inp["shape"])
        sig = self.inp.get("shape_signature")
        self.dynamic_batch = sig is not None and len(sig) > 0 and int(sig[0]) == -1

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Float batch in the data's layout -> the model's input layout and dtype."""
        x = apply_standardization(_check_batch(x), self.standardization)
        self.layout = _resolve_layout(self.path, self.layout, x, self.input_shape)
        xm = to_model_layout(x, self.layout)
        if tuple(xm.shape[1:]) != self.input_shape[1:]:
            raise PipelineError(
                f"{self.path.name} expects per-sample shape {list(self.input_shape[1:])}, "
                f"got {list(xm.shape[1:])} (layout {self.layout or 'as-is'})"
            )
        dtype = self.inp["dtype"]
        if _is_int(dtype):
            scale, zp = _qparams(self.inp)
            return quantize(xm, scale, zp, dtype)
        return xm.astype(dtype, copy=False)

    def invoke_encoded(self, xe: np.ndarray) -> np.ndarray:
        """One call on an already-encoded batch whose size the interpreter accepts; raw output."""
        self.interpreter.set_tensor(self.inp["index"], xe)
        self.interpreter.invoke()
        return np.array(self.interpreter.get_tensor(self.out["index"]))

    def decode(self, raw: np.ndarray) -> np.ndarray:
        if _is_int(self.out["dtype"]):
            scale, zp = _qparams(self.out)
            return dequantize(raw, scale, zp)
        return raw.astype(np.float32, copy=False)

    def _set_batch(self, n: int) -> None:
        if self.input_shape[0] != n:
            self.interpreter.resize_tensor_input(self.inp["index"], [n, *self.input_shape[1:]])
            self.interpreter.allocate_tensors()
            self.input_shape = (n, *self.input_shape[1:])
            self.inp = self.interpreter.get_input_details()[0]
            self.out = self.interpreter.get_output_details()[0]

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        xe = self.encode(x)
        outs: list[np.ndarray] = []
        # A static batch (PT2E exports batch 1) is fed one sample at a time.
        step = batch_size if self.dynamic_batch else self.input_shape[0]
        for i in range(0, xe.shape[0], step):
            chunk = xe[i : i + step]
            if self.dynamic_batch:
                self._set_batch(chunk.shape[0])
            elif chunk.shape[0] != step:
                raise PipelineError(f"{self.path.name} has a static batch of {step}; got {chunk.shape[0]}")
            outs.append(self.decode(self.invoke_encoded(chunk)))
        return np.concatenate(outs)

    def predict_all(
        self,
        inputs: dict[str, np.ndarray],
        *,
        input_names: tuple[str, ...] | None = None,
        output_names: tuple[str, ...] | None = None,
        layouts: dict[str, str] | None = None,
    ) -> dict[str, np.ndarray]:
        """Every output by teacher name for inputs by teacher name: NHWC where the artifact says so
        (layouts: input name -> "NHWC"), int8 I/O (de)quantised with the model's own scales, integer
        inputs cast to the model's integer type; static-batch models are fed one sample at a time."""
        return tflite_predict_all(self, inputs, input_names, output_names, layouts)


def run_tflite(
    path: Path,
    x: np.ndarray,
    threads: int = 1,
    layout: str | None = None,
    standardization: Standardization | None = None,
) -> np.ndarray:
    return TfliteModel(path, threads, layout, standardization).predict(x)


# --------------------------------------------------------------------------------------------------
# TFLite Micro
# --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def capture_fds(fds: tuple[int, ...] = (1, 2)) -> Iterator[list[str]]:
    """Capture what C code writes to these file descriptors (Python's sys.stdout does not see it).
    The captured text is in the yielded list once the block exits. Process-wide: serialised by a lock."""
    import sys

    out: list[str] = []
    with _FD_LOCK, tempfile.TemporaryFile() as sink:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        saved = [os.dup(fd) for fd in fds]
        try:
            for fd in fds:
                os.dup2(sink.fileno(), fd)
            yield out
        finally:
            _flush_c_stdio()
            for fd, copy in zip(fds, saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            out.append(sink.read().decode("utf-8", errors="replace"))


def _flush_c_stdio() -> None:
    # C stdio buffers output written to a file; flush it before the descriptors are restored.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).fflush(None)


def parse_arena_total(text: str) -> int:
    m = _ARENA_RE.search(text)
    if not m:
        raise PipelineError("TFLM did not report its arena use (no 'Arena allocation total' line)")
    return int(m.group(1))


def _tflm_interpreter(data: bytes, arena_size: int | None) -> tuple[Any, int]:
    from tflite_micro.python.tflite_micro import runtime

    size = arena_size or TFLM_START_ARENA
    last_log = ""
    while True:
        try:
            with capture_fds((2,)) as log:
                it = runtime.Interpreter.from_bytes(data, arena_size=size)
            return it, size
        except RuntimeError as exc:
            last_log = (log[0] if log else "").strip()
            if arena_size is not None or size >= TFLM_MAX_ARENA:
                raise PipelineError(
                    f"TFLite Micro cannot allocate the model in a {size:,}-byte arena: {exc}. {last_log}"
                ) from exc
            size *= 4


def _tflm_log(it: Any) -> str:
    """What TFLM printed about a failed invoke (e.g. "Type 'INT32' is not supported by FLOOR_MOD."):
    it writes to stderr from C, so the failing invoke is repeated with stderr captured."""
    try:
        with capture_fds((2,)) as log, contextlib.suppress(Exception):
            it.invoke()
    except OSError:
        return ""
    lines = [ln.strip() for ln in (log[0] if log else "").splitlines() if ln.strip()]
    return (" (TFLM: " + " ".join(lines)[:400] + ")") if lines else ""


def run_tflm(
    path: Path, x: np.ndarray, arena_size: int | None = None, standardization: Standardization | None = None
) -> tuple[np.ndarray, int]:
    """Run every sample through the real TFLM interpreter (as firmware would: one at a time).
    Returns (float outputs, arena bytes TFLM allocated, from its RecordingMicroAllocator)."""
    x = apply_standardization(_check_batch(x), standardization or standardization_from_sidecar(path))
    data = path.read_bytes()
    it, _ = _tflm_interpreter(data, arena_size)
    inp = it.get_input_details(0)
    out = it.get_output_details(0)
    in_shape = tuple(int(d) for d in inp["shape"])
    layout = _resolve_layout(path, None, x, in_shape)
    xm = to_model_layout(x, layout)
    if tuple(xm.shape[1:]) != in_shape[1:] or in_shape[0] != 1:
        raise PipelineError(f"{path.name} expects input {list(in_shape)}, got per-sample {list(xm.shape[1:])}")
    if _is_int(inp["dtype"]):
        scale, zp = _qparams(inp)
        xm = quantize(xm, scale, zp, inp["dtype"])
    else:
        xm = xm.astype(inp["dtype"], copy=False)
    out_int = _is_int(out["dtype"])
    oscale, ozp = _qparams(out) if out_int else (1.0, 0)
    outs: list[np.ndarray] = []
    arena: int | None = None
    for i in range(xm.shape[0]):
        try:
            it.set_input(xm[i : i + 1], 0)
            it.invoke()
        except Exception as exc:
            raise PipelineError(f"TFLite Micro failed to run {path.name}: {exc}{_tflm_log(it)}") from exc
        raw = np.array(it.get_output(0))
        outs.append(dequantize(raw, oscale, ozp) if out_int else raw.astype(np.float32))
        if arena is None:  # allocations are complete after the first invoke
            with capture_fds() as log:
                it.print_allocations()
            arena = parse_arena_total(log[0])
    assert arena is not None
    return np.concatenate(outs), arena


# --------------------------------------------------------------------------------------------------
# several inputs and outputs, by name (the engine contract)
# --------------------------------------------------------------------------------------------------

# onnxruntime tensor type -> numpy dtype: the agent's table (the same inputs are fed on devices)
NP_OF_ORT = ORT_NUMPY_TYPES


def _batch_size_of(inputs: dict[str, np.ndarray]) -> int:
    sizes = {int(v.shape[0]) for v in inputs.values()}
    if len(sizes) != 1 or 0 in sizes:
        raise PipelineError(f"inputs must be non-empty batches of one size, got {sorted(sizes)}")
    return sizes.pop()


def _finish(outs: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    # float outputs as float32; integer outputs (class indices) stay integers
    return {
        k: np.concatenate(v) if _is_int(v[0].dtype) else np.concatenate(v).astype(np.float32, copy=False)
        for k, v in outs.items()
    }


def _io_names(path: Path, role: str, found: list[str], given: tuple[str, ...] | None) -> list[str]:
    """Teacher names for a TFLite model's inputs/outputs: given, else the sidecar's teacher_io, else the
    model's own names (litert-torch names them args_0.. / output_0..: then the order is the module's)."""
    if given is not None:
        names = list(given)
    else:
        side = (_sidecar(path).get("teacher_io") or {}).get(role)
        names = [str(n) for n in side] if isinstance(side, list) else found
    if len(names) != len(found):
        raise PipelineError(f"{path.name} has {len(found)} {role}, names given for {len(names)}")
    return names


def _input_layouts(path: Path, given: dict[str, str] | None, names: list[str]) -> dict[str, str]:
    if given is not None:
        return given
    side = _sidecar(path).get("input_layouts")
    if isinstance(side, dict):
        return {str(k): str(v) for k, v in side.items()}
    # a single-input student's file (export_tflite's own path) states one layout for its input
    return {names[0]: CHANNEL_LAST} if len(names) == 1 and layout_from_sidecar(path) == CHANNEL_LAST else {}


def _single_input_by_position(inputs: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    """A one-input model whose input is not named as the data's one array (a single-input student's
    file names it "input"/"args_0"): the one array is its input. The tabular MLP's recorded
    standardisation is applied by the caller."""
    if len(names) == 1 and names[0] not in inputs and len(inputs) == 1:
        return {names[0]: next(iter(inputs.values()))}
    return inputs


def _encode_one(x: np.ndarray, details: dict[str, Any], layout: str | None) -> np.ndarray:
    dtype = np.dtype(details["dtype"])
    if _is_int(x.dtype) and not np.issubdtype(np.dtype(x.dtype), np.bool_) and dtype != np.int8:
        return np.ascontiguousarray(x.astype(dtype))  # token ids / masks stay integers
    xm = to_model_layout(np.ascontiguousarray(x, dtype=np.float32), layout)
    if dtype == np.int8 or dtype == np.uint8 or dtype == np.int16:
        scale, zp = _qparams(details)
        return quantize(xm, scale, zp, dtype)
    return xm.astype(dtype, copy=False)


def _decode_one(raw: np.ndarray, details: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(details["dtype"])
    if dtype in (np.int8, np.uint8, np.int16):
        scale, zp = _qparams(details)
        return dequantize(raw, scale, zp)
    return np.array(raw)


def onnx_predict_all(model: OnnxModel, inputs: dict[str, np.ndarray], batch_size: int = 256) -> dict[str, np.ndarray]:
    sess = model.session
    n = _batch_size_of(inputs)
    feeds_spec = sess.get_inputs()
    inputs = _single_input_by_position(inputs, [i.name for i in feeds_spec])
    missing = [i.name for i in feeds_spec if i.name not in inputs]
    if missing:
        raise PipelineError(f"no data for model inputs {missing}")
    names = [o.name for o in sess.get_outputs()]
    first = feeds_spec[0].shape[0] if feeds_spec[0].shape else None
    step = first if isinstance(first, int) else batch_size
    outs: dict[str, list[np.ndarray]] = {k: [] for k in names}
    for start in range(0, n, step):
        feed: dict[str, np.ndarray] = {
            i.name: np.ascontiguousarray(inputs[i.name][start : start + step], dtype=NP_OF_ORT.get(i.type, np.float32))
            for i in feeds_spec
        }
        for k, v in zip(names, sess.run(None, feed), strict=True):
            outs[k].append(np.asarray(v))
    return _finish(outs)


def tflite_predict_all(
    model: TfliteModel,
    inputs: dict[str, np.ndarray],
    input_names: tuple[str, ...] | None,
    output_names: tuple[str, ...] | None,
    layouts: dict[str, str] | None,
) -> dict[str, np.ndarray]:
    it = model.interpreter
    ins = it.get_input_details()
    outs_d = it.get_output_details()
    in_names = _io_names(model.path, "inputs", [d["name"] for d in ins], input_names)
    out_names = _io_names(model.path, "outputs", [d["name"] for d in outs_d], output_names)
    lay = _input_layouts(model.path, layouts, in_names)
    inputs = _single_input_by_position(inputs, in_names)
    if len(in_names) == 1 and model.standardization is not None:
        inputs = {in_names[0]: apply_standardization(inputs[in_names[0]], model.standardization)}
    missing = [k for k in in_names if k not in inputs]
    if missing:
        raise PipelineError(f"no data for model inputs {missing}")
    n = _batch_size_of({k: inputs[k] for k in in_names})
    encoded = [_encode_one(inputs[k], d, lay.get(k)) for k, d in zip(in_names, ins, strict=True)]
    for x, d, k in zip(encoded, ins, in_names, strict=True):
        if tuple(x.shape[1:]) != tuple(int(v) for v in d["shape"][1:]):
            raise PipelineError(f"{model.path.name} input {k!r} takes {list(d['shape'][1:])}, got {list(x.shape[1:])}")
    step = int(ins[0]["shape"][0]) or 1
    result: dict[str, list[np.ndarray]] = {k: [] for k in out_names}
    for start in range(0, n, step):
        for x, d in zip(encoded, ins, strict=True):
            it.set_tensor(d["index"], x[start : start + step])
        it.invoke()
        for k, d in zip(out_names, outs_d, strict=True):
            result[k].append(_decode_one(it.get_tensor(d["index"]), d))
    return _finish(result)


def run_tflm_all(
    path: Path,
    inputs: dict[str, np.ndarray],
    *,
    input_names: tuple[str, ...] | None = None,
    output_names: tuple[str, ...] | None = None,
    layouts: dict[str, str] | None = None,
    arena_size: int | None = None,
) -> tuple[dict[str, np.ndarray], int]:
    """run_tflm for several inputs and outputs by teacher name: (outputs, arena bytes TFLM used)."""
    it, _ = _tflm_interpreter(path.read_bytes(), arena_size)
    from edgedistill.workers.steps.model_info import describe_tflite

    sig = describe_tflite(path)["signature"]
    n_in, n_out = len(sig["inputs"]), len(sig["outputs"])
    ins = [it.get_input_details(i) for i in range(n_in)]
    outs_d = [it.get_output_details(i) for i in range(n_out)]
    in_names = _io_names(path, "inputs", [str(d.get("name", i)) for i, d in enumerate(ins)], input_names)
    out_names = _io_names(path, "outputs", [str(d.get("name", i)) for i, d in enumerate(outs_d)], output_names)
    lay = _input_layouts(path, layouts, in_names)
    inputs = _single_input_by_position(inputs, in_names)
    standardization = standardization_from_sidecar(path)
    if len(in_names) == 1 and standardization is not None:
        inputs = {in_names[0]: apply_standardization(inputs[in_names[0]], standardization)}
    n = _batch_size_of({k: inputs[k] for k in in_names})
    encoded = [_encode_one(inputs[k], d, lay.get(k)) for k, d in zip(in_names, ins, strict=True)]
    result: dict[str, list[np.ndarray]] = {k: [] for k in out_names}
    arena: int | None = None
    for s in range(n):
        try:
            for i, x in enumerate(encoded):
                it.set_input(x[s : s + 1], i)
            it.invoke()
        except Exception as exc:
            raise PipelineError(f"TFLite Micro failed to run {path.name}: {exc}{_tflm_log(it)}") from exc
        for i, (k, d) in enumerate(zip(out_names, outs_d, strict=True)):
            result[k].append(_decode_one(np.array(it.get_output(i)), d))
        if arena is None:
            with capture_fds() as log:
                it.print_allocations()
            arena = parse_arena_total(log[0])
    assert arena is not None
    return _finish(result), arena
