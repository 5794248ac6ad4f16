"""edgedistill.contracts.formats: model files recognised by their bytes, hostile files refused before any loader
runs, transfer-data .npz checked from headers."""

from __future__ import annotations

import io
import json
import pickle
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgedistill.contracts.errors import InputError
from edgedistill.contracts.formats import (
    DataFileError,
    ModelFileError,
    UnsafeModelFile,
    UnsupportedModelFormat,
    check_npz,
    sniff_model_format,
)


class _CreatesFile:
    """Unpickling this object opens (creates) a file: a stand-in for arbitrary code execution."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.target), "w"))


# --------------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "pt2"])
def test_sniffs_each_format_by_content_not_name(
    digits_teacher_files: dict[str, Path], tmp_path: Path, fmt: str
) -> None:
    renamed = tmp_path / "upload.bin"  # the API stores uploads under neutral names
    shutil.copy(digits_teacher_files[fmt], renamed)
    assert sniff_model_format(renamed) == fmt


def test_torchscript_with_its_version_under_dot_data_is_torchscript(
    digits_teacher_files: dict[str, Path], tmp_path: Path
) -> None:
    """Some torch.jit.save archives record the version as .data/version only: still TorchScript,
    not a torch.save() checkpoint."""
    src = zipfile.ZipFile(digits_teacher_files["torchscript"])
    out = tmp_path / "traced.pt"
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            root, _, rel = info.filename.partition("/")
            name = f"{root}/.data/version" if rel == "version" else info.filename
            if rel != ".data/version" or name == info.filename:
                dst.writestr(name, src.read(info.filename))
    names = zipfile.ZipFile(out).namelist()
    assert not any(n.split("/", 1)[1] == "version" for n in names) and any(n.endswith(".data/version") for n in names)
    assert sniff_model_format(out) == "torchscript"


def test_empty_file_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "m.onnx"
    p.write_bytes(b"")
    with pytest.raises(ModelFileError, match="empty"):
        sniff_model_format(p)


def test_unknown_bytes_are_refused_with_how_to_save(tmp_path: Path) -> None:
    p = tmp_path / "m.onnx"
    p.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ModelFileError, match=r"not a recognised model.*torch\.onnx\.export"):
        sniff_model_format(p)


def test_truncated_onnx_is_not_recognised(digits_teacher_files: dict[str, Path], tmp_path: Path) -> None:
    data = digits_teacher_files["onnx"].read_bytes()
    p = tmp_path / "cut.onnx"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError):
        sniff_model_format(p)


def test_truncated_zip_is_refused(digits_teacher_files: dict[str, Path], tmp_path: Path) -> None:
    data = digits_teacher_files["torchscript"].read_bytes()
    p = tmp_path / "cut.pt"
    p.write_bytes(data[: len(data) - 200])  # loses the central directory
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        sniff_model_format(p)


def test_raw_pickle_is_refused_and_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_CreatesFile(marker), protocol=4)
    # The payload is real: unpickling it does create a file.
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_CreatesFile(probe), protocol=4)).close()
    assert probe.exists()

    p = tmp_path / "model.pt"
    p.write_bytes(payload)
    with pytest.raises(UnsupportedModelFormat, match=r"pickle.*torch\.jit\.save\(torch\.jit\.script"):
        sniff_model_format(p)
    from edgedistill.workers.steps.teacher import load_teacher

    with pytest.raises(UnsupportedModelFormat):
        load_teacher(p)
    assert not marker.exists()


def test_torch_save_checkpoints_are_refused_with_instructions(tmp_path: Path) -> None:
    import torch

    state = tmp_path / "state.pt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), state)
    with pytest.raises(UnsupportedModelFormat, match=r"torch\.save\(\) checkpoint.*torch\.export\.save"):
        sniff_model_format(state)

    marker = tmp_path / "pwned"
    hostile = tmp_path / "hostile.pt"
    torch.save({"w": torch.zeros(2), "x": _CreatesFile(marker)}, hostile)
    from edgedistill.workers.steps.teacher import load_teacher

    with pytest.raises(UnsupportedModelFormat):
        load_teacher(hostile)
    assert not marker.exists()


def test_legacy_torch_save_is_a_raw_pickle(tmp_path: Path) -> None:
    import torch

    p = tmp_path / "legacy.pt"
    torch.save({"w": torch.zeros(2)}, p, _use_new_zipfile_serialization=False)
    with pytest.raises(UnsupportedModelFormat, match="raw Python pickle"):
        sniff_model_format(p)


@pytest.mark.parametrize("name", ["../evil.txt", "/etc/evil", "a/../../evil", "C:/evil", "a\\..\\evil"])
def test_zip_member_paths_are_checked(tmp_path: Path, name: str) -> None:
    p = tmp_path / "m.pt"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("m/version", "3")
        zf.writestr(name, "x")
    with pytest.raises(UnsafeModelFile, match="unsafe member path"):
        sniff_model_format(p)


def test_declared_uncompressed_size_is_bounded(tmp_path: Path) -> None:
    p = tmp_path / "bomb.pt"
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("m/data/0", b"\0" * (2 * 1024 * 1024))
    assert p.stat().st_size < 64 * 1024  # zeros deflate to almost nothing
    with pytest.raises(ModelFileError, match="uncompressed bytes"):
        sniff_model_format(p, max_uncompressed_bytes=1024 * 1024)


def test_unrelated_zip_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "m.zip"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(ModelFileError, match=r"not a TorchScript or torch\.export model"):
        sniff_model_format(p)


def test_tflite_is_recognised_by_its_flatbuffer_identifier(tmp_path: Path) -> None:
    p = tmp_path / "upload.bin"  # no suffix: judged by the bytes
    p.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\0" * 64)
    assert sniff_model_format(p) == "tflite"
    p.write_bytes(b"\x1c\x00\x00\x00TFL3")
    with pytest.raises(ModelFileError, match="only 8 bytes"):
        sniff_model_format(p)


def _rewrite_pt2(src: Path, dst: Path, edit: dict[str, bytes | None], add: dict[str, bytes] | None = None) -> Path:
    """Copy a .pt2 archive replacing (or dropping, with None) members whose name ends with a key."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        root = zin.namelist()[0].split("/")[0]
        for info in zin.infolist():
            data = zin.read(info)
            for suffix, new in edit.items():
                if info.filename.endswith(suffix):
                    data = new  # type: ignore[assignment]
            if data is not None:
                zout.writestr(info, data)
        for name, data in (add or {}).items():
            zout.writestr(f"{root}/{name}", data)
    return dst


