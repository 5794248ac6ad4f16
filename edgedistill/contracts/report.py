"""report.json, typed: the run's main output as one versioned pydantic model. The engine builds it
(workers/steps/report.py) and writes `model_dump_json()`; summary.md, both CLIs' summaries, the
dashboard's job page and GET /api/v1/jobs/{id}/report read it back with `read_report`.

Two kinds of section. Those the report step builds itself from fixed constructors (headline, quality
verdict, device-artifact choice, latency, sizes, artifacts, outputs, budgets, signature) forbid
unknown keys, so a key added in the engine without the contract fails the tests. Those that carry
what a method or student family chooses to record (metrics per variant, student, training,
distillation, sizing, profile) type the keys readers use and allow the rest.

Stored reports from before schema_version existed, or with a key a later version dropped, are read
by `read_report`: `migrate` brings a stored document to the current version, and whatever still does
not fit is dropped (and named in the log), so a job page never fails on an old report.

Imports nothing else of edgedistill (contracts layer)."""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError

__all__ = [
    "SCHEMA_VERSION",
    "ArtifactFile",
    "BudgetFacts",
    "DeviceArtifactChoice",
    "DistillationFacts",
    "EstimatedTiming",
    "Headline",
    "HostTiming",
    "LatencyFacts",
    "OutputRow",
    "QualityVerdict",
    "Report",
    "SizeFacts",
    "SizingTrail",
    "VariantMetrics",
    "migrate",
    "read_report",
]

SCHEMA_VERSION = 1

log = logging.getLogger(__name__)


class _Closed(BaseModel):
    """A section the report step builds itself: an unknown key is a contract bug."""

    model_config = ConfigDict(extra="forbid")


class _Open(BaseModel):
    """A section whose extra keys depend on the method or student family: known keys typed, others kept."""

    model_config = ConfigDict(extra="allow")


# --------------------------------------------------------------------------------------------------
# headline, verdict, device artifact
# --------------------------------------------------------------------------------------------------


class Headline(_Closed):
    """The ratios people ask about first: teacher vs the device artifact."""

    primary_artifact: str | None = Field(default=None, description="The device artifact (see device_artifact)")
    params_x: float | None = Field(default=None, description="Teacher parameters / student parameters")
    bytes_x: float | None = Field(default=None, description="Teacher file bytes / device artifact bytes")
    latency_x: float | None = Field(default=None, description="Teacher p50 / student p50, same runtime if any")
    latency_basis: str | None = Field(default=None, description="Which two timings latency_x compares")
    latency_same_runtime: bool | None = None
    latency_vs: str | None = Field(default=None, description="The student timing latency_x uses")
    latency_teacher: str | None = Field(default=None, description="teacher, or teacher_onnx (a torch teacher)")
    latency_x_device_artifact: float | None = None
    latency_basis_device_artifact: str | None = None
    quality_metric: str | None = Field(
        default=None, description="accuracy, top1_agreement, r2, r2_vs_teacher, or headline (per-output runs)"
    )
    teacher_quality: float | None = None
    student_quality: float | None = None
    quality_kept_pct: float | None = None
    quality_met: bool | None = None
    estimated_device_latency_ms: float | None = Field(default=None, description="MCU profiles: MACs-based estimate")


class QualityVerdict(_Closed):
    """Did the device artifact keep options.quality_target of the teacher's headline metric?"""

    metric: str
    teacher: float | None = None
    student: float | None = None
    kept: float | None = None
    target: float
    met: bool = Field(description="False (never null) when the student's figure is missing")
    samples: int | None = None
    variant: str | None = None
    basis: str | None = None
    small_sample: bool | None = None
    problem: str | None = Field(default=None, description="Why the student does not reproduce its teacher")
    action: str | None = Field(default=None, description="What verify did about a problem: warning, fail")
    problem_variant: str | None = Field(default=None, description="The variant the problem was found on")

    def public(self) -> dict[str, Any]:
        """The fields every job's JSON, webhook and CLI carry."""
        return self.model_dump(include=set(PUBLIC_VERDICT_FIELDS))


PUBLIC_VERDICT_FIELDS = ("metric", "teacher", "student", "kept", "target", "met", "samples", "variant", "problem")


class DeviceCandidate(_Closed):
    kind: str
    p50_ms: float | None = None
    quality: float | None = None
    kept: float | None = None
    meets_target: bool
    fits: bool
    bytes: int


