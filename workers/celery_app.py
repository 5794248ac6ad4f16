"""The worker's Celery app: built by a function from settings (never at import time). Configuration
only: the tasks register on it in workers.tasks.register, which the worker's entry point (worker_cli)
calls, so this module imports no task module."""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from edgedistill.contracts.names import DEFAULT_QUEUE, QUEUES
from edgedistill.service.settings import Settings, get_settings


def broker_url(settings: Settings) -> str:
    if not settings.redis_url:
        raise RuntimeError(
            "EDGEDISTILL_REDIS_URL is not set: a worker needs the broker's URL "
            "('edgedistill serve' starts an embedded Redis and sets it for its worker)"
        )
    return settings.redis_url


def create_worker_app(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery("edgedistill", broker=broker_url(settings))
    app.conf.update(
        task_default_queue=DEFAULT_QUEUE,
        task_queues=[Queue(q) for q in QUEUES],
        # Redeliver a job whose worker died mid-run; the task's conditional claim makes that safe.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # Unacked messages come back after visibility_timeout: it must exceed the longest job.
        broker_transport_options={"visibility_timeout": int(settings.job_soft_time_limit_s) + 600},
        broker_connection_retry_on_startup=True,
        task_soft_time_limit=settings.job_soft_time_limit_s,
        task_time_limit=settings.job_soft_time_limit_s + 120,
        task_ignore_result=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app
