from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from edgedistill.service.admin import main
from edgedistill.service.db.session import make_engine, make_sessionmaker
from edgedistill.service.repos import api_keys
from edgedistill.service.settings import get_settings


@pytest.fixture
def db_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'admin.db'}"
    monkeypatch.setenv("EDGEDISTILL_DATABASE_URL", url)
    monkeypatch.setenv("EDGEDISTILL_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def _session(url: str) -> Session:
    return make_sessionmaker(make_engine(url))()


def test_keys_need_a_migrated_database(db_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["create-key", "--tenant", "acme"]) == 2
    assert "admin migrate" in capsys.readouterr().err


def test_migrate_create_list_revoke(db_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate"]) == 0
    assert "is at revision" in capsys.readouterr().out
    assert main(["create-key", "--tenant", "acme", "--name", "ci"]) == 0
    out = capsys.readouterr()
    secret = out.out.strip()
    assert secret.startswith("edk_") and "shown only once" in out.err
    with _session(db_env) as s:
        auth = api_keys.authenticate(s, secret=secret)
        assert auth is not None and auth.tenant.name == "acme"

    assert main(["list-keys"]) == 0
    listing = capsys.readouterr().out
    assert secret[:12] in listing and "acme" in listing and "active" in listing and secret not in listing

    assert main(["revoke-key", secret[:12]]) == 0
    with _session(db_env) as s:
        assert api_keys.authenticate(s, secret=secret) is None
    assert main(["revoke-key", secret[:12]]) == 1
    assert main(["list-keys", "--tenant", "nobody"]) == 1


def test_second_key_reuses_the_tenant(db_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    main(["migrate"])
    main(["create-key", "--tenant", "acme"])
    main(["create-key", "--tenant", "acme"])
    capsys.readouterr()
    with _session(db_env) as s:
        assert {t.name for _, t in api_keys.list_keys(s)} == {"acme"}
        assert len(api_keys.list_keys(s)) == 2


def test_webhook_secret_is_printed_once_and_rotates(db_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    from edgedistill.service.repos import tenants, webhook_secrets

    main(["migrate"])
    main(["create-key", "--tenant", "acme"])
    capsys.readouterr()
    assert main(["webhook-secret", "--tenant", "acme"]) == 0
    first = capsys.readouterr()
    assert first.out.strip().startswith("whsec_") and "shown only once" in first.err
    assert main(["webhook-secret", "--tenant", "acme"]) == 0
    second = capsys.readouterr().out.strip()
    assert second != first.out.strip()
    with _session(db_env) as s:
        tenant = tenants.get_tenant_by_name(s, name="acme")
        assert tenant is not None and webhook_secrets.signing_secret(s, tenant_id=tenant.id) == second
    assert main(["webhook-secret", "--tenant", "nobody"]) == 1
