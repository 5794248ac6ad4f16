"""Steps declare their order, stage and restart points (base.Step); the registry and the runner read
the declarations and name no step themselves."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest
from factories import make_ctx

from edgedistill.contracts.errors import ArtifactOverBudget, InputError, Int8OverBudget, PipelineError
from edgedistill.contracts.events import STAGE_PROGRESS_END, STAGES, PipelineEvent, stage_span
from edgedistill.workers.pipeline import runner
from edgedistill.workers.pipeline.base import Restart, Step, StepConfig
from edgedistill.workers.pipeline.context import ArtifactRecord, RunContext, RunState
from edgedistill.workers.pipeline.registry import STEPS, check_order, pipeline_order, step_class

# The order the runner hard-coded before the steps declared it.
EXPECTED_ORDER = (
    "load_teacher", "load_data", "build_student", "distill", "qat_kd", "export_onnx", "quantize_onnx",
    "export_tflite", "export_executorch", "export_c_array", "verify", "quantize_teacher", "quantize_runner_up",
    "benchmark", "report",
)  # fmt: skip


def test_the_declared_order_is_the_pipeline() -> None:
    assert pipeline_order() == EXPECTED_ORDER
    assert set(pipeline_order()) == set(STEPS)


def test_restart_points_are_declared_by_the_steps() -> None:
    points = {name: step_class(name).restart for name in STEPS}
    declared = {name: r.on for name, r in points.items() if r is not None}
    assert declared == {"build_student": ArtifactOverBudget, "qat_kd": Int8OverBudget}


def test_the_distill_step_covers_its_stage() -> None:
    from edgedistill.workers.steps.distill import step

    assert (step.PROGRESS_START, step.PROGRESS_END) == (5.0, 70.0) == stage_span("distill")
    assert stage_span(STAGES[0]) == (0.0, STAGE_PROGRESS_END[STAGES[0]])


def _step(name: str, stage: str, order: int) -> type[Step]:
    def run(self: Step, ctx: RunContext, state: RunState) -> None:
        return None

    return type(name, (Step,), {"name": name, "stage": stage, "order": order, "run": run})


def test_check_order_refuses_what_the_runner_cannot_follow() -> None:
    check_order([_step("a", "load", 1), _step("b", "load", 2), _step("c", "verify", 3)])
    with pytest.raises(ValueError, match="same order"):
        check_order([_step("a", "load", 1), _step("b", "load", 1)])
    with pytest.raises(ValueError, match="stages must follow"):
        check_order([_step("a", "verify", 1), _step("b", "load", 2)])
    with pytest.raises(ValueError, match="is not one of"):
        check_order([_step("a", "training", 1)])


def test_a_restart_names_real_state_fields() -> None:
    with pytest.raises(ValueError, match="does not have: studnet"):
        Restart(on=InputError, resets=("studnet",))
    with pytest.raises(ValueError, match="not reset"):
        Restart(on=InputError, resets=("metrics",), keep={"budget": ("x",)})


def _full_state(tmp_path: Path) -> RunState:
    path = tmp_path / "m.tflite"
    path.write_bytes(b"x")
    path.with_name(path.name + ".json").write_text("{}")
    state = RunState()
    state.teacher, state.data, state.signature = object(), object(), object()
    state.teacher_outputs = {"train": [1]}
    state.student, state.baseline_student, state.qat_model, state.export_module = object(), object(), object(), 1
    state.student_arch = {"width": 8}
    state.training = {"seconds": 1.0}
    state.metrics = {"teacher": {"a": 1}, "student_fp32": {"a": 2}, "onnx_int8": {"a": 3}}
    state.budget = {"shrink_retries": [{"attempt": 1}], "flash": 10}
    state.latency = [{"p50_ms": 1.0}]
    state.report = {"ok": True}
    state.distillation = {"method": "kd"}
    state.warnings = ["kept"]
    state.artifacts = {"tflite_int8": ArtifactRecord("tflite_int8", path, "0" * 64, 1)}
    return state


def test_the_shrink_restart_forgets_everything_from_the_student_on(tmp_path: Path) -> None:
    state = _full_state(tmp_path)
    restart = step_class("build_student").restart
    assert restart is not None
    runner._reset(state, restart)
    assert not (tmp_path / "m.tflite").exists() and not (tmp_path / "m.tflite.json").exists()
    assert state.artifacts == {} and state.student is None and state.student_arch == {}
    assert state.baseline_student is None and state.qat_model is None
    assert state.training == {} and state.latency == [] and state.report == {} and state.distillation == {}
    assert state.metrics == {"teacher": {"a": 1}}
    assert state.budget == {"shrink_retries": [{"attempt": 1}]}
    # the teacher, the data and what came from them stay
    assert state.teacher is not None and state.data is not None and state.teacher_outputs == {"train": [1]}
    assert state.warnings == ["kept"] and state.export_module == 1


def test_the_qat_restart_drops_the_exports_only(tmp_path: Path) -> None:
    state = _full_state(tmp_path)
    restart = step_class("qat_kd").restart
    assert restart is not None
    runner._reset(state, restart)
    assert not (tmp_path / "m.tflite").exists()
    assert state.artifacts == {} and state.latency == []
    assert state.metrics == {"teacher": {"a": 1}, "student_fp32": {"a": 2}}
    assert state.student is not None and state.student_arch == {"width": 8} and state.report == {"ok": True}


class _Again(PipelineError):
    pass


class _Config(StepConfig):
    round: int = 0


class _Start(Step):
    """A step no runner code names, declaring that _Again restarts the run from it."""

    name = "start"
    stage = "load"
    order = 1
    config_cls = _Config
    restart = Restart(on=_Again, resets=("report",))
    seen: ClassVar[list[int]] = []

    def run(self, ctx: RunContext, state: RunState) -> None:
        assert isinstance(self.config, _Config)
        _Start.seen.append(self.config.round)

    @classmethod
    def prepare_restart(cls, ctx: RunContext, state: RunState, exc: PipelineError, attempt: int) -> StepConfig:
        state.warnings.append(f"restart {attempt}: {exc}")
        return _Config(round=attempt)


class _Fail(Step):
    name = "fail"
    stage = "verify"
    order = 2

    def run(self, ctx: RunContext, state: RunState) -> None:
        assert state.report == {}, "the declared reset ran"
        state.report = {"rounds": list(_Start.seen)}
        if len(_Start.seen) < 3:
            raise _Again("once more")


def test_the_runner_restarts_from_whichever_step_declares_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table: dict[str, type[Step]] = {"start": _Start, "fail": _Fail}
    monkeypatch.setattr(runner, "step_class", table.__getitem__)
    _Start.seen = []
    ctx, _ = make_ctx(tmp_path, device="cpu")
    events: list[PipelineEvent] = []
    result = runner.run_pipeline(
        ctx.spec.model_copy(update={"out_dir": tmp_path / "out"}), events.append, steps=("start", "fail")
    )
    assert _Start.seen == [0, 1, 2]
    assert result.report == {"rounds": [0, 1, 2]}
    assert result.warnings == ["restart 1: once more", "restart 2: once more"]
    assert [e.stage for e in events if e.kind == "stage_started"] == ["load", "verify"] * 3


def test_an_error_nothing_restarts_on_ends_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table: dict[str, type[Step]] = {"start": _Start, "fail": _Fail}
    monkeypatch.setattr(runner, "step_class", table.__getitem__)
    _Start.seen = [0, 0]  # fail raises once more; no "start" ran before it in this run
    ctx, _ = make_ctx(tmp_path, device="cpu")
    with pytest.raises(_Again) as info:
        runner.run_pipeline(ctx.spec.model_copy(update={"out_dir": tmp_path / "out"}), steps=("fail",))
    assert info.value.stage == "verify"
