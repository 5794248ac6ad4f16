"""Jobs and their state machine: queued -> running -> succeeded | failed | cancelled.

Every transition is a conditional UPDATE (so two workers, a redelivered message or the reaper can
never both win) and appends a "status" event in the same transaction; the SSE stream closes after
a terminal one. Other events (stages, epochs, artifacts) are appended by the caller through
service.repos.events.append_event.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from edgedistill.contracts.names import DEFAULT_QUEUE
from edgedistill.contracts.statuses import (
    ACTIVE_STATUSES,
    CANCELLED,
    FAILED,
    JOB_STATUSES,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    TERMINAL_STATUSES,
)
from edgedistill.contracts.verdict import verdict_of
from edgedistill.service.db.base import UTCDateTime, utcnow
from edgedistill.service.db.models import Job
from edgedistill.service.repos.errors import Conflict
from edgedistill.service.repos.events import append_event
from edgedistill.service.repos.pagination import Page, paginate


def _status_event(session: Session, job_id: str, status: str, **extra: Any) -> None:
    append_event(session, job_id=job_id, kind="status", data={"status": status, **extra})


def _same_request(job: Job, **fields: Any) -> bool:
    return all(getattr(job, name) == value for name, value in fields.items())


def create_job(
    session: Session,
    *,
    tenant_id: str,
    model_id: str,
    dataset_id: str | None,
    profile_name: str,
    profile: dict[str, Any],
    options: dict[str, Any],
    queue: str = DEFAULT_QUEUE,
    webhook_url: str | None = None,
    idempotency_key: str | None = None,
) -> tuple[Job, bool]:
    """(job, created). With an idempotency key already used by this tenant, the earlier job is returned
    (created=False) when the request matches it, and Conflict is raised when it does not. A concurrent
    duplicate is caught by the unique constraint, which rolls back this session's transaction."""
    request = {
        "model_id": model_id,
        "dataset_id": dataset_id,
        "profile_name": profile_name,
        "options": options,
        "webhook_url": webhook_url,
    }
    if idempotency_key is not None:
        existing = get_job_by_idempotency_key(session, tenant_id=tenant_id, key=idempotency_key)
        if existing is not None:
            return _replay(existing, idempotency_key, request), False
    job = Job(
        tenant_id=tenant_id,
        profile=profile,
        queue=queue,
        idempotency_key=idempotency_key,
        status=QUEUED,
        progress=0.0,
        metrics={},
        **request,
    )
    session.add(job)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        if idempotency_key is None:
            raise
        existing = get_job_by_idempotency_key(session, tenant_id=tenant_id, key=idempotency_key)
        if existing is None:
            raise
        return _replay(existing, idempotency_key, request), False
    _status_event(session, job.id, QUEUED)
    return job, True


def _replay(existing: Job, key: str, request: dict[str, Any]) -> Job:
    if not _same_request(existing, **request):
        raise Conflict(f"Idempotency-Key {key!r} was already used for a different request (job {existing.id})")
    return existing


def get_job_by_idempotency_key(session: Session, *, tenant_id: str, key: str) -> Job | None:
    return session.scalar(select(Job).where(Job.tenant_id == tenant_id, Job.idempotency_key == key))


def get_job(session: Session, *, tenant_id: str, job_id: str) -> Job | None:
    """This tenant's job; another tenant's is None (the API answers 404 either way)."""
    return session.scalar(select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id))


def get_job_any_tenant(session: Session, *, job_id: str) -> Job | None:
    """Unscoped lookup for workers."""
    return session.get(Job, job_id)


def list_jobs(
    session: Session, *, tenant_id: str, status: str | None = None, cursor: str | None = None, limit: int = 50
) -> Page[Job]:
    stmt = select(Job).where(Job.tenant_id == tenant_id)
    if status is not None:
        if status not in JOB_STATUSES:
            raise ValueError(f"unknown status {status!r}")
        stmt = stmt.where(Job.status == status)
    return paginate(session, stmt, created_at=Job.created_at, row_id=Job.id, cursor=cursor, limit=limit)


def _update(session: Session, job_id: str, condition: ColumnElement[bool], **values: Any) -> bool:
    """Conditional UPDATE of one job; True when it matched. The session's copy is refreshed lazily."""
    stmt = update(Job).where(Job.id == job_id, condition).values(**values).execution_options(synchronize_session=False)
    matched = session.execute(stmt).rowcount == 1  # type: ignore[attr-defined]
    if matched:
        job = session.get(Job, job_id)
        if job is not None:
            session.expire(job)
    return matched


