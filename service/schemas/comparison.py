"""Host vs device: per-device verdicts on an artifact and the comparison behind
GET /artifacts/{id}/measurements and the report's `devices` section."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from edgedistill.service.schemas.measurements import MeasurementOut


class Thresholds(BaseModel):
    min_agreement: float = Field(description="Top-1 agreement with the host outputs below this fails")
    max_abs_diff: float | None = Field(description="Max |device - host| output difference above this fails")
    max_rel_diff: float | None = Field(description="Max difference / max |host output| above this fails")


class DeviceStatus(BaseModel):
    """The latest device measurement's verdict: ok is False when the artifact computed something other
    than the host did on that device."""

    device_id: str | None
    device: str
    measurement_id: str
    measured_at: datetime
    runtime: str
    agreement: float | None
    max_abs_diff: float | None
    ok: bool | None = Field(description="null when the measurement carries no agreement or max_abs_diff")
    reasons: list[str] = Field(description="Why ok is false; empty otherwise")


class HostFigures(BaseModel):
    measurement_id: str
    runtime: str
    runtime_version: str
    threads: int
    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    meets_target: bool | None = Field(description="p50 <= the profile's latency_target_ms; null without a target")


class DeviceComparison(DeviceStatus):
    runtime_version: str
    threads: int
    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float | None
    peak_rss_bytes: int | None
    estimated: bool
    latency_ratio: float | None = Field(description="device p50 / host p50; above 1 the device is slower")
    meets_target: bool | None = Field(description="p50 <= the profile's latency_target_ms; null without a target")
    facts: dict[str, Any] = Field(description="What the agent reported about the device (extra.device)")


class McuEstimate(BaseModel):
    estimated: bool = True
    estimated_ms: float
    formula: str
    inputs: dict[str, Any]
    cycles_per_mac_source: str = Field(description="Where the profile's cycles_per_mac figure comes from")
    meets_target: bool | None


class McuFigures(BaseModel):
    """No board here: figures from the host run of the real TFLite Micro interpreter plus an estimate."""

    tflm_host_run: dict[str, Any] | None = Field(description="The TFLM interpreter on the host: quality, agreement")
    arena_bytes: int | None = Field(description="Exact tensor-arena bytes TFLM allocated (RecordingMicroAllocator)")
    arena: dict[str, Any] | None = Field(description="Arena reservation with margin, as budgeted")
    estimated_latency: McuEstimate | None


class ArtifactComparison(BaseModel):
    artifact_id: str
    job_id: str
    kind: str
    profile: str
    latency_target_ms: float | None
    thresholds: Thresholds
    host: HostFigures | None
    devices: list[DeviceComparison] = Field(description="The latest measurement of each device")
    mcu: McuFigures | None = Field(description="MCU profiles only")
    failing_on: list[str] = Field(description="Devices on which the artifact's outputs disagree with the host")
    measurements: list[MeasurementOut] = Field(description="One page of the artifact's measurements, newest first")
    next_cursor: str | None = Field(default=None, description="Pass as ?cursor= for the next page")


class ArtifactDevices(BaseModel):
    """One artifact in the report's `devices` section: its comparison without the page of rows."""

    artifact_id: str
    kind: str
    latency_target_ms: float | None
    host: HostFigures | None
    devices: list[DeviceComparison] = Field(description="The latest measurement of each device")
    mcu: McuFigures | None = Field(description="MCU profiles only")
    failing_on: list[str] = Field(description="Devices on which the artifact's outputs disagree with the host")
    next_cursor: str | None = Field(default=None, description="GET /artifacts/{id}/measurements?cursor= continues")


class FailingDevice(BaseModel):
    kind: str
    device: str
    reasons: list[str]


class DevicesSection(BaseModel):
    """GET /jobs/{id}/report's `devices`: host vs each registered device for every artifact of the job,
    judged when read (service/comparison.py)."""

    judged: str = Field(description="How and when the verdicts were made")
    thresholds: Thresholds
    latency_target_ms: float | None
    artifacts: dict[str, ArtifactDevices] = Field(description="Artifact kind -> its devices")
    failing: list[FailingDevice] = Field(description="Every device on which an artifact computes something else")
