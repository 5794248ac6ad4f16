"""API keys: stored as a sha256 hash plus a short prefix; each belongs to one tenant."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgedistill.service.db.base import utcnow
from edgedistill.service.db.models import ApiKey, Tenant
from edgedistill.service.repos.errors import Conflict
from edgedistill.service.repos.tenants import get_or_create_tenant
from edgedistill.service.repos.tokens import matches, new_secret, secret_prefix
from edgedistill.service.repos.web_sessions import end_sessions_of_key

KEY_TAG = "edk"
# last_used_at is a write on the request path: refresh it at most this often per key.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class CreatedKey:
    key: ApiKey
    tenant: Tenant
    secret: str  # the plaintext, shown once


@dataclass(frozen=True)
class Authenticated:
    tenant: Tenant
    key: ApiKey


def create_key(session: Session, *, tenant_name: str, name: str = "default") -> CreatedKey:
    """A new key for the tenant (created if new); the plaintext is returned here once, never stored."""
    tenant = get_or_create_tenant(session, name=tenant_name)
    secret = new_secret(KEY_TAG)
    key = ApiKey(tenant_id=tenant.id, name=name, prefix=secret.prefix, key_hash=secret.hash)
    session.add(key)
    session.flush()
    return CreatedKey(key=key, tenant=tenant, secret=secret.plaintext)


def authenticate(session: Session, *, secret: str) -> Authenticated | None:
    """The tenant a live key belongs to, or None for unknown or revoked keys."""
    if not secret:
        return None
    candidates = session.scalars(
        select(ApiKey).where(ApiKey.prefix == secret_prefix(secret), ApiKey.revoked_at.is_(None))
    )
    for key in candidates:
        if matches(secret, key.key_hash):
            tenant = session.get(Tenant, key.tenant_id)
            if tenant is None:
                return None
            now = utcnow()
            if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
                key.last_used_at = now
                session.flush()
            return Authenticated(tenant=tenant, key=key)
    return None


def get_live_key(session: Session, *, key_id: str) -> Authenticated | None:
    """The key and tenant of a live (not revoked) key by its id: the dashboard's session cookie holds the
    id, never the key itself, so a revoked key logs its browser sessions out at the next request."""
    key = session.get(ApiKey, key_id)
    if key is None or key.revoked_at is not None:
        return None
    tenant = session.get(Tenant, key.tenant_id)
    return None if tenant is None else Authenticated(tenant=tenant, key=key)


def revoke_key(session: Session, *, prefix: str, tenant_id: str | None = None) -> ApiKey | None:
    """Revoke the live key whose prefix is given; None when none matches. Conflict when several do."""
    stmt = select(ApiKey).where(ApiKey.prefix.startswith(prefix, autoescape=True), ApiKey.revoked_at.is_(None))
    if tenant_id is not None:
        stmt = stmt.where(ApiKey.tenant_id == tenant_id)
    keys = list(session.scalars(stmt))
    if not keys:
        return None
    if len(keys) > 1:
        raise Conflict(f"{len(keys)} keys start with {prefix!r}; give more characters of the prefix")
    keys[0].revoked_at = utcnow()
    end_sessions_of_key(session, key_id=keys[0].id)  # its dashboard logins end with it
    session.flush()
    return keys[0]


def list_keys(session: Session, *, tenant_id: str | None = None) -> list[tuple[ApiKey, Tenant]]:
    stmt = select(ApiKey, Tenant).join(Tenant, Tenant.id == ApiKey.tenant_id).order_by(Tenant.name, ApiKey.created_at)
    if tenant_id is not None:
        stmt = stmt.where(ApiKey.tenant_id == tenant_id)
    return [(k, t) for k, t in session.execute(stmt).tuples()]