def claim_job(
    session: Session,
    *,
    job_id: str,
    worker_id: str,
    stale_after_s: float | None = None,
    max_attempts: int | None = None,
    now: datetime | None = None,
) -> bool:
    """Take a queued job, or (stale_after_s given) a running one whose worker stopped heartbeating,
    as a redelivered message does after a crash, unless it has been started max_attempts times
    already. False: someone else has it, it has ended or it has used up its attempts."""
    now = now or utcnow()
    condition: ColumnElement[bool] = and_(Job.status == QUEUED, Job.cancel_requested.is_(False))
    if stale_after_s is not None:
        stale = and_(
            Job.status == RUNNING,
            or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < now - timedelta(seconds=stale_after_s)),
        )
        if max_attempts is not None:
            stale = and_(stale, Job.attempts < max_attempts)
        condition = or_(condition, stale)
    job = session.get(Job, job_id)
    previous = job.worker_id if job is not None else None
    claimed = _update(
        session,
        job_id,
        condition,
        status=RUNNING,
        worker_id=worker_id,
        started_at=func.coalesce(Job.started_at, literal(now, UTCDateTime())),  # first start survives redelivery
        heartbeat_at=now,
        attempts=Job.attempts + 1,
        updated_at=now,
    )
    if claimed:
        extra = {"worker_id": worker_id}
        if previous and previous != worker_id:
            extra["previous_worker_id"] = previous
        _status_event(session, job_id, RUNNING, **extra)
    return claimed


def heartbeat(session: Session, *, job_id: str, worker_id: str | None = None, now: datetime | None = None) -> bool:
    """Refresh the heartbeat of a running job (of worker_id, when given); False when it no longer runs."""
    now = now or utcnow()
    condition: ColumnElement[bool] = Job.status == RUNNING
    if worker_id is not None:
        condition = and_(condition, Job.worker_id == worker_id)
    return _update(session, job_id, condition, heartbeat_at=now, updated_at=now)


def is_stale(session: Session, *, job_id: str, stale_after_s: float, now: datetime | None = None) -> bool:
    """A running job whose heartbeat is older than stale_after_s (or missing)."""
    cutoff = (now or utcnow()) - timedelta(seconds=stale_after_s)
    stmt = select(Job.id).where(
        Job.id == job_id, Job.status == RUNNING, or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < cutoff)
    )
    return session.scalar(stmt) is not None


def is_cancel_requested(session: Session, *, job_id: str) -> bool:
    return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def set_stage(session: Session, *, job_id: str, stage: str, progress: float | None = None) -> bool:
    values: dict[str, Any] = {"stage": stage, "updated_at": utcnow()}
    if progress is not None:
        values["progress"] = _clamp(progress)
    return _update(session, job_id, Job.status == RUNNING, **values)


def set_progress(session: Session, *, job_id: str, progress: float) -> bool:
    return _update(session, job_id, Job.status == RUNNING, progress=_clamp(progress), updated_at=utcnow())


def update_progress(
    session: Session,
    *,
    job_id: str,
    stage: str | None = None,
    progress: float | None = None,
    metrics: dict[str, Any] | None = None,
) -> bool:
    """What one pipeline event changes on a running job: its stage, progress and/or metric keys."""
    values: dict[str, Any] = {}
    if stage is not None:
        values["stage"] = stage
    if progress is not None:
        values["progress"] = _clamp(progress)
    if metrics:
        current = session.scalar(select(Job.metrics).where(Job.id == job_id)) or {}
        values["metrics"] = {**current, **metrics}
    if not values:
        return False
    return _update(session, job_id, Job.status == RUNNING, updated_at=utcnow(), **values)


def merge_metrics(session: Session, *, job_id: str, metrics: dict[str, Any]) -> None:
    """Add or replace top-level metric keys (only the owning worker writes them)."""
    job = session.get(Job, job_id)
    if job is None:
        return
    job.metrics = {**(job.metrics or {}), **metrics}  # a new dict: JSON columns do not track mutation
    session.flush()


