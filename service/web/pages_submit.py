"""New job: upload a teacher and transfer data (or pick earlier uploads), pick a device profile and
options, submit. Uploads go through the same checks and store as the API's; the job is submitted by
the API's own submit function, so rate limits, queue routing and idempotency are the same."""

from __future__ import annotations

import hashlib
import secrets
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import anyio
from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData, UploadFile

from edgedistill.contracts.errors import InputError
from edgedistill.contracts.formats import DataFileError, check_npz
from edgedistill.contracts.profiles import builtin_profiles
from edgedistill.contracts.signature_readers import inspect_model
from edgedistill.contracts.spec import JobOptions
from edgedistill.service.api.deps import SessionDep, SettingsDep, StoreDep
from edgedistill.service.api.routes.jobs import submit_job
from edgedistill.service.api.uploads import safe_filename
from edgedistill.service.fileperms import open_private, private_dir
from edgedistill.service.repos import datasets as datasets_repo
from edgedistill.service.repos import models as models_repo
from edgedistill.service.repos import profiles as profiles_repo
from edgedistill.service.repos.errors import Conflict
from edgedistill.service.schemas.datasets import summary_dict
from edgedistill.service.schemas.jobs import JobCreate
from edgedistill.service.settings import Settings
from edgedistill.service.storage import ArtifactStore
from edgedistill.service.web import auth, forms
from edgedistill.service.web.auth import UserDep, WebUser
from edgedistill.service.web.templating import fmt_bytes, render

router = APIRouter(include_in_schema=False)

CHUNK = 1024 * 1024
PICK_LIMIT = 100


def _defaults() -> dict[str, str]:
    d = JobOptions()
    values = {
        "epochs": str(d.epochs),
        "accuracy_budget_pp": f"{d.accuracy_budget_pp:g}",
        "quality_target": f"{d.quality_target:g}",
        "method": d.method,
        "temperature": f"{d.temperature:g}",
        "alpha": f"{d.alpha:g}",
        "student_mode": "auto",
        "family": d.student.family,
        "student_width": "",
        "student_depth": "",
        "task": d.task,
        "batch_size": str(d.batch_size),
        "learning_rate": f"{d.learning_rate:g}",
        "patience": str(d.patience),
        "seed": str(d.seed),
        "calibration": d.calibration,
        "calibration_samples": str(d.calibration_samples),
        "benchmark_runs": str(d.benchmark_runs),
        "device": d.device,
        "qat": str(getattr(d, "qat", "")),
    }
    return values


def _form_context(
    session: Session,
    user: WebUser,
    values: dict[str, Any],
    errors: dict[str, str],
    notes: list[str] | None = None,
) -> dict[str, Any]:
    models = models_repo.list_models(session, tenant_id=user.tenant_id, limit=PICK_LIMIT).items
    datasets = datasets_repo.list_datasets(session, tenant_id=user.tenant_id, limit=PICK_LIMIT).items
    custom = profiles_repo.list_custom_profiles(session, tenant_id=user.tenant_id)
    return {
        "title": "New job",
        "values": values,
        "errors": errors,
        "notes": notes or [],
        "models": models,
        "datasets": datasets,
        "builtin": list(builtin_profiles().values()),
        "custom": custom,
        "methods": forms.METHODS,
        "families": forms.FAMILIES,
        "has_qat": "qat" in JobOptions.model_fields,
        "advanced_open": any(name in errors for name in forms.ADVANCED_FIELDS),
        "error_order": [
            name
            for name in (
                "form",
                "teacher",
                "data",
                "device_profile",
                *forms.OPTION_FIELDS,
                "qat",
                "webhook_url",
            )
            if name in errors
        ],
    }


@router.get("/ui/jobs/new")
def new_job_form(
    request: Request, user: UserDep, session: SessionDep, model_id: str | None = None, dataset_id: str | None = None
) -> Response:
    values: dict[str, Any] = {
        **_defaults(),
        "model_id": model_id or "",
        "dataset_id": dataset_id or "",
        "device_profile": "",
        "webhook_url": "",
        "idempotency_key": secrets.token_urlsafe(16),
    }
    return render(request, "new_job.html", _form_context(session, user, values, {}))


@dataclass
class _Staged:
    path: Path
    filename: str
    size: int
    sha256: str

    def cleanup(self) -> None:
        shutil.rmtree(self.path.parent, ignore_errors=True)


