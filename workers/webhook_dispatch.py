"""Sends a finished job's webhook off the job's worker slot.

The job's task returns as soon as the delivery is logged as pending; a thread of the same worker
process does the delivery (each attempt under webhook_timeout_s in total, retries with backoff) and
logs how it ended. A tarpit receiver so holds a thread, never the pool slot another tenant's job needs.
A worker stopped mid-delivery leaves the row pending: the log shows it never completed."""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy.orm import Session

from edgedistill.service.db.session import session_scope
from edgedistill.service.netpolicy import Allowlist
from edgedistill.service.repos import jobs as jobs_repo
from edgedistill.service.repos import webhook_deliveries, webhook_secrets
from edgedistill.service.settings import Settings
from edgedistill.service.webhooks import DeliveryResult, deliver

log = logging.getLogger(__name__)
EVENT = "job.finished"


def _prepare(settings: Settings, job_id: str) -> tuple[str, dict[str, Any], str | None, str] | None:
    """(delivery id, payload, tenant's secret, url) after logging the delivery as pending; None without a URL."""
    with session_scope(settings) as session:
        job = jobs_repo.get_job_any_tenant(session, job_id=job_id)
        if job is None or not job.webhook_url:
            return None
        summary = jobs_repo.job_summary(session, job_id=job_id)
        row = webhook_deliveries.start_delivery(
            session, job_id=job_id, tenant_id=job.tenant_id, url=job.webhook_url, event=EVENT
        )
        secret = webhook_secrets.signing_secret(session, tenant_id=job.tenant_id)
        return row.id, {"event": EVENT, "delivery_id": row.id, "job": summary}, secret, job.webhook_url


def _record(settings: Settings, delivery_id: str, result: DeliveryResult) -> None:
    state = "delivered" if result.ok else ("refused" if result.refused else "failed")

    def write(session: Session) -> None:
        webhook_deliveries.finish_delivery(
            session,
            delivery_id=delivery_id,
            state=state,
            attempts=result.attempts,
            status_code=result.status_code,
            address=result.address,
            error=result.error,
        )

    with session_scope(settings) as session:
        write(session)


def _run(settings: Settings, delivery_id: str, payload: dict[str, Any], secret: str | None, url: str) -> None:
    try:
        if secret is None:
            result = DeliveryResult(
                ok=False,
                attempts=0,
                refused=True,
                error="refused: the tenant has no webhook secret (POST /api/v1/webhook-secret)",
            )
        else:
            result = deliver(
                url,
                payload,
                secret,
                delivery_id=delivery_id,
                allow=Allowlist.parse(settings.webhook_allow_entries()),
                timeout_s=settings.webhook_timeout_s,
                retries=settings.webhook_retries,
            )
        _record(settings, delivery_id, result)
    except Exception:  # a broken receiver or database must never take the worker down
        log.exception("webhook delivery %s failed", delivery_id)


def dispatch(settings: Settings, job_id: str) -> threading.Thread | None:
    """Log the job's delivery and start sending it; the returned thread is for tests to join."""
    try:
        prepared = _prepare(settings, job_id)
    except Exception:
        log.exception("could not log the webhook delivery of job %s", job_id)
        return None
    if prepared is None:
        return None
    thread = threading.Thread(
        target=_run, args=(settings, *prepared), name=f"edgedistill-webhook-{job_id[:8]}", daemon=True
    )
    thread.start()
    return thread
