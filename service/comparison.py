"""Host vs device, built from the measurement rows when read.

Verdicts (does an artifact compute the same thing on a device as on the host?) are judged at read
time from each device's latest measurement and the current thresholds (Settings.device_*), not stored:
devices post at any time after the job finished, a changed threshold then applies to every old
measurement too, and there is no stored copy to keep in step with the rows (or to race on when two
devices post at once). The job's report keeps the pipeline's own output; GET /jobs/{id}/report merges
a `devices` section into it when it is read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy.orm import Session

from edgedistill.contracts import artifact_kinds
from edgedistill.contracts.report import EstimatedTiming, Report, read_report
from edgedistill.service.db.models import Artifact, Job, LatencyMeasurement
from edgedistill.service.repos import artifacts as artifacts_repo
from edgedistill.service.repos import devices as devices_repo
from edgedistill.service.repos import measurements as measurements_repo
from edgedistill.service.schemas.comparison import (
    ArtifactComparison,
    ArtifactDevices,
    DeviceComparison,
    DevicesSection,
    DeviceStatus,
    FailingDevice,
    HostFigures,
    McuEstimate,
    McuFigures,
    Thresholds,
)
from edgedistill.service.schemas.measurements import MeasurementOut
from edgedistill.service.settings import Settings

# The kinds the MCU figures (TFLM arena, latency estimate) describe: the full-int8 file and its C arrays.
MCU_KINDS = artifact_kinds.measured_by("tflm")
# Rows read per artifact (one page); older ones stay reachable through GET /measurements.
MAX_ROWS = 200


def thresholds_from(settings: Settings) -> Thresholds:
    return Thresholds(
        min_agreement=settings.device_min_agreement,
        max_abs_diff=settings.device_max_abs_diff,
        max_rel_diff=settings.device_max_rel_diff,
    )


def judge(
    *, agreement: float | None, max_abs_diff: float | None, reference_max_abs: float | None, thresholds: Thresholds
) -> tuple[bool | None, list[str]]:
    """(ok, reasons). ok is None when the measurement carries no correctness figure at all."""
    if agreement is None and max_abs_diff is None:
        return None, []
    reasons: list[str] = []
    if agreement is not None and agreement < thresholds.min_agreement:
        reasons.append(f"top-1 agreement with the host {agreement:.4f} is below {thresholds.min_agreement}")
    if max_abs_diff is not None:
        if thresholds.max_abs_diff is not None and max_abs_diff > thresholds.max_abs_diff:
            reasons.append(f"max |device - host| {max_abs_diff:.6g} is above {thresholds.max_abs_diff}")
        if thresholds.max_rel_diff is not None and reference_max_abs is not None and reference_max_abs > 0:
            rel = max_abs_diff / reference_max_abs
            if rel > thresholds.max_rel_diff:
                reasons.append(
                    f"max |device - host| is {rel:.3g} x the largest host output, above {thresholds.max_rel_diff}"
                )
    return not reasons, reasons


def _reference_max_abs(m: LatencyMeasurement) -> float | None:
    value = (m.extra or {}).get("reference_max_abs")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _device_key(m: LatencyMeasurement) -> str:
    return m.device_id or f"name:{m.device_name}"


def latest_per_device(rows: Iterable[LatencyMeasurement]) -> list[LatencyMeasurement]:
    """Rows newest first in -> the first row of each device, in that order."""
    seen: set[str] = set()
    out: list[LatencyMeasurement] = []
    for m in rows:
        key = _device_key(m)
        if key not in seen:
            seen.add(key)
            out.append(m)
    return out


def status_of(m: LatencyMeasurement, thresholds: Thresholds) -> DeviceStatus:
    ok, reasons = judge(
        agreement=m.agreement,
        max_abs_diff=m.max_abs_diff,
        reference_max_abs=_reference_max_abs(m),
        thresholds=thresholds,
    )
    return DeviceStatus(
        device_id=m.device_id,
        device=m.device_name,
        measurement_id=m.id,
        measured_at=m.created_at,
        runtime=m.runtime,
        agreement=m.agreement,
        max_abs_diff=m.max_abs_diff,
        ok=ok,
        reasons=reasons,
    )


def device_status(
    session: Session,
    *,
    tenant_id: str,
    artifact_ids: Sequence[str],
    thresholds: Thresholds,
    device_id: str | None = None,
) -> dict[str, list[DeviceStatus]]:
    """artifact id -> each device's latest verdict (only device_id's when given)."""
    rows = devices_repo.device_measurements(
        session, tenant_id=tenant_id, artifact_ids=artifact_ids, device_id=device_id
    )
    by_artifact: dict[str, list[LatencyMeasurement]] = {}
    for m in rows:
        by_artifact.setdefault(m.artifact_id, []).append(m)
    return {aid: [status_of(m, thresholds) for m in latest_per_device(ms)] for aid, ms in by_artifact.items()}


# --------------------------------------------------------------------------------------------------
# comparison
# --------------------------------------------------------------------------------------------------


def _target_ms(job: Job) -> float | None:
    value = ((job.profile or {}).get("budgets") or {}).get("latency_target_ms")
    return float(value) if isinstance(value, (int, float)) else None


def _meets(p50: float, target: float | None) -> bool | None:
    return None if target is None else p50 <= target


def _host(rows: Sequence[LatencyMeasurement], target: float | None) -> HostFigures | None:
    m = next((r for r in rows if r.source == "host"), None)  # rows are newest first
    if m is None:
        return None
    return HostFigures(
        measurement_id=m.id,
        runtime=m.runtime,
        runtime_version=m.runtime_version,
        threads=m.threads,
        count=m.count,
        p50_ms=m.p50_ms,
        p90_ms=m.p90_ms,
        p99_ms=m.p99_ms,
        meets_target=_meets(m.p50_ms, target),
    )


def _device(m: LatencyMeasurement, host: HostFigures | None, target: float | None, t: Thresholds) -> DeviceComparison:
    status = status_of(m, t)
    facts = (m.extra or {}).get("device")
    return DeviceComparison(
        **status.model_dump(),
        runtime_version=m.runtime_version,
        threads=m.threads,
        count=m.count,
        p50_ms=m.p50_ms,
        p90_ms=m.p90_ms,
        p99_ms=m.p99_ms,
        mean_ms=m.mean_ms,
        std_ms=m.std_ms,
        peak_rss_bytes=m.peak_rss_bytes,
        estimated=m.estimated,
        latency_ratio=m.p50_ms / host.p50_ms if host is not None and host.p50_ms > 0 else None,
        meets_target=_meets(m.p50_ms, target),
        facts=facts if isinstance(facts, dict) else {},
    )


def mcu_figures(job: Job, report: Report | None = None) -> McuFigures | None:
    """The MCU figures the pipeline measured on the host (TFLM run, arena) and its latency estimate."""
    profile = job.profile or {}
    if profile.get("class") != "mcu":
        return None
    if report is None:
        report = read_report(job.report or {})
    estimate: McuEstimate | None = None
    entry = report.latency.estimate()
    if entry is None:  # no report entry: the same formula from the profile and the student's MACs
        macs = report.student.macs
        cpm, clock = profile.get("cycles_per_mac"), profile.get("clock_hz")
        if macs and cpm and clock:
            entry = EstimatedTiming(
                artifact_kind=artifact_kinds.tflm_kind(),
                runtime="tflite-micro (estimate)",
                estimated_ms=float(macs) * float(cpm) / float(clock) * 1e3,
                formula="macs x cycles_per_mac / clock_hz",
                inputs={"macs": int(macs), "cycles_per_mac": cpm, "clock_hz": clock},
            )
    if entry is not None:
        estimate = McuEstimate(
            estimated_ms=entry.estimated_ms,
            formula=entry.formula,
            inputs=dict(entry.inputs),
            cycles_per_mac_source=str(profile.get("description") or f"profile {profile.get('name')}"),
            meets_target=_meets(entry.estimated_ms, _target_ms(job)),
        )
    tflm = report.metrics.get(artifact_kinds.TFLM_VARIANT)
    ram = report.budget.ram
    return McuFigures(
        tflm_host_run=tflm.model_dump(mode="json", exclude_unset=True) if tflm is not None else None,
        arena_bytes=ram.measured_arena_bytes if ram is not None else None,
        arena=report.budget.tflm_arena,
        estimated_latency=estimate,
    )


def compare_artifact(
    session: Session,
    *,
    artifact: Artifact,
    job: Job,
    thresholds: Thresholds,
    cursor: str | None = None,
    limit: int = MAX_ROWS,
    report: Report | None = None,
) -> ArtifactComparison:
    """host/devices are worked out from the newest MAX_ROWS rows; `measurements` is one page of
    `limit` rows from `cursor` (next_cursor continues)."""
    rows = measurements_repo.list_measurements(
        session, tenant_id=artifact.tenant_id, artifact_id=artifact.id, limit=MAX_ROWS
    ).items
    page = measurements_repo.list_measurements(
        session, tenant_id=artifact.tenant_id, artifact_id=artifact.id, cursor=cursor, limit=limit
    )
    target = _target_ms(job)
    host = _host(rows, target)
    devices = [_device(m, host, target, thresholds) for m in latest_per_device(r for r in rows if r.source == "device")]
    return ArtifactComparison(
        artifact_id=artifact.id,
        job_id=job.id,
        kind=artifact.kind,
        profile=job.profile_name,
        latency_target_ms=target,
        thresholds=thresholds,
        host=host,
        devices=devices,
        mcu=mcu_figures(job, report) if artifact.kind in MCU_KINDS else None,
        failing_on=[d.device for d in devices if d.ok is False],
        measurements=[MeasurementOut.from_row(m) for m in page.items],
        next_cursor=page.next_cursor,
    )


def job_devices_section(
    session: Session, *, job: Job, thresholds: Thresholds, report: Report | None = None
) -> DevicesSection:
    """The report's `devices` section: host vs each device for every artifact of the job (report: the
    job's, already read)."""
    if report is None:
        report = read_report(job.report or {})
    per_kind: dict[str, ArtifactDevices] = {}
    failing: list[FailingDevice] = []
    for art in artifacts_repo.list_job_artifacts(session, tenant_id=job.tenant_id, job_id=job.id):
        if art.kind not in devices_repo.MEASURABLE_KINDS and art.kind not in MCU_KINDS:
            continue
        comp = compare_artifact(session, artifact=art, job=job, thresholds=thresholds, report=report)
        if not comp.devices and comp.mcu is None:
            continue
        per_kind[art.kind] = ArtifactDevices.model_validate(
            comp.model_dump(exclude={"measurements", "thresholds", "profile", "job_id"})
        )
        failing += [
            FailingDevice(kind=art.kind, device=d.device, reasons=d.reasons) for d in comp.devices if d.ok is False
        ]
    return DevicesSection(
        judged="at read time from each device's latest measurement and the service's current thresholds",
        thresholds=thresholds,
        latency_target_ms=_target_ms(job),
        artifacts=per_kind,
        failing=failing,
    )