def _stage(upload: UploadFile, tmp_dir: Path, max_bytes: int) -> _Staged:
    """Copy a received form file into the upload staging folder (beside the store), hashing it and
    counting its bytes as they are copied (a chunked body declares no size): over max_bytes, the copy
    stops and nothing is kept. Leftovers of a killed process are swept at start (sweep_stale_staging)."""
    private_dir(tmp_dir)
    folder = Path(tempfile.mkdtemp(dir=tmp_dir, prefix="web-upload-"))
    name = safe_filename(upload.filename or "", "upload.bin")
    path = folder / name
    digest = hashlib.sha256()
    size = 0
    src: BinaryIO = upload.file
    src.seek(0)
    try:
        with open_private(path) as out:
            while chunk := src.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise ValueError(f"The file is larger than the {fmt_bytes(max_bytes)} upload limit.")
                digest.update(chunk)
                out.write(chunk)
            out.flush()
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return _Staged(path=path, filename=name, size=size, sha256=digest.hexdigest())


def _file(form: FormData, name: str) -> UploadFile | None:
    value = form.get(name)
    if isinstance(value, UploadFile) and (value.filename or (value.size or 0) > 0):
        return value
    return None


def _receive(
    upload: UploadFile,
    settings: Settings,
    store: ArtifactStore,
    check: Callable[[Path], Any],
    error: type[Exception],
) -> tuple[_Staged, Any, Any]:
    """Stage, check and store one uploaded file (like the API's receive_checked); raises ValueError
    with a message for the form when the file is refused."""
    if upload.size is not None and upload.size > settings.max_upload_bytes:
        raise ValueError(f"The file is larger than the {fmt_bytes(settings.max_upload_bytes)} upload limit.")
    staged = _stage(upload, settings.upload_tmp_dir, settings.max_upload_bytes)
    try:
        if staged.size == 0:
            raise ValueError("The file is empty.")
        if staged.size > settings.max_upload_bytes:
            raise ValueError(f"The file is larger than the {fmt_bytes(settings.max_upload_bytes)} upload limit.")
        try:
            result = check(staged.path)
        except error as exc:
            raise ValueError(str(exc)) from exc
        stored = store.put_file(staged.path, sha256=staged.sha256, move=True)
    finally:
        staged.cleanup()
    return staged, result, stored


def body_limit(settings: Settings) -> int:
    """The most a New job form may send: two files of max_upload_bytes and the form around them."""
    return 2 * settings.max_upload_bytes + 1024 * 1024


@router.post("/ui/jobs/new")
async def submit(
    request: Request,
    user: UserDep,
    session: SessionDep,
    settings: SettingsDep,
    store: StoreDep,
) -> Response:
    declared = request.headers.get("content-length")
    limit = body_limit(settings)
    if declared and declared.isdigit() and int(declared) > limit:
        return render(
            request,
            "error.html",
            {
                "title": "Upload too large",
                "code": 413,
                "message": f"Each file may be at most {fmt_bytes(settings.max_upload_bytes)}.",
            },
            status_code=413,
        )
    auth.check_origin(request)  # before reading a large body; the token is checked once it is parsed
    form = await request.form(max_files=4, max_fields=64)
    try:
        auth.check_csrf(request, str(form.get(auth.CSRF_FIELD) or ""))
        return await anyio.to_thread.run_sync(_submit_sync, request, form, user, session, settings, store)
    finally:
        await form.close()


