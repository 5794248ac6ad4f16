from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from edgedistill.contracts.profiles.schema import DeviceProfile
from edgedistill.service.db.models import DeviceProfileRow


class DeviceProfileOut(BaseModel):
    name: str
    builtin: bool
    spec: dict[str, Any] = Field(description="The profile as validated by the engine's schema")
    created_at: datetime | None = None

    @classmethod
    def from_builtin(cls, profile: DeviceProfile) -> DeviceProfileOut:
        return cls(name=profile.name, builtin=True, spec=profile.as_yaml_dict())

    @classmethod
    def from_row(cls, row: DeviceProfileRow) -> DeviceProfileOut:
        return cls(name=row.name, builtin=False, spec=row.spec, created_at=row.created_at)
