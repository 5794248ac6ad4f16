"""Recording an artifact: files appear under their final name only once complete, every artifact
gets a sha256, a size and a `<file>.json` sidecar that describes it, and the run is told about it.

Writers stage a file with `staged_file` (a temp name in the work folder, renamed into place when the
block succeeds, deleted when it fails), then call `record_artifact`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgedistill.contracts.errors import PipelineError
from edgedistill.workers.pipeline.context import ArtifactRecord, RunContext, RunState
from edgedistill.workers.steps import deployment

SIDECAR_SUFFIX = ".json"
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def _check_filename(filename: str) -> None:
    # Artifact names are chosen by the steps, never by users; refuse anything that could leave work_dir.
    if not filename or "/" in filename or "\\" in filename or filename in (".", "..") or "\x00" in filename:
        raise ValueError(f"invalid artifact file name {filename!r}")


@contextlib.contextmanager
def staged_file(work_dir: Path, filename: str) -> Iterator[Path]:
    """Yield a temp path in work_dir to write (and check) a file at; on success it is renamed to
    work_dir/filename atomically, on any exception it is removed and nothing appears."""
    _check_filename(filename)
    work_dir.mkdir(parents=True, exist_ok=True)
    final = work_dir / filename
    # Keep the real suffix last: some writers (onnx, litert) look at it.
    tmp = work_dir / f".part-{uuid.uuid4().hex[:12]}-{filename}"
    try:
        yield tmp
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise PipelineError(f"{filename} was not written")
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(work_dir: Path, filename: str, data: bytes) -> Path:
    with staged_file(work_dir, filename) as tmp:
        tmp.write_bytes(data)
    return work_dir / filename


def write_json_atomic(work_dir: Path, filename: str, obj: Any) -> Path:
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"
    return write_bytes_atomic(work_dir, filename, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
    """numpy scalars/arrays and paths, which metadata often holds, as plain JSON values."""
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def to_jsonable(obj: Any) -> Any:
    """A deep copy made only of JSON types (round trip through json with the same converters)."""
    return json.loads(json.dumps(obj, default=_json_default))


def class_labels(ctx: RunContext, state: RunState) -> list[str] | None:
    labels = getattr(state.data, "class_labels", None) if state.data is not None else None
    return list(labels) if labels else (list(ctx.spec.class_labels) if ctx.spec.class_labels else None)


def record_artifact(
    ctx: RunContext,
    state: RunState,
    *,
    kind: str,
    path: Path,
    metadata: dict[str, Any] | None = None,
    sidecar: bool = True,
) -> ArtifactRecord:
    """Hash and size the finished file, write its sidecar, store the record under state.artifacts[kind]
    and emit an "artifact" event. Returns the record."""
    if not path.is_file():
        raise PipelineError(f"artifact {kind} is missing: {path.name}")
    digest = sha256_file(path)
    size = path.stat().st_size
    meta: dict[str, Any] = {
        "kind": kind,
        "filename": path.name,
        "sha256": digest,
        "size_bytes": size,
        "profile": ctx.spec.profile.name,
    }
    labels = class_labels(ctx, state)
    if labels is not None:
        meta["class_labels"] = labels
    meta.update(metadata or {})
    facts = deployment.facts_for(path)  # read from the file itself: I/O, layout, int8 params, snippet
    if facts is not None:
        meta["deployment"] = facts
    meta = to_jsonable(meta)
    if sidecar:
        write_json_atomic(path.parent, sidecar_path(path).name, meta)
    record = ArtifactRecord(kind=kind, path=path, sha256=digest, size_bytes=size, metadata=meta)
    state.artifacts[kind] = record
    ctx.emit(
        "artifact",
        {
            "kind": kind,
            "path": str(path),
            "filename": path.name,
            "sha256": digest,
            "size_bytes": size,
            "metadata": meta,
        },
    )
    return record
