"""The worker resolves a lifelong job's options.init_from (an earlier job of the same tenant) to that
job's fp32 ONNX student, report and probe, and options.old_data to a data set. Real SQLite database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from edgedistill.service.db.migrate import upgrade_head
from edgedistill.service.db.models import Job
from edgedistill.service.db.session import dispose_engines, session_scope
from edgedistill.service.repos import artifacts, datasets, jobs, models, tenants
from edgedistill.service.settings import Settings
from edgedistill.workers.jobrunner import _lifelong_inputs

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    url = f"sqlite:///{tmp_path / 'ed.db'}"
    upgrade_head(url)
    yield Settings(data_dir=tmp_path, database_url=url)
    dispose_engines()


def _job(s: object, tenant_id: str, model_id: str, options: dict[str, object]) -> str:
    job, _ = jobs.create_job(
        s, tenant_id=tenant_id, model_id=model_id, dataset_id=None, profile_name="cpu-x86", profile={},
        options=options,
    )  # type: ignore[arg-type]  # fmt: skip
    return job.id


def test_init_from_resolves_within_the_tenant_only(settings: Settings) -> None:
    with session_scope(settings) as s:
        t1 = tenants.get_or_create_tenant(s, name="t1")
        t2 = tenants.get_or_create_tenant(s, name="t2")
        model = models.create_model(
            s, tenant_id=t1.id, name="m", filename="m.onnx", format="onnx", size_bytes=1,
            sha256="0" * 64, storage_key="00/" + "0" * 64,
        )  # fmt: skip
        earlier = _job(s, t1.id, model.id, {})
        for kind in ("onnx_fp32", "report", "probe"):
            artifacts.upsert_artifact(
                s, job_id=earlier, kind=kind, filename=kind, size_bytes=1, sha256="1" * 64, storage_key=f"k/{kind}"
            )
        old = datasets.create_dataset(
            s, tenant_id=t1.id, name="old", filename="old.npz", size_bytes=1, sha256="2" * 64,
            storage_key="k/old", summary={},
        )  # fmt: skip
        running = _job(s, t1.id, model.id, {})
        s.execute(update(Job).where(Job.id == earlier).values(status="succeeded"))
        ok = s.get(Job, _job(s, t1.id, model.id, {"init_from": earlier, "old_data": old.id}))
        assert _lifelong_inputs(s, ok) == {
            "lifelong_keys": {"onnx_fp32": "k/onnx_fp32", "report": "k/report", "probe": "k/probe"},
            "old_data_key": "k/old",
        }
        other_tenant = s.get(Job, _job(s, t2.id, model.id, {"init_from": earlier}))
        assert "not found" in _lifelong_inputs(s, other_tenant)["lifelong_error"]
        not_done = s.get(Job, _job(s, t1.id, model.id, {"init_from": running}))
        assert "not succeeded" in _lifelong_inputs(s, not_done)["lifelong_error"]
        no_old = s.get(Job, _job(s, t1.id, model.id, {"init_from": earlier, "old_data": "nope"}))
        assert "dataset nope not found" in _lifelong_inputs(s, no_old)["lifelong_error"]
        assert _lifelong_inputs(s, s.get(Job, _job(s, t1.id, model.id, {}))) == {}
