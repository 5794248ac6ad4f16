"""Whether a content-addressed storage key is still used by any live row (before deleting the object)."""

from __future__ import annotations

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from edgedistill.service.db.models import Artifact, Dataset, TeacherModel
from edgedistill.service.storage.integrity import StoredRef


def storage_key_in_use(session: Session, *, key: str) -> bool:
    live_model = exists().where(TeacherModel.storage_key == key, TeacherModel.deleted_at.is_(None))
    dataset = exists().where(Dataset.storage_key == key)
    artifact = exists().where(Artifact.storage_key == key)
    return bool(session.scalar(select(or_(live_model, dataset, artifact))))


def all_storage_refs(session: Session) -> list[StoredRef]:
    """Every row that points at a stored object (teacher models not deleted, datasets, artifacts)."""
    refs: list[StoredRef] = []
    models = select(TeacherModel.id, TeacherModel.storage_key, TeacherModel.sha256, TeacherModel.size_bytes).where(
        TeacherModel.deleted_at.is_(None)
    )
    for row_id, key, sha, size in session.execute(models).tuples():
        refs.append(StoredRef("teacher model", row_id, key, sha, size))
    for row_id, key, sha, size in session.execute(
        select(Dataset.id, Dataset.storage_key, Dataset.sha256, Dataset.size_bytes)
    ).tuples():
        refs.append(StoredRef("dataset", row_id, key, sha, size))
    for row_id, key, sha, size in session.execute(
        select(Artifact.id, Artifact.storage_key, Artifact.sha256, Artifact.size_bytes)
    ).tuples():
        refs.append(StoredRef("artifact", row_id, key, sha, size))
    return refs
