"""bench/idx.py: the IDX reader on tiny generated files (the real Fashion-MNIST is not needed)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from bench.idx import IdxError, load_fashion_mnist, parse_idx, read_idx


def _idx(a: np.ndarray, code: int, dtype: str) -> bytes:
    return bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.astype(dtype).tobytes()


def test_reads_gzipped_uint8_images(tmp_path: Path) -> None:
    a = np.random.default_rng(0).integers(0, 256, size=(3, 4, 5), dtype=np.uint8)
    p = tmp_path / "imgs-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(_idx(a, 0x08, ">u1")))
    out = read_idx(p)
    assert out.shape == (3, 4, 5)
    np.testing.assert_array_equal(out, a)


def test_big_endian_int32_is_decoded_to_native_order(tmp_path: Path) -> None:
    a = np.array([1, 256, 70_000, -2], dtype=np.int32)
    p = tmp_path / "x.idx"
    p.write_bytes(_idx(a, 0x0C, ">i4"))
    out = read_idx(p)
    np.testing.assert_array_equal(out, a)
    assert out.dtype.byteorder in ("=", "<", "|") or out.dtype.isnative


@pytest.mark.parametrize(
    "raw, match",
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "magic"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "type code"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x01", "truncated"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x03\x05", "needs 3"),
    ],
)
def test_malformed_headers_are_refused(raw: bytes, match: str) -> None:
    with pytest.raises(IdxError, match=match):
        parse_idx(raw)


def test_load_fashion_mnist_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for prefix, n in (("train", 6), ("t10k", 2)):
        imgs = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        (tmp_path / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(imgs, 0x08, ">u1")))
        (tmp_path / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(labels, 0x08, ">u1")))
    s = load_fashion_mnist(tmp_path)
    assert s.x_train.shape == (6, 1, 28, 28) and s.x_train.dtype == np.float32
    assert s.x_test.shape == (2, 1, 28, 28)
    assert s.x_train.min() >= 0.0 and s.x_train.max() <= 1.0
    assert s.y_train.dtype == np.int64 and s.y_train.shape == (6,)
