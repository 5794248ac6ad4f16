"""Whether a content-addressed storage key is still used by any live row (before deleting the object)."""

from __future__ import annotations

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from service.db.models import Artifact, Dataset, TeacherModel


def storage_key_in_use(session: Session, *, key: str) -> bool:
    live_model = exists().where(TeacherModel.storage_key == key, TeacherModel.deleted_at.is_(None))
    dataset = exists().where(Dataset.storage_key == key)
    artifact = exists().where(Artifact.storage_key == key)
    return bool(session.scalar(select(or_(live_model, dataset, artifact))))
