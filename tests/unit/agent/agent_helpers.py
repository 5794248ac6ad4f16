"""Helpers for the agent's tests (a module of its own: `conftest` is a shared module name)."""

from __future__ import annotations

from typing import Any


def artifact_dict(run: Any, kind: str, artifact_id: str = "a1") -> dict[str, Any]:
    """The artifact as GET /devices/me/artifacts lists it."""
    art = run.artifacts[kind]
    return {
        "id": artifact_id,
        "kind": kind,
        "filename": art.path.name,
        "sha256": art.sha256,
        "size_bytes": art.size_bytes,
        "metadata": art.metadata,
        "task": "classification",
        "probe_artifact_id": "probe1",
    }
