"""The dashboard in a real browser against a real API process and Celery worker: log in, upload a
teacher and transfer set, submit, watch the job succeed live, read the report's charts, download an
artifact and check its sha256, create a custom profile and see a field error."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.support import BrowserSession, E2EStack

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

JOB_TIMEOUT_MS = 600_000
SHARED: dict[str, str] = {}  # the job the flow test made, for the tenant-isolation test


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_login_errors_and_empty_states(browser: BrowserSession, e2e_stack: E2EStack) -> None:
    page = browser.new_page()
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/ui/login"))
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()

    browser.allow(r"status of 40[01]")  # the login form answers 401 to a wrong key, on purpose
    page.get_by_label("API key").fill("edk_not-a-real-key")
    page.get_by_role("button", name="Log in").click()
    error = page.locator("#api_key-error")
    expect(error).to_contain_text("unknown or has been revoked")
    expect(page.get_by_label("API key")).to_have_attribute("aria-invalid", "true")

    browser.login(page, e2e_stack.other_key)  # globex has nothing yet
    expect(page.get_by_role("heading", name="No jobs yet")).to_be_visible()
    expect(page.get_by_role("link", name="Start your first job")).to_have_attribute("href", "/ui/jobs/new")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Measurements").click()
    expect(page.get_by_role("heading", name="No measurements yet")).to_be_visible()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Device profiles").click()
    expect(page.get_by_text("No custom profiles yet")).to_be_visible()
    expect(page.locator("#profiles-table tbody tr")).to_have_count(4)  # the built-in ones

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/ui/login"))
    page.goto("/ui/jobs")
    expect(page).to_have_url(re.compile(r"/ui/login\?next=/ui/jobs"))


def test_upload_submit_watch_live_report_download(
    browser: BrowserSession, e2e_stack: E2EStack, teacher_and_data: tuple[Path, Path]
) -> None:
    teacher, data = teacher_and_data
    page = browser.new_page()
    browser.login(page, e2e_stack.key)

    # A second tab on the jobs list must show the new job and its progress without a reload.
    jobs_tab = browser.new_page()
    jobs_tab.goto("/ui/jobs")
    expect(jobs_tab.locator("#live-indicator")).to_have_text("Live")
    jobs_tab.evaluate("window.__e2eMarker = 'no reload'")

    page.get_by_role("link", name="New job").first.click()
    expect(page.get_by_role("heading", name="New job")).to_be_visible()
    page.set_input_files("#teacher_file", str(teacher))
    page.set_input_files("#data_file", str(data))
    page.get_by_label("mcu-cortex-m4").check()
    page.get_by_label("Epochs").fill("3")
    # Both student families in one job: the designed one and the teacher, pruned (family best).
    page.get_by_label("Student family").select_option("best")
    # Beyond reach (150 % of the teacher): the job succeeds but must show the below-target state.
    page.get_by_role("spinbutton", name="Quality target").fill("1.5")
    page.get_by_text("Advanced options").click()
    page.get_by_label("Benchmark runs").fill("20")
    page.get_by_label("Calibration samples").fill("64")
    page.get_by_role("button", name="Start job").click()

    page.wait_for_url(re.compile(r"/ui/jobs/[0-9a-f]{32}$"))
    job_id = page.url.rsplit("/", 1)[-1]
    SHARED["job_id"] = job_id
    page.evaluate("window.__e2eMarker = 'no reload'")
    badge = page.locator("#job-head .badge")
    expect(badge).to_have_text(re.compile(r"queued|running|succeeded"))

    # Live: the page follows the job's events until it succeeds, with no navigation; below its
    # quality target it is not a plain green success, here nor in the jobs list.
    below = "succeeded · below quality target"
    expect(badge).to_have_text(below, timeout=JOB_TIMEOUT_MS)
    expect(badge).not_to_have_class(re.compile("status-succeeded"))
    verdict = page.locator('#quality-verdict[data-met="false"]')
    expect(verdict).to_be_visible()
    expect(verdict).to_contain_text("Below the quality target.")
    expect(verdict).to_contain_text("target 150.0 %")
    assert page.evaluate("window.__e2eMarker") == "no reload"
    row = jobs_tab.locator(f'tr[data-job-id="{job_id}"]')
    expect(row.locator(".badge")).to_have_text(below, timeout=30_000)
    expect(row.locator('.quality-cell [data-quality-met="false"]')).to_contain_text("target 150.0 %")
    assert jobs_tab.evaluate("window.__e2eMarker") == "no reload"

    # Stage timeline with durations.
    expect(page.locator(".timeline .stage")).to_have_count(6)
    expect(page.locator(".timeline .stage-done").first).to_contain_text(re.compile(r"\d+(\.\d+)? (ms|s)"))

    # The report: charts drawn, labelled with units.
    quality = page.locator("svg#chart-quality")
    expect(quality).to_be_visible()
    expect(quality).to_contain_text("Test split (%)")
    for variant in ("Teacher", "Student fp32", "ONNX int8", "TFLite int8 (int8 I/O)", "TFLM (micro)"):
        expect(quality).to_contain_text(variant)
    assert quality.locator("rect.bar").count() >= 10  # accuracy and agreement per variant
    expect(page.locator("svg#chart-size")).to_contain_text("File size (KiB)")
    expect(page.locator("svg#chart-latency")).to_contain_text("Host latency p50")
    training = page.locator("svg#chart-training-fidelity")
    expect(training).to_contain_text("Epoch")
    expect(training).to_contain_text("Validation (%)")
    expect(page.locator("svg#chart-training-loss")).to_contain_text("Loss")
    expect(page.locator("svg#budget-flash")).to_be_visible()
    expect(page.locator("svg#budget-ram")).to_be_visible()
    # Candidates side by side: the teacher, the teacher quantized alone (an ONNX file, which an MCU
    # cannot run), the student kept, whose full-int8 TFLite is the device artifact, and the other
    # student family, measured as int8 ONNX; one point each.
    candidates = page.locator("#candidates-table")
    expect(candidates.locator("tbody tr")).to_have_count(4)
    runner_up = candidates.locator('tr[data-candidate="runner_up"]')
    expect(runner_up).to_contain_text("not kept")
    expect(runner_up).not_to_have_class(re.compile("primary"))
    expect(page.locator("#candidates-why")).to_contain_text("options.student.family best")
    teacher_int8 = candidates.locator('tr[data-candidate="teacher_int8"]')
    expect(teacher_int8).to_contain_text("teacher quantized, no distillation")
    expect(teacher_int8.locator("td").nth(7)).to_have_text("no")  # runs on this device
    student = candidates.locator('tr[data-candidate="student"]')
    expect(student).to_have_class(re.compile("primary"))
    expect(student).to_contain_text("device artifact")
    expect(student).to_contain_text("TFLite int8 (int8 I/O)")
    expect(page.locator("#candidates-why")).to_contain_text("smallest")
    size_chart = page.locator("svg#chart-candidates-size")
    expect(size_chart).to_contain_text("flash budget")
    expect(size_chart).to_contain_text("file size (log scale)")
    assert size_chart.locator("circle.dot").count() == 4
    assert size_chart.locator("circle.ring").count() == 1  # the device artifact
    expect(page.locator("svg#chart-candidates-latency")).to_contain_text("host p50 at batch 1")
    expect(page.locator("#quality-table")).to_contain_text("TFLM (micro)")
    expect(page.locator("#size-table")).to_contain_text("Teacher")

    # Download the device artifact and check it is what the table (and the API) says.
    artifact_row = page.locator('tr[data-artifact-kind="tflite_int8_full"]')
    shown_sha = artifact_row.locator("code.sha").inner_text().strip()
    with page.expect_download() as info:
        artifact_row.get_by_role("link", name=re.compile("Download")).click()
    download = info.value
    target = browser.downloads / download.suggested_filename
    download.save_as(str(target))
    assert target.name.endswith(".tflite")
    assert _sha256(target) == shown_sha
    listed = httpx.get(
        f"{e2e_stack.url}/api/v1/jobs/{job_id}/artifacts",
        headers={"Authorization": f"Bearer {e2e_stack.key}"},
        timeout=10,
    ).json()
    assert {a["kind"]: a["sha256"] for a in listed}["tflite_int8_full"] == shown_sha

    # Measurements: the host benchmark of this job, charted.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Measurements").click()
    chart = page.locator("svg#chart-measurements")
    expect(chart).to_be_visible()
    expect(chart).to_contain_text("Latency p50 per inference")
    expect(page.locator("#measurements-table tbody tr").first).to_contain_text("host")


def test_custom_profile_bad_field_shows_the_error_next_to_it(browser: BrowserSession, e2e_stack: E2EStack) -> None:
    page = browser.new_page()
    browser.login(page, e2e_stack.key)
    page.goto("/ui/profiles")
    browser.allow(r"status of 422")  # the form is answered 422 with its errors, on purpose
    page.get_by_label("Name").fill("e2e-board")
    page.get_by_label("Flash / model budget").fill("lots")
    page.get_by_label("RAM / arena budget").fill("64 KB")
    page.get_by_role("button", name="Create profile").click()

    field = page.locator("#max_model_bytes")
    expect(field).to_have_attribute("aria-invalid", "true")
    error = page.locator("#max_model_bytes-error")
    expect(error).to_contain_text("number of bytes")
    # The message sits with its field, and the summary links to the field.
    assert page.locator(".field", has=field).locator(".field-error").inner_text() == error.inner_text()
    expect(page.locator("#error-summary")).to_contain_text("Flash / model budget")
    expect(page.get_by_label("Name")).to_have_value("e2e-board")  # what was typed is kept

    page.get_by_label("Flash / model budget").fill("512 KB")
    page.get_by_role("button", name="Create profile").click()
    expect(page.get_by_role("status")).to_contain_text("e2e-board")
    expect(page.locator("#profile-e2e-board")).to_contain_text("512 KiB")


def test_another_tenant_sees_a_404_page(browser: BrowserSession, e2e_stack: E2EStack) -> None:
    job_id = SHARED.get("job_id")
    if job_id is None:
        pytest.skip("needs the job of test_upload_submit_watch_live_report_download")
    page = browser.new_page()
    browser.login(page, e2e_stack.other_key)
    browser.allow(r"status of 404")
    response: Any = page.goto(f"/ui/jobs/{job_id}")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    expect(page.locator("#jobs-table")).to_have_count(0)
    page.goto("/ui/jobs")
    expect(page.locator(f'tr[data-job-id="{job_id}"]')).to_have_count(0)


def test_narrow_window_and_keyboard(browser: BrowserSession, e2e_stack: E2EStack) -> None:
    page = browser.new_page()
    page.set_viewport_size({"width": 760, "height": 900})
    browser.login(page, e2e_stack.key)
    for path in ("/ui/jobs", "/ui/jobs/new", "/ui/profiles", "/ui/measurements") + (
        (f"/ui/jobs/{SHARED['job_id']}",) if "job_id" in SHARED else ()
    ):
        page.goto(path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{path} scrolls sideways by {overflow}px at 760px"
    # Keyboard: the skip link comes first and lands on the content; the nav is reachable by Tab.
    page.goto("/ui/jobs")
    page.keyboard.press("Tab")
    expect(page.locator(".skip")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"#main$"))
    page.goto("/ui/jobs")
    for _ in range(3):
        page.keyboard.press("Tab")
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Jobs")).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/ui/jobs/new$"))
