"""Fixtures for the service unit tests: databases made by the migrations (SQLite always, PostgreSQL
when EDGEDISTILL_TEST_POSTGRES_URL is set), sessions and small row factories."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from edgedistill.service.db.base import Base
from edgedistill.service.db.migrate import upgrade_head
from edgedistill.service.db.models import Artifact, Dataset, Job, TeacherModel, Tenant
from edgedistill.service.db.session import make_engine, make_sessionmaker
from edgedistill.service.repos import artifacts, datasets, jobs, models, tenants

PG_ENV = "EDGEDISTILL_TEST_POSTGRES_URL"


def _url_str(url: Any) -> str:
    return str(url.render_as_string(hide_password=False))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file per test session; each test gets a copy (migrating is the slow part)."""
    path = tmp_path_factory.mktemp("db-template") / "template.db"
    upgrade_head(f"sqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    path = tmp_path / "edgedistill.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A private schema in the test PostgreSQL (search_path), migrated once, dropped at the end."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set")
    schema = f"edunit_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = _url_str(make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}))
    try:
        upgrade_head(url)
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _truncate_all(url: str) -> None:
    engine = create_engine(url)
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[str]:
    """The repo tests run on both backends."""
    if request.param == "sqlite":
        yield sqlite_url
        return
    url: str = request.getfixturevalue("postgres_url")
    _truncate_all(url)
    yield url


@pytest.fixture
def session(db_url: str) -> Iterator[Session]:
    engine = make_engine(db_url)
    s = make_sessionmaker(engine)()
    try:
        yield s
    finally:
        s.close()
        engine.dispose()


class Factory:
    """Rows with plausible defaults, made through the repos."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._n = 0

    def _next(self) -> int:
        self._n += 1
        return self._n

    def tenant(self, name: str | None = None) -> Tenant:
        return tenants.get_or_create_tenant(self.session, name=name or f"tenant-{self._next()}")

    def model(self, tenant: Tenant, **kw: Any) -> TeacherModel:
        n = self._next()
        sha = kw.pop("sha256", f"{n:064x}")
        fields: dict[str, Any] = {
            "name": f"model-{n}",
            "filename": f"model-{n}.onnx",
            "format": "onnx",
            "size_bytes": 100,
            "sha256": sha,
            "storage_key": f"{sha[:2]}/{sha}",
        }
        fields.update(kw)
        return models.create_model(self.session, tenant_id=tenant.id, **fields)

    def dataset(self, tenant: Tenant, **kw: Any) -> Dataset:
        n = self._next()
        sha = kw.pop("sha256", f"{n + 1000:064x}")
        fields: dict[str, Any] = {
            "name": f"data-{n}",
            "filename": f"data-{n}.npz",
            "size_bytes": 200,
            "sha256": sha,
            "storage_key": f"{sha[:2]}/{sha}",
            "summary": {"num_samples": 10, "has_labels": True},
        }
        fields.update(kw)
        return datasets.create_dataset(self.session, tenant_id=tenant.id, **fields)

    def job(self, tenant: Tenant, model: TeacherModel | None = None, **kw: Any) -> Job:
        model = model or self.model(tenant)
        fields: dict[str, Any] = {
            "dataset_id": None,
            "profile_name": "cpu-x86",
            "profile": {"name": "cpu-x86"},
            "options": {"epochs": 1},
        }
        fields.update(kw)
        job, _ = jobs.create_job(self.session, tenant_id=tenant.id, model_id=model.id, **fields)
        return job

    def artifact(self, job: Job, kind: str = "onnx_int8", **kw: Any) -> Artifact:
        n = self._next()
        sha = kw.pop("sha256", f"{n + 5000:064x}")
        fields: dict[str, Any] = {
            "filename": f"student-{kind}.bin",
            "size_bytes": 10,
            "sha256": sha,
            "storage_key": f"{sha[:2]}/{sha}",
            "metadata": {},
        }
        fields.update(kw)
        return artifacts.upsert_artifact(self.session, job_id=job.id, tenant_id=job.tenant_id, kind=kind, **fields)


@pytest.fixture
def factory(session: Session) -> Factory:
    return Factory(session)
