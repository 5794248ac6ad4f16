"""Uploaded transfer data sets (.npz)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgedistill.service.db.models import Dataset
from edgedistill.service.repos.pagination import Page, paginate


def create_dataset(
    session: Session,
    *,
    tenant_id: str,
    name: str,
    filename: str,
    size_bytes: int,
    sha256: str,
    storage_key: str,
    summary: dict[str, Any],
) -> Dataset:
    dataset = Dataset(
        tenant_id=tenant_id,
        name=name,
        filename=filename,
        size_bytes=size_bytes,
        sha256=sha256,
        storage_key=storage_key,
        summary=summary,
    )
    session.add(dataset)
    session.flush()
    return dataset


def find_dataset_by_sha256(session: Session, *, tenant_id: str, sha256: str) -> Dataset | None:
    """This tenant's data set with these exact bytes (the oldest, if a race stored two)."""
    return session.scalar(
        select(Dataset)
        .where(Dataset.tenant_id == tenant_id, Dataset.sha256 == sha256)
        .order_by(Dataset.created_at, Dataset.id)
        .limit(1)
    )


def get_or_create_dataset(
    session: Session,
    *,
    tenant_id: str,
    name: str,
    filename: str,
    size_bytes: int,
    sha256: str,
    storage_key: str,
    summary: dict[str, Any],
) -> tuple[Dataset, bool]:
    """Uploads are deduplicated per tenant by sha256: the same bytes again give the existing row
    (its name unchanged). Returns (row, created)."""
    existing = find_dataset_by_sha256(session, tenant_id=tenant_id, sha256=sha256)
    if existing is not None:
        return existing, False
    row = create_dataset(
        session,
        tenant_id=tenant_id,
        name=name,
        filename=filename,
        size_bytes=size_bytes,
        sha256=sha256,
        storage_key=storage_key,
        summary=summary,
    )
    return row, True


def get_dataset(session: Session, *, tenant_id: str, dataset_id: str) -> Dataset | None:
    return session.scalar(select(Dataset).where(Dataset.id == dataset_id, Dataset.tenant_id == tenant_id))


def get_dataset_any_tenant(session: Session, *, dataset_id: str) -> Dataset | None:
    """Unscoped lookup for workers."""
    return session.get(Dataset, dataset_id)


def list_datasets(session: Session, *, tenant_id: str, cursor: str | None = None, limit: int = 50) -> Page[Dataset]:
    stmt = select(Dataset).where(Dataset.tenant_id == tenant_id)
    return paginate(session, stmt, created_at=Dataset.created_at, row_id=Dataset.id, cursor=cursor, limit=limit)
