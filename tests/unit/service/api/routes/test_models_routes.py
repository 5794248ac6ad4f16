from __future__ import annotations

import hashlib
import pickle
from collections.abc import Iterator
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from edgedistill.service.settings import Settings


def _stored_files(settings: Settings) -> list[Path]:
    roots = [settings.storage_dir, settings.upload_tmp_dir]
    return [p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()]


def test_upload_onnx_then_get_list_delete(client: TestClient, alice, onnx_bytes: bytes, app: FastAPI) -> None:  # type: ignore[no-untyped-def]
    r = client.post(
        "/api/v1/models",
        files={"file": ("teacher.onnx", onnx_bytes)},
        data={"name": "my teacher"},
        headers=alice.headers,
    )
    assert r.status_code == 201, r.text
    m = r.json()
    assert m["format"] == "onnx" and m["name"] == "my teacher" and m["filename"] == "teacher.onnx"
    assert m["size_bytes"] == len(onnx_bytes) and m["sha256"] == hashlib.sha256(onnx_bytes).hexdigest()
    store = app.state.store
    key = f"{m['sha256'][:2]}/{m['sha256']}"
    assert b"".join(store.iter_range(key)) == onnx_bytes
    assert client.get(f"/api/v1/models/{m['id']}", headers=alice.headers).json()["id"] == m["id"]
    assert [x["id"] for x in client.get("/api/v1/models", headers=alice.headers).json()["items"]] == [m["id"]]
    assert client.delete(f"/api/v1/models/{m['id']}", headers=alice.headers).status_code == 204
    assert client.get(f"/api/v1/models/{m['id']}", headers=alice.headers).status_code == 404
    assert not store.exists(key)  # nothing else used those bytes


def test_other_tenants_model_is_404(client: TestClient, alice, bob, upload_model) -> None:  # type: ignore[no-untyped-def]
    m = upload_model(alice)
    assert client.get(f"/api/v1/models/{m['id']}", headers=bob.headers).status_code == 404
    assert client.delete(f"/api/v1/models/{m['id']}", headers=bob.headers).status_code == 404
    assert client.get("/api/v1/models", headers=bob.headers).json()["items"] == []
    assert client.get(f"/api/v1/models/{m['id']}", headers=alice.headers).status_code == 200


def test_model_used_by_a_queued_job_cannot_be_deleted(client: TestClient, alice, submit) -> None:  # type: ignore[no-untyped-def]
    job = submit(alice)
    r = client.delete(f"/api/v1/models/{job['model_id']}", headers=alice.headers)
    assert r.status_code == 409 and "queued or running job" in r.json()["detail"]


def test_pickle_is_refused_with_415(client: TestClient, alice, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    payload = pickle.dumps({"state_dict": [1, 2, 3]}, protocol=4)
    r = client.post("/api/v1/models", files={"file": ("model.pt", payload)}, headers=alice.headers)
    assert r.status_code == 415
    assert "pickle" in r.json()["detail"] and "model.pt" in r.json()["detail"]
    assert _stored_files(settings) == []


def test_garbage_and_empty_files_are_415(client: TestClient, alice, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    for content in (b"hello, I am not a model" * 10, b""):
        r = client.post("/api/v1/models", files={"file": ("x.onnx", content)}, headers=alice.headers)
        assert r.status_code == 415, r.text
    assert _stored_files(settings) == []


def test_not_multipart_is_415_and_missing_file_is_422(client: TestClient, alice) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/models", content=b"raw", headers={**alice.headers, "Content-Type": "application/onnx"})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"]
    r = client.post("/api/v1/models", data={"name": "x"}, files={"other": ("a", b"b")}, headers=alice.headers)
    assert r.status_code == 422 and "'file'" in r.json()["detail"]


def test_file_under_another_field_name_is_422_naming_the_field(client: TestClient, alice, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    big = b"\0" * 200_000  # over the 64 KiB text-field cap: once reported as an over-long "form field"
    for path in ("/api/v1/models", "/api/v1/datasets"):
        r = client.post(path, files={"model": ("teacher.onnx", big)}, headers=alice.headers)
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert "'file' field" in detail and "'model'" in detail and "-F file=@" in detail
    assert _stored_files(settings) == []


class TestLimits:
    """A 10 kB upload limit for this class."""

    LIMIT = 10_000

    @staticmethod
    def _settings(settings: Settings) -> Settings:
        return settings.model_copy(update={"max_upload_bytes": TestLimits.LIMIT})

    def test_streamed_body_over_the_limit_is_413_and_nothing_kept(  # type: ignore[no-untyped-def]
        self, settings: Settings, fake_queue, alice
    ) -> None:
        from edgedistill.service.main import create_app

        s = self._settings(settings)
        boundary = "XyZ"
        sent = []

        def body() -> Iterator[bytes]:  # chunked: no Content-Length to check up front
            yield (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.onnx"\r\n\r\n').encode()
            for _ in range(200):
                sent.append(1)
                yield b"\0" * 1000
            yield f"\r\n--{boundary}--\r\n".encode()

        with TestClient(create_app(s, queue=fake_queue)) as c:
            r = c.post(
                "/api/v1/models",
                content=body(),
                headers={**alice.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
            )
        assert r.status_code == 413 and str(self.LIMIT) in r.json()["detail"]
        assert _stored_files(s) == []

    def test_declared_length_over_the_limit_is_413_up_front(self, settings: Settings, fake_queue, alice) -> None:  # type: ignore[no-untyped-def]
        from edgedistill.service.main import create_app

        s = self._settings(settings)
        with TestClient(create_app(s, queue=fake_queue)) as c:
            r = c.post(
                "/api/v1/models",
                content=b"--b\r\n",
                headers={
                    **alice.headers,
                    "Content-Type": "multipart/form-data; boundary=b",
                    "Content-Length": str(50 * 1024**2),
                },
            )
        assert r.status_code == 413


def test_filename_is_sanitised(client: TestClient, alice, onnx_bytes: bytes) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/models", files={"file": ("..\\..\\etc\\teacher.onnx", onnx_bytes)}, headers=alice.headers)
    assert r.status_code == 201
    assert r.json()["filename"] == "teacher.onnx"


def test_safe_filename() -> None:
    from edgedistill.service.api.uploads import safe_filename

    assert safe_filename("../../etc/te\x01acher.onnx") == "teacher.onnx"
    assert safe_filename("C:\\x\\m.pt2") == "m.pt2"
    assert safe_filename("..") == "upload.bin"
    assert safe_filename(".hidden") == "hidden"
    assert len(safe_filename("a" * 1000)) == 255
