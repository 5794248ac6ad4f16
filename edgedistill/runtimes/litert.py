""".tflite artifacts in ai-edge-litert (or the older tflite-runtime on a device that has only that),
imported only when a model is opened.

Single input: encode() turns a float batch in the data's layout into the model's layout and dtype
(channel-last where the signature says so, int8 quantized with the scale and zero-point read from the
model, a tabular model's recorded standardisation applied first), invoke_encoded() runs one batch,
decode() dequantizes; timed_call times invoke alone. Several inputs/outputs: predict_all by the
teacher's names (the metadata's teacher_io, input_layouts), integer ids cast to the model's type.
Static-batch files (the exports use batch 1) are fed one slice at a time."""

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
    CHANNEL_LAST,
    DEFAULT_BATCH,
    Metadata,
    Quantization,
    Standardization,
    apply_standardization,
    batch_size_of,
    check_batch,
    concat_outputs,
    declared_layout,
    decode_output,
    dequantize,
    encode_input,
    input_layouts,
    io_names,
    metadata_for,
    quantize,
    quantized_io,
    require_inputs,
    resolve_layout,
    single_input_by_position,
    standardization_of,
    tensor_quantization,
    to_model_layout,
)


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def interpreter_module() -> tuple[str, str, str] | None:
    """(module with Interpreter, runtime name, version) of the installed TFLite runtime, or None."""
    if _has("ai_edge_litert"):
        return "ai_edge_litert.interpreter", "ai-edge-litert", _version("ai-edge-litert")
    if _has("tflite_runtime"):
        return "tflite_runtime.interpreter", "tflite-runtime", _version("tflite-runtime")
    return None


def installed() -> tuple[str, str] | None:
    """(runtime name, version) of the TFLite runtime here, else None (nothing imported)."""
    found = interpreter_module()
    return None if found is None else (found[1], found[2])


