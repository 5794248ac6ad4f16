"""Dashboard details: the failed-jobs list says why, the measurements chart runs by time, and the
fidelity curve stays visible under the accuracy curve (a band under a dashed line, zoomed axis)."""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi import FastAPI

from edgedistill.service.db.base import utcnow
from edgedistill.service.repos import measurements
from edgedistill.service.web.reportview import training_chart
from edgedistill.service.web.templating import short_id
from tests.unit.service.web.helpers import Browser, Rows


def test_jobs_list_shows_why_a_job_failed(alice: Browser, rows: Rows) -> None:
    assert alice.tenant
    reason = "the teacher takes 2 inputs, the data has 1 array"
    failed = rows.finished(alice.tenant, status="failed", error=reason)
    page = alice.client.get("/ui/jobs").text
    row = re.search(rf'<tr data-job-id="{failed.id}".*?</tr>', page, re.DOTALL)
    assert row and reason in row.group(0) and "fail-reason" in row.group(0)
    ok = rows.finished(alice.tenant)
    ok_row = re.search(rf'<tr data-job-id="{ok.id}".*?</tr>', alice.client.get("/ui/jobs").text, re.DOTALL)
    assert ok_row and "fail-reason" not in ok_row.group(0)


def test_measurements_chart_is_ordered_by_time(alice: Browser, rows: Rows, app: FastAPI) -> None:
    assert alice.tenant
    jobs = [rows.finished(alice.tenant) for _ in range(3)]
    arts = [rows.artifact(j, "onnx_int8", f"m{i}".encode(), f"m{i}.onnx") for i, j in enumerate(jobs)]
    # Measured in an order unrelated to the job ids: newest job first.
    order = sorted(range(3), key=lambda i: jobs[i].id, reverse=True)
    base = utcnow() - timedelta(hours=1)
    with app.state.sessionmaker() as s:
        for rank, i in enumerate(order):
            m = measurements.create_measurement(
                s, artifact_id=arts[i], tenant_id=alice.tenant.id, threads=1, count=50, source="host",
                device_name="host", runtime="onnxruntime", runtime_version="1",
                p50_ms=1.0 + i, p90_ms=2.0 + i, p99_ms=3.0 + i, mean_ms=1.5 + i,
            )  # fmt: skip
            m.created_at = base + timedelta(minutes=rank)
        s.commit()
    svg = alice.client.get("/ui/measurements").text.split('id="chart-measurements"', 1)[1].split("</svg>", 1)[0]
    positions = [svg.index(short_id(jobs[i].id)) for i in order]
    assert positions == sorted(positions), "bars must follow the measurement time"


def test_fidelity_band_under_the_dashed_accuracy_line() -> None:
    curve = [{"epoch": e, "train_loss": 1.0 / e, "val_fidelity": 0.96 + e / 1000, "val_accuracy": 0.96 + e / 1000}
             for e in range(1, 6)]  # fmt: skip
    svg = str(training_chart(curve)["fidelity"])
    band, dashed = svg.index('class="line s1 band"'), svg.index('class="line s0 dashed"')
    assert band < dashed  # the band first, the thin dashed line drawn over it
    ticks = [float(t) for t in re.findall(r'class="tick"[^>]*text-anchor="end">([\d.]+)%<', svg)]
    assert min(ticks) >= 90 and max(ticks) == 100  # zoomed to the values, not 0-100
