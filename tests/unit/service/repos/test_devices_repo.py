from __future__ import annotations

import pytest

from edgedistill.service.repos import devices
from edgedistill.service.repos.errors import Conflict


def test_device_token_authenticates_until_revoked(session, factory) -> None:  # type: ignore[no-untyped-def]
    t = factory.tenant()
    device, token = devices.create_device(session, tenant_id=t.id, name="pi5", profile_name="mobile-arm64")
    assert token.startswith("edd_") and device.token_hash != token
    found = devices.authenticate_device(session, token=token)
    assert found is not None and found.id == device.id
    with pytest.raises(Conflict):
        devices.create_device(session, tenant_id=t.id, name="pi5", profile_name="mobile-arm64")
    assert devices.get_device(session, tenant_id=factory.tenant().id, device_id=device.id) is None
    devices.revoke_device(session, tenant_id=t.id, device_id=device.id)
    assert devices.authenticate_device(session, token=token) is None
    assert [d.name for d in devices.list_devices(session, tenant_id=t.id)] == ["pi5"]
