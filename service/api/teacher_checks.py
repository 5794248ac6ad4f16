"""Submit-time checks of a job against its teacher's recorded signature and its data set's recorded
summary (both read at upload), so a job that cannot run is refused with a 422 before it is queued.

The API and the dashboard (which submits through the API's submit function) share this."""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError

from edgedistill.contracts.formats import NON_INPUT_KEYS
from edgedistill.contracts.spec import JobOptions
from edgedistill.contracts.submit_checks import DataArrays, SubmitProblem, submit_problems
from edgedistill.service.db.models import Dataset, TeacherModel
from edgedistill.service.schemas.models import stored_signature


def dataset_arrays(summary: dict[str, Any]) -> DataArrays | None:
    """The data set's input arrays (key -> (shape with N, dtype)) from its summary; None when the
    summary predates recording them."""
    shapes, dtypes = summary.get("shapes"), summary.get("dtypes")
    if not isinstance(shapes, dict) or not isinstance(dtypes, dict):
        return None
    keys = summary.get("input_keys")
    if not isinstance(keys, list):
        keys = [k for k in shapes if k not in NON_INPUT_KEYS]
    return {str(k): (tuple(int(d) for d in shapes[k]), str(dtypes[k])) for k in keys if k in shapes and k in dtypes}


def job_problems(model: TeacherModel, dataset: Dataset | None, options: JobOptions) -> list[SubmitProblem]:
    # A TorchScript signature is what an earlier job's data looked like (the file records no shapes):
    # shown, not held against new data; the worker checks the teacher on each job's data.
    signature = None if model.format == "torchscript" else stored_signature(model)
    return submit_problems(
        signature,
        model_format=model.format,
        data=dataset_arrays(dataset.summary) if dataset is not None else None,
        options=options,
        has_data=dataset is not None,
    )


def check_job_against_teacher(model: TeacherModel, dataset: Dataset | None, options: JobOptions) -> None:
    """Raise a 422 (RequestValidationError) with one entry per problem, located at the request field
    it concerns (dataset_id, options.outputs.NAME, options.method, ...)."""
    problems = job_problems(model, dataset, options)
    if problems:
        raise RequestValidationError(
            [{"loc": ("body", *p.loc), "msg": p.message, "type": "teacher_mismatch"} for p in problems]
        )
