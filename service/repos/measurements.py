"""Latency measurements of artifacts, from the host benchmark or a physical device's agent."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from edgedistill.service.db.models import MEASUREMENT_SOURCES, Artifact, LatencyMeasurement
from edgedistill.service.repos.pagination import Page, paginate


def create_measurement(
    session: Session,
    *,
    artifact_id: str,
    tenant_id: str,
    source: str,
    device_name: str,
    runtime: str,
    runtime_version: str,
    threads: int,
    count: int,
    p50_ms: float,
    p90_ms: float,
    p99_ms: float,
    mean_ms: float,
    std_ms: float | None = None,
    agreement: float | None = None,
    max_abs_diff: float | None = None,
    peak_rss_bytes: int | None = None,
    estimated: bool = False,
    device_id: str | None = None,
    extra: dict[str, Any] | None = None,
) -> LatencyMeasurement:
    if source not in MEASUREMENT_SOURCES:
        raise ValueError(f"source must be one of {MEASUREMENT_SOURCES}, got {source!r}")
    row = LatencyMeasurement(
        artifact_id=artifact_id,
        tenant_id=tenant_id,
        source=source,
        device_id=device_id,
        device_name=device_name,
        runtime=runtime,
        runtime_version=runtime_version,
        threads=threads,
        count=count,
        p50_ms=p50_ms,
        p90_ms=p90_ms,
        p99_ms=p99_ms,
        mean_ms=mean_ms,
        std_ms=std_ms,
        agreement=agreement,
        max_abs_diff=max_abs_diff,
        peak_rss_bytes=peak_rss_bytes,
        estimated=estimated,
        extra=extra or {},
    )
    session.add(row)
    session.flush()
    return row


def list_measurements(
    session: Session,
    *,
    tenant_id: str,
    artifact_id: str | None = None,
    job_id: str | None = None,
    source: str | None = None,
    runtime: str | None = None,
    device_name: str | None = None,
    device_id: str | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> Page[LatencyMeasurement]:
    stmt = select(LatencyMeasurement).where(LatencyMeasurement.tenant_id == tenant_id)
    if artifact_id is not None:
        stmt = stmt.where(LatencyMeasurement.artifact_id == artifact_id)
    if job_id is not None:
        stmt = stmt.join(Artifact, Artifact.id == LatencyMeasurement.artifact_id).where(Artifact.job_id == job_id)
    if source is not None:
        stmt = stmt.where(LatencyMeasurement.source == source)
    if runtime is not None:
        stmt = stmt.where(LatencyMeasurement.runtime == runtime)
    if device_name is not None:
        stmt = stmt.where(LatencyMeasurement.device_name == device_name)
    if device_id is not None:
        stmt = stmt.where(LatencyMeasurement.device_id == device_id)
    return paginate(
        session,
        stmt,
        created_at=LatencyMeasurement.created_at,
        row_id=LatencyMeasurement.id,
        cursor=cursor,
        limit=limit,
    )


_COLUMNS = frozenset(
    {
        "source",
        "device_name",
        "runtime",
        "runtime_version",
        "threads",
        "count",
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "mean_ms",
        "std_ms",
        "agreement",
        "max_abs_diff",
        "peak_rss_bytes",
        "estimated",
        "device_id",
    }
)


def replace_host_measurements(
    session: Session, *, job_id: str, measurements: list[dict[str, Any]], device_name: str = "host"
) -> list[LatencyMeasurement]:
    """Replace the host benchmark rows of a job's artifacts (a redelivered job re-measures, never
    duplicates). Each dict holds artifact_id plus the pipeline's measurement fields; keys that are not
    columns (artifact_kind...) go to extra. Device-agent rows are left alone."""
    artifact_rows = {a.id: a for a in session.scalars(select(Artifact).where(Artifact.job_id == job_id))}
    if artifact_rows:
        session.execute(
            delete(LatencyMeasurement)
            .where(LatencyMeasurement.artifact_id.in_(artifact_rows), LatencyMeasurement.source == "host")
            .execution_options(synchronize_session=False)
        )
    created = []
    for m in measurements:
        artifact = artifact_rows.get(str(m.get("artifact_id")))
        if artifact is None:
            raise ValueError(f"measurement for artifact {m.get('artifact_id')!r}, which job {job_id} does not have")
        fields = {k: v for k, v in m.items() if k in _COLUMNS}
        extra = {k: v for k, v in m.items() if k not in _COLUMNS and k != "artifact_id"}
        fields.setdefault("device_name", device_name)
        fields["source"] = "host"
        created.append(
            create_measurement(session, artifact_id=artifact.id, tenant_id=artifact.tenant_id, extra=extra, **fields)
        )
    return created


def trim_device_measurements(session: Session, *, artifact_id: str, device_name: str, keep: int) -> int:
    """Keep the latest `keep` device measurements of (artifact, device); returns how many were deleted.
    Devices are told apart by name: a registered device's rows carry its name too."""
    newest = (
        select(LatencyMeasurement.id)
        .where(
            LatencyMeasurement.artifact_id == artifact_id,
            LatencyMeasurement.source == "device",
            LatencyMeasurement.device_name == device_name,
        )
        .order_by(LatencyMeasurement.created_at.desc(), LatencyMeasurement.id.desc())
        .limit(keep)
    )
    kept = list(session.scalars(newest))
    stmt = delete(LatencyMeasurement).where(
        LatencyMeasurement.artifact_id == artifact_id,
        LatencyMeasurement.source == "device",
        LatencyMeasurement.device_name == device_name,
        LatencyMeasurement.id.not_in(kept),
    )
    return int(session.execute(stmt.execution_options(synchronize_session=False)).rowcount)  # type: ignore[attr-defined]
