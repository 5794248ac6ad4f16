"""What every runtime wrapper shares: the data layouts, int8 (de)quantisation with the model's own
scale and zero-point, the artifact metadata the wrappers read (signature.layout, teacher_io,
input_layouts, input_standardization) and the by-name batching of several inputs and outputs.

Layouts: the data is NCHW (images), NCT (sequences) or NF (vectors). A channel-last model ("NHWC" in
its metadata) takes images as (N, H, W, C) and sequences as (N, 1, T, C).

Metadata: the artifact's record (the `<file>.json` sidecar the exporter wrote beside it on the host, the
artifact's metadata the API sends to the agent). A wrapper given none reads the sidecar if there is one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.contracts.errors import ArtifactRunError

CHANNEL_LAST = "NHWC"
SIDECAR_SUFFIX = ".json"
DEFAULT_BATCH = 256
Metadata = Mapping[str, Any]
Standardization = dict[str, list[float]]


# --------------------------------------------------------------------------------------------------
# metadata
# --------------------------------------------------------------------------------------------------


def read_sidecar(path: Path) -> dict[str, Any]:
    side = path.with_name(path.name + SIDECAR_SUFFIX)
    if not side.is_file():
        return {}
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def metadata_for(path: Path, metadata: Metadata | None) -> Metadata:
    return metadata if metadata is not None else read_sidecar(path)


def declared_layout(metadata: Metadata) -> str | None:
    """The layout the artifact's signature states (only channel-last differs from the data's)."""
    sig = metadata.get("signature")
    layout = sig.get("layout") if isinstance(sig, Mapping) else None
    return layout if layout == CHANNEL_LAST else None


def standardization_of(metadata: Metadata) -> Standardization | None:
    """The per-feature (x - mean) / std a full-int8 tabular model expects before quantisation, if recorded."""
    found = metadata.get("input_standardization")
    if isinstance(found, Mapping) and isinstance(found.get("mean"), list) and isinstance(found.get("std"), list):
        return {"mean": [float(v) for v in found["mean"]], "std": [float(v) for v in found["std"]]}
    return None


def apply_standardization(x: np.ndarray, standardization: Standardization | None) -> np.ndarray:
    if standardization is None:
        return x
    mean = np.asarray(standardization["mean"], dtype=np.float32)
    std = np.asarray(standardization["std"], dtype=np.float32)
    if mean.ndim != 1 or mean.shape != std.shape or not np.all(std > 0):
        raise ArtifactRunError("input_standardization needs one positive std per mean")
    if x.shape[-1] != mean.shape[0]:
        raise ArtifactRunError(f"input_standardization has {mean.shape[0]} features, the input {x.shape[-1]}")
    return ((x - mean) / std).astype(np.float32)


def io_names(path: Path, metadata: Metadata, role: str, found: list[str], given: tuple[str, ...] | None) -> list[str]:
    """Teacher names for a model's inputs/outputs: given, else the metadata's teacher_io, else the model's
    own names (litert-torch names them args_0.. / output_0..: then the order is the module's)."""
    if given is not None:
        names = list(given)
    else:
        io = metadata.get("teacher_io")
        side = io.get(role) if isinstance(io, Mapping) else None
        names = [str(n) for n in side] if isinstance(side, list) else found
    if len(names) != len(found):
        raise ArtifactRunError(f"{path.name} has {len(found)} {role}, names given for {len(names)}")
    return names


def input_layouts(metadata: Metadata, given: Mapping[str, str] | None, names: list[str]) -> dict[str, str]:
    """Input name -> "NHWC" for the inputs the artifact takes channel-last."""
    if given is not None:
        return {str(k): str(v) for k, v in given.items()}
    found = metadata.get("input_layouts")
    if isinstance(found, Mapping):
        return {str(k): str(v) for k, v in found.items()}
    # a single-input student's file (export_tflite's own path) states one layout for its input
    return {names[0]: CHANNEL_LAST} if len(names) == 1 and declared_layout(metadata) == CHANNEL_LAST else {}


# --------------------------------------------------------------------------------------------------
# layouts
# --------------------------------------------------------------------------------------------------


def to_model_layout(x: np.ndarray, layout: str | None) -> np.ndarray:
    """Data-layout batch -> the model's input layout. Only NHWC differs from the data's own layout."""
    if layout != CHANNEL_LAST:
        return x
    if x.ndim == 4:  # (N, C, H, W) -> (N, H, W, C)
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    if x.ndim == 3:  # (N, C, T) -> (N, 1, T, C): a sequence is an image of height 1
        return np.ascontiguousarray(x.transpose(0, 2, 1)[:, None, :, :])
    raise ArtifactRunError(f"layout {layout} needs image or sequence input, got shape {x.shape}")


def resolve_layout(declared: str | None, x: np.ndarray, model_shape: tuple[int, ...]) -> str | None:
    """The declared layout, else whichever makes the input fit the model (the data as-is first)."""
    if declared == CHANNEL_LAST:
        return CHANNEL_LAST
    if tuple(x.shape[1:]) == tuple(model_shape[1:]):
        return None
    if x.ndim in (3, 4) and tuple(to_model_layout(x[:1], CHANNEL_LAST).shape[1:]) == tuple(model_shape[1:]):
        return CHANNEL_LAST
    raise ArtifactRunError(
        f"the model expects per-sample shape {list(model_shape[1:])}, the input has {list(x.shape[1:])}"
    )


# --------------------------------------------------------------------------------------------------
# int8
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quantization:
    scale: float
    zero_point: int
    dtype: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


QUANTIZED_DTYPES = (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16))


