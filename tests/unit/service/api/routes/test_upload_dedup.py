"""Uploads are deduplicated per tenant by sha256: the same bytes again answer 200 with the existing
record; another tenant, or the same tenant after deleting it, gets a new one (201)."""

from __future__ import annotations

from fastapi.testclient import TestClient


def _post(client: TestClient, path: str, content: bytes, headers: dict[str, str], name: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    r = client.post(path, files={"file": (name, content)}, data={"name": name}, headers=headers)
    return r.status_code, r.json()


def test_same_model_twice_is_one_record(client: TestClient, alice, bob, onnx_bytes: bytes) -> None:  # type: ignore[no-untyped-def]
    code, first = _post(client, "/api/v1/models", onnx_bytes, alice.headers, "teacher.onnx")
    assert code == 201
    code, again = _post(client, "/api/v1/models", onnx_bytes, alice.headers, "renamed.onnx")
    assert code == 200 and again == first  # the existing record, its name unchanged
    assert len(client.get("/api/v1/models", headers=alice.headers).json()["items"]) == 1
    code, other = _post(client, "/api/v1/models", onnx_bytes, bob.headers, "teacher.onnx")
    assert code == 201 and other["id"] != first["id"]  # never another tenant's row
    assert client.delete(f"/api/v1/models/{first['id']}", headers=alice.headers).status_code == 204
    code, fresh = _post(client, "/api/v1/models", onnx_bytes, alice.headers, "teacher.onnx")
    assert code == 201 and fresh["id"] != first["id"]
    assert client.get(f"/api/v1/models/{fresh['id']}", headers=alice.headers).status_code == 200


def test_same_dataset_twice_is_one_record(client: TestClient, alice, bob, good_npz: bytes) -> None:  # type: ignore[no-untyped-def]
    code, first = _post(client, "/api/v1/datasets", good_npz, alice.headers, "d.npz")
    assert code == 201
    code, again = _post(client, "/api/v1/datasets", good_npz, alice.headers, "d2.npz")
    assert code == 200 and again["id"] == first["id"]
    assert len(client.get("/api/v1/datasets", headers=alice.headers).json()["items"]) == 1
    code, other = _post(client, "/api/v1/datasets", good_npz, bob.headers, "d.npz")
    assert code == 201 and other["id"] != first["id"]


def test_openapi_documents_the_200(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in ("/api/v1/models", "/api/v1/datasets"):
        assert "sha256" in spec["paths"][path]["post"]["responses"]["200"]["description"]
