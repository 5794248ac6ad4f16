"""Jobs list, job page, report rendering, cancel, downloads, event streams; each scoped to its tenant."""

from __future__ import annotations

import hashlib
import json
import re
import signal
from typing import Any

from fastapi import FastAPI

from edgedistill.service.repos import jobs, measurements
from edgedistill.service.web import lifecycle
from tests.unit.service.web.helpers import Browser, Rows

X = "\u00d7"  # the multiplication sign of ratios


def _events(text: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in text.split("\n\n"):
        kind = re.search(r"^event: (\S+)$", block, re.M)
        data = re.search(r"^data: (.+)$", block, re.M)
        if kind and data:
            out.append((kind.group(1), json.loads(data.group(1))))
    return out


def test_empty_states_say_what_to_do_next(alice: Browser) -> None:
    r = alice.client.get("/ui/jobs")
    assert "No jobs yet" in r.text and 'href="/ui/jobs/new"' in r.text
    r = alice.client.get("/ui/jobs?status=failed")
    assert "No failed jobs" in r.text
    r = alice.client.get("/ui/measurements")
    assert "No measurements yet" in r.text and "Start a job" in r.text
    r = alice.client.get("/ui/profiles")
    assert "No custom profiles yet" in r.text
    r = alice.client.get("/ui/jobs/new")
    assert "No teachers uploaded yet" in r.text and "No transfer sets uploaded yet" in r.text


def test_jobs_list_shows_only_this_tenants_jobs_with_a_status_filter(alice: Browser, bob: Browser, rows: Rows) -> None:
    assert alice.tenant and bob.tenant
    mine = rows.finished(alice.tenant, "failed", error="boom")
    queued = rows.job(alice.tenant, profile="mobile-arm64")
    theirs = rows.job(bob.tenant)
    page = alice.client.get("/ui/jobs").text
    assert f'data-job-id="{mine.id}"' in page and f'data-job-id="{queued.id}"' in page
    assert theirs.id not in page
    assert 'data-stream="/ui/jobs/events"' in page
    failed = alice.client.get("/ui/jobs?status=failed").text
    assert f'data-job-id="{mine.id}"' in failed and queued.id not in failed
    assert 'data-stream="/ui/jobs/events?status=failed"' in failed
    assert alice.client.get("/ui/jobs?cursor=garbage", follow_redirects=False).status_code == 303


def test_another_tenants_job_is_a_404_everywhere(alice: Browser, bob: Browser, rows: Rows) -> None:
    assert bob.tenant
    job = rows.finished(bob.tenant)
    art = rows.artifact(job, "onnx_int8", b"bob's model", "student_int8.onnx")
    c = alice.client
    r = c.get(f"/ui/jobs/{job.id}")
    assert r.status_code == 404 and "There is no job" in r.text and "bob" not in r.text
    assert c.get(f"/ui/jobs/{job.id}/fragment").status_code == 404
    assert c.get(f"/ui/jobs/{job.id}/events").status_code == 404
    assert c.get(f"/ui/artifacts/{art}/download").status_code == 404
    token = alice.csrf("/ui/jobs")
    assert c.post(f"/ui/jobs/{job.id}/cancel", data={"csrf_token": token}).status_code == 404
    assert c.get(f"/ui/measurements?job={job.id}").status_code == 200
    assert bob.client.get(f"/ui/jobs/{job.id}").status_code == 200


def test_running_job_shows_timeline_curve_and_a_cancel_button(alice: Browser, rows: Rows, app: FastAPI) -> None:
    assert alice.tenant
    curve = [
        {"epoch": e, "epochs": 5, "train_loss": 2.0 / e, "val_fidelity": 0.2 * e, "val_accuracy": 0.19 * e}
        for e in (1, 2, 3)
    ]
    job = rows.running(alice.tenant, curve)
    page = alice.client.get(f"/ui/jobs/{job.id}").text
    assert f'data-stream="/ui/jobs/{job.id}/events?after=' in page
    assert "stage-done" in page and "1.5 s" in page  # load finished in 1.5 s
    assert re.search(r'stage-running">\s*<span class="stage-dot"', page)
    assert 'id="chart-training-fidelity"' in page and "Validation (%)" in page and ">Epoch<" in page
    assert 'id="chart-training-loss"' in page
    assert "3 of 5 epochs" in page
    assert 'id="cancel-job"' in page
    assert "Artifacts (ONNX, TFLite, C array, report) are listed here when the job succeeds" in page

    token = alice.csrf(f"/ui/jobs/{job.id}")
    r = alice.client.post(f"/ui/jobs/{job.id}/cancel", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/ui/jobs/{job.id}"
    page = alice.client.get(f"/ui/jobs/{job.id}").text
    assert "Cancellation requested" in page and 'id="cancel-job"' not in page
    with app.state.sessionmaker() as s:
        assert jobs.is_cancel_requested(s, job_id=job.id)


def test_cancel_needs_the_csrf_token(alice: Browser, rows: Rows) -> None:
    assert alice.tenant
    job = rows.job(alice.tenant)
    assert alice.client.post(f"/ui/jobs/{job.id}/cancel", data={}).status_code == 403


def test_failed_job_shows_the_reason(alice: Browser, rows: Rows) -> None:
    assert alice.tenant
    job = rows.finished(alice.tenant, "failed", error="no student fits <the budgets>")
    page = alice.client.get(f"/ui/jobs/{job.id}").text
    assert "The job failed" in page and "no student fits &lt;the budgets&gt;" in page
    assert "stage-failed" in page and "not reached" in page
    assert "data-stream" not in page and 'id="cancel-job"' not in page
    assert f"/ui/jobs/new?model_id={job.model_id}" in page


def test_report_of_an_mcu_job_renders_tables_charts_and_budgets(
    alice: Browser, rows: Rows, report_mcu: dict[str, Any]
) -> None:
    assert alice.tenant
    job = rows.finished(alice.tenant, report=report_mcu)
    page = alice.client.get(f"/ui/jobs/{job.id}").text
    # Headline ratios, straight from the report.
    assert f"8.2{X}" in page and "fewer parameters" in page and "59.6%" in page
    assert "560.0 µs" in page and "estimated on the device" in page
    # Accuracy and agreement of every variant, in the table and the chart.
    chart = re.search(r'<svg class="chart bar-chart" id="chart-quality".*?</svg>', page, re.S)
    assert chart is not None
    for label in ("Teacher", "Student fp32", "ONNX fp32", "ONNX int8", "TFLite int8 (int8 I/O)", "TFLM (micro)"):
        assert f">{label}<" in chart.group(0), label
    assert "Test split (%)" in chart.group(0) and chart.group(0).count('class="bar ') == 12
    assert "59.26%" in page and "+0.37" in page  # TFLM accuracy and its drop vs fp32
    # Size and latency against the teacher, with ratios and units.
    assert "File size (KiB)" in page and "Host latency p50 (µs)" in page
    assert f"8.2{X} smaller" in page and f"3.9{X} vs teacher" in page
    # MCU budget bars: flash and arena, used of available.
    for key, text in (("flash", "12.5 KiB of 1.0 MiB (1.2%)"), ("ram", "8.5 KiB of 256 KiB (3.3%)")):
        assert f'id="budget-{key}"' in page and text in page
    assert "RAM (tensor arena)" in page and "fits" in page
    assert "largest ds_cnn2d within the budgets" in page


def test_report_of_a_cpu_job(alice: Browser, rows: Rows, report_cpu: dict[str, Any]) -> None:
    assert alice.tenant
    job = rows.finished(alice.tenant, report=report_cpu)
    page = alice.client.get(f"/ui/jobs/{job.id}").text
    assert 'id="chart-quality"' in page and "TFLite int8<" in page and "TFLM" not in page
    assert "estimated on the device" not in page
    assert 'id="budget-flash"' in page and 'id="budget-macs"' not in page  # no MAC budget on cpu-x86


def test_report_tolerates_missing_keys_and_regression(alice: Browser, rows: Rows) -> None:
    assert alice.tenant
    report = {
        "headline": {"quality_metric": "r2_vs_teacher", "primary_artifact": "onnx_int8"},
        "metrics": {"teacher": {"r2_vs_teacher": 1.0}, "onnx_int8": {"r2_vs_teacher": 0.93, "samples": 40}},
        "training": {"curve": [{"epoch": 1, "train_loss": 0.4, "val_fidelity": -0.2}]},
    }
    job = rows.finished(alice.tenant, report=report)
    r = alice.client.get(f"/ui/jobs/{job.id}")
    assert r.status_code == 200
    assert "R² (1.0 = perfect)" in r.text and "0.9300" in r.text
    assert "Validation R² vs teacher" in r.text


def test_artifacts_download_through_the_session(alice: Browser, rows: Rows, report_mcu: dict[str, Any]) -> None:
    assert alice.tenant
    job = rows.finished(alice.tenant, report=report_mcu)
    content = b"\x00tflite" * 1000
    art = rows.artifact(job, "tflite_int8_full", content, "student_int8_full.tflite")
    page = alice.client.get(f"/ui/jobs/{job.id}").text
    sha = hashlib.sha256(content).hexdigest()
    assert f'href="/ui/artifacts/{art}/download"' in page and sha in page and "device artifact" in page
    r = alice.client.get(f"/ui/artifacts/{art}/download")
    assert r.status_code == 200 and r.content == content
    assert 'filename="student_int8_full.tflite"' in r.headers["content-disposition"]
    assert r.headers["etag"] == f'"{sha}"'
    part = alice.client.get(f"/ui/artifacts/{art}/download", headers={"Range": "bytes=0-6"})
    assert part.status_code == 206 and part.content == content[:7]


def test_fragment_and_job_event_stream(alice: Browser, rows: Rows) -> None:
    assert alice.tenant
    job = rows.finished(alice.tenant)
    r = alice.client.get(f"/ui/jobs/{job.id}/fragment")
    assert r.status_code == 200 and r.headers["x-job-status"] == "succeeded"
    assert 'id="job-head"' in r.text and "<html" not in r.text
    stream = alice.client.get(f"/ui/jobs/{job.id}/events")
    assert stream.headers["content-type"].startswith("text/event-stream")
    kinds = [k for k, _ in _events(stream.text)]
    assert kinds[0] == "status" and kinds[-1] == "status" and "stage_finished" in kinds
    assert _events(stream.text)[-1][1]["status"] == "succeeded"
    tail = alice.client.get(f"/ui/jobs/{job.id}/events", headers={"Last-Event-ID": "999999"})
    assert _events(tail.text) == []


def test_jobs_list_stream_sends_rendered_rows(alice: Browser, bob: Browser, rows: Rows) -> None:
    assert alice.tenant and bob.tenant
    mine = rows.running(alice.tenant)
    rows.job(bob.tenant)
    r = alice.client.get("/ui/jobs/events?max_s=0.05")
    got = _events(r.text)
    assert [(k, d["id"]) for k, d in got] == [("job", mine.id)]
    assert got[0][1]["status"] == "running" and got[0][1]["index"] == 0
    assert got[0][1]["html"].startswith(f'<tr data-job-id="{mine.id}"') and "30%" in got[0][1]["html"]
    only_failed = _events(alice.client.get("/ui/jobs/events?status=failed&max_s=0.05").text)
    assert only_failed == []
    assert alice.client.get("/ui/jobs/events?status=bogus").status_code == 422


def test_measurements_page_charts_host_and_device_timings(alice: Browser, rows: Rows, app: FastAPI) -> None:
    assert alice.tenant
    job = rows.finished(alice.tenant)
    art = rows.artifact(job, "onnx_int8", b"model", "student_int8.onnx")
    with app.state.sessionmaker() as s:
        common: dict[str, Any] = {"artifact_id": art, "tenant_id": alice.tenant.id, "threads": 1, "count": 50}
        measurements.create_measurement(
            s, **common, source="host", device_name="host", runtime="onnxruntime", runtime_version="1.2",
            p50_ms=0.5, p90_ms=0.6, p99_ms=0.7, mean_ms=0.55,
        )  # fmt: skip
        measurements.create_measurement(
            s, **common, source="device", device_name="pi5", runtime="onnxruntime", runtime_version="1.2",
            p50_ms=2.5, p90_ms=2.6, p99_ms=3.0, mean_ms=2.55, agreement=0.99,
        )  # fmt: skip
        s.commit()
    page = alice.client.get("/ui/measurements").text
    chart = re.search(r'id="chart-measurements".*?</svg>', page, re.S)
    assert chart is not None and "Latency p50 per inference (ms)" in chart.group(0)
    assert "Host benchmark" in chart.group(0) and "Device agent" in chart.group(0)
    assert chart.group(0).count('class="bar ') == 2
    assert "pi5" in page and "99.0%" in page
    filtered = alice.client.get("/ui/measurements?source=device").text
    assert "pi5" in filtered and ">host<" not in filtered
    none = alice.client.get("/ui/measurements?device=nothing").text
    assert "No measurements match" in none


class _ExitingServer:
    """Stands in for uvicorn's Server: its handle_exit is the SIGTERM handler, should_exit is set."""

    should_exit = True

    def handle_exit(self, sig: int, frame: Any) -> None:
        return None


def test_event_streams_end_when_the_server_shuts_down(alice: Browser, rows: Rows) -> None:
    assert alice.tenant
    job = rows.running(alice.tenant)
    previous = signal.signal(signal.SIGTERM, _ExitingServer().handle_exit)
    try:
        assert lifecycle.server_exiting()
        # No max_s: without the shutdown check this would stream for minutes.
        listed = _events(alice.client.get("/ui/jobs/events").text)
        assert [k for k, _ in listed] == ["job"]
        followed = alice.client.get(f"/ui/jobs/{job.id}/events").text
        assert followed.startswith("retry:") and len(_events(followed)) <= 1  # one message, then it ends
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert not lifecycle.server_exiting()


def test_device_verdicts_show_on_the_job_page(
    alice: Browser, rows: Rows, app: FastAPI, report_cpu: dict[str, Any]
) -> None:
    assert alice.tenant
    job = rows.finished(alice.tenant, report=report_cpu)
    art = rows.artifact(job, "onnx_int8", b"model", "student_int8.onnx")
    assert "On devices" not in alice.client.get(f"/ui/jobs/{job.id}").text  # no agent has reported yet
    with app.state.sessionmaker() as s:
        common: dict[str, Any] = {"artifact_id": art, "tenant_id": alice.tenant.id, "threads": 1, "count": 50}
        measurements.create_measurement(
            s, **common, source="host", device_name="host", runtime="onnxruntime", runtime_version="1.2",
            p50_ms=0.5, p90_ms=0.6, p99_ms=0.7, mean_ms=0.55,
        )  # fmt: skip
        for name, agreement in (("pi5", 0.999), ("jetson", 0.80)):
            measurements.create_measurement(
                s, **common, source="device", device_name=name, runtime="onnxruntime", runtime_version="1.2",
                p50_ms=2.0, p90_ms=2.1, p99_ms=2.5, mean_ms=2.05, agreement=agreement,
            )  # fmt: skip
        s.commit()
    page = alice.client.get(f"/ui/jobs/{job.id}").text
    table = re.search(r'id="devices-table".*?</table>', page, re.S)
    assert table is not None
    assert table.group(0).index("jetson") < table.group(0).index("pi5")  # the failing device first
    assert "disagrees" in table.group(0) and "matches host" in table.group(0) and f"4.0{X} slower" in table.group(0)
    assert "ONNX int8 disagrees with the host on jetson" in page and "below 0.99" in page


def test_jobs_page_shows_the_tenants_usage(alice: Browser, bob: Browser, rows: Rows) -> None:
    assert alice.tenant and bob.tenant
    rows.job(alice.tenant)
    rows.job(bob.tenant)
    rows.job(bob.tenant)
    usage = re.search(r'<p class="muted" id="usage">([^<]+)</p>', alice.client.get("/ui/jobs").text)
    assert usage is not None
    assert "Storage used:" in usage.group(1) and "1 queued, 0 running (limit 1000)" in usage.group(1)


def test_a_student_below_its_quality_target_is_never_a_plain_green_success(
    alice: Browser, rows: Rows, report_cpu: dict[str, Any]
) -> None:
    assert alice.tenant
    below = {"metric": "accuracy", "teacher": 0.96, "student": 0.5, "kept": 0.52, "target": 0.97, "met": False,
             "samples": 150, "variant": "onnx_int8", "problem": None}  # fmt: skip
    low = rows.finished(alice.tenant, report={**report_cpu, "quality": below})
    good = rows.finished(alice.tenant, report={**report_cpu, "quality": {**below, "student": 0.95, "kept": 0.99,
                                                                            "met": True}})  # fmt: skip
    page = alice.client.get("/ui/jobs").text
    row = page.split(f'data-job-id="{low.id}"', 1)[1].split("</tr>", 1)[0]
    assert "succeeded · below quality target" in row and "status-succeeded" not in row
    assert 'data-quality-met="false"' in row and "52.0 %" in row and "target 97.0 %" in row
    row = page.split(f'data-job-id="{good.id}"', 1)[1].split("</tr>", 1)[0]
    assert "status-succeeded" in row and 'data-quality-met="true"' in row and "99.0 %" in row
    job_page = alice.client.get(f"/ui/jobs/{low.id}").text
    head = job_page.split('id="job-head"', 1)[1].split("</h1>", 1)[0]
    assert "below quality target" in head and "status-succeeded" not in head
    assert 'id="quality-verdict" data-met="false"' in job_page
    assert "Below the quality target." in job_page and "on 150 test samples (a small test split" in job_page
    assert 'data-met="true"' in alice.client.get(f"/ui/jobs/{good.id}").text
