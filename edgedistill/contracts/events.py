"""Progress events a pipeline run emits. The CLI renders them; the Celery task turns them into DB rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

# The job stages, in order; the API and dashboard show the same names.
Stage = Literal["load", "distill", "quantize", "export", "verify", "benchmark"]
STAGES: Final[tuple[str, ...]] = get_args(Stage)
# How the dashboard names each stage.
STAGE_LABELS: Final[dict[str, str]] = {
    "load": "Load teacher & data",
    "distill": "Distill student",
    "quantize": "Quantize to int8",
    "export": "Export artifacts",
    "verify": "Verify on runtimes",
    "benchmark": "Benchmark & report",
}
# Overall job progress (0-100) when each stage ends; distill dominates the run time.
STAGE_PROGRESS_END: Final[dict[str, float]] = {
    "load": 5.0,
    "distill": 70.0,
    "quantize": 78.0,
    "export": 88.0,
    "verify": 95.0,
    "benchmark": 100.0,
}

EventKind = Literal["stage_started", "stage_finished", "progress", "epoch", "artifact", "measurement", "warning"]
# What a job's event rows may hold: the pipeline's events, plus the status changes the service records
# itself and the error a failed job ends with.
JOB_EVENT_KINDS: Final[tuple[str, ...]] = ("status", *get_args(EventKind), "error")


@dataclass(frozen=True)
class PipelineEvent:
    """kind-specific payload in data:
    - stage_started / stage_finished: {"seconds": float} on finish
    - progress: {"message": str}
    - epoch: {"epoch", "epochs", "train_loss", "val_fidelity", "val_accuracy" (None without labels), "lr"}
    - artifact: {"kind", "path", "filename", "sha256", "size_bytes", "metadata"}
    - measurement: {"artifact_kind", "source": "host", "runtime", "runtime_version", "threads", "count",
      "p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms"}
    - warning: {"message": str}
    progress is the overall job progress 0-100 when known.
    """

    kind: EventKind
    stage: str
    data: dict[str, Any] = field(default_factory=dict)
    progress: float | None = None


EventSink = Callable[[PipelineEvent], None]
CancelCheck = Callable[[], bool]


def null_sink(_event: PipelineEvent) -> None:
    return None


def never_cancel() -> bool:
    return False


def stage_span(stage: str) -> tuple[float, float]:
    """The overall progress a stage covers: from the end of the stage before it to its own end."""
    i = STAGES.index(stage)
    return (STAGE_PROGRESS_END[STAGES[i - 1]] if i else 0.0, STAGE_PROGRESS_END[stage])
