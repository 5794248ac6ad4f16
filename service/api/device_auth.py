"""Callers that may be a tenant's API key or a registered device's token.

A device token (`Bearer edd_...`) may only list and read its tenant's artifacts of jobs for the device's
profile, download them, and post measurements (source "device", named after the device). Routes that
allow it take CallerDep; every other route keeps TenantDep, which answers 403 to a device token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.orm import Session

from edgedistill.service.api.deps import Principal, SessionDep, bearer_token, get_principal, unauthorized
from edgedistill.service.db.models import Artifact
from edgedistill.service.repos import artifacts, devices

DEVICE_TOKEN_PREFIX = f"{devices.TOKEN_TAG}_"


@dataclass(frozen=True)
class DeviceIdentity:
    id: str
    tenant_id: str
    name: str
    profile_name: str


@dataclass(frozen=True)
class Caller:
    """Exactly one of principal (API key) and device (device token) is set."""

    tenant_id: str
    principal: Principal | None = None
    device: DeviceIdentity | None = None


def get_caller(request: Request, session: SessionDep) -> Caller:
    token = bearer_token(request)
    if token is not None and token.startswith(DEVICE_TOKEN_PREFIX):
        device = devices.authenticate_device(session, token=token)
        if device is None:
            raise unauthorized("invalid or revoked device token", error="invalid_token")
        identity = DeviceIdentity(
            id=device.id, tenant_id=device.tenant_id, name=device.name, profile_name=device.profile_name
        )
        return Caller(tenant_id=device.tenant_id, device=identity)
    principal = get_principal(request, session)
    return Caller(tenant_id=principal.tenant_id, principal=principal)


def get_device_caller(caller: Annotated[Caller, Depends(get_caller)]) -> DeviceIdentity:
    if caller.device is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this endpoint is for device tokens (Bearer edd_...)")
    return caller.device


CallerDep = Annotated[Caller, Depends(get_caller)]
DeviceDep = Annotated[DeviceIdentity, Depends(get_device_caller)]


def readable_artifact(session: Session, caller: Caller, artifact_id: str) -> Artifact:
    """The artifact if the caller may read it: any of its tenant's with an API key; with a device token
    only those of jobs for the device's profile. 404 otherwise, whoever owns it."""
    if caller.device is not None:
        row = devices.get_visible_artifact(session, device=caller.device, artifact_id=artifact_id)
    else:
        row = artifacts.get_artifact(session, tenant_id=caller.tenant_id, artifact_id=artifact_id)
    if row is None:
        raise HTTPException(404, f"artifact {artifact_id} not found")
    return row
