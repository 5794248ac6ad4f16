"""Latency measurements of artifacts (host benchmark, device agents) and a filtered list of all."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.exceptions import RequestValidationError

from service.api.deps import SessionDep, SettingsDep, TenantDep
from service.api.device_auth import CallerDep, readable_artifact
from service.comparison import compare_artifact, thresholds_from
from service.repos import artifacts, jobs, measurements
from service.schemas.common import Page
from service.schemas.comparison import ArtifactComparison
from service.schemas.measurements import MeasurementCreate, MeasurementOut

router = APIRouter(tags=["measurements"])


@router.get("/artifacts/{artifact_id}/measurements", response_model=ArtifactComparison)
def compare_measurements(
    artifact_id: str, principal: TenantDep, session: SessionDep, settings: SettingsDep
) -> ArtifactComparison:
    """Host vs each device: latency ratio (device p50 / host p50), agreement with the host outputs and
    whether the profile's latency target is met; for MCU profiles also the host TFLite Micro run, the
    exact arena bytes and the *estimated* on-device latency. `measurements` lists every row."""
    row = artifacts.get_artifact(session, tenant_id=principal.tenant_id, artifact_id=artifact_id)
    if row is None:
        raise HTTPException(404, f"artifact {artifact_id} not found")
    job = jobs.get_job(session, tenant_id=principal.tenant_id, job_id=row.job_id)
    if job is None:
        raise HTTPException(404, f"artifact {artifact_id} not found")
    return compare_artifact(session, artifact=row, job=job, thresholds=thresholds_from(settings))


@router.post(
    "/artifacts/{artifact_id}/measurements",
    status_code=201,
    response_model=MeasurementOut,
    responses={403: {"description": "a device token posting source 'host'"}},
)
def add_measurement(
    artifact_id: str, body: MeasurementCreate, caller: CallerDep, session: SessionDep
) -> MeasurementOut:
    """An API key posts any source and names the device; a device token (the agent, or firmware through a
    bridge) posts source "device" only, and the device's id and name come from the token."""
    art = readable_artifact(session, caller, artifact_id)
    claimed = body.extra.get("artifact_sha256")
    if body.source == "device" and claimed is not None and str(claimed).lower() != art.sha256:
        # The device ran other bytes than this artifact (a swapped download): its figures are not this one's.
        raise RequestValidationError(
            [
                {
                    "loc": ("body", "extra", "artifact_sha256"),
                    "msg": f"the device measured bytes with sha256 {str(claimed)[:64]}, not this artifact's "
                    f"{art.sha256}; measurement refused",
                    "type": "value_error",
                }
            ]
        )
    fields = body.model_dump()
    if caller.device is not None:
        if body.source != "device":
            raise HTTPException(403, "a device token can only post measurements with source 'device'")
        fields.update(device_name=caller.device.name, device_id=caller.device.id)
    elif body.device_name is None:
        raise RequestValidationError(
            [{"loc": ("body", "device_name"), "msg": "device_name is required with an API key", "type": "missing"}]
        )
    row = measurements.create_measurement(session, artifact_id=art.id, tenant_id=caller.tenant_id, **fields)
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
