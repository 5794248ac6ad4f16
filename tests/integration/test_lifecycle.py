"""Deleting data with real processes (uvicorn, redis-server, a Celery worker) on the local store and on
S3 (a moto server process speaking the S3 protocol over HTTP): a job's rows and store objects go, a
dataset's object goes, and an object another tenant also uploaded stays."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from s3server import CREDENTIALS, moto_server, new_bucket, s3_client
from stack import running_stack

from edgedistill.client import Client
from edgedistill.service.storage import LocalStore
from edgedistill.service.storage.s3 import S3Store

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1200)]

FAST = {"epochs": 10, "patience": 10, "benchmark_runs": 5, "benchmark_warmup": 1, "calibration_samples": 32}


@pytest.fixture
def s3_url(tmp_path: Path) -> Iterator[str]:
    with moto_server(tmp_path / "moto.log") as url:
        yield url


def _key(sha256: str) -> str:
    return f"{sha256[:2]}/{sha256}"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_deleting_a_job_and_its_data_removes_rows_and_objects(
    backend: str, tmp_path: Path, teacher_and_data: tuple[Path, Path], request: pytest.FixtureRequest
) -> None:
    teacher, data = teacher_and_data
    env: dict[str, str] = {}
    if backend == "s3":
        url = request.getfixturevalue("s3_url")
        client = s3_client(url)
        bucket = new_bucket(client)
        store = S3Store(bucket=bucket, client=client)
        env = {"EDGEDISTILL_STORAGE_BACKEND": "s3", "EDGEDISTILL_S3_BUCKET": bucket,
               "EDGEDISTILL_S3_ENDPOINT_URL": url, **CREDENTIALS}  # fmt: skip
    else:
        store = LocalStore(tmp_path / "data" / "artifacts")
    with running_stack(tmp_path, f"sqlite:///{tmp_path / 'ed.db'}", env=env) as stack:
        key_a, key_b = stack.create_key("a"), stack.create_key("b")
        with Client(stack.url, key_a) as a, Client(stack.url, key_b) as b:
            model, dataset = a.upload_model(teacher), a.upload_dataset(data)
            b.upload_model(teacher)  # the same bytes: one shared object
            job = a.submit(model["id"], data=dataset["id"], profile="cpu-x86", options=FAST)
            refused = a.http.delete(f"/jobs/{job.id}")
            assert refused.status_code in {409, 204}  # 409 while queued/running (it may already have ended)
            job.wait(timeout=900)
            assert job.status == "succeeded", job.data
            arts: list[dict[str, Any]] = job.artifacts()
            keys = [_key(art["sha256"]) for art in arts]
            assert keys and all(store.exists(k) for k in keys)

            assert a.http.delete(f"/jobs/{job.id}").status_code == 204
            assert a.http.get(f"/jobs/{job.id}").status_code == 404
            assert a.http.get(f"/artifacts/{arts[0]['id']}").status_code == 404
            assert a.http.get("/measurements", params={"job_id": job.id}).json()["items"] == []
            assert [k for k in keys if store.exists(k)] == []

            assert a.http.delete(f"/datasets/{dataset['id']}").status_code == 204
            assert not store.exists(_key(_sha(data)))
            assert a.http.delete(f"/models/{model['id']}").status_code == 204
            assert store.exists(_key(_sha(teacher)))  # tenant b's model still references it
            usage = a.http.get("/usage").json()
            assert usage["stored_bytes"] == 0 and usage["jobs_total"] == 0
