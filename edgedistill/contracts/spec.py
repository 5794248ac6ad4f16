"""What a pipeline run is asked to do. Pure pydantic: the API validates job options with these
same models, so it never imports the ML code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edgedistill.contracts.profiles.schema import DeviceProfile
from edgedistill.contracts.signature import OutputOptions

# Distillation methods a job can ask for (workers.steps.distill.methods implements each one).
METHODS: tuple[str, ...] = (
    "kd", "labels_only", "fitnet", "at", "rkd", "sp", "relational", "data_free", "qat_kd", "lifelong", "nas",
    "hybrid", "transformer", "auto",
)  # fmt: skip


class LossTerm(BaseModel):
    """One weighted term of the distillation loss, looked up by key in the loss registry."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=64)
    weight: float = Field(default=1.0, ge=0, le=1000)
    kwargs: dict[str, Any] = Field(default_factory=dict)


class StudentOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    family: Literal["auto", "transformer", "derived", "prefer_derived", "best"] = Field(
        default="auto",
        description="auto: chosen from the teacher's signature (method transformer picks the transformer "
        "student); transformer: a small transformer for token-sequence teachers; derived: the teacher's own "
        "graph, channel-pruned (and every other residual layer dropped) to fit, with hints at the same layers "
        "(refused when the teacher cannot be converted); prefer_derived: derived, else the designed student "
        "with a warning; best: train both the designed (auto) and the derived student in this job and keep the "
        "one that best meets the objective on the validation split (the other is a row of the candidate table)",
    )
    reduction: float | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="derived: the student's cost (est. int8 bytes on MCUs, MACs otherwise) at most the "
        "teacher's divided by this, within the budgets. None: 4",
    )
    # None = chosen automatically to fit the profile's budgets.
    width: int | None = Field(default=None, ge=4, le=1024, description="Channels (CNN) or hidden units (MLP)")
    depth: int | None = Field(default=None, ge=1, le=16, description="Blocks (CNN) or hidden layers (MLP)")
    kernel: int | None = Field(
        default=None, ge=1, le=9, description="Depthwise kernel size (CNN; odd). None: 3 (images) / 5 (sequences)"
    )
    expansion: int | None = Field(
        default=None, ge=1, le=8, description="Inverted-bottleneck expansion of each block (CNN). None: 1 (none)"
    )

    @field_validator("kernel")
    @classmethod
    def _odd(cls, v: int | None) -> int | None:
        if v is not None and v % 2 == 0:
            raise ValueError("kernel must be odd (same padding)")
        return v


class FeaturePair(BaseModel):
    """One student layer matched to one teacher layer by name (the report lists the candidate names)."""

    model_config = ConfigDict(extra="forbid")

    student: str = Field(min_length=1, max_length=200)
    teacher: str = Field(min_length=1, max_length=500)


class FeatureOptions(BaseModel):
    """Intermediate-feature distillation (fitnet, at, sp, rkd on features)."""

    model_config = ConfigDict(extra="forbid")

    pairs: list[FeaturePair] | None = Field(
        default=None, max_length=8, description="Explicit layer pairs; None: paired by resolution and depth"
    )
    max_pairs: int = Field(default=2, ge=1, le=8, description="Pairs chosen automatically")
    cache_mb: float = Field(
        default=512, gt=0, le=65_536, description="Memory for cached teacher features (float16); pooled to fit"
    )


