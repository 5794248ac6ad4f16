"""Queries of the fair dispatcher: jobs wait in the database (status queued, dispatched_at NULL) and
are sent to the broker a few at a time, the next one always from the tenant served longest ago."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from edgedistill.contracts.statuses import QUEUED, RUNNING
from edgedistill.service.db.base import utcnow
from edgedistill.service.db.models import Job


def in_flight(session: Session, *, queue: str) -> int:
    """Jobs sent to the broker that no worker has claimed yet."""
    stmt = select(func.count()).where(Job.queue == queue, Job.status == QUEUED, Job.dispatched_at.is_not(None))
    return int(session.scalar(stmt) or 0)


def waiting_queues(session: Session) -> list[str]:
    stmt = select(Job.queue).where(Job.status == QUEUED, Job.dispatched_at.is_(None)).distinct()
    return sorted(session.scalars(stmt))


def next_fair_job(session: Session, *, queue: str, max_running: int = 0) -> str | None:
    """The oldest waiting job of the tenant whose latest dispatch is the oldest (never dispatched
    first); with max_running > 0, tenants with that many jobs running or dispatched are skipped."""
    waiting = (
        select(Job.tenant_id, func.min(Job.created_at).label("oldest"))
        .where(Job.queue == queue, Job.status == QUEUED, Job.dispatched_at.is_(None))
        .group_by(Job.tenant_id)
        .subquery()
    )
    last = (
        select(Job.tenant_id, func.max(Job.dispatched_at).label("last"))
        .where(Job.dispatched_at.is_not(None))
        .group_by(Job.tenant_id)
        .subquery()
    )
    stmt = select(waiting.c.tenant_id).outerjoin(last, last.c.tenant_id == waiting.c.tenant_id)
    if max_running > 0:
        busy = (
            select(Job.tenant_id, func.count().label("n"))
            .where((Job.status == RUNNING) | ((Job.status == QUEUED) & Job.dispatched_at.is_not(None)))
            .group_by(Job.tenant_id)
            .subquery()
        )
        stmt = stmt.outerjoin(busy, busy.c.tenant_id == waiting.c.tenant_id).where(
            func.coalesce(busy.c.n, 0) < max_running
        )
    # NULLs (never dispatched) first on every backend: order by "has a last dispatch" before the time.
    stmt = stmt.order_by(last.c.last.is_not(None), last.c.last, waiting.c.oldest).limit(1)
    tenant = session.scalar(stmt)
    if tenant is None:
        return None
    job_stmt = (
        select(Job.id)
        .where(Job.tenant_id == tenant, Job.queue == queue, Job.status == QUEUED, Job.dispatched_at.is_(None))
        .order_by(Job.created_at, Job.id)
        .limit(1)
    )
    return session.scalar(job_stmt)


def mark_dispatched(session: Session, *, job_id: str, now: datetime | None = None) -> bool:
    """Conditional: False when another dispatcher sent it, or it was cancelled, in between."""
    stmt = (
        update(Job)
        .where(Job.id == job_id, Job.status == QUEUED, Job.dispatched_at.is_(None))
        .values(dispatched_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
    return session.execute(stmt).rowcount == 1  # type: ignore[attr-defined]


def unmark_dispatched(session: Session, *, job_id: str) -> None:
    """The send failed (broker down, or the broker lost the message): the job waits its turn again."""
    stmt = (
        update(Job)
        .where(Job.id == job_id, Job.status == QUEUED)
        .values(dispatched_at=None)
        .execution_options(synchronize_session=False)
    )
    session.execute(stmt)


def dispatched_queued(
    session: Session, *, older_than_s: float = 0.0, now: datetime | None = None
) -> list[tuple[str, str]]:
    """(job id, queue) of jobs sent to the broker more than older_than_s ago and not yet claimed."""
    cutoff = (now or utcnow()) - timedelta(seconds=older_than_s)
    stmt = (
        select(Job.id, Job.queue)
        .where(Job.status == QUEUED, Job.dispatched_at.is_not(None), Job.dispatched_at <= cutoff)
        .order_by(Job.dispatched_at)
    )
    return [(job_id, queue) for job_id, queue in session.execute(stmt).tuples()]
