"""Webhooks: the tenant's signing secret (made and rotated here, shown once), the per-job delivery log,
and the destination check a job's webhook_url passes at submit."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from sqlalchemy.orm import Session

from edgedistill.service.api.deps import SessionDep, TenantDep
from edgedistill.service.netpolicy import Allowlist, DestinationRefused, check_destination
from edgedistill.service.repos import jobs, webhook_deliveries, webhook_secrets
from edgedistill.service.schemas.webhooks import WebhookDeliveryOut, WebhookSecretCreated, WebhookSecretState
from edgedistill.service.settings import Settings

router = APIRouter(tags=["webhooks"])


def webhook_url_problem(session: Session, settings: Settings, *, tenant_id: str, url: str) -> str | None:
    """Why a job may not have this webhook URL (None: it may). The destination is checked again at
    every delivery attempt; a name that does not resolve yet is let through to that check."""
    try:
        check_destination(url, Allowlist.parse(settings.webhook_allow_entries()), unresolvable_ok=True)
    except DestinationRefused as exc:
        return f"webhook destination refused: {exc}"
    if webhook_secrets.signing_secret(session, tenant_id=tenant_id) is None:
        return (
            "this tenant has no webhook secret yet: create one with POST /api/v1/webhook-secret "
            "(shown once) and verify deliveries with it"
        )
    return None


@router.post("/webhook-secret", status_code=201, response_model=WebhookSecretCreated)
def rotate_webhook_secret(principal: TenantDep, session: SessionDep) -> WebhookSecretCreated:
    """Create the tenant's webhook signing secret, or replace it (the old one stops at once)."""
    made = webhook_secrets.rotate_secret(session, tenant_id=principal.tenant_id)
    session.commit()
    return WebhookSecretCreated(secret=made.secret, created_at=made.created_at)


@router.get("/webhook-secret", response_model=WebhookSecretState)
def webhook_secret_state(principal: TenantDep, session: SessionDep) -> WebhookSecretState:
    """Whether the tenant has a webhook secret and since when (never the secret itself)."""
    created = webhook_secrets.secret_created_at(session, tenant_id=principal.tenant_id)
    return WebhookSecretState(configured=created is not None, created_at=created)


@router.get("/jobs/{job_id}/webhook-deliveries", response_model=list[WebhookDeliveryOut])
def list_webhook_deliveries(job_id: str, principal: TenantDep, session: SessionDep) -> list[WebhookDeliveryOut]:
    """Every webhook delivery of the job: state, attempts, the receiver's status code or the error."""
    if jobs.get_job(session, tenant_id=principal.tenant_id, job_id=job_id) is None:
        raise HTTPException(404, f"job {job_id} not found")
    rows = webhook_deliveries.list_deliveries(session, tenant_id=principal.tenant_id, job_id=job_id)
    return [WebhookDeliveryOut.from_row(r) for r in rows]
