"""The per-job webhook delivery log: one row per delivery, updated as its attempts end."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgedistill.service.db.base import utcnow
from edgedistill.service.db.models import WEBHOOK_DELIVERY_STATES, WebhookDelivery


def start_delivery(session: Session, *, job_id: str, tenant_id: str, url: str, event: str) -> WebhookDelivery:
    row = WebhookDelivery(job_id=job_id, tenant_id=tenant_id, url=url, event=event, state="pending", attempts=0)
    session.add(row)
    session.flush()
    return row


def finish_delivery(
    session: Session,
    *,
    delivery_id: str,
    state: str,
    attempts: int,
    status_code: int | None = None,
    address: str | None = None,
    error: str | None = None,
) -> None:
    if state not in WEBHOOK_DELIVERY_STATES or state == "pending":
        raise ValueError(f"a finished delivery is delivered, failed or refused, not {state!r}")
    row = session.get(WebhookDelivery, delivery_id)
    if row is None:
        return  # its job was deleted meanwhile
    row.state, row.attempts, row.status_code = state, attempts, status_code
    row.address, row.error, row.finished_at = address, (error or None) and error[:2000], utcnow()
    session.flush()


def list_deliveries(session: Session, *, tenant_id: str, job_id: str) -> list[WebhookDelivery]:
    stmt = (
        select(WebhookDelivery)
        .where(WebhookDelivery.tenant_id == tenant_id, WebhookDelivery.job_id == job_id)
        .order_by(WebhookDelivery.created_at, WebhookDelivery.id)
    )
    return list(session.scalars(stmt))
