"""The step plug-in contract: a typed config (safe to import anywhere) plus a class with run().

A step declares everything the runner needs to know about it, so the runner names no step: its stage
(events.STAGES), its place in the pipeline (order) and, when a later failure can resume the run from
it, a Restart (which error, which state fields go back to their defaults) with restart() preparing
the rerun."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from edgedistill.contracts.errors import PipelineError
from edgedistill.workers.pipeline.context import RunContext, RunState

STATE_FIELDS = frozenset(f.name for f in dataclasses.fields(RunState))


class StepConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Restart:
    """A retry that resumes the run from the step declaring it, when a later step raises `on`.

    Before the rerun the runner sets each of `resets` (RunState fields) back to its default, keeping
    the keys `keep` names for dict fields; resetting "artifacts" also deletes the files."""

    on: type[PipelineError]
    resets: tuple[str, ...]
    keep: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = (set(self.resets) | set(self.keep)) - STATE_FIELDS
        if unknown:
            raise ValueError(f"Restart names fields RunState does not have: {', '.join(sorted(unknown))}")
        if not set(self.keep) <= set(self.resets):
            raise ValueError("Restart.keep names a field that is not reset")


class Step(ABC):
    """One pipeline step. Heavy imports (torch, onnxruntime, litert) go inside run()."""

    name: ClassVar[str]
    stage: ClassVar[str]  # one of workers.pipeline.events.STAGES
    order: ClassVar[int]  # place in the pipeline: registered steps run by ascending order
    restart: ClassVar[Restart | None] = None  # a retry that resumes from this step, if any
    config_cls: ClassVar[type[StepConfig]] = StepConfig

    def __init__(self, config: StepConfig | None = None) -> None:
        self.config = config if config is not None else self.config_cls()

    @abstractmethod
    def run(self, ctx: RunContext, state: RunState) -> None:
        """Read what earlier steps put in state, do the work, write results back into state."""

    @classmethod
    def prepare_restart(cls, ctx: RunContext, state: RunState, exc: PipelineError, attempt: int) -> StepConfig | None:
        """Called when a later step raised restart.on, before the state is reset; attempt counts this
        step's restarts in the run (1 for the first). Records why and returns the config to run again
        with (None: the default one); raises to end the run instead."""
        return None
