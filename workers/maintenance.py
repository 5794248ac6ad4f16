"""Runs inside each worker's main process: re-enqueue queued jobs the broker may have lost, and fail
jobs whose heartbeat stopped (their worker died without the broker redelivering)."""

from __future__ import annotations

import ast
import json
import logging
import threading

from celery import Celery

from service.db.session import session_scope
from service.repos import jobs as jobs_repo
from service.settings import get_settings
from workers.celery_app import QUEUES, RUN_JOB

log = logging.getLogger(__name__)


def broker_job_ids(app: Celery) -> set[str]:
    """Job ids of run_job messages the Redis broker holds: waiting in a queue or delivered but unacked.
    Reads kombu's Redis layout (a list per queue, the 'unacked' hash) without consuming anything."""
    ids: set[str] = set()
    with app.connection_for_read() as conn:
        client = conn.default_channel.client
        raw: list[bytes] = []
        for queue in QUEUES:
            raw += client.lrange(queue, 0, -1)
        for value in client.hvals("unacked"):
            try:
                raw.append(json.dumps(json.loads(value)[0]).encode())
            except (ValueError, IndexError, TypeError):
                continue
    for item in raw:
        try:
            headers = json.loads(item).get("headers", {})
            if headers.get("task") == RUN_JOB:
                ids.update(ast.literal_eval(headers.get("argsrepr", "[]")))
        except (ValueError, SyntaxError, AttributeError, TypeError):
            continue
    return {str(i) for i in ids}


def requeue_lost(app: Celery, *, older_than_s: float, only_missing: bool) -> int:
    with session_scope(get_settings()) as session:
        queued = jobs_repo.list_queued(session, older_than_s=older_than_s)
    if only_missing and queued:
        present = broker_job_ids(app)
        queued = [(job_id, queue) for job_id, queue in queued if job_id not in present]
    for job_id, queue in queued:
        app.send_task(RUN_JOB, args=[job_id], queue=queue)
    return len(queued)


def reap_stale(*, timeout_s: float) -> list[str]:
    with session_scope(get_settings()) as session:
        return jobs_repo.reap_stale(session, timeout_s=timeout_s)


def maintenance_loop(app: Celery, stop: threading.Event) -> None:
    settings = get_settings()
    interval = max(5.0, settings.job_heartbeat_timeout_s / 3)
    first = True
    while not stop.is_set():
        try:
            # At startup every queued job is re-sent once (duplicates are no-ops thanks to the claim);
            # later rounds re-send only those the broker no longer holds.
            n = requeue_lost(app, older_than_s=0.0 if first else 30.0, only_missing=not first)
            reaped = reap_stale(timeout_s=settings.job_heartbeat_timeout_s)
            if n or reaped:
                log.info("maintenance: re-enqueued %d queued job(s), reaped %d stale job(s)", n, len(reaped))
            first = False
        except Exception:  # the loop must survive a DB or broker blip; it retries next round
            log.exception("maintenance round failed")
        stop.wait(interval)
