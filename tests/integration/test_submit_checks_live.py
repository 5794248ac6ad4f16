"""Submit-time checks through the real stack (uvicorn, redis-server, a Celery worker process): a
2-input teacher with fitting data is accepted (202), with mismatching data refused (422) naming each
mismatch, and `edgedistill submit` prints that as one line with a non-zero exit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import LiveService
from signature_models import token_classifier_onnx

from edgedistill.client import ApiError, Client

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def two_input_files(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    teacher = tmp_path / "tokens.onnx"
    teacher.write_bytes(token_classifier_onnx(seq=16))
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    ids = rng.integers(0, 50, size=(64, 16)).astype(np.int64)
    np.savez(good, input_ids=ids, attention_mask=np.ones((64, 16), np.int64))
    np.savez(bad, input_ids=ids[:, :10], mask=np.ones((64, 16), np.int64))
    return {"teacher": teacher, "good": good, "bad": bad}


def test_two_input_teacher_fitting_data_202_mismatch_422(live: LiveService, two_input_files: dict[str, Path]) -> None:
    headers = {"Authorization": f"Bearer {live.key_a}"}
    with Client(live.url, live.key_a) as client:
        job = client.submit(two_input_files["teacher"], data=two_input_files["good"], profile="cpu-x86")
        assert job.status == "queued"
        model_id = job.data["model_id"]
        # The 202 is what this test is about; the worker need not spend the shared stack's time on it.
        httpx.post(f"{live.url}/api/v1/jobs/{job.id}/cancel", headers=headers, timeout=30)

        sig = httpx.get(f"{live.url}/api/v1/models/{model_id}", headers=headers, timeout=30).json()["signature"]
        assert [i["name"] for i in sig["inputs"]] == ["input_ids", "attention_mask"]

        before = len(httpx.get(f"{live.url}/api/v1/jobs", headers=headers, timeout=30).json()["items"])
        with pytest.raises(ApiError) as refused:
            client.submit(model_id, data=two_input_files["bad"], profile="cpu-x86")
    assert refused.value.status_code == 422
    msgs = [e["msg"] for e in refused.value.detail]
    assert all(e["loc"] == ["body", "dataset_id"] for e in refused.value.detail)
    assert any("input 'input_ids' axis 1 is 16 but data 'input_ids' has 10" in m for m in msgs)
    assert any("input 'attention_mask'" in m and "found: input_ids, mask" in m for m in msgs)
    after = len(httpx.get(f"{live.url}/api/v1/jobs", headers=headers, timeout=30).json()["items"])
    assert after == before  # nothing was queued


def test_submit_cli_prints_the_mismatch_on_one_line(live: LiveService, two_input_files: dict[str, Path]) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "EDGEDISTILL_URL": live.url, "EDGEDISTILL_API_KEY": live.key_a}
    proc = subprocess.run(
        [sys.executable, "-m", "edgedistill.service.cli", "submit", str(two_input_files["teacher"]),
         "--data", str(two_input_files["bad"]), "--profile", "cpu-x86"],
        env=env, capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 4, proc.stderr  # EXIT_REFUSED: the server refused the request (README: Exit codes)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: HTTP 422: dataset_id: input 'input_ids' axis 1 is 16")
    assert "dataset_id: input 'attention_mask'" in lines[0]
