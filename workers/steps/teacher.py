"""Teacher models behind one interface: ONNX (onnxruntime), TorchScript (torch.jit) and torch.export
(.pt2). Every file is sniffed by workers.formats first, so pickles and unsafe archives never reach a
loader. A teacher predicts float32 outputs for numpy batches and reports its size and cost."""

from __future__ import annotations

import contextlib
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from workers.formats import ModelFileError, ModelFormat, UnsafeModelFile, sniff_model_format
from workers.pipeline.errors import InputError


@dataclass(frozen=True)
class Signature:
    """What the teacher consumes and produces, per sample (no batch axis).

    input_shape / output_shape are None while unknown: TorchScript programs carry no shapes, so they
    are completed from the transfer data (Teacher.complete_signature)."""

    input_name: str
    input_shape: tuple[int, ...] | None
    input_dtype: str  # numpy dtype name the model consumes
    output_shape: tuple[int, ...] | None
    fixed_batch: int | None = None  # the model only accepts this batch size (exported with a static batch)


def _batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


class Teacher(ABC):
    format: ModelFormat
    runtime_name: str
    runtime_version: str

    def __init__(self, path: Path, signature: Signature) -> None:
        self.path = path
        self.signature = signature
        self.file_bytes = _files_bytes(path)
        self._macs: int | None = None
        self._macs_done = False

    @property
    @abstractmethod
    def param_count(self) -> int: ...

    @abstractmethod
    def _run(self, x: np.ndarray) -> np.ndarray:
        """One batch in the model's dtype -> first output as float32 with a batch axis."""

    @abstractmethod
    def _count_macs(self) -> int | None: ...

    def macs(self) -> int | None:
        """Multiply-accumulates per sample, or None when it cannot be computed."""
        if self.signature.input_shape is None:
            return None
        if not self._macs_done:
            try:
                self._macs = self._count_macs()
            except Exception:  # an estimate only: a model we cannot count is still usable
                self._macs = None
            self._macs_done = True
        return self._macs

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Outputs for x (N, *input_shape) as float32 (N, *output_shape)."""
        if x.ndim < 1 or x.shape[0] == 0:
            raise InputError("teacher.predict needs at least one sample")
        x = np.ascontiguousarray(x, dtype=np.dtype(self.signature.input_dtype))
        fixed = self.signature.fixed_batch
        step = fixed or max(1, batch_size)
        outs: list[np.ndarray] = []
        for sl in _batches(x.shape[0], step):
            chunk = x[sl]
            n = chunk.shape[0]
            if fixed and n < fixed:  # pad the last chunk up to the static batch, drop the padding after
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed - n, axis=0)])
            try:
                out = self._run(chunk)
            except InputError:
                raise
            except Exception as exc:
                raise InputError(
                    f"the teacher failed on inputs of shape {tuple(chunk.shape)} ({self.runtime_name}): "
                    f"{_first_line(exc)}"
                ) from exc
            outs.append(out[:n])
        return np.concatenate(outs).astype(np.float32, copy=False)

    def complete_signature(self, sample_shape: tuple[int, ...], probe: np.ndarray) -> None:
        """Fix unknown shapes from the transfer data: probe is a few real samples (k, *sample_shape)."""
        sig = self.signature
        if sig.input_shape is not None and sig.input_shape != sample_shape:
            raise InputError(f"data x has per-sample shape {sample_shape} but the teacher expects {sig.input_shape}")
        fixed = sig.fixed_batch
        if fixed is None and sig.input_shape is None:
            fixed = self._detect_fixed_batch(probe)
        self.signature = replace(sig, input_shape=sample_shape, fixed_batch=fixed)
        out = self.predict(probe[: max(1, fixed or 1)])
        self.signature = replace(self.signature, output_shape=tuple(int(d) for d in out.shape[1:]))
        self._macs_done = False

    def _detect_fixed_batch(self, probe: np.ndarray) -> int | None:
        """Traced programs sometimes bake in batch 1; try two samples, fall back to one at a time."""
        x = np.ascontiguousarray(probe, dtype=np.dtype(self.signature.input_dtype))
        if x.shape[0] < 2:
            return None
        try:
            out = self._run(x[:2])
            if out.shape[0] == 2:
                return None
        except Exception:
            pass
        try:
            out = self._run(x[:1])
        except Exception as exc:
            raise InputError(
                f"the teacher failed on data of per-sample shape {tuple(x.shape[1:])}: {_first_line(exc)}"
            ) from exc
        return 1

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
            "params": self.param_count,
            "file_bytes": self.file_bytes,
            "macs": self.macs(),
        }


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]


def _files_bytes(path: Path) -> int:
    return path.stat().st_size


# --------------------------------------------------------------------------------------------------
# ONNX
# --------------------------------------------------------------------------------------------------

_ONNX_DTYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
}


def check_onnx_external_data(model: Any, model_dir: Path) -> list[Path]:
    """Every external-data location must be a relative path inside the model's folder.

    Returns the files referenced. Checked before onnxruntime opens anything."""
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    root = model_dir.resolve()
    files: list[Path] = []
    for tensor in _get_all_tensors(model):
        if not uses_external_data(tensor):
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        if not location:
            raise InputError(f"ONNX tensor {tensor.name!r} uses external data without a location")
        if (
            os.path.isabs(location)
            or location.startswith(("/", "\\"))
            or ".." in Path(location.replace("\\", "/")).parts
            or ":" in location
        ):
            raise UnsafeModelFile(
                f"ONNX tensor {tensor.name!r} points at external data {location!r} outside the model's folder"
            )
        target = (root / location).resolve()
        if not target.is_relative_to(root):
            raise UnsafeModelFile(
                f"ONNX tensor {tensor.name!r} points at external data {location!r} outside the model's folder"
            )
        if not target.is_file():
            raise InputError(f"ONNX tensor {tensor.name!r} needs external data file {location!r}, which is missing")
        if target not in files:
            files.append(target)
    return files


class OnnxTeacher(Teacher):
    format: ModelFormat = "onnx"
    runtime_name = "onnxruntime"

    def __init__(self, path: Path) -> None:
        import onnx
        import onnxruntime as ort

        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:
            raise ModelFileError(f"model file {path.name!r} is not a valid ONNX model: {_first_line(exc)}") from exc
        self._external = check_onnx_external_data(model, path.parent)
        self._proto = model
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        # The teacher runs in a few bulk passes; idle onnxruntime threads must not spin-wait on the
        # cores the student then trains on.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise InputError(f"onnxruntime cannot load the teacher: {_first_line(exc)}") from exc
        self.runtime_version = ort.__version__
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1:
            names = ", ".join(i.name for i in inputs)
            raise InputError(
                f"the ONNX teacher has {len(inputs)} inputs ({names}); only single-input models are supported"
            )
        inp, out = inputs[0], outputs[0]
        dtype = _ONNX_DTYPES.get(inp.type)
        if dtype is None:
            raise InputError(f"the ONNX teacher's input {inp.name!r} has unsupported type {inp.type}")
        shape = list(inp.shape)
        if not shape:
            raise InputError(f"the ONNX teacher's input {inp.name!r} is a scalar; it needs a batch axis")
        fixed = int(shape[0]) if isinstance(shape[0], int) and shape[0] > 0 else None
        per_sample = tuple(shape[1:])
        in_shape = tuple(int(d) for d in per_sample) if all(isinstance(d, int) and d > 0 for d in per_sample) else None
        out_dims = list(out.shape)[1:]
        out_shape = tuple(int(d) for d in out_dims) if all(isinstance(d, int) and d > 0 for d in out_dims) else None
        self._output_name = out.name
        super().__init__(path, Signature(inp.name, in_shape, dtype, out_shape, fixed_batch=fixed))
        self.file_bytes += sum(f.stat().st_size for f in self._external)

    @property
    def param_count(self) -> int:
        return sum(math.prod(t.dims) for t in self._proto.graph.initializer)

    def _run(self, x: np.ndarray) -> np.ndarray:
        (out,) = self._session.run([self._output_name], {self.signature.input_name: x})
        return np.asarray(out, dtype=np.float32)

    def _count_macs(self) -> int | None:
        from workers.steps.onnx_macs import count_onnx_macs

        assert self.signature.input_shape is not None
        return count_onnx_macs(self._proto, self.signature.input_name, self.signature.input_shape)


# --------------------------------------------------------------------------------------------------
# TorchScript and torch.export
# --------------------------------------------------------------------------------------------------


def _first_tensor(out: Any) -> Any:
    import torch

    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    if isinstance(out, dict) and out:
        first = next(iter(out.values()))
        if isinstance(first, torch.Tensor):
            return first
    raise InputError(f"the teacher returned {type(out).__name__}; edgedistill needs a tensor of outputs")


class _TorchTeacher(Teacher):
    runtime_name: str

    def __init__(self, path: Path, module: Any, signature: Signature, device: str) -> None:
        import torch

        self._module = module
        self._device = torch.device(device)
        self.runtime_version = torch.__version__
        super().__init__(path, signature)

    def _run(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            t = torch.from_numpy(x).to(self._device)
            out = _first_tensor(self._module(t))
            return out.detach().float().cpu().numpy()

    def _count_macs(self) -> int | None:
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        assert self.signature.input_shape is not None
        n = self.signature.fixed_batch or 1
        x = torch.zeros((n, *self.signature.input_shape), dtype=getattr(torch, self.signature.input_dtype))
        counter = FlopCounterMode(display=False)
        with counter, torch.inference_mode():
            self._module(x.to(self._device))
        # FlopCounterMode counts 2 FLOPs per multiply-accumulate.
        return int(counter.get_total_flops() // 2 // n) or None


class TorchScriptTeacher(_TorchTeacher):
    format: ModelFormat = "torchscript"
    runtime_name = "torch.jit"

    def __init__(self, path: Path, device: str = "cpu") -> None:
        import torch

        try:
            module = torch.jit.load(str(path), map_location=device)
        except Exception as exc:
            raise ModelFileError(f"torch.jit cannot load {path.name!r}: {_first_line(exc)}") from exc
        module.eval()
        self._params = sum(p.numel() for p in module.parameters())
        super().__init__(path, module, Signature("input", None, "float32", None), device)

    @property
    def param_count(self) -> int:
        return int(self._params)


@contextlib.contextmanager
def _weights_only_torch_load() -> Iterator[None]:
    """torch.export.load falls back to full unpickling in places; force torch.load's safe unpickler.

    formats.check_pt2_archive already refused archives that need it; this is the second lock."""
    key = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"
    old = os.environ.get(key)
    os.environ[key] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


class ExportedProgramTeacher(_TorchTeacher):
    format: ModelFormat = "pt2"
    runtime_name = "torch.export"

    def __init__(self, path: Path, device: str = "cpu") -> None:
        import torch

        try:
            # A file object, not the path: uploads are stored without the .pt2 suffix torch expects.
            with _weights_only_torch_load(), path.open("rb") as f:
                ep = torch.export.load(f)
        except Exception as exc:
            raise ModelFileError(f"torch.export cannot load {path.name!r}: {_first_line(exc)}") from exc
        if device != "cpu":
            from torch.export.passes import move_to_device_pass

            ep = move_to_device_pass(ep, device)
        user_inputs = list(ep.graph_signature.user_inputs)
        if len(user_inputs) != 1:
            raise InputError(
                f"the exported teacher takes {len(user_inputs)} inputs; only single-input models are supported"
            )
        node = next(n for n in ep.graph.nodes if n.op == "placeholder" and n.name == user_inputs[0])
        val = node.meta.get("val")
        shape = tuple(val.shape) if val is not None else ()
        if not shape:
            raise InputError("the exported teacher's input has no batch axis")
        static = [isinstance(d, int) for d in shape]
        in_shape = tuple(int(d) for d in shape[1:]) if all(static[1:]) else None
        fixed = int(shape[0]) if static[0] else None
        dtype = str(val.dtype).removeprefix("torch.") if val is not None else "float32"
        self._params = sum(int(p.numel()) for p in ep.parameters())
        super().__init__(path, ep.module(), Signature(user_inputs[0], in_shape, dtype, None, fixed_batch=fixed), device)

    @property
    def param_count(self) -> int:
        return self._params


def load_teacher(path: Path, *, device: str = "cpu") -> Teacher:
    """Sniff the file's format from its bytes, then open it with the matching runtime."""
    if not path.is_file():
        raise InputError(f"teacher file {str(path)!r} does not exist")
    fmt = sniff_model_format(path)
    if fmt == "onnx":
        return OnnxTeacher(path)  # this machine's onnxruntime has only the CPU provider
    if fmt == "torchscript":
        return TorchScriptTeacher(path, device=device)
    return ExportedProgramTeacher(path, device=device)
