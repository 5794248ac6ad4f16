"""Artifact store in an S3-compatible bucket (AWS, MinIO, Ceph...) for several machines.

Streams are spooled to a local temp file first: the key is the content's sha256, known only at
the end. boto3's upload_file sends large files as a multipart upload.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast

import boto3
from botocore.exceptions import ClientError

from edgedistill.service.fileperms import private_dir
from edgedistill.service.settings import Settings
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


def _missing(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in {"404", "NoSuchKey", "NotFound"}


class S3Store:
    def __init__(self, *, bucket: str, client: Any, prefix: str = "", staging_dir: Path | None = None) -> None:
        self.bucket = bucket
        self.client = client
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.staging_dir = staging_dir

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Store:
        if not settings.s3_bucket:
            raise ValueError("storage_backend=s3 needs EDGEDISTILL_S3_BUCKET")
        client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region)
        return cls(
            bucket=settings.s3_bucket, client=client, prefix=settings.s3_prefix, staging_dir=settings.upload_tmp_dir
        )

    def _name(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _temp(self) -> tuple[BinaryIO, Path]:
        if self.staging_dir is not None:
            private_dir(self.staging_dir)
        fd, name = tempfile.mkstemp(dir=self.staging_dir, prefix="s3put-")
        return os.fdopen(fd, "wb"), Path(name)

    def put_stream(self, source: Source, *, max_bytes: int | None = None) -> StoredObject:
        f, staged = self._temp()
        try:
            with f:
                sha, _size = spool(source, f, max_bytes=max_bytes)
            return self.put_file(staged, sha256=sha, move=True)
        finally:
            staged.unlink(missing_ok=True)

    def put_file(self, path: Path, *, sha256: str | None = None, move: bool = False) -> StoredObject:
        path = Path(path)
        sha = sha256 or sha256_file(path)
        size = path.stat().st_size
        key = key_for(sha)
        if not (self.exists(key) and self.size(key) == size):
            self.client.upload_file(str(path), self.bucket, self._name(key))
        if move:
            path.unlink(missing_ok=True)
        return StoredObject(key=key, sha256=sha, size=size)

    def _head(self, key: str) -> dict[str, Any]:
        try:
            return cast(dict[str, Any], self.client.head_object(Bucket=self.bucket, Key=self._name(key)))
        except ClientError as exc:
            if _missing(exc):
                raise ObjectNotFound(key) from exc
            raise

    def exists(self, key: str) -> bool:
        try:
            self._head(key)
        except ObjectNotFound:
            return False
        return True

    def size(self, key: str) -> int:
        return int(self._head(key)["ContentLength"])

    def _get(self, key: str, **kwargs: Any) -> Any:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._name(key), **kwargs)["Body"]
        except ClientError as exc:
            if _missing(exc):
                raise ObjectNotFound(key) from exc
            raise

    def open(self, key: str) -> BinaryIO:
        return cast(BinaryIO, self._get(key))

    def iter_range(
        self, key: str, start: int = 0, end: int | None = None, *, chunk_size: int = DEFAULT_CHUNK
    ) -> Iterator[bytes]:
        if end is not None and end <= start:
            return
        spec = f"bytes={start}-" + ("" if end is None else str(end - 1))
        body = self._get(key, Range=spec) if (start or end is not None) else self._get(key)
        try:
            yield from body.iter_chunks(chunk_size)
        finally:
            body.close()

    @contextlib.contextmanager
    def local_path(self, key: str) -> Iterator[Path]:
        f, target = self._temp()
        f.close()
        try:
            try:
                self.client.download_file(self.bucket, self._name(key), str(target))
            except ClientError as exc:
                if _missing(exc):
                    raise ObjectNotFound(key) from exc
                raise
            yield target
        finally:
            target.unlink(missing_ok=True)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._name(key))
