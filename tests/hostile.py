"""Hostile and malformed files for the API and worker tests. Each returns bytes; the pickles really
would create `marker` when unpickled (builtins.open, nothing of the tests is needed to run them)."""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np


class CreatesFile:
    """Unpickling this object opens (creates) a file: a stand-in for arbitrary code execution."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.target), "w"))


def raw_pickle(marker: Path) -> bytes:
    return pickle.dumps(CreatesFile(marker), protocol=4)


def torch_save_zip(marker: Path) -> bytes:
    """A torch.save() checkpoint (zip with data.pkl) whose unpickling creates marker."""
    import torch

    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2), "x": CreatesFile(marker)}, buf)
    return buf.getvalue()


def traversal_zip(name: str = "../../evil.txt") -> bytes:
    """A TorchScript-looking archive with a member that would be written outside its folder."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for member in ("m/version", "m/data.pkl", "m/constants.pkl", "m/code/m.py"):
            zf.writestr(member, b"3")
        zf.writestr(name, b"owned")
    return buf.getvalue()


def zip_bomb(member_mib: int = 80) -> bytes:
    """A TorchScript-looking archive with one member that deflates ~1000x (80 MiB of zeros)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for member in ("m/version", "m/data.pkl", "m/constants.pkl", "m/code/m.py"):
            zf.writestr(member, b"3")
        with zf.open("m/data/0", "w") as f:
            zero = b"\0" * (1 << 20)
            for _ in range(member_mib):
                f.write(zero)
    return buf.getvalue()


def truncated(data: bytes, cut: int = 200) -> bytes:
    return data[: len(data) - cut]


def onnx_external_data(model_bytes: bytes, location: str) -> bytes:
    """The model with every initializer moved to external data at `location` (never written)."""
    import onnx
    from onnx.external_data_helper import convert_model_to_external_data

    model = onnx.load_from_string(model_bytes)
    convert_model_to_external_data(model, all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    for init in model.graph.initializer:
        for entry in init.external_data:
            if entry.key == "location":
                entry.value = location
    return bytes(model.SerializeToString())


def onnx_huge_initializer() -> bytes:
    """x (n, 1, 8, 8) -> MatMul with a declared (64, 10^12) float weight that holds 16 bytes."""
    from onnx import TensorProto, helper

    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[64, 10**12], raw_data=b"\0" * 16)
    nodes = [helper.make_node("Flatten", ["x"], ["xf"]), helper.make_node("MatMul", ["xf", "w"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "huge",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10**12])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return bytes(model.SerializeToString())


def protobuf_garbage(seed: int = 0) -> bytes:
    """Top-level ModelProto fields (ir_version, graph) around random bytes: passes a wire-format sniff,
    fails any real parse."""
    junk = np.random.default_rng(seed).bytes(4096)
    return b"\x08\x08" + b"\x3a" + _varint(len(junk)) + junk


def random_bytes(n: int = 4096, seed: int = 1) -> bytes:
    return np.random.default_rng(seed).bytes(n)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def npz_object_dtype(marker: Path) -> bytes:
    obj = np.empty(2, dtype=object)
    obj[0] = CreatesFile(marker)
    return npz(x=np.zeros((2, 1, 8, 8), np.float32), y=obj)


def npz_declared(shape: tuple[int, ...], stored_floats: int = 4) -> bytes:
    """x.npy whose header declares `shape` (billions of elements) over a few stored floats."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("x.npy", header.getvalue() + struct.pack(f"<{stored_floats}f", *([0.0] * stored_floats)))
    return buf.getvalue()
