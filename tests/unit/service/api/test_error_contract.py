"""What schemathesis checks on the real server (tests/integration/test_fuzz.py), pinned here cheaply:
a 405 lists every method of its path, and every authenticated route documents the shared error codes."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient


def test_405_allow_lists_every_method_of_the_path(client: TestClient, alice) -> None:  # type: ignore[no-untyped-def]
    for path, allowed in [
        ("/api/v1/models", "GET, POST"),
        ("/api/v1/models/x", "DELETE, GET"),
        ("/api/v1/devices", "GET, POST"),
        ("/api/v1/artifacts/x/measurements", "GET, POST"),
        ("/api/v1/devices/me", "GET"),  # not /devices/{device_id}'s DELETE
    ]:
        r = client.request("PATCH", path, headers=alice.headers)
        assert r.status_code == 405 and r.headers["Allow"] == allowed, (path, r.headers.get("Allow"))
        assert r.json() == {"detail": "Method Not Allowed"}
    assert client.get("/api/v1/no-such-route").json() == {"detail": "Not Found"}


def test_every_authenticated_route_documents_the_shared_errors(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    for path, ops in paths.items():
        if not path.startswith("/api/v1/") or path.endswith(("healthz", "readyz")):
            continue
        for method, op in ops.items():
            assert {"400", "401", "404", "422", "503"} <= set(op["responses"]), (method, path)
    assert "415" in paths["/api/v1/datasets"]["post"]["responses"]
    assert "401" not in paths["/api/v1/healthz"]["get"]["responses"]
