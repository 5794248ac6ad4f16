"""The tenant's webhook secret, the submit-time destination check and the per-job delivery log."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.unit.service.test_netpolicy import REFUSED

J = "/api/v1/jobs"
S = "/api/v1/webhook-secret"


def test_secret_is_per_tenant_shown_once_and_rotates(client: TestClient, alice, bob) -> None:  # type: ignore[no-untyped-def]
    assert client.get(S, headers=alice.headers).json() == {"configured": False, "created_at": None}
    first = client.post(S, headers=alice.headers)
    assert first.status_code == 201 and first.json()["secret"].startswith("whsec_")
    state = client.get(S, headers=alice.headers).json()
    assert state["configured"] is True and "secret" not in state
    second = client.post(S, headers=alice.headers).json()["secret"]
    assert second != first.json()["secret"]
    theirs = client.post(S, headers=bob.headers).json()["secret"]
    assert theirs not in (first.json()["secret"], second)
    assert client.get(S).status_code == 401


def test_a_webhook_needs_the_tenants_secret(client: TestClient, alice, upload_model) -> None:  # type: ignore[no-untyped-def]
    m = upload_model(alice)
    body = {"model_id": m["id"], "device_profile": "cpu-x86", "webhook_url": "https://8.8.8.8/hook"}
    r = client.post(J, json=body, headers=alice.headers)
    assert r.status_code == 422 and "no webhook secret" in r.json()["detail"][0]["msg"]
    client.post(S, headers=alice.headers)
    assert client.post(J, json=body, headers=alice.headers).status_code == 202


@pytest.mark.parametrize("url", [u for u in REFUSED if u.startswith("http")])
def test_internal_webhook_urls_are_refused_at_submit(client: TestClient, alice, upload_model, url: str) -> None:  # type: ignore[no-untyped-def]
    client.post(S, headers=alice.headers)
    m = upload_model(alice)
    r = client.post(
        J, json={"model_id": m["id"], "device_profile": "cpu-x86", "webhook_url": url}, headers=alice.headers
    )
    assert r.status_code == 422, (url, r.text)
    assert r.json()["detail"][0]["loc"] == ["body", "webhook_url"]


def test_delivery_log_is_the_tenants_own(client: TestClient, alice, bob, submit) -> None:  # type: ignore[no-untyped-def]
    job = submit(alice)
    assert client.get(f"{J}/{job['id']}/webhook-deliveries", headers=alice.headers).json() == []
    assert client.get(f"{J}/{job['id']}/webhook-deliveries", headers=bob.headers).status_code == 404
