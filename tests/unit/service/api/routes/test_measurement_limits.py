"""A device cannot grow the database without bound: posts per device per minute, the size of `extra`,
the latest N rows kept per (artifact, device), and the comparison endpoint paged."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from edgedistill.service.repos import artifacts

M: dict[str, Any] = {
    "source": "device", "device_name": "pi5", "runtime": "onnxruntime", "runtime_version": "1.31.1", "threads": 4,
    "count": 200, "p50_ms": 1.0, "p90_ms": 1.2, "p99_ms": 1.9, "mean_ms": 1.05, "agreement": 0.995,
}  # fmt: skip


@pytest.fixture
def make_artifact(app: Any, submit: Any) -> Any:
    def make(caller: Any) -> str:
        job = submit(caller)
        with app.state.sessionmaker() as s:
            row = artifacts.upsert_artifact(
                s, job_id=job["id"], tenant_id=caller.tenant_id, kind="onnx_int8", filename="a", size_bytes=1,
                sha256="0" * 64, storage_key="00/" + "0" * 64,
            )  # fmt: skip
            s.commit()
            return row.id

    return make


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"device_measurements_per_minute": 5, "measurement_extra_max_bytes": 1024, "measurements_kept_per_device": 3}


def _post(client: TestClient, caller: Any, artifact: str, **kw: Any) -> Any:
    return client.post(f"/api/v1/artifacts/{artifact}/measurements", json={**M, **kw}, headers=caller.headers)


def test_rate_limit_per_device_names_the_limit(client: TestClient, alice: Any, make_artifact: Any) -> None:
    art = make_artifact(alice)
    assert [_post(client, alice, art).status_code for _ in range(5)] == [201] * 5
    refused = _post(client, alice, art)
    assert refused.status_code == 429 and "device_measurements_per_minute" in refused.json()["detail"]
    assert int(refused.headers["Retry-After"]) >= 1
    assert _post(client, alice, art, device_name="other-board").status_code == 201  # another device's own budget


def test_extra_is_capped(client: TestClient, alice: Any, make_artifact: Any) -> None:
    art = make_artifact(alice)
    big = _post(client, alice, art, extra={"blob": "x" * 2000})
    assert big.status_code == 413 and "measurement_extra_max_bytes" in big.json()["detail"]
    assert _post(client, alice, art, extra={"note": "small"}).status_code == 201


def test_latest_rows_per_device_are_kept_and_the_comparison_is_paged(
    client: TestClient,
    alice: Any,
    make_artifact: Any,
) -> None:
    art = make_artifact(alice)
    for i in range(5):
        times = {"p50_ms": i + 1.0, "p90_ms": i + 1.5, "p99_ms": i + 2.0, "mean_ms": i + 1.0}
        assert _post(client, alice, art, **times).status_code == 201
    assert _post(client, alice, art, device_name="board-2").status_code == 201
    rows = client.get("/api/v1/measurements", params={"artifact_id": art}, headers=alice.headers).json()["items"]
    pi5 = sorted(r["p50_ms"] for r in rows if r["device_name"] == "pi5")
    assert pi5 == [3.0, 4.0, 5.0]  # the two oldest went; the other device's row stays
    assert sum(r["device_name"] == "board-2" for r in rows) == 1

    first = client.get(f"/api/v1/artifacts/{art}/measurements", params={"limit": 2}, headers=alice.headers).json()
    assert len(first["measurements"]) == 2 and first["next_cursor"]
    rest = client.get(
        f"/api/v1/artifacts/{art}/measurements", params={"limit": 2, "cursor": first["next_cursor"]},
        headers=alice.headers,
    ).json()  # fmt: skip
    assert len(rest["measurements"]) == 2 and rest["next_cursor"] is None
    ids = {m["id"] for m in first["measurements"]} | {m["id"] for m in rest["measurements"]}
    assert len(ids) == 4
    assert {d["device"] for d in first["devices"]} == {"pi5", "board-2"}  # the summary covers every device
