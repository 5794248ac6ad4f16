from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from edgedistill.service.repos import api_keys


def test_health_needs_no_key(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/api/v1/healthz").status_code == 200


def test_missing_key_is_401_with_challenge(client: TestClient) -> None:
    r = client.get("/api/v1/jobs")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in r.json()["detail"]
    r = client.get("/api/v1/jobs", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert r.status_code == 401


def test_unknown_key_is_401(client: TestClient) -> None:
    r = client.get("/api/v1/models", headers={"Authorization": "Bearer edk_not-a-real-key"})
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]


def test_valid_key_then_revoked(client: TestClient, db: Session, alice) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/api/v1/models", headers=alice.headers).status_code == 200
    api_keys.revoke_key(db, prefix=alice.key_prefix)
    db.commit()
    r = client.get("/api/v1/models", headers=alice.headers)
    assert r.status_code == 401 and r.json()["detail"] == "invalid or revoked API key"


def test_every_resource_route_requires_a_key(client: TestClient) -> None:
    routes = [
        ("GET", "/api/v1/models"),
        ("POST", "/api/v1/models"),
        ("GET", "/api/v1/models/x"),
        ("DELETE", "/api/v1/models/x"),
        ("GET", "/api/v1/datasets"),
        ("POST", "/api/v1/datasets"),
        ("GET", "/api/v1/datasets/x"),
        ("GET", "/api/v1/device-profiles"),
        ("POST", "/api/v1/device-profiles"),
        ("GET", "/api/v1/device-profiles/cpu-x86"),
        ("POST", "/api/v1/jobs"),
        ("GET", "/api/v1/jobs"),
        ("GET", "/api/v1/jobs/x"),
        ("POST", "/api/v1/jobs/x/cancel"),
        ("GET", "/api/v1/jobs/x/events"),
        ("GET", "/api/v1/jobs/x/report"),
        ("GET", "/api/v1/jobs/x/artifacts"),
        ("GET", "/api/v1/artifacts/x"),
        ("GET", "/api/v1/artifacts/x/download"),
        ("GET", "/api/v1/artifacts/x/measurements"),
        ("POST", "/api/v1/artifacts/x/measurements"),
        ("GET", "/api/v1/measurements"),
    ]
    for method, path in routes:
        assert client.request(method, path).status_code == 401, (method, path)
