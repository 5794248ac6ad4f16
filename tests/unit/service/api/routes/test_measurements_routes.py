from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from edgedistill.service.repos import artifacts

M: dict[str, Any] = {
    "source": "device",
    "device_name": "pi5",
    "runtime": "onnxruntime",
    "runtime_version": "1.31.1",
    "threads": 4,
    "count": 200,
    "p50_ms": 1.0,
    "p90_ms": 1.2,
    "p99_ms": 1.9,
    "mean_ms": 1.05,
    "agreement": 0.995,
}


@pytest.fixture
def make_artifact(app: FastAPI, submit):  # type: ignore[no-untyped-def]
    def make(caller: Any, kind: str = "onnx_int8") -> str:
        job = submit(caller)
        with app.state.sessionmaker() as s:
            row = artifacts.upsert_artifact(
                s,
                job_id=job["id"],
                tenant_id=caller.tenant_id,
                kind=kind,
                filename="a",
                size_bytes=1,
                sha256="0" * 64,
                storage_key="00/" + "0" * 64,
            )
            s.commit()
            return row.id

    return make


def test_create_and_list(client: TestClient, alice, make_artifact) -> None:  # type: ignore[no-untyped-def]
    a = make_artifact(alice)
    r = client.post(f"/api/v1/artifacts/{a}/measurements", json=M, headers=alice.headers)
    assert r.status_code == 201, r.text
    m = r.json()
    assert m["artifact_id"] == a and m["p99_ms"] == 1.9 and m["agreement"] == 0.995 and m["estimated"] is False
    listed = client.get(f"/api/v1/artifacts/{a}/measurements", headers=alice.headers).json()
    assert [x["id"] for x in listed["measurements"]] == [m["id"]]  # host vs device comparison (issue 5)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"p50_ms": -1}, "p50_ms"),
        ({"source": "cloud"}, "source"),
        ({"threads": 0}, "threads"),
        ({"agreement": 1.5}, "agreement"),
        ({"p50_ms": 5.0}, None),
    ],
)
def test_bad_measurements_are_422(
    client: TestClient, alice, make_artifact, change: dict[str, Any], field: str | None
) -> None:  # type: ignore[no-untyped-def]
    a = make_artifact(alice)
    r = client.post(f"/api/v1/artifacts/{a}/measurements", json={**M, **change}, headers=alice.headers)
    assert r.status_code == 422
    locs = [e["loc"] for e in r.json()["detail"]]
    if field:
        assert ["body", field] in locs
    else:
        assert "ordered" in r.json()["detail"][0]["msg"]


def test_filters_and_scoping(client: TestClient, alice, bob, make_artifact) -> None:  # type: ignore[no-untyped-def]
    a1, a2 = make_artifact(alice), make_artifact(alice)
    host = client.post(
        f"/api/v1/artifacts/{a1}/measurements", json={**M, "source": "host", "device_name": "ci"}, headers=alice.headers
    ).json()
    dev = client.post(f"/api/v1/artifacts/{a2}/measurements", json=M, headers=alice.headers).json()
    b = make_artifact(bob)
    client.post(f"/api/v1/artifacts/{b}/measurements", json=M, headers=bob.headers)

    def ids(query: str) -> set[str]:
        return {x["id"] for x in client.get(f"/api/v1/measurements{query}", headers=alice.headers).json()["items"]}

    assert ids("") == {host["id"], dev["id"]}
    assert ids("?source=device") == {dev["id"]}
    assert ids(f"?artifact_id={a1}") == {host["id"]}
    assert ids("?device_name=pi5&runtime=onnxruntime") == {dev["id"]}
    assert ids("?runtime=tflite") == set()
    assert client.post(f"/api/v1/artifacts/{b}/measurements", json=M, headers=alice.headers).status_code == 404


@pytest.mark.parametrize(
    "raw",
    [
        '"max_abs_diff": Infinity',
        '"max_abs_diff": NaN',
        '"p50_ms": -Infinity',
        '"extra": {"reference_max_abs": Infinity}',
        '"extra": {"nested": [1, NaN]}',
    ],
)
def test_non_finite_numbers_are_refused(client: TestClient, alice, make_artifact, raw: str) -> None:  # type: ignore[no-untyped-def]
    import json

    a = make_artifact(alice)
    body = json.dumps(M)[:-1] + ", " + raw + "}"
    r = client.post(
        f"/api/v1/artifacts/{a}/measurements",
        content=body,
        headers={**alice.headers, "Content-Type": "application/json"},
    )
    assert r.status_code == 422, r.text
    assert client.get(f"/api/v1/artifacts/{a}/measurements", headers=alice.headers).json()["measurements"] == []


def test_a_device_measurement_of_other_bytes_is_refused(client: TestClient, alice, make_artifact) -> None:  # type: ignore[no-untyped-def]
    a = make_artifact(alice)  # its sha256 is "0" * 64
    r = client.post(
        f"/api/v1/artifacts/{a}/measurements",
        json={**M, "extra": {"artifact_sha256": "f" * 64}},
        headers=alice.headers,
    )
    assert r.status_code == 422 and "measurement refused" in r.text
    assert r.json()["detail"][0]["loc"] == ["body", "extra", "artifact_sha256"]
    ok = client.post(
        f"/api/v1/artifacts/{a}/measurements", json={**M, "extra": {"artifact_sha256": "0" * 64}}, headers=alice.headers
    )
    assert ok.status_code == 201
