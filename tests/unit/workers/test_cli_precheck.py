"""`edgedistill compress` checks the teacher's signature against the data before anything runs:
one line naming each mismatch, exit status 1, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from signature_models import token_classifier_onnx

from edgedistill.workers import cli

REPO = Path(__file__).resolve().parents[3]


def _files(tmp_path: Path, **arrays: np.ndarray) -> tuple[Path, Path]:
    teacher = tmp_path / "tokens.onnx"
    teacher.write_bytes(token_classifier_onnx(seq=16))
    data = tmp_path / "d.npz"
    np.savez(data, **arrays)  # type: ignore[arg-type]
    return teacher, data


def test_mismatching_data_is_one_line_and_exit_1(tmp_path: Path) -> None:
    teacher, data = _files(tmp_path, input_ids=np.zeros((20, 12), np.int64), mask=np.ones((20, 16), np.int64))
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "edgedistill.service.cli", "compress", str(teacher), "--data", str(data),
         "--profile", "cpu-x86", "--out", str(out)],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "input 'input_ids' axis 1 is 16 but data 'input_ids' has 12" in lines[0]
    assert "input 'attention_mask'" in lines[0] and "(found: input_ids, mask)" in lines[0]
    assert not out.exists()


def test_fitting_data_and_options_pass_the_precheck(tmp_path: Path) -> None:
    teacher, data = _files(tmp_path, input_ids=np.zeros((20, 16), np.int64), attention_mask=np.ones((20, 16), np.int64))
    args = cli.build_parser().parse_args(
        [str(teacher), "--data", str(data), "--profile", "cpu-x86", "--out", str(tmp_path / "o")]
    )
    assert cli.precheck(cli.build_spec(args)) is None
    args = cli.build_parser().parse_args(
        [str(teacher), "--data", str(data), "--profile", "cpu-x86", "--out", str(tmp_path / "o"), "--method", "sp"]
    )
    problem = cli.precheck(cli.build_spec(args))
    assert problem is not None and "method sp supports teachers with one input and one output only" in problem