def _member(path: Path, suffix: str) -> bytes:
    with zipfile.ZipFile(path) as zf:
        return zf.read(next(n for n in zf.namelist() if n.endswith(suffix)))


def test_pt2_with_pickled_weights_is_refused(digits_teacher_files: dict[str, Path], tmp_path: Path) -> None:
    src = digits_teacher_files["pt2"]
    cfg = json.loads(_member(src, "model_weights_config.json"))
    first = next(iter(cfg["config"]))
    cfg["config"][first]["use_pickle"] = True
    bad = _rewrite_pt2(src, tmp_path / "bad.pt2", {"model_weights_config.json": json.dumps(cfg).encode()})
    with pytest.raises(UnsafeModelFile, match="as a pickle"):
        sniff_model_format(bad)


def test_pt2_calling_a_non_operator_is_refused(digits_teacher_files: dict[str, Path], tmp_path: Path) -> None:
    src = digits_teacher_files["pt2"]
    program = _member(src, "models/model.json").replace(
        b'"torch.ops.aten.relu.default"', b'"torch.serialization.os.system"', 1
    )
    assert b"os.system" in program
    bad = _rewrite_pt2(src, tmp_path / "bad.pt2", {"models/model.json": program})
    with pytest.raises(UnsafeModelFile, match=r"torch\.serialization\.os\.system"):
        sniff_model_format(bad)


def test_pt2_with_native_code_is_refused(digits_teacher_files: dict[str, Path], tmp_path: Path) -> None:
    bad = _rewrite_pt2(
        digits_teacher_files["pt2"], tmp_path / "bad.pt2", {}, add={"data/aotinductor/model/x.so": b"\x7fELF"}
    )
    with pytest.raises(UnsafeModelFile, match="native code"):
        sniff_model_format(bad)


def test_model_errors_are_input_errors() -> None:
    assert issubclass(ModelFileError, InputError)
    assert issubclass(DataFileError, InputError)


# --------------------------------------------------------------------------------------------------
# npz
# --------------------------------------------------------------------------------------------------