class TfliteModel:
    def __init__(
        self,
        path: Path,
        threads: int = 1,
        layout: str | None = None,
        standardization: Standardization | None = None,
        *,
        metadata: Metadata | None = None,
    ) -> None:
        found = interpreter_module()
        if found is None:
            raise RuntimeUnavailable("no TFLite runtime is installed: pip install ai-edge-litert")
        module, self.runtime_name, self.runtime_version = found
        self.path = path
        self.metadata = metadata_for(path, metadata)
        try:
            self.interpreter = importlib.import_module(module).Interpreter(model_path=str(path), num_threads=threads)
            self.interpreter.allocate_tensors()
        except Exception as exc:
            raise ArtifactRunError(f"{self.runtime_name} cannot load {path.name}: {exc}") from exc
        self.declared_layout = layout if layout == CHANNEL_LAST else declared_layout(self.metadata)
        self.layout: str | None = self.declared_layout
        self.standardization = standardization or standardization_of(self.metadata)
        self._details()
        sig = self.inp.get("shape_signature")
        self.dynamic_batch = sig is not None and len(sig) > 0 and int(sig[0]) == -1

    def _details(self) -> None:
        self.ins = self.interpreter.get_input_details()
        self.outs = self.interpreter.get_output_details()
        self.inp, self.out = self.ins[0], self.outs[0]
        self.input_shape = tuple(int(d) for d in self.inp["shape"])

    @property
    def input_quantization(self) -> Quantization | None:
        """The first input's quantization (what an int8-input model takes); None for float input."""
        return tensor_quantization(self.inp)

    # one input ------------------------------------------------------------------------------------

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Float batch in the data's layout -> the model's input layout and dtype."""
        x = apply_standardization(check_batch(x), self.standardization)
        self.layout = resolve_layout(self.declared_layout, x, self.input_shape)
        xm = to_model_layout(x, self.layout)
        if tuple(xm.shape[1:]) != self.input_shape[1:]:
            raise ArtifactRunError(
                f"{self.path.name} expects per-sample shape {list(self.input_shape[1:])}, "
                f"got {list(xm.shape[1:])} (layout {self.layout or 'as-is'})"
            )
        q = self.input_quantization
        return quantize(xm, q) if q is not None else xm.astype(self.inp["dtype"], copy=False)

    def invoke_encoded(self, xe: np.ndarray) -> np.ndarray:
        """One call on an already-encoded batch whose size the interpreter accepts; raw output."""
        self.interpreter.set_tensor(self.inp["index"], xe)
        self.interpreter.invoke()
        return np.array(self.interpreter.get_tensor(self.out["index"]))

    def decode(self, raw: np.ndarray) -> np.ndarray:
        q = tensor_quantization(self.out)
        return dequantize(raw, q) if q is not None else raw.astype(np.float32, copy=False)

    def _set_batch(self, n: int) -> None:
        if int(self.ins[0]["shape"][0]) != n:
            for d in self.ins:
                self.interpreter.resize_tensor_input(d["index"], [n, *[int(v) for v in d["shape"][1:]]])
            self.interpreter.allocate_tensors()
            self._details()

    def predict(self, x: np.ndarray, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
        xe = self.encode(x)
        outs: list[np.ndarray] = []
        step = batch_size if self.dynamic_batch else self.input_shape[0]
        for i in range(0, xe.shape[0], step):
            chunk = xe[i : i + step]
            if self.dynamic_batch:
                self._set_batch(chunk.shape[0])
            elif chunk.shape[0] != step:
                raise ArtifactRunError(f"{self.path.name} has a static batch of {step}; got {chunk.shape[0]}")
            outs.append(self.decode(self.invoke_encoded(chunk)))
        return np.concatenate(outs)

    def timed_call(self, x1: np.ndarray) -> Callable[[], Any]:
        xe = self.encode(x1[:1])
        if self.dynamic_batch:
            self._set_batch(1)
        elif self.input_shape[0] != 1:
            raise ArtifactRunError(
                f"{self.path.name} has a static batch of {self.input_shape[0]}; timing needs batch 1"
            )
        return lambda: self.invoke_encoded(xe)

    # inputs and outputs by name -------------------------------------------------------------------

    def _names(
        self, input_names: tuple[str, ...] | None, output_names: tuple[str, ...] | None
    ) -> tuple[list[str], list[str]]:
        ins = io_names(self.path, self.metadata, "inputs", [str(d["name"]) for d in self.ins], input_names)
        outs = io_names(self.path, self.metadata, "outputs", [str(d["name"]) for d in self.outs], output_names)
        return ins, outs

    def encode_all(
        self,
        inputs: Mapping[str, np.ndarray],
        input_names: list[str],
        layouts: Mapping[str, str] | None = None,
    ) -> list[np.ndarray]:
        """Inputs by teacher name -> one array per model input, in the model's layout and dtype."""
        lay = input_layouts(self.metadata, layouts, input_names)
        inputs = single_input_by_position(inputs, input_names)
        require_inputs(self.path, inputs, input_names)
        if len(input_names) == 1 and self.standardization is not None:
            inputs = {input_names[0]: apply_standardization(inputs[input_names[0]], self.standardization)}
        encoded = [encode_input(inputs[k], d, lay.get(k)) for k, d in zip(input_names, self.ins, strict=True)]
        for x, d, k in zip(encoded, self.ins, input_names, strict=True):
            want = [int(v) for v in d["shape"][1:]]
            if list(x.shape[1:]) != want:
                raise ArtifactRunError(f"{self.path.name} input {k!r} takes {want}, got {list(x.shape[1:])}")
        return encoded

    def _invoke_all(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        for x, d in zip(batch, self.ins, strict=True):
            self.interpreter.set_tensor(d["index"], x)
        self.interpreter.invoke()
        return [decode_output(self.interpreter.get_tensor(d["index"]), d) for d in self.outs]

    def predict_all(
        self,
        inputs: Mapping[str, np.ndarray],
        *,
        input_names: tuple[str, ...] | None = None,
        output_names: tuple[str, ...] | None = None,
        layouts: Mapping[str, str] | None = None,
    ) -> dict[str, np.ndarray]:
        """Every output by teacher name for inputs by teacher name: NHWC where the artifact says so
        (layouts: input name -> "NHWC"), int8 I/O (de)quantised with the model's own scales, integer
        inputs cast to the model's integer type; static-batch models are fed one slice at a time."""
        in_names, out_names = self._names(input_names, output_names)
        encoded = self.encode_all(inputs, in_names, layouts)
        n = batch_size_of(dict(zip(in_names, encoded, strict=True)))
        # The interpreter's allocated batch (1 for the exports), also for dynamic-batch files: resizing
        # several inputs at once is not worth the risk for a test split.
        step = int(self.ins[0]["shape"][0]) or 1
        parts: dict[str, list[np.ndarray]] = {k: [] for k in out_names}
        for s in range(0, n, step):
            for k, out in zip(out_names, self._invoke_all([x[s : s + step] for x in encoded]), strict=True):
                parts[k].append(out)
        return concat_outputs(parts)

    def timed_call_all(self, inputs: Mapping[str, np.ndarray]) -> Callable[[], Any]:
        in_names, _ = self._names(None, None)
        one = [x[:1] for x in self.encode_all(inputs, in_names)]
        if self.dynamic_batch:
            self._set_batch(1)
        return lambda: self._invoke_all(one)

    def io_quantization(self) -> dict[str, Any] | None:
        """Teacher input name -> the quantization of each int8 input, None when every input is float."""
        in_names, _ = self._names(None, None)
        found = {n: q.as_dict() for n, d in zip(in_names, self.ins, strict=True) if (q := quantized_io(d)) is not None}
        return found or None

    @property
    def layouts(self) -> dict[str, str]:
        in_names, _ = self._names(None, None)
        return input_layouts(self.metadata, None, in_names)


def open_model(path: Path, *, threads: int = 1, metadata: Metadata | None = None) -> TfliteModel:
    return TfliteModel(path, threads, metadata=metadata)


def run_tflite(
    path: Path,
    x: np.ndarray,
    threads: int = 1,
    layout: str | None = None,
    standardization: Standardization | None = None,
) -> np.ndarray:
    return TfliteModel(path, threads, layout, standardization).predict(x)
