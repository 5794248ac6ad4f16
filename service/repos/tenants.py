"""Tenants: everything a tenant uploads or creates is visible to it only."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from edgedistill.service.db.models import Tenant


def get_tenant(session: Session, *, tenant_id: str) -> Tenant | None:
    return session.get(Tenant, tenant_id)


def get_tenant_by_name(session: Session, *, name: str) -> Tenant | None:
    return session.scalar(select(Tenant).where(Tenant.name == name))


def get_or_create_tenant(session: Session, *, name: str) -> Tenant:
    tenant = get_tenant_by_name(session, name=name)
    if tenant is not None:
        return tenant
    tenant = Tenant(name=name)
    session.add(tenant)
    try:
        session.flush()
    except IntegrityError:  # another process created it first
        session.rollback()
        found = get_tenant_by_name(session, name=name)
        if found is None:
            raise
        return found
    return tenant
