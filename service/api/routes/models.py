"""Teacher model uploads."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from fastapi import APIRouter, HTTPException, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from service.api.deps import SessionDep, SettingsDep, StoreDep, TenantDep
from service.api.uploads import MULTIPART_OPENAPI, ReceivedUpload, receive_upload
from service.repos import models as repo
from service.repos.storage_refs import storage_key_in_use
from service.schemas.common import Page
from service.schemas.models import TeacherModelOut
from service.settings import Settings
from service.storage import ArtifactStore, StoredObject
from workers.formats import ModelFileError
from workers.pipeline.signature_readers import SignatureError, inspect_model

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
        413: {"description": "over the upload limit"},
        415: {"description": "not a supported model"},
        422: {"description": "a model whose inputs/outputs cannot be used (e.g. ONNX external data not uploaded)"},
    },
)
async def upload_model(
    request: Request, principal: TenantDep, session: SessionDep, settings: SettingsDep, store: StoreDep
) -> TeacherModelOut:
    """Upload a teacher: ONNX, TorchScript, a torch.export .pt2 or TFLite (pickles are refused). Its signature
    (every input and output: name, dtype, shape) is read from ONNX and TFLite files and shown in
    `signature`; TorchScript and .pt2 record it once a job has loaded the model."""
    upload, (fmt, signature), stored = await receive_checked(
        request, settings, store, inspect_model, ModelFileError, 415, {SignatureError: 422}
    )

    def create() -> TeacherModelOut:
        row = repo.create_model(
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
