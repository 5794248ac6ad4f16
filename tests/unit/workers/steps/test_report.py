from __future__ import annotations

import json
from typing import Any

import pytest

from edgedistill.contracts.report import Report as ReportModel
from edgedistill.contracts.report import read_report
from edgedistill.workers.steps.benchmark import Benchmark
from edgedistill.workers.steps.report import SCHEMA_VERSION, Report, render_summary
from edgedistill.workers.steps.verify import Verify


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
    # report.json is the typed Report's JSON: it validates strictly and comes back key for key
    typed = ReportModel.model_validate(report)
    assert typed.as_json() == report and read_report(report).as_json() == report
    assert typed.quality is not None and typed.quality.variant == "tflite_int8_full"
    assert list(report)[:2] == ["schema_version", "headline"]

    h = report["headline"]
    teacher = state.teacher
    tfl = state.artifacts["tflite_int8_full"]
    p50 = {m["artifact_kind"]: m["p50_ms"] for m in state.latency if m.get("source") == "host"}
    assert h["primary_artifact"] == "tflite_int8_full"
    assert h["params_x"] == pytest.approx(teacher.param_count / state.student_arch["params"])
    assert h["bytes_x"] == pytest.approx(teacher.file_bytes / tfl.size_bytes)
    # The torch teacher is compared with the fp32 student in torch (same runtime and threads); the
    # device artifact's own ratio runs in LiteRT, so it is labelled cross-runtime.
    assert h["latency_x"] == pytest.approx(p50["teacher"] / p50["student_torch"])
    assert h["latency_vs"] == "student_torch" and h["latency_same_runtime"] is True
    assert h["latency_basis"].startswith("same runtime") and "torch" in h["latency_basis"]
    assert h["latency_x_device_artifact"] == pytest.approx(p50["teacher"] / p50["tflite_int8_full"])
    assert h["latency_basis_device_artifact"].startswith("cross-runtime")
    assert report["latency"]["same_runtime_as_teacher"] == {
        "onnx_fp32": False, "onnx_int8": False, "tflite_int8_full": False, "student_torch": True,
    }  # fmt: skip
    acc = state.metrics["tflite_int8_full"]["accuracy"]
    assert h["quality_metric"] == "accuracy" and h["student_quality"] == acc
    assert h["quality_kept_pct"] == pytest.approx(100 * acc / state.metrics["teacher"]["accuracy"])
    q = report["quality"]
    kept = acc / state.metrics["teacher"]["accuracy"]
    assert q["metric"] == "accuracy" and q["variant"] == "tflite_int8_full" and q["target"] == 0.97
    assert q["kept"] == pytest.approx(kept) and q["met"] is (kept >= 0.97) and h["quality_met"] is q["met"]
    assert q["samples"] == state.metrics["tflite_int8_full"]["samples"] and "problem" in q
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
    x = h["latency_x"]
    assert (f"{x:,.1f}x faster" if x >= 1 else f"{1 / x:,.1f}x slower") in head and h["latency_basis"] in head
    # The verdict comes first, with the sample count it rests on (the vector case's test split is small).
    q = state.report["quality"]
    first = text.splitlines()[2]
    assert first.startswith("**Quality") and ("BELOW TARGET" in first) is (not q["met"])
    assert f"on {q['samples']} test samples" in first and q["samples"] < 200 and "small test split" in first
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


def test_a_student_below_the_quality_target_is_reported_as_such(exported: Any, run_factory: Any) -> None:
    _, state = exported("cpu-x86", "digits")
    run = run_factory("cpu-x86", quality_target=1.5)  # 150 % of the teacher: unreachable
    Verify().run(run.ctx, state)
    Report().run(run.ctx, state)
    q = state.report["quality"]
    assert q["met"] is False and q["target"] == 1.5 and q["kept"] is not None and q["kept"] < 1.5
    text = state.artifacts["summary"].path.read_text()
    primary = state.report["headline"]["primary_artifact"]
    assert text.splitlines()[2].startswith(f"**Quality: BELOW TARGET.** {primary} keeps")
    assert "target 150.0 %" in text.splitlines()[2]


def test_summary_md_is_rendered_from_the_typed_report(exported: Any, run_factory: Any) -> None:
    _run, state = _full_run(exported, run_factory, "cpu-x86", "digits")
    text = state.artifacts["summary"].path.read_text()
    assert text.startswith(render_summary(read_report(state.report)))  # + the how-to-run section
    # an old report (no schema_version, none of the later sections) still renders
    old = {k: v for k, v in state.report.items() if k not in ("schema_version", "quality", "outputs", "sizing")}
    old_text = render_summary(read_report(old))
    assert "## Accuracy on the test split" in old_text and "**Quality" not in old_text
