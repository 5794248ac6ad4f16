"""What steps share during one run: the fixed context (spec, folders, callbacks) and the mutable state
that steps read and fill in. Torch objects are typed Any so this module imports no ML library."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgedistill.contracts.errors import Cancelled
from edgedistill.contracts.events import (
    CancelCheck,
    EventKind,
    EventSink,
    PipelineEvent,
    never_cancel,
    null_sink,
)
from edgedistill.contracts.spec import PipelineSpec


@dataclass(frozen=True)
class ArtifactRecord:
    kind: str  # onnx_fp32 | onnx_int8 | tflite_int8 | tflite_int8_full | c_source | c_header | probe | report ...
    path: Path  # inside the run's work folder until the run succeeds
    sha256: str
    size_bytes: int
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunContext:
    spec: PipelineSpec
    work_dir: Path  # temp folder; moved to spec.out_dir only when the whole run succeeds
    emit_sink: EventSink = null_sink
    cancel_check: CancelCheck = never_cancel
    torch_device: str = "cpu"
    stage: str = "load"
    progress: float = 0.0

    def emit(self, kind: EventKind, data: dict[str, Any] | None = None, *, progress: float | None = None) -> None:
        if progress is not None:
            self.progress = progress
        self.emit_sink(PipelineEvent(kind=kind, stage=self.stage, data=data or {}, progress=self.progress))

    def check_cancel(self) -> None:
        """Steps call this between epochs and between steps; raises Cancelled when asked to stop."""
        if self.cancel_check():
            raise Cancelled("cancelled by user", stage=self.stage)


@dataclass
class RunState:
    """Filled in step by step; each step's docstring says which fields it reads and writes."""

    teacher: Any = None  # workers.steps.teacher.Teacher
    data: Any = None  # workers.steps.data.TransferData
    # split -> {teacher output name -> np.ndarray}; data.primary_targets gives the single-output view
    teacher_outputs: dict[str, Any] = field(default_factory=dict)
    signature: Any = None  # workers.pipeline.signature.ModelSignature, every output kind set (load_data)
    output_kinds: list[dict[str, Any]] = field(default_factory=list)  # each output's kind and how it was decided
    # verify's judgement: {"problem": sentence or None, "variant": judged variant, "action": "warning"}
    quality: dict[str, Any] = field(default_factory=dict)
    export_module: Any = None  # heads.export_module(student, signature): what every exporter exports
    student: Any = None  # torch.nn.Module (float, trained)
    student_arch: dict[str, Any] = field(default_factory=dict)
    sizing: Any = None  # workers.steps.sizing.Ladder: the sizes distill tries (build_student), None: no search
    baseline_student: Any = None  # trained on labels only, for the report's comparison (optional)
    training: dict[str, Any] = field(default_factory=dict)  # curve, best epoch, stopped early, seconds
    artifacts: dict[str, ArtifactRecord] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)  # evaluation per model variant
    budget: dict[str, Any] = field(default_factory=dict)  # estimated/measured vs profile budgets
    latency: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)
    # the distillation method, its loss terms and method-specific results (report.json "distillation")
    distillation: dict[str, Any] = field(default_factory=dict)
    # candidates the device artifact is chosen among besides the student's files: name -> facts, or
    # {"reason": ...} when one could not be made (teacher_int8.py)
    candidates: dict[str, dict[str, Any]] = field(default_factory=dict)
    # options.student.family best (family_race.py): {"module", "arch", "role": rival|runner_up, ...}
    runner_up: Any = None
    qat_model: Any = None  # fake-quant (PT2E QAT) graph after quantization-aware distillation; export uses it
