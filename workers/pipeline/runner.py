"""Runs a pipeline: every registered step in order, in a private work folder that becomes spec.out_dir
only when the whole run succeeds. The CLI and the Celery task both call run_pipeline().

When verify finds that post-training int8 lost more than options.accuracy_budget_pp (Int8OverBudget,
options.qat auto), the PTQ figures are kept in state.distillation["qat"]["ptq"], the exports are
dropped and the run resumes from qat_kd (quantization-aware distillation), then exports again.

Stages are announced as they begin and end (stage_started / stage_finished with seconds). When an
exported artifact measures over the profile's budget (ArtifactOverBudget), the student is shrunk
and the run resumes from build_student, a bounded number of times, each retry recorded."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgedistill.workers.pipeline.context import ArtifactRecord, RunContext, RunState
from edgedistill.workers.pipeline.errors import (
    ArtifactOverBudget,
    BudgetError,
    InputError,
    Int8OverBudget,
    PipelineError,
)
from edgedistill.workers.pipeline.events import CancelCheck, EventSink, never_cancel, null_sink
from edgedistill.workers.pipeline.registry import step_class
from edgedistill.workers.pipeline.spec import PipelineSpec

STEP_ORDER: tuple[str, ...] = (
    "load_teacher",
    "load_data",
    "build_student",
    "distill",
    "qat_kd",
    "export_onnx",
    "quantize_onnx",
    "export_tflite",
    "export_c_array",
    "verify",
    "benchmark",
    "report",
)
RETRY_FROM = "build_student"
QAT_FROM = "qat_kd"  # resumed from when post-training int8 loses more than the accuracy budget
MAX_SHRINK_RETRIES = 3
# Overall progress (0-100) when each stage ends; distill dominates the run time.
STAGE_PROGRESS_END: dict[str, float] = {
    "load": 5.0,
    "distill": 70.0,
    "quantize": 78.0,
    "export": 88.0,
    "verify": 95.0,
    "benchmark": 100.0,
}


@dataclass
class PipelineResult:
    out_dir: Path
    report: dict[str, Any]
    artifacts: dict[str, ArtifactRecord]  # paths inside out_dir
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


def select_device(requested: str) -> str:
    """'auto' -> cuda when torch sees a GPU, else cpu; 'cuda' without a GPU is an input error."""
    import torch

    has_cuda = torch.cuda.is_available()
    if requested == "cuda" and not has_cuda:
        raise InputError("options.device is 'cuda' but no CUDA GPU is available to torch on this machine")
    if requested == "cpu":
        return "cpu"
    return "cuda" if has_cuda else "cpu"


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise InputError(f"output folder {str(out_dir)!r} already exists and is not empty; choose a new one")


def _publish(work: Path, out_dir: Path) -> None:
    """Move the finished work folder into place in one rename (same parent, same filesystem)."""
    if out_dir.exists():
        out_dir.rmdir()  # empty: checked at the start; fails loudly if something appeared meanwhile
    os.chmod(work, 0o755)  # mkdtemp makes it private
    os.replace(work, out_dir)


class _StageClock:
    """Emits stage_started when a step's stage differs from the previous step's, stage_finished (with
    the stage's seconds) when it ends."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.current: str | None = None
        self.started = 0.0

    def enter(self, stage: str) -> None:
        if stage == self.current:
            return
        self.finish()
        self.current, self.started = stage, time.monotonic()
        self.ctx.stage = stage
        self.ctx.emit("stage_started")

    def finish(self) -> None:
        if self.current is None:
            return
        end = STAGE_PROGRESS_END.get(self.current)
        progress = max(self.ctx.progress, end) if end is not None else None
        self.ctx.emit("stage_finished", {"seconds": round(time.monotonic() - self.started, 3)}, progress=progress)
        self.current = None


def _reset_for_retry(state: RunState) -> None:
    """Forget everything from build_student on; teacher, data and cached teacher outputs stay."""
    for art in state.artifacts.values():
        art.path.unlink(missing_ok=True)
        art.path.with_name(art.path.name + ".json").unlink(missing_ok=True)
    state.artifacts.clear()
    state.student = None
    state.student_arch = {}
    state.baseline_student = None
    state.training = {}
    state.metrics = {k: v for k, v in state.metrics.items() if k == "teacher"}
    state.latency = []
    state.report = {}
    state.distillation = {}
    state.qat_model = None
    retries = state.budget.get("shrink_retries", [])
    state.budget = {"shrink_retries": retries}


def _reset_for_qat(state: RunState, exc: Int8OverBudget) -> None:
    """Keep the PTQ figures for the report; drop the exported files, which QAT-KD replaces."""
    for art in state.artifacts.values():
        art.path.unlink(missing_ok=True)
        art.path.with_name(art.path.name + ".json").unlink(missing_ok=True)
    state.artifacts.clear()
    state.metrics = {k: v for k, v in state.metrics.items() if k in ("teacher", "student_fp32")}
    state.latency = []
    state.distillation["qat"] = {"trigger": str(exc), "ptq": exc.details.get("ptq", {})}


def _smaller_student(state: RunState, spec: PipelineSpec, exc: ArtifactOverBudget) -> Any:
    """The next student that fits once its estimates are corrected by what was measured."""
    from edgedistill.workers.steps.students import StudentArch, fits_after_correction, shrink

    arch = StudentArch.from_dict(state.student_arch)
    corrections: dict[str, float] = {}
    for measured_key, est_key in (("model_bytes", "est_int8_bytes"), ("arena_bytes", "est_arena_bytes")):
        measured, estimated = exc.details.get(measured_key), state.student_arch.get(est_key)
        if isinstance(measured, (int, float)) and isinstance(estimated, (int, float)) and estimated > 0:
            corrections[est_key] = max(1.0, float(measured) / float(estimated))
    smaller = shrink(arch)
    while smaller is not None and not fits_after_correction(smaller, spec.profile, corrections):
        smaller = shrink(smaller)
    return smaller


def _run_steps(ctx: RunContext, state: RunState, names: Sequence[str]) -> None:
    from edgedistill.workers.steps.build_student import BuildStudentConfig

    clock = _StageClock(ctx)
    retries = 0
    pinned: BuildStudentConfig | None = None
    i = 0
    while i < len(names):
        name = names[i]
        cls = step_class(name)
        step = cls(pinned) if name == RETRY_FROM and pinned is not None else cls()
        clock.enter(cls.stage)
        ctx.check_cancel()
        try:
            step.run(ctx, state)
        except ArtifactOverBudget as exc:
            if RETRY_FROM not in names[:i] or not state.student_arch:
                exc.stage = exc.stage or cls.stage
                raise
            retries += 1
            smaller = _smaller_student(state, ctx.spec, exc) if retries <= MAX_SHRINK_RETRIES else None
            if smaller is None:
                why = "even the smallest student" if retries <= MAX_SHRINK_RETRIES else f"{MAX_SHRINK_RETRIES} retries"
                raise BudgetError(f"{exc} ({why}: giving up)", stage=exc.stage or cls.stage) from exc
            old = state.student_arch
            message = (
                f"{exc}; retrying with a smaller student: width {old.get('width')}->{smaller.width}, "
                f"depth {old.get('depth')}->{smaller.depth}"
            )
            state.warnings.append(message)
            record = {
                "attempt": retries,
                "reason": str(exc),
                "details": dict(exc.details),
                "from": {"width": old.get("width"), "depth": old.get("depth")},
                "to": {"width": smaller.width, "depth": smaller.depth},
            }
            state.budget.setdefault("shrink_retries", []).append(record)
            ctx.emit("warning", {"message": message})
            _reset_for_retry(state)
            pinned = BuildStudentConfig(
                width=smaller.width, depth=smaller.depth, kernel=smaller.kernel, expansion=smaller.expansion
            )
            i = list(names).index(RETRY_FROM)
            continue
        except Int8OverBudget as exc:
            if QAT_FROM not in names[:i]:  # no QAT step in this run: keep going, with the warnings
                messages = exc.details.get("warnings")
                for msg in messages if isinstance(messages, list) else [str(exc)]:
                    state.warnings.append(str(msg))
                    ctx.emit("warning", {"message": str(msg)})
                i += 1
                continue
            ctx.emit("warning", {"message": f"{exc}: running quantization-aware distillation, then exporting again"})
            _reset_for_qat(state, exc)
            i = list(names).index(QAT_FROM)
            continue
        except PipelineError as exc:
            if exc.stage is None:
                exc.stage = cls.stage
            raise
        except Exception as exc:  # an engine bug: still a readable reason, traceback chained
            raise PipelineError(f"step {name} failed: {type(exc).__name__}: {exc}", stage=cls.stage) from exc
        i += 1
    clock.finish()


def run_pipeline(
    spec: PipelineSpec,
    on_event: EventSink | None = None,
    should_cancel: CancelCheck | None = None,
    *,
    steps: Sequence[str] = STEP_ORDER,
) -> PipelineResult:
    """Run the steps (all of them by default) and return the published result.

    spec.out_dir must not exist or be empty; nothing appears there unless the run succeeds. Artifact
    events carry paths inside the temporary work folder; PipelineResult.artifacts has the final ones."""
    started = time.monotonic()
    out_dir = spec.out_dir.resolve()
    _check_out_dir(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        ctx = RunContext(
            spec=spec,
            work_dir=work,
            emit_sink=on_event or null_sink,
            cancel_check=should_cancel or never_cancel,
        )
        try:
            ctx.torch_device = select_device(spec.options.device)
        except InputError as exc:
            exc.stage = "load"
            raise
        state = RunState()
        _run_steps(ctx, state, steps)
        _publish(work, out_dir)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    artifacts = {k: replace(a, path=out_dir / a.path.relative_to(work)) for k, a in state.artifacts.items()}
    return PipelineResult(
        out_dir=out_dir,
        report=state.report,
        artifacts=artifacts,
        warnings=list(state.warnings),
        seconds=time.monotonic() - started,
    )
