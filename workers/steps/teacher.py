"""Teacher models behind one interface: ONNX (onnxruntime), TorchScript (torch.jit), torch.export
(.pt2) and TFLite (ai-edge-litert, workers.steps.teacher_tflite). Every file is sniffed by
workers.formats first, so pickles and unsafe archives never reach a loader.

A teacher declares its whole I/O as a ModelSignature (``teacher.io``: every input and output with
name, dtype, shape with None for dynamic dims, layout) and runs ``predict_all`` over dicts of numpy
arrays by input name. Shapes a format does not record (TorchScript) are completed from the data.
``signature``/``predict`` are the single-input, first-output view the older steps use."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.contracts.errors import InputError
from edgedistill.contracts.formats import ModelFileError, ModelFormat, UnsafeModelFile, sniff_model_format
from edgedistill.contracts.signature import INT_DTYPES, ModelSignature, OutputSpec, TensorSpec
from edgedistill.workers.steps.teacher_base import Teacher, data_dtype, first_line, guess_layout, known_dims

# --------------------------------------------------------------------------------------------------
# ONNX
# --------------------------------------------------------------------------------------------------

_ONNX_DTYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int16)": "int16",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(bool)": "bool",
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


def _onnx_dims(shape: Any) -> tuple[int | None, ...]:
    return tuple(int(d) if isinstance(d, int) and d > 0 else None for d in (shape or []))


def _zipmap_to_array(out: Any) -> np.ndarray:
    """skl2onnx's ZipMap output (a list of {class: probability} per sample) as (N, classes) float32."""
    if isinstance(out, list) and out and isinstance(out[0], dict):
        keys = sorted(out[0])
        return np.asarray([[row[k] for k in keys] for row in out], dtype=np.float32)
    return np.asarray(out)


class OnnxTeacher(Teacher):
    format: ModelFormat = "onnx"
    runtime_name = "onnxruntime"

    def __init__(self, path: Path) -> None:
        import onnx
        import onnxruntime as ort

        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:
            raise ModelFileError(f"model file {path.name!r} is not a valid ONNX model: {first_line(exc)}") from exc
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
            raise InputError(f"onnxruntime cannot load the teacher: {first_line(exc)}") from exc
        self.runtime_version = ort.__version__
        inputs: list[TensorSpec] = []
        for inp in self._session.get_inputs():
            dtype = _ONNX_DTYPES.get(inp.type)
            if dtype is None:
                raise InputError(f"the ONNX teacher's input {inp.name!r} has unsupported type {inp.type}")
            shape = _onnx_dims(inp.shape)
            if not shape:
                raise InputError(f"the ONNX teacher's input {inp.name!r} is a scalar; it needs a batch axis")
            inputs.append(TensorSpec(name=inp.name, dtype=dtype, shape=shape, layout=guess_layout(dtype, shape)))  # type: ignore[arg-type]
        outputs: list[OutputSpec] = []
        for out in self._session.get_outputs():
            if out.type.startswith("seq(map("):  # skl2onnx ZipMap: class -> probability per sample
                outputs.append(OutputSpec(name=out.name, dtype="float32", shape=(None, None)))
                continue
            dtype = _ONNX_DTYPES.get(out.type)
            if dtype is None:
                raise InputError(f"the ONNX teacher's output {out.name!r} has unsupported type {out.type}")
            shape = _onnx_dims(out.shape)
            outputs.append(OutputSpec(name=out.name, dtype=dtype, shape=shape or (None,)))  # type: ignore[arg-type]
        super().__init__(path, ModelSignature(inputs=tuple(inputs), outputs=tuple(outputs)))
        self.file_bytes += sum(f.stat().st_size for f in self._external)

    @property
    def param_count(self) -> int:
        return sum(math.prod(t.dims) for t in self._proto.graph.initializer)

    def _run_all(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        outs = self._session.run([o.name for o in self.io.outputs], feeds)
        return [_zipmap_to_array(o) for o in outs]

    def _count_macs(self) -> int | None:
        from edgedistill.workers.steps.onnx_macs import count_onnx_macs

        if len(self.io.inputs) != 1:
            return None  # the counter propagates shapes from one input
        sig = self.signature
        assert sig.input_shape is not None
        return count_onnx_macs(self._proto, sig.input_name, sig.input_shape)


# --------------------------------------------------------------------------------------------------
# TorchScript and torch.export
# --------------------------------------------------------------------------------------------------


def flatten_outputs(out: Any) -> list[tuple[str, Any]]:
    """A torch model's result as (name, tensor) pairs: dict keys, tuple/list positions, or 'output'."""
    import torch

    if isinstance(out, torch.Tensor):
        return [("output", out)]
    pairs: list[tuple[str, Any]] = []

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, torch.Tensor):
            pairs.append((prefix, node))
        elif isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(node, (tuple, list)):
            for i, v in enumerate(node):
                walk(f"{prefix}.{i}" if prefix else f"output_{i}", v)
        else:
            raise InputError(f"the teacher returned {type(node).__name__}; edgedistill needs tensors")

    walk("", out)
    if not pairs:
        raise InputError("the teacher returned no tensors")
    return pairs


