"""Per-tenant storage and job usage."""

from __future__ import annotations

from fastapi import APIRouter

from edgedistill.service.api.deps import SessionDep, SettingsDep, TenantDep
from edgedistill.service.repos.usage import tenant_usage
from edgedistill.service.schemas.usage import UsageOut

router = APIRouter(tags=["usage"])


@router.get("/usage", response_model=UsageOut)
def get_usage(principal: TenantDep, session: SessionDep, settings: SettingsDep) -> UsageOut:
    """Bytes stored (uploads and artifacts), jobs queued and running, and the tenant's limits."""
    return UsageOut.build(tenant_usage(session, tenant_id=principal.tenant_id), settings)
