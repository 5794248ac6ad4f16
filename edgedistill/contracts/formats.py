"""Recognise uploaded model and data files from their bytes, before any ML library touches them.

Pure stdlib + numpy: the API process imports this to reject bad uploads (415/422) without loading
torch or onnx. Nothing here unpickles, imports or executes anything from the file: zip archives are
read through their central directory, ONNX through its protobuf wire format, .npz members through
their .npy headers.
"""

from __future__ import annotations

import json
import math
import re
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal

import numpy as np

from edgedistill.contracts.errors import InputError

ModelFormat = Literal["onnx", "torchscript", "pt2", "tflite"]

# Bounds that keep a hostile upload from exhausting the worker (zip bombs, absurd headers).
MAX_UNCOMPRESSED_BYTES = 8 * 1024**3
MAX_ZIP_MEMBERS = 100_000
MAX_COMPRESSION_RATIO = 200  # deflated tensors rarely beat 10x; bombs reach 1000x
_RATIO_CHECK_FROM_BYTES = 64 * 1024**2  # small all-zero arrays legitimately compress far better
MAX_PT2_JSON_BYTES = 256 * 1024**2
MAX_NPZ_BYTES = 16 * 1024**3

_HOW_TO_SAVE = (
    "save the model as TorchScript (torch.jit.save(torch.jit.script(model), 'teacher.pt')), "
    "as a torch.export program (torch.export.save(torch.export.export(model, (x,)), 'teacher.pt2')) "
    "or as ONNX (torch.onnx.export(model, (x,), 'teacher.onnx'))"
)


class ModelFileError(InputError):
    """The teacher file is empty, truncated, corrupt or of an unknown kind."""


class UnsupportedModelFormat(ModelFileError):
    """A recognised format that the engine refuses to load (pickles, torch.save checkpoints...)."""


class UnsafeModelFile(ModelFileError):
    """An archive that would make the loader execute code or write outside its folder."""


class DataFileError(InputError):
    """The transfer-data .npz is unreadable or its arrays do not make a data set."""


# --------------------------------------------------------------------------------------------------
# zip archives (TorchScript, torch.export .pt2, torch.save checkpoints, .npz)
# --------------------------------------------------------------------------------------------------


def _is_safe_member_name(name: str) -> bool:
    if not name or "\x00" in name or "\\" in name:
        return False
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return False
    return ".." not in PurePosixPath(name).parts


def check_zip_members(
    zf: zipfile.ZipFile,
    *,
    what: str,
    error: type[InputError] = ModelFileError,
    max_uncompressed_bytes: int = MAX_UNCOMPRESSED_BYTES,
) -> list[zipfile.ZipInfo]:
    """Validate member names and declared sizes; returns the members. Raises `error`."""
    infos = zf.infolist()
    if len(infos) > MAX_ZIP_MEMBERS:
        raise error(f"{what} has {len(infos)} archive members (limit {MAX_ZIP_MEMBERS})")
    total = 0
    for info in infos:
        if not _is_safe_member_name(info.filename):
            raise UnsafeModelFile(f"{what} contains an unsafe member path {info.filename!r}")
        if info.flag_bits & 0x1:
            raise error(f"{what} contains an encrypted member {info.filename!r}")
        total += info.file_size
        if info.file_size > _RATIO_CHECK_FROM_BYTES and info.file_size > MAX_COMPRESSION_RATIO * max(
            info.compress_size, 1
        ):
            raise error(
                f"{what} member {info.filename!r} expands {info.file_size // info.compress_size}x "
                "when decompressed (zip bomb?)"
            )
    if total > max_uncompressed_bytes:
        raise error(f"{what} declares {total} uncompressed bytes, over the {max_uncompressed_bytes} byte limit")
    return infos


def _open_zip(path: Path, *, what: str, error: type[InputError]) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise error(f"{what} is a truncated or corrupt zip archive: {exc}") from exc
    except OSError as exc:
        raise error(f"cannot read {what}: {exc}") from exc


