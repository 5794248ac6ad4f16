"""Registered devices (the on-device agent's identity) and what a device token may see."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from edgedistill.service.db.models import Device
from edgedistill.service.schemas.artifacts import ArtifactOut

MAX_HARDWARE_JSON_BYTES = 16 * 1024


class DeviceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._ -]*$")
    profile: str = Field(min_length=1, max_length=64, description="Built-in or custom device profile name")
    hardware: dict[str, Any] = Field(
        default_factory=dict, description="Free-form facts (board, SoC, RAM...), at most 16 KiB of JSON"
    )


class DeviceOut(BaseModel):
    id: str
    name: str
    profile: str
    hardware: dict[str, Any]
    token_prefix: str = Field(description="The first characters of the device token, to tell tokens apart")
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: Device) -> DeviceOut:
        return cls(
            id=row.id,
            name=row.name,
            profile=row.profile_name,
            hardware=row.hardware or {},
            token_prefix=row.token_prefix,
            created_at=row.created_at,
            revoked_at=row.revoked_at,
        )


class DeviceCreated(DeviceOut):
    token: str = Field(description="The device token (Authorization: Bearer edd_...). Shown once, stored hashed.")


class DeviceSelf(DeviceOut):
    """GET /devices/me: what the agent needs to know about its own device and profile."""

    threads: int = Field(description="Benchmark threads from the profile")
    device_class: str
    latency_target_ms: float | None


class DeviceArtifactOut(ArtifactOut):
    """An artifact as the device's agent sees it: plus the job's probe file and task, and whether this
    device has measured it already."""

    profile: str
    task: str | None = Field(description="classification / regression, when the job's report says")
    probe_artifact_id: str | None = Field(description="The job's probe.npz (test inputs + host outputs)")
    measured: bool = Field(description="This device has posted a measurement for the artifact")
