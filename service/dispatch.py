"""Fair dispatch across tenants. Submitted jobs wait in the database; the dispatcher keeps at most
`dispatch_ahead` messages per queue waiting in the broker and fills each free slot with the oldest job
of the tenant served longest ago. So with W workers a tenant with 500 queued jobs delays another
tenant's job by at most dispatch_ahead jobs (one per worker at the default of 1), not by 500.

It runs after every submit (API), whenever a worker claims a job (a slot frees up) and in each
workers' maintenance round. Several API processes and workers dispatch at once: a Redis lock on the
broker serialises them, and every send is a conditional update, so a job is never sent twice by
two dispatchers (a duplicate from a redelivery is still a no-op thanks to the worker's claim).
Service-side code: it sends by task name through the JobQueue and imports no worker code.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

from sqlalchemy.orm import Session

from edgedistill.service.queue import JobQueue, QueueUnavailable, redis_ping_url
from edgedistill.service.repos import dispatch as repo
from edgedistill.service.settings import Settings

log = logging.getLogger(__name__)

LOCK_NAME = "edgedistill:dispatch-lock"


@contextlib.contextmanager
def dispatch_lock(broker_url: str | None, *, wait_s: float = 5.0) -> Iterator[bool]:
    """Yields True while holding the cluster-wide dispatch lock; False when it was not acquired in
    time or Redis is unreachable (the caller skips this round; the next trigger dispatches)."""
    if not broker_url:
        yield True  # one process, no broker: nothing to serialise with (and nothing will be sent)
        return
    import redis

    client = redis.Redis.from_url(redis_ping_url(broker_url), socket_connect_timeout=2, socket_timeout=5)
    lock = client.lock(LOCK_NAME, timeout=30, blocking_timeout=wait_s)
    try:
        acquired = lock.acquire()
    except (redis.RedisError, OSError) as exc:
        log.warning("dispatch skipped: %s", exc)
        acquired = False
    try:
        yield bool(acquired)
    finally:
        if acquired:
            with contextlib.suppress(redis.RedisError, OSError):
                lock.release()
        client.close()


def dispatch(sessions: Callable[[], AbstractContextManager[Session]], queue: JobQueue, settings: Settings) -> list[str]:
    """Send waiting jobs while their queue has free slots; returns the ids sent."""
    sent: list[str] = []
    with dispatch_lock(settings.broker_url) as held:
        if not held:
            return sent
        with sessions() as session:
            for name in repo.waiting_queues(session):
                slots = settings.dispatch_ahead - repo.in_flight(session, queue=name)
                while slots > 0:
                    job_id = repo.next_fair_job(session, queue=name, max_running=settings.tenant_max_running_jobs)
                    if job_id is None:
                        break
                    if not repo.mark_dispatched(session, job_id=job_id):
                        session.commit()
                        continue
                    session.commit()  # committed before the send: a worker may claim it at once
                    try:
                        queue.enqueue(job_id, name)
                    except QueueUnavailable as exc:
                        log.warning("job %s stays queued: %s", job_id, exc)
                        repo.unmark_dispatched(session, job_id=job_id)
                        session.commit()
                        return sent
                    sent.append(job_id)
                    slots -= 1
    return sent
