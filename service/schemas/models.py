from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, ValidationError

from edgedistill.contracts.signature import ModelSignature
from edgedistill.service.db.models import TeacherModel


def stored_signature(row: TeacherModel) -> ModelSignature | None:
    """The recorded signature, or None when unknown or unreadable by this version (then it is not
    shown, and not checked at submit: the worker checks the real model)."""
    if row.signature is None:
        return None
    try:
        return ModelSignature.model_validate(row.signature)
    except ValidationError:
        return None


class TeacherModelOut(BaseModel):
    id: str
    name: str
    filename: str
    format: str
    size_bytes: int
    sha256: str
    signature: ModelSignature | None = Field(
        description="Every input and output (name, dtype, shape with the batch axis, None = dynamic), read "
        "from ONNX and TFLite files at upload; for .pt2 (as declared) and TorchScript (shapes and dtypes as "
        "run on that job's data: the file records none) once the first job has loaded the teacher, null until then"
    )
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
            signature=stored_signature(row),
            created_at=row.created_at,
        )
