"""DELETE for jobs, datasets and custom profiles, refusing what an active job uses; store objects go
when nothing references them (another tenant's identical upload keeps its object); GET /usage."""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from edgedistill.service.db.models import Artifact, Job, JobEvent, LatencyMeasurement
from edgedistill.service.repos import artifacts, jobs, measurements
from edgedistill.service.storage import ArtifactStore

PROFILE = {"name": "my-pi", "class": "mobile", "targets": ["onnx_int8"], "int8_scheme": "qdq_per_channel",
           "budgets": {"max_model_bytes": 2_000_000}}  # fmt: skip


def _key(data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    return f"{digest[:2]}/{digest}"


def _finish_with_artifact(app: FastAPI, job: dict[str, Any], content: bytes) -> str:
    """What a worker leaves behind: a stored artifact with a measurement, and a terminal status."""
    store: ArtifactStore = app.state.store
    stored = store.put_stream([content])
    with app.state.sessionmaker() as s:
        assert jobs.claim_job(s, job_id=job["id"], worker_id="w")
        art = artifacts.upsert_artifact(
            s, job_id=job["id"], tenant_id=job["tenant_id"] if "tenant_id" in job else _tenant(s, job["id"]),
            kind="onnx_int8", filename="s.onnx", size_bytes=stored.size, sha256=stored.sha256, storage_key=stored.key,
        )  # fmt: skip
        measurements.create_measurement(
            s, artifact_id=art.id, tenant_id=art.tenant_id, source="host", device_name="host", runtime="ort",
            runtime_version="1", threads=1, count=10, p50_ms=1.0, p90_ms=1.0, p99_ms=1.0, mean_ms=1.0,
        )  # fmt: skip
        assert jobs.finish_job(s, job_id=job["id"], status="succeeded")
        s.commit()
        return art.id


def _tenant(session: Any, job_id: str) -> str:
    job = session.get(Job, job_id)
    assert job is not None
    return str(job.tenant_id)


def test_delete_job_removes_rows_and_unshared_objects(
    client: TestClient, app: FastAPI, alice: Any, bob: Any, submit: Any
) -> None:
    mine, theirs = submit(alice), submit(bob)
    refused = client.delete(f"/api/v1/jobs/{mine['id']}", headers=alice.headers)
    assert refused.status_code == 409 and "cancel" in refused.json()["detail"]
    own, shared = b"alice's student", b"the same student bytes"
    _finish_with_artifact(app, mine, own)
    art = _finish_with_artifact(app, theirs, shared)
    store: ArtifactStore = app.state.store
    with app.state.sessionmaker() as s:  # alice's job also made an artifact identical to bob's
        artifacts.upsert_artifact(
            s, job_id=mine["id"], tenant_id=_tenant(s, mine["id"]), kind="report", filename="r", size_bytes=len(shared),
            sha256=hashlib.sha256(shared).hexdigest(), storage_key=_key(shared),
        )  # fmt: skip
        s.commit()

    assert client.delete(f"/api/v1/jobs/{mine['id']}", headers=bob.headers).status_code == 404  # not bob's
    assert client.delete(f"/api/v1/jobs/{mine['id']}", headers=alice.headers).status_code == 204
    assert client.get(f"/api/v1/jobs/{mine['id']}", headers=alice.headers).status_code == 404
    with app.state.sessionmaker() as s:
        assert s.query(Artifact).filter_by(job_id=mine["id"]).count() == 0
        assert s.query(JobEvent).filter_by(job_id=mine["id"]).count() == 0
        assert s.query(LatencyMeasurement).filter_by(tenant_id=_tenant(s, theirs["id"])).count() == 1
    assert not store.exists(_key(own))
    assert store.exists(_key(shared))  # bob's artifact still references it
    assert client.get(f"/api/v1/artifacts/{art}", headers=bob.headers).status_code == 200
    assert client.delete(f"/api/v1/jobs/{mine['id']}", headers=alice.headers).status_code == 404  # gone


def test_delete_dataset_refused_while_a_job_reads_it(
    client: TestClient, app: FastAPI, alice: Any, bob: Any, upload_dataset: Any, submit: Any
) -> None:
    mine, theirs = upload_dataset(alice), upload_dataset(bob)  # the same bytes: one object
    job = submit(alice, dataset_id=mine["id"])
    refused = client.delete(f"/api/v1/datasets/{mine['id']}", headers=alice.headers)
    assert refused.status_code == 409 and job["id"] in refused.json()["detail"]
    assert client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=alice.headers).status_code == 200
    assert client.delete(f"/api/v1/datasets/{mine['id']}", headers=alice.headers).status_code == 204
    assert client.get(f"/api/v1/datasets/{mine['id']}", headers=alice.headers).status_code == 404
    assert client.get(f"/api/v1/jobs/{job['id']}", headers=alice.headers).json()["dataset_id"] is None
    store: ArtifactStore = app.state.store
    with app.state.sessionmaker() as s:
        from edgedistill.service.db.models import Dataset

        key = s.get(Dataset, theirs["id"]).storage_key
    assert store.exists(key)  # bob's dataset has the same content
    assert client.delete(f"/api/v1/datasets/{theirs['id']}", headers=bob.headers).status_code == 204
    assert not store.exists(key)


def test_delete_custom_profile(client: TestClient, alice: Any, upload_model: Any) -> None:
    assert client.delete("/api/v1/device-profiles/cpu-x86", headers=alice.headers).status_code == 409
    assert client.post("/api/v1/device-profiles", json=PROFILE, headers=alice.headers).status_code == 201
    body = {"model_id": upload_model(alice)["id"], "device_profile": "my-pi"}
    job = client.post("/api/v1/jobs", json=body, headers=alice.headers).json()
    assert client.delete("/api/v1/device-profiles/my-pi", headers=alice.headers).status_code == 409
    client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=alice.headers)
    assert client.delete("/api/v1/device-profiles/my-pi", headers=alice.headers).status_code == 204
    assert client.get("/api/v1/device-profiles/my-pi", headers=alice.headers).status_code == 404


def test_usage_counts_what_the_tenant_stores(
    client: TestClient, alice: Any, bob: Any, upload_dataset: Any, submit: Any, good_npz: bytes, onnx_bytes: bytes
) -> None:
    upload_dataset(alice)
    submit(alice)
    usage = client.get("/api/v1/usage", headers=alice.headers).json()
    assert usage["dataset_bytes"] == len(good_npz) and usage["model_bytes"] == len(onnx_bytes)
    assert usage["stored_bytes"] == len(good_npz) + len(onnx_bytes)
    assert usage["jobs_queued"] == 1 and usage["max_active_jobs"] == 1000
    assert client.get("/api/v1/usage", headers=bob.headers).json()["stored_bytes"] == 0
