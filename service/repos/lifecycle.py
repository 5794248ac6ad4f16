"""Deleting what a tenant owns: jobs (with their artifacts, measurements and events), datasets, custom
profiles, and the retention sweep. Each refuses (Conflict) what a queued or running job still uses and
returns the storage keys the deleted rows pointed at; the caller commits, then removes the store
objects no row references any more (release_objects), since one object may be shared across rows and
tenants (content addressing)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, exists, select, update
from sqlalchemy.orm import Session

from edgedistill.contracts.statuses import ACTIVE_STATUSES, TERMINAL_STATUSES
from edgedistill.service.db.base import utcnow
from edgedistill.service.db.models import (
    Artifact,
    Dataset,
    DeviceProfileRow,
    Job,
    JobEvent,
    LatencyMeasurement,
    TeacherModel,
)
from edgedistill.service.repos.errors import Conflict, NotFound
from edgedistill.service.repos.storage_refs import storage_key_in_use
from edgedistill.service.storage import ArtifactStore


def _active_jobs(session: Session, tenant_id: str) -> list[Job]:
    return list(session.scalars(select(Job).where(Job.tenant_id == tenant_id, Job.status.in_(ACTIVE_STATUSES))))


def delete_job(session: Session, *, tenant_id: str, job_id: str) -> list[str]:
    """Delete an ended job and everything it produced; Conflict while it is queued or running, or while
    an active job continues from it (options.init_from)."""
    job = session.scalar(select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id))
    if job is None:
        raise NotFound(f"job {job_id} not found")
    if job.status not in TERMINAL_STATUSES:
        raise Conflict(f"job {job_id} is {job.status}; cancel it (POST /jobs/{job_id}/cancel) before deleting it")
    users = [j.id for j in _active_jobs(session, tenant_id) if (j.options or {}).get("init_from") == job_id]
    if users:
        raise Conflict(f"job {job_id} is used by active job {users[0]} (options.init_from); wait for it to end")
    return _delete_job_rows(session, job_id)


def _delete_job_rows(session: Session, job_id: str) -> list[str]:
    keys = list(session.scalars(select(Artifact.storage_key).where(Artifact.job_id == job_id)))
    artifact_ids = select(Artifact.id).where(Artifact.job_id == job_id).scalar_subquery()
    # Explicit, not only ON DELETE CASCADE: the order is the same on every backend.
    for stmt in (
        delete(LatencyMeasurement).where(LatencyMeasurement.artifact_id.in_(artifact_ids)),
        delete(Artifact).where(Artifact.job_id == job_id),
        delete(JobEvent).where(JobEvent.job_id == job_id),
        delete(Job).where(Job.id == job_id),
    ):
        session.execute(stmt.execution_options(synchronize_session=False))
    session.expire_all()
    return keys


def delete_dataset(session: Session, *, tenant_id: str, dataset_id: str) -> list[str]:
    """Delete a dataset; Conflict while a queued or running job reads it (dataset_id or options.old_data).
    Ended jobs that used it keep their results and lose the link (dataset_id becomes null)."""
    row = session.scalar(select(Dataset).where(Dataset.id == dataset_id, Dataset.tenant_id == tenant_id))
    if row is None:
        raise NotFound(f"dataset {dataset_id} not found")
    for job in _active_jobs(session, tenant_id):
        if job.dataset_id == dataset_id or (job.options or {}).get("old_data") == dataset_id:
            raise Conflict(f"dataset {dataset_id} is used by {job.status} job {job.id}; cancel it or wait for it")
    session.execute(
        update(Job)
        .where(Job.dataset_id == dataset_id)
        .values(dataset_id=None)
        .execution_options(synchronize_session=False)
    )
    key = row.storage_key
    session.delete(row)
    session.flush()
    return [key]


def delete_profile(session: Session, *, tenant_id: str, name: str) -> None:
    """Delete a custom profile; Conflict while a queued or running job was submitted for it (jobs keep a
    snapshot of the profile, so ended jobs are unaffected)."""
    row = session.scalar(
        select(DeviceProfileRow).where(DeviceProfileRow.tenant_id == tenant_id, DeviceProfileRow.name == name)
    )
    if row is None:
        raise NotFound(f"custom device profile {name!r} not found")
    busy = session.scalar(
        select(Job.id)
        .where(Job.tenant_id == tenant_id, Job.profile_name == name, Job.status.in_(ACTIVE_STATUSES))
        .limit(1)
    )
    if busy is not None:
        raise Conflict(f"device profile {name!r} is used by active job {busy}; cancel it or wait for it to end")
    session.delete(row)
    session.flush()


def release_objects(session: Session, store: ArtifactStore, keys: list[str]) -> list[str]:
    """After the deleting transaction committed: remove each object no live row references any more
    (another row, maybe another tenant's, with the same content keeps it). Returns the keys removed."""
    removed = []
    for key in dict.fromkeys(keys):
        if not storage_key_in_use(session, key=key):
            store.delete(key)
            removed.append(key)
    return removed


def expired(session: Session, *, older_than_days: float, now: datetime | None = None) -> dict[str, list[str]]:
    """What retention removes: ended jobs finished before the cutoff, datasets and (live) models uploaded
    before it that no queued or running job uses. Ids per kind; every tenant."""
    cutoff = (now or utcnow()) - timedelta(days=older_than_days)
    jobs = session.scalars(select(Job.id).where(Job.status.in_(TERMINAL_STATUSES), Job.finished_at < cutoff))
    active = select(Job.id).where(Job.status.in_(ACTIVE_STATUSES))
    datasets = session.scalars(
        select(Dataset.id).where(
            Dataset.created_at < cutoff, ~exists(active.where(Job.dataset_id == Dataset.id).correlate(Dataset))
        )
    )
    models = session.scalars(
        select(TeacherModel.id).where(
            TeacherModel.created_at < cutoff,
            TeacherModel.deleted_at.is_(None),
            ~exists(active.where(Job.model_id == TeacherModel.id).correlate(TeacherModel)),
        )
    )
    return {"jobs": list(jobs), "datasets": list(datasets), "models": list(models)}


def apply_retention(
    session: Session, store: ArtifactStore, *, older_than_days: float, now: datetime | None = None
) -> dict[str, int]:
    """Delete what expired() names, committing per item, then release the objects. Counts per kind."""
    found = expired(session, older_than_days=older_than_days, now=now)
    done = {"jobs": 0, "datasets": 0, "models": 0, "objects": 0}
    keys: list[str] = []
    for job_id in found["jobs"]:
        keys += _delete_job_rows(session, job_id)
        session.commit()
        done["jobs"] += 1
    for dataset_id in found["datasets"]:
        row = session.get(Dataset, dataset_id)
        if row is None:
            continue
        try:
            keys += delete_dataset(session, tenant_id=row.tenant_id, dataset_id=dataset_id)
        except Conflict:  # a job was submitted for it since expired() looked
            session.rollback()
            continue
        session.commit()
        done["datasets"] += 1
    for model_id in found["models"]:
        model = session.get(TeacherModel, model_id)
        if model is None or model.deleted_at is not None:
            continue
        busy = session.scalar(select(exists().where(Job.model_id == model_id, Job.status.in_(ACTIVE_STATUSES))))
        if busy:
            continue
        model.deleted_at = now or utcnow()  # soft: ended jobs keep pointing at the row
        keys.append(model.storage_key)
        session.commit()
        done["models"] += 1
    done["objects"] = len(release_objects(session, store, keys))
    return done
