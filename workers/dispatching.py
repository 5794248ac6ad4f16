"""The worker side of fair dispatch: after it claims a job (a broker slot frees up) and in each
maintenance round, a worker sends the next waiting jobs through service.dispatch, with a client-only
sender like the API's. No Celery import here: jobrunner stays plain functions."""

from __future__ import annotations

import logging
import threading

from edgedistill.service.db.session import session_scope
from edgedistill.service.dispatch import dispatch
from edgedistill.service.queue import CeleryJobQueue
from edgedistill.service.settings import Settings, get_settings

log = logging.getLogger(__name__)

_sender: CeleryJobQueue | None = None
_sender_lock = threading.Lock()


def _queue(settings: Settings) -> CeleryJobQueue:
    global _sender
    assert settings.broker_url is not None
    with _sender_lock:
        if _sender is None or _sender.broker_url != settings.broker_url:
            _sender = CeleryJobQueue(settings.broker_url, timeout=settings.broker_ping_timeout_s)
        return _sender


def dispatch_waiting(settings: Settings | None = None) -> list[str]:
    """Fill the broker's free slots with waiting jobs, fairly across tenants; the ids sent."""
    settings = settings or get_settings()
    if not settings.broker_url:
        return []
    return dispatch(lambda: session_scope(settings), _queue(settings), settings)


def dispatch_after_claim(settings: Settings) -> None:
    """Best effort: a failure here must not fail the job just claimed (the maintenance round retries)."""
    try:
        dispatch_waiting(settings)
    except Exception:
        log.exception("dispatch after claim failed; the maintenance round will send waiting jobs")
