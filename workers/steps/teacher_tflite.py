"""TFLite teachers, run with ai-edge-litert's interpreter (the fourth teacher format).

Many models people want smaller ship only as .tflite (MediaPipe, openWakeWord). The interpreter's
tensor details give names, shapes (``shape_signature``: -1 where dynamic), dtypes and int8/uint8
quantisation; quantised inputs are fed float data quantised with the model's own scale/zero-point
and quantised outputs are dequantised, so the rest of the engine sees float32 as for any teacher.
Models with a static batch (most TFLite files: batch 1) run one sample at a time; a dynamic batch
is resized per chunk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.contracts.errors import InputError
from edgedistill.contracts.formats import ModelFileError, ModelFormat
from edgedistill.contracts.signature import ModelSignature, OutputSpec, TensorSpec
from edgedistill.workers.steps.teacher_base import Teacher, first_line, guess_layout

_DTYPES = {
    np.float32: "float32",
    np.float16: "float16",
    np.int8: "int8",
    np.uint8: "uint8",
    np.int16: "int16",
    np.int32: "int32",
    np.int64: "int64",
    np.bool_: "bool",
}


def _quant(detail: dict[str, Any]) -> tuple[float, int] | None:
    """(scale, zero_point) of a per-tensor quantised int8/uint8/int16 tensor, else None."""
    scale, zp = detail.get("quantization", (0.0, 0))
    if detail["dtype"] in (np.int8, np.uint8, np.int16) and scale:
        return float(scale), int(zp)
    return None


def _dims(detail: dict[str, Any]) -> tuple[int | None, ...]:
    sig = detail.get("shape_signature")
    dims = sig if sig is not None and len(sig) else detail["shape"]
    return tuple(int(d) if int(d) > 0 else None for d in dims)


class TfliteTeacher(Teacher):
    format: ModelFormat = "tflite"
    runtime_name = "ai-edge-litert"

    def __init__(self, path: Path) -> None:
        import ai_edge_litert
        from ai_edge_litert.interpreter import Interpreter

        try:
            self._interp = Interpreter(model_path=str(path), num_threads=2)
        except Exception as exc:
            raise ModelFileError(f"ai-edge-litert cannot load {path.name!r}: {first_line(exc)}") from exc
        self.runtime_version = str(getattr(ai_edge_litert, "__version__", "unknown"))
        self._in = self._interp.get_input_details()
        self._out = self._interp.get_output_details()
        self._in_q = [_quant(d) for d in self._in]
        self._out_q = [_quant(d) for d in self._out]
        inputs: list[TensorSpec] = []
        for d, q in zip(self._in, self._in_q, strict=True):
            dims = _dims(d)
            if not dims:
                raise InputError(f"the TFLite teacher's input {d['name']!r} is a scalar; it needs a batch axis")
            dtype = "float32" if q is not None else _DTYPES.get(d["dtype"])
            if dtype is None:
                raise InputError(f"the TFLite teacher's input {d['name']!r} has unsupported type {d['dtype']}")
            inputs.append(TensorSpec(name=d["name"], dtype=dtype, shape=dims, layout=guess_layout(dtype, dims)))  # type: ignore[arg-type]
        outputs: list[OutputSpec] = []
        for d, q in zip(self._out, self._out_q, strict=True):
            kind = d["dtype"]
            dtype = "float32" if q is not None or kind in (np.float32, np.float16) else "int64"
            outputs.append(OutputSpec(name=d["name"], dtype=dtype, shape=_dims(d) or (None,)))  # type: ignore[arg-type]
        super().__init__(path, ModelSignature(inputs=tuple(inputs), outputs=tuple(outputs)))
        self._allocated: tuple[tuple[int, ...], ...] | None = None
        self.quantized_io = {
            **{d["name"]: q for d, q in zip(self._in, self._in_q, strict=True) if q},
            **{d["name"]: q for d, q in zip(self._out, self._out_q, strict=True) if q},
        }

    @property
    def param_count(self) -> int:
        """Elements of the constant tensors (weights) in the flatbuffer."""
        from ai_edge_litert.tools import flatbuffer_utils

        model = flatbuffer_utils.read_model_from_bytearray(bytearray(self.path.read_bytes()))
        total = 0
        for sg in model.subgraphs:
            for t in sg.tensors:
                buf = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
                if buf is not None and buf.data is not None and len(buf.data) and t.shape is not None:
                    total += int(np.prod(t.shape)) if len(t.shape) else 1
        return total

    def _resize(self, shapes: tuple[tuple[int, ...], ...]) -> None:
        if self._allocated == shapes:
            return
        for d, shape in zip(self._in, shapes, strict=True):
            if tuple(int(v) for v in d["shape"]) != shape:
                self._interp.resize_tensor_input(d["index"], list(shape))
        self._interp.allocate_tensors()
        self._allocated = shapes

    def _run_all(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        arrays = [feeds[d["name"]] for d in self._in]
        self._resize(tuple(tuple(int(v) for v in a.shape) for a in arrays))
        for d, q, a in zip(self._in, self._in_q, arrays, strict=True):
            if q is not None:  # float data -> the model's int8 with its own scale / zero-point
                info = np.iinfo(d["dtype"])
                a = np.clip(np.round(a / q[0]) + q[1], info.min, info.max).astype(d["dtype"])
            self._interp.set_tensor(d["index"], np.ascontiguousarray(a, dtype=d["dtype"]))
        self._interp.invoke()
        outs: list[np.ndarray] = []
        for d, q in zip(self._out, self._out_q, strict=True):
            raw = self._interp.get_tensor(d["index"])
            outs.append((raw.astype(np.float32) - q[1]) * q[0] if q is not None else np.array(raw))
        return outs

    def _count_macs(self) -> int | None:
        return None  # no FLOP counter for flatbuffers here; the estimate is optional
