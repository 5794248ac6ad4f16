from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient


def test_upload_npz_records_its_summary(client: TestClient, alice, good_npz: bytes) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/datasets", files={"file": ("digits.npz", good_npz)}, headers=alice.headers)
    assert r.status_code == 201, r.text
    d = r.json()
    assert d["summary"]["num_samples"] == 20 and d["summary"]["has_labels"] is True
    assert d["summary"]["shapes"]["x"] == [20, 4] and d["summary"]["dtypes"]["x"] == "float32"
    assert d["name"] == "digits.npz"
    assert client.get(f"/api/v1/datasets/{d['id']}", headers=alice.headers).json() == d
    assert [x["id"] for x in client.get("/api/v1/datasets", headers=alice.headers).json()["items"]] == [d["id"]]


def test_bad_npz_is_422_with_the_reason(client: TestClient, alice, make_npz, settings) -> None:  # type: ignore[no-untyped-def]
    cases = {
        b"not a zip": "not an .npz",
        make_npz(y=np.zeros(4, dtype=np.int64)): "no input arrays",
        make_npz(x=np.zeros((4, 2), dtype=np.float32), y=np.zeros(3)): "y has shape",
        make_npz(x=np.array([object(), 1], dtype=object)): "object",
    }
    for content, reason in cases.items():
        r = client.post("/api/v1/datasets", files={"file": ("d.npz", content)}, headers=alice.headers)
        assert r.status_code == 422, r.text
        assert reason in r.json()["detail"]
    stored = settings.storage_dir / "objects"
    assert not stored.exists() or not any(p.is_file() for p in stored.rglob("*"))


def test_other_tenants_dataset_is_404(client: TestClient, alice, bob, upload_dataset) -> None:  # type: ignore[no-untyped-def]
    d = upload_dataset(alice)
    assert client.get(f"/api/v1/datasets/{d['id']}", headers=bob.headers).status_code == 404
    assert client.get("/api/v1/datasets", headers=bob.headers).json()["items"] == []
