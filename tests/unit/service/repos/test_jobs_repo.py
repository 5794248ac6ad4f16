from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from edgedistill.service.db.base import utcnow
from edgedistill.service.repos import events, jobs
from edgedistill.service.repos.errors import Conflict


def _statuses(session: Session, job_id: str) -> list[str]:
    return [e.data["status"] for e in events.list_events(session, job_id=job_id) if e.kind == "status"]


def test_create_job_records_a_queued_event(session, factory) -> None:  # type: ignore[no-untyped-def]
    t = factory.tenant()
    job = factory.job(t)
    assert job.status == "queued" and job.progress == 0 and job.queue == "compress"
    assert _statuses(session, job.id) == ["queued"]


def test_idempotency_key_returns_the_same_job(session, factory) -> None:  # type: ignore[no-untyped-def]
    t = factory.tenant()
    m = factory.model(t)
    kw = dict(dataset_id=None, profile_name="cpu-x86", profile={}, options={"epochs": 3}, idempotency_key="k1")
    first, created = jobs.create_job(session, tenant_id=t.id, model_id=m.id, **kw)
    session.commit()
    again, created_again = jobs.create_job(session, tenant_id=t.id, model_id=m.id, **kw)
    assert created and not created_again
    assert again.id == first.id
    # The same key from another tenant is a different job.
    other = factory.tenant()
    om = factory.model(other)
    theirs, created_theirs = jobs.create_job(session, tenant_id=other.id, model_id=om.id, **kw)
    assert created_theirs and theirs.id != first.id


def test_idempotency_key_reused_for_a_different_request_conflicts(session, factory) -> None:  # type: ignore[no-untyped-def]
    t = factory.tenant()
    m = factory.model(t)
    jobs.create_job(
        session,
        tenant_id=t.id,
        model_id=m.id,
        dataset_id=None,
        profile_name="cpu-x86",
        profile={},
        options={"epochs": 3},
        idempotency_key="k",
    )
    with pytest.raises(Conflict, match="different request"):
        jobs.create_job(
            session,
            tenant_id=t.id,
            model_id=m.id,
            dataset_id=None,
            profile_name="cpu-x86",
            profile={},
            options={"epochs": 4},
            idempotency_key="k",
        )


def test_get_job_is_scoped_by_tenant(session, factory) -> None:  # type: ignore[no-untyped-def]
    a, b = factory.tenant(), factory.tenant()
    job = factory.job(a)
    assert jobs.get_job(session, tenant_id=a.id, job_id=job.id) is not None
    assert jobs.get_job(session, tenant_id=b.id, job_id=job.id) is None


def test_claim_is_exclusive(session, factory) -> None:  # type: ignore[no-untyped-def]
    job = factory.job(factory.tenant())
    session.commit()
    assert jobs.claim_job(session, job_id=job.id, worker_id="w1")
    assert not jobs.claim_job(session, job_id=job.id, worker_id="w2")
    session.commit()
    session.refresh(job)
    assert job.status == "running" and job.worker_id == "w1" and job.attempts == 1
    assert job.started_at is not None and job.heartbeat_at is not None
    assert _statuses(session, job.id) == ["queued", "running"]


def test_redelivery_reclaims_only_a_stale_running_job(session, factory) -> None:  # type: ignore[no-untyped-def]
    job = factory.job(factory.tenant())
    t0 = utcnow()
    assert jobs.claim_job(session, job_id=job.id, worker_id="w1", now=t0)
    session.commit()
    session.refresh(job)
    started = job.started_at
    # Heartbeat fresh: a redelivered message is a no-op.
    assert not jobs.claim_job(session, job_id=job.id, worker_id="w2", stale_after_s=60, now=t0 + timedelta(seconds=30))
    # Heartbeat stale: the redelivered message resumes the job.
    assert jobs.claim_job(session, job_id=job.id, worker_id="w2", stale_after_s=60, now=t0 + timedelta(seconds=120))
    session.commit()
    session.refresh(job)
    assert job.worker_id == "w2" and job.attempts == 2
    assert job.started_at == started  # the first start time is kept


def test_heartbeat_only_for_the_owning_worker(session, factory) -> None:  # type: ignore[no-untyped-def]
    job = factory.job(factory.tenant())
    jobs.claim_job(session, job_id=job.id, worker_id="w1")
    assert jobs.heartbeat(session, job_id=job.id, worker_id="w1")
    assert not jobs.heartbeat(session, job_id=job.id, worker_id="w2")


def test_stage_progress_and_metrics(session, factory) -> None:  # type: ignore[no-untyped-def]
    job = factory.job(factory.tenant())
    assert not jobs.set_stage(session, job_id=job.id, stage="load")  # not running yet
    jobs.claim_job(session, job_id=job.id, worker_id="w")
    assert jobs.set_stage(session, job_id=job.id, stage="distill", progress=20)
    assert jobs.set_progress(session, job_id=job.id, progress=140)  # clamped
    jobs.merge_metrics(session, job_id=job.id, metrics={"val_fidelity": 0.9})
    jobs.merge_metrics(session, job_id=job.id, metrics={"epochs": 3})
    session.commit()
    session.refresh(job)
    assert job.stage == "distill" and job.progress == 100.0
    assert job.metrics == {"val_fidelity": 0.9, "epochs": 3}


