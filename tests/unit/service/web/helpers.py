"""Test helpers for the dashboard route tests (imported by conftest.py and the tests)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from edgedistill.service.db.models import Job, Tenant
from edgedistill.service.repos import artifacts, datasets, events, jobs, models

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class FakeQueue:
    sent: list[tuple[str, str]] = field(default_factory=list)

    def enqueue(self, job_id: str, queue: str = "compress") -> None:
        self.sent.append((job_id, queue))

    def ping(self, timeout: float) -> None:
        return None


@dataclass
class Browser:
    """A TestClient with its own cookies, logged in (or not) as one tenant."""

    client: TestClient
    tenant: Tenant | None = None
    key: str = ""

    def csrf(self, path: str = "/ui/login") -> str:
        page = self.client.get(path)
        match = CSRF_RE.search(page.text)
        assert match, page.text[:500]
        return match.group(1)

    def post_form(self, path: str, data: dict[str, Any], *, page: str | None = None, **kw: Any) -> Any:
        token = self.csrf(page or path)
        return self.client.post(path, data={"csrf_token": token, **data}, follow_redirects=False, **kw)


class Rows:
    """Jobs in the states the pages show, made through the repos."""

    def __init__(self, app: FastAPI, db: Session) -> None:
        self.app, self.db = app, db

    def model(self, tenant: Tenant, name: str = "teacher.onnx") -> str:
        row = models.create_model(
            self.db,
            tenant_id=tenant.id,
            name=name,
            filename=name,
            format="onnx",
            size_bytes=100,
            sha256="a" * 64,
            storage_key="aa/" + "a" * 64,
        )
        self.db.commit()
        return row.id

    def dataset(self, tenant: Tenant) -> str:
        row = datasets.create_dataset(
            self.db,
            tenant_id=tenant.id,
            name="digits.npz",
            filename="digits.npz",
            size_bytes=200,
            sha256="b" * 64,
            storage_key="bb/" + "b" * 64,
            summary={"num_samples": 10, "has_labels": True},
        )
        self.db.commit()
        return row.id

    def job(self, tenant: Tenant, *, profile: str = "cpu-x86", **options: Any) -> Job:
        job, _ = jobs.create_job(
            self.db,
            tenant_id=tenant.id,
            model_id=self.model(tenant),
            dataset_id=None,
            profile_name=profile,
            profile={"name": profile, "class": "cpu", "budgets": {"max_model_bytes": 1000}},
            options={"epochs": 5, **options},
        )
        self.db.commit()
        return job

    def running(self, tenant: Tenant, curve: list[dict[str, Any]] | None = None) -> Job:
        job = self.job(tenant)
        jobs.claim_job(self.db, job_id=job.id, worker_id="w1")
        events.append_event(self.db, job_id=job.id, kind="stage_started", stage="load")
        events.append_event(self.db, job_id=job.id, kind="stage_finished", stage="load", data={"seconds": 1.5})
        events.append_event(self.db, job_id=job.id, kind="stage_started", stage="distill")
        for point in curve or []:
            events.append_event(self.db, job_id=job.id, kind="epoch", stage="distill", data=point)
        jobs.update_progress(
            self.db, job_id=job.id, stage="distill", progress=30.0, metrics={"training_curve": curve or []}
        )
        self.db.commit()
        return job

    def finished(self, tenant: Tenant, status: str = "succeeded", **kw: Any) -> Job:
        job = self.running(tenant)
        jobs.finish_job(self.db, job_id=job.id, status=status, **kw)
        self.db.commit()
        self.db.refresh(job)
        return job

    def artifact(
        self, job: Job, kind: str, content: bytes, filename: str, metadata: dict[str, Any] | None = None
    ) -> str:
        path = Path(self.app.state.settings.data_dir) / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        stored = self.app.state.store.put_file(path)
        row = artifacts.upsert_artifact(
            self.db,
            job_id=job.id,
            kind=kind,
            tenant_id=job.tenant_id,
            filename=filename,
            size_bytes=stored.size,
            sha256=stored.sha256,
            storage_key=stored.key,
            metadata=metadata,
        )
        self.db.commit()
        return row.id
