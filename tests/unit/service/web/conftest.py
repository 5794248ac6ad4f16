"""Dashboard route tests: an app per test (migrated SQLite copy, local store, fake queue) and browsers
(TestClients with their own cookie jars) logged in as tenants."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from edgedistill.service.db.models import Tenant
from edgedistill.service.main import create_app
from edgedistill.service.repos import api_keys
from edgedistill.service.settings import Settings
from tests.unit.service.web.helpers import Browser, FakeQueue, Rows

HERE = Path(__file__).parent


@pytest.fixture
def fake_queue() -> FakeQueue:
    return FakeQueue()


@pytest.fixture
def settings(tmp_path: Path, sqlite_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=sqlite_url,
        submit_rate_limit_per_minute=1000,
        dispatch_ahead=1000,  # the fake broker never consumes: send every job (fair dispatch: test_dispatch.py)
        sse_poll_interval_s=0.02,
        secret_key="test-secret",
    )


@pytest.fixture
def app(settings: Settings, fake_queue: FakeQueue) -> FastAPI:
    return create_app(settings, queue=fake_queue)


@pytest.fixture
def db(app: FastAPI) -> Iterator[Session]:
    s: Session = app.state.sessionmaker()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def make_key(db: Session) -> Callable[[str], tuple[Tenant, str]]:
    def make(tenant: str) -> tuple[Tenant, str]:
        created = api_keys.create_key(db, tenant_name=tenant, name="web")
        db.commit()
        return created.tenant, created.secret

    return make


@pytest.fixture
def anonymous(app: FastAPI) -> Iterator[Browser]:
    with TestClient(app) as client:
        yield Browser(client)


@pytest.fixture
def login(app: FastAPI, make_key: Callable[[str], tuple[Tenant, str]]) -> Iterator[Callable[[str], Browser]]:
    clients: list[TestClient] = []

    def do(tenant: str) -> Browser:
        t, key = make_key(tenant)
        client = TestClient(app)
        clients.append(client)
        browser = Browser(client, t, key)
        r = browser.post_form("/ui/login", {"api_key": key, "next": "/ui/jobs"})
        assert r.status_code == 303, r.text
        return browser

    yield do
    for c in clients:
        c.close()


@pytest.fixture
def alice(login: Callable[[str], Browser]) -> Browser:
    return login("alice")


@pytest.fixture
def bob(login: Callable[[str], Browser]) -> Browser:
    return login("bob")


@pytest.fixture(scope="session")
def report_mcu() -> dict[str, Any]:
    """A real report.json: `edgedistill compress` of the digits teacher for mcu-cortex-m4, 5 epochs."""
    data: dict[str, Any] = json.loads((HERE / "report_mcu.json").read_text())
    return data


@pytest.fixture(scope="session")
def report_cpu() -> dict[str, Any]:
    """The same teacher for cpu-x86 (ONNX int8 is the device artifact; no TFLM, no arena)."""
    data: dict[str, Any] = json.loads((HERE / "report_cpu.json").read_text())
    return data


@pytest.fixture
def rows(app: FastAPI, db: Session) -> Rows:
    return Rows(app, db)


@pytest.fixture(scope="session")
def onnx_bytes() -> bytes:
    """A tiny valid ONNX model (Gemm 4 -> 3)."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((3, 4), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [w],
    )
    return bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())


@pytest.fixture(scope="session")
def npz_bytes() -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    np.savez(buf, x=rng.normal(size=(20, 4)).astype(np.float32), y=rng.integers(0, 3, size=20))
    return buf.getvalue()
