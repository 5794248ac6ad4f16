"""Quotas and fair dispatch with real processes: two uvicorn API processes sharing one Redis rate limit,
and two Celery worker processes serving two tenants, one with a backlog, in turns."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from stack import REPO, free_port, running_stack, wait_until

from edgedistill.client import Client

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

LONG = {"epochs": 5000, "patience": 5000}  # runs until cancelled


def _sqlite(tmp: Path) -> str:
    return f"sqlite:///{tmp / 'edgedistill.db'}"


def test_submit_rate_limit_is_shared_by_two_api_processes(tmp_path: Path, teacher_and_data: tuple[Path, Path]) -> None:
    teacher, _ = teacher_and_data
    env = {"EDGEDISTILL_SUBMIT_RATE_LIMIT_PER_MINUTE": "3"}
    with running_stack(tmp_path, _sqlite(tmp_path), workers=0, env=env) as stack:
        key = stack.create_key("ratelimited")
        port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "edgedistill.service.main:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
        ]
        second = subprocess.Popen(
            [*cmd, "--port", str(port), "--log-level", "warning"], env=stack.env, cwd=REPO,
            stdout=stack.log("api2").open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            urls = [stack.url, f"http://127.0.0.1:{port}"]
            wait_until(lambda: _up(urls[1]), 60, "the second API process")
            with Client(stack.url, key) as client:
                model = client.upload_model(teacher)["id"]
            body = {"model_id": model, "device_profile": "cpu-x86", "options": {"epochs": 1}}
            headers = {"Authorization": f"Bearer {key}"}
            codes = [
                httpx.post(f"{urls[i % 2]}/api/v1/jobs", json=body, headers=headers, timeout=30).status_code
                for i in range(5)
            ]
            # Three submits in the minute, whichever process took them; the others are refused by both.
            assert codes == [202, 202, 202, 429, 429]
            refused = httpx.post(f"{urls[1]}/api/v1/jobs", json=body, headers=headers, timeout=30)
            assert "3 jobs per minute" in refused.json()["detail"] and int(refused.headers["Retry-After"]) >= 1
        finally:
            second.terminate()
            second.wait(timeout=30)


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_two_workers_serve_two_tenants_in_turns(tmp_path: Path, teacher_and_data: tuple[Path, Path]) -> None:
    """Tenant A queues 6 long jobs, then tenant B one. With 2 workers and one message ahead in the broker,
    B's job starts right after the one A job already waiting: before A's other 3 (FIFO: after all 6)."""
    teacher, data = teacher_and_data
    with running_stack(tmp_path, _sqlite(tmp_path), workers=2) as stack:
        key_a, key_b = stack.create_key("backlog"), stack.create_key("single")
        with Client(stack.url, key_a) as a, Client(stack.url, key_b) as b:
            model, dataset = a.upload_model(teacher)["id"], a.upload_dataset(data)["id"]
            a_jobs = [a.submit(model, data=dataset, profile="cpu-x86", options=LONG).id for _ in range(6)]
            wait_until(lambda: _running(a, a_jobs) == set(a_jobs[:2]), 120, "both workers running A's first jobs")
            b_model, b_data = b.upload_model(teacher)["id"], b.upload_dataset(data)["id"]
            b_job = b.submit(b_model, data=b_data, profile="cpu-x86", options=LONG).id

            started: list[str] = []
            for job_id in a_jobs[:2]:  # free the workers one at a time and see who is served next
                before = _started(a, b, a_jobs, b_job)
                a.job(job_id).cancel()
                new = wait_until(lambda before=before: _started(a, b, a_jobs, b_job) - before, 120, "the next start")
                started += sorted(new)
            assert started == [a_jobs[2], b_job], started
            assert all(a.job(j).status == "queued" for j in a_jobs[3:])  # A's backlog waits its turn

            for job_id in a_jobs:
                a.job(job_id).cancel()
            b.job(b_job).cancel()
            wait_until(lambda: all(a.job(j).refresh().status == "cancelled" for j in a_jobs), 180, "cancellations")


def _running(client: Client, ids: list[str]) -> set[str]:
    return {j for j in ids if client.job(j).status == "running"}


def _started(a: Client, b: Client, a_jobs: list[str], b_job: str) -> set[str]:
    found = {j for j in a_jobs if a.job(j).data.get("started_at")}
    if b.job(b_job).data.get("started_at"):
        found.add(b_job)
    return found
