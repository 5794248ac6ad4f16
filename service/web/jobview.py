"""What the job page shows, assembled from the job row, its events and its report."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from markupsafe import Markup
from sqlalchemy.orm import Session

from edgedistill.contracts import artifact_kinds
from edgedistill.contracts.events import STAGE_LABELS, STAGES
from edgedistill.contracts.report import Report, read_report
from edgedistill.contracts.statuses import CANCELLED, FAILED, SUCCEEDED, TERMINAL_STATUSES
from edgedistill.contracts.verdict import verdict_of
from edgedistill.service.comparison import job_devices_section, thresholds_from
from edgedistill.service.db.base import utcnow
from edgedistill.service.db.models import Artifact, Job
from edgedistill.service.repos import artifacts as artifacts_repo
from edgedistill.service.repos import datasets as datasets_repo
from edgedistill.service.repos import events as events_repo
from edgedistill.service.repos import models as models_repo
from edgedistill.service.schemas.comparison import DevicesSection
from edgedistill.service.settings import Settings
from edgedistill.service.web import reportview

EVENT_BATCH = 500
MAX_MESSAGES = 12
# Artifacts people download first; the rest follow in the order the pipeline made them.
ARTIFACT_ORDER = (*artifact_kinds.download_order(), "report")


@dataclass
class StageView:
    name: str
    label: str
    state: str  # pending | running | done | failed | cancelled | skipped | not-run
    started_at: datetime | None = None
    seconds: float | None = None


@dataclass
class Message:
    kind: str  # progress | warning | error
    text: str
    at: datetime


@dataclass
class DeviceRow:
    """The latest measurement of one device for one artifact, judged against the host run."""

    kind: str
    device: str
    runtime: str
    p50_ms: float | None
    host_p50_ms: float | None
    latency_ratio: float | None
    agreement: float | None
    max_abs_diff: float | None
    ok: bool | None
    reasons: list[str]
    meets_target: bool | None
    estimated: bool


@dataclass
class JobView:
    job: Job
    model_name: str
    dataset_name: str
    stages: list[StageView]
    messages: list[Message]
    curve_charts: dict[str, Markup]
    curve_points: int
    report: reportview.ReportView | None
    artifacts: list[Artifact]
    last_event_id: int
    duration_s: float | None
    options: dict[str, Any] = field(default_factory=dict)
    devices: list[DeviceRow] = field(default_factory=list)
    latency_target_ms: float | None = None

    @property
    def active(self) -> bool:
        return self.job.status not in TERMINAL_STATUSES

    @property
    def cancellable(self) -> bool:
        return self.active and not self.job.cancel_requested

    @property
    def quality(self) -> dict[str, Any] | None:
        return verdict_of(self.job.report) if self.job.status == SUCCEEDED else None


def duration_of(job: Job, now: datetime | None = None) -> float | None:
    if job.started_at is None:
        return None
    end = job.finished_at or now or utcnow()
    return max(0.0, (end - job.started_at).total_seconds())


def _timeline(job: Job, events: list[Any]) -> tuple[list[StageView], list[Message]]:
    stages = {name: StageView(name, STAGE_LABELS.get(name, name), "pending") for name in STAGES}
    messages: list[Message] = []
    for ev in events:
        stage = stages.get(ev.stage or "")
        if ev.kind == "stage_started" and stage is not None:
            stage.state, stage.started_at = "running", ev.created_at
        elif ev.kind == "stage_finished" and stage is not None:
            stage.state = "done"
            seconds = (ev.data or {}).get("seconds")
            if isinstance(seconds, (int, float)):
                stage.seconds = float(seconds)
            elif stage.started_at is not None:
                stage.seconds = (ev.created_at - stage.started_at).total_seconds()
        elif ev.kind in ("progress", "warning", "error") and (ev.data or {}).get("message"):
            messages.append(Message(ev.kind, str(ev.data["message"]), ev.created_at))
        elif ev.kind == "warning" and (ev.data or {}).get("message") is None and ev.data:
            messages.append(Message(ev.kind, str(ev.data), ev.created_at))
    ended = job.status in TERMINAL_STATUSES
    for s in stages.values():
        if s.state == "running" and ended:
            s.state = "failed" if job.status == FAILED else ("cancelled" if job.status == CANCELLED else "done")
        elif s.state == "pending" and ended:
            s.state = "skipped" if job.status == SUCCEEDED else "not-run"
    if not ended and job.stage in stages and stages[job.stage].state == "pending":
        stages[job.stage].state = "running"
    return list(stages.values()), messages[-MAX_MESSAGES:]


def _events(session: Session, job_id: str) -> list[Any]:
    out: list[Any] = []
    after = 0
    while True:
        batch = events_repo.list_events(session, job_id=job_id, after_id=after, limit=EVENT_BATCH)
        out.extend(batch)
        if len(batch) < EVENT_BATCH:
            return out
        after = batch[-1].id


def _is_regression(job: Job, report: Report | None, curve: list[dict[str, Any]]) -> bool:
    task = (report.data.task if report is not None and report.data is not None else None) or (job.options or {}).get(
        "task"
    )
    if task in ("classification", "regression"):
        return task == "regression"
    return any(isinstance(p.get("val_fidelity"), (int, float)) and p["val_fidelity"] < 0 for p in curve)


def _planned_epochs(curve: list[dict[str, Any]]) -> int | None:
    planned = curve[-1].get("epochs") if curve else None
    return planned if isinstance(planned, int) and planned > 0 else None


def sort_artifacts(rows: list[Artifact]) -> list[Artifact]:
    rank = {k: i for i, k in enumerate(ARTIFACT_ORDER)}
    return sorted(rows, key=lambda a: (rank.get(a.kind, len(rank)), a.kind))


def device_rows(section: DevicesSection) -> list[DeviceRow]:
    """The report's `devices` section (service.comparison) as table rows, failing ones first."""
    out = [
        DeviceRow(
            kind=kind,
            device=d.device,
            runtime=f"{d.runtime} {d.runtime_version}".strip(),
            p50_ms=d.p50_ms,
            host_p50_ms=comp.host.p50_ms if comp.host is not None else None,
            latency_ratio=d.latency_ratio,
            agreement=d.agreement,
            max_abs_diff=d.max_abs_diff,
            ok=d.ok,
            reasons=list(d.reasons),
            meets_target=d.meets_target,
            estimated=d.estimated,
        )
        for kind, comp in section.artifacts.items()
        for d in comp.devices
    ]
    return sorted(out, key=lambda r: (r.ok is not False, r.kind, r.device))


