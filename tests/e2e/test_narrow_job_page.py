"""A finished job's page in Chromium at a phone's 420 px: nothing scrolls sideways, every Download
button is on screen and clickable, and the How to run facts and the training charts render."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgedistill.client import Client
from tests.e2e.support import BrowserSession, E2EStack

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

FAST = {"epochs": 8, "patience": 8, "benchmark_runs": 5, "benchmark_warmup": 1, "calibration_samples": 64}
WIDTH = 420


def test_job_page_fits_420px_with_download_buttons_visible(
    browser: BrowserSession, e2e_stack: E2EStack, teacher_and_data: tuple[Path, Path]
) -> None:
    teacher, data = teacher_and_data
    with Client(e2e_stack.url, e2e_stack.key) as client:
        job = client.submit(teacher, data=data, profile="mcu-cortex-m4", options=FAST).wait(timeout=600)
        kinds = {a["kind"] for a in job.artifacts()}
    page = browser.new_page()
    page.set_viewport_size({"width": WIDTH, "height": 900})
    browser.login(page, e2e_stack.key)
    page.goto(f"/ui/jobs/{job.id}")
    expect(page.locator("#artifacts")).to_be_visible()
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the job page scrolls sideways by {overflow}px at {WIDTH}px"
    buttons = page.locator("#artifacts a.btn", has_text="Download")
    assert buttons.count() == len(kinds) >= 5
    for i in range(buttons.count()):
        button = buttons.nth(i)
        button.scroll_into_view_if_needed()
        expect(button).to_be_visible()
        box = button.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= WIDTH, (i, box)
    # How to run: the C source's facts open with the ops to register and the C++ snippet.
    howto = page.locator('details.howto[data-howto-kind="c_source"]')
    howto.locator("summary").click()
    expect(howto.locator("code[data-language='cpp']")).to_contain_text("MicroMutableOpResolver")
    expect(howto).to_contain_text("int8")
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 1
    fidelity = page.locator("svg#chart-training-fidelity")
    expect(fidelity.locator("path.line.band")).to_have_count(1)
    expect(fidelity.locator("path.line.dashed")).to_have_count(1)
