"""GET /api/v1/usage: what a tenant stores and runs, next to its limits (null: no limit)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from edgedistill.service.repos.usage import Usage
from edgedistill.service.settings import Settings


class UsageOut(BaseModel):
    stored_bytes: int = Field(description="models + datasets + artifacts, counted per row")
    model_bytes: int
    dataset_bytes: int
    artifact_bytes: int
    models: int
    datasets: int
    artifacts: int
    measurements: int
    jobs_queued: int
    jobs_running: int
    jobs_total: int
    max_stored_bytes: int | None = Field(description="tenant_max_stored_bytes; uploads past it get 413")
    max_active_jobs: int | None = Field(description="tenant_max_active_jobs (queued + running); 429 past it")
    retention_days: float | None = Field(description="ended jobs and uploads older than this are deleted")

    @classmethod
    def build(cls, usage: Usage, settings: Settings) -> UsageOut:
        return cls(
            stored_bytes=usage.stored_bytes,
            model_bytes=usage.model_bytes,
            dataset_bytes=usage.dataset_bytes,
            artifact_bytes=usage.artifact_bytes,
            models=usage.models,
            datasets=usage.datasets,
            artifacts=usage.artifacts,
            measurements=usage.measurements,
            jobs_queued=usage.jobs_queued,
            jobs_running=usage.jobs_running,
            jobs_total=usage.jobs_total,
            max_stored_bytes=settings.tenant_max_stored_bytes or None,
            max_active_jobs=settings.tenant_max_active_jobs or None,
            retention_days=settings.retention_days or None,
        )
