"""Per-tenant quotas, answered with the limit named: 429 for queued + running jobs, 413 for stored
bytes (uploads and artifacts). 0 in a setting turns its limit off."""

from __future__ import annotations

from fastapi import HTTPException
from sqlalchemy.orm import Session

from edgedistill.service.repos import usage
from edgedistill.service.repos.storage_refs import storage_key_in_use
from edgedistill.service.settings import Settings
from edgedistill.service.storage import ArtifactStore, StoredObject


def check_job_quota(session: Session, *, tenant_id: str, settings: Settings) -> None:
    limit = settings.tenant_max_active_jobs
    if limit <= 0:
        return
    active = usage.active_jobs(session, tenant_id=tenant_id)
    if active >= limit:
        raise HTTPException(
            429,
            f"tenant quota reached: {active} jobs queued or running, the limit (tenant_max_active_jobs) is {limit}; "
            "submit again when some have finished",
            headers={"Retry-After": "60"},
        )


def _too_much(used: int, limit: int, incoming: int) -> HTTPException:
    return HTTPException(
        413,
        f"tenant storage quota exceeded: {used} bytes stored + {incoming} uploaded is over the limit "
        f"(tenant_max_stored_bytes) of {limit} bytes; delete jobs, datasets or models to make room",
    )


def check_storage_before_upload(session: Session, *, tenant_id: str, settings: Settings) -> None:
    """Refuse at once, before the body is read, when the tenant is already at its limit."""
    limit = settings.tenant_max_stored_bytes
    if limit > 0:
        used = usage.stored_bytes(session, tenant_id=tenant_id)
        if used >= limit:
            raise _too_much(used, limit, 0)


def check_storage_after_upload(
    session: Session, *, tenant_id: str, settings: Settings, store: ArtifactStore, stored: StoredObject
) -> None:
    """The upload's size is known only once received: over the limit, its object is removed again
    (unless another row already uses the same content) and 413 is raised."""
    limit = settings.tenant_max_stored_bytes
    if limit <= 0:
        return
    used = usage.stored_bytes(session, tenant_id=tenant_id)
    if used + stored.size > limit:
        if not storage_key_in_use(session, key=stored.key):
            store.delete(stored.key)
        raise _too_much(used, limit, stored.size)
