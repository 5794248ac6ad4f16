"""Artifacts of a job and their download (ETag, Range, conditional requests)."""

from __future__ import annotations

import logging
from urllib.parse import quote

from fastapi import APIRouter, Header, HTTPException, Response
from fastapi.responses import StreamingResponse

from edgedistill.service.api.deps import SessionDep, SettingsDep, StoreDep, TenantDep
from edgedistill.service.api.device_auth import CallerDep, readable_artifact
from edgedistill.service.api.ranges import RangeNotSatisfiable, parse_range
from edgedistill.service.comparison import device_status, thresholds_from
from edgedistill.service.repos import artifacts, jobs
from edgedistill.service.schemas.artifacts import ArtifactOut
from edgedistill.service.storage import ObjectNotFound
from edgedistill.service.storage.integrity import object_intact

log = logging.getLogger(__name__)

router = APIRouter(tags=["artifacts"])


@router.get("/jobs/{job_id}/artifacts", response_model=list[ArtifactOut])
def list_job_artifacts(
    job_id: str, principal: TenantDep, session: SessionDep, settings: SettingsDep
) -> list[ArtifactOut]:
    if jobs.get_job(session, tenant_id=principal.tenant_id, job_id=job_id) is None:
        raise HTTPException(404, f"job {job_id} not found")
    rows = artifacts.list_job_artifacts(session, tenant_id=principal.tenant_id, job_id=job_id)
    status = device_status(
        session, tenant_id=principal.tenant_id, artifact_ids=[a.id for a in rows], thresholds=thresholds_from(settings)
    )
    return [ArtifactOut.from_row(a, device_status=status.get(a.id)) for a in rows]


@router.get("/artifacts/{artifact_id}", response_model=ArtifactOut)
def get_artifact(artifact_id: str, caller: CallerDep, session: SessionDep, settings: SettingsDep) -> ArtifactOut:
    """An API key or a device token; a device sees only its own verdict in device_status."""
    row = readable_artifact(session, caller, artifact_id)
    status = device_status(
        session,
        tenant_id=caller.tenant_id,
        artifact_ids=[row.id],
        thresholds=thresholds_from(settings),
        device_id=caller.device.id if caller.device is not None else None,
    )
    return ArtifactOut.from_row(row, device_status=status.get(row.id))


def content_disposition(filename: str) -> str:
    ascii_name = filename.encode("ascii", "replace").decode().replace("?", "_").replace('"', "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _etag_matches(header: str, etag: str) -> bool:
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


@router.get(
    "/artifacts/{artifact_id}/download",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        206: {"description": "the requested byte range"},
        304: {"description": "If-None-Match matched the ETag"},
        416: {"description": "range not satisfiable"},
    },
)
def download_artifact(
    artifact_id: str,
    caller: CallerDep,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    range_header: str | None = Header(None, alias="Range"),
    if_none_match: str | None = Header(None, alias="If-None-Match"),
    if_range: str | None = Header(None, alias="If-Range"),
) -> Response:
    row = readable_artifact(session, caller, artifact_id)
    session.close()  # no connection held while streaming
    etag = f'"{row.sha256}"'
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Content-Disposition": content_disposition(row.filename),
        "Cache-Control": "private, no-cache",
    }
    if if_none_match and _etag_matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    if not store.exists(row.storage_key):
        raise ObjectNotFound(row.storage_key)
    if settings.store_verify_on_read and not object_intact(store, row.storage_key, row.sha256):
        log.error("artifact %s: stored object %s does not match its sha256", row.id, row.storage_key)
        raise HTTPException(
            500, f"artifact {artifact_id} is damaged in the store (its bytes no longer match its sha256); "
            "an operator can run 'edgedistill admin scrub'"
        )  # fmt: skip
    size = row.size_bytes
    span = None
    if range_header and (if_range is None or if_range.strip() == etag):
        try:
            span = parse_range(range_header, size)
        except RangeNotSatisfiable:
            raise HTTPException(
                416,
                f"range {range_header!r} is outside the {size} byte file",
                headers={"Content-Range": f"bytes */{size}"},
            ) from None
    start, end = span or (0, size)
    headers["Content-Length"] = str(end - start)
    status = 200
    if span is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    body = store.iter_range(row.storage_key, start, end)
    return StreamingResponse(body, status_code=status, headers=headers, media_type="application/octet-stream")