class DataFreeOptions(BaseModel):
    """Data-free distillation (no transfer set): a generator trained against the student (DFAD) with
    the teacher as judge, plus BatchNorm-statistics matching (DeepInversion) for torch teachers."""

    model_config = ConfigDict(extra="forbid")

    input_shape: list[Annotated[int, Field(ge=1, le=65_536)]] | None = Field(
        default=None, min_length=1, max_length=3, description="Per-sample input shape when the teacher has none"
    )
    input_range: tuple[float, float] | None = Field(
        default=None, description="Inputs the teacher expects lie in [lo, hi]; None: unbounded, normalised"
    )
    steps_per_epoch: int = Field(default=50, ge=1, le=10_000, description="Generator steps per epoch")
    student_steps: int = Field(default=5, ge=1, le=50, description="Student steps per generator step (DFAD: 5)")
    latent_dim: int = Field(default=64, ge=4, le=1024)
    generator_lr: float = Field(default=1e-3, gt=0, le=1)
    adversarial_weight: float = Field(default=1.0, ge=0, le=1000, description="DFAD: -|t - s| on generated inputs")
    bn_weight: float = Field(default=1.0, ge=0, le=1000, description="DeepInversion BN-statistics matching")
    balance_weight: float = Field(default=1.0, ge=0, le=1000, description="DAFL class-balance (information entropy)")
    zo_directions: int = Field(
        default=2, ge=1, le=64, description="Random directions per gradient estimate for ONNX teachers (DFME)"
    )
    synthetic_samples: int = Field(
        default=2048, ge=64, le=1_000_000, description="Generated set kept for calibration, validation and export"
    )

    @field_validator("input_range")
    @classmethod
    def _ordered(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not v[0] < v[1]:
            raise ValueError("input_range must be [lo, hi] with lo < hi")
        return v


class JobOptions(BaseModel):
    """User-facing knobs of a compression job. Every field has a safe default and hard bounds."""

    model_config = ConfigDict(extra="forbid")

    method: str = Field(
        default="kd", min_length=1, max_length=64, description=f"Distillation method: one of {', '.join(METHODS)}"
    )
    task: Literal["auto", "classification", "regression"] = Field(
        default="auto",
        description="auto: classification when labels are integers or the teacher has several outputs",
    )
    losses: list[LossTerm] | None = Field(default=None, max_length=16, description="Explicit weighted loss terms")
    outputs: dict[str, OutputOptions] | None = Field(
        default=None,
        max_length=64,
        description="Per teacher output (by name): its kind (logits, probabilities, sigmoid, boxes, ...) and "
        "loss weight; None: every output is trained with an inferred kind",
    )
    epochs: int = Field(default=60, ge=1, le=10_000)
    batch_size: int = Field(default=128, ge=1, le=65_536)
    learning_rate: float = Field(default=3e-3, gt=0, le=10)
    weight_decay: float = Field(default=1e-4, ge=0, le=1)
    temperature: float = Field(default=4.0, gt=0, le=100)
    alpha: float = Field(default=0.7, ge=0, le=1, description="Weight of the KD term vs label cross-entropy")
    patience: int = Field(default=15, ge=1, le=10_000, description="Early-stopping patience in epochs")
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    val_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    test_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    student: StudentOptions = Field(default_factory=StudentOptions)
    calibration: Literal["minmax", "entropy", "percentile"] = "minmax"
    calibration_samples: int = Field(default=256, ge=1, le=100_000)
    accuracy_budget_pp: float = Field(default=0.5, ge=0, le=100, description="Allowed int8 accuracy drop")
    quality_target: float = Field(
        default=0.97,
        gt=0,
        le=1.5,
        description="Share of the teacher's headline metric on the test split the device artifact must keep "
        "(0.97 = 97 %); for agreement metrics (the teacher scores 1 by definition) the agreement itself. A job "
        "below it still succeeds, with quality.met false",
    )
    teacher_int8: bool = Field(
        default=True,
        description="Also quantize the teacher itself (onnxruntime int8, no distillation) and evaluate, time and "
        "show it next to the student; on CPU profiles it becomes the device artifact when it meets quality_target "
        "and the budgets and no student artifact does",
    )
    benchmark_runs: int = Field(default=200, ge=1, le=100_000)
    benchmark_warmup: int = Field(default=20, ge=0, le=10_000)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_train_seconds: float | None = Field(default=None, gt=0, le=7 * 24 * 3600)
    teacher_outputs_mb: float = Field(
        default=1024,
        gt=0,
        le=65_536,
        description="Memory for the teacher outputs cached for every transfer sample (float32); a larger "
        "cache is refused before the teacher runs",
    )
    # --- distillation methods (issue 6); every default keeps plain KD's behaviour ---
    features: FeatureOptions = Field(default_factory=FeatureOptions)
    data_free: DataFreeOptions = Field(default_factory=DataFreeOptions)
    qat: Literal["auto", "always", "never"] = Field(
        default="auto",
        description="Quantization-aware distillation: auto = only when post-training int8 loses more than "
        "accuracy_budget_pp; always = every run (also method qat_kd); never",
    )
    qat_epochs: int = Field(default=10, ge=1, le=1_000, description="Fine-tuning epochs with fake-quant int8")
    qat_learning_rate: float = Field(default=5e-4, gt=0, le=1)
    init_from: str | None = Field(
        default=None,
        min_length=1,
        max_length=1_000,
        description="Earlier student to continue from: CLI a previous run's student_fp32.onnx, API an earlier job id",
    )
    old_data: str | None = Field(
        default=None,
        min_length=1,
        max_length=1_000,
        description="The earlier run's data to check forgetting on: CLI an .npz path, API a dataset id; "
        "None: the earlier run's probe samples",
    )
    lwf_weight: float = Field(default=1.0, ge=0, le=1000, description="Weight of distillation from the earlier student")
    nas_time_budget_s: float = Field(default=600, ge=1, le=7 * 24 * 3600, description="Wall time for method nas")
    nas_max_candidates: int = Field(default=12, ge=1, le=200, description="Architectures trained by the proxy")
    nas_proxy_epochs: int = Field(default=3, ge=1, le=100, description="Epochs of the cheap proxy training")
    nas_finalists: int = Field(default=2, ge=1, le=10, description="Best proxy candidates trained fully")
    # --- automatic student size (issue 12): a short search over sizes when width/depth are not set ---
    sizing: Literal["auto", "fixed"] = Field(
        default="auto",
        description="auto: the smallest (MCU) or fastest (CPU/mobile) student within the budgets whose validation "
        "quality keeps quality_target of the teacher's; fixed: the largest within the budgets and teacher / 8",
    )
    sizing_max_candidates: int = Field(
        default=3,
        ge=1,
        le=6,
        description="Sizes trained at most by sizing auto: the fixed choice first, then a binary search below it "
        "(training time up to this many times a fixed-size run's when smaller sizes are tried)",
    )

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        if v not in METHODS:
            raise ValueError(f"unknown distillation method {v!r}; known: {', '.join(METHODS)}")
        return v


class PipelineSpec(BaseModel):
    """Inputs of one run: files on local disk, the resolved profile, the options."""

    model_config = ConfigDict(extra="forbid")

    teacher_path: Path
    data_path: Path | None
    profile: DeviceProfile
    options: JobOptions = Field(default_factory=JobOptions)
    out_dir: Path
    class_labels: list[str] | None = None
    # Resolved by the caller (CLI: paths as given; worker: fetched from the earlier job / dataset).
    init_from_path: Path | None = None  # the earlier student's fp32 ONNX file
    init_from_report: Path | None = None  # that run's report.json (the student's architecture)
    old_data_path: Path | None = None  # .npz with the earlier data (x, optionally y), or the earlier probe.npz
