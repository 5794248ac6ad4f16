"""The job page's "How to run": each model artifact's inputs/outputs, int8 parameters and snippet."""

from __future__ import annotations

import html
from typing import Any

from tests.unit.service.web.helpers import Browser, Rows

FACTS = {
    "runtime": "tflite-micro",
    "inputs": [{"name": "STUDENT_INPUT", "dtype": "int8", "shape": [1, 8, 8, 1], "layout": "NHWC",
                "quantization": {"scale": 0.0627451, "zero_point": -128}}],
    "outputs": [{"name": "STUDENT_OUTPUT", "dtype": "int8", "shape": [1, 10], "layout": "NF",
                 "quantization": {"scale": 0.171875, "zero_point": 3}}],
    "ops": ["CONV_2D", "FULLY_CONNECTED"],
    "note": "channels-last input: pass x.transpose(0, 2, 3, 1) of NCHW data",
    "snippet": {"language": "cpp", "code": "if (a < b && c > d) resolver.AddConv2D();\n"},
}  # fmt: skip


def test_job_page_shows_how_to_run_each_model(alice: Browser, rows: Rows, report_mcu: dict[str, Any]) -> None:
    assert alice.tenant
    job = rows.finished(alice.tenant, report=report_mcu)
    rows.artifact(job, "c_source", b"// model", "student_model.cc", metadata={"kind": "c_source", "deployment": FACTS})
    rows.artifact(job, "report", b"{}", "report.json", metadata={"kind": "report"})
    page = alice.client.get(f"/ui/jobs/{job.id}").text
    assert 'id="how-to-run"' in page
    assert 'data-howto-kind="c_source"' in page and 'data-howto-kind="report"' not in page
    assert "1\u00d78\u00d78\u00d71" in page and "NHWC" in page and "0.0627451 / -128" in page and "0.171875 / 3" in page
    assert "CONV_2D, FULLY_CONNECTED" in page and "channels-last input" in page
    assert html.escape("if (a < b && c > d) resolver.AddConv2D();") in page  # escaped, not markup


def test_unreadable_artifact_shows_why_and_no_section_without_facts(
    alice: Browser, rows: Rows, report_mcu: dict[str, Any]
) -> None:
    assert alice.tenant
    job = rows.finished(alice.tenant, report=report_mcu)
    rows.artifact(job, "report", b"{}", "report.json", metadata={"kind": "report"})
    assert 'id="how-to-run"' not in alice.client.get(f"/ui/jobs/{job.id}").text
    rows.artifact(job, "onnx_fp32", b"x", "student_fp32.onnx", metadata={"deployment": {"error": "could not read x"}})
    assert "could not read x" in alice.client.get(f"/ui/jobs/{job.id}").text