def _read_member(zf: zipfile.ZipFile, name: str, *, limit: int, what: str) -> bytes:
    info = zf.getinfo(name)
    if info.file_size > limit:
        raise ModelFileError(f"{what} member {name!r} is {info.file_size} bytes (limit {limit})")
    try:
        return zf.read(name)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:  # CRC errors, truncated data
        raise ModelFileError(f"{what} member {name!r} is corrupt: {exc}") from exc


def _archive_root(names: list[str]) -> str | None:
    """torch writes every member under one top-level folder; returns it (with '/'), else None."""
    roots = {n.split("/", 1)[0] for n in names}
    if len(roots) == 1 and all("/" in n for n in names):
        return roots.pop() + "/"
    return None


def _classify_torch_zip(zf: zipfile.ZipFile, names: list[str], what: str) -> ModelFormat:
    root = _archive_root(names)
    rel = {n[len(root) :] for n in names} if root else set(names)
    if "archive_format" in rel and any(n.startswith("models/") and n.endswith(".json") for n in rel):
        fmt = _read_member(zf, f"{root or ''}archive_format", limit=64, what=what).decode("ascii", "replace")
        if fmt.strip() != "pt2":
            raise UnsupportedModelFormat(f"{what} is a PT2 archive of kind {fmt.strip()!r}, expected 'pt2'")
        check_pt2_archive(zf, root or "", what=what)
        return "pt2"
    has_code = any(n.startswith("code/") for n in rel)
    # newer torch.jit.save archives keep their format version as .data/version, older ones as version
    versioned = "version" in rel or ".data/version" in rel
    if has_code and "data.pkl" in rel and "constants.pkl" in rel and versioned:
        return "torchscript"
    if "data.pkl" in rel:
        raise UnsupportedModelFormat(
            f"{what} is a torch.save() checkpoint (a pickle inside a zip): it holds weights or a pickled "
            f"Python object, not a runnable graph, and loading it would execute code. Please {_HOW_TO_SAVE}"
        )
    if any(n.endswith(".npy") for n in rel):
        raise UnsupportedModelFormat(f"{what} looks like a numpy .npz data archive, not a model")
    raise ModelFileError(f"{what} is a zip archive but not a TorchScript or torch.export model; {_HOW_TO_SAVE}")


# torch.export graphs name their call targets; the deserializer resolves any "torch.*" attribute path
# (torch.serialization.os.system would resolve too), so only operator namespaces are accepted.
_PT2_OP_NAMESPACES = frozenset({"aten", "prims", "higher_order", "quantized_decomposed", "quantized"})
_PT2_TARGET_RE = re.compile(r"^torch\.ops\.([a-z_][a-z0-9_]*)\.[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)?$")
_PT2_PLAIN_TARGET_RE = re.compile(r"^(_operator|math)\.[a-z][a-z0-9_]*$")


def _pt2_targets(node: Any) -> list[str]:
    """Every graph node's call target in a serialized ExportedProgram (subgraphs included)."""
    found: list[str] = []
    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, dict):
            target = cur.get("target")
            if isinstance(target, str) and "inputs" in cur and "outputs" in cur:
                found.append(target)
            stack.extend(cur.values())
        elif isinstance(cur, list):
            stack.extend(cur)
    return found