def build(session: Session, *, tenant_id: str, job: Job, settings: Settings | None = None) -> JobView:
    events = _events(session, job.id)
    stages, messages = _timeline(job, events)
    model = models_repo.get_model_any_tenant(session, model_id=job.model_id)
    dataset = (
        datasets_repo.get_dataset(session, tenant_id=tenant_id, dataset_id=job.dataset_id) if job.dataset_id else None
    )
    typed = read_report(job.report) if job.report else None
    report = reportview.build(typed) if typed is not None else None
    curve: list[dict[str, Any]] = []
    if report is not None:
        curve = [p.model_dump() for p in report.training.curve]
    if not curve:
        curve = list((job.metrics or {}).get("training_curve") or [])
    curve = [p for p in curve if isinstance(p, dict)]
    devices: list[DeviceRow] = []
    target: float | None = None
    if settings is not None and job.status == SUCCEEDED:
        section = job_devices_section(session, job=job, thresholds=thresholds_from(settings), report=typed)
        devices, target = device_rows(section), section.latency_target_ms
    return JobView(
        job=job,
        model_name=(model.name if model is not None and model.tenant_id == tenant_id else job.model_id),
        dataset_name=dataset.name if dataset is not None else "-",
        stages=stages,
        messages=messages,
        curve_charts=reportview.training_chart(
            curve,
            regression=_is_regression(job, typed, curve),
            # While training, the x axis spans the planned epochs, so the curve also shows how far it got.
            planned_epochs=_planned_epochs(curve) if job.status not in TERMINAL_STATUSES else None,
        ),
        curve_points=len(curve),
        report=report,
        artifacts=sort_artifacts(artifacts_repo.list_job_artifacts(session, tenant_id=tenant_id, job_id=job.id)),
        last_event_id=events[-1].id if events else 0,
        duration_s=duration_of(job),
        options=dict(job.options or {}),
        devices=devices,
        latency_target_ms=target,
    )
