"""Runs inside each worker's main process: re-enqueue dispatched jobs the broker may have lost, send
waiting jobs through the fair dispatcher (service.dispatch), fail jobs whose heartbeat stopped (their
worker died without the broker redelivering) and apply the retention setting."""

from __future__ import annotations

import ast
import base64
import json
import logging
import threading
from typing import Any

from celery import Celery

from edgedistill.contracts.names import QUEUES, RUN_JOB_TASK
from edgedistill.service.db.session import session_scope
from edgedistill.service.repos import dispatch as dispatch_repo
from edgedistill.service.repos import jobs as jobs_repo
from edgedistill.service.repos import lifecycle
from edgedistill.service.settings import Settings, get_settings
from edgedistill.service.storage import get_store
from edgedistill.workers.dispatching import dispatch_waiting

log = logging.getLogger(__name__)


def broker_job_ids(app: Celery) -> set[str]:
    """Job ids of run_job messages the Redis broker holds: waiting in a queue (each priority level is its
    own list) or delivered but unacked (the 'unacked' hash of [message, exchange, routing key]).
    Reads kombu's Redis layout without consuming anything; checked against a real redis-server in
    tests/unit/workers/test_maintenance.py."""
    raw: list[bytes] = []
    with app.connection_for_read() as conn:
        channel: Any = conn.default_channel
        client = channel.client
        for queue in QUEUES:
            for name in dict.fromkeys(channel._q_for_pri(queue, pri) for pri in channel.priority_steps):
                raw += client.lrange(name, 0, -1)
        for value in client.hvals(channel.unacked_key):
            try:
                raw.append(json.dumps(json.loads(value)[0]).encode())
            except (ValueError, IndexError, TypeError, KeyError):
                continue
    ids: set[str] = set()
    for item in raw:
        job_id = _job_id_of(item)
        if job_id is not None:
            ids.add(job_id)
    return ids


def _job_id_of(item: bytes) -> str | None:
    """The job id of one serialized run_job message (task protocol 2), else None."""
    try:
        message = json.loads(item)
        headers = message.get("headers") or {}
        if headers.get("task") != RUN_JOB_TASK:
            return None
        body = message.get("body")
        if isinstance(body, str) and message.get("properties", {}).get("body_encoding") == "base64":
            args = json.loads(base64.b64decode(body))[0]  # [args, kwargs, embed]
        else:  # fall back to the human-readable copy of the arguments
            args = ast.literal_eval(headers.get("argsrepr", "[]"))
        return str(args[0]) if args else None
    except (ValueError, SyntaxError, AttributeError, TypeError, IndexError, KeyError):
        return None


def requeue_lost(app: Celery, *, older_than_s: float, only_missing: bool) -> int:
    """Re-send jobs the dispatcher sent (dispatched_at set) that no worker has claimed and, with
    only_missing, that the broker no longer holds. Jobs still waiting their turn are the dispatcher's."""
    with session_scope(get_settings()) as session:
        queued = dispatch_repo.dispatched_queued(session, older_than_s=older_than_s)
    if only_missing and queued:
        present = broker_job_ids(app)
        queued = [(job_id, queue) for job_id, queue in queued if job_id not in present]
    for job_id, queue in queued:
        app.send_task(RUN_JOB_TASK, args=[job_id], queue=queue)
    return len(queued)


def reap_stale(*, timeout_s: float) -> list[str]:
    with session_scope(get_settings()) as session:
        return jobs_repo.reap_stale(session, timeout_s=timeout_s)


def retention_round(settings: Settings) -> dict[str, int]:
    """Apply EDGEDISTILL_RETENTION_DAYS (0: keep everything). Every worker runs it; deletes are
    idempotent, so two workers at once only repeat a check."""
    if settings.retention_days <= 0:
        return {}
    with session_scope(settings) as session:
        return lifecycle.apply_retention(session, get_store(settings), older_than_days=settings.retention_days)


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
            sent = dispatch_waiting(settings)
            retained = retention_round(settings)
            if any(retained.values()):
                log.info("retention: deleted %s", retained)
            if n or reaped or sent:
                log.info(
                    "maintenance: re-enqueued %d, dispatched %d queued job(s), reaped %d stale job(s)",
                    n, len(sent), len(reaped),
                )  # fmt: skip
            first = False
        except Exception:  # the loop must survive a DB or broker blip; it retries next round
            log.exception("maintenance round failed")
        stop.wait(interval)