def test_check_npz_summarises_headers(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    np.savez_compressed(p, x=np.zeros((7, 3, 5), np.float32), y=np.arange(7), class_names=np.array(["a", "b"]))
    s = check_npz(p)
    assert (s.n_samples, s.x_shape, s.x_dtype, s.has_labels, s.y_dtype) == (7, (3, 5), "float32", True, "int64")
    assert set(s.keys) == {"x", "y", "class_names"}
    assert s.extra_keys == ("class_names",) and s.input_keys == ("x",)


def test_check_npz_one_array_per_teacher_input(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    ids = np.zeros((6, 16), np.int64)
    np.savez(p, input_ids=ids, attention_mask=np.ones((6, 16), np.int32), y=np.arange(6), class_names=np.array(["a"]))
    s = check_npz(p)
    assert s.input_keys == ("input_ids", "attention_mask") and s.n_samples == 6 and s.has_labels
    assert (s.x_shape, s.x_dtype) == ((16,), "int64")  # the first input stands in for x
    assert s.arrays["attention_mask"].dtype == "int32" and s.extra_keys == ("class_names",)


def test_object_arrays_are_refused_without_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    p = tmp_path / "d.npz"
    obj = np.empty(2, dtype=object)
    obj[0] = _CreatesFile(marker)
    np.savez(p, x=np.zeros((2, 3), np.float32), y=obj)
    with pytest.raises(DataFileError, match="dtype object"):
        check_npz(p)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"y": np.arange(3)}, "no input arrays"),
        ({"y": np.arange(3), "class_names": np.array(["a"])}, r"no input arrays \(found: class_names, y\)"),
        (
            {"ids": np.zeros((4, 3), np.int64), "mask": np.zeros((5, 3), np.int64)},
            r"different numbers of rows \(ids: 4, mask: 5\)",
        ),
        (
            {"ids": np.zeros((4, 3), np.int64), "mask": np.zeros(4, np.int64)},
            r"mask has shape \(4,\).*read as a model input",
        ),
        ({"ids": np.zeros((4, 3), np.int64), "y": np.arange(3)}, r"y has shape \(3,\) but ids has 4 rows"),
        ({"ids": np.zeros((4, 3), np.int64), "text": np.array([["a"]] * 4)}, "text has non-numeric dtype"),
        ({"x": np.zeros((0, 4), np.float32)}, "zero rows"),
        ({"x": np.zeros((5, 4), np.float32), "y": np.arange(4)}, r"y has shape \(4,\) but x has 5 rows"),
        ({"x": np.array([["a", "b"], ["c", "d"]])}, "non-numeric dtype"),
        ({"x": np.zeros(5, np.float32)}, "needs a sample axis"),
        ({"x": np.zeros((2, 1, 1, 1, 1), np.float32)}, "at most 4"),
        ({"x": np.zeros((3, 2), np.float32), "y": np.array(["a", "b", "c"])}, "y has non-numeric"),
    ],
)
def test_bad_npz_contents(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    p = tmp_path / "d.npz"
    np.savez(p, **arrays)
    with pytest.raises(DataFileError, match=message):
        check_npz(p)


def test_absurd_declared_shape_is_refused(tmp_path: Path) -> None:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 4)})
    p = tmp_path / "d.npz"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("x.npy", header.getvalue() + struct.pack("<4f", 0, 0, 0, 0))
    with pytest.raises(DataFileError, match="declares shape"):
        check_npz(p)


def test_not_an_npz(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    np.save(p.with_suffix(".npy"), np.zeros((3, 2)))
    p.write_bytes(p.with_suffix(".npy").read_bytes())
    with pytest.raises(DataFileError, match=r"not an \.npz archive"):
        check_npz(p)
    p.write_bytes(b"")
    with pytest.raises(DataFileError, match="empty"):
        check_npz(p)


def _npz_declaring(path: Path, shape: tuple[int, ...]) -> Path:
    """An .npz whose x.npy header declares `shape` (float32) but holds no data: a few hundred bytes."""
    import zipfile

    header = repr({"descr": "<f4", "fortran_order": False, "shape": shape}).encode()
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    npy = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", npy)
    return path


@pytest.mark.parametrize("shape", [(2**61, 8), (2**62, 2, 2), (2**40, 1)])
def test_npz_sizes_are_computed_without_overflow_and_capped(tmp_path: Path, shape: tuple[int, ...]) -> None:
    path = _npz_declaring(tmp_path / "tiny.npz", shape)
    assert path.stat().st_size < 400
    with pytest.raises(DataFileError, match="over the"):
        check_npz(path)
