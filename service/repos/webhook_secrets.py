"""Per-tenant webhook signing secrets. Each tenant has its own, unrelated to every other secret of the
install (session keys, API keys), so verifying deliveries never lets a receiver mint anything else."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from edgedistill.service.db.base import utcnow
from edgedistill.service.db.models import Tenant

SECRET_TAG = "whsec"


@dataclass(frozen=True)
class WebhookSecret:
    secret: str
    created_at: datetime


def rotate_secret(session: Session, *, tenant_id: str) -> WebhookSecret:
    """A new secret for the tenant (its first, or replacing the old one at once); the caller shows it once."""
    tenant = session.get(Tenant, tenant_id, with_for_update=True)
    if tenant is None:
        raise LookupError(f"tenant {tenant_id} not found")
    tenant.webhook_secret = f"{SECRET_TAG}_{secrets.token_urlsafe(32)}"
    tenant.webhook_secret_created_at = utcnow()
    session.flush()
    return WebhookSecret(secret=tenant.webhook_secret, created_at=tenant.webhook_secret_created_at)


def signing_secret(session: Session, *, tenant_id: str) -> str | None:
    tenant = session.get(Tenant, tenant_id)
    return None if tenant is None else tenant.webhook_secret


def secret_created_at(session: Session, *, tenant_id: str) -> datetime | None:
    tenant = session.get(Tenant, tenant_id)
    return None if tenant is None or tenant.webhook_secret is None else tenant.webhook_secret_created_at
