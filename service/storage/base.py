"""The store protocol and the streaming helpers both backends share."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

DEFAULT_CHUNK = 1024 * 1024
_KEY_RE = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{64}$")


@dataclass(frozen=True)
class StoredObject:
    key: str
    sha256: str
    size: int


class TooLarge(Exception):
    """The stream passed max_bytes; nothing was kept."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"upload is larger than the {limit} byte limit")
        self.limit = limit


class ObjectNotFound(KeyError):
    pass


class InvalidKey(ValueError):
    pass


def key_for(sha256: str) -> str:
    """Content address: two hex characters of fan-out, then the whole digest."""
    return check_key(f"{sha256[:2]}/{sha256}")


def check_key(key: str) -> str:
    # Keys come from the database, but a key is also a path: refuse anything else outright.
    if not _KEY_RE.match(key):
        raise InvalidKey(f"not a storage key: {key!r}")
    return key


Source = Iterable[bytes] | BinaryIO


def iter_source(source: Source, chunk_size: int = DEFAULT_CHUNK) -> Iterator[bytes]:
    read = getattr(source, "read", None)
    if callable(read):
        while chunk := read(chunk_size):
            yield chunk
    else:
        yield from source


def spool(source: Source, out: BinaryIO, *, max_bytes: int | None) -> tuple[str, int]:
    """Copy source into out while hashing; TooLarge as soon as max_bytes is passed. Returns (sha256, size)."""
    digest = hashlib.sha256()
    size = 0
    for chunk in iter_source(source):
        size += len(chunk)
        if max_bytes is not None and size > max_bytes:
            raise TooLarge(max_bytes)
        digest.update(chunk)
        out.write(chunk)
    out.flush()
    os.fsync(out.fileno())
    return digest.hexdigest(), size


def sha256_file(path: Path, chunk_size: int = DEFAULT_CHUNK) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


class ArtifactStore(Protocol):
    def put_stream(self, source: Source, *, max_bytes: int | None = None) -> StoredObject:
        """Store a stream of bytes (chunks or a binary file object) without holding it in memory."""
        ...

    def put_file(self, path: Path, *, sha256: str | None = None, move: bool = False) -> StoredObject:
        """Store a local file; move=True may consume it (a rename on the same file system)."""
        ...

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int: ...

    def open(self, key: str) -> BinaryIO:
        """A readable binary file object; the caller closes it."""
        ...

    def iter_range(
        self, key: str, start: int = 0, end: int | None = None, *, chunk_size: int = DEFAULT_CHUNK
    ) -> Iterator[bytes]:
        """Bytes [start, end) (end=None: to the end of the object), in chunks."""
        ...

    def local_path(self, key: str) -> AbstractContextManager[Path]:
        """A local file holding the object for the duration of the block (a download for S3)."""
        ...

    def delete(self, key: str) -> None: ...