class DeviceArtifactChoice(_Closed):
    """Which artifact the device runs and why (workers/steps/device_artifact.py)."""

    chosen: str | None
    why: str
    candidates: list[DeviceCandidate] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class CandidateRow(_Closed):
    """One model the job evaluated for the device (workers/steps/candidates.py)."""

    name: str = Field(
        description="teacher (the reference), teacher_int8 (no distillation), student, or runner_up (the student "
        "family options.student.family best trained and did not keep)"
    )
    label: str
    artifact_kind: str | None = Field(default=None, description="The file this device class would run")
    runtime: str | None = None
    quality: float | None = None
    kept: float | None = None
    meets_target: bool | None = None
    bytes: int | None = None
    params: int | None = None
    macs: int | None = None
    p50_ms: float | None = Field(default=None, description="Host p50 at batch 1, the profile's threads")
    threads: int | None = None
    runs_on_device: bool | None = None
    over_budget: list[str] = Field(default_factory=list, description="The budgets it breaks")
    chosen: bool = False
    note: str | None = None


class Candidates(_Closed):
    """Every candidate side by side and which one the device gets."""

    objective: str
    chosen: str | None = None
    why: str
    rows: list[CandidateRow] = Field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# the run's inputs: profile, data, teacher, signature, per-output kinds
# --------------------------------------------------------------------------------------------------