def finish_job(
    session: Session,
    *,
    job_id: str,
    status: str,
    error: str | None = None,
    report: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    worker_id: str | None = None,
    now: datetime | None = None,
) -> bool:
    """End a queued or running job (of worker_id, when given). False when it had already ended."""
    if status not in TERMINAL_STATUSES:
        raise ValueError(f"finish_job needs a terminal status, got {status!r}")
    now = now or utcnow()
    condition: ColumnElement[bool] = Job.status.in_(ACTIVE_STATUSES)
    if worker_id is not None:
        condition = and_(condition, Job.worker_id == worker_id)
    values: dict[str, Any] = {"status": status, "error": error, "finished_at": now, "updated_at": now}
    if status == SUCCEEDED:
        values["progress"] = 100.0
    if report is not None:
        values["report"] = report
    if metrics:
        current = session.scalar(select(Job.metrics).where(Job.id == job_id)) or {}
        values["metrics"] = {**current, **metrics}
    finished = _update(session, job_id, condition, **values)
    if finished:
        _status_event(session, job_id, status, error=error)
    return finished


def job_summary(session: Session, *, job_id: str) -> dict[str, Any] | None:
    """A JSON-ready description of a job (the webhook payload's "job")."""
    job = session.get(Job, job_id)
    if job is None:
        return None

    def stamp(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": job.id,
        "status": job.status,
        "stage": job.stage,
        "progress": job.progress,
        "error": job.error,
        "model_id": job.model_id,
        "dataset_id": job.dataset_id,
        "device_profile": job.profile_name,
        "metrics": job.metrics or {},
        "quality": verdict_of(job.report),
        "attempts": job.attempts,
        "created_at": stamp(job.created_at),
        "started_at": stamp(job.started_at),
        "finished_at": stamp(job.finished_at),
        "links": {"self": f"/api/v1/jobs/{job.id}", "artifacts": f"/api/v1/jobs/{job.id}/artifacts"},
    }


def request_cancel(session: Session, *, tenant_id: str, job_id: str) -> Job | None:
    """A queued job is cancelled at once; a running one is flagged and its worker stops at the next
    epoch or step. An ended job is returned unchanged. None when the tenant has no such job."""
    job = get_job(session, tenant_id=tenant_id, job_id=job_id)
    if job is None or job.status in TERMINAL_STATUSES:
        return job
    now = utcnow()
    if _update(
        session,
        job_id,
        Job.status == QUEUED,
        status=CANCELLED,
        cancel_requested=True,
        error="cancelled by user",
        finished_at=now,
        updated_at=now,
    ):
        _status_event(session, job_id, CANCELLED, error="cancelled by user")
    elif not job.cancel_requested and _update(
        session, job_id, Job.status == RUNNING, cancel_requested=True, updated_at=now
    ):
        append_event(session, job_id=job_id, kind="progress", data={"message": "cancellation requested"})
    session.refresh(job)
    return job


def reap_stale(session: Session, *, timeout_s: float, now: datetime | None = None) -> list[str]:
    """Fail running jobs whose worker has not heartbeated for timeout_s; returns their ids."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=timeout_s)
    stale = and_(
        Job.status == RUNNING,
        or_(Job.heartbeat_at < cutoff, and_(Job.heartbeat_at.is_(None), Job.updated_at < cutoff)),
    )
    reaped: list[str] = []
    for job_id, worker_id in session.execute(select(Job.id, Job.worker_id).where(stale)).tuples():
        reason = f"worker {worker_id or '?'} stopped sending heartbeats for more than {timeout_s:g} s"
        if _update(session, job_id, stale, status=FAILED, error=reason, finished_at=now, updated_at=now):
            _status_event(session, job_id, FAILED, error=reason)
            reaped.append(job_id)
    return reaped


def list_queued(
    session: Session, *, older_than_s: float | None = None, now: datetime | None = None
) -> list[tuple[str, str]]:
    """(job id, queue) of queued jobs submitted more than older_than_s ago, oldest first: what a worker
    re-enqueues at startup (and later, those the broker lost)."""
    stmt = select(Job.id, Job.queue).where(Job.status == QUEUED).order_by(Job.created_at)
    if older_than_s is not None:
        stmt = stmt.where(Job.created_at <= (now or utcnow()) - timedelta(seconds=older_than_s))
    return [(job_id, queue) for job_id, queue in session.execute(stmt).tuples()]


def list_queued_ids(session: Session) -> list[str]:
    return [job_id for job_id, _ in list_queued(session)]


def _clamp(progress: float) -> float:
    return max(0.0, min(100.0, float(progress)))
