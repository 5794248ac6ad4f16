"""JSON bodies over max_json_body_bytes are refused (413, JSON detail) before they are read into memory;
uploads keep their own, larger limit; the dashboard is not affected."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"max_json_body_bytes": 64 * 1024}


def _json_of(size: int) -> bytes:
    return b'{"model_id": "' + b"a" * size + b'", "device_profile": "cpu-x86"}'


@pytest.mark.parametrize("authenticated", [True, False])
def test_declared_oversized_json_is_413_without_auth_or_parsing(client: TestClient, alice, authenticated: bool) -> None:  # type: ignore[no-untyped-def]
    headers = {"content-type": "application/json", **(alice.headers if authenticated else {})}
    r = client.post("/api/v1/jobs", content=_json_of(100 * 1024), headers=headers)
    assert r.status_code == 413 and r.json() == {"detail": "request body is over the 65536 byte limit"}


def test_streamed_oversized_json_is_413(client: TestClient, alice) -> None:  # type: ignore[no-untyped-def]
    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"model_id": "'
        for _ in range(10):
            yield b"a" * 16 * 1024

    r = client.post("/api/v1/jobs", content=chunks(), headers={**alice.headers, "content-type": "application/json"})
    assert r.status_code == 413 and "byte limit" in r.json()["detail"]


def test_multipart_to_a_json_route_is_capped_too(client: TestClient, alice) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/device-profiles", files={"file": ("x", b"\0" * 100 * 1024)}, headers=alice.headers)
    assert r.status_code == 413


def test_small_bodies_and_uploads_over_the_json_cap_pass(client: TestClient, alice, onnx_bytes: bytes) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/jobs", content=_json_of(10), headers={**alice.headers, "content-type": "application/json"})
    assert r.status_code == 404  # parsed and handled: no such model
    assert (
        client.post("/api/v1/models", files={"file": ("t.onnx", onnx_bytes)}, headers=alice.headers).status_code == 201
    )
    big = b"\0" * (200 * 1024)  # an upload over the JSON cap reaches the upload checks (415, not 413)
    assert client.post("/api/v1/models", files={"file": ("t.onnx", big)}, headers=alice.headers).status_code == 415
