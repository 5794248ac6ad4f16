"""Errors a pipeline run ends with, and those the runtime wrappers raise. Each message is shown to users
as the failure reason."""

from __future__ import annotations


class PipelineError(Exception):
    """A run that cannot finish; str(exc) is the user-facing reason."""

    def __init__(self, message: str, *, stage: str | None = None) -> None:
        super().__init__(message)
        self.stage = stage


class InputError(PipelineError):
    """The teacher, the transfer data or the profile is unusable (the user must change an input)."""


class BudgetError(PipelineError):
    """No student could be built that fits the device profile's budgets."""


class Cancelled(PipelineError):
    """The run was cancelled by the user between steps or epochs."""


class ArtifactOverBudget(PipelineError):
    """An exported artifact measured over the profile's flash/RAM budget; the runner shrinks the
    student and retries. details holds the measured figures for the report."""

    def __init__(self, message: str, *, stage: str | None = None, details: dict[str, object] | None = None) -> None:
        super().__init__(message, stage=stage)
        self.details = details or {}


class Int8OverBudget(PipelineError):
    """Post-training int8 lost more quality than options.accuracy_budget_pp; the runner runs
    quantization-aware distillation (step qat_kd) and exports again. details: the PTQ figures and the
    warnings to show when no QAT can follow."""

    def __init__(self, message: str, *, stage: str | None = None, details: dict[str, object] | None = None) -> None:
        super().__init__(message, stage=stage)
        self.details = details or {}


class ArtifactRunError(PipelineError):
    """A runtime wrapper (edgedistill.runtimes) cannot load or run an artifact; str(exc) says which and why.
    A PipelineError so a job fails with the reason; the agent turns it into its own AgentError."""


class RuntimeUnavailable(ArtifactRunError):
    """The runtime library for this artifact kind is not installed here."""
