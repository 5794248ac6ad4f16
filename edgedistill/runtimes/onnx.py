"""ONNX artifacts in onnxruntime (CPU, a fixed thread count), imported only when a model is opened.

Single input: predict(x) feeds a float batch (int8 QDQ models quantize inside the graph with the
scale/zero-point stored in them). Several inputs: predict_all feeds each input by name in the type
the model declares (token ids as integers). timed_call / timed_call_all prepare the feed once so a
benchmark times session.run alone."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.contracts.errors import ArtifactRunError, RuntimeUnavailable
from edgedistill.runtimes.common import (
    DEFAULT_BATCH,
    Metadata,
    Quantization,
    batch_size_of,
    check_batch,
    concat_outputs,
    require_inputs,
    single_input_by_position,
)

RUNTIME = "onnxruntime"

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


def installed() -> tuple[str, str] | None:
    """(runtime name, version) when onnxruntime is importable here, else None (nothing imported)."""
    try:
        if importlib.util.find_spec("onnxruntime") is None:
            return None
    except (ImportError, ValueError):
        return None
    try:
        return RUNTIME, importlib.metadata.version("onnxruntime")
    except importlib.metadata.PackageNotFoundError:
        return RUNTIME, "unknown"


def open_session(path: Path, threads: int) -> tuple[Any, str]:
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
        raise ArtifactRunError(f"onnxruntime cannot load {path.name}: {exc}") from exc
    return session, str(ort.__version__)


class OnnxModel:
    runtime_name = RUNTIME
    layout: str | None = None  # ONNX artifacts take the data's own layout
    # Float input: a QDQ model quantizes inside the graph with the scale/zero-point stored in it.
    input_quantization: Quantization | None = None

    def __init__(self, path: Path, threads: int = 1, *, metadata: Metadata | None = None) -> None:
        self.path = path
        self.session, self.runtime_version = open_session(path, threads)
        self.inputs = self.session.get_inputs()
        self.input_name = self.inputs[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        first = self.inputs[0].shape[0] if self.inputs[0].shape else None
        self.fixed_batch = first if isinstance(first, int) else None

    # one float input ------------------------------------------------------------------------------

    def _float_input(self) -> str:
        inp = self.inputs[0]
        if len(self.inputs) != 1 or inp.type != "tensor(float)":
            raise ArtifactRunError(
                f"{self.path.name} takes {', '.join(i.type for i in self.inputs)} input; predict feeds one float "
                "batch (int8 QDQ models quantize inside the graph; integer or several inputs go by name)"
            )
        return str(inp.name)

    def run_batch(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self.input_name: x})[0], dtype=np.float32)

    def predict(self, x: np.ndarray, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
        self._float_input()
        x = check_batch(x)
        step = self.fixed_batch or batch_size
        return np.concatenate([self.run_batch(x[i : i + step]) for i in range(0, x.shape[0], step)])

    def timed_call(self, x1: np.ndarray) -> Callable[[], Any]:
        name = self._float_input()
        xb = check_batch(x1[:1])
        return lambda: self.session.run(None, {name: xb})

    # inputs and outputs by name -------------------------------------------------------------------

    def _feeds(self, inputs: Mapping[str, np.ndarray], start: int, stop: int) -> dict[str, np.ndarray]:
        inputs = single_input_by_position(inputs, [i.name for i in self.inputs])
        require_inputs(self.path, inputs, [i.name for i in self.inputs])
        return {
            i.name: np.ascontiguousarray(inputs[i.name][start:stop], dtype=ORT_NUMPY_TYPES.get(i.type, np.float32))
            for i in self.inputs
        }

    def predict_all(self, inputs: Mapping[str, np.ndarray], batch_size: int = DEFAULT_BATCH) -> dict[str, np.ndarray]:
        """Every output by name for inputs by name (integer inputs fed as integers)."""
        n = batch_size_of(inputs)
        step = self.fixed_batch or batch_size
        parts: dict[str, list[np.ndarray]] = {k: [] for k in self.output_names}
        for s in range(0, n, step):
            for k, v in zip(self.output_names, self.session.run(None, self._feeds(inputs, s, s + step)), strict=True):
                parts[k].append(np.asarray(v))
        return concat_outputs(parts)

    def timed_call_all(self, inputs: Mapping[str, np.ndarray]) -> Callable[[], Any]:
        feeds = self._feeds(inputs, 0, 1)
        return lambda: self.session.run(None, feeds)

    def io_quantization(self) -> dict[str, Any] | None:
        return None


def open_model(path: Path, *, threads: int = 1, metadata: Metadata | None = None) -> OnnxModel:
    return OnnxModel(path, threads, metadata=metadata)


def run_onnx(path: Path, x: np.ndarray, threads: int = 1) -> np.ndarray:
    return OnnxModel(path, threads).predict(x)
