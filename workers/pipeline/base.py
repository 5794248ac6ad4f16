"""The step plug-in contract: a typed config (safe to import anywhere) plus a class with run()."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from edgedistill.workers.pipeline.context import RunContext, RunState


class StepConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Step(ABC):
    """One pipeline step. Heavy imports (torch, onnxruntime, litert) go inside run()."""

    name: ClassVar[str]
    stage: ClassVar[str]  # one of workers.pipeline.events.STAGES
    config_cls: ClassVar[type[StepConfig]] = StepConfig

    def __init__(self, config: StepConfig | None = None) -> None:
        self.config = config if config is not None else self.config_cls()

    @abstractmethod
    def run(self, ctx: RunContext, state: RunState) -> None:
        """Read what earlier steps put in state, do the work, write results back into state."""
