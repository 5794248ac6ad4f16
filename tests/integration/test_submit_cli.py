"""`edgedistill submit` in a subprocess against the real stack: HTTP errors as one line with the fix,
`--wait --download` ends with compress's summary and writes compress's metadata sidecars, `--json`
gives machines the job, report and artifacts, `--require-quality` exits non-zero for a student below
its quality target."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import LiveService
from stack import REPO

from edgedistill.service.cli_errors import EXIT_BELOW_QUALITY, EXIT_OK, EXIT_REFUSED

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

FAST = ["--set", "epochs=8", "--set", "patience=8", "--set", "benchmark_runs=5", "--set", "benchmark_warmup=1",
        "--set", "calibration_samples=64"]  # fmt: skip


def submit(live: LiveService, *args: str, key: str | None = None, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEDISTILL_")}
    env.update(PYTHONPATH=str(REPO), COLUMNS="200", EDGEDISTILL_URL=live.url, EDGEDISTILL_API_KEY=key or live.key_a)
    return subprocess.run(
        [sys.executable, "-m", "edgedistill.service.cli", "submit", *args], cwd=cwd, env=env, capture_output=True,
        text=True, timeout=540,
    )  # fmt: skip


def error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_http_errors_are_one_line_with_the_fix(live: LiveService, digits_teacher_files: dict[str, Path],
                                               tmp_path: Path) -> None:  # fmt: skip
    teacher, data = str(digits_teacher_files["onnx"]), str(digits_teacher_files["npz"])
    proc = submit(live, teacher, "--data", data, "--profile", "cpu-x86", key="edk_wrong", cwd=tmp_path)
    assert proc.returncode == EXIT_REFUSED
    line = error_line(proc)
    assert "HTTP 401" in line and "--api-key" in line and "admin create-key" in line
    proc = submit(live, "0" * 32, "--data", data, "--profile", "cpu-x86", cwd=tmp_path)
    assert proc.returncode == EXIT_REFUSED
    assert "HTTP 404" in error_line(proc)
    proc = submit(live, teacher, "--data", data, "--profile", "no-such-profile", cwd=tmp_path)
    assert proc.returncode == EXIT_REFUSED
    assert "no-such-profile" in error_line(proc)


@pytest.mark.slow
def test_wait_download_prints_the_summary_and_writes_the_sidecars(
    live: LiveService, digits_teacher_files: dict[str, Path], tmp_path: Path
) -> None:
    teacher, data = str(digits_teacher_files["onnx"]), str(digits_teacher_files["npz"])
    out = tmp_path / "out"
    proc = submit(live, teacher, "--data", data, "--profile", "cpu-x86", *FAST, "--download", str(out), cwd=tmp_path)
    assert proc.returncode == EXIT_OK, proc.stderr[-3000:]
    text = proc.stdout
    # compress's summary (service/summary_view.py): metrics table, artifacts table, headline, done line.
    assert "Test split" in text and "Artifacts" in text and "fewer parameters" in text
    assert "done in " in text and str(out) in text
    assert not text.lstrip().startswith("{")  # a summary for people, not the JSON dump
    files = {p.name for p in out.iterdir()}
    assert {"report.json", "summary.md"} <= files
    with httpx.Client(base_url=f"{live.url}/api/v1", headers={"Authorization": f"Bearer {live.key_a}"}) as http:
        job_id = proc.stderr.split("job ", 1)[1].split()[0]
        artifacts = http.get(f"/jobs/{job_id}/artifacts").json()
    for art in artifacts:
        assert art["filename"] in text  # every artifact is in the summary table
        sidecar = out / f"{art['filename']}.json"
        if art["kind"] in {"report", "summary"}:
            assert not sidecar.exists()  # compress writes none for these either
            continue
        assert json.loads(sidecar.read_text()) == art["metadata"]
        assert art["metadata"]["sha256"] == art["sha256"]


@pytest.mark.slow
def test_json_is_for_machines(live: LiveService, digits_teacher_files: dict[str, Path], tmp_path: Path) -> None:
    teacher, data = str(digits_teacher_files["onnx"]), str(digits_teacher_files["npz"])
    proc = submit(live, teacher, "--data", data, "--profile", "cpu-x86", *FAST, "--wait", "--json", cwd=tmp_path)
    assert proc.returncode == EXIT_OK, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["job"]["status"] == "succeeded"
    assert doc["report"]["headline"]["primary_artifact"]
    assert {a["kind"] for a in doc["artifacts"]} >= {"onnx_fp32", "report", "summary"}


def test_require_quality_exits_non_zero_for_a_one_epoch_student(
    live: LiveService, digits_teacher_files: dict[str, Path], tmp_path: Path
) -> None:
    """One epoch of distillation cannot keep 97 % of a trained teacher's accuracy: the job succeeds,
    its JSON says quality.met false, the summary warns and --require-quality exits 6."""
    teacher, data = str(digits_teacher_files["onnx"]), str(digits_teacher_files["npz"])
    # teacher_int8 off: on cpu-x86 the teacher's own int8 file would meet the target in the student's place
    one_epoch = ["--set", "epochs=1", *FAST[2:], "--set", "qat=never", "--set", "teacher_int8=false"]
    proc = submit(live, teacher, "--data", data, "--profile", "cpu-x86", *one_epoch, "--require-quality", cwd=tmp_path)
    assert proc.returncode == EXIT_BELOW_QUALITY, proc.stderr[-3000:]
    assert "warning: quality below target:" in proc.stdout and "; target 97.0 %)" in proc.stdout
    assert "--require-quality" in error_line(proc)
    job_id = proc.stderr.split("job ", 1)[1].split()[0]
    with httpx.Client(base_url=f"{live.url}/api/v1", headers={"Authorization": f"Bearer {live.key_a}"}) as http:
        job = http.get(f"/jobs/{job_id}").json()
        report = http.get(f"/jobs/{job_id}/report").json()
    q = job["quality"]
    assert job["status"] == "succeeded" and q["met"] is False and q["target"] == 0.97
    assert q["kept"] < 0.97 and q["variant"] == report["headline"]["primary_artifact"]
    assert report["quality"]["met"] is False and report["headline"]["quality_met"] is False


def test_a_student_below_target_hands_the_cpu_the_teacher_int8(
    live: LiveService, digits_teacher_files: dict[str, Path], tmp_path: Path
) -> None:
    """The same one-epoch student with the teacher int8 candidate on: the job gives a CPU the teacher's own
    int8 file, which keeps the target, says why, and --require-quality passes; the file is downloadable."""
    teacher, data = str(digits_teacher_files["onnx"]), str(digits_teacher_files["npz"])
    one_epoch = ["--set", "epochs=1", *FAST[2:], "--set", "qat=never"]
    proc = submit(live, teacher, "--data", data, "--profile", "cpu-x86", *one_epoch, "--require-quality", "--json",
                  cwd=tmp_path)  # fmt: skip
    assert proc.returncode == EXIT_OK, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    report = doc["report"]
    assert report["headline"]["primary_artifact"] == "teacher_int8" and report["quality"]["met"] is True
    assert report["headline"]["params_x"] == 1.0
    rows = {r["name"]: r for r in report["candidates"]["rows"]}
    assert rows["teacher_int8"]["chosen"] and rows["student"]["meets_target"] is False
    assert "no student artifact does" in report["candidates"]["why"]
    assert "teacher_int8" in {a["kind"] for a in doc["artifacts"]}
