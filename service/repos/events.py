"""Job events: one row per state change or progress report, read by the SSE stream in id order."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgedistill.contracts.events import JOB_EVENT_KINDS
from edgedistill.service.db.models import JobEvent


def append_event(
    session: Session, *, job_id: str, kind: str, stage: str | None = None, data: dict[str, Any] | None = None
) -> JobEvent:
    if kind not in JOB_EVENT_KINDS:
        raise ValueError(f"unknown event kind {kind!r}; one of {', '.join(JOB_EVENT_KINDS)}")
    event = JobEvent(job_id=job_id, kind=kind, stage=stage, data=data or {})
    session.add(event)
    session.flush()  # assigns the id
    return event


def list_events(session: Session, *, job_id: str, after_id: int = 0, limit: int = 500) -> list[JobEvent]:
    stmt = (
        select(JobEvent)
        .where(JobEvent.job_id == job_id, JobEvent.id > after_id)
        .order_by(JobEvent.id)
        .limit(max(1, limit))
    )
    return list(session.scalars(stmt))
