from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from edgedistill.service.db.base import utcnow
from edgedistill.service.db.models import ApiKey, Tenant
from edgedistill.service.db.session import dispose_engines, make_engine, make_sessionmaker, session_scope
from edgedistill.service.settings import Settings


def test_sqlite_connections_use_wal_foreign_keys_and_busy_timeout(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 1000
    engine.dispose()


def test_foreign_keys_are_enforced(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with make_sessionmaker(engine)() as s:
        s.add(ApiKey(tenant_id="nope", name="k", prefix="edk_x", key_hash="0" * 64))
        with pytest.raises(IntegrityError):
            s.flush()
    engine.dispose()


def test_timestamps_come_back_timezone_aware_utc(session) -> None:  # type: ignore[no-untyped-def]
    plus_two = timezone(timedelta(hours=2))
    when = datetime(2026, 5, 1, 12, 0, tzinfo=plus_two)
    session.add(Tenant(name="tz", created_at=when))
    session.commit()
    session.expire_all()
    got = session.scalar(select(Tenant).where(Tenant.name == "tz"))
    assert got.created_at.tzinfo is not None
    assert got.created_at.utcoffset() == timedelta(0)
    assert got.created_at == when
    assert got.created_at.hour == 10


def test_naive_datetimes_are_refused(session) -> None:  # type: ignore[no-untyped-def]
    session.add(Tenant(name="naive", created_at=datetime(2026, 1, 1)))
    with pytest.raises(Exception, match="naive datetime"):
        session.flush()


def test_session_scope_commits_and_rolls_back(sqlite_url: str, tmp_path: Path) -> None:
    settings = Settings(database_url=sqlite_url, data_dir=tmp_path)
    try:
        with session_scope(settings) as s:
            s.add(Tenant(name="kept", created_at=utcnow()))
        with pytest.raises(RuntimeError), session_scope(settings) as s:
            s.add(Tenant(name="dropped", created_at=utcnow()))
            s.flush()
            raise RuntimeError("boom")
        with session_scope(settings) as s:
            names = set(s.scalars(select(Tenant.name)))
        assert names == {"kept"}
    finally:
        dispose_engines()