def _submit_sync(
    request: Request, form: FormData, user: WebUser, session: Session, settings: Settings, store: ArtifactStore
) -> Response:
    text = {k: v for k, v in form.items() if isinstance(v, str)}
    values: dict[str, Any] = {**_defaults(), **{k: v.strip() for k, v in text.items() if k != auth.CSRF_FIELD}}
    values.setdefault("model_id", "")
    values.setdefault("dataset_id", "")
    values.setdefault("device_profile", "")
    values.setdefault("webhook_url", "")
    values.setdefault("idempotency_key", secrets.token_urlsafe(16))
    errors: dict[str, str] = {}
    notes: list[str] = []

    parsed = forms.job_options(text)
    errors.update(parsed.errors)
    profile_name = values["device_profile"]
    if not profile_name:
        errors["device_profile"] = "Choose the device the student will run on."
    elif profiles_repo.resolve_profile(session, tenant_id=user.tenant_id, name=profile_name) is None:
        errors["device_profile"] = f"Unknown device profile {profile_name!r}."

    # Files: store each accepted one (and select it), so a mistake elsewhere never costs a re-upload.
    teacher_file, data_file = _file(form, "teacher_file"), _file(form, "data_file")
    if teacher_file is not None:
        try:
            staged, (fmt, signature), stored = _receive(teacher_file, settings, store, inspect_model, InputError)
        except ValueError as exc:
            errors["teacher"] = str(exc)
        else:
            row, created = models_repo.get_or_create_model(
                session,
                tenant_id=user.tenant_id,
                name=staged.filename[:255],
                filename=staged.filename,
                format=fmt,
                size_bytes=stored.size,
                sha256=stored.sha256,
                storage_key=stored.key,
                signature=signature.model_dump(mode="json") if signature is not None else None,
            )
            session.commit()
            values["model_id"] = row.id
            done = "uploaded" if created else "was uploaded before (same sha256)"
            notes.append(f"Teacher {row.name} {done} ({fmt_bytes(row.size_bytes)}); it is selected below.")
    elif not values["model_id"]:
        errors["teacher"] = "Upload a teacher model (ONNX, TorchScript or .pt2) or pick one uploaded before."
    elif models_repo.get_model(session, tenant_id=user.tenant_id, model_id=values["model_id"]) is None:
        errors["teacher"] = "That teacher is no longer available; upload it again."
        values["model_id"] = ""

    if data_file is not None:
        try:
            staged, summary, stored = _receive(data_file, settings, store, check_npz, DataFileError)
        except ValueError as exc:
            errors["data"] = str(exc)
        else:
            drow, dcreated = datasets_repo.get_or_create_dataset(
                session,
                tenant_id=user.tenant_id,
                name=staged.filename[:255],
                filename=staged.filename,
                size_bytes=stored.size,
                sha256=stored.sha256,
                storage_key=stored.key,
                summary=summary_dict(summary),
            )
            session.commit()
            values["dataset_id"] = drow.id
            done = "uploaded" if dcreated else "was uploaded before (same sha256)"
            notes.append(f"Transfer set {drow.name} {done} ({fmt_bytes(drow.size_bytes)}); it is selected below.")
    elif not values["dataset_id"]:
        if values.get("method") not in forms.DATA_FREE_METHODS:
            errors["data"] = "Upload transfer data (.npz with x, and y if you have labels) or pick one uploaded before."
    elif datasets_repo.get_dataset(session, tenant_id=user.tenant_id, dataset_id=values["dataset_id"]) is None:
        errors["data"] = "That transfer set is no longer available; upload it again."
        values["dataset_id"] = ""

    webhook = values["webhook_url"] or None
    body: JobCreate | None = None
    if not errors:
        try:
            body = JobCreate(
                model_id=values["model_id"],
                dataset_id=values["dataset_id"] or None,
                device_profile=profile_name,
                options=parsed.values["options"],
                webhook_url=webhook,
            )
        except ValidationError as exc:  # only the webhook URL can still be wrong here
            errors.update(forms.errors_by_field(exc, {"webhook_url": ("webhook_url",)}, "webhook_url"))
    if body is None or errors:
        return _rerender(request, session, user, values, errors, notes)

    key: str | None = values["idempotency_key"][:255] or None
    for _attempt in range(2):
        try:
            job = submit_job(
                body,
                Response(),
                user.principal(),
                session,
                settings,
                request.app.state.queue,
                request.app.state.submit_limiter,
                idempotency_key=key,
            )
        except Conflict:
            session.rollback()
            key = None  # the key was used for another request (the back button): submit as a new job
            continue
        except HTTPException as exc:
            errors["form"] = str(exc.detail)
        except RequestValidationError as exc:
            for err in exc.errors():
                name = _error_field([str(p) for p in err.get("loc", ()) if p != "body"])
                # Several teacher/data mismatches can concern one field: show them all there.
                errors[name] = f"{errors[name]} {err.get('msg')}" if name in errors else str(err.get("msg"))
        break
    else:  # pragma: no cover - the second attempt has no key, so no Conflict
        errors["form"] = "The job could not be submitted; try again."
    if errors:
        return _rerender(request, session, user, values, errors, notes)
    return RedirectResponse(f"/ui/jobs/{job.id}", status_code=303)


# Request fields the submit checks name (service.api.teacher_checks) -> the form field they concern.
_REQUEST_FIELDS = {"model_id": "teacher", "dataset_id": "data", "device_profile": "device_profile"}


def _error_field(loc: list[str]) -> str:
    """The form field to show a submit error next to, from its location in the job request."""
    if not loc:
        return "form"
    if loc[0] in _REQUEST_FIELDS:
        return _REQUEST_FIELDS[loc[0]]
    if loc[-1:] == ["device"]:
        return "device"
    if loc[:1] == ["options"] and len(loc) > 1 and loc[1] in forms.OPTION_FIELDS:
        return loc[1]  # options.method -> the method select
    return loc[0] if loc[0] in forms.OPTION_FIELDS else "form"


def _rerender(
    request: Request,
    session: Session,
    user: WebUser,
    values: dict[str, Any],
    errors: dict[str, str],
    notes: list[str],
) -> Response:
    return render(request, "new_job.html", _form_context(session, user, values, errors, notes), status_code=422)
