"""The runner: atomic output folder, stage events, error wrapping, cancellation and the shrink-and-retry
loop after an over-budget artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from factories import custom_profile, make_ctx

from edgedistill.contracts.errors import ArtifactOverBudget, BudgetError, Cancelled, InputError, PipelineError
from edgedistill.contracts.events import PipelineEvent
from edgedistill.contracts.spec import PipelineSpec
from edgedistill.workers.pipeline import runner
from edgedistill.workers.pipeline.base import Step
from edgedistill.workers.pipeline.context import ArtifactRecord, RunContext, RunState
from edgedistill.workers.pipeline.registry import step_class
from edgedistill.workers.steps.build_student import MAX_SHRINK_RETRIES


class _Write(Step):
    """Writes one artifact file into the work folder."""

    name = "write"
    stage = "export"

    def run(self, ctx: RunContext, state: RunState) -> None:
        path = ctx.work_dir / "model.bin"
        path.write_bytes(b"\x01\x02\x03")
        state.artifacts["model"] = ArtifactRecord(kind="model", path=path, sha256="x" * 64, size_bytes=3)
        state.report = {"ok": True}


class _First(Step):
    name = "first"
    stage = "load"

    def run(self, ctx: RunContext, state: RunState) -> None:
        ctx.emit("progress", {"message": "hello"})


class _Boom(Step):
    name = "boom"
    stage = "verify"
    exc: ClassVar[BaseException] = ValueError("bad value 42")

    def run(self, ctx: RunContext, state: RunState) -> None:
        raise self.exc


def _spec(tmp_path: Path, out: Path | None = None, **options: Any) -> PipelineSpec:
    ctx, _ = make_ctx(tmp_path, **options)
    return ctx.spec.model_copy(update={"out_dir": out or tmp_path / "result"})


@pytest.fixture
def fake_steps(monkeypatch: pytest.MonkeyPatch) -> dict[str, type[Step]]:
    table: dict[str, type[Step]] = {"first": _First, "write": _Write, "boom": _Boom}

    def lookup(name: str) -> type[Step]:
        return table[name] if name in table else step_class(name)

    monkeypatch.setattr(runner, "step_class", lookup)
    return table


def _leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".partial-" in p.name]


@pytest.mark.usefixtures("fake_steps")
def test_success_publishes_the_work_folder(tmp_path: Path) -> None:
    events: list[PipelineEvent] = []
    spec = _spec(tmp_path, device="cpu")
    result = runner.run_pipeline(spec, events.append, steps=("first", "write"))
    assert result.out_dir == (tmp_path / "result").resolve()
    assert (result.out_dir / "model.bin").read_bytes() == b"\x01\x02\x03"
    assert result.artifacts["model"].path == result.out_dir / "model.bin"
    assert result.report == {"ok": True}
    assert _leftovers(tmp_path) == []
    kinds = [(e.kind, e.stage) for e in events]
    assert kinds == [
        ("stage_started", "load"),
        ("progress", "load"),
        ("stage_finished", "load"),
        ("stage_started", "export"),
        ("stage_finished", "export"),
    ]
    finished = [e for e in events if e.kind == "stage_finished"]
    assert all(e.data["seconds"] >= 0 for e in finished)
    assert finished[-1].progress == 88.0


@pytest.mark.usefixtures("fake_steps")
def test_failure_leaves_nothing_behind_and_wraps_unexpected_errors(tmp_path: Path) -> None:
    with pytest.raises(PipelineError) as info:
        runner.run_pipeline(_spec(tmp_path, device="cpu"), steps=("first", "write", "boom"))
    assert "step boom failed: ValueError: bad value 42" in str(info.value)
    assert info.value.stage == "verify"
    assert isinstance(info.value.__cause__, ValueError)  # the traceback stays chained
    assert not (tmp_path / "result").exists()
    assert _leftovers(tmp_path) == []


def test_pipeline_errors_keep_their_type_and_get_a_stage(tmp_path: Path, fake_steps: dict[str, Any]) -> None:
    class _Bad(_Boom):
        exc = InputError("the data is wrong")

    fake_steps["boom"] = _Bad
    with pytest.raises(InputError, match="the data is wrong") as info:
        runner.run_pipeline(_spec(tmp_path, device="cpu"), steps=("boom",))
    assert info.value.stage == "verify"


@pytest.mark.usefixtures("fake_steps")
def test_out_dir_must_be_new_or_empty(tmp_path: Path) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="already exists and is not empty"):
        runner.run_pipeline(_spec(tmp_path, out=full, device="cpu"), steps=("write",))
    assert (full / "keep.txt").read_text() == "mine"

    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.run_pipeline(_spec(tmp_path, out=empty, device="cpu"), steps=("write",))
    assert (result.out_dir / "model.bin").exists()


@pytest.mark.usefixtures("fake_steps")
def test_cancel_stops_between_steps(tmp_path: Path) -> None:
    seen: list[str] = []

    def on_event(e: PipelineEvent) -> None:
        seen.append(e.kind)

    with pytest.raises(Cancelled):
        runner.run_pipeline(
            _spec(tmp_path, device="cpu"), on_event, lambda: "progress" in seen, steps=("first", "write")
        )
    assert not (tmp_path / "result").exists()
    assert _leftovers(tmp_path) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_a_gpu(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no CUDA GPU"):
        runner.run_pipeline(_spec(tmp_path, device="cuda"), steps=())
    assert runner.select_device("auto") == "cpu"


# --------------------------------------------------------------------------------------------------
# shrink and retry
# --------------------------------------------------------------------------------------------------


class _NoTraining(Step):
    name = "distill"
    stage = "distill"

    def run(self, ctx: RunContext, state: RunState) -> None:
        state.training = {"seconds": 0.0}


class _Verify(Step):
    """Measures the student's flash as `factor` x its estimate (as if the converter added overhead
    the estimate did not know) and is over budget above the profile's max_model_bytes."""

    name = "verify"
    stage = "verify"
    factor: ClassVar[float] = 1.5
    report_measured: ClassVar[bool] = True
    calls: ClassVar[list[dict[str, Any]]] = []

    def run(self, ctx: RunContext, state: RunState) -> None:
        arch = dict(state.student_arch)
        _Verify.calls.append(arch)
        measured = int(arch["est_int8_bytes"] * self.factor)
        limit = ctx.spec.profile.budgets.max_model_bytes
        path = ctx.work_dir / "student.tflite"
        path.write_bytes(b"\0" * 10)
        state.artifacts["tflite_int8_full"] = ArtifactRecord("tflite_int8_full", path, "0" * 64, 10)
        if measured > limit:
            raise ArtifactOverBudget(
                f"tflite_int8_full is {measured:,} bytes, over max_model_bytes={limit:,}",
                details={"model_bytes": measured} if self.report_measured else {},
            )
        state.report = {"retries": state.budget.get("shrink_retries")}


