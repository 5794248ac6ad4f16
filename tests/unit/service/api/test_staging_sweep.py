"""Staging leftovers of killed processes (upload-* folders, the store's put-* files) are removed when the
API starts, once they are old enough that no live upload can own them."""

from __future__ import annotations

import os
import time
from pathlib import Path

from fastapi.testclient import TestClient

from edgedistill.service.api.uploads import STALE_STAGING_S, sweep_stale_staging
from edgedistill.service.main import create_app
from edgedistill.service.settings import Settings

OLD = STALE_STAGING_S + 60


def _make(path: Path, *, folder: bool = False, age_s: float = 0, file_age_s: float | None = None) -> Path:
    then = time.time() - age_s
    if folder:
        path.mkdir(parents=True)
        inner = path / "big.onnx"
        inner.write_bytes(b"x")
        inner_then = time.time() - (age_s if file_age_s is None else file_age_s)
        os.utime(inner, (inner_then, inner_then))
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    os.utime(path, (then, then))
    return path


def test_only_old_staging_entries_go(tmp_path: Path) -> None:
    _make(tmp_path / "upload-old", folder=True, age_s=OLD)
    _make(tmp_path / "upload-new", folder=True)
    _make(tmp_path / "upload-long", folder=True, age_s=OLD, file_age_s=5)  # started long ago, still writing
    _make(tmp_path / "put-old", age_s=OLD)
    _make(tmp_path / "put-new")
    _make(tmp_path / "web-upload-old", folder=True, age_s=OLD)  # the dashboard's staging
    _make(tmp_path / "unrelated", age_s=OLD)
    assert sweep_stale_staging([tmp_path, tmp_path / "missing"]) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["put-new", "unrelated", "upload-long", "upload-new"]


def test_the_api_sweeps_at_start(settings: Settings, fake_queue) -> None:  # type: ignore[no-untyped-def]
    upload = _make(settings.upload_tmp_dir / "upload-killed", folder=True, age_s=OLD)
    put = _make(settings.storage_dir / "tmp" / "put-killed", age_s=OLD)
    live = _make(settings.upload_tmp_dir / "upload-live", folder=True)
    with TestClient(create_app(settings, queue=fake_queue)):
        assert not upload.exists() and not put.exists() and live.exists()
