"""Teacher model uploads."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from fastapi import APIRouter, HTTPException, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from edgedistill.contracts.formats import ModelFileError
from edgedistill.contracts.signature_readers import SignatureError, inspect_model
from edgedistill.service.api import quotas
from edgedistill.service.api.deps import SessionDep, SettingsDep, StoreDep, TenantDep
from edgedistill.service.api.uploads import MULTIPART_OPENAPI, ReceivedUpload, receive_upload
from edgedistill.service.repos import models as repo
from edgedistill.service.repos.storage_refs import storage_key_in_use
from edgedistill.service.schemas.common import Page
from edgedistill.service.schemas.models import TeacherModelOut
from edgedistill.service.settings import Settings
from edgedistill.service.storage import ArtifactStore, StoredObject

router = APIRouter(tags=["models"])

R = TypeVar("R")


async def receive_checked(
    request: Request,
    settings: Settings,
    store: ArtifactStore,
    check: Callable[[Path], R],
    error: type[Exception],
    status: int,
    more_errors: Mapping[type[Exception], int] | None = None,
) -> tuple[ReceivedUpload, R, StoredObject]:
    """Receive the upload, run check(path) on it (415/422 with its message when it refuses the file;
    more_errors maps other refusals to their status), then move it into the store. A refused upload
    is never stored."""
    upload = await receive_upload(
        request,
        max_bytes=settings.max_upload_bytes,
        tmp_dir=settings.upload_tmp_dir,
        chunk_bytes=settings.upload_chunk_bytes,
    )
    try:
        refusals: dict[type[Exception], int] = {**(more_errors or {}), error: status}
        try:
            result = await run_in_threadpool(check, upload.path)
        except tuple(refusals) as exc:
            code = next(c for kind, c in refusals.items() if isinstance(exc, kind))
            raise HTTPException(code, str(exc)) from exc
        stored = await run_in_threadpool(store.put_file, upload.path, sha256=upload.sha256, move=True)
    finally:
        upload.cleanup()
    return upload, result, stored


@router.post(
    "/models",
    status_code=201,
    response_model=TeacherModelOut,
    openapi_extra=MULTIPART_OPENAPI,
    responses={
        200: {"description": "this tenant uploaded the same bytes (sha256) before: the existing model"},
        413: {"description": "over the upload limit"},
        415: {"description": "not a supported model"},
        422: {"description": "a model whose inputs/outputs cannot be used (e.g. ONNX external data not uploaded)"},
    },
)
async def upload_model(
    request: Request,
    response: Response,
    principal: TenantDep,
    session: SessionDep,
    settings: SettingsDep,
    store: StoreDep,
) -> TeacherModelOut:
    """Upload a teacher: ONNX, TorchScript, a torch.export .pt2 or TFLite (pickles are refused). Its signature
    (every input and output: name, dtype, shape) is read from ONNX and TFLite files and shown in
    `signature`; TorchScript and .pt2 record it once a job has loaded the model."""
    await run_in_threadpool(
        quotas.check_storage_before_upload, session, tenant_id=principal.tenant_id, settings=settings
    )
    upload, (fmt, signature), stored = await receive_checked(
        request, settings, store, inspect_model, ModelFileError, 415, {SignatureError: 422}
    )

    def create() -> TeacherModelOut:
        # a re-upload of bytes this tenant already has stores nothing new: no quota check
        if repo.find_model_by_sha256(session, tenant_id=principal.tenant_id, sha256=stored.sha256) is None:
            quotas.check_storage_after_upload(
                session, tenant_id=principal.tenant_id, settings=settings, store=store, stored=stored
            )
        row, created = repo.get_or_create_model(
            session,
            tenant_id=principal.tenant_id,
            name=(upload.fields.get("name") or upload.filename)[:255],
            filename=upload.filename,
            format=fmt,
            size_bytes=stored.size,
            sha256=stored.sha256,
            storage_key=stored.key,
            signature=signature.model_dump(mode="json") if signature is not None else None,
        )
        session.commit()
        if not created:
            response.status_code = 200  # the same bytes were uploaded before: that record, not a copy
        return TeacherModelOut.from_row(row)

    return await run_in_threadpool(create)


@router.get("/models", response_model=Page[TeacherModelOut])
def list_models(
    principal: TenantDep,
    session: SessionDep,
    cursor: str | None = None,
    limit: int = Query(50, ge=1, le=200),
) -> Page[TeacherModelOut]:
    page = repo.list_models(session, tenant_id=principal.tenant_id, cursor=cursor, limit=limit)
    return Page(items=[TeacherModelOut.from_row(m) for m in page.items], next_cursor=page.next_cursor)


@router.get("/models/{model_id}", response_model=TeacherModelOut)
def get_model(model_id: str, principal: TenantDep, session: SessionDep) -> TeacherModelOut:
    row = repo.get_model(session, tenant_id=principal.tenant_id, model_id=model_id)
    if row is None:
        raise HTTPException(404, f"model {model_id} not found")
    return TeacherModelOut.from_row(row)


@router.delete("/models/{model_id}", status_code=204, responses={409: {"description": "used by an active job"}})
def delete_model(model_id: str, principal: TenantDep, session: SessionDep, store: StoreDep) -> Response:
    row = repo.delete_model(session, tenant_id=principal.tenant_id, model_id=model_id)
    session.commit()
    if not storage_key_in_use(session, key=row.storage_key):
        store.delete(row.storage_key)
    return Response(status_code=204)
