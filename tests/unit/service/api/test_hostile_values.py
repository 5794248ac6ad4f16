"""Values that used to turn a client error into a 500: NaN/Infinity in a JSON body (the 422 echoed them
and could not be serialised) and file names over 255 bytes but not 255 characters."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from edgedistill.service.api.uploads import safe_filename


def test_nan_and_infinity_in_the_body_are_a_422_naming_them(client: TestClient, alice, upload_model) -> None:  # type: ignore[no-untyped-def]
    model = upload_model(alice)
    for token in ("NaN", "Infinity", "-Infinity"):
        head = json.dumps({"model_id": model["id"], "device_profile": "cpu-x86"})[:-1]
        body = head + ', "options": {"epochs": ' + token + "}}"  # json.dumps would refuse to write NaN
        r = client.post("/api/v1/jobs", content=body, headers={**alice.headers, "content-type": "application/json"})
        assert r.status_code == 422, r.text
        (error,) = r.json()["detail"]
        assert error["loc"] == ["body", "options", "epochs"] and error["input"] in {"nan", "inf", "-inf"}


def test_file_names_are_cut_to_255_bytes_on_a_character_boundary() -> None:
    name = safe_filename("\U0001f4a3" * 300 + ".onnx")
    assert len(name.encode()) <= 255 and name == "\U0001f4a3" * 63
    assert safe_filename("é" * 200) == "é" * 127
    assert safe_filename("../../" + "a" * 300) == "a" * 255


def test_long_unicode_file_name_uploads(client: TestClient, alice, onnx_bytes: bytes) -> None:  # type: ignore[no-untyped-def]
    files = {"file": ("\U0001f4a3" * 300 + ".onnx", onnx_bytes)}
    r = client.post("/api/v1/models", files=files, headers=alice.headers)
    assert r.status_code == 201, r.text
    assert len(r.json()["filename"].encode()) <= 255


def test_booleans_are_no_numbers_in_any_body(client: TestClient, alice, upload_model) -> None:  # type: ignore[no-untyped-def]
    model = upload_model(alice)
    job = {"model_id": model["id"], "device_profile": "cpu-x86"}
    for options in ({"epochs": True}, {"student": {"width": False}}, {"losses": [{"key": "kd", "weight": True}]}):
        r = client.post("/api/v1/jobs", json={**job, "options": options}, headers=alice.headers)
        assert r.status_code == 422 and "got true/false" in r.text, (options, r.text)
    profile = {"name": "b", "class": "cpu", "targets": ["onnx_int8"], "int8_scheme": "qdq_per_channel"}
    r = client.post(
        "/api/v1/device-profiles", json={**profile, "budgets": {"max_model_bytes": True}}, headers=alice.headers
    )
    assert r.status_code == 422 and "budgets.max_model_bytes" in r.text
    # Numbers as strings still pass (the dashboard's forms send them so): only booleans are refused.
    r = client.post("/api/v1/jobs", json={**job, "options": {"epochs": "3"}}, headers=alice.headers)
    assert r.status_code == 202 and r.json()["options"]["epochs"] == 3
