"""End to end: `python -m edgedistill.workers.cli compress`-style run on the digits teacher for the Cortex-M4 profile,
in a subprocess as a user would run it; every artifact appears and the report's figures are sane."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.slow  # the whole CLI pipeline in a subprocess, 40 epochs (~4 min CPU)
@pytest.mark.timeout(600)
def test_compress_digits_for_cortex_m4(digits_teacher_files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2"}
    proc = subprocess.run(
        [
            sys.executable, "-m", "edgedistill.workers.cli", str(digits_teacher_files["onnx"]),
            "--data", str(digits_teacher_files["npz"]), "--profile", "mcu-cortex-m4", "--out", str(out),
            "--epochs", "40", "--seed", "1", "--device", "cpu",
        ],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Test split" in proc.stdout and "done in" in proc.stdout

    for name in (
        "student_fp32.onnx",
        "student_int8.onnx",
        "student_int8_full.tflite",
        "student_model.cc",
        "student_model.h",
        "report.json",
    ):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]

    report = json.loads((out / "report.json").read_text())
    metrics = report["metrics"]
    assert metrics["student_fp32"]["accuracy"] > 0.8  # 10 classes: chance is 0.1
    assert metrics["student_fp32"]["top1_agreement"] > 0.8
    for variant in ("onnx_int8", "tflite_int8_full", "tflm"):
        assert metrics[variant]["accuracy"] > 0.8, variant
        assert abs(metrics[variant]["drop_vs_student_fp32_pp"]) <= 3.0, variant
    student = report["student"]
    assert student["family"] == "ds_cnn2d"
    # Sizing starts at <= teacher/8 and may grow once to <= teacher/2 when the first size plateaus short.
    assert report["teacher"]["params"] >= 2 * student["params"]
    budget = report["budget"]
    assert budget["flash"]["fits"] and budget["ram"]["fits"] and budget["macs"]["fits"]
    assert report["training"]["epochs_run"] >= 1 and report["training"]["samples_per_second"] > 0
    assert (out / "student_int8_full.tflite").stat().st_size <= 1024 * 1024
