"""Bounded load: 500 job submissions from 50 concurrent clients (httpx async, loopback) against one uvicorn
and 2 Celery worker processes on SQLite, with status polling alongside. Two workers on this machine's
2 cores finish a tiny job every few seconds, so 500 real runs would take far longer than a CI budget:
the workers run jobs for RUN_SECONDS, then every job still queued or running is cancelled through the
API. Every one of the 500 must end in a terminal state with a reason (succeeded; failed with its error;
cancelled by user), no request may get a 5xx, and the figures are printed."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from stack import Stack, running_stack, wait_until

from edgedistill.client import Client

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

CLIENTS = 50
PER_CLIENT = 10
RUN_SECONDS = 60
TINY = {"epochs": 1, "patience": 1, "benchmark_runs": 1, "benchmark_warmup": 0, "calibration_samples": 8}
TERMINAL = {"succeeded", "failed", "cancelled"}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@pytest.fixture(scope="module")
def load_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("load")
    with running_stack(tmp, f"sqlite:///{tmp / 'edgedistill.db'}", workers=2) as stack:
        yield stack


class Recorder:
    def __init__(self) -> None:
        self.codes: Counter[int] = Counter()
        self.latency: dict[str, list[float]] = {"submit": [], "status": [], "cancel": []}
        self.server_errors: list[str] = []

    async def call(self, kind: str, http: httpx.AsyncClient, method: str, path: str, **kw: Any) -> httpx.Response:
        t0 = time.perf_counter()
        r = await http.request(method, path, **kw)
        self.latency[kind].append((time.perf_counter() - t0) * 1000)
        self.codes[r.status_code] += 1
        if r.status_code >= 500:
            self.server_errors.append(f"{method} {path} -> {r.status_code}: {r.text[:300]}")
        return r


async def _submit_all(stack: Stack, key: str, body: dict[str, Any], rec: Recorder) -> list[str]:
    ids: list[str] = []
    headers = {"Authorization": f"Bearer {key}"}

    async def client(n: int) -> None:
        async with httpx.AsyncClient(base_url=f"{stack.url}/api/v1", headers=headers, timeout=120) as http:
            for i in range(PER_CLIENT):
                idem = {"Idempotency-Key": f"load-{n}-{i}"}
                r = await rec.call("submit", http, "POST", "/jobs", json=body, headers=idem)
                assert r.status_code == 202, r.text
                job_id = r.json()["id"]
                ids.append(job_id)
                if i == 0:  # a retried submission returns the same job, never a second one
                    again = await rec.call("submit", http, "POST", "/jobs", json=body, headers=idem)
                    assert again.status_code == 200 and again.json()["id"] == job_id
                # Some status traffic alongside, like clients following their jobs.
                await rec.call("status", http, "GET", f"/jobs/{ids[(n * 7 + i) % len(ids)]}")

    await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    return ids


async def _poll_while_running(stack: Stack, key: str, ids: list[str], rec: Recorder, seconds: float) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    deadline = time.monotonic() + seconds

    async def client(n: int) -> None:
        async with httpx.AsyncClient(base_url=f"{stack.url}/api/v1", headers=headers, timeout=120) as http:
            i = n
            while time.monotonic() < deadline:
                await rec.call("status", http, "GET", f"/jobs/{ids[i % len(ids)]}")
                i += CLIENTS
                await asyncio.sleep(1.0)  # 50 clients, one request a second each

    await asyncio.gather(*(client(n) for n in range(CLIENTS)))


async def _cancel_unfinished(stack: Stack, key: str, ids: list[str], rec: Recorder) -> Counter[int]:
    headers = {"Authorization": f"Bearer {key}"}
    codes: Counter[int] = Counter()
    chunks = [ids[n::CLIENTS] for n in range(CLIENTS)]

    async def client(chunk: list[str]) -> None:
        async with httpx.AsyncClient(base_url=f"{stack.url}/api/v1", headers=headers, timeout=120) as http:
            for job_id in chunk:
                r = await rec.call("cancel", http, "POST", f"/jobs/{job_id}/cancel")
                codes[r.status_code] += 1
                assert r.status_code in {200, 409}, r.text  # 409: it had already ended

    await asyncio.gather(*(client(c) for c in chunks))
    return codes


def test_500_submissions_from_50_clients_all_accounted_for(
    load_stack: Stack, teacher_and_data: tuple[Path, Path]
) -> None:
    stack = load_stack
    key = stack.create_key("load")
    teacher, data = teacher_and_data
    with Client(stack.url, key) as c:
        model, dataset = c.upload_model(teacher)["id"], c.upload_dataset(data)["id"]
    body = {"model_id": model, "dataset_id": dataset, "device_profile": "cpu-x86", "options": TINY}
    rec = Recorder()

    t0 = time.monotonic()
    ids = asyncio.run(_submit_all(stack, key, body, rec))
    submit_s = time.monotonic() - t0
    assert len(ids) == len(set(ids)) == CLIENTS * PER_CLIENT

    asyncio.run(_poll_while_running(stack, key, ids, rec, RUN_SECONDS))
    ran_s = time.monotonic() - t0
    t1 = time.monotonic()
    cancel_codes = asyncio.run(_cancel_unfinished(stack, key, ids, rec))

    engine = sa.create_engine(stack.database_url)
    try:

        def unfinished() -> int:
            with engine.connect() as conn:
                return int(
                    conn.execute(
                        sa.text("SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')")
                    ).scalar_one()
                )

        wait_until(lambda: unfinished() == 0, 180, "every job to reach a terminal state", interval=1.0)
        drain_s = time.monotonic() - t1
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, status, error, attempts FROM jobs")).all()
            arts = conn.execute(sa.text("SELECT job_id, kind, sha256, storage_key FROM artifacts")).all()
    finally:
        engine.dispose()

    by_status = Counter(r.status for r in rows)
    print(
        f"\n{len(ids)} jobs from {CLIENTS} clients: submitted in {submit_s:.1f} s "
        f"({len(ids) / submit_s:.0f}/s); submit p50 {_pct(rec.latency['submit'], 50):.0f} ms, "
        f"p99 {_pct(rec.latency['submit'], 99):.0f} ms; status p50 {_pct(rec.latency['status'], 50):.0f} ms, "
        f"p99 {_pct(rec.latency['status'], 99):.0f} ms over {len(rec.latency['status'])} calls\n"
        f"2 workers ran for {ran_s:.0f} s: {by_status['succeeded']} succeeded "
        f"({by_status['succeeded'] / ran_s * 60:.1f} jobs/min), {by_status['failed']} failed; "
        f"cancel answers {dict(cancel_codes)}; all {len(rows)} terminal {drain_s:.1f} s after the cancels; "
        f"HTTP codes {dict(rec.codes)}"
    )
    assert rec.server_errors == [], rec.server_errors[:5]
    assert {r.id for r in rows} == set(ids), "a submitted job is missing from the database"
    assert set(by_status) <= TERMINAL
    for r in rows:
        assert r.error if r.status != "succeeded" else r.error is None, (r.id, r.status, r.error)
        if r.status == "cancelled":
            assert r.error == "cancelled by user"
    assert by_status["failed"] == 0, [r.error for r in rows if r.status == "failed"][:3]
    assert by_status["succeeded"] >= 4, "the workers should have finished several jobs in the time given"
    # Succeeded jobs have one artifact of each kind, stored where the row says; no other job has any.
    kinds: dict[str, list[str]] = {}
    for a in arts:
        kinds.setdefault(a.job_id, []).append(a.kind)
        assert (stack.data_dir / "artifacts" / "objects" / a.storage_key).is_file()
    succeeded = {r.id for r in rows if r.status == "succeeded"}
    assert set(kinds) == succeeded
    assert all(len(k) == len(set(k)) for k in kinds.values())
    stored = stack.data_dir / "artifacts" / "objects"
    for a in arts[:5]:
        assert hashlib.sha256((stored / a.storage_key).read_bytes()).hexdigest() == a.sha256
