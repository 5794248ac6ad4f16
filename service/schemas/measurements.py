from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from edgedistill.contracts.strictness import refuse_boolean_numbers
from edgedistill.service.db.models import LatencyMeasurement


def _non_finite_path(value: Any, path: str) -> str | None:
    """Where in a JSON value a NaN or infinity sits (Python's json reads NaN/Infinity literals)."""
    if isinstance(value, float) and not math.isfinite(value):
        return path
    if isinstance(value, dict):
        return next((p for k, v in value.items() if (p := _non_finite_path(v, f"{path}.{k}"))), None)
    if isinstance(value, list):
        return next((p for i, v in enumerate(value) if (p := _non_finite_path(v, f"{path}[{i}]"))), None)
    return None


class MeasurementCreate(BaseModel):
    # allow_inf_nan=False: "max_abs_diff": Infinity would be stored and judged as within any threshold.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    source: Literal["host", "device"]
    device_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="Required with an API key; with a device token the device's registered name is used",
    )
    runtime: str = Field(min_length=1, max_length=64, description="e.g. onnxruntime, tflite, tflm")
    runtime_version: str = Field(min_length=1, max_length=64)
    threads: int = Field(ge=1, le=1024)
    count: int = Field(ge=1, le=10_000_000, description="Timed runs")
    p50_ms: float = Field(ge=0, le=3_600_000)
    p90_ms: float = Field(ge=0, le=3_600_000)
    p99_ms: float = Field(ge=0, le=3_600_000)
    mean_ms: float = Field(ge=0, le=3_600_000)
    std_ms: float | None = Field(default=None, ge=0, le=3_600_000)
    agreement: float | None = Field(default=None, ge=0, le=1, description="Top-1 agreement with the reference")
    max_abs_diff: float | None = Field(default=None, ge=0)
    peak_rss_bytes: int | None = Field(default=None, ge=0, le=2**50)
    # Strict: 0/1 or "yes" would be coerced silently, and the schema promises a JSON boolean.
    estimated: StrictBool = Field(default=False, description="True for a cycle-count estimate (MCU), not a timing")
    extra: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _no_boolean_numbers(cls, data: Any) -> Any:
        return refuse_boolean_numbers(cls, data)

    @field_validator("extra")
    @classmethod
    def _finite_extra(cls, value: dict[str, Any]) -> dict[str, Any]:
        where = _non_finite_path(value, "extra")
        if where is not None:
            raise ValueError(f"{where} is not a finite number (NaN and infinities are refused)")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> MeasurementCreate:
        if not self.p50_ms <= self.p90_ms <= self.p99_ms:
            raise ValueError("percentiles must be ordered: p50_ms <= p90_ms <= p99_ms")
        return self


class MeasurementOut(BaseModel):
    id: str
    artifact_id: str
    source: str
    device_id: str | None
    device_name: str
    runtime: str
    runtime_version: str
    threads: int
    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float | None
    agreement: float | None
    max_abs_diff: float | None
    peak_rss_bytes: int | None
    estimated: bool
    extra: dict[str, Any]
    created_at: datetime

    @classmethod
    def from_row(cls, row: LatencyMeasurement) -> MeasurementOut:
        return cls.model_validate({name: getattr(row, name) for name in cls.model_fields})
