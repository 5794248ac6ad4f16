"""Faults injected into real processes: a worker SIGKILLed mid-distillation (its pool process, then the
whole worker), Redis restarted empty while jobs are queued, the API killed during an upload, PostgreSQL
stopped and started under a running job, and the artifact store's disk full. Each ends in a terminal
state with a reason within a bounded time, with nothing partial visible (docs/reliability.md)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import sqlalchemy as sa
from stack import PostgresCluster, Stack, postgres_bindir, running_stack, wait_until

from edgedistill.client import Client, Job

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(420)]

TERMINAL = {"succeeded", "failed", "cancelled"}
# Long enough to be killed in the middle of distillation (~10 s of training on the test machine).
SLOW = {"epochs": 40, "patience": 40, "benchmark_runs": 5, "benchmark_warmup": 1, "calibration_samples": 32}
TINY = {"epochs": 1, "patience": 1, "benchmark_runs": 1, "benchmark_warmup": 0, "calibration_samples": 8}


def _sqlite(tmp: Path) -> str:
    return f"sqlite:///{tmp / 'edgedistill.db'}"


def _db_row(stack: Stack, sql: str, **params: Any) -> Any:
    engine = sa.create_engine(stack.database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql), params).one()
    finally:
        engine.dispose()


def _wait_terminal(client: Client, job_id: str, timeout: float) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        job: dict[str, Any] = client.request("GET", f"/jobs/{job_id}")
        return job if job["status"] in TERMINAL else None

    result: dict[str, Any] = wait_until(ended, timeout, f"job {job_id} to end", interval=0.5)
    return result


def _wait_training(client: Client, job_id: str, timeout: float = 120) -> None:
    def training() -> bool:
        job = client.request("GET", f"/jobs/{job_id}")
        assert job["status"] in {"queued", "running"}, job
        return bool(job["status"] == "running" and job["stage"] == "distill" and job["progress"] > 0)

    wait_until(training, timeout, f"job {job_id} to be training", interval=0.2)


def _store_objects(stack: Stack, root: Path | None = None) -> set[str]:
    objects = (root or stack.data_dir / "artifacts") / "objects"
    return {p.name for p in objects.rglob("*") if p.is_file()}


def _staging_files(root: Path) -> list[Path]:
    return [p for p in (root / "tmp").glob("*") if p.is_file()]


def _check_artifacts(client: Client, job_id: str) -> list[dict[str, Any]]:
    """One artifact per kind, each downloadable with the recorded sha256 and size."""
    arts: list[dict[str, Any]] = client.request("GET", f"/jobs/{job_id}/artifacts")
    kinds = [a["kind"] for a in arts]
    assert len(kinds) == len(set(kinds)), kinds
    for art in arts:
        body = client.http.get(f"/artifacts/{art['id']}/download").content
        assert len(body) == art["size_bytes"] and hashlib.sha256(body).hexdigest() == art["sha256"], art["kind"]
    return arts


@pytest.fixture
def files(teacher_and_data: tuple[Path, Path]) -> tuple[Path, Path]:
    return teacher_and_data


# ---------------------------------------------------------------------------------------------------
# worker killed
# ---------------------------------------------------------------------------------------------------


def test_worker_process_killed_mid_distillation_is_redelivered_and_succeeds(
    tmp_path: Path, files: tuple[Path, Path]
) -> None:
    """SIGKILL the pool process running the job: Celery requeues the message (acks_late +
    reject_on_worker_lost), the worker's new pool process takes the job over once the dead one's
    heartbeat has stopped, and the job succeeds on its second attempt with one artifact per kind."""
    teacher, data = files
    env = {"EDGEDISTILL_JOB_HEARTBEAT_TIMEOUT_S": "6"}
    with running_stack(tmp_path, _sqlite(tmp_path), env=env) as stack, Client(stack.url, stack.create_key("t")) as c:
        job = c.submit(teacher, data=data, profile="cpu-x86", options=SLOW)
        _wait_training(c, job.id)
        worker_id = _db_row(stack, "SELECT worker_id FROM jobs WHERE id = :id", id=job.id)[0]
        pool_pid = int(worker_id.rsplit(":", 1)[1])
        killed_at = time.monotonic()
        os.kill(pool_pid, signal.SIGKILL)

        end = _wait_terminal(c, job.id, timeout=150)
        print(f"killed pool process -> {end['status']} after {time.monotonic() - killed_at:.1f} s")
        assert end["status"] == "succeeded", end
        assert end["attempts"] == 2 and end["error"] is None
        arts = _check_artifacts(c, job.id)
        assert {"onnx_int8", "report"} <= {a["kind"] for a in arts}
        statuses = [e.data for e in Job(c, end).events() if e.event == "status"]
        assert [s["status"] for s in statuses] == ["queued", "running", "running", "succeeded"]
        assert statuses[2]["data"]["previous_worker_id"] == worker_id
        assert stack.workers[0].poll() is None, "the worker itself must survive the loss of a pool process"
        assert _staging_files(stack.data_dir / "artifacts") == []


def test_whole_worker_killed_job_is_reaped_with_a_reason_and_a_new_worker_carries_on(
    tmp_path: Path, files: tuple[Path, Path]
) -> None:
    """SIGKILL the worker's whole process group (the machine died): its message stays unacked in Redis
    until the visibility timeout, so the maintenance loop of the restarted worker fails the job once its
    heartbeat is older than EDGEDISTILL_JOB_HEARTBEAT_TIMEOUT_S; the next job runs normally."""
    teacher, data = files
    env = {"EDGEDISTILL_JOB_HEARTBEAT_TIMEOUT_S": "6"}
    with running_stack(tmp_path, _sqlite(tmp_path), env=env) as stack, Client(stack.url, stack.create_key("t")) as c:
        model, dataset = c.upload_model(teacher)["id"], c.upload_dataset(data)["id"]
        job = c.submit(model, data=dataset, profile="cpu-x86", options=SLOW)
        _wait_training(c, job.id)
        stack.kill_worker(stack.workers[0])
        killed_at = time.monotonic()
        assert c.request("GET", f"/jobs/{job.id}")["status"] == "running"
        stack.start_worker("w1")

        end = _wait_terminal(c, job.id, timeout=60)
        print(f"killed worker -> {end['status']} after {time.monotonic() - killed_at:.1f} s: {end['error']}")
        assert end["status"] == "failed"
        assert "stopped sending heartbeats" in end["error"]
        assert c.request("GET", f"/jobs/{job.id}/artifacts") == []

        nxt = c.submit(model, data=dataset, profile="cpu-x86", options=TINY)
        assert _wait_terminal(c, nxt.id, timeout=120)["status"] == "succeeded"
        _check_artifacts(c, nxt.id)


# ---------------------------------------------------------------------------------------------------
# Redis restarted
# ---------------------------------------------------------------------------------------------------


def test_redis_restarted_empty_loses_no_queued_job(tmp_path: Path, files: tuple[Path, Path]) -> None:
    """Redis comes back without its data while one job runs and three wait: the maintenance loop sees the
    queued jobs missing from the broker and sends them again; a job submitted while Redis is down is
    accepted (202, stays queued) and runs too. /readyz names the broker while it is down."""
    teacher, data = files
    env = {"EDGEDISTILL_JOB_HEARTBEAT_TIMEOUT_S": "9"}  # maintenance round every 5 s
    with running_stack(tmp_path, _sqlite(tmp_path), env=env) as stack, Client(stack.url, stack.create_key("t")) as c:
        model, dataset = c.upload_model(teacher)["id"], c.upload_dataset(data)["id"]
        running = c.submit(model, data=dataset, profile="cpu-x86", options=SLOW)
        _wait_training(c, running.id)
        waiting = [c.submit(model, data=dataset, profile="cpu-x86", options=TINY) for _ in range(3)]
        broker = redis.Redis(unix_socket_path=str(stack.redis.socket_path))
        # fair dispatch keeps one message ahead per queue (dispatch_ahead); the rest wait in the database
        assert broker.llen("compress") == 1
        assert [c.job(j.id).status for j in waiting] == ["queued"] * 3
        broker.close()

        stack.redis.stop()
        ready = httpx.get(f"{stack.url}/readyz", timeout=10)
        assert ready.status_code == 503 and ready.json()["database"] == "ok" and ready.json()["broker"] != "ok"
        during = c.submit(model, data=dataset, profile="cpu-x86", options=TINY)  # accepted, stays queued
        assert during.status == "queued"
        stack.redis.start(wipe=True)
        broker = redis.Redis(unix_socket_path=str(stack.redis.socket_path))
        assert broker.llen("compress") == 0, "the restarted Redis should hold nothing"
        broker.close()
        restarted_at = time.monotonic()

        ends = {j.id: _wait_terminal(c, j.id, timeout=180) for j in [running, *waiting, during]}
        print(f"all {len(ends)} jobs ended {time.monotonic() - restarted_at:.1f} s after the restart")
        assert all(e["status"] == "succeeded" for e in ends.values()), ends
        assert httpx.get(f"{stack.url}/readyz", timeout=10).status_code == 200


# ---------------------------------------------------------------------------------------------------
# API killed during an upload
# ---------------------------------------------------------------------------------------------------


def test_api_killed_during_upload_leaves_no_model_and_the_retry_succeeds(
    tmp_path: Path, files: tuple[Path, Path]
) -> None:
    teacher, _ = files
    with running_stack(tmp_path, _sqlite(tmp_path), workers=0) as stack:
        key = stack.create_key("t")
        headers = {"Authorization": f"Bearer {key}"}
        halfway = threading.Event()
        outcome: dict[str, Any] = {}

        def body() -> Iterator[bytes]:
            head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.onnx"\r\n\r\n'
            yield head
            for i in range(400):  # up to 400 MiB, never finished: the API dies first
                yield b"\0" * (1 << 20)
                if i == 8:
                    halfway.set()
                    time.sleep(0.5)

        def upload() -> None:
            try:
                r = httpx.post(
                    f"{stack.url}/api/v1/models",
                    content=body(),
                    headers={**headers, "Content-Type": "multipart/form-data; boundary=b"},
                    timeout=60,
                )
                outcome["status"] = r.status_code
            except httpx.HTTPError as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=upload)
        thread.start()
        assert halfway.wait(60)
        stack.kill_api()
        thread.join(60)
        assert "error" in outcome, f"the upload should have been cut off, got {outcome}"
        # The killed process could not remove its staging folder; the next start sweeps it once it is old.
        (leftover,) = (stack.data_dir / "tmp").glob("upload-*")
        hours_ago = time.time() - 7 * 3600
        for path in [*leftover.iterdir(), leftover]:
            os.utime(path, (hours_ago, hours_ago))

        stack.start_api()
        assert not leftover.exists()
        with Client(stack.url, key) as c:
            assert c.request("GET", "/models")["items"] == []
            assert _store_objects(stack) == set(), "nothing of the cut upload may reach the store"
            model = c.upload_model(teacher)  # the client retries: a normal upload
            assert model["sha256"] == hashlib.sha256(teacher.read_bytes()).hexdigest()
            assert [m["id"] for m in c.request("GET", "/models")["items"]] == [model["id"]]


# ---------------------------------------------------------------------------------------------------
# database unavailable
# ---------------------------------------------------------------------------------------------------


@pytest.fixture
def postgres() -> Iterator[PostgresCluster]:
    if postgres_bindir() is None:
        pytest.skip("PostgreSQL server binaries are not installed")
    # Under /tmp itself: pytest's tmp_path is private to root, and the server runs as user postgres.
    cluster = PostgresCluster(Path(tempfile.mkdtemp(prefix="edgedistill-pg-")))
    cluster.create()
    try:
        yield cluster
    finally:
        cluster.destroy()


def test_postgres_down_briefly_503_not_500_and_the_running_job_survives(
    tmp_path: Path, files: tuple[Path, Path], postgres: PostgresCluster
) -> None:
    teacher, data = files
    with running_stack(tmp_path, postgres.url) as stack, Client(stack.url, stack.create_key("t")) as c:
        job = c.submit(teacher, data=data, profile="cpu-x86", options=SLOW)
        _wait_training(c, job.id)
        postgres.stop()
        try:
            ready = httpx.get(f"{stack.url}/readyz", timeout=15)
            assert ready.status_code == 503 and ready.json()["database"] != "ok" and ready.json()["broker"] == "ok"
            for method, path in [("GET", "/jobs"), ("GET", f"/jobs/{job.id}"), ("POST", "/jobs")]:
                r = c.http.request(method, path, json={"model_id": "x", "device_profile": "cpu-x86"})
                assert r.status_code == 503, (method, path, r.status_code, r.text)
                assert r.headers.get("Retry-After") and "database unavailable" in r.json()["detail"]
            time.sleep(3)  # the worker keeps training and retries its event writes meanwhile
        finally:
            postgres.start()
        wait_until(lambda: httpx.get(f"{stack.url}/readyz", timeout=15).status_code == 200, 30, "ready again")
        end = _wait_terminal(c, job.id, timeout=150)
        assert end["status"] == "succeeded", end
        assert end["attempts"] == 1
        _check_artifacts(c, job.id)
        assert "database unavailable, retrying" in stack.log("worker-w1").read_text()


# ---------------------------------------------------------------------------------------------------
# disk full while storing artifacts
# ---------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _small_disk(path: Path, size: str) -> Iterator[str]:
    """A tmpfs of the given size at path (root); yields 'tmpfs', or 'readonly' where mounting is not
    allowed and the test runs unprivileged (a store folder it may not write: a real EACCES)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = (
        os.geteuid() == 0
        and (
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
        ).returncode
        == 0
    )
    if not mounted and os.geteuid() == 0:
        pytest.skip("cannot mount a tmpfs here (no CAP_SYS_ADMIN) and root ignores read-only folders")
    try:
        yield "tmpfs" if mounted else "readonly"
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=False)


