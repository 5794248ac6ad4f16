"""Registered devices: a tenant registers one and gets its token once; the device's agent then asks
what it is (`/devices/me`) and which artifacts of its profile it has to measure (`/devices/me/artifacts`)."""

from __future__ import annotations

import json

from fastapi import APIRouter, HTTPException, Query

from edgedistill.service.api.deps import SessionDep, SettingsDep, TenantDep
from edgedistill.service.api.device_auth import DeviceDep
from edgedistill.service.comparison import device_status, thresholds_from
from edgedistill.service.repos import devices, profiles
from edgedistill.service.schemas.artifacts import ArtifactOut
from edgedistill.service.schemas.devices import (
    MAX_HARDWARE_JSON_BYTES,
    DeviceArtifactOut,
    DeviceCreate,
    DeviceCreated,
    DeviceOut,
    DeviceSelf,
)

router = APIRouter(tags=["devices"])


@router.post(
    "/devices",
    status_code=201,
    response_model=DeviceCreated,
    responses={409: {"description": "a device with this name exists"}, 422: {"description": "unknown profile"}},
)
def register_device(body: DeviceCreate, principal: TenantDep, session: SessionDep) -> DeviceCreated:
    """Register a device of a profile; the response carries its token, shown only this once."""
    if len(json.dumps(body.hardware)) > MAX_HARDWARE_JSON_BYTES:
        raise HTTPException(422, f"hardware is over {MAX_HARDWARE_JSON_BYTES} bytes of JSON")
    if profiles.resolve_profile(session, tenant_id=principal.tenant_id, name=body.profile) is None:
        raise HTTPException(422, f"unknown device profile {body.profile!r}: see GET /api/v1/device-profiles")
    row, token = devices.create_device(
        session, tenant_id=principal.tenant_id, name=body.name, profile_name=body.profile, hardware=body.hardware
    )
    session.commit()
    return DeviceCreated(**DeviceOut.from_row(row).model_dump(), token=token)


@router.get("/devices", response_model=list[DeviceOut])
def list_devices(principal: TenantDep, session: SessionDep) -> list[DeviceOut]:
    return [DeviceOut.from_row(d) for d in devices.list_devices(session, tenant_id=principal.tenant_id)]


@router.get("/devices/me", response_model=DeviceSelf, responses={403: {"description": "not a device token"}})
def who_am_i(device: DeviceDep, session: SessionDep) -> DeviceSelf:
    """For the agent: its device, and the profile's benchmark threads and latency target."""
    row = devices.get_device(session, tenant_id=device.tenant_id, device_id=device.id)
    if row is None:  # deleted between authentication and here
        raise HTTPException(404, "device not found")
    resolved = profiles.resolve_profile(session, tenant_id=device.tenant_id, name=device.profile_name)
    threads, device_class, target = 1, "unknown", None
    if resolved is not None:
        profile = resolved[0]
        threads, device_class, target = profile.threads, profile.device_class, profile.budgets.latency_target_ms
    return DeviceSelf(
        **DeviceOut.from_row(row).model_dump(), threads=threads, device_class=device_class, latency_target_ms=target
    )


@router.get("/devices/me/artifacts", response_model=list[DeviceArtifactOut])
def my_artifacts(
    device: DeviceDep,
    session: SessionDep,
    settings: SettingsDep,
    pending: bool = Query(False, description="Only artifacts this device has not measured yet"),
    kind: list[str] | None = Query(None, description="Only these kinds (repeat); default every runnable kind"),
    artifact_id: str | None = None,
    limit: int = Query(100, ge=1, le=200),
) -> list[DeviceArtifactOut]:
    """Runnable artifacts (ONNX, TFLite) of succeeded jobs for this device's profile, oldest first."""
    if kind:
        unknown = sorted(set(kind) - set(devices.MEASURABLE_KINDS))
        if unknown:
            raise HTTPException(
                422, f"kind {', '.join(unknown)} is not runnable; use {', '.join(devices.MEASURABLE_KINDS)}"
            )
    rows = devices.list_visible_artifacts(
        session, device=device, kinds=kind, pending=pending, artifact_id=artifact_id, limit=limit
    )
    ids = [a.id for a, _ in rows]
    measured = devices.measured_artifact_ids(session, device_id=device.id, artifact_ids=ids)
    probes = devices.probe_artifact_ids(session, tenant_id=device.tenant_id, job_ids=sorted({j.id for _, j in rows}))
    status = device_status(
        session, tenant_id=device.tenant_id, artifact_ids=ids, thresholds=thresholds_from(settings), device_id=device.id
    )
    out = []
    for art, job in rows:
        data = (job.report or {}).get("data") or {}
        task = data.get("task") if isinstance(data, dict) else None
        out.append(
            DeviceArtifactOut(
                **ArtifactOut.from_row(art, device_status=status.get(art.id)).model_dump(),
                profile=job.profile_name,
                task=task if isinstance(task, str) else None,
                probe_artifact_id=probes.get(job.id),
                measured=art.id in measured,
            )
        )
    return out


@router.get("/devices/{device_id}", response_model=DeviceOut)
def get_device(device_id: str, principal: TenantDep, session: SessionDep) -> DeviceOut:
    row = devices.get_device(session, tenant_id=principal.tenant_id, device_id=device_id)
    if row is None:
        raise HTTPException(404, f"device {device_id} not found")
    return DeviceOut.from_row(row)


@router.delete("/devices/{device_id}", response_model=DeviceOut)
def revoke_device(device_id: str, principal: TenantDep, session: SessionDep) -> DeviceOut:
    """Revoke the device's token (its measurements stay). Revoking twice is fine."""
    row = devices.revoke_device(session, tenant_id=principal.tenant_id, device_id=device_id)
    if row is None:
        raise HTTPException(404, f"device {device_id} not found")
    session.commit()
    return DeviceOut.from_row(row)
