from __future__ import annotations

import hashlib
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from edgedistill.service.repos import artifacts

DATA = bytes(range(256)) * 40  # 10240 bytes


@pytest.fixture
def artifact(app: FastAPI, alice, submit) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    job = submit(alice)
    stored = app.state.store.put_stream([DATA])
    with app.state.sessionmaker() as s:
        row = artifacts.upsert_artifact(
            s,
            job_id=job["id"],
            tenant_id=alice.tenant_id,
            kind="onnx_int8",
            filename="student int8 ü.onnx",
            size_bytes=stored.size,
            sha256=stored.sha256,
            storage_key=stored.key,
            metadata={"opset": 17},
        )
        s.commit()
        return {"id": row.id, "job_id": job["id"]}


def test_list_and_get(client: TestClient, alice, artifact) -> None:  # type: ignore[no-untyped-def]
    listed = client.get(f"/api/v1/jobs/{artifact['job_id']}/artifacts", headers=alice.headers).json()
    assert [a["id"] for a in listed] == [artifact["id"]]
    a = client.get(f"/api/v1/artifacts/{artifact['id']}", headers=alice.headers).json()
    assert a["kind"] == "onnx_int8" and a["metadata"] == {"opset": 17} and a["size_bytes"] == len(DATA)
    assert a["sha256"] == hashlib.sha256(DATA).hexdigest()
    assert a["download_url"] == f"/api/v1/artifacts/{artifact['id']}/download"


def test_download_headers_and_body(client: TestClient, alice, artifact) -> None:  # type: ignore[no-untyped-def]
    r = client.get(f"/api/v1/artifacts/{artifact['id']}/download", headers=alice.headers)
    assert r.status_code == 200 and r.content == DATA
    assert r.headers["Content-Length"] == str(len(DATA))
    assert r.headers["ETag"] == f'"{hashlib.sha256(DATA).hexdigest()}"'
    assert r.headers["Accept-Ranges"] == "bytes"
    cd = r.headers["Content-Disposition"]
    assert cd.startswith("attachment;") and "filename*=UTF-8''student%20int8%20%C3%BC.onnx" in cd


@pytest.mark.parametrize(
    ("spec", "start", "end"),
    [
        ("bytes=10-19", 10, 20),
        ("bytes=-5", len(DATA) - 5, len(DATA)),
        ("bytes=10000-", 10000, len(DATA)),
        ("bytes=10000-99999", 10000, len(DATA)),
    ],
)
def test_range_requests(client: TestClient, alice, artifact, spec: str, start: int, end: int) -> None:  # type: ignore[no-untyped-def]
    r = client.get(f"/api/v1/artifacts/{artifact['id']}/download", headers={**alice.headers, "Range": spec})
    assert r.status_code == 206
    assert r.content == DATA[start:end]
    assert r.headers["Content-Range"] == f"bytes {start}-{end - 1}/{len(DATA)}"
    assert r.headers["Content-Length"] == str(end - start)


def test_unsatisfiable_range_is_416(client: TestClient, alice, artifact) -> None:  # type: ignore[no-untyped-def]
    r = client.get(f"/api/v1/artifacts/{artifact['id']}/download", headers={**alice.headers, "Range": "bytes=20000-"})
    assert r.status_code == 416 and r.headers["Content-Range"] == f"bytes */{len(DATA)}"


def test_conditional_requests(client: TestClient, alice, artifact) -> None:  # type: ignore[no-untyped-def]
    url = f"/api/v1/artifacts/{artifact['id']}/download"
    etag = client.get(url, headers=alice.headers).headers["ETag"]
    r = client.get(url, headers={**alice.headers, "If-None-Match": etag})
    assert r.status_code == 304 and r.content == b"" and r.headers["ETag"] == etag
    assert client.get(url, headers={**alice.headers, "If-None-Match": '"other"'}).status_code == 200
    # If-Range with a stale validator: the whole file, not the range.
    r = client.get(url, headers={**alice.headers, "Range": "bytes=0-9", "If-Range": '"stale"'})
    assert r.status_code == 200 and r.content == DATA
    r = client.get(url, headers={**alice.headers, "Range": "bytes=0-9", "If-Range": etag})
    assert r.status_code == 206 and r.content == DATA[:10]


def test_other_tenant_gets_404(client: TestClient, bob, artifact) -> None:  # type: ignore[no-untyped-def]
    for path in ("", "/download", "/measurements"):
        assert client.get(f"/api/v1/artifacts/{artifact['id']}{path}", headers=bob.headers).status_code == 404


def test_missing_stored_file_is_a_clear_500(client: TestClient, alice, artifact, app: FastAPI) -> None:  # type: ignore[no-untyped-def]
    app.state.store.delete(f"{hashlib.sha256(DATA).hexdigest()[:2]}/{hashlib.sha256(DATA).hexdigest()}")
    r = client.get(f"/api/v1/artifacts/{artifact['id']}/download", headers=alice.headers)
    assert r.status_code == 500 and "missing from the artifact store" in r.json()["detail"]
