"""One short `edgedistill compress` run (2 epochs, in-process) per method family, checking that the
method's effect reaches report.json's distillation section."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from factories import digits

from edgedistill.workers import cli

ONNX_ONLY = {
    "name": "cpu-onnx-test",
    "class": "cpu",
    "targets": ["onnx_fp32", "onnx_int8"],
    "int8_scheme": "qdq_per_channel",
    "budgets": {"max_model_bytes": 10_000_000},
    "threads": 1,
}
FAST = {"benchmark_runs": 3, "benchmark_warmup": 0, "calibration_samples": 32, "batch_size": 64, "device": "cpu"}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, digits_teacher_files: dict[str, Path]) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli-methods")
    x, y = digits()
    np.savez(root / "a.npz", x=x[:400], y=y[:400])
    np.savez(root / "b.npz", x=x[400:800], y=y[400:800])
    profile = root / "cpu-onnx.yaml"
    profile.write_text(yaml.safe_dump(ONNX_ONLY))
    return {**digits_teacher_files, "a": root / "a.npz", "b": root / "b.npz", "profile": profile}


def _compress(
    tmp_path: Path, teacher: Path, profile: str | Path, *extra: str, options: dict[str, Any]
) -> dict[str, Any]:
    opts = tmp_path / f"options-{len(list(tmp_path.iterdir()))}.yaml"
    opts.write_text(yaml.safe_dump({**FAST, **options}))
    out = tmp_path / f"out-{len(list(tmp_path.iterdir()))}"
    argv = [str(teacher), "--profile", str(profile), "--out", str(out), "--epochs", "2", "--options", str(opts),
            "--quiet", *extra]  # fmt: skip
    assert cli.main(argv) == 0
    return json.loads((out / "report.json").read_text()) | {"_out": str(out)}


@pytest.mark.parametrize(
    ("method", "fmt", "extra_terms"),
    [("fitnet", "onnx", ["fitnet"]), ("at", "torchscript", ["at"]), ("relational", "pt2", ["rkd", "sp"])],
)
def test_feature_and_relational_methods(
    tmp_path: Path, files: dict[str, Path], method: str, fmt: str, extra_terms: list[str]
) -> None:
    report = _compress(tmp_path, files[fmt], files["profile"], "--data", str(files["a"]), "--method", method,
                       options={})  # fmt: skip
    d = report["distillation"]
    assert d["method"] == method and [t["key"] for t in d["loss_terms"]][2:] == extra_terms
    assert d["features"]["pairs"] and d["features"]["cache"]["bytes"] > 0
    assert report["training"]["method"] == method


def test_auto_picks_fitnets_for_a_small_image_set_and_says_why(tmp_path: Path, files: dict[str, Path]) -> None:
    report = _compress(tmp_path, files["onnx"], files["profile"], "--data", str(files["a"]), "--method", "auto",
                       options={})  # fmt: skip
    d = report["distillation"]
    assert d["requested"] == "auto" and d["method"] == "fitnet" and "per class" in d["why"]
    assert [t["key"] for t in d["loss_terms"]] == ["kd", "ce", "fitnet"]


def test_data_free_without_any_data(tmp_path: Path, files: dict[str, Path]) -> None:
    df = {"input_range": [0, 1], "steps_per_epoch": 2, "student_steps": 1, "synthetic_samples": 96}
    report = _compress(tmp_path, files["pt2"], files["profile"], "--method", "data_free", options={"data_free": df})
    d = report["distillation"]
    assert d["method"] == "data_free" and d["data_free"]["synthetic_samples"] == 96
    assert "unavailable" in d["data_free"]["real_data_note"]
    assert report["data"]["synthetic"] and report["metrics"]["onnx_int8"]["top1_agreement"] >= 0


@pytest.mark.slow  # a whole QAT-KD pipeline run (~11 s CPU)
def test_qat_kd_reports_its_figures_and_exports_int8(tmp_path: Path, files: dict[str, Path]) -> None:
    report = _compress(tmp_path, files["onnx"], "cpu-x86", "--data", str(files["a"]), "--method", "qat_kd",
                       options={"qat_epochs": 1})  # fmt: skip
    qat = report["distillation"]["qat"]
    assert qat["done"] and qat["why"] == "method qat_kd"
    assert set(qat["ptq_vs_qat_kd"]) >= {"student_fp32", "onnx_int8", "tflite_int8"}
    assert "asked for explicitly" in qat["ptq_vs_qat_kd_note"]
    assert Path(report["_out"], "student_int8.tflite").is_file()
    meta = json.loads(Path(report["_out"], "student_int8.tflite.json").read_text())
    assert meta["quantization"]["calibration"].startswith("quantization-aware training")


def test_lifelong_continues_an_earlier_run(tmp_path: Path, files: dict[str, Path]) -> None:
    first = _compress(tmp_path, files["onnx"], files["profile"], "--data", str(files["a"]), options={})
    earlier = Path(first["_out"], "student_fp32.onnx")
    report = _compress(tmp_path, files["onnx"], files["profile"], "--data", str(files["b"]), "--init-from",
                       str(earlier), "--old-data", str(files["a"]), "--method", "lifelong", options={})  # fmt: skip
    life = report["distillation"]["lifelong"]
    assert life["old_data"]["samples"] == 400 and life["new_data"]["samples"] > 0
    for part in ("old_data", "new_data"):
        assert {"before", "after"} <= set(life[part]) and "accuracy" in life[part]["after"]
    assert 0 <= life["old_data"]["agreement_with_earlier_student"] <= 1
    assert [t["key"] for t in report["distillation"]["loss_terms"]] == ["kd", "ce", "lwf"]
    assert report["student"]["width"] == first["student"]["width"]
    assert "continued from the earlier student" in report["student"]["chosen_because"]


def test_nas_lists_its_candidates(tmp_path: Path, files: dict[str, Path]) -> None:
    options = {"nas_time_budget_s": 4, "nas_max_candidates": 3, "nas_proxy_epochs": 1, "student": {"depth": 2}}
    report = _compress(tmp_path, files["onnx"], files["profile"], "--data", str(files["a"]), "--method", "nas",
                       options=options)  # fmt: skip
    nas = report["distillation"]["nas"]
    tried = [c for c in nas["candidates"] if c["proxy_val_fidelity"] is not None]
    assert tried and all(c["latency_source"] == "measured" for c in tried)
    assert sum(c["chosen"] for c in nas["candidates"]) == 1
    assert report["student"]["width"] == next(c for c in nas["candidates"] if c["chosen"])["width"]
