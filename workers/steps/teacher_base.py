"""The Teacher interface every teacher format implements (teacher.py: ONNX, TorchScript, torch.export;
teacher_tflite.py: TFLite) and the helpers they share. Its own module so that the format modules
import it while teacher.load_teacher, which picks a format, imports them: no module imports its
importer."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.contracts.errors import InputError
from edgedistill.contracts.formats import ModelFormat
from edgedistill.contracts.signature import INT_DTYPES, ModelSignature, TensorSpec


@dataclass(frozen=True)
class Signature:
    """Single-input view of the teacher, per sample (no batch axis): its first input and first output.

    input_shape / output_shape are None while unknown (TorchScript carries no shapes)."""

    input_name: str
    input_shape: tuple[int, ...] | None
    input_dtype: str  # numpy dtype name the model consumes
    output_shape: tuple[int, ...] | None
    fixed_batch: int | None = None  # the model only accepts this batch size (exported with a static batch)


def _batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def guess_layout(dtype: str, shape: tuple[int | None, ...]) -> str:
    """The axes' likely meaning from dtype and rank (batch included): token ids, NCHW/NHWC images..."""
    rank = len(shape)
    if dtype in INT_DTYPES and rank == 2:
        return "tokens"
    if rank == 2:
        return "NC"
    if rank == 4:
        if shape[1] in (1, 2, 3, 4) and shape[-1] not in (1, 2, 3, 4):
            return "NCHW"
        if shape[-1] in (1, 2, 3, 4):
            return "NHWC"
    if rank == 3:
        return "NCL"
    return "unknown"


def known_dims(shape: tuple[int | None, ...]) -> tuple[int, ...] | None:
    dims = [d for d in shape if d is not None]
    return tuple(int(d) for d in dims) if len(dims) == len(shape) else None


def _out_dtype(arr: np.ndarray) -> np.ndarray:
    """Float outputs as float32, integer (class index) outputs as int64."""
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64, copy=False)
    return arr.astype(np.float32, copy=False)


def data_dtype(dtype: np.dtype[Any]) -> str:
    return "int64" if dtype.kind in "iub" else "float32"


