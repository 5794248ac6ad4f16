"""Progress events a pipeline run emits. The CLI renders them; the Celery task turns them into DB rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

# The job stages, in order; the API and dashboard show the same names.
STAGES: tuple[str, ...] = ("load", "distill", "quantize", "export", "verify", "benchmark")

EventKind = Literal["stage_started", "stage_finished", "progress", "epoch", "artifact", "measurement", "warning"]


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
