"""An app per test: a migrated SQLite copy, a local store in tmp_path and a fake queue."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from edgedistill.service.main import create_app
from edgedistill.service.queue import QueueUnavailable
from edgedistill.service.repos import api_keys
from edgedistill.service.settings import Settings


@dataclass
class FakeQueue:
    sent: list[tuple[str, str]] = field(default_factory=list)
    down: bool = False

    def enqueue(self, job_id: str, queue: str = "compress") -> None:
        if self.down:
            raise QueueUnavailable("broker down (fake)")
        self.sent.append((job_id, queue))

    def ping(self, timeout: float) -> None:
        if self.down:
            raise QueueUnavailable("broker unreachable (fake)")


@dataclass(frozen=True)
class Caller:
    tenant_id: str
    key: str
    key_prefix: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module to change the app's settings."""
    return {}


@pytest.fixture
def settings(tmp_path: Path, sqlite_url: str, settings_overrides: dict[str, Any]) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "database_url": sqlite_url,
        "submit_rate_limit_per_minute": 1000,
        "dispatch_ahead": 1000,  # the fake broker never consumes: send every job (fair dispatch: test_dispatch.py)
        "sse_poll_interval_s": 0.02,
        "broker_ping_timeout_s": 0.5,
    }
    values.update(settings_overrides)
    return Settings(**values)


@pytest.fixture
def fake_queue() -> FakeQueue:
    return FakeQueue()


@pytest.fixture
def app(settings: Settings, fake_queue: FakeQueue) -> FastAPI:
    return create_app(settings, queue=fake_queue)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def db(app: FastAPI) -> Iterator[Session]:
    s: Session = app.state.sessionmaker()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def make_caller(db: Session) -> Callable[[str], Caller]:
    def make(tenant: str) -> Caller:
        created = api_keys.create_key(db, tenant_name=tenant, name="test")
        db.commit()
        return Caller(tenant_id=created.tenant.id, key=created.secret, key_prefix=created.key.prefix)

    return make


@pytest.fixture
def alice(make_caller: Callable[[str], Caller]) -> Caller:
    return make_caller("alice")


@pytest.fixture
def bob(make_caller: Callable[[str], Caller]) -> Caller:
    return make_caller("bob")


@pytest.fixture(scope="session")
def onnx_bytes() -> bytes:
    """A tiny valid ONNX model (Gemm 4 -> 3), built with onnx.helper."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((3, 4), dtype=np.float32), "w")
    node = helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)
    graph = helper.make_graph(
        [node],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def npz_bytes(**arrays: Any) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@pytest.fixture(scope="session")
def good_npz() -> bytes:
    rng = np.random.default_rng(0)
    return npz_bytes(x=rng.normal(size=(20, 4)).astype(np.float32), y=rng.integers(0, 3, size=20))


@pytest.fixture
def upload_model(client: TestClient, onnx_bytes: bytes) -> Callable[[Caller], dict[str, Any]]:
    def upload(caller: Caller) -> dict[str, Any]:
        r = client.post("/api/v1/models", files={"file": ("teacher.onnx", onnx_bytes)}, headers=caller.headers)
        assert r.status_code in (200, 201), r.text  # 200: the same bytes again (deduplicated)
        body: dict[str, Any] = r.json()
        return body

    return upload


@pytest.fixture
def upload_dataset(client: TestClient, good_npz: bytes) -> Callable[[Caller], dict[str, Any]]:
    def upload(caller: Caller) -> dict[str, Any]:
        r = client.post("/api/v1/datasets", files={"file": ("d.npz", good_npz)}, headers=caller.headers)
        assert r.status_code == 201, r.text
        body: dict[str, Any] = r.json()
        return body

    return upload


@pytest.fixture
def submit(client: TestClient, upload_model: Callable[[Caller], dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Upload a model and submit a job for it; returns the job JSON."""

    def do(caller: Caller, **body: Any) -> dict[str, Any]:
        payload: dict[str, Any] = {"device_profile": "cpu-x86", "options": {"epochs": 1}}
        payload.update(body)
        payload.setdefault("model_id", upload_model(caller)["id"])
        r = client.post("/api/v1/jobs", json=payload, headers=caller.headers)
        assert r.status_code == 202, r.text
        job: dict[str, Any] = r.json()
        return job

    return do


@pytest.fixture
def make_npz() -> Callable[..., bytes]:
    return npz_bytes
