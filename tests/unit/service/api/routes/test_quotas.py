"""Per-tenant quotas: queued + running jobs (429) and stored bytes (413), each naming its limit."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from edgedistill.service.storage import ArtifactStore


@pytest.fixture
def settings_overrides(onnx_bytes: bytes) -> dict[str, Any]:
    # Room for two tiny ONNX teachers but not a third.
    return {"tenant_max_active_jobs": 2, "tenant_max_stored_bytes": 2 * len(onnx_bytes) + 10}


def test_active_job_quota_names_the_limit(
    client: TestClient, alice: Any, bob: Any, upload_model: Callable[..., dict[str, Any]]
) -> None:
    model = upload_model(alice)["id"]
    body = {"model_id": model, "device_profile": "cpu-x86", "options": {"epochs": 1}}
    for _ in range(2):
        assert client.post("/api/v1/jobs", json=body, headers=alice.headers).status_code == 202
    third = client.post("/api/v1/jobs", json=body, headers=alice.headers)
    assert third.status_code == 429
    assert "tenant_max_active_jobs" in third.json()["detail"] and "is 2" in third.json()["detail"]
    # Another tenant is not affected; cancelling one of alice's frees a place.
    theirs = upload_model(bob)["id"]
    assert client.post("/api/v1/jobs", json={**body, "model_id": theirs}, headers=bob.headers).status_code == 202
    first = client.get("/api/v1/jobs", headers=alice.headers).json()["items"][0]["id"]
    assert client.post(f"/api/v1/jobs/{first}/cancel", headers=alice.headers).status_code == 200
    assert client.post("/api/v1/jobs", json=body, headers=alice.headers).status_code == 202


def test_storage_quota_refuses_the_upload_and_keeps_nothing_new(
    client: TestClient, alice: Any, bob: Any, onnx_bytes: bytes, good_npz: bytes, app: Any
) -> None:
    # the same bytes twice: the second upload is deduplicated (200) and stores nothing new
    for name, status in (("a.onnx", 201), ("b.onnx", 200)):
        r = client.post("/api/v1/models", files={"file": (name, onnx_bytes)}, headers=alice.headers)
        assert r.status_code == status
    store: ArtifactStore = app.state.store
    over = client.post("/api/v1/datasets", files={"file": ("d.npz", good_npz)}, headers=alice.headers)
    assert over.status_code == 413
    assert len(good_npz) > 10  # over by itself: it is refused once received
    detail = over.json()["detail"]
    assert "tenant_max_stored_bytes" in detail and str(2 * len(onnx_bytes) + 10) in detail
    key = hashlib.sha256(good_npz).hexdigest()
    assert not store.exists(f"{key[:2]}/{key}")  # the refused upload's object was removed again
    # Bob has his own allowance.
    assert client.post("/api/v1/models", files={"file": ("b.onnx", onnx_bytes)}, headers=bob.headers).status_code == 201
