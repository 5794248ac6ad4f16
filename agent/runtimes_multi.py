"""Run an artifact of a several-input / several-output student on the device, inputs and outputs by
the teacher's names: onnxruntime feeds each input by name in the type the model declares (token ids
as integers); a TFLite file takes its inputs in the order the artifact metadata's teacher_io names,
image inputs NHWC where input_layouts says so, int8 inputs quantized and int8 outputs dequantized
with the scale and zero-point read from the model itself, integer ids cast to the model's type."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.agent.errors import AgentError, RuntimeUnavailable
from edgedistill.agent.runtimes import (
    CHANNEL_LAST,
    ORT_NUMPY_TYPES,
    Quantization,
    dequantize,
    family,
    open_onnx_session,
    quantize,
    standardize_input,
    tflite_quantization,
    tflite_runtime_module,
    to_layout,
)


def _n(inputs: dict[str, np.ndarray]) -> int:
    sizes = {int(v.shape[0]) for v in inputs.values()}
    if len(sizes) != 1 or 0 in sizes:
        raise AgentError(f"the probe's inputs must be non-empty batches of one size, got {sorted(sizes)}")
    return sizes.pop()


def _concat(parts: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate(v) for k, v in parts.items()}


class OnnxMultiModel:
    runtime_name = "onnxruntime"

    def __init__(self, path: Path, threads: int = 1) -> None:
        self.session, self.runtime_version = open_onnx_session(path, threads)
        self.path = path
        self.ins = self.session.get_inputs()
        self.output_names = [o.name for o in self.session.get_outputs()]
        first = self.ins[0].shape[0] if self.ins[0].shape else None
        self.fixed_batch = first if isinstance(first, int) else None
        self.input_quantization: dict[str, Any] | None = None
        self.layouts: dict[str, str] = {}

    def _feeds(self, inputs: dict[str, np.ndarray], start: int, stop: int) -> dict[str, np.ndarray]:
        if len(self.ins) == 1 and self.ins[0].name not in inputs and len(inputs) == 1:
            inputs = {self.ins[0].name: next(iter(inputs.values()))}
        missing = [i.name for i in self.ins if i.name not in inputs]
        if missing:
            raise AgentError(f"{self.path.name} takes inputs {missing} that the probe does not have")
        return {
            i.name: np.ascontiguousarray(inputs[i.name][start:stop], dtype=ORT_NUMPY_TYPES.get(i.type, np.float32))
            for i in self.ins
        }

    def predict_all(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = _n(inputs)
        step = self.fixed_batch or n
        parts: dict[str, list[np.ndarray]] = {k: [] for k in self.output_names}
        for s in range(0, n, step):
            for k, v in zip(self.output_names, self.session.run(None, self._feeds(inputs, s, s + step)), strict=True):
                parts[k].append(np.asarray(v))
        return _concat(parts)

    def timed_call(self, inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
        feeds = self._feeds(inputs, 0, 1)
        return lambda: self.session.run(None, feeds)


class TfliteMultiModel:
    def __init__(self, path: Path, metadata: dict[str, Any], threads: int = 1) -> None:
        found = tflite_runtime_module()
        if found is None:
            raise RuntimeUnavailable("no TFLite runtime is installed: pip install ai-edge-litert")
        module, self.runtime_name, self.runtime_version = found
        try:
            self.interpreter = importlib.import_module(module).Interpreter(model_path=str(path), num_threads=threads)
            self.interpreter.allocate_tensors()
        except Exception as exc:
            raise AgentError(f"{self.runtime_name} cannot load {path.name}: {exc}") from exc
        self.path = path
        self.metadata = metadata
        self._details()
        io = metadata.get("teacher_io") or {}
        self.input_names = self._names(io.get("inputs"), [str(d["name"]) for d in self.ins], "inputs")
        self.output_names = self._names(io.get("outputs"), [str(d["name"]) for d in self.outs], "outputs")
        layouts = metadata.get("input_layouts")
        self.layouts = {str(k): str(v) for k, v in layouts.items()} if isinstance(layouts, dict) else {}
        sig = self.ins[0].get("shape_signature")
        self.dynamic_batch = sig is not None and len(sig) > 0 and int(sig[0]) == -1

    def _details(self) -> None:
        self.ins = self.interpreter.get_input_details()
        self.outs = self.interpreter.get_output_details()
        self.quant_in: list[Quantization | None] = [
            tflite_quantization(d) if np.dtype(d["dtype"]) in (np.int8, np.uint8, np.int16) else None for d in self.ins
        ]
        self.quant_out: list[Quantization | None] = [
            tflite_quantization(d) if np.dtype(d["dtype"]) in (np.int8, np.uint8, np.int16) else None for d in self.outs
        ]

    @property
    def input_quantization(self) -> dict[str, Any] | None:
        found = {n: q.as_dict() for n, q in zip(self.input_names, self.quant_in, strict=True) if q is not None}
        return found or None

    def _names(self, declared: Any, found: list[str], role: str) -> list[str]:
        # litert-torch names tensors args_0.. / output_0..: the teacher's names come from the metadata
        names = [str(n) for n in declared] if isinstance(declared, list) else found
        if len(names) != len(found):
            raise AgentError(f"{self.path.name} has {len(found)} {role}; its metadata names {len(names)}")
        return names

    def encode(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        if len(self.input_names) == 1 and self.input_names[0] not in inputs and len(inputs) == 1:
            inputs = {self.input_names[0]: next(iter(inputs.values()))}
        missing = [k for k in self.input_names if k not in inputs]
        if missing:
            raise AgentError(f"{self.path.name} takes inputs {missing} that the probe does not have")
        encoded: list[np.ndarray] = []
        for name, d, q in zip(self.input_names, self.ins, self.quant_in, strict=True):
            x = np.asarray(inputs[name])
            dtype = np.dtype(d["dtype"])
            if q is None and np.issubdtype(dtype, np.integer):
                xm = np.ascontiguousarray(x.astype(dtype))  # token ids and masks stay integers
            else:
                xf = x.astype(np.float32)
                if len(self.input_names) == 1:
                    xf = standardize_input(xf, self.metadata)
                xm = to_layout(xf, self.layouts.get(name) if self.layouts.get(name) == CHANNEL_LAST else None)
                xm = quantize(xm, q) if q is not None else np.ascontiguousarray(xm.astype(dtype))
            want = tuple(int(v) for v in d["shape"][1:])
            if tuple(xm.shape[1:]) != want:
                raise AgentError(f"{self.path.name} input {name!r} takes {list(want)}, the probe {list(xm.shape[1:])}")
            encoded.append(xm)
        return encoded

    def _invoke(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        for x, d in zip(batch, self.ins, strict=True):
            self.interpreter.set_tensor(d["index"], x)
        self.interpreter.invoke()
        raws = [np.array(self.interpreter.get_tensor(d["index"])) for d in self.outs]
        return [dequantize(r, q) if q is not None else r for r, q in zip(raws, self.quant_out, strict=True)]

    def _set_batch(self, n: int) -> None:
        if int(self.ins[0]["shape"][0]) != n:
            for d in self.ins:
                self.interpreter.resize_tensor_input(d["index"], [n, *[int(v) for v in d["shape"][1:]]])
            self.interpreter.allocate_tensors()
            self._details()

    def predict_all(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        encoded = self.encode(inputs)
        n = _n(dict(zip(self.input_names, encoded, strict=True)))
        if self.dynamic_batch:
            self._set_batch(n)
        step = n if self.dynamic_batch else int(self.ins[0]["shape"][0]) or 1
        parts: dict[str, list[np.ndarray]] = {k: [] for k in self.output_names}
        for s in range(0, n, step):
            for k, out in zip(self.output_names, self._invoke([x[s : s + step] for x in encoded]), strict=True):
                parts[k].append(out)
        return _concat(parts)

    def timed_call(self, inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
        one = [x[:1] for x in self.encode(inputs)]
        if self.dynamic_batch:
            self._set_batch(1)
        return lambda: self._invoke(one)


def load_multi_model(path: Path, kind: str, metadata: dict[str, Any], *, threads: int) -> Any:
    if family(kind) == "onnx":
        return OnnxMultiModel(path, threads)
    return TfliteMultiModel(path, metadata, threads)
