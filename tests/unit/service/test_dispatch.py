"""Fair dispatch (service.dispatch): jobs wait in the database and the broker gets dispatch_ahead of
them per queue, the next one always from the tenant served longest ago."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session

from edgedistill.service.db.models import Job
from edgedistill.service.dispatch import dispatch
from edgedistill.service.queue import QueueUnavailable
from edgedistill.service.repos import dispatch as repo
from edgedistill.service.repos import jobs
from edgedistill.service.settings import Settings


@dataclass
class Broker:
    sent: list[tuple[str, str]] = field(default_factory=list)
    down: bool = False

    def enqueue(self, job_id: str, queue: str = "compress") -> None:
        if self.down:
            raise QueueUnavailable("down (test)")
        self.sent.append((job_id, queue))

    def ping(self, timeout: float) -> None:
        return None


def _settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(data_dir=tmp_path, database_url="sqlite://", **kw)  # type: ignore[arg-type]


def _run(session: Session, broker: Broker, settings: Settings) -> list[str]:
    return dispatch(lambda: contextlib.nullcontext(session), broker, settings)


def test_a_tenant_with_many_jobs_delays_another_by_one_job(session, factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    busy, other = factory.tenant("busy"), factory.tenant("other")
    model = factory.model(busy)
    busy_jobs = [factory.job(busy, model).id for _ in range(30)]
    session.commit()
    broker, settings = Broker(), _settings(tmp_path)
    assert _run(session, broker, settings) == [busy_jobs[0]]  # one message ahead, not thirty
    assert _run(session, broker, settings) == []  # its slot is taken until a worker claims it
    lone = factory.job(other).id
    session.commit()

    order = []
    for n in range(6):  # a worker claims what the broker holds, which frees the slot for the next
        job_id = broker.sent[-1][0]
        order.append(job_id)
        assert jobs.claim_job(session, job_id=job_id, worker_id=f"w{n % 2}")
        session.commit()
        _run(session, broker, settings)
    assert order[:2] == [busy_jobs[0], lone]  # the lone job went right after the one already sent
    assert order[2:] == busy_jobs[1:5]
    assert session.get(Job, busy_jobs[10]).dispatched_at is None  # the rest wait in the database


def test_tenants_take_turns(session, factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, b = factory.tenant("a"), factory.tenant("b")
    ma, mb = factory.model(a), factory.model(b)
    a_jobs = [factory.job(a, ma).id for _ in range(3)]
    b_jobs = [factory.job(b, mb).id for _ in range(3)]
    session.commit()
    broker = Broker()
    sent = _run(session, broker, _settings(tmp_path, dispatch_ahead=6))
    assert sent == [a_jobs[0], b_jobs[0], a_jobs[1], b_jobs[1], a_jobs[2], b_jobs[2]]


def test_running_limit_per_tenant(session, factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, b = factory.tenant("a"), factory.tenant("b")
    ma = factory.model(a)
    a_jobs = [factory.job(a, ma).id for _ in range(3)]
    session.commit()
    settings = _settings(tmp_path, dispatch_ahead=5, tenant_max_running_jobs=1)
    broker = Broker()
    assert _run(session, broker, settings) == [a_jobs[0]]
    assert jobs.claim_job(session, job_id=a_jobs[0], worker_id="w")
    session.commit()
    assert _run(session, broker, settings) == []  # a already runs its one job
    b_job = factory.job(b).id
    session.commit()
    assert _run(session, broker, settings) == [b_job]
    assert jobs.finish_job(session, job_id=a_jobs[0], status="succeeded")
    session.commit()
    assert _run(session, broker, settings) == [a_jobs[1]]


def test_a_failed_send_puts_the_job_back_in_line(session, factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    t = factory.tenant()
    job = factory.job(t).id
    session.commit()
    broker = Broker(down=True)
    assert _run(session, broker, _settings(tmp_path)) == []
    assert session.get(Job, job).dispatched_at is None
    broker.down = False
    assert _run(session, broker, _settings(tmp_path)) == [job]
    assert repo.dispatched_queued(session) == [(job, "compress")]


def test_cancelled_and_already_sent_jobs_are_not_sent(session, factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    t = factory.tenant()
    first, second = factory.job(t).id, factory.job(t).id
    session.commit()
    assert repo.mark_dispatched(session, job_id=first)
    assert not repo.mark_dispatched(session, job_id=first)  # a second dispatcher loses the race
    jobs.request_cancel(session, tenant_id=t.id, job_id=second)
    session.commit()
    broker = Broker()
    assert _run(session, broker, _settings(tmp_path, dispatch_ahead=3)) == []
    assert repo.in_flight(session, queue="compress") == 1
