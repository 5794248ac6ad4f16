from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from edgedistill.service.settings import Settings, get_settings


def test_defaults_live_under_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings()
    assert s.data_dir == tmp_path / ".edgedistill"
    assert s.database_url == f"sqlite:///{tmp_path / '.edgedistill' / 'edgedistill.db'}"
    assert s.storage_dir == tmp_path / ".edgedistill" / "artifacts"
    assert s.redis_url is None and s.broker_url is None
    assert s.max_upload_bytes == 2 * 1024**3 and s.upload_chunk_bytes == 1024**2


def test_environment_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEDISTILL_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("EDGEDISTILL_DATABASE_URL", "postgresql+psycopg://u@h/db")
    monkeypatch.setenv("EDGEDISTILL_REDIS_URL", "redis://r:6379/0")
    monkeypatch.setenv("EDGEDISTILL_MAX_UPLOAD_BYTES", "1000")
    monkeypatch.setenv("EDGEDISTILL_STORAGE_DIR", str(tmp_path / "arts"))
    s = Settings()
    assert s.database_url == "postgresql+psycopg://u@h/db"
    assert s.broker_url == "redis://r:6379/0"
    assert s.max_upload_bytes == 1000
    assert s.storage_dir == tmp_path / "arts"


def test_get_settings_is_cached_and_clearable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    get_settings.cache_clear()
    try:
        monkeypatch.setenv("EDGEDISTILL_DATA_DIR", str(tmp_path / "one"))
        first = get_settings()
        monkeypatch.setenv("EDGEDISTILL_DATA_DIR", str(tmp_path / "two"))
        assert get_settings() is first
        get_settings.cache_clear()
        assert get_settings().data_dir == tmp_path / "two"
    finally:
        get_settings.cache_clear()


def test_bad_values_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        Settings(data_dir=tmp_path, storage_backend="ftp")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="S3_BUCKET"):
        Settings(data_dir=tmp_path, storage_backend="s3")
    with pytest.raises(ValidationError):
        Settings(data_dir=tmp_path, max_upload_bytes=0)


def test_generated_secret_key_is_stable_per_data_dir(tmp_path: Path) -> None:
    a = Settings(data_dir=tmp_path).resolved_secret_key()
    assert len(a) >= 32 and Settings(data_dir=tmp_path).resolved_secret_key() == a
    assert Settings(data_dir=tmp_path, secret_key="given").resolved_secret_key() == "given"
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_webhook_allowlist_is_comma_separated(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, webhook_allowlist=" 10.0.0.0/8, hooks.internal ,,")
    assert s.webhook_allow_entries() == ["10.0.0.0/8", "hooks.internal"]
    assert Settings(data_dir=tmp_path).webhook_allow_entries() == []
