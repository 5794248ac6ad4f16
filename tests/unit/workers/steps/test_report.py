from __future__ import annotations

import json
from typing import Any

import pytest

from workers.steps.benchmark import Benchmark
from workers.steps.report import SCHEMA_VERSION, Report
from workers.steps.verify import Verify


def _full_run(exported: Any, run_factory: Any, profile: str, case: str) -> tuple[Any, Any]:
    _, state = exported(profile, case)
    run = run_factory(profile, benchmark_runs=3, benchmark_warmup=1)
    state.report = {"timings": {"distill": 12.5}}
    Verify().run(run.ctx, state)
    Benchmark().run(run.ctx, state)
    Report().run(run.ctx, state)
    return run, state


def test_report_json_has_the_headline_ratios_from_the_measurements(exported: Any, run_factory: Any) -> None:
    _run, state = _full_run(exported, run_factory, "mcu-cortex-m4", "digits")
    report = json.loads(state.artifacts["report"].path.read_text())
    assert report == state.report
    assert report["schema_version"] == SCHEMA_VERSION
    assert list(report)[:2] == ["schema_version", "headline"]

    h = report["headline"]
    teacher = state.teacher
    tfl = state.artifacts["tflite_int8_full"]
    p50 = {m["artifact_kind"]: m["p50_ms"] for m in state.latency if m.get("source") == "host"}
    assert h["primary_artifact"] == "tflite_int8_full"
    assert h["params_x"] == pytest.approx(teacher.param_count / state.student_arch["params"])
    assert h["bytes_x"] == pytest.approx(teacher.file_bytes / tfl.size_bytes)
    assert h["latency_x"] == pytest.approx(p50["teacher"] / p50["tflite_int8_full"])
    acc = state.metrics["tflite_int8_full"]["accuracy"]
    assert h["quality_metric"] == "accuracy" and h["student_quality"] == acc
    assert h["quality_kept_pct"] == pytest.approx(100 * acc / state.metrics["teacher"]["accuracy"])
    assert h["estimated_device_latency_ms"] == pytest.approx(30_000 * 2.0 / 80e6 * 1e3)

    assert report["teacher"]["params"] == teacher.param_count and report["teacher"]["macs"] == 50_000
    assert report["sizes"]["artifact_bytes"]["tflite_int8_full"] == tfl.size_bytes
    assert report["artifacts"]["c_source"]["sha256"] == state.artifacts["c_source"].sha256
    assert report["timings"] == {"training_seconds": 1.5, "distill": 12.5}
    assert report["budget"]["ram"]["measured"] is True
    assert report["profile"]["name"] == "mcu-cortex-m4"


def test_summary_puts_the_ratios_first(exported: Any, run_factory: Any) -> None:
    run, state = _full_run(exported, run_factory, "mobile-arm64", "vector")
    text = state.artifacts["summary"].path.read_text()
    h = state.report["headline"]
    head = text.split("## ")[0]
    assert f"{h['params_x']:,.1f}x fewer" in head
    assert f"{h['bytes_x']:,.1f}x smaller" in head
    assert f"{h['latency_x']:,.1f}x faster" in head
    assert f"{h['quality_kept_pct']:.1f}%" in head and "R² on the labels" in head
    for kind in ("onnx_fp32", "onnx_int8", "tflite_int8", "probe"):
        assert state.artifacts[kind].path.name in text
    assert [e.data["kind"] for e in run.of_kind("artifact")][-2:] == ["report", "summary"]


def test_warnings_reach_the_report(exported: Any, run_factory: Any) -> None:
    _, state = exported("cpu-x86", "digits")
    run = run_factory("cpu-x86")
    state.warnings.append("the smallest student that fits has 9 parameters")
    Report().run(run.ctx, state)
    assert state.report["warnings"] == ["the smallest student that fits has 9 parameters"]
    assert "- the smallest student that fits has 9 parameters" in state.artifacts["summary"].path.read_text()
    # Without benchmark measurements the latency ratio is unknown, not invented.
    assert state.report["headline"]["latency_x"] is None