def _retry_run(
    tmp_path: Path,
    files: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    *,
    flash: int,
    factor: float,
    measured: bool,
) -> tuple[PipelineSpec, tuple[str, ...]]:
    _Verify.factor, _Verify.report_measured, _Verify.calls = factor, measured, []
    table: dict[str, type[Step]] = {"distill": _NoTraining, "verify": _Verify}
    monkeypatch.setattr(runner, "step_class", lambda name: table.get(name) or step_class(name))
    ctx, _ = make_ctx(
        tmp_path, teacher=files["onnx"], data=files["npz"], device="cpu",
        profile=custom_profile("mcu-cortex-m4", max_model_bytes=flash),
    )  # fmt: skip
    spec = ctx.spec.model_copy(update={"out_dir": tmp_path / "result"})
    return spec, ("load_teacher", "load_data", "build_student", "distill", "verify")


def test_over_budget_artifact_shrinks_the_student_and_retries(
    tmp_path: Path, digits_teacher_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, steps = _retry_run(tmp_path, digits_teacher_files, monkeypatch, flash=16_000, factor=1.5, measured=True)
    events: list[PipelineEvent] = []
    result = runner.run_pipeline(spec, events.append, steps=steps)

    first, second = _Verify.calls  # the measured/estimated ratio picks a fitting student in one retry
    assert first["est_int8_bytes"] * 1.5 > 16_000 >= second["est_int8_bytes"] * 1.5
    assert second["params"] < first["params"]
    (retry,) = result.report["retries"]
    assert retry["attempt"] == 1
    assert retry["from"] == {"width": first["width"], "depth": first["depth"]}
    assert retry["to"] == {"width": second["width"], "depth": second["depth"]}
    assert retry["details"]["model_bytes"] == int(first["est_int8_bytes"] * 1.5)
    assert len(result.warnings) == 1 and "retrying with a smaller student" in result.warnings[0]
    assert [e.kind for e in events].count("warning") == 1
    assert (result.out_dir / "student.tflite").exists()


def test_retries_are_bounded(
    tmp_path: Path, digits_teacher_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without measured figures the runner can only step down one size at a time.
    spec, steps = _retry_run(tmp_path, digits_teacher_files, monkeypatch, flash=16_000, factor=50.0, measured=False)
    with pytest.raises(BudgetError, match="giving up") as info:
        runner.run_pipeline(spec, steps=steps)
    assert isinstance(info.value.__cause__, ArtifactOverBudget)
    assert info.value.stage == "verify"
    assert len(_Verify.calls) == 1 + MAX_SHRINK_RETRIES
    assert not (tmp_path / "result").exists()
    assert _leftovers(tmp_path) == []
