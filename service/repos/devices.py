"""Registered physical devices; each has its own bearer token for the on-device agent."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.db.base import utcnow
from service.db.models import Device
from service.repos.errors import Conflict
from service.repos.tokens import matches, new_secret, secret_prefix

TOKEN_TAG = "edd"


def create_device(
    session: Session, *, tenant_id: str, name: str, profile_name: str, hardware: dict[str, Any] | None = None
) -> tuple[Device, str]:
    """A new device and its token (returned once, stored hashed). Conflict on a duplicate name."""
    if get_device_by_name(session, tenant_id=tenant_id, name=name) is not None:
        raise Conflict(f"a device named {name!r} already exists")
    secret = new_secret(TOKEN_TAG)
    device = Device(
        tenant_id=tenant_id,
        name=name,
        profile_name=profile_name,
        hardware=hardware or {},
        token_prefix=secret.prefix,
        token_hash=secret.hash,
    )
    session.add(device)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(f"a device named {name!r} already exists") from exc
    return device, secret.plaintext


def get_device(session: Session, *, tenant_id: str, device_id: str) -> Device | None:
    return session.scalar(select(Device).where(Device.id == device_id, Device.tenant_id == tenant_id))


def get_device_by_name(session: Session, *, tenant_id: str, name: str) -> Device | None:
    return session.scalar(select(Device).where(Device.tenant_id == tenant_id, Device.name == name))


def list_devices(session: Session, *, tenant_id: str) -> list[Device]:
    return list(session.scalars(select(Device).where(Device.tenant_id == tenant_id).order_by(Device.name)))


def authenticate_device(session: Session, *, token: str) -> Device | None:
    """The live device a token belongs to, or None."""
    if not token:
        return None
    candidates = session.scalars(
        select(Device).where(Device.token_prefix == secret_prefix(token), Device.revoked_at.is_(None))
    )
    for device in candidates:
        if matches(token, device.token_hash):
            return device
    return None


def revoke_device(session: Session, *, tenant_id: str, device_id: str) -> Device | None:
    device = get_device(session, tenant_id=tenant_id, device_id=device_id)
    if device is not None and device.revoked_at is None:
        device.revoked_at = utcnow()
        session.flush()
    return device
