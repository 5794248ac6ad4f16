"""Device profiles: the built-in ones (workers.profiles, data files) plus each tenant's custom ones."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from edgedistill.contracts.profiles import builtin_profiles
from edgedistill.contracts.profiles.schema import DeviceProfile
from edgedistill.service.db.models import DeviceProfileRow
from edgedistill.service.repos.errors import Conflict


def list_custom_profiles(session: Session, *, tenant_id: str) -> list[DeviceProfileRow]:
    stmt = select(DeviceProfileRow).where(DeviceProfileRow.tenant_id == tenant_id).order_by(DeviceProfileRow.name)
    return list(session.scalars(stmt))


def get_custom_profile(session: Session, *, tenant_id: str, name: str) -> DeviceProfileRow | None:
    return session.scalar(
        select(DeviceProfileRow).where(DeviceProfileRow.tenant_id == tenant_id, DeviceProfileRow.name == name)
    )


def resolve_profile(session: Session, *, tenant_id: str, name: str) -> tuple[DeviceProfile, bool] | None:
    """(profile, is_builtin) for a built-in name or this tenant's custom profile; None if unknown."""
    builtin = builtin_profiles().get(name)
    if builtin is not None:
        return builtin, True
    row = get_custom_profile(session, tenant_id=tenant_id, name=name)
    if row is None:
        return None
    return DeviceProfile.model_validate(row.spec), False


def create_profile(session: Session, *, tenant_id: str, profile: DeviceProfile) -> DeviceProfileRow:
    """Store a validated custom profile. Conflict when the name is built-in or already taken."""
    if profile.name in builtin_profiles():
        raise Conflict(f"{profile.name!r} is a built-in profile name; choose another name")
    if get_custom_profile(session, tenant_id=tenant_id, name=profile.name) is not None:
        raise Conflict(f"a profile named {profile.name!r} already exists")
    row = DeviceProfileRow(tenant_id=tenant_id, name=profile.name, spec=profile.as_yaml_dict())
    session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:  # created concurrently
        session.rollback()
        raise Conflict(f"a profile named {profile.name!r} already exists") from exc
    return row
