"""Content checks of the store: objects are named by their sha256, so any object can be re-hashed and
compared with its name (verify-on-read, `edgedistill admin scrub`)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from edgedistill.service.storage.base import DEFAULT_CHUNK, ArtifactStore, ObjectNotFound, check_key


def object_sha256(store: ArtifactStore, key: str) -> str:
    digest = hashlib.sha256()
    with store.open(key) as f:
        while chunk := f.read(DEFAULT_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def key_sha256(key: str) -> str:
    return check_key(key).split("/", 1)[1]


def object_intact(store: ArtifactStore, key: str, expected_sha256: str | None = None) -> bool:
    """True when the object's bytes hash to its name (and to expected_sha256 when given)."""
    try:
        actual = object_sha256(store, key)
    except ObjectNotFound:
        return False
    return actual == key_sha256(key) and (expected_sha256 is None or actual == expected_sha256)


@dataclass(frozen=True)
class StoredRef:
    """A database row that points at a stored object."""

    what: str  # "teacher model", "dataset", "artifact"
    row_id: str
    key: str
    sha256: str
    size: int


@dataclass(frozen=True)
class ScrubProblem:
    ref: StoredRef
    problem: str  # "missing", "size", "content"
    detail: str


def scrub(store: ArtifactStore, refs: Iterable[StoredRef]) -> tuple[int, list[ScrubProblem]]:
    """Re-hash every referenced object once; (objects checked, problems found, one per row)."""
    problems: list[ScrubProblem] = []
    seen: dict[str, tuple[int, str] | None] = {}  # key -> (size, sha256), None when missing
    for ref in refs:
        if ref.key not in seen:
            seen[ref.key] = _read(store, ref.key)
        found = seen[ref.key]
        named = key_sha256(ref.key)
        if found is None:
            problems.append(ScrubProblem(ref, "missing", "no object under this key"))
        elif found[1] != named:
            problems.append(ScrubProblem(ref, "content", f"the bytes hash to {found[1]}, the key says {named}"))
        elif found[0] != ref.size:
            problems.append(ScrubProblem(ref, "size", f"{found[0]} bytes stored, {ref.size} recorded"))
        elif ref.sha256 != named:
            problems.append(ScrubProblem(ref, "content", f"the row lists sha256 {ref.sha256}, the object is {named}"))
    return len(seen), problems


def _read(store: ArtifactStore, key: str) -> tuple[int, str] | None:
    try:
        return store.size(key), object_sha256(store, key)
    except ObjectNotFound:
        return None
