"""Transfer data uploads (.npz)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from edgedistill.contracts.formats import DataFileError, check_npz
from edgedistill.service.api import quotas
from edgedistill.service.api.deps import SessionDep, SettingsDep, StoreDep, TenantDep
from edgedistill.service.api.routes.models import receive_checked
from edgedistill.service.api.uploads import MULTIPART_OPENAPI
from edgedistill.service.repos import datasets as repo
from edgedistill.service.repos import lifecycle
from edgedistill.service.schemas.common import Page
from edgedistill.service.schemas.datasets import DatasetOut, summary_dict

router = APIRouter(tags=["datasets"])


@router.post(
    "/datasets",
    status_code=201,
    response_model=DatasetOut,
    openapi_extra=MULTIPART_OPENAPI,
    responses={
        200: {"description": "this tenant uploaded the same bytes (sha256) before: the existing data set"},
        413: {"description": "over the upload limit"},
        415: {"description": "not sent as multipart/form-data"},
        422: {"description": "not a usable .npz"},
    },
)
async def upload_dataset(
    request: Request,
    response: Response,
    principal: TenantDep,
    session: SessionDep,
    settings: SettingsDep,
    store: StoreDep,
) -> DatasetOut:
    """Upload transfer data: an .npz with x (N, ...) and optionally labels y (N,)."""
    await run_in_threadpool(
        quotas.check_storage_before_upload, session, tenant_id=principal.tenant_id, settings=settings
    )
    upload, summary, stored = await receive_checked(request, settings, store, check_npz, DataFileError, 422)

    def create() -> DatasetOut:
        # a re-upload of bytes this tenant already has stores nothing new: no quota check
        if repo.find_dataset_by_sha256(session, tenant_id=principal.tenant_id, sha256=stored.sha256) is None:
            quotas.check_storage_after_upload(
                session, tenant_id=principal.tenant_id, settings=settings, store=store, stored=stored
            )
        row, created = repo.get_or_create_dataset(
            session,
            tenant_id=principal.tenant_id,
            name=(upload.fields.get("name") or upload.filename)[:255],
            filename=upload.filename,
            size_bytes=stored.size,
            sha256=stored.sha256,
            storage_key=stored.key,
            summary=summary_dict(summary),
        )
        session.commit()
        if not created:
            response.status_code = 200  # the same bytes were uploaded before: that record, not a copy
        return DatasetOut.from_row(row)

    return await run_in_threadpool(create)


@router.get("/datasets", response_model=Page[DatasetOut])
def list_datasets(
    principal: TenantDep,
    session: SessionDep,
    cursor: str | None = None,
    limit: int = Query(50, ge=1, le=200),
) -> Page[DatasetOut]:
    page = repo.list_datasets(session, tenant_id=principal.tenant_id, cursor=cursor, limit=limit)
    return Page(items=[DatasetOut.from_row(d) for d in page.items], next_cursor=page.next_cursor)


@router.get("/datasets/{dataset_id}", response_model=DatasetOut)
def get_dataset(dataset_id: str, principal: TenantDep, session: SessionDep) -> DatasetOut:
    row = repo.get_dataset(session, tenant_id=principal.tenant_id, dataset_id=dataset_id)
    if row is None:
        raise HTTPException(404, f"dataset {dataset_id} not found")
    return DatasetOut.from_row(row)


@router.delete("/datasets/{dataset_id}", status_code=204, responses={409: {"description": "used by an active job"}})
def delete_dataset(dataset_id: str, principal: TenantDep, session: SessionDep, store: StoreDep) -> Response:
    """Delete a dataset and, when no other row references the same content, its stored file."""
    keys = lifecycle.delete_dataset(session, tenant_id=principal.tenant_id, dataset_id=dataset_id)
    session.commit()
    lifecycle.release_objects(session, store, keys)
    return Response(status_code=204)
