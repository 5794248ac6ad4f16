from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

from edgedistill.contracts.spec import JobOptions
from edgedistill.contracts.strictness import refuse_boolean_numbers
from edgedistill.contracts.verdict import verdict_of
from edgedistill.service.db.models import Job, JobEvent


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_id: str = Field(min_length=1, max_length=64)
    dataset_id: str | None = Field(default=None, max_length=64)
    device_profile: str = Field(min_length=1, max_length=64, description="Built-in or custom profile name")
    options: JobOptions = Field(default_factory=JobOptions)
    webhook_url: HttpUrl | None = Field(
        default=None, description="Receives a signed POST (X-Edgedistill-Signature) when the job ends"
    )

    @model_validator(mode="before")
    @classmethod
    def _no_boolean_numbers(cls, data: Any) -> Any:
        return refuse_boolean_numbers(cls, data)


class JobOut(BaseModel):
    id: str
    status: str
    stage: str | None
    progress: float = Field(description="0-100")
    model_id: str
    dataset_id: str | None
    device_profile: str
    profile: dict[str, Any]
    options: dict[str, Any]
    metrics: dict[str, Any]
    quality: dict[str, Any] | None = Field(
        default=None,
        description="A finished job's quality verdict: {metric, teacher, student, kept, target, met, samples, "
        "variant, problem}. met is false when the device artifact keeps less than options.quality_target of the "
        "teacher's headline metric on the test split (the job still succeeds); null until the job succeeds",
    )
    error: str | None
    queue: str
    attempts: int
    cancel_requested: bool
    webhook_url: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    updated_at: datetime
    duration_s: float | None = Field(description="finished_at - started_at, or the time running so far")

    @classmethod
    def from_row(cls, job: Job, *, now: datetime | None = None) -> JobOut:
        duration = None
        if job.started_at is not None:
            end = job.finished_at or now
            if end is not None:
                duration = max(0.0, (end - job.started_at).total_seconds())
        return cls(
            id=job.id,
            status=job.status,
            stage=job.stage,
            progress=job.progress,
            model_id=job.model_id,
            dataset_id=job.dataset_id,
            device_profile=job.profile_name,
            profile=job.profile,
            options=job.options,
            metrics=job.metrics or {},
            quality=verdict_of(job.report),
            error=job.error,
            queue=job.queue,
            attempts=job.attempts,
            cancel_requested=job.cancel_requested,
            webhook_url=job.webhook_url,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            heartbeat_at=job.heartbeat_at,
            updated_at=job.updated_at,
            duration_s=duration,
        )


def event_payload(event: JobEvent) -> dict[str, Any]:
    """The JSON of one SSE message. status and progress are lifted to the top level when present, so
    a client can read them without knowing each kind's payload."""
    payload: dict[str, Any] = {
        "id": event.id,
        "job_id": event.job_id,
        "kind": event.kind,
        "stage": event.stage,
        "data": event.data,
        "created_at": event.created_at.isoformat(),
    }
    for key in ("status", "progress", "error"):
        if key in event.data:
            payload[key] = event.data[key]
    return payload
