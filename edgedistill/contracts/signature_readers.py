"""Read a teacher's ModelSignature from its file without loading an ML runtime, so the API can store
it at upload and check jobs against it at submit.

- ONNX: the `onnx` package (protobuf only, no onnxruntime), loaded with load_external_data=False.
- TFLite: the schema's generated FlatBuffer code from the `tflite` package, over a read-only mmap.
- TorchScript / torch.export: no light reader exists; the signature stays unknown (None) until the
  worker loads the real model.

Both libraries are imported inside the functions: importing this module costs nothing.
Names are the ones the runtimes use: ONNX graph input/output names; TFLite tensor names (what
ai-edge-litert's get_input_details() reports), in the main subgraph's order."""

from __future__ import annotations

import mmap
import struct
from pathlib import Path
from typing import Any, get_args

from edgedistill.contracts.errors import InputError
from edgedistill.contracts.formats import MAX_UNCOMPRESSED_BYTES, ModelFileError, sniff_model_format
from edgedistill.contracts.signature import FLOAT_DTYPES, DType, ModelSignature, OutputSpec, TensorSpec

_DTYPES: frozenset[str] = frozenset(get_args(DType))
_MAX_NAME = 256  # TensorSpec.name max_length
_ZIPMAP_HINT = (
    " (a scikit-learn classifier converted with ZipMap: convert again with "
    "skl2onnx.to_onnx(..., options={'zipmap': False}) so the probabilities are a tensor)"
)


class SignatureError(InputError):
    """The model is readable but its inputs/outputs cannot be used (external data missing, string or
    sequence tensors...). The API answers 422 with this message."""


def inspect_model(
    path: Path, *, max_uncompressed_bytes: int = MAX_UNCOMPRESSED_BYTES
) -> tuple[str, ModelSignature | None]:
    """The file's format (judged by its bytes) and its signature where the format records one.

    Raises ModelFileError (not a usable model file) or SignatureError (usable format, unusable I/O).
    workers.formats decides which formats are accepted; TFLite is read here once it accepts it."""
    fmt = sniff_model_format(path, max_uncompressed_bytes=max_uncompressed_bytes)
    return fmt, read_signature(path, fmt)


def read_signature(path: Path, fmt: str) -> ModelSignature | None:
    if fmt == "onnx":
        return read_onnx_signature(path)
    if fmt == "tflite":
        return read_tflite_signature(path)
    return None  # torchscript, pt2: shapes are only known once the worker runs the model


# --------------------------------------------------------------------------------------------------
# ONNX
# --------------------------------------------------------------------------------------------------


