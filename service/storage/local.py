"""Artifact store in a local folder: objects/<ab>/<sha256>, written to tmp/ then renamed into place."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from edgedistill.service.fileperms import FILE_MODE, private_dir
from edgedistill.service.storage.base import (
    DEFAULT_CHUNK,
    ObjectNotFound,
    Source,
    StoredObject,
    check_key,
    key_for,
    sha256_file,
    spool,
)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.objects = self.root / "objects"
        self.tmp = self.root / "tmp"

    def _path(self, key: str) -> Path:
        return self.objects / check_key(key)

    def _staging_file(self) -> tuple[BinaryIO, Path]:
        private_dir(self.tmp)
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="put-")
        return os.fdopen(fd, "wb"), Path(name)

    def _commit(self, staged: Path, sha256: str, size: int) -> StoredObject:
        """Rename a complete, fsynced file into its content address (atomic on one file system)."""
        key = key_for(sha256)
        final = self._path(key)
        private_dir(final.parent)
        os.chmod(staged, FILE_MODE)  # an upload moved in keeps its mode: make sure it is the owner's only
        # Compared by content, not size: an object changed on disk (bit rot, tampering) is repaired by the
        # next write of the same bytes instead of being kept, and served under the original ETag.
        if final.exists() and final.stat().st_size == size and sha256_file(final) == sha256:
            staged.unlink(missing_ok=True)  # same content already stored
        else:
            os.replace(staged, final)
            _fsync_dir(final.parent)
        return StoredObject(key=key, sha256=sha256, size=size)

    def put_stream(self, source: Source, *, max_bytes: int | None = None) -> StoredObject:
        f, staged = self._staging_file()
        try:
            with f:
                sha, size = spool(source, f, max_bytes=max_bytes)
        except BaseException:
            staged.unlink(missing_ok=True)  # never keep a partial upload
            raise
        return self._commit(staged, sha, size)

    def put_file(self, path: Path, *, sha256: str | None = None, move: bool = False) -> StoredObject:
        path = Path(path)
        if not move:
            with path.open("rb") as src:
                return self.put_stream(src)
        sha = sha256 or sha256_file(path)
        size = path.stat().st_size
        try:
            return self._commit(path, sha, size)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
        # Another file system: copy, then consume the source.
        with path.open("rb") as src:
            stored = self.put_stream(src)
        path.unlink(missing_ok=True)
        return stored

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc

    def open(self, key: str) -> BinaryIO:
        try:
            return self._path(key).open("rb")
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc

    def iter_range(
        self, key: str, start: int = 0, end: int | None = None, *, chunk_size: int = DEFAULT_CHUNK
    ) -> Iterator[bytes]:
        with self.open(key) as f:
            f.seek(start)
            remaining = None if end is None else max(0, end - start)
            while remaining is None or remaining > 0:
                chunk = f.read(chunk_size if remaining is None else min(chunk_size, remaining))
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    @contextlib.contextmanager
    def local_path(self, key: str) -> Iterator[Path]:
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFound(key)
        yield path

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