def check_pt2_archive(zf: zipfile.ZipFile, root: str, *, what: str = "model file") -> None:
    """Refuse .pt2 content that torch.export.load would unpickle or run as native code."""
    rel_names = [n[len(root) :] for n in zf.namelist()]
    for rel in rel_names:
        if rel.startswith(("data/aotinductor/", "data/executorch/", "data/mtia")):
            raise UnsafeModelFile(f"{what} holds compiled native code ({rel!r}); only exported graphs are accepted")
        if rel.startswith(("data/constants/custom_obj_", "data/constants/opaque_obj_")):
            raise UnsafeModelFile(f"{what} holds pickled custom objects ({rel!r})")
    models = [r[len("models/") : -len(".json")] for r in rel_names if r.startswith("models/") and r.endswith(".json")]
    if "model" not in models:
        raise ModelFileError(f"{what} is a PT2 archive without models/model.json")
    for model in models:
        for legacy in (f"data/weights/{model}.pt", f"data/constants/{model}.pt"):
            if legacy in rel_names:
                raise UnsafeModelFile(f"{what} uses the legacy pickled weight file {legacy!r}; re-save it")
        for cfg in (f"data/weights/{model}_weights_config.json", f"data/constants/{model}_constants_config.json"):
            if cfg not in rel_names:
                raise ModelFileError(f"{what} is a PT2 archive missing {cfg!r}")
            payload = _load_json(zf, root + cfg, what)
            entries = payload.get("config", {}) if isinstance(payload, dict) else None
            if not isinstance(entries, dict):
                raise ModelFileError(f"{what}: {cfg} is not a payload config")
            for fqn, meta in entries.items():
                if not isinstance(meta, dict) or meta.get("use_pickle", False):
                    raise UnsafeModelFile(f"{what} stores {fqn!r} as a pickle; only raw tensors are accepted")
                path_name = str(meta.get("path_name", ""))
                if not path_name.startswith(("weight_", "tensor_")):
                    raise UnsafeModelFile(f"{what} stores {fqn!r} as {path_name!r}; only tensors are accepted")
        program = _load_json(zf, f"{root}models/{model}.json", what)
        for target in _pt2_targets(program):
            m = _PT2_TARGET_RE.match(target)
            ok = (m is not None and m.group(1) in _PT2_OP_NAMESPACES) or bool(_PT2_PLAIN_TARGET_RE.match(target))
            if not ok:
                raise UnsafeModelFile(f"{what} calls {target!r}, which is not a tensor operator")


def _load_json(zf: zipfile.ZipFile, name: str, what: str) -> Any:
    raw = _read_member(zf, name, limit=MAX_PT2_JSON_BYTES, what=what)
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{what}: {name.split('/', 1)[-1]} is not valid JSON: {exc}") from exc


# --------------------------------------------------------------------------------------------------
# ONNX: a protobuf ModelProto, checked at the wire-format level
# --------------------------------------------------------------------------------------------------

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
# ModelProto fields (onnx.proto3) and their wire types.
_MODEL_FIELDS: dict[int, int] = {
    1: _VARINT,  # ir_version
    2: _LEN,  # producer_name
    3: _LEN,  # producer_version
    4: _LEN,  # domain
    5: _VARINT,  # model_version
    6: _LEN,  # doc_string
    7: _LEN,  # graph
    8: _LEN,  # opset_import
    14: _LEN,  # metadata_props
    20: _LEN,  # training_info
    25: _LEN,  # functions
    26: _LEN,  # configuration
}
_MAX_IR_VERSION = 64


def _read_varint(f: IO[bytes]) -> int | None:
    result = shift = 0
    for _ in range(10):
        b = f.read(1)
        if not b:
            return None
        result |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return result
        shift += 7
    raise ValueError("varint longer than 10 bytes")


def _looks_like_onnx(path: Path, size: int) -> bool:
    """Walk the top-level protobuf fields; True when they form a plausible ModelProto."""
    seen: set[int] = set()
    with path.open("rb") as f:
        try:
            while f.tell() < size:
                key = _read_varint(f)
                if key is None:
                    return False
                number, wire = key >> 3, key & 7
                expected = _MODEL_FIELDS.get(number)
                if expected is None or expected != wire:
                    return False
                if wire == _VARINT:
                    value = _read_varint(f)
                    if value is None:
                        return False
                    if number == 1 and not 1 <= value <= _MAX_IR_VERSION:
                        return False
                else:
                    length = _read_varint(f)
                    if length is None or f.tell() + length > size:
                        return False  # truncated
                    f.seek(length, 1)
                seen.add(number)
        except ValueError:
            return False
    return 1 in seen and 7 in seen


# --------------------------------------------------------------------------------------------------
# public entry points
# --------------------------------------------------------------------------------------------------


