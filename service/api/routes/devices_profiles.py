"""Device profiles: built-in ones plus the tenant's custom ones, validated by the engine's schema."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response

from edgedistill.contracts.profiles import builtin_profiles
from edgedistill.contracts.profiles.schema import DeviceProfile
from edgedistill.service.api.deps import SessionDep, TenantDep
from edgedistill.service.repos import lifecycle
from edgedistill.service.repos import profiles as repo
from edgedistill.service.schemas.profiles import DeviceProfileOut

router = APIRouter(tags=["device profiles"])


@router.get("/device-profiles", response_model=list[DeviceProfileOut])
def list_profiles(principal: TenantDep, session: SessionDep) -> list[DeviceProfileOut]:
    out = [DeviceProfileOut.from_builtin(p) for p in builtin_profiles().values()]
    out += [DeviceProfileOut.from_row(r) for r in repo.list_custom_profiles(session, tenant_id=principal.tenant_id)]
    return out


@router.post(
    "/device-profiles",
    status_code=201,
    response_model=DeviceProfileOut,
    responses={409: {"description": "name taken (built-in or existing)"}},
)
def create_profile(profile: DeviceProfile, principal: TenantDep, session: SessionDep) -> DeviceProfileOut:
    """A custom profile; the body has the fields of the built-in profile files (GET one to see them)."""
    row = repo.create_profile(session, tenant_id=principal.tenant_id, profile=profile)
    session.commit()
    return DeviceProfileOut.from_row(row)


@router.get("/device-profiles/{name}", response_model=DeviceProfileOut)
def get_profile(name: str, principal: TenantDep, session: SessionDep) -> DeviceProfileOut:
    builtin = builtin_profiles().get(name)
    if builtin is not None:
        return DeviceProfileOut.from_builtin(builtin)
    row = repo.get_custom_profile(session, tenant_id=principal.tenant_id, name=name)
    if row is None:
        raise HTTPException(404, f"device profile {name!r} not found")
    return DeviceProfileOut.from_row(row)


@router.delete(
    "/device-profiles/{name}",
    status_code=204,
    responses={409: {"description": "built-in, or used by an active job"}},
)
def delete_profile(name: str, principal: TenantDep, session: SessionDep) -> Response:
    if name in builtin_profiles():
        raise HTTPException(409, f"device profile {name!r} is built in and cannot be deleted")
    lifecycle.delete_profile(session, tenant_id=principal.tenant_id, name=name)
    session.commit()
    return Response(status_code=204)
