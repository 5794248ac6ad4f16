"""Runs a pipeline: every registered step in order, in a private work folder that becomes spec.out_dir
only when the whole run succeeds. The CLI and the Celery task both call run_pipeline().

The runner names no step: the order, each step's stage and the restart points are the steps' own
declarations (base.Step, registry.pipeline_order). Stages are announced as they begin and end
(stage_started / stage_finished with seconds, progress from events.STAGE_PROGRESS_END).

When a step raises an error that an earlier step of the run declares as its Restart.on, that step's
prepare_restart() records why and gives the config to rerun with (or ends the run), the state fields
it declares are reset, and the run resumes from it: an artifact over the profile's budget
(ArtifactOverBudget) shrinks the student and resumes from build_student, a bounded number of times;
post-training int8 over the accuracy budget (Int8OverBudget, options.qat auto) resumes from qat_kd
with the PTQ figures kept. Without a step to resume from, an int8 drop is kept as warnings and the
run goes on; any other error ends it."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgedistill.contracts.errors import InputError, Int8OverBudget, PipelineError
from edgedistill.contracts.events import STAGE_PROGRESS_END, CancelCheck, EventSink, never_cancel, null_sink
from edgedistill.contracts.spec import PipelineSpec
from edgedistill.workers.pipeline.base import Restart, Step, StepConfig
from edgedistill.workers.pipeline.context import ArtifactRecord, RunContext, RunState
from edgedistill.workers.pipeline.registry import pipeline_order, step_class


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


_FIELDS = {f.name: f for f in dataclasses.fields(RunState)}


def _default(name: str) -> Any:
    f = _FIELDS[name]
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _reset(state: RunState, restart: Restart) -> None:
    """The declared fields back to their defaults (dict fields keep the declared keys); reset
    artifacts lose their files too."""
    if "artifacts" in restart.resets:
        for art in state.artifacts.values():
            art.path.unlink(missing_ok=True)
            art.path.with_name(art.path.name + ".json").unlink(missing_ok=True)
    for name in restart.resets:
        keep = restart.keep.get(name)
        if keep is None:
            setattr(state, name, _default(name))
        else:
            setattr(state, name, {k: v for k, v in getattr(state, name).items() if k in keep})


def _restart_point(done: Sequence[str], exc: PipelineError) -> int | None:
    """Index in `done` of the nearest step declaring a restart on this error, None when there is none."""
    for j in range(len(done) - 1, -1, -1):
        restart = step_class(done[j]).restart
        if restart is not None and isinstance(exc, restart.on):
            return j
    return None


def _keep_as_warnings(ctx: RunContext, state: RunState, exc: Int8OverBudget) -> None:
    messages = exc.details.get("warnings")
    for msg in messages if isinstance(messages, list) else [str(exc)]:
        state.warnings.append(str(msg))
        ctx.emit("warning", {"message": str(msg)})


def _run_steps(ctx: RunContext, state: RunState, names: Sequence[str]) -> None:
    clock = _StageClock(ctx)
    configs: dict[str, StepConfig] = {}  # what a restarted step reruns with
    attempts: dict[str, int] = {}
    i = 0
    while i < len(names):
        name = names[i]
        cls = step_class(name)
        step = cls(configs.get(name))
        clock.enter(cls.stage)
        ctx.check_cancel()
        try:
            step.run(ctx, state)
        except PipelineError as exc:
            if exc.stage is None:
                exc.stage = cls.stage
            j = _restart_point(names[:i], exc)
            if j is None:
                if isinstance(exc, Int8OverBudget):  # nothing can recover the drop: a finding, the run goes on
                    _keep_as_warnings(ctx, state, exc)
                    i += 1
                    continue
                raise
            target: type[Step] = step_class(names[j])
            assert target.restart is not None
            attempts[target.name] = attempts.get(target.name, 0) + 1
            config = target.prepare_restart(ctx, state, exc, attempts[target.name])
            if config is not None:
                configs[target.name] = config
            _reset(state, target.restart)
            i = j
            continue
        except Exception as exc:  # an engine bug: still a readable reason, traceback chained
            raise PipelineError(f"step {name} failed: {type(exc).__name__}: {exc}", stage=cls.stage) from exc
        i += 1
    clock.finish()


def run_pipeline(
    spec: PipelineSpec,
    on_event: EventSink | None = None,
    should_cancel: CancelCheck | None = None,
    *,
    steps: Sequence[str] | None = None,
) -> PipelineResult:
    """Run the steps (by default every registered step, in registry.pipeline_order()) and return the
    published result.

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
        _run_steps(ctx, state, pipeline_order() if steps is None else steps)
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
