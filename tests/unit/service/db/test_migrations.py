"""The migrations are the only way the schema is made: they must produce exactly the models."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from edgedistill.service.db.base import Base
from edgedistill.service.db.migrate import alembic_config, current_revision, upgrade_head
from edgedistill.service.db.session import make_engine

EXPECTED_TABLES = {
    "tenants",
    "api_keys",
    "teacher_models",
    "datasets",
    "device_profiles",
    "jobs",
    "job_events",
    "artifacts",
    "latency_measurements",
    "devices",
}


def _diffs(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(ctx, Base.metadata))
    finally:
        engine.dispose()


def test_fresh_sqlite_upgrade_matches_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sub' / 'fresh.db'}"  # the parent folder is created too
    upgrade_head(url)
    assert _diffs(url) == []
    engine = make_engine(url)
    assert set(inspect(engine).get_table_names()) >= EXPECTED_TABLES
    engine.dispose()
    assert current_revision(url) is not None


def test_upgrade_is_idempotent_and_downgrade_reverses(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    upgrade_head(url)
    head = current_revision(url)
    upgrade_head(url)  # a second run (every `serve` start) is a no-op
    assert current_revision(url) == head
    command.downgrade(alembic_config(url), "base")
    engine = make_engine(url)
    assert not EXPECTED_TABLES & set(inspect(engine).get_table_names())
    engine.dispose()
    upgrade_head(url)
    assert _diffs(url) == []


@pytest.mark.postgres
def test_postgres_upgrade_matches_models(postgres_url: str) -> None:
    assert _diffs(postgres_url) == []
    assert current_revision(postgres_url) is not None


def test_unmigrated_database_differs(tmp_path: Path) -> None:
    """Guards the test above against a comparison that can never fail."""
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    assert len(_diffs(url)) >= len(EXPECTED_TABLES)