def sniff_model_format(path: Path, *, max_uncompressed_bytes: int = MAX_UNCOMPRESSED_BYTES) -> ModelFormat:
    """Which kind of model a file holds, judged by its bytes. Raises ModelFileError subclasses."""
    what = f"model file {path.name!r}"
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise ModelFileError(f"cannot read {what}: {exc}") from exc
    if size == 0:
        raise ModelFileError(f"{what} is empty")
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        with _open_zip(path, what=what, error=ModelFileError) as zf:
            infos = check_zip_members(zf, what=what, max_uncompressed_bytes=max_uncompressed_bytes)
            return _classify_torch_zip(zf, [i.filename for i in infos], what)
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        raise UnsupportedModelFormat(
            f"{what} is a raw Python pickle (e.g. a legacy torch.save() file); loading it would execute "
            f"code, so it is refused. Please {_HOW_TO_SAVE}"
        )
    if head.startswith(b"TFL3", 4):  # the FlatBuffer file identifier of the TFLite schema, at bytes 4-7
        if size < 16:
            raise ModelFileError(f"{what} has a TFLite identifier but only {size} bytes")
        return "tflite"
    if _looks_like_onnx(path, size):
        return "onnx"
    raise ModelFileError(f"{what} is not a recognised model (ONNX, TorchScript, .pt2 or TFLite): {_HOW_TO_SAVE}")


@dataclass(frozen=True)
class ArrayInfo:
    shape: tuple[int, ...]
    dtype: str  # numpy dtype string, e.g. "float32"


# npz keys that are not model inputs: labels, and their names for the report.
LABEL_KEY = "y"
METADATA_KEYS: frozenset[str] = frozenset({"class_names"})


@dataclass(frozen=True)
class NpzSummary:
    arrays: dict[str, ArrayInfo]
    n_samples: int
    x_shape: tuple[int, ...]  # per sample, of 'x' (or of the first input array when there is no 'x')
    x_dtype: str
    has_labels: bool
    y_dtype: str | None = None
    extra_keys: tuple[str, ...] = field(default_factory=tuple)  # neither an input nor y
    # Every array a teacher input may be fed from (all but y and class_names), in file order; which
    # one feeds which input is decided against the teacher's signature (signature.check_data).
    input_keys: tuple[str, ...] = field(default_factory=tuple)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.arrays)


