from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from edgedistill.service.main import create_app
from edgedistill.service.settings import Settings


def test_ready_when_database_and_broker_answer(client: TestClient) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ready", "database": "ok", "broker": "ok"}
    assert client.get("/api/v1/readyz").status_code == 200


def test_broker_down_is_503_naming_it(client: TestClient, fake_queue) -> None:  # type: ignore[no-untyped-def]
    fake_queue.down = True
    r = client.get("/readyz")
    assert r.status_code == 503
    body = r.json()
    assert (
        body["database"] == "ok" and "unreachable" in body["broker"] and body["detail"].startswith("not ready: broker")
    )


def test_database_down_is_503_everywhere(tmp_path: Path, fake_queue) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "not-a-db-file"
    folder.mkdir()
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{folder}")
    with TestClient(create_app(settings, queue=fake_queue), raise_server_exceptions=False) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and "database" in r.json()["detail"] and r.json()["broker"] == "ok"
        r = c.get("/api/v1/jobs", headers={"Authorization": "Bearer edk_whatever"})
        assert r.status_code == 503 and r.json() == {"detail": "database unavailable, try again shortly"}
        assert c.get("/healthz").status_code == 200  # the process itself is up


def test_no_broker_configured_is_not_ready(tmp_path: Path, sqlite_url: str) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path, database_url=sqlite_url))) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and "REDIS_URL" in r.json()["broker"]
