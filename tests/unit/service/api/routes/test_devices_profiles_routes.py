from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from edgedistill.contracts.profiles import builtin_profiles

P = "/api/v1/device-profiles"
SPEC: dict[str, Any] = {
    "name": "my-board",
    "class": "cpu",
    "targets": ["onnx_int8"],
    "int8_scheme": "qdq_per_channel",
    "budgets": {"max_model_bytes": 1_000_000},
}


def test_builtins_are_listed_for_everyone(client: TestClient, alice) -> None:  # type: ignore[no-untyped-def]
    listed = client.get(P, headers=alice.headers).json()
    assert {p["name"] for p in listed if p["builtin"]} == set(builtin_profiles())
    one = client.get(f"{P}/cpu-x86", headers=alice.headers).json()
    assert one["builtin"] is True and one["spec"]["class"] == "cpu"


def test_create_custom_and_scope(client: TestClient, alice, bob) -> None:  # type: ignore[no-untyped-def]
    r = client.post(P, json=SPEC, headers=alice.headers)
    assert r.status_code == 201, r.text
    assert r.json()["builtin"] is False and r.json()["spec"]["budgets"]["max_model_bytes"] == 1_000_000
    assert client.get(f"{P}/my-board", headers=alice.headers).status_code == 200
    assert "my-board" in {p["name"] for p in client.get(P, headers=alice.headers).json()}
    assert client.get(f"{P}/my-board", headers=bob.headers).status_code == 404
    assert "my-board" not in {p["name"] for p in client.get(P, headers=bob.headers).json()}
    dup = client.post(P, json=SPEC, headers=alice.headers)
    assert dup.status_code == 409
    assert client.post(P, json=SPEC, headers=bob.headers).status_code == 201  # names are per tenant


def test_builtin_name_cannot_be_shadowed(client: TestClient, alice) -> None:  # type: ignore[no-untyped-def]
    r = client.post(P, json={**SPEC, "name": "cpu-x86"}, headers=alice.headers)
    assert r.status_code == 409 and "built-in" in r.json()["detail"]


def test_bad_fields_are_422_with_field_errors(client: TestClient, alice) -> None:  # type: ignore[no-untyped-def]
    r = client.post(P, json={**SPEC, "budgets": {"max_model_bytes": -5}}, headers=alice.headers)
    assert r.status_code == 422
    assert ["body", "budgets", "max_model_bytes"] in [e["loc"] for e in r.json()["detail"]]
    r = client.post(P, json={**SPEC, "name": "Bad Name!"}, headers=alice.headers)
    assert r.status_code == 422 and ["body", "name"] in [e["loc"] for e in r.json()["detail"]]
    mcu = {**SPEC, "class": "mcu", "targets": ["tflite_int8_full"], "int8_scheme": "full_int8"}
    r = client.post(P, json=mcu, headers=alice.headers)
    assert r.status_code == 422 and "max_ram_bytes" in str(r.json()["detail"])
