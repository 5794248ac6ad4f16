"""What a redelivered run_job message does with a job still marked running (workers.jobrunner): take it
over once the old heartbeat has stopped, leave it to a live owner, fail it after MAX_ATTEMPTS. And
a replaced worker's results are dropped (workers.persistence). Real SQLite database, no Celery."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from edgedistill.service.db.base import utcnow
from edgedistill.service.db.migrate import upgrade_head
from edgedistill.service.db.models import Job
from edgedistill.service.db.session import dispose_engines, session_scope
from edgedistill.service.repos import jobs, models, tenants
from edgedistill.service.settings import Settings
from edgedistill.workers.jobrunner import MAX_ATTEMPTS, _take_over, execute_job
from edgedistill.workers.persistence import JobRecorder

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    url = f"sqlite:///{tmp_path / 'ed.db'}"
    upgrade_head(url)
    yield Settings(data_dir=tmp_path, database_url=url, job_heartbeat_timeout_s=6)  # interval 1 s
    dispose_engines()


def _running_job(settings: Settings, *, attempts: int, heartbeat_age_s: float) -> str:
    with session_scope(settings) as s:
        tenant = tenants.get_or_create_tenant(s, name="t")
        model = models.create_model(
            s, tenant_id=tenant.id, name="m", filename="m.onnx", format="onnx", size_bytes=1,
            sha256="0" * 64, storage_key="00/" + "0" * 64,
        )  # fmt: skip
        job, _ = jobs.create_job(
            s, tenant_id=tenant.id, model_id=model.id, dataset_id=None, profile_name="cpu-x86", profile={}, options={}
        )
        job_id = job.id
    then = utcnow() - timedelta(seconds=heartbeat_age_s)
    for n in range(attempts):
        with session_scope(settings) as s:
            if n:
                s.execute(update(Job).where(Job.id == job_id).values(status="queued"))  # as if re-sent
            assert jobs.claim_job(s, job_id=job_id, worker_id=f"old:{n}", now=then)
    return job_id


def _job(settings: Settings, job_id: str) -> tuple[str, str | None, int, str | None]:
    with session_scope(settings) as s:
        job = jobs.get_job_any_tenant(s, job_id=job_id)
        assert job is not None
        return job.status, job.worker_id, job.attempts, job.error


def test_takes_over_once_the_old_heartbeat_has_stopped(settings: Settings) -> None:
    job_id = _running_job(settings, attempts=1, heartbeat_age_s=0.5)  # fresh: the owner died just now
    assert _take_over(job_id, "new:1", settings)
    status, worker, attempts, _ = _job(settings, job_id)
    assert (status, worker, attempts) == ("running", "new:1", 2)


def test_leaves_a_job_whose_owner_still_heartbeats(settings: Settings) -> None:
    job_id = _running_job(settings, attempts=1, heartbeat_age_s=0)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(0.3):
            with session_scope(settings) as s:
                jobs.heartbeat(s, job_id=job_id, worker_id="old:0")

    t = threading.Thread(target=beat)
    t.start()
    try:
        assert (
            execute_job(job_id, worker_id="new:1", settings=settings, redelivered=True) == "skipped:claimed-elsewhere"
        )
    finally:
        stop.set()
        t.join()
    assert _job(settings, job_id)[:2] == ("running", "old:0")


def test_fails_the_job_after_max_attempts(settings: Settings) -> None:
    job_id = _running_job(settings, attempts=MAX_ATTEMPTS, heartbeat_age_s=60)
    assert execute_job(job_id, worker_id="new:1", settings=settings, redelivered=True) == "skipped:claimed-elsewhere"
    status, _, attempts, error = _job(settings, job_id)
    assert status == "failed" and attempts == MAX_ATTEMPTS
    assert error and f"died {MAX_ATTEMPTS} times" in error


def test_a_message_that_is_not_a_redelivery_never_takes_over(settings: Settings) -> None:
    job_id = _running_job(settings, attempts=1, heartbeat_age_s=0.5)
    assert execute_job(job_id, worker_id="new:1", settings=settings) == "skipped:claimed-elsewhere"
    assert _job(settings, job_id)[1] == "old:0"


def test_a_replaced_worker_cannot_end_the_job(settings: Settings) -> None:
    job_id = _running_job(settings, attempts=1, heartbeat_age_s=60)
    assert _take_over(job_id, "new:1", settings)
    old = JobRecorder(job_id, settings, worker_id="old:0")
    assert not old.finish("failed", error="late failure from the old worker")
    old.heartbeat()
    status, worker, _, error = _job(settings, job_id)
    assert (status, worker, error) == ("running", "new:1", None)
    assert JobRecorder(job_id, settings, worker_id="new:1").finish("cancelled", error="cancelled by user")
