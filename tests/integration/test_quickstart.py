"""`edgedistill quickstart` as a newcomer runs it: sample teacher + data, its own embedded server, one
job end to end, artifacts downloaded with their facts, the server stopped again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from stack import REPO

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]


def test_quickstart_runs_a_job_end_to_end(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEDISTILL_")}
    env.update(PYTHONPATH=str(REPO), COLUMNS="200", OMP_NUM_THREADS="2")
    # Its own session: on a timeout the whole group (quickstart, serve, its API, worker, Redis) is killed.
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgedistill.service.cli", "quickstart", "--out", "q", "--epochs", "5"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=780)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    out = tmp_path / "q"
    log = (out / "serve.log").read_text() if (out / "serve.log").exists() else ""
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:] + log[-3000:]
    artifacts = out / "artifacts"
    assert f"artifacts: {artifacts}" in stdout
    assert "Test split" in stdout and "fewer parameters" in stdout  # compress's summary
    assert (out / "teacher.onnx").stat().st_size > 10_000 and (out / "digits.npz").is_file()
    for name in ("student_int8_full.tflite", "student_model.cc", "student_model.h", "report.json", "summary.md"):
        assert (artifacts / name).stat().st_size > 0, name
    assert (artifacts / "student_int8_full.tflite.json").is_file()
    assert "## How to run" in (artifacts / "summary.md").read_text()
    assert (tmp_path / ".edgedistill").is_dir()  # the embedded default data folder, where serve keeps the job
    assert "stopped." in (out / "serve.log").read_text()
