"""The store re-checks content: a changed object is repaired by a rewrite of the same bytes, refused on
read when verify-on-read is on, and reported by `edgedistill admin scrub`."""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgedistill.service.storage import LocalStore
from edgedistill.service.storage.integrity import StoredRef, object_intact, scrub


def _damage(store: LocalStore, key: str) -> Path:
    path = store.objects / key
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF  # same size, other bytes
    path.write_bytes(bytes(data))
    return path


def test_a_same_size_rewrite_repairs_a_changed_object(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    obj = store.put_stream(iter([b"model bytes"]))
    _damage(store, obj.key)
    assert not object_intact(store, obj.key)
    again = store.put_stream(iter([b"model bytes"]))
    assert again.key == obj.key and object_intact(store, obj.key, obj.sha256)
    path = store.objects / obj.key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_scrub_reports_missing_resized_and_changed_objects(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    good, bad, gone = (store.put_stream(iter([d])) for d in (b"good", b"bad!", b"gone"))
    _damage(store, bad.key)
    store.delete(gone.key)
    refs = [
        StoredRef("dataset", "d1", good.key, good.sha256, good.size),
        StoredRef("artifact", "a1", bad.key, bad.sha256, bad.size),
        StoredRef("artifact", "a2", gone.key, gone.sha256, gone.size),
        StoredRef("artifact", "a3", good.key, good.sha256, good.size + 1),  # row and object disagree on size
    ]
    checked, problems = scrub(store, refs)
    assert checked == 3
    assert sorted((p.ref.row_id, p.problem) for p in problems) == [("a1", "content"), ("a2", "missing"), ("a3", "size")]


@pytest.fixture
def admin_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    from edgedistill.service.settings import get_settings

    monkeypatch.setenv("EDGEDISTILL_DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite'}")
    monkeypatch.setenv("EDGEDISTILL_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_admin_scrub_exits_1_on_damage(admin_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgedistill.service.admin import main
    from edgedistill.service.db.session import session_scope
    from edgedistill.service.repos import datasets, tenants
    from edgedistill.service.settings import get_settings

    assert main(["migrate"]) == 0
    store = LocalStore(get_settings().storage_dir)
    obj = store.put_stream(iter([b"transfer data"]))
    with session_scope(get_settings()) as s:
        tenant = tenants.get_or_create_tenant(s, name="acme")
        datasets.create_dataset(
            s, tenant_id=tenant.id, name="d", filename="d.npz", size_bytes=obj.size, sha256=obj.sha256,
            storage_key=obj.key, summary={},
        )  # fmt: skip
    capsys.readouterr()
    assert main(["scrub"]) == 0 and "0 problem(s)" in capsys.readouterr().out
    _damage(store, obj.key)
    assert main(["scrub"]) == 1
    out = capsys.readouterr().out
    assert "CONTENT" in out and "dataset" in out and hashlib.sha256(b"transfer data").hexdigest()[:8] in out
