"""Device profile schema: the one pydantic model that built-in YAML profiles and users' custom
profiles are validated against. Pure data, safe to import from the API process."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

from edgedistill.contracts import artifact_kinds
from edgedistill.contracts.artifact_kinds import DeviceClass
from edgedistill.contracts.strictness import refuse_boolean_numbers

__all__ = ["TARGETS", "Budgets", "DeviceClass", "DeviceProfile", "TargetFormat"]

# The export targets a profile may ask for: the artifact-kind registry's, so a new kind needs no edit here.
TARGETS: tuple[str, ...] = artifact_kinds.targets()


def _known_target(value: str) -> str:
    if value not in TARGETS:
        raise ValueError(f"unknown target {value!r}; one of {', '.join(TARGETS)}")
    return value


TargetFormat = Annotated[str, AfterValidator(_known_target), WithJsonSchema({"type": "string", "enum": list(TARGETS)})]

# Smallest budgets any real student can meet: a few hundred int8 weights plus TFLM's overhead.
MIN_FLASH_BYTES = 4 * 1024
MIN_RAM_BYTES = 2 * 1024


class Budgets(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_model_bytes: int = Field(gt=0, le=16 * 1024**3, description="Largest int8 artifact (flash) in bytes")
    max_ram_bytes: int | None = Field(
        default=None, gt=0, le=64 * 1024**3, description="RAM / TFLM tensor arena budget in bytes"
    )
    max_macs: int | None = Field(default=None, gt=0, le=10**13, description="Max multiply-accumulates")
    latency_target_ms: float | None = Field(default=None, gt=0, le=3_600_000)


class DeviceProfile(BaseModel):
    """What a target device can hold and run, and which artifacts it needs."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$")
    description: str = Field(default="", max_length=500)
    device_class: DeviceClass = Field(alias="class")
    targets: list[TargetFormat] = Field(min_length=1)
    int8_scheme: Literal["qdq_per_channel", "full_int8", "int8_float_io"]
    budgets: Budgets
    threads: int = Field(default=1, ge=1, le=256)
    # MCU latency estimate: cycles per MAC and clock, documented per built-in profile.
    clock_hz: int | None = Field(default=None, gt=0, le=10**11)
    cycles_per_mac: float | None = Field(default=None, gt=0, le=1000)
    # TFLM builtin op names (as in the schema, e.g. CONV_2D) the firmware has registered.
    op_allowlist: list[str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_boolean_numbers(cls, data: Any) -> Any:
        return refuse_boolean_numbers(cls, data)

    @model_validator(mode="after")
    def _consistent(self) -> DeviceProfile:
        b = self.budgets
        # Budgets no student of any device class can meet are refused here (422 from the API), not after
        # a job has queued and trained.
        if b.max_model_bytes < MIN_FLASH_BYTES:
            raise ValueError(f"budgets.max_model_bytes={b.max_model_bytes} is below {MIN_FLASH_BYTES}: no model fits")
        if b.max_ram_bytes is not None and b.max_ram_bytes < MIN_RAM_BYTES:
            raise ValueError(f"budgets.max_ram_bytes={b.max_ram_bytes} is below {MIN_RAM_BYTES}: no arena fits")
        if self.device_class == "mcu":
            if b.max_ram_bytes is None:
                raise ValueError("an mcu profile needs budgets.max_ram_bytes (the tensor arena budget)")
            if "tflite_int8_full" not in self.targets:
                raise ValueError("an mcu profile must target tflite_int8_full")
            if self.int8_scheme != "full_int8":
                raise ValueError("an mcu profile needs int8_scheme full_int8 (int8 input and output)")
            if not self.op_allowlist:
                raise ValueError("an mcu profile needs op_allowlist (the TFLM ops its firmware registers)")
        if "c_array" in self.targets and "tflite_int8_full" not in self.targets:
            raise ValueError("target c_array is built from tflite_int8_full: add it to targets")
        return self

    def as_yaml_dict(self) -> dict[str, object]:
        return self.model_dump(by_alias=True, exclude_none=True)
