"""Artifact store: uploads and job artifacts, content-addressed by sha256.

`LocalStore` (a folder, the default) and `S3Store` (any S3-compatible service, for several
machines) implement the `ArtifactStore` protocol; get_store(settings) picks one.
"""

from __future__ import annotations

from edgedistill.service.settings import Settings
from edgedistill.service.storage.base import (
    DEFAULT_CHUNK,
    ArtifactStore,
    InvalidKey,
    ObjectNotFound,
    StoredObject,
    TooLarge,
    key_for,
)
from edgedistill.service.storage.local import LocalStore

__all__ = [
    "DEFAULT_CHUNK",
    "ArtifactStore",
    "InvalidKey",
    "LocalStore",
    "ObjectNotFound",
    "StoredObject",
    "TooLarge",
    "get_store",
    "key_for",
]


def get_store(settings: Settings) -> ArtifactStore:
    if settings.storage_backend == "s3":
        from edgedistill.service.storage.s3 import S3Store  # boto3 is imported only when S3 is configured

        return S3Store.from_settings(settings)
    return LocalStore(settings.storage_dir)
