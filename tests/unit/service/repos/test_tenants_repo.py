from __future__ import annotations

import pytest

from service.repos import tenants
from service.repos.errors import Conflict


def test_key_is_stored_hashed_and_authenticates(session, factory) -> None:  # type: ignore[no-untyped-def]
    t = factory.tenant("acme")
    key, secret = tenants.create_api_key(session, tenant_id=t.id, name="ci")
    assert secret.startswith("edk_") and key.prefix == secret[:12]
    assert secret not in (key.key_hash, key.prefix) and len(key.key_hash) == 64
    auth = tenants.authenticate(session, secret=secret)
    assert auth is not None and auth.tenant.name == "acme" and auth.key.id == key.id
    assert auth.key.last_used_at is not None
    assert tenants.authenticate(session, secret=secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    assert tenants.authenticate(session, secret="") is None


def test_revoked_key_no_longer_authenticates(session, factory) -> None:  # type: ignore[no-untyped-def]
    t = factory.tenant()
    key, secret = tenants.create_api_key(session, tenant_id=t.id)
    assert tenants.revoke_key(session, prefix=key.prefix) is not None
    assert tenants.authenticate(session, secret=secret) is None
    assert tenants.revoke_key(session, prefix=key.prefix) is None  # already revoked


def test_ambiguous_prefix_is_refused(session, factory) -> None:  # type: ignore[no-untyped-def]
    t = factory.tenant()
    tenants.create_api_key(session, tenant_id=t.id)
    tenants.create_api_key(session, tenant_id=t.id)
    with pytest.raises(Conflict):
        tenants.revoke_key(session, prefix="edk_")


def test_get_or_create_tenant_and_list_keys(session, factory) -> None:  # type: ignore[no-untyped-def]
    a = tenants.get_or_create_tenant(session, name="a")
    assert tenants.get_or_create_tenant(session, name="a").id == a.id
    tenants.create_api_key(session, tenant_id=a.id, name="one")
    b = factory.tenant("b")
    tenants.create_api_key(session, tenant_id=b.id, name="two")
    assert [(k.name, t.name) for k, t in tenants.list_keys(session)] == [("one", "a"), ("two", "b")]
    assert [k.name for k, _ in tenants.list_keys(session, tenant_id=b.id)] == ["two"]