def test_disk_full_while_storing_artifacts_fails_the_job_and_keeps_nothing(
    tmp_path: Path, files: tuple[Path, Path]
) -> None:
    teacher, data = files
    store_root = tmp_path / "store"
    with _small_disk(store_root, "8m") as how:
        env = {"EDGEDISTILL_STORAGE_DIR": str(store_root)}
        with (
            running_stack(tmp_path, _sqlite(tmp_path), env=env) as stack,
            Client(stack.url, stack.create_key("t")) as c,
        ):
            model, dataset = c.upload_model(teacher)["id"], c.upload_dataset(data)["id"]
            before = _store_objects(stack, store_root)
            assert len(before) == 2
            filler = store_root / "filler"
            if how == "tmpfs":  # leave 2 KiB: every artifact is larger
                free = os.statvfs(store_root).f_bavail * os.statvfs(store_root).f_frsize
                with filler.open("wb") as f:
                    f.truncate(0)
                    f.write(b"\0" * max(0, free - 2048))
            else:
                for folder in (store_root / "objects", store_root / "tmp"):
                    folder.mkdir(exist_ok=True)
                    for p in [folder, *folder.rglob("*")]:
                        if p.is_dir():
                            p.chmod(0o555)

            job = c.submit(model, data=dataset, profile="cpu-x86", options=TINY)
            end = _wait_terminal(c, job.id, timeout=150)
            print(f"{how}: {end['status']}: {end['error']}")
            assert end["status"] == "failed"
            assert "storing the job's artifacts failed" in end["error"]
            assert ("No space left on device" if how == "tmpfs" else "Permission denied") in end["error"]
            assert c.request("GET", f"/jobs/{job.id}/artifacts") == []
            assert _store_objects(stack, store_root) == before, "no object of the failed job may stay"
            assert _staging_files(store_root) == []

            # Space again: the same job submitted again succeeds.
            if how == "tmpfs":
                filler.unlink()
            else:
                for p in [store_root / "objects", *(store_root / "objects").rglob("*"), store_root / "tmp"]:
                    if p.is_dir():
                        p.chmod(0o755)
            again = c.submit(model, data=dataset, profile="cpu-x86", options=TINY)
            assert _wait_terminal(c, again.id, timeout=150)["status"] == "succeeded"
            _check_artifacts(c, again.id)