def test_finish_only_once_and_only_from_active_states(session, factory) -> None:  # type: ignore[no-untyped-def]
    job = factory.job(factory.tenant())
    jobs.claim_job(session, job_id=job.id, worker_id="w")
    assert not jobs.finish_job(session, job_id=job.id, status="failed", error="x", worker_id="someone-else")
    assert jobs.finish_job(
        session, job_id=job.id, status="succeeded", report={"ok": True}, metrics={"size": 1}, worker_id="w"
    )
    assert not jobs.finish_job(session, job_id=job.id, status="failed", error="late")
    session.commit()
    session.refresh(job)
    assert job.status == "succeeded" and job.progress == 100 and job.report == {"ok": True}
    assert job.metrics == {"size": 1} and job.error is None and job.finished_at is not None
    assert _statuses(session, job.id) == ["queued", "running", "succeeded"]
    with pytest.raises(ValueError):
        jobs.finish_job(session, job_id=job.id, status="running")


def test_cancel_queued_is_immediate_and_running_is_flagged(session, factory) -> None:  # type: ignore[no-untyped-def]
    t = factory.tenant()
    queued = factory.job(t)
    running = factory.job(t)
    jobs.claim_job(session, job_id=running.id, worker_id="w")
    session.commit()
    got = jobs.request_cancel(session, tenant_id=t.id, job_id=queued.id)
    assert got is not None and got.status == "cancelled" and got.finished_at is not None
    assert not jobs.claim_job(session, job_id=queued.id, worker_id="w")
    got = jobs.request_cancel(session, tenant_id=t.id, job_id=running.id)
    assert got is not None and got.status == "running" and got.cancel_requested
    assert jobs.is_cancel_requested(session, job_id=running.id)
    assert jobs.request_cancel(session, tenant_id=factory.tenant().id, job_id=running.id) is None


def test_reaper_fails_jobs_without_heartbeat(session, factory) -> None:  # type: ignore[no-untyped-def]
    t = factory.tenant()
    stale, fresh = factory.job(t), factory.job(t)
    t0 = utcnow()
    jobs.claim_job(session, job_id=stale.id, worker_id="dead", now=t0 - timedelta(seconds=600))
    jobs.claim_job(session, job_id=fresh.id, worker_id="alive", now=t0)
    session.commit()
    assert jobs.reap_stale(session, timeout_s=300, now=t0) == [stale.id]
    session.commit()
    session.refresh(stale)
    assert stale.status == "failed" and "heartbeat" in (stale.error or "") and "dead" in (stale.error or "")
    assert jobs.reap_stale(session, timeout_s=300, now=t0) == []


def test_list_queued_for_reenqueue(session, factory) -> None:  # type: ignore[no-untyped-def]
    t = factory.tenant()
    a = factory.job(t)
    b = factory.job(t, queue="gpu")
    c = factory.job(t)
    jobs.claim_job(session, job_id=c.id, worker_id="w")
    assert jobs.list_queued(session) == [(a.id, "compress"), (b.id, "gpu")]
    assert jobs.list_queued_ids(session) == [a.id, b.id]


def test_list_jobs_filters_and_pages(session, factory) -> None:  # type: ignore[no-untyped-def]
    t = factory.tenant()
    made = [factory.job(t) for _ in range(5)]
    jobs.claim_job(session, job_id=made[0].id, worker_id="w")
    factory.job(factory.tenant())  # another tenant's job never shows
    session.commit()
    seen: list[str] = []
    cursor = None
    while True:
        page = jobs.list_jobs(session, tenant_id=t.id, cursor=cursor, limit=2)
        seen += [j.id for j in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [j.id for j in reversed(made)]  # newest first, each once
    running = jobs.list_jobs(session, tenant_id=t.id, status="running")
    assert [j.id for j in running.items] == [made[0].id]


def test_update_progress_from_pipeline_events(session, factory) -> None:  # type: ignore[no-untyped-def]
    job = factory.job(factory.tenant())
    assert not jobs.update_progress(session, job_id=job.id, stage="load", progress=1)  # queued: ignored
    jobs.claim_job(session, job_id=job.id, worker_id="w")
    assert jobs.update_progress(session, job_id=job.id, stage="distill", progress=30, metrics={"curve": [1]})
    assert jobs.update_progress(session, job_id=job.id, progress=35)  # stage kept
    assert jobs.update_progress(session, job_id=job.id, metrics={"curve": [1, 2]})
    session.commit()
    session.refresh(job)
    assert job.stage == "distill" and job.progress == 35 and job.metrics == {"curve": [1, 2]}
    assert not jobs.update_progress(session, job_id=job.id)


def test_queued_list_ages_and_summary(session, factory) -> None:  # type: ignore[no-untyped-def]
    job = factory.job(factory.tenant())
    assert jobs.list_queued(session, older_than_s=30) == []
    later = utcnow() + timedelta(seconds=60)
    assert jobs.list_queued(session, older_than_s=30, now=later) == [(job.id, "compress")]
    summary = jobs.job_summary(session, job_id=job.id)
    assert summary is not None and summary["id"] == job.id and summary["status"] == "queued"
    assert jobs.job_summary(session, job_id="nope") is None


def test_heartbeat_without_worker_id(session, factory) -> None:  # type: ignore[no-untyped-def]
    job = factory.job(factory.tenant())
    assert not jobs.heartbeat(session, job_id=job.id)
    jobs.claim_job(session, job_id=job.id, worker_id="w")
    assert jobs.heartbeat(session, job_id=job.id)
