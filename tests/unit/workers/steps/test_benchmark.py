from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from edgedistill.workers.steps.benchmark import Benchmark, estimated_mcu_latency, latency_stats, time_calls


def test_latency_stats_are_percentiles_of_the_samples_in_ms() -> None:
    ns = [1_000_000 * v for v in range(1, 101)]  # 1..100 ms
    s = latency_stats(ns)
    ms = np.arange(1, 101, dtype=np.float64)
    assert s["p50_ms"] == pytest.approx(np.percentile(ms, 50))
    assert s["p90_ms"] == pytest.approx(np.percentile(ms, 90))
    assert s["p99_ms"] == pytest.approx(np.percentile(ms, 99))
    assert s["mean_ms"] == pytest.approx(50.5) and s["std_ms"] == pytest.approx(ms.std())


def test_time_calls_warms_up_then_times_each_run() -> None:
    calls: list[int] = []
    samples = time_calls(lambda: calls.append(1), warmup=3, runs=7)
    assert len(calls) == 10 and len(samples) == 7
    assert all(isinstance(v, int) and v >= 0 for v in samples)


def test_mcu_estimate_formula() -> None:
    est = estimated_mcu_latency(2_000_000, 2.0, 80_000_000)
    assert est["estimated_ms"] == pytest.approx(50.0)  # 2e6 MACs * 2 cycles / 80 MHz
    assert est["source"] == "estimated" and "cycles_per_mac" in est["formula"]


def test_host_measurements_for_every_artifact_and_the_teacher(exported: Any, run_factory: Any) -> None:
    _, state = exported("mobile-arm64", "vector")
    run = run_factory("mobile-arm64", benchmark_runs=7, benchmark_warmup=2)
    state.teacher = dataclasses.replace(state.teacher, calls=[])
    Benchmark().run(run.ctx, state)

    kinds = [m["artifact_kind"] for m in state.latency]
    # A torch teacher gets the fp32 student timed in torch too: the same-runtime comparison.
    assert kinds == ["onnx_fp32", "onnx_int8", "tflite_int8", "teacher", "student_torch"]
    for m in state.latency:
        assert m["source"] == "host" and m["count"] == 7 and m["threads"] == 4
        assert 0 < m["p50_ms"] <= m["p90_ms"] <= m["p99_ms"]
    by_kind = {m["artifact_kind"]: m for m in state.latency}
    assert by_kind["onnx_int8"]["runtime"] == "onnxruntime"
    assert by_kind["tflite_int8"]["runtime"] == "ai-edge-litert"
    assert by_kind["teacher"]["runtime"] == "torch" and by_kind["student_torch"]["runtime"] == "torch"
    assert state.teacher.calls == [1] * 9  # the torch teacher ran batch 1: 2 warm-up + 7 timed
    events = run.of_kind("measurement")
    assert [e.data for e in events] == state.latency


def test_onnx_teacher_is_timed_in_onnxruntime(exported: Any, run_factory: Any, tmp_path: Path) -> None:
    _, state = exported("mobile-arm64", "vector")
    path = tmp_path / "teacher.onnx"
    torch.onnx.export(state.teacher.module, (torch.zeros(1, 12),), str(path), dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "n"}})  # fmt: skip
    state.teacher = dataclasses.replace(state.teacher, format="onnx", path=path, calls=[])
    run = run_factory("mobile-arm64", benchmark_runs=3, benchmark_warmup=0)
    Benchmark().run(run.ctx, state)
    teacher = next(m for m in state.latency if m["artifact_kind"] == "teacher")
    assert teacher["runtime"] == "onnxruntime" and teacher["count"] == 3
    assert "student_torch" not in {m["artifact_kind"] for m in state.latency}  # its ONNX files compare
    assert state.teacher.calls == []  # not through teacher.predict


def test_mcu_gets_an_estimate_and_a_warning_over_the_latency_target(
    exported: Any, run_factory: Any, make_profile: Any
) -> None:
    _, state = exported("mcu-cortex-m4", "digits")
    # 30,000 MACs x 100 cycles / 1 MHz = 3 s, far over a 100 ms target.
    prof = make_profile("mcu-cortex-m4", clock_hz=1_000_000, cycles_per_mac=100.0, budgets={"latency_target_ms": 100})
    run = run_factory(prof, benchmark_runs=2, benchmark_warmup=0)
    Benchmark().run(run.ctx, state)
    est = [m for m in state.latency if m.get("source") == "estimated"]
    assert len(est) == 1 and est[0]["estimated_ms"] == pytest.approx(3000.0)
    assert est[0]["artifact_kind"] == "tflite_int8_full"
    assert all(e.data["source"] == "host" for e in run.of_kind("measurement"))  # estimates are not measurements
    assert any("3000.0 ms is over the 100.0 ms target" in w for w in state.warnings)


@pytest.mark.slow  # exports the torch teacher and times it (~4 s CPU)
def test_a_torch_teacher_is_also_timed_exported_to_onnx(exported: Any, run_factory: Any) -> None:
    _, state = exported("cpu-x86", "vector")
    teacher = dataclasses.replace(state.teacher, calls=[])
    teacher._module = teacher.module  # type: ignore[attr-defined]  # as the real torch teachers hold it
    state.teacher = teacher
    run = run_factory("cpu-x86", benchmark_runs=3, benchmark_warmup=0)
    Benchmark().run(run.ctx, state)
    by_kind = {m["artifact_kind"]: m for m in state.latency}
    assert by_kind["teacher_onnx"]["runtime"] == "onnxruntime" and by_kind["teacher_onnx"]["count"] == 3
    assert by_kind["teacher_onnx"]["threads"] == by_kind["onnx_int8"]["threads"]
    assert not list(run.ctx.work_dir.glob("**/teacher.onnx"))  # a temporary file, not an artifact