def quantize(x: np.ndarray, q: Quantization) -> np.ndarray:
    """q = round(x / scale) + zero_point, rounded half away from zero as TFLite's kernels do, saturated."""
    dtype = np.dtype(q.dtype)
    info = np.iinfo(dtype)
    v = x.astype(np.float64) / q.scale
    r = np.sign(v) * np.floor(np.abs(v) + 0.5) + q.zero_point
    return np.clip(r, info.min, info.max).astype(dtype)


def dequantize(raw: np.ndarray, q: Quantization) -> np.ndarray:
    return ((raw.astype(np.float32) - np.float32(q.zero_point)) * np.float32(q.scale)).astype(np.float32)


def tensor_quantization(details: Mapping[str, Any]) -> Quantization | None:
    """A TFLite tensor's per-tensor quantization from the interpreter's details; None for float tensors."""
    dtype = np.dtype(details["dtype"])
    if not np.issubdtype(dtype, np.integer):
        return None
    qp = details.get("quantization_parameters") or {}
    scales = np.asarray(qp.get("scales", []), dtype=np.float64).reshape(-1)
    zps = np.asarray(qp.get("zero_points", []), dtype=np.int64).reshape(-1)
    if scales.size == 1 and zps.size == 1 and scales[0] > 0:
        return Quantization(float(scales[0]), int(zps[0]), dtype.name)
    legacy = details.get("quantization")  # the (scale, zero_point) tuple of older interpreters
    if legacy and legacy[0]:
        return Quantization(float(legacy[0]), int(legacy[1]), dtype.name)
    raise ArtifactRunError(f"integer tensor {details.get('name', '')!r} has no per-tensor scale/zero-point")


def quantized_io(details: Mapping[str, Any]) -> Quantization | None:
    """The quantization of an int8/uint8/int16 tensor (an id or mask tensor of another int type: None)."""
    return tensor_quantization(details) if np.dtype(details["dtype"]) in QUANTIZED_DTYPES else None


def is_int(dtype: Any) -> bool:
    return bool(np.issubdtype(np.dtype(dtype), np.integer))


def encode_input(x: np.ndarray, details: Mapping[str, Any], layout: str | None) -> np.ndarray:
    """One input by name -> the model's layout and dtype: ids and masks stay integers (cast), floats
    are transposed as stated and quantized with the model's own parameters where it takes int8."""
    dtype = np.dtype(details["dtype"])
    q = quantized_io(details)
    if q is None and np.issubdtype(dtype, np.integer):
        return np.ascontiguousarray(np.asarray(x).astype(dtype))  # token ids and masks stay integers
    xm = to_model_layout(np.ascontiguousarray(x, dtype=np.float32), layout)
    return quantize(xm, q) if q is not None else np.ascontiguousarray(xm.astype(dtype, copy=False))


def decode_output(raw: np.ndarray, details: Mapping[str, Any]) -> np.ndarray:
    q = quantized_io(details)
    return dequantize(raw, q) if q is not None else np.array(raw)


# --------------------------------------------------------------------------------------------------
# batches
# --------------------------------------------------------------------------------------------------


def check_batch(x: np.ndarray) -> np.ndarray:
    if x.ndim < 2 or x.shape[0] == 0:
        raise ArtifactRunError(f"expected a non-empty batch, got shape {x.shape}")
    return np.ascontiguousarray(x, dtype=np.float32)


def batch_size_of(inputs: Mapping[str, np.ndarray]) -> int:
    sizes = {int(v.shape[0]) for v in inputs.values()}
    if len(sizes) != 1 or 0 in sizes:
        raise ArtifactRunError(f"inputs must be non-empty batches of one size, got {sorted(sizes)}")
    return sizes.pop()


def single_input_by_position(inputs: Mapping[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    """A one-input model whose input is not named as the data's one array (a single-input student's
    file names it "input"/"args_0"): the one array is its input."""
    if len(names) == 1 and names[0] not in inputs and len(inputs) == 1:
        return {names[0]: next(iter(inputs.values()))}
    return dict(inputs)


def require_inputs(path: Path, inputs: Mapping[str, np.ndarray], names: list[str]) -> None:
    missing = [k for k in names if k not in inputs]
    if missing:
        raise ArtifactRunError(f"{path.name} takes inputs {missing} that the data does not have")


def concat_outputs(parts: Mapping[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    """Float outputs as float32; integer outputs (class indices) stay integers."""
    return {
        k: np.concatenate(v) if is_int(v[0].dtype) else np.concatenate(v).astype(np.float32, copy=False)
        for k, v in parts.items()
    }
