"""options.student.family best: the designed and the derived student trained in one job, the winner
kept by the profile's objective on the validation split, the other measured as a candidate row."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from torch import nn

from edgedistill.contracts import report as contract
from edgedistill.contracts.profiles import resolve_profile
from edgedistill.contracts.spec import JobOptions, PipelineSpec
from tests.unit.workers.steps.test_derived import _data, _onnx_teacher, trained  # noqa: F401 (fixture)


def _spec(tmp_path: Path, teacher: Path, profile: str, **options: Any) -> PipelineSpec:
    x, y = _data(600, 4)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    opts = {"epochs": 3, "student": {"family": "best"}, "benchmark_runs": 3, "benchmark_warmup": 0, **options}
    return PipelineSpec(
        teacher_path=teacher, data_path=tmp_path / "data.npz", profile=resolve_profile(profile),
        options=JobOptions.model_validate(opts), out_dir=tmp_path / "out",
    )  # fmt: skip


@pytest.mark.slow  # two students trained through the whole pipeline: seconds of CPU
def test_a_best_job_trains_both_families_and_keeps_the_one_that_meets_the_objective(
    trained: nn.Module,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    from edgedistill.workers.pipeline.runner import run_pipeline

    teacher = _onnx_teacher(trained, tmp_path / "teacher.onnx")
    result = run_pipeline(_spec(tmp_path, teacher, "mcu-cortex-m4", quality_target=0.5))
    report = result.report
    race = report["student"]["family_race"]
    rows = {r["family"]: r for r in race["rows"]}
    assert set(rows) == {"designed", "derived"} and race["objective_key"] == "est_int8_bytes"
    assert all(r["epochs_run"] >= 1 and 0 <= r["val_metric"] <= 1 for r in rows.values())
    # the rule: of those meeting the target the smaller estimated file, else the better one
    met = [r for r in rows.values() if r["met"]]
    want = min(met, key=lambda r: r["cost"]) if met else max(rows.values(), key=lambda r: r["val_metric"])
    assert race["chosen"] == want["family"] and rows[want["family"]]["chosen"]
    kept_family = "derived" if report["student"]["family"] == "derived" else "designed"
    assert kept_family == race["chosen"]
    lost = next(r for r in rows.values() if not r["chosen"])
    candidates = contract.Candidates.model_validate(report["candidates"])
    up = next(r for r in candidates.rows if r.name == "runner_up")
    assert up.label.endswith("not kept") and up.quality is not None and 0 <= up.quality <= 1
    assert up.bytes is not None and up.bytes > 0 and up.p50_ms is not None and up.p50_ms > 0
    assert up.params == lost["params"] and "not kept" in (up.note or "")
    assert "options.student.family best" in candidates.why and race["chosen_because"] in candidates.why
    # the kept student is the one the device files were made from: its parameter count is the file's
    sess = ort.InferenceSession(str(result.artifacts["onnx_fp32"].path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["image"]
    assert report["student"]["params"] == rows[race["chosen"]]["params"]
    summary = (result.artifacts["summary"].path).read_text()
    assert "not kept" in summary


def test_a_best_job_without_a_derived_student_says_why(tmp_path: Path) -> None:
    from edgedistill.workers.steps.family_race import plan_rival

    opts = JobOptions.model_validate({"student": {"family": "best"}})
    # an int8 TFLite file: only float TFLite graphs convert to torch
    teacher = SimpleNamespace(format="tflite", path=tmp_path / "t.tflite", quantized_io={"x": (0.0078, 0)})
    state = SimpleNamespace(
        data=SimpleNamespace(synthetic=False, inputs_of=lambda _s: {"x": np.zeros((4, 3), np.float32)}),
        teacher=teacher, signature=None, candidates={}, runner_up=None,
    )  # fmt: skip
    events: list[tuple[str, Any]] = []
    ctx = SimpleNamespace(
        spec=SimpleNamespace(options=opts, profile=resolve_profile("cpu-x86")),
        emit=lambda kind, data: events.append((kind, data)),
    )
    plan_rival(ctx, state)  # type: ignore[arg-type]
    assert state.runner_up is None
    assert state.candidates["runner_up"]["reason"].startswith("no derived student:")
    assert "int8-quantized TFLite teacher" in state.candidates["runner_up"]["reason"]


def test_the_runner_up_row_says_why_when_there_is_no_rival() -> None:
    from edgedistill.workers.steps.candidates import runner_up_row

    budgets = resolve_profile("cpu-x86").budgets
    row = runner_up_row({"reason": "no derived student: x"}, {}, "accuracy", 0.9, 0.97, budgets)
    assert row["quality"] is None and row["note"] == "not evaluated: no derived student: x"
    measured = {
        "arch": {"family": "derived", "params": 10, "macs": 99, "derived": {"pruning_ratio": 0.5}},
        "metrics": {"accuracy": 0.8}, "bytes": 2_000_000_000, "p50_ms": 0.1,
    }  # fmt: skip
    race = {"chosen_because": "only the designed student kept it"}
    row = runner_up_row(measured, race, "accuracy", 0.9, 0.97, budgets)
    assert row["label"] == "derived from the teacher, 50 % of channels pruned, not kept"
    assert row["meets_target"] is False and row["kept"] == pytest.approx(0.8 / 0.9)
    assert row["over_budget"] and row["over_budget"][0].startswith("flash")
    assert row["note"] == "trained in this job, not kept: only the designed student kept it"
