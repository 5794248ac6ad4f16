from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from edgedistill.service.db.models import Artifact
from edgedistill.service.schemas.comparison import DeviceStatus


class ArtifactOut(BaseModel):
    id: str
    job_id: str
    kind: str
    filename: str
    size_bytes: int
    sha256: str
    metadata: dict[str, Any]
    created_at: datetime
    download_url: str
    device_status: list[DeviceStatus] = Field(
        default_factory=list,
        description="Each device's latest verdict: ok is false when its outputs disagree with the host's",
    )

    @classmethod
    def from_row(
        cls, row: Artifact, *, api_prefix: str = "/api/v1", device_status: list[DeviceStatus] | None = None
    ) -> ArtifactOut:
        return cls(
            id=row.id,
            job_id=row.job_id,
            kind=row.kind,
            filename=row.filename,
            size_bytes=row.size_bytes,
            sha256=row.sha256,
            metadata=row.metadata_ or {},
            created_at=row.created_at,
            download_url=f"{api_prefix}/artifacts/{row.id}/download",
            device_status=device_status or [],
        )
