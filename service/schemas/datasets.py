from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from edgedistill.contracts.formats import NpzSummary
from edgedistill.service.db.models import Dataset


class DatasetOut(BaseModel):
    id: str
    name: str
    filename: str
    size_bytes: int
    sha256: str
    summary: dict[str, Any]
    created_at: datetime

    @classmethod
    def from_row(cls, row: Dataset) -> DatasetOut:
        return cls(
            id=row.id,
            name=row.name,
            filename=row.filename,
            size_bytes=row.size_bytes,
            sha256=row.sha256,
            summary=row.summary,
            created_at=row.created_at,
        )


def summary_dict(summary: NpzSummary) -> dict[str, Any]:
    """What the dataset row keeps about an .npz: read from headers only, no array data."""
    return {
        "keys": list(summary.keys),
        "input_keys": list(summary.input_keys),  # arrays a teacher input may be fed from
        "shapes": {k: list(a.shape) for k, a in summary.arrays.items()},
        "dtypes": {k: a.dtype for k, a in summary.arrays.items()},
        "num_samples": summary.n_samples,
        "has_labels": summary.has_labels,
        "x_shape": list(summary.x_shape),
        "x_dtype": summary.x_dtype,
        "y_dtype": summary.y_dtype,
    }