class _TorchTeacher(Teacher):
    runtime_name: str

    def __init__(self, path: Path, module: Any, io: ModelSignature, device: str) -> None:
        import torch

        self._module = module
        self._device = torch.device(device)
        self.runtime_version = torch.__version__
        super().__init__(path, io)

    def _call(self, feeds: dict[str, np.ndarray]) -> list[tuple[str, Any]]:
        import torch

        with torch.inference_mode():
            args = [torch.from_numpy(feeds[s.name]).to(self._device) for s in self.io.inputs]
            return flatten_outputs(self._module(*args))

    def _run_all(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        pairs = self._call(feeds)
        return [
            t.detach().float().cpu().numpy() if t.is_floating_point() else t.detach().cpu().numpy() for _, t in pairs
        ]

    def _count_macs(self) -> int | None:
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        n = self.fixed_batch or 1
        args = []
        for s in self.io.inputs:
            shape = known_dims(s.per_sample)
            assert shape is not None
            args.append(torch.zeros((n, *shape), dtype=getattr(torch, s.dtype)).to(self._device))
        counter = FlopCounterMode(display=False)
        with counter, torch.inference_mode():
            self._module(*args)
        # FlopCounterMode counts 2 FLOPs per multiply-accumulate.
        return int(counter.get_total_flops() // 2 // n) or None


class TorchScriptTeacher(_TorchTeacher):
    """TorchScript records argument names but no shapes or dtypes: those come from the data, the output
    names and count from a probe run (dict keys when the model returns a dict)."""

    format: ModelFormat = "torchscript"
    runtime_name = "torch.jit"
    ranks_known = False

    def __init__(self, path: Path, device: str = "cpu") -> None:
        import torch

        try:
            module = torch.jit.load(str(path), map_location=device)
        except Exception as exc:
            raise ModelFileError(f"torch.jit cannot load {path.name!r}: {first_line(exc)}") from exc
        module.eval()
        self._params = sum(p.numel() for p in module.parameters())
        try:
            names = [a.name for a in module.forward.schema.arguments][1:]  # [0] is self
        except Exception:
            names = []
        names = [n for n in names if n] or ["input"]
        if len(names) == 1:
            names = ["input"]  # the single-input name older runs and exports use
        io = ModelSignature(
            inputs=tuple(TensorSpec(name=n, dtype="float32", shape=(None, None)) for n in names),
            outputs=(OutputSpec(name="output", dtype="float32", shape=(None, None)),),
        )
        super().__init__(path, module, io, device)

    def _complete_more(self, probe: Mapping[str, np.ndarray]) -> None:
        inputs = []
        for s in self.io.inputs:
            arr = np.asarray(probe[s.name])
            dtype = data_dtype(arr.dtype)
            inputs.append(s.model_copy(update={"dtype": dtype, "layout": guess_layout(dtype, s.shape)}))
        self.io = self.io.model_copy(update={"inputs": tuple(inputs)})
        feeds = {s.name: np.ascontiguousarray(probe[s.name], dtype=np.dtype(s.dtype)) for s in self.io.inputs}
        n = next(iter(feeds.values())).shape[0]
        fixed: int | None = None
        pairs: list[tuple[str, Any]] | None = None
        if n >= 2:  # traced programs sometimes bake in batch 1: try two samples, else one at a time
            try:
                pairs = self._call({k: v[:2] for k, v in feeds.items()})
                if any(t.ndim == 0 or t.shape[0] != 2 for _, t in pairs):
                    pairs = None
            except Exception:
                pairs = None
        if pairs is None:
            try:
                pairs = self._call({k: v[:1] for k, v in feeds.items()})
            except Exception as exc:
                shapes = ", ".join(f"{k} {tuple(v.shape[1:])}" for k, v in feeds.items())
                raise InputError(f"the teacher failed on data of per-sample shape {shapes}: {first_line(exc)}") from exc
            fixed = 1
        inputs = [s.model_copy(update={"shape": (fixed, *s.shape[1:])}) for s in self.io.inputs]
        outputs = tuple(
            OutputSpec(
                name=name, dtype="float32" if t.dtype.is_floating_point else "int64", shape=(fixed, *t.shape[1:])
            )
            for name, t in pairs
        )
        self.io = ModelSignature(inputs=tuple(inputs), outputs=outputs)
        self.declared_io = self.io

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


def _fx_spec(val: Any) -> tuple[str, tuple[int | None, ...]]:
    dtype = str(val.dtype).removeprefix("torch.") if val is not None else "float32"
    shape = tuple(int(d) if isinstance(d, int) else None for d in val.shape) if val is not None else (None,)
    if dtype not in ("float16", "float32", "float64", "int8", "uint8", "int16", "int32", "int64", "bool"):
        dtype = "float32"
    return dtype, shape


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
            raise ModelFileError(f"torch.export cannot load {path.name!r}: {first_line(exc)}") from exc
        if device != "cpu":
            from torch.export.passes import move_to_device_pass

            ep = move_to_device_pass(ep, device)
        nodes = {n.name: n for n in ep.graph.nodes}
        inputs: list[TensorSpec] = []
        for name in ep.graph_signature.user_inputs:
            dtype, shape = _fx_spec(nodes[name].meta.get("val") if name in nodes else None)
            if not shape:
                raise InputError(f"the exported teacher's input {name!r} has no batch axis")
            inputs.append(TensorSpec(name=name, dtype=dtype, shape=shape, layout=guess_layout(dtype, shape)))  # type: ignore[arg-type]
        if not inputs:
            raise InputError("the exported teacher takes no tensor inputs")
        outputs: list[OutputSpec] = []
        out_node = next(n for n in ep.graph.nodes if n.op == "output")
        leaves = list(out_node.args[0]) if out_node.args else []
        user_outputs = list(ep.graph_signature.user_outputs)
        leaves = leaves[len(leaves) - len(user_outputs) :]  # buffer mutations come first
        for i, name in enumerate(user_outputs):
            node = leaves[i] if i < len(leaves) else None
            val = node.meta.get("val") if node is not None and hasattr(node, "meta") else None
            dtype, shape = _fx_spec(val)
            dtype = "int64" if dtype in INT_DTYPES else "float32"
            outputs.append(OutputSpec(name=name, dtype=dtype, shape=shape or (None,)))  # type: ignore[arg-type]
        self._params = sum(int(p.numel()) for p in ep.parameters())
        super().__init__(path, ep.module(), ModelSignature(inputs=tuple(inputs), outputs=tuple(outputs)), device)

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
    if fmt == "tflite":
        from edgedistill.workers.steps.teacher_tflite import TfliteTeacher

        return TfliteTeacher(path)
    return ExportedProgramTeacher(path, device=device)
