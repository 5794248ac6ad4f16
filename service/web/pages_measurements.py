"""Latency measurements: host benchmarks and device-agent reports per artifact, filtered, charted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup
from sqlalchemy.orm import Session

from edgedistill.service.api.deps import SessionDep
from edgedistill.service.db.models import Artifact, LatencyMeasurement
from edgedistill.service.repos import artifacts as artifacts_repo
from edgedistill.service.repos import measurements as measurements_repo
from edgedistill.service.repos.errors import InvalidCursor
from edgedistill.service.web import charts
from edgedistill.service.web.auth import UserDep
from edgedistill.service.web.labels import variant_label
from edgedistill.service.web.templating import fmt_ms, render, short_id

router = APIRouter(include_in_schema=False)

PAGE = 200
CHART_ROWS = 40
SOURCES = {"host": "Host benchmark", "device": "Device agent"}


@dataclass
class MeasurementRow:
    m: LatencyMeasurement
    artifact: Artifact | None

    @property
    def kind(self) -> str:
        return self.artifact.kind if self.artifact is not None else "?"

    @property
    def job_id(self) -> str:
        return self.artifact.job_id if self.artifact is not None else ""


def _rows(session: Session, tenant_id: str, items: list[LatencyMeasurement]) -> list[MeasurementRow]:
    cache: dict[str, Artifact | None] = {}
    out = []
    for m in items:
        if m.artifact_id not in cache:
            cache[m.artifact_id] = artifacts_repo.get_artifact(session, tenant_id=tenant_id, artifact_id=m.artifact_id)
        out.append(MeasurementRow(m, cache[m.artifact_id]))
    return out


def chart(rows: list[MeasurementRow]) -> Markup | None:
    """p50 per measurement, grouped by artifact, coloured by source; p90 in each bar's label."""
    if not rows:
        return None
    # By time (oldest first): an artifact's bars sit where its first measurement falls, so a new job's
    # figures come after the old ones however its id sorts.
    ordered = sorted(
        rows[:CHART_ROWS], key=lambda r: (r.m.created_at, r.m.id, r.kind, r.m.source, r.m.device_name, r.m.runtime)
    )
    largest = max(r.m.p50_ms for r in ordered)
    micro = largest < 1.0
    scale = 1000.0 if micro else 1.0
    groups: dict[str, charts.Group] = {}
    for r in ordered:
        label = f"{variant_label(r.kind)} · {short_id(r.job_id)}"
        g = groups.setdefault(r.artifact.id if r.artifact else r.m.artifact_id, charts.Group(label))
        series = 0 if r.m.source == "host" else 1
        est = " (estimate)" if r.m.estimated else ""
        text = f"{fmt_ms(r.m.p50_ms)} · {r.m.device_name} · {r.m.runtime}{est}"
        g.bars.append(
            charts.Bar(
                r.m.p50_ms * scale,
                text,
                series,
                title=f"{label} on {r.m.device_name} ({r.m.runtime} {r.m.runtime_version}, {r.m.threads} threads): "
                f"p50 {fmt_ms(r.m.p50_ms)}, p90 {fmt_ms(r.m.p90_ms)}, p99 {fmt_ms(r.m.p99_ms)}",
            )
        )
    return charts.bar_chart(
        "chart-measurements",
        list(groups.values()),
        title="Latency by artifact, device and runtime (p50)",
        x_label="Latency p50 per inference (" + ("µs" if micro else "ms") + ")",
        tick_fmt=lambda v: f"{v:g}",
        series=[charts.Series(SOURCES["host"], "s0"), charts.Series(SOURCES["device"], "s3")],
        width=900,
        label_width=210,
        value_width=290,
    )


@router.get("/ui/measurements")
def measurements_page(
    request: Request,
    user: UserDep,
    session: SessionDep,
    source: str | None = None,
    runtime: str | None = None,
    device: str | None = None,
    job: str | None = None,
    cursor: str | None = None,
) -> Response:
    filters: dict[str, Any] = {
        "source": source if source in SOURCES else None,
        "runtime": (runtime or "").strip() or None,
        "device_name": (device or "").strip() or None,
        "job_id": (job or "").strip() or None,
    }
    try:
        page = measurements_repo.list_measurements(
            session, tenant_id=user.tenant_id, cursor=cursor or None, limit=PAGE, **filters
        )
    except InvalidCursor:
        return RedirectResponse("/ui/measurements", status_code=303)
    rows = _rows(session, user.tenant_id, page.items)
    any_rows = bool(rows) or bool(measurements_repo.list_measurements(session, tenant_id=user.tenant_id, limit=1).items)
    return render(
        request,
        "measurements.html",
        {
            "title": "Measurements",
            "rows": rows,
            "chart": chart(rows),
            "filters": {
                "source": filters["source"] or "",
                "runtime": runtime or "",
                "device": device or "",
                "job": job or "",
            },
            "filtered": any(filters.values()),
            "any_rows": any_rows,
            "sources": SOURCES,
            "runtimes": sorted({r.m.runtime for r in rows}),
            "devices": sorted({r.m.device_name for r in rows}),
            "next_cursor": page.next_cursor,
            "chart_rows": CHART_ROWS,
        },
    )
