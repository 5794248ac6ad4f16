"""What a pipeline run is asked to do. Pure pydantic: the API validates job options with these
same models, so it never imports the ML code."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from workers.profiles.schema import DeviceProfile


class LossTerm(BaseModel):
    """One weighted term of the distillation loss, looked up by key in the loss registry."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=64)
    weight: float = Field(default=1.0, ge=0, le=1000)
    kwargs: dict[str, Any] = Field(default_factory=dict)


class StudentOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # None = chosen automatically to fit the profile's budgets.
    width: int | None = Field(default=None, ge=4, le=1024, description="Channels (CNN) or hidden units (MLP)")
    depth: int | None = Field(default=None, ge=1, le=16, description="Blocks (CNN) or hidden layers (MLP)")


class JobOptions(BaseModel):
    """User-facing knobs of a compression job. Every field has a safe default and hard bounds."""

    model_config = ConfigDict(extra="forbid")

    method: str = Field(default="kd", min_length=1, max_length=64, description="Distillation method")
    task: Literal["auto", "classification", "regression"] = Field(
        default="auto",
        description="auto: classification when labels are integers or the teacher has several outputs",
    )
    losses: list[LossTerm] | None = Field(default=None, max_length=16, description="Explicit weighted loss terms")
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
    benchmark_runs: int = Field(default=200, ge=1, le=100_000)
    benchmark_warmup: int = Field(default=20, ge=0, le=10_000)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_train_seconds: float | None = Field(default=None, gt=0, le=7 * 24 * 3600)


class PipelineSpec(BaseModel):
    """Inputs of one run: files on local disk, the resolved profile, the options."""

    model_config = ConfigDict(extra="forbid")

    teacher_path: Path
    data_path: Path | None
    profile: DeviceProfile
    options: JobOptions = Field(default_factory=JobOptions)
    out_dir: Path
    class_labels: list[str] | None = None
