"""Latency measurements of artifacts (host benchmark, device agents) and a filtered list of all."""

from __future__ import annotations

import json
import math
from typing import Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.exceptions import RequestValidationError

from edgedistill.service.api.deps import MeasurementLimiterDep, SessionDep, SettingsDep, TenantDep
from edgedistill.service.api.device_auth import Caller, CallerDep, readable_artifact
from edgedistill.service.api.ratelimit import Limiter
from edgedistill.service.comparison import compare_artifact, thresholds_from
from edgedistill.service.repos import artifacts, jobs, measurements
from edgedistill.service.schemas.common import Page
from edgedistill.service.schemas.comparison import ArtifactComparison
from edgedistill.service.schemas.measurements import MeasurementCreate, MeasurementOut
from edgedistill.service.settings import Settings

router = APIRouter(tags=["measurements"])


@router.get("/artifacts/{artifact_id}/measurements", response_model=ArtifactComparison)
def compare_measurements(
    artifact_id: str,
    principal: TenantDep,
    session: SessionDep,
    settings: SettingsDep,
    cursor: str | None = None,
    limit: int = Query(50, ge=1, le=200),
) -> ArtifactComparison:
    """Host vs each device: latency ratio (device p50 / host p50), agreement with the host outputs and
    whether the profile's latency target is met; for MCU profiles also the host TFLite Micro run, the
    exact arena bytes and the *estimated* on-device latency. `measurements` is paged (limit, cursor)."""
    row = artifacts.get_artifact(session, tenant_id=principal.tenant_id, artifact_id=artifact_id)
    if row is None:
        raise HTTPException(404, f"artifact {artifact_id} not found")
    job = jobs.get_job(session, tenant_id=principal.tenant_id, job_id=row.job_id)
    if job is None:
        raise HTTPException(404, f"artifact {artifact_id} not found")
    return compare_artifact(
        session, artifact=row, job=job, thresholds=thresholds_from(settings), cursor=cursor, limit=limit
    )


@router.post(
    "/artifacts/{artifact_id}/measurements",
    status_code=201,
    response_model=MeasurementOut,
    responses={
        403: {"description": "a device token posting source 'host'"},
        429: {"description": "over device_measurements_per_minute for this device"},
    },
)
def add_measurement(
    artifact_id: str,
    body: MeasurementCreate,
    caller: CallerDep,
    session: SessionDep,
    settings: SettingsDep,
    limiter: MeasurementLimiterDep,
) -> MeasurementOut:
    """An API key posts any source and names the device; a device token (the agent, or firmware through a
    bridge) posts source "device" only, and the device's id and name come from the token. Per device:
    device_measurements_per_minute posts (429), `extra` up to measurement_extra_max_bytes of JSON (413),
    and only the latest measurements_kept_per_device rows per artifact are kept."""
    art = readable_artifact(session, caller, artifact_id)
    _check_measurement_limits(body, caller, settings, limiter)
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
    if row.source == "device":
        measurements.trim_device_measurements(
            session, artifact_id=art.id, device_name=row.device_name, keep=settings.measurements_kept_per_device
        )
    session.commit()
    return MeasurementOut.from_row(row)


def _check_measurement_limits(body: MeasurementCreate, caller: Caller, settings: Settings, limiter: Limiter) -> None:
    size = len(json.dumps(body.extra, separators=(",", ":")).encode())
    if size > settings.measurement_extra_max_bytes:
        raise HTTPException(
            413,
            f"measurement 'extra' is {size} bytes of JSON; the limit (measurement_extra_max_bytes) is "
            f"{settings.measurement_extra_max_bytes}",
        )
    who = caller.device.id if caller.device is not None else f"{caller.tenant_id}:{body.device_name}"
    wait = limiter.check(who)
    if wait is not None:
        retry = str(max(1, math.ceil(wait)))
        raise HTTPException(
            429,
            f"measurement rate limit of {limiter.per_minute} posts per minute per device reached "
            f"(device_measurements_per_minute); retry in {retry} s",
            headers={"Retry-After": retry},
        )


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
