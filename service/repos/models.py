"""Uploaded teacher models. Deleting hides the row (soft delete): finished jobs still point at it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from edgedistill.contracts.statuses import ACTIVE_STATUSES
from edgedistill.service.db.base import utcnow
from edgedistill.service.db.models import Job, TeacherModel
from edgedistill.service.repos.errors import Conflict, NotFound
from edgedistill.service.repos.pagination import Page, paginate


def create_model(
    session: Session,
    *,
    tenant_id: str,
    name: str,
    filename: str,
    format: str,
    size_bytes: int,
    sha256: str,
    storage_key: str,
    signature: dict[str, Any] | None = None,
) -> TeacherModel:
    model = TeacherModel(
        tenant_id=tenant_id,
        name=name,
        filename=filename,
        format=format,
        size_bytes=size_bytes,
        sha256=sha256,
        storage_key=storage_key,
        signature=signature,
    )
    session.add(model)
    session.flush()
    return model


def find_model_by_sha256(session: Session, *, tenant_id: str, sha256: str) -> TeacherModel | None:
    """This tenant's live model with these exact bytes (the oldest, if a race stored two)."""
    return session.scalar(
        select(TeacherModel)
        .where(TeacherModel.tenant_id == tenant_id, TeacherModel.sha256 == sha256, TeacherModel.deleted_at.is_(None))
        .order_by(TeacherModel.created_at, TeacherModel.id)
        .limit(1)
    )


def get_or_create_model(
    session: Session,
    *,
    tenant_id: str,
    name: str,
    filename: str,
    format: str,
    size_bytes: int,
    sha256: str,
    storage_key: str,
    signature: dict[str, Any] | None = None,
) -> tuple[TeacherModel, bool]:
    """Uploads are deduplicated per tenant by sha256: the same bytes again give the existing row
    (its name unchanged). Returns (row, created)."""
    existing = find_model_by_sha256(session, tenant_id=tenant_id, sha256=sha256)
    if existing is not None:
        return existing, False
    row = create_model(
        session,
        tenant_id=tenant_id,
        name=name,
        filename=filename,
        format=format,
        size_bytes=size_bytes,
        sha256=sha256,
        storage_key=storage_key,
        signature=signature,
    )
    return row, True


def get_model(session: Session, *, tenant_id: str, model_id: str) -> TeacherModel | None:
    """A live model of this tenant; another tenant's (or a deleted) model is None."""
    return session.scalar(
        select(TeacherModel).where(
            TeacherModel.id == model_id, TeacherModel.tenant_id == tenant_id, TeacherModel.deleted_at.is_(None)
        )
    )


def get_model_any_tenant(session: Session, *, model_id: str) -> TeacherModel | None:
    """Unscoped lookup for workers (the job row already carries the tenant)."""
    return session.get(TeacherModel, model_id)


def list_models(session: Session, *, tenant_id: str, cursor: str | None = None, limit: int = 50) -> Page[TeacherModel]:
    stmt = select(TeacherModel).where(TeacherModel.tenant_id == tenant_id, TeacherModel.deleted_at.is_(None))
    return paginate(
        session, stmt, created_at=TeacherModel.created_at, row_id=TeacherModel.id, cursor=cursor, limit=limit
    )


def set_model_signature(session: Session, *, model_id: str, signature: dict[str, Any]) -> None:
    model = session.get(TeacherModel, model_id)
    if model is None:
        raise NotFound(f"model {model_id} not found")
    model.signature = signature
    session.flush()


def delete_model(session: Session, *, tenant_id: str, model_id: str) -> TeacherModel:
    """Soft-delete; Conflict while a queued or running job still needs the file."""
    model = get_model(session, tenant_id=tenant_id, model_id=model_id)
    if model is None:
        raise NotFound(f"model {model_id} not found")
    busy = session.scalar(select(exists().where(Job.model_id == model_id, Job.status.in_(ACTIVE_STATUSES))))
    if busy:
        raise Conflict(f"model {model_id} is used by a queued or running job; cancel it or wait for it to end")
    model.deleted_at = utcnow()
    session.flush()
    return model
