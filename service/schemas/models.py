from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from service.db.models import TeacherModel


class TeacherModelOut(BaseModel):
    id: str
    name: str
    filename: str
    format: str
    size_bytes: int
    sha256: str
    signature: dict[str, Any] | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: TeacherModel) -> TeacherModelOut:
        return cls(
            id=row.id,
            name=row.name,
            filename=row.filename,
            format=row.format,
            size_bytes=row.size_bytes,
            sha256=row.sha256,
            signature=row.signature,
            created_at=row.created_at,
        )
