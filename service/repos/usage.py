"""Per-tenant usage: what the quotas check and GET /api/v1/usage shows. Bytes are counted per row
(a file two tenants both uploaded counts for each; the store keeps it once)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from edgedistill.contracts.statuses import ACTIVE_STATUSES, QUEUED, RUNNING
from edgedistill.service.db.models import Artifact, Dataset, Job, LatencyMeasurement, TeacherModel


@dataclass(frozen=True)
class Usage:
    model_bytes: int
    dataset_bytes: int
    artifact_bytes: int
    models: int
    datasets: int
    artifacts: int
    jobs_queued: int
    jobs_running: int
    jobs_total: int
    measurements: int

    @property
    def stored_bytes(self) -> int:
        return self.model_bytes + self.dataset_bytes + self.artifact_bytes


def _sum_count(session: Session, column: Any, *where: Any) -> tuple[int, int]:
    total, count = session.execute(select(func.coalesce(func.sum(column), 0), func.count()).where(*where)).one()
    return int(total), int(count)


def stored_bytes(session: Session, *, tenant_id: str) -> int:
    models, _ = _sum_count(session, TeacherModel.size_bytes, TeacherModel.tenant_id == tenant_id,
                           TeacherModel.deleted_at.is_(None))  # fmt: skip
    datasets, _ = _sum_count(session, Dataset.size_bytes, Dataset.tenant_id == tenant_id)
    artifacts, _ = _sum_count(session, Artifact.size_bytes, Artifact.tenant_id == tenant_id)
    return models + datasets + artifacts


def active_jobs(session: Session, *, tenant_id: str) -> int:
    stmt = select(func.count()).where(Job.tenant_id == tenant_id, Job.status.in_(ACTIVE_STATUSES))
    return int(session.scalar(stmt) or 0)


def tenant_usage(session: Session, *, tenant_id: str) -> Usage:
    model_bytes, models = _sum_count(session, TeacherModel.size_bytes, TeacherModel.tenant_id == tenant_id,
                                     TeacherModel.deleted_at.is_(None))  # fmt: skip
    dataset_bytes, datasets = _sum_count(session, Dataset.size_bytes, Dataset.tenant_id == tenant_id)
    artifact_bytes, artifacts = _sum_count(session, Artifact.size_bytes, Artifact.tenant_id == tenant_id)
    rows = session.execute(select(Job.status, func.count()).where(Job.tenant_id == tenant_id).group_by(Job.status))
    counts: dict[str, int] = {str(status): int(n) for status, n in rows.all()}
    measurements = session.scalar(select(func.count()).where(LatencyMeasurement.tenant_id == tenant_id)) or 0
    return Usage(
        model_bytes=model_bytes,
        dataset_bytes=dataset_bytes,
        artifact_bytes=artifact_bytes,
        models=models,
        datasets=datasets,
        artifacts=artifacts,
        jobs_queued=int(counts.get(QUEUED, 0)),
        jobs_running=int(counts.get(RUNNING, 0)),
        jobs_total=int(sum(counts.values())),
        measurements=int(measurements),
    )
