"""Artifacts a job produced. One row per (job, kind): a redelivered job updates, never duplicates."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from edgedistill.service.db.models import Artifact, Job
from edgedistill.service.repos.errors import NotFound


def upsert_artifact(
    session: Session,
    *,
    job_id: str,
    kind: str,
    tenant_id: str | None = None,
    filename: str,
    size_bytes: int,
    sha256: str,
    storage_key: str,
    metadata: dict[str, Any] | None = None,
) -> Artifact:
    if tenant_id is None:  # the worker knows the job; the row carries its tenant for scoping
        tenant_id = session.scalar(select(Job.tenant_id).where(Job.id == job_id))
        if tenant_id is None:
            raise NotFound(f"job {job_id} not found")
    fields: dict[str, Any] = {
        "tenant_id": tenant_id,
        "filename": filename,
        "size_bytes": size_bytes,
        "sha256": sha256,
        "storage_key": storage_key,
        "metadata_": metadata or {},
    }
    existing = get_job_artifact(session, job_id=job_id, kind=kind)
    if existing is None:
        artifact = Artifact(job_id=job_id, kind=kind, **fields)
        session.add(artifact)
        try:
            session.flush()
            return artifact
        except IntegrityError:  # inserted concurrently: fall through to update it
            session.rollback()
            existing = get_job_artifact(session, job_id=job_id, kind=kind)
            if existing is None:
                raise
    for name, value in fields.items():
        setattr(existing, name, value)
    session.flush()
    return existing


def get_job_artifact(session: Session, *, job_id: str, kind: str) -> Artifact | None:
    return session.scalar(select(Artifact).where(Artifact.job_id == job_id, Artifact.kind == kind))


def get_artifact(session: Session, *, tenant_id: str, artifact_id: str) -> Artifact | None:
    return session.scalar(select(Artifact).where(Artifact.id == artifact_id, Artifact.tenant_id == tenant_id))


def list_job_artifacts(session: Session, *, tenant_id: str, job_id: str) -> list[Artifact]:
    stmt = (
        select(Artifact)
        .where(Artifact.job_id == job_id, Artifact.tenant_id == tenant_id)
        .order_by(Artifact.created_at, Artifact.kind)
    )
    return list(session.scalars(stmt))
