"""TorchScript and .pt2 teachers get their signature onto the model row once a job has loaded them
(ONNX/TFLite signatures are read at upload): the real load steps emit it, the real JobRecorder
stores it in a real SQLite database, the API's model schema shows it, and a signature read at upload
is never overwritten. A TorchScript signature (observed on one job's data) is not held against the
data of later jobs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from edgedistill.contracts.profiles import builtin_profiles
from edgedistill.contracts.spec import JobOptions, PipelineSpec
from edgedistill.service.api.teacher_checks import job_problems
from edgedistill.service.db.migrate import upgrade_head
from edgedistill.service.db.session import dispose_engines, session_scope
from edgedistill.service.repos import events as events_repo
from edgedistill.service.repos import jobs, models, tenants
from edgedistill.service.schemas.models import TeacherModelOut
from edgedistill.service.settings import Settings
from edgedistill.workers.persistence import JobRecorder
from edgedistill.workers.pipeline.context import RunContext, RunState
from edgedistill.workers.steps.load_data import LoadData
from edgedistill.workers.steps.load_teacher import LoadTeacher
from tests.factories import save_teacher, write_npz

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    url = f"sqlite:///{tmp_path / 'ed.db'}"
    upgrade_head(url)
    yield Settings(data_dir=tmp_path, database_url=url)
    dispose_engines()


def _job(settings: Settings, fmt: str, signature: dict | None = None) -> tuple[str, str]:
    with session_scope(settings) as s:
        tenant = tenants.get_or_create_tenant(s, name="t")
        model = models.create_model(
            s, tenant_id=tenant.id, name="m", filename=f"m.{fmt}", format=fmt, size_bytes=1,
            sha256="0" * 64, storage_key="00/" + "0" * 64, signature=signature,
        )  # fmt: skip
        job, _ = jobs.create_job(
            s, tenant_id=tenant.id, model_id=model.id, dataset_id=None, profile_name="cpu-x86", profile={}, options={}
        )
        return job.id, model.id


def _load(tmp_path: Path, settings: Settings, job_id: str, fmt: str) -> None:
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    path = save_teacher(teacher, torch.zeros(2, 6), tmp_path / f"teacher.{fmt}", fmt)
    x = np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32)
    spec = PipelineSpec(
        teacher_path=path, data_path=write_npz(tmp_path / "data.npz", x=x), profile=builtin_profiles()["cpu-x86"],
        options=JobOptions(), out_dir=tmp_path / "out",
    )  # fmt: skip
    (tmp_path / "work").mkdir(exist_ok=True)
    ctx = RunContext(spec=spec, work_dir=tmp_path / "work", emit_sink=JobRecorder(job_id, settings).on_event)
    state = RunState()
    LoadTeacher().run(ctx, state)
    LoadData().run(ctx, state)


def _row(settings: Settings, model_id: str) -> TeacherModelOut:
    with session_scope(settings) as s:
        row = models.get_model_any_tenant(s, model_id=model_id)
        assert row is not None
        return TeacherModelOut.from_row(row)


@pytest.mark.parametrize("fmt", ["torchscript", "pt2"])
def test_a_loaded_torch_teachers_signature_is_recorded(tmp_path: Path, settings: Settings, fmt: str) -> None:
    job_id, model_id = _job(settings, fmt)
    assert _row(settings, model_id).signature is None
    _load(tmp_path, settings, job_id, fmt)
    sig = _row(settings, model_id).signature
    assert sig is not None
    assert len(sig.inputs) == 1 and sig.inputs[0].dtype == "float32" and sig.inputs[0].per_sample == (6,)
    assert [o.per_sample for o in sig.outputs] == [(3,)]
    assert all(o.kind is None for o in sig.outputs)  # kinds are each job's decision, not the file's
    if fmt == "pt2":
        assert sig.inputs[0].shape[0] is None  # the declared dynamic batch
    with session_scope(settings) as s:
        events = [e for e in events_repo.list_events(s, job_id=job_id) if "teacher_signature" in e.data]
        assert len(events) == 1 and "teacher signature" in events[0].data["message"]


def test_a_signature_read_at_upload_is_kept(tmp_path: Path, settings: Settings) -> None:
    declared = {"inputs": [{"name": "x", "dtype": "float32", "shape": [None, 6]}],
                "outputs": [{"name": "declared_out", "dtype": "float32", "shape": [None, 3]}]}  # fmt: skip
    job_id, model_id = _job(settings, "pt2", signature=declared)
    _load(tmp_path, settings, job_id, "pt2")
    sig = _row(settings, model_id).signature
    assert sig is not None and sig.output_names == ("declared_out",)


def test_a_torchscript_signature_is_not_held_against_other_data(tmp_path: Path, settings: Settings) -> None:
    job_id, model_id = _job(settings, "torchscript")
    _load(tmp_path, settings, job_id, "torchscript")
    other = SimpleNamespace(summary={"shapes": {"x": [10, 9]}, "dtypes": {"x": "float32"}})  # 9 features, not 6
    with session_scope(settings) as s:
        row = models.get_model_any_tenant(s, model_id=model_id)
        assert row is not None and row.signature is not None
        # the worker judges the teacher on each job's own data: no 422 from what an earlier job saw
        assert job_problems(row, other, JobOptions()) == []  # type: ignore[arg-type]
        row.format = "pt2"  # the same record where the file declares it is checked
        problems = job_problems(row, other, JobOptions())  # type: ignore[arg-type]
        assert problems and "9" in problems[0].message
        s.rollback()