class Teacher(ABC):
    format: ModelFormat
    runtime_name: str
    runtime_version: str
    ranks_known = True  # False: the file records no input ranks (TorchScript), the data decides

    def __init__(self, path: Path, io: ModelSignature) -> None:
        self.path = path
        self.io = io  # kinds unset; shapes with None where dynamic or still unknown
        self.declared_io = io  # as the file declares it, before completion from the data
        self.file_bytes = _files_bytes(path)
        self._macs: int | None = None
        self._macs_done = False

    # ---- what each format provides -------------------------------------------------------------
    @property
    @abstractmethod
    def param_count(self) -> int: ...

    @abstractmethod
    def _run_all(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One batch by input name (each in its model dtype) -> every output, in io.outputs order."""

    @abstractmethod
    def _count_macs(self) -> int | None: ...

    # ---- shared behaviour ------------------------------------------------------------------------
    @property
    def fixed_batch(self) -> int | None:
        return self.io.inputs[0].fixed_batch

    @property
    def signature(self) -> Signature:
        first, out = self.io.inputs[0], self.io.outputs[0]
        return Signature(
            input_name=first.name,
            input_shape=known_dims(first.per_sample),
            input_dtype=first.dtype,
            output_shape=known_dims(out.per_sample),
            fixed_batch=first.fixed_batch,
        )

    def shapes_known(self) -> bool:
        return all(known_dims(t.per_sample) is not None for t in (*self.io.inputs, *self.io.outputs))

    def macs(self) -> int | None:
        """Multiply-accumulates per sample, or None when it cannot be computed."""
        if any(known_dims(t.per_sample) is None for t in self.io.inputs):
            return None
        if not self._macs_done:
            try:
                self._macs = self._count_macs()
            except Exception:  # an estimate only: a model we cannot count is still usable
                self._macs = None
            self._macs_done = True
        return self._macs

    def _feeds(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds: dict[str, np.ndarray] = {}
        for spec in self.io.inputs:
            if spec.name not in inputs:
                raise InputError(f"the teacher's input {spec.name!r} was not given (given: {', '.join(inputs)})")
            feeds[spec.name] = np.ascontiguousarray(inputs[spec.name], dtype=np.dtype(spec.dtype))
        rows = {int(a.shape[0]) if a.ndim else 0 for a in feeds.values()}
        if len(rows) != 1 or 0 in rows:
            raise InputError(f"the teacher's inputs need the same, non-zero number of samples (got {sorted(rows)})")
        return feeds

    def predict_all(self, inputs: Mapping[str, np.ndarray], batch_size: int = 256) -> dict[str, np.ndarray]:
        """Every output by name for inputs by name ((N, *per-sample) each): float32, or int64 for integer
        (class index) outputs. Fixed-batch models are fed in chunks of their batch (batch 1: one sample
        at a time), the last chunk padded by repeating its last sample and the padding dropped."""
        feeds = self._feeds(inputs)
        n = next(iter(feeds.values())).shape[0]
        fixed = self.fixed_batch
        step = fixed or max(1, batch_size)
        parts: list[list[np.ndarray]] = [[] for _ in self.io.outputs]
        for sl in _batches(n, step):
            chunk = {k: v[sl] for k, v in feeds.items()}
            m = sl.stop - sl.start
            if fixed and m < fixed:
                chunk = {k: np.concatenate([v, np.repeat(v[-1:], fixed - m, axis=0)]) for k, v in chunk.items()}
            try:
                outs = self._run_all(chunk)
            except InputError:
                raise
            except Exception as exc:
                shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in chunk.items())
                raise InputError(
                    f"the teacher failed on inputs of shape {shapes} ({self.runtime_name}): {first_line(exc)}"
                ) from exc
            if len(outs) != len(self.io.outputs):
                raise InputError(f"the teacher returned {len(outs)} outputs; it declares {len(self.io.outputs)}")
            for i, out in enumerate(outs):
                arr = np.asarray(out)
                if arr.ndim == 0 or arr.shape[0] != chunk[self.io.inputs[0].name].shape[0]:
                    raise InputError(
                        f"the teacher's output {self.io.outputs[i].name!r} has shape {tuple(arr.shape)}, "
                        "without the batch axis first"
                    )
                parts[i].append(_out_dtype(arr[:m]))
        return {spec.name: np.concatenate(p) for spec, p in zip(self.io.outputs, parts, strict=True)}

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Single-input view: the first output as float32 (N, *output_shape) for x (N, *input_shape)."""
        if x.ndim < 1 or x.shape[0] == 0:
            raise InputError("teacher.predict needs at least one sample")
        if len(self.io.inputs) != 1:
            raise InputError(f"the teacher takes {len(self.io.inputs)} inputs; use predict_all")
        out = self.predict_all({self.io.inputs[0].name: x}, batch_size=batch_size)
        return out[self.io.outputs[0].name].astype(np.float32, copy=False)

    def complete_io(self, probe: Mapping[str, np.ndarray]) -> None:
        """Fix unknown per-sample dims (and, for TorchScript, dtypes and output names) from a few real
        samples by input name; refuses data whose fixed dims differ from the model's."""
        inputs: list[TensorSpec] = []
        for spec in self.io.inputs:
            if spec.name not in probe:
                raise InputError(f"no data for the teacher's input {spec.name!r}")
            arr = probe[spec.name]
            got = tuple(int(d) for d in arr.shape[1:])
            want = spec.per_sample
            mismatch = len(got) != len(want) or any(w is not None and w != g for w, g in zip(want, got, strict=False))
            if self.ranks_known and mismatch:
                raise InputError(
                    f"data for input {spec.name!r} has per-sample shape {got} but the teacher expects "
                    f"{tuple('?' if d is None else d for d in want)}"
                )
            inputs.append(spec.model_copy(update={"shape": (spec.shape[0], *got)}))
        self.io = self.io.model_copy(update={"inputs": tuple(inputs)})
        self._complete_more(probe)
        fixed = self.fixed_batch or 1
        sample = {k: np.asarray(v)[:fixed] for k, v in probe.items()}
        outs = self.predict_all(sample)
        outputs = tuple(
            o.model_copy(update={"shape": (o.shape[0] if o.shape else None, *outs[o.name].shape[1:])})
            for o in self.io.outputs
        )
        self.io = self.io.model_copy(update={"outputs": outputs})
        self._macs_done = False

    def _complete_more(self, probe: Mapping[str, np.ndarray]) -> None:
        """Format-specific completion before the output probe (TorchScript: dtypes, fixed batch)."""
        return None

    def complete_signature(self, sample_shape: tuple[int, ...], probe: np.ndarray) -> None:
        """Single-input view of complete_io."""
        name = self.io.inputs[0].name
        want = self.signature.input_shape
        if want is not None and tuple(want) != tuple(sample_shape):
            raise InputError(f"data x has per-sample shape {tuple(sample_shape)} but the teacher expects {want}")
        self.complete_io({name: probe})

    def describe(self) -> dict[str, Any]:
        sig = self.signature
        return {
            "format": self.format,
            "runtime": self.runtime_name,
            "runtime_version": self.runtime_version,
            "input_name": sig.input_name,
            "input_shape": list(sig.input_shape) if sig.input_shape else None,
            "input_dtype": sig.input_dtype,
            "output_shape": list(sig.output_shape) if sig.output_shape else None,
            "inputs": [t.model_dump() for t in self.io.inputs],
            "outputs": [t.model_dump(exclude={"kind"}) for t in self.io.outputs],
            "declared": self.declared_io.model_dump(exclude={"outputs": {"__all__": {"kind"}}}),
            "params": self.param_count,
            "file_bytes": self.file_bytes,
            "macs": self.macs(),
        }


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]


def _files_bytes(path: Path) -> int:
    return path.stat().st_size