class ProfileFacts(_Open):
    """The device profile as YAML (the profile model validates it; here only what readers use)."""

    model_config = ConfigDict(extra="allow", validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    name: str
    description: str | None = None
    device_class: str | None = Field(default=None, alias="class")


class InputFacts(_Closed):
    shape: list[int | None]
    dtype: str


class DataFacts(_Closed):
    """The transfer data (TransferData.describe)."""

    samples: int | None = None
    sample_shape: list[int | None] = Field(default_factory=list)
    modality: str | None = None
    task: str | None = None
    num_outputs: int | None = None
    labels: bool | None = None
    splits: dict[str, int] = Field(default_factory=dict)
    inputs: dict[str, InputFacts] = Field(default_factory=dict)
    stratified: bool | None = None
    synthetic: bool | None = None
    notes: list[str] | None = None


class TeacherFacts(_Closed):
    format: str | None = None
    params: int | None = None
    file_bytes: int | None = None
    macs: int | None = None
    runtime: str | None = None
    runtime_version: str | None = None
    signature: dict[str, Any] | None = Field(default=None, description="What the teacher loader read of its I/O")


class TensorFacts(_Closed):
    name: str
    dtype: str
    shape: list[int | None] = Field(description="With the batch axis; null = dynamic")
    layout: str | None = None


class OutputTensorFacts(TensorFacts):
    kind: str | None = None
    scores: str | None = None


class SignatureFacts(_Closed):
    """The run's teacher signature, each output with the kind it was given."""

    inputs: list[TensorFacts]
    outputs: list[OutputTensorFacts]


class OutputRow(_Closed):
    """One teacher output: its kind, how the kind was decided, and its headline figure per variant."""

    name: str
    kind: str
    how: str = ""
    scores: str | None = None
    metric: str | None = Field(default=None, description="The headline metric's name; null: not trained")
    headline: dict[str, float | None] = Field(default_factory=dict, description="variant -> headline figure")


# --------------------------------------------------------------------------------------------------
# the student: architecture, sizing trail, training, distillation
# --------------------------------------------------------------------------------------------------


class StudentFacts(_Open):
    family: str | None = None
    width: int | None = None
    depth: int | None = None
    params: int | None = None
    macs: int | None = None
    est_int8_bytes: int | None = None
    est_arena_bytes: int | None = None
    chosen_because: str | None = None


class SizingTry(_Open):
    """One student size the search trained and judged on the validation split."""

    arch: str
    params: int | None = None
    est_int8_bytes: int | None = None
    macs: int | None = None
    val_metric: float
    kept: float | None = None
    met: bool
    reason: str
    chosen: bool | None = None


class SizingTrail(_Open):
    """Every size tried and why the chosen one (workers/steps/sizing.py)."""

    mode: str | None = Field(default=None, description="auto (a search) or fixed")
    reason: str | None = Field(default=None, description="fixed: why there was no search")
    objective: str | None = None
    pool: int | None = None
    ladder: list[str] = Field(default_factory=list)
    target: float | None = None
    metric: str | None = None
    teacher: float | None = None
    split: str | None = None
    tried: list[SizingTry] = Field(default_factory=list)
    chosen: str | None = None
    chosen_because: str | None = None


class CurvePoint(_Open):
    epoch: int
    epochs: int | None = None
    train_loss: float | None = None
    val_fidelity: float | None = None
    val_accuracy: float | None = None


class TrainingFacts(_Open):
    curve: list[CurvePoint] = Field(default_factory=list)
    epochs_run: int | None = None
    best_epoch: int | None = None
    stop_reason: str | None = None
    seconds: float | None = None


class LossTerm(_Open):
    key: str
    weight: float
    kwargs: dict[str, Any] = Field(default_factory=dict)


class TransformerTerms(_Open):
    terms_used: list[str] = Field(default_factory=list)
    heads: Any = None
    note: str | None = None


class FeaturePair(_Open):
    student: str
    teacher: str
    how: str
    role: str | None = None


class FeatureFacts(_Open):
    pairs: list[FeaturePair] = Field(default_factory=list)


class PtqVsQat(_Closed):
    metric: str
    ptq: float | None = None
    qat_kd: float | None = None
    ptq_drop_pp: float | None = None
    qat_kd_drop_pp: float | None = None


class QatFacts(_Open):
    done: bool | None = None
    skipped: str | None = None
    ptq_vs_qat_kd: dict[str, PtqVsQat] = Field(default_factory=dict)


class ForgettingFacts(_Open):
    before: Any = None
    after: Any = None


class LifelongFacts(_Open):
    old_data: ForgettingFacts | None = None
    new_data: ForgettingFacts | None = None


class NasFacts(_Open):
    chosen: str | None = None
    candidates: list[dict[str, Any]] = Field(default_factory=list)


class DataFreeFacts(_Open):
    real_data_note: str | None = None


class DistillationFacts(_Open):
    """Method, loss terms and weights, why, and the method's own results."""

    method: str | None = None
    summary: str | None = None
    why: str | None = None
    loss_terms: list[LossTerm] = Field(default_factory=list)
    transformer: TransformerTerms | None = None
    features: FeatureFacts | None = None
    qat: QatFacts | None = None
    lifelong: LifelongFacts | None = None
    nas: NasFacts | None = None
    data_free: DataFreeFacts | None = None


# --------------------------------------------------------------------------------------------------
# fidelity, budgets, latency, sizes, files
# --------------------------------------------------------------------------------------------------


class OutputMetrics(_Open):
    """One output's figures in one variant; the metric names depend on the output's kind."""

    kind: str | None = None
    samples: int | None = None
    headline: float | None = None
    headline_name: str | None = None


class VariantMetrics(_Open):
    """One variant (teacher, student_fp32, an artifact, tflm) on the test split."""

    runtime: str | None = None
    samples: int | None = None
    accuracy: float | None = None
    top1_agreement: float | None = None
    r2: float | None = None
    r2_vs_teacher: float | None = None
    max_abs_diff_vs_student_fp32: float | None = None
    drop_vs_student_fp32_pp: float | None = None
    quality_metric: str | None = None
    subset: bool | None = None
    headline: float | None = Field(default=None, description="Multi-output runs: the headline across outputs")
    outputs: dict[str, OutputMetrics] | None = Field(default=None, description="Multi-output runs: per output")
    quality_problem: str | None = None
    error: str | None = None

    def figure(self, key: str) -> Any:
        """A metric by name, typed field or extra (None when this variant has no such figure)."""
        if key in type(self).model_fields:
            return getattr(self, key)
        return (self.model_extra or {}).get(key)


class FlashBudget(_Closed):
    artifact_kind: str | None = None
    used_bytes: int | None = None
    available_bytes: int | None = None
    per_artifact_bytes: dict[str, int] = Field(default_factory=dict)
    checked: list[str] = Field(default_factory=list)
    measured: bool | None = None
    fits: bool | None = None


class RamBudget(_Closed):
    used_bytes: int | None = None
    measured_arena_bytes: int | None = None
    available_bytes: int | None = None
    measured: bool | None = None
    by: str | None = None
    fits: bool | None = None


class MacsBudget(_Closed):
    used: int | None = None
    available: int | None = None
    fits: bool | None = None


class OpsUse(_Closed):
    used: list[str] = Field(default_factory=list)
    not_allowed: list[str] = Field(default_factory=list)


class BudgetFacts(_Closed):
    """The device budgets verify checked (flash, RAM, MACs, firmware ops)."""

    tflm_arena: dict[str, Any] | None = Field(default=None, description="The arena reservation with its margin")
    flash: FlashBudget | None = None
    ram: RamBudget | None = None
    macs: MacsBudget | None = None
    ops: dict[str, OpsUse] = Field(default_factory=dict)
    violations: list[str] = Field(default_factory=list)
    shrink_retries: list[dict[str, Any]] = Field(default_factory=list, description="Smaller students retried")


class HostTiming(_Closed):
    artifact_kind: str
    source: Literal["host"] = "host"
    runtime: str
    runtime_version: str | None = None
    threads: int | None = None
    count: int | None = None
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float | None = None


class EstimatedTiming(_Closed):
    artifact_kind: str
    source: Literal["estimated"] = "estimated"
    runtime: str | None = None
    estimated_ms: float
    formula: str
    inputs: dict[str, float] = Field(default_factory=dict)


def _timing_source(v: Any) -> str:
    return str(v.get("source") if isinstance(v, dict) else getattr(v, "source", ""))


Timing = Annotated[
    Annotated[HostTiming, Tag("host")] | Annotated[EstimatedTiming, Tag("estimated")],
    Discriminator(_timing_source),
]


class LatencyFacts(_Closed):
    measurements: list[Timing] = Field(default_factory=list)
    speedup_vs_teacher: dict[str, float | None] = Field(default_factory=dict, description="Teacher p50 / kind p50")
    same_runtime_as_teacher: dict[str, bool] = Field(default_factory=dict)

    def host(self) -> dict[str, HostTiming]:
        """The host timings by artifact kind."""
        return {m.artifact_kind: m for m in self.measurements if isinstance(m, HostTiming)}

    def estimate(self) -> EstimatedTiming | None:
        return next((m for m in self.measurements if isinstance(m, EstimatedTiming)), None)


class SizeFacts(_Closed):
    teacher_params: int | None = None
    student_params: int | None = None
    params_x: float | None = None
    teacher_bytes: int | None = None
    artifact_bytes: dict[str, int] = Field(default_factory=dict)
    bytes_x: dict[str, float | None] = Field(default_factory=dict)


class ArtifactFile(_Closed):
    filename: str
    sha256: str
    size_bytes: int


# --------------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------------


class Report(_Closed):
    """report.json. Sections a run legitimately lacks (no quality verdict before verify, no signature
    for an older report, no sizing without a search) are null or empty."""

    schema_version: int = Field(description=f"{SCHEMA_VERSION} today; read_report migrates older ones")
    headline: Headline = Field(default_factory=Headline)
    profile: ProfileFacts | None = None
    data: DataFacts | None = None
    teacher: TeacherFacts = Field(default_factory=TeacherFacts)
    signature: SignatureFacts | None = None
    outputs: list[OutputRow] = Field(default_factory=list)
    quality: QualityVerdict | None = None
    device_artifact: DeviceArtifactChoice | None = None
    candidates: Candidates | None = Field(default=None, description="The models compared for the device")
    student: StudentFacts = Field(default_factory=StudentFacts)
    sizing: SizingTrail | None = None
    training: TrainingFacts = Field(default_factory=TrainingFacts)
    distillation: DistillationFacts = Field(default_factory=DistillationFacts)
    metrics: dict[str, VariantMetrics] = Field(default_factory=dict, description="variant -> test-split figures")
    budget: BudgetFacts = Field(default_factory=BudgetFacts)
    latency: LatencyFacts = Field(default_factory=LatencyFacts)
    sizes: SizeFacts = Field(default_factory=SizeFacts)
    artifacts: dict[str, ArtifactFile] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    timings: dict[str, float | None] = Field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The stored form: the keys the engine set (a default it did not set is not written)."""
        return self.model_dump(mode="json", exclude_unset=True)

    def verdict(self) -> dict[str, Any] | None:
        """The public verdict fields, or None for a report without one."""
        return self.quality.public() if self.quality is not None else None


def migrate(data: Mapping[str, Any]) -> dict[str, Any]:
    """A stored report.json brought to SCHEMA_VERSION. Reports written before the field existed are
    version 1's layout with fewer sections (no quality, outputs, signature, sizing...), which the
    model's defaults cover."""
    doc = copy.deepcopy(dict(data))
    if not isinstance(doc.get("schema_version"), int):
        doc["schema_version"] = 1
    return doc


def _drop(doc: Any, loc: tuple[int | str, ...]) -> bool:
    """Removes the value at loc (skipping union tags that are not keys); False when nothing was removed."""
    parent, key = None, None
    node = doc
    for part in loc:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            parent, key, node = node, part, node[part]
    if parent is None or key is None:
        return False
    del parent[key]
    return True


def read_report(data: Mapping[str, Any], *, max_rounds: int = 25) -> Report:
    """A stored report as a Report: migrated, then validated; a value that still does not fit is
    dropped (an item of a list, a key of a section, a whole section whose required key is missing),
    logged, and the rest read. ValueError for something that is not a JSON object."""
    if not isinstance(data, Mapping):
        raise ValueError(f"not a report: a JSON object is needed, not {type(data).__name__}")
    doc = migrate(data)
    dropped: list[str] = []
    for _ in range(max_rounds):
        try:
            report = Report.model_validate(doc)
        except ValidationError as exc:
            # deepest first, so removing a list item does not shift the index of another error
            locs = sorted({tuple(e["loc"][:-1] if e["type"] == "missing" else e["loc"]) for e in exc.errors()})
            progress = False
            for loc in reversed(locs):
                if loc and _drop(doc, loc):
                    dropped.append(".".join(map(str, loc)))
                    progress = True
            if not progress:
                raise ValueError(f"not a report: {exc.errors()[0]['msg']}") from exc
            continue
        if dropped:
            log.warning("report: dropped what does not fit schema %s: %s", SCHEMA_VERSION, ", ".join(dropped))
        return report
    raise ValueError("not a report: too many values that do not fit")
