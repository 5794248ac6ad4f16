"""Latency measurements of artifacts (host benchmark, device agents) and a filtered list of all."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException, Query

from service.api.deps import SessionDep, TenantDep
from service.repos import artifacts, measurements
from service.schemas.common import Page
from service.schemas.measurements import MeasurementCreate, MeasurementOut

router = APIRouter(tags=["measurements"])


def _artifact_or_404(session: SessionDep, tenant_id: str, artifact_id: str) -> None:
    if artifacts.get_artifact(session, tenant_id=tenant_id, artifact_id=artifact_id) is None:
        raise HTTPException(404, f"artifact {artifact_id} not found")


@router.get("/artifacts/{artifact_id}/measurements", response_model=list[MeasurementOut])
def list_artifact_measurements(
    artifact_id: str, principal: TenantDep, session: SessionDep, limit: int = Query(200, ge=1, le=200)
) -> list[MeasurementOut]:
    _artifact_or_404(session, principal.tenant_id, artifact_id)
    page = measurements.list_measurements(session, tenant_id=principal.tenant_id, artifact_id=artifact_id, limit=limit)
    return [MeasurementOut.from_row(m) for m in page.items]


@router.post("/artifacts/{artifact_id}/measurements", status_code=201, response_model=MeasurementOut)
def add_measurement(
    artifact_id: str, body: MeasurementCreate, principal: TenantDep, session: SessionDep
) -> MeasurementOut:
    _artifact_or_404(session, principal.tenant_id, artifact_id)
    row = measurements.create_measurement(
        session, artifact_id=artifact_id, tenant_id=principal.tenant_id, **body.model_dump()
    )
    session.commit()
    return MeasurementOut.from_row(row)


@router.get("/measurements", response_model=Page[MeasurementOut])
def list_measurements(
    principal: TenantDep,
    session: SessionDep,
    artifact_id: str | None = None,
    job_id: str | None = None,
    source: Literal["host", "device"] | None = None,
    runtime: str | None = None,
    device_name: str | None = None,
    cursor: str | None = None,
    limit: int = Query(100, ge=1, le=200),
) -> Page[MeasurementOut]:
    page = measurements.list_measurements(
        session,
        tenant_id=principal.tenant_id,
        artifact_id=artifact_id,
        job_id=job_id,
        source=source,
        runtime=runtime,
        device_name=device_name,
        cursor=cursor,
        limit=limit,
    )
    return Page(items=[MeasurementOut.from_row(m) for m in page.items], next_cursor=page.next_cursor)
