"""Integration fixtures: one real stack (redis-server, uvicorn, a Celery worker process) per database
backend: SQLite always, PostgreSQL when EDGEDISTILL_TEST_POSTGRES_URL is set (CI sets it)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from stack import Stack, make_postgres_database, running_stack

BACKENDS = ["sqlite", "postgres"]


@dataclass
class LiveService:
    stack: Stack
    key_a: str
    key_b: str

    @property
    def url(self) -> str:
        return self.stack.url


@pytest.fixture(scope="session", params=BACKENDS)
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    tmp = tmp_path_factory.mktemp(f"stack-{request.param}")
    if request.param == "postgres":
        server = os.environ.get("EDGEDISTILL_TEST_POSTGRES_URL")
        if not server:
            pytest.skip("EDGEDISTILL_TEST_POSTGRES_URL not set")
        url = make_postgres_database(server)
    else:
        url = f"sqlite:///{tmp / 'edgedistill.db'}"
    # Receivers in these tests listen on 127.0.0.2, the one internal address the operator allows;
    # 127.0.0.1 stays refused like every other loopback address.
    with running_stack(tmp, url, env={"EDGEDISTILL_WEBHOOK_ALLOWLIST": "127.0.0.2"}) as stack:
        yield LiveService(stack, stack.create_key("tenant-a"), stack.create_key("tenant-b"))


@pytest.fixture(scope="session")
def teacher_and_data(digits_teacher_files: dict[str, Path]) -> tuple[Path, Path]:
    return digits_teacher_files["onnx"], digits_teacher_files["npz"]
