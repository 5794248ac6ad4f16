"""Registered physical devices; each has its own bearer token for the on-device agent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import ColumnElement, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from edgedistill.contracts import artifact_kinds
from edgedistill.contracts.statuses import SUCCEEDED
from edgedistill.service.db.base import utcnow
from edgedistill.service.db.models import Artifact, Device, Job, LatencyMeasurement
from edgedistill.service.repos.errors import Conflict
from edgedistill.service.repos.tokens import matches, new_secret, secret_prefix

TOKEN_TAG = "edd"


class DeviceRef(Protocol):
    """A Device row, or the identity the API keeps of an authenticated device."""

    @property
    def id(self) -> str: ...
    @property
    def tenant_id(self) -> str: ...
    @property
    def profile_name(self) -> str: ...


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


# --------------------------------------------------------------------------------------------------
# What a device token may see: its tenant's artifacts of jobs for the device's profile.
# --------------------------------------------------------------------------------------------------

# The artifacts an agent can run (the registry's kinds measured by "agent").
MEASURABLE_KINDS = artifact_kinds.measured_by("agent")
# What a device token may read at all: those, and the probe inputs it checks them against. Reports,
# summaries and the rest stay with API keys.
DEVICE_READABLE_KINDS = (*MEASURABLE_KINDS, "probe")


def _scope(device: DeviceRef) -> list[ColumnElement[bool]]:
    return [
        Artifact.tenant_id == device.tenant_id,
        Job.tenant_id == device.tenant_id,
        Job.profile_name == device.profile_name,
    ]


def get_visible_artifact(session: Session, *, device: DeviceRef, artifact_id: str) -> Artifact | None:
    """The artifact if the device may read it (same tenant, a job for the device's profile, a runnable
    kind or the probe), else None."""
    stmt = (
        select(Artifact)
        .join(Job, Job.id == Artifact.job_id)
        .where(*_scope(device), Artifact.id == artifact_id, Artifact.kind.in_(DEVICE_READABLE_KINDS))
    )
    return session.scalar(stmt)


def list_visible_artifacts(
    session: Session,
    *,
    device: DeviceRef,
    kinds: Sequence[str] | None = None,
    pending: bool = False,
    artifact_id: str | None = None,
    limit: int = 100,
) -> list[tuple[Artifact, Job]]:
    """Runnable artifacts of the device's profile from succeeded jobs, oldest first; pending: only those
    this device has not posted a measurement for."""
    wanted = [k for k in (kinds or MEASURABLE_KINDS) if k in MEASURABLE_KINDS]
    stmt = (
        select(Artifact, Job)
        .join(Job, Job.id == Artifact.job_id)
        .where(*_scope(device), Job.status == SUCCEEDED, Artifact.kind.in_(wanted))
    )
    if artifact_id is not None:
        stmt = stmt.where(Artifact.id == artifact_id)
    if pending:
        measured = select(LatencyMeasurement.id).where(
            LatencyMeasurement.artifact_id == Artifact.id, LatencyMeasurement.device_id == device.id
        )
        stmt = stmt.where(~measured.exists())
    stmt = stmt.order_by(Artifact.created_at, Artifact.id).limit(limit)
    return [(a, j) for a, j in session.execute(stmt).tuples()]


def measured_artifact_ids(session: Session, *, device_id: str, artifact_ids: Sequence[str]) -> set[str]:
    if not artifact_ids:
        return set()
    stmt = select(LatencyMeasurement.artifact_id).where(
        LatencyMeasurement.device_id == device_id, LatencyMeasurement.artifact_id.in_(list(artifact_ids))
    )
    return set(session.scalars(stmt))


def probe_artifact_ids(session: Session, *, tenant_id: str, job_ids: Sequence[str]) -> dict[str, str]:
    """job id -> the id of its probe artifact (probe.npz), for the jobs that have one."""
    if not job_ids:
        return {}
    stmt = select(Artifact.job_id, Artifact.id).where(
        Artifact.tenant_id == tenant_id, Artifact.kind == "probe", Artifact.job_id.in_(list(job_ids))
    )
    return {job_id: art_id for job_id, art_id in session.execute(stmt).tuples()}


def device_measurements(
    session: Session, *, tenant_id: str, artifact_ids: Sequence[str], device_id: str | None = None
) -> list[LatencyMeasurement]:
    """Device-source measurements of these artifacts, newest first."""
    if not artifact_ids:
        return []
    stmt = select(LatencyMeasurement).where(
        LatencyMeasurement.tenant_id == tenant_id,
        LatencyMeasurement.source == "device",
        LatencyMeasurement.artifact_id.in_(list(artifact_ids)),
    )
    if device_id is not None:
        stmt = stmt.where(LatencyMeasurement.device_id == device_id)
    return list(session.scalars(stmt.order_by(LatencyMeasurement.created_at.desc(), LatencyMeasurement.id.desc())))