def read_onnx_signature(path: Path) -> ModelSignature | None:
    """Graph inputs (minus initializers) and outputs; None when a tensor's rank is not recorded."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    what = f"model file {path.name!r}"
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        raise ModelFileError(f"{what} is not a valid ONNX model: {_first_line(exc)}") from exc
    # An upload is one file: weights stored beside it never arrived.
    external = sorted(
        {
            e.value
            for t in _get_all_tensors(model)
            if uses_external_data(t)
            for e in t.external_data
            if e.key == "location"
        }
    )
    if external:
        raise SignatureError(
            f"{what} keeps its weights in external data ({', '.join(repr(f) for f in external)}), which a "
            "single-file upload does not carry; save it as one file: onnx.save(onnx.load(path), out, "
            "save_as_external_data=False) or torch.onnx.export(..., external_data=False)"
        )
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs: list[TensorSpec] = []
    for value in graph.input:
        if value.name in initializers:  # IR < 4 lists weights as inputs too
            continue
        spec = _onnx_tensor(value, "input", what)
        if spec is None:
            return None
        inputs.append(TensorSpec(**spec))
    outputs: list[OutputSpec] = []
    for value in graph.output:
        spec = _onnx_tensor(value, "output", what)
        if spec is None:
            return None
        outputs.append(OutputSpec(**spec))
    if not inputs:
        raise SignatureError(f"{what} has no graph inputs: a model that takes no input cannot be distilled")
    if not outputs:
        raise SignatureError(f"{what} has no graph outputs")
    return ModelSignature(inputs=tuple(inputs), outputs=tuple(outputs))


def _onnx_tensor(value: Any, role: str, what: str) -> dict[str, Any] | None:
    import onnx

    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        hint = _ZIPMAP_HINT if kind in ("sequence_type", "map_type") else ""
        raise SignatureError(
            f"{what}: {role} {value.name!r} is a {str(kind).removesuffix('_type')}, not a tensor; "
            f"edgedistill needs tensor inputs and outputs{hint}"
        )
    tensor = value.type.tensor_type
    try:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
    except (KeyError, ValueError, TypeError):
        dtype = onnx.TensorProto.DataType.Name(tensor.elem_type).lower()
    if tensor.elem_type == onnx.TensorProto.STRING:
        dtype = "string"
    if dtype not in _DTYPES:
        raise SignatureError(
            f"{what}: {role} {value.name!r} has element type {dtype}; edgedistill reads and writes "
            f"{', '.join(sorted(_DTYPES))} tensors"
        )
    if not tensor.HasField("shape"):
        return None  # rank unknown: the worker reads it from the running model
    shape = tuple(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor.shape.dim)
    return {"name": _checked_name(value.name, role, what), "dtype": dtype, "shape": shape}


# --------------------------------------------------------------------------------------------------
# TFLite
# --------------------------------------------------------------------------------------------------


def read_tflite_signature(path: Path) -> ModelSignature:
    """The main subgraph's inputs and outputs as the engine's TFLite teacher presents them: dynamic
    dims from shape_signature (-1 = dynamic), quantised tensors as float32 (see _as_fed)."""
    what = f"model file {path.name!r}"
    try:
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _tflite_signature(buf, what)
    except (OSError, ValueError) as exc:  # mmap of an empty file is ValueError
        raise ModelFileError(f"cannot read {what}: {exc}") from exc


def _tflite_signature(buf: mmap.mmap, what: str) -> ModelSignature:
    import tflite

    names = {v: k.lower() for k, v in vars(tflite.TensorType).items() if not k.startswith("_")}
    try:
        if not tflite.Model.ModelBufferHasIdentifier(buf, 0):
            raise ModelFileError(f"{what} is not a TFLite FlatBuffer (no 'TFL3' identifier)")
        model = tflite.Model.GetRootAsModel(buf, 0)
        if model.SubgraphsLength() == 0:
            raise ModelFileError(f"{what} is a TFLite model without a subgraph")
        graph = model.Subgraphs(0)  # the interpreter's inputs/outputs are subgraph 0's
        n_tensors = graph.TensorsLength()

        def spec(tensor_index: int, role: str) -> dict[str, Any]:
            if not 0 <= tensor_index < n_tensors:
                raise ModelFileError(f"{what}: {role} tensor index {tensor_index} is out of range")
            t = graph.Tensors(tensor_index)
            name = (t.Name() or b"").decode("utf-8", "replace") or f"{role}_{tensor_index}"
            dtype = names.get(t.Type(), f"type {t.Type()}")
            if dtype not in _DTYPES:
                raise SignatureError(
                    f"{what}: {role} {name!r} has element type {dtype}; edgedistill reads and writes "
                    f"{', '.join(sorted(_DTYPES))} tensors"
                )
            if t.ShapeSignatureLength():
                dims = [t.ShapeSignature(j) for j in range(t.ShapeSignatureLength())]
            else:
                dims = [t.Shape(j) for j in range(t.ShapeLength())]
            shape = tuple(int(d) if d > 0 else None for d in dims)
            if not shape:
                if role == "input":
                    raise SignatureError(f"{what}: input {name!r} is a scalar; it needs a batch axis")
                shape = (None,)
            return {"name": _checked_name(name, role, what), "dtype": _as_fed(t, dtype, role), "shape": shape}

        inputs = tuple(TensorSpec(**spec(graph.Inputs(i), "input")) for i in range(graph.InputsLength()))
        outputs = tuple(OutputSpec(**spec(graph.Outputs(i), "output")) for i in range(graph.OutputsLength()))
    except (struct.error, IndexError, TypeError, UnicodeError) as exc:
        raise ModelFileError(f"{what} is a truncated or corrupt TFLite FlatBuffer: {_first_line(exc)}") from exc
    if not inputs or not outputs:
        raise SignatureError(f"{what}'s main subgraph has {len(inputs)} inputs and {len(outputs)} outputs")
    return ModelSignature(inputs=inputs, outputs=outputs)


def _as_fed(tensor: Any, dtype: str, role: str) -> str:
    """The dtype the engine exchanges with this tensor (workers.steps.teacher_tflite): per-tensor
    quantised int8/uint8/int16 tensors take and give float32 (quantised with the model's own
    scale/zero-point); float outputs come back float32, other outputs as int64."""
    q = tensor.Quantization()
    if dtype in ("int8", "uint8", "int16") and q is not None and q.ScaleLength() == 1 and q.Scale(0) != 0:
        return "float32"
    if role == "output":
        return "float32" if dtype in FLOAT_DTYPES else "int64"
    return dtype


def _checked_name(name: str, role: str, what: str) -> str:
    if not 1 <= len(name) <= _MAX_NAME:
        raise SignatureError(f"{what}: an {role} name is {len(name)} characters long (1 to {_MAX_NAME} are accepted)")
    return name


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
