"""IDX files (the MNIST / Fashion-MNIST format, optionally gzipped) read with numpy only.

Layout (yann.lecun.com/exdb/mnist): two zero bytes, a type code, the number of dimensions, then one
big-endian uint32 per dimension and the data in C order, big-endian. Debian's dataset-fashion-mnist
installs the four .gz files under /usr/share/datasets/fashion-mnist."""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

# type code -> big-endian numpy dtype
_DTYPES: dict[int, str] = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class IdxError(ValueError):
    pass


def parse_idx(raw: bytes) -> np.ndarray:
    """Decode one IDX payload (already decompressed) into an array in native byte order."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise IdxError("not an IDX file: the magic number must start with two zero bytes")
    code, ndim = raw[2], raw[3]
    if code not in _DTYPES:
        raise IdxError(f"unknown IDX type code 0x{code:02x}")
    if ndim == 0 or len(raw) < 4 + 4 * ndim:
        raise IdxError("truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    dtype = np.dtype(_DTYPES[code])
    count = int(np.prod(shape, dtype=np.int64))
    body = raw[4 + 4 * ndim :]
    if len(body) != count * dtype.itemsize:
        raise IdxError(f"IDX body has {len(body)} bytes; the header {shape} needs {count * dtype.itemsize}")
    return np.frombuffer(body, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: Path) -> np.ndarray:
    """Read an .idx file, gzipped when its name ends in .gz."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return parse_idx(raw)


@dataclass(frozen=True)
class ImageSet:
    x_train: np.ndarray  # (60000, 1, 28, 28) float32 in [0, 1]
    y_train: np.ndarray  # (60000,) int64
    x_test: np.ndarray  # (10000, 1, 28, 28)
    y_test: np.ndarray


def load_fashion_mnist(root: Path = FASHION_MNIST_DIR) -> ImageSet:
    """The official 60k/10k split as float32 NCHW images in [0, 1] and int64 labels."""

    def images(name: str) -> np.ndarray:
        a = read_idx(root / name)
        if a.ndim != 3:
            raise IdxError(f"{name}: expected (N, H, W) images, got shape {a.shape}")
        return (a.astype(np.float32) / 255.0)[:, None, :, :]

    def labels(name: str) -> np.ndarray:
        return read_idx(root / name).astype(np.int64)

    s = ImageSet(
        images("train-images-idx3-ubyte.gz"),
        labels("train-labels-idx1-ubyte.gz"),
        images("t10k-images-idx3-ubyte.gz"),
        labels("t10k-labels-idx1-ubyte.gz"),
    )
    if s.x_train.shape[0] != s.y_train.shape[0] or s.x_test.shape[0] != s.y_test.shape[0]:
        raise IdxError("image and label counts differ")
    return s
