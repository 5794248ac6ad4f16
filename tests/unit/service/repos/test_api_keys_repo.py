from __future__ import annotations

import pytest

from edgedistill.service.repos import api_keys, tenants
from edgedistill.service.repos.errors import Conflict


def test_key_is_stored_hashed_and_authenticates(session) -> None:  # type: ignore[no-untyped-def]
    created = api_keys.create_key(session, tenant_name="acme", name="ci")
    key, secret = created.key, created.secret
    assert created.tenant.name == "acme"
    assert secret.startswith("edk_") and key.prefix == secret[:12]
    assert secret not in (key.key_hash, key.prefix) and len(key.key_hash) == 64
    auth = api_keys.authenticate(session, secret=secret)
    assert auth is not None and auth.tenant.name == "acme" and auth.key.id == key.id
    assert auth.key.last_used_at is not None
    assert api_keys.authenticate(session, secret=secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    assert api_keys.authenticate(session, secret="") is None


def test_revoked_key_no_longer_authenticates(session) -> None:  # type: ignore[no-untyped-def]
    created = api_keys.create_key(session, tenant_name="t")
    assert api_keys.revoke_key(session, prefix=created.key.prefix) is not None
    assert api_keys.authenticate(session, secret=created.secret) is None
    assert api_keys.revoke_key(session, prefix=created.key.prefix) is None  # already revoked


def test_ambiguous_prefix_is_refused(session) -> None:  # type: ignore[no-untyped-def]
    api_keys.create_key(session, tenant_name="t")
    api_keys.create_key(session, tenant_name="t")
    with pytest.raises(Conflict):
        api_keys.revoke_key(session, prefix="edk_")


def test_keys_share_their_tenant_and_list(session) -> None:  # type: ignore[no-untyped-def]
    one = api_keys.create_key(session, tenant_name="a", name="one")
    assert tenants.get_or_create_tenant(session, name="a").id == one.tenant.id
    assert api_keys.create_key(session, tenant_name="a", name="one-b").tenant.id == one.tenant.id
    b = api_keys.create_key(session, tenant_name="b", name="two")
    assert [(k.name, t.name) for k, t in api_keys.list_keys(session)] == [("one", "a"), ("one-b", "a"), ("two", "b")]
    assert [k.name for k, _ in api_keys.list_keys(session, tenant_id=b.tenant.id)] == ["two"]