def _npy_header(f: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    raise ValueError(f"unsupported .npy format version {version}")


def check_npz(path: Path, *, max_bytes: int = MAX_NPZ_BYTES, input_names: tuple[str, ...] | None = None) -> NpzSummary:
    """Validate a transfer-data .npz from its headers: one numeric (N, ...) array per teacher input
    ('x' for a single-input teacher, else each input's name), optional y (N,) numeric labels.
    x_shape / x_dtype describe x, else the first input array (the first of input_names present,
    else the first array in the file).

    Only member headers are read, never the array data, and never with pickling enabled.
    """
    what = f"data file {path.name!r}"
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise DataFileError(f"cannot read {what}: {exc}") from exc
    if not head:
        raise DataFileError(f"{what} is empty")
    if not head.startswith(b"PK"):
        raise DataFileError(f"{what} is not an .npz archive (save it with numpy.savez(path, x=..., y=...))")
    arrays: dict[str, ArrayInfo] = {}
    with _open_zip(path, what=what, error=DataFileError) as zf:
        infos = check_zip_members(zf, what=what, error=DataFileError, max_uncompressed_bytes=max_bytes)
        for info in infos:
            if not info.filename.endswith(".npy"):
                raise DataFileError(f"{what} has a member {info.filename!r} that is not a .npy array")
            key = info.filename[: -len(".npy")]
            try:
                with zf.open(info) as member:
                    shape, _fortran, dtype = _npy_header(member)
                    header_len = member.tell()
            except (ValueError, zipfile.BadZipFile, OSError, EOFError, struct.error) as exc:
                raise DataFileError(f"{what}: array {key!r} has a corrupt .npy header: {exc}") from exc
            if dtype.hasobject:
                raise DataFileError(
                    f"{what}: array {key!r} has dtype object (pickled Python objects); store plain numeric arrays"
                )
            # Python ints: numpy's int64 product wraps around (a shape of 2^61 x 8 floats "is" 0 bytes).
            declared = math.prod(int(d) for d in shape) * dtype.itemsize
            if any(int(d) < 0 for d in shape) or declared > max_bytes:
                raise DataFileError(
                    f"{what}: array {key!r} declares shape {shape} ({declared} bytes), over the {max_bytes} byte limit"
                )
            if declared != info.file_size - header_len:
                raise DataFileError(
                    f"{what}: array {key!r} declares shape {shape} ({declared} bytes) but stores "
                    f"{info.file_size - header_len} bytes"
                )
            arrays[key] = ArrayInfo(shape=tuple(int(s) for s in shape), dtype=str(dtype))
    return _summarise(arrays, what, input_names)


NON_INPUT_KEYS: frozenset[str] = frozenset({LABEL_KEY}) | METADATA_KEYS


def _primary_key(inputs: list[str], input_names: tuple[str, ...] | None) -> str:
    if "x" in inputs:
        return "x"
    return next((name for name in input_names or () if name in inputs), inputs[0])


def _summarise(arrays: dict[str, ArrayInfo], what: str, input_names: tuple[str, ...] | None = None) -> NpzSummary:
    inputs = [k for k in arrays if k not in NON_INPUT_KEYS]
    if not inputs:
        found = ", ".join(sorted(arrays)) or "no arrays"
        raise DataFileError(
            f"{what} has no input arrays (found: {found}); save with numpy.savez(path, x=..., y=...), or one "
            "array per teacher input name: numpy.savez(path, input_ids=..., attention_mask=..., y=...)"
        )
    for key in inputs:
        _check_input_array(key, arrays[key], what)
    rows = {k: arrays[k].shape[0] for k in inputs}
    if len(set(rows.values())) > 1:
        listed = ", ".join(f"{k}: {n}" for k, n in rows.items())
        raise DataFileError(f"{what}: the input arrays have different numbers of rows ({listed})")
    first = _primary_key(inputs, input_names)
    x = arrays[first]
    n = x.shape[0]
    y_dtype = None
    if LABEL_KEY in arrays:
        y = arrays[LABEL_KEY]
        if np.dtype(y.dtype).kind not in "fiub":
            raise DataFileError(f"{what}: y has non-numeric dtype {y.dtype}")
        if len(y.shape) not in (1, 2) or y.shape[0] != n:
            raise DataFileError(f"{what}: y has shape {y.shape} but {first} has {n} rows; y must be ({n},) or ({n}, k)")
        y_dtype = y.dtype
    extra = tuple(k for k in arrays if k in METADATA_KEYS)
    return NpzSummary(
        arrays=arrays,
        n_samples=n,
        x_shape=x.shape[1:],
        x_dtype=x.dtype,
        has_labels=LABEL_KEY in arrays,
        y_dtype=y_dtype,
        extra_keys=extra,
        input_keys=tuple(inputs),
    )


def _check_input_array(key: str, a: ArrayInfo, what: str) -> None:
    """What every array fed to a teacher input must be: numeric, (N, ...) with 1-3 feature axes, not empty."""
    if np.dtype(a.dtype).kind not in "fiub":
        raise DataFileError(f"{what}: {key} has non-numeric dtype {a.dtype}")
    if len(a.shape) < 2:
        raise DataFileError(
            f"{what}: {key} has shape {a.shape}; it needs a sample axis plus feature axes, e.g. (N, F) or "
            "(N, C, H, W) (every array other than y and class_names is read as a model input)"
        )
    if len(a.shape) > 4:
        raise DataFileError(f"{what}: {key} has {len(a.shape)} axes {a.shape}; at most 4 (N, C, H, W) are supported")
    if a.shape[0] == 0:
        raise DataFileError(f"{what}: {key} has zero rows")
    if any(d == 0 for d in a.shape[1:]):
        raise DataFileError(f"{what}: {key} has an empty feature axis {a.shape}")
