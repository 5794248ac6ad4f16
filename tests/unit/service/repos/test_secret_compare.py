"""API keys and device tokens: only a sha256 of the secret is stored, and a presented secret is compared
with hmac.compare_digest (constant time), never with ==."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from edgedistill.service.repos import api_keys, devices, tokens


def test_keys_and_device_tokens_are_stored_as_sha256_only(session: Session) -> None:
    key = api_keys.create_key(session, tenant_name="t")
    device, token = devices.create_device(
        session, tenant_id=key.tenant.id, name="d", profile_name="cpu-x86", hardware={}
    )
    session.commit()
    assert key.key.key_hash == hashlib.sha256(key.secret.encode()).hexdigest()
    assert device.token_hash == hashlib.sha256(token.encode()).hexdigest()
    for table in ("api_keys", "devices"):
        for row in session.execute(text(f"SELECT * FROM {table}")):
            dumped = " ".join(str(v) for v in row)
            assert key.secret not in dumped and token not in dumped


def test_every_comparison_goes_through_compare_digest(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    key = api_keys.create_key(session, tenant_name="t")
    _, token = devices.create_device(session, tenant_id=key.tenant.id, name="d", profile_name="cpu-x86", hardware={})
    session.commit()
    calls: list[tuple[Any, Any]] = []
    original = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(tokens.hmac, "compare_digest", spy)
    assert api_keys.authenticate(session, secret=key.secret) is not None
    assert api_keys.authenticate(session, secret=key.secret[:-1] + "x") is None  # same prefix, wrong secret
    assert devices.authenticate_device(session, token=token) is not None
    assert len(calls) == 3
    assert all(len(a) == len(b) == 64 for a, b in calls)  # digests of equal length, never the raw secrets
