"""Retention removes only what it should: ended jobs and unused uploads older than the cutoff, with
their store objects unless a newer row (maybe another tenant's) has the same content."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from edgedistill.service.db.base import utcnow
from edgedistill.service.db.models import Artifact, Dataset, Job, TeacherModel
from edgedistill.service.repos import artifacts, jobs, lifecycle
from edgedistill.service.storage import LocalStore


def test_retention_keeps_active_recent_and_shared(session, factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = LocalStore(tmp_path / "store")
    old = utcnow() - timedelta(days=10)

    def stored(data: bytes) -> dict[str, object]:
        obj = store.put_stream([data])
        return {"sha256": obj.sha256, "storage_key": obj.key, "size_bytes": obj.size}

    a, b = factory.tenant(), factory.tenant()
    old_model = factory.model(a, **stored(b"old teacher"))
    shared_model = factory.model(a, **stored(b"teacher both have"))
    factory.model(b, **stored(b"teacher both have"))  # tenant b's, recent: keeps the object
    busy_model = factory.model(a, **stored(b"teacher of a queued job"))
    unused_data = factory.dataset(a, **stored(b"old data"))
    busy_data = factory.dataset(a, **stored(b"data of a queued job"))
    old_job = factory.job(a, old_model)
    recent_job = factory.job(a, old_model)
    queued = factory.job(a, busy_model, dataset_id=busy_data.id)
    for job in (old_job, recent_job):
        assert jobs.claim_job(session, job_id=job.id, worker_id="w")
        assert jobs.finish_job(session, job_id=job.id, status="succeeded")
        artifacts.upsert_artifact(session, job_id=job.id, tenant_id=a.id, kind="onnx_int8", filename="s",
                                  metadata={}, **stored(f"artifact of {job.id}".encode()))  # type: ignore[arg-type]  # fmt: skip
    session.flush()
    old_artifact_key = session.query(Artifact).filter_by(job_id=old_job.id).one().storage_key
    for row in (old_model, shared_model, busy_model, unused_data, busy_data, queued):
        row.created_at = old
    session.get(Job, old_job.id).finished_at = old
    session.commit()

    found = lifecycle.expired(session, older_than_days=7)
    assert found["jobs"] == [old_job.id] and found["datasets"] == [unused_data.id]
    assert set(found["models"]) == {old_model.id, shared_model.id}

    ids = {name: row.id for name, row in [("old_job", old_job), ("recent_job", recent_job), ("queued", queued),
                                           ("unused_data", unused_data), ("busy_data", busy_data)]}  # fmt: skip
    keys = {name: row.storage_key for name, row in [("unused_data", unused_data), ("old_model", old_model),
            ("shared_model", shared_model), ("busy_model", busy_model), ("busy_data", busy_data)]}  # fmt: skip
    busy_model_id = busy_model.id
    done = lifecycle.apply_retention(session, store, older_than_days=7)
    assert done == {"jobs": 1, "datasets": 1, "models": 2, "objects": 3}
    session.expire_all()
    assert session.get(Job, ids["old_job"]) is None and session.get(Job, ids["recent_job"]) is not None
    assert session.get(Job, ids["queued"]).status == "queued"
    assert session.get(Dataset, ids["unused_data"]) is None and session.get(Dataset, ids["busy_data"]) is not None
    assert session.get(TeacherModel, busy_model_id).deleted_at is None
    assert not store.exists(old_artifact_key) and not store.exists(keys["unused_data"])
    assert not store.exists(keys["old_model"])  # soft-deleted and referenced by no live row
    assert store.exists(keys["shared_model"])  # tenant b's recent model has the same bytes
    assert store.exists(keys["busy_model"]) and store.exists(keys["busy_data"])
    # A second round finds nothing more.
    assert lifecycle.apply_retention(session, store, older_than_days=7) == {
        "jobs": 0, "datasets": 0, "models": 0, "objects": 0,
    }  # fmt: skip
