"""The REST API docs in Chromium with every request off this server aborted: Swagger UI and ReDoc
render the operations from the vendored assets alone, reached from the dashboard's footer."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.e2e.support import BrowserSession, E2EStack

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def _offline(browser: BrowserSession, e2e_stack: E2EStack) -> list[str]:
    """Abort every request that does not go to the stack's own host; return the list of those aborted."""
    local = urlsplit(e2e_stack.url).netloc
    blocked: list[str] = []

    def handle(route: Any) -> None:
        url = route.request.url
        if urlsplit(url).netloc == local:
            route.continue_()
        else:
            blocked.append(url)
            route.abort("internetdisconnected")

    browser.context.route("**/*", handle)
    return blocked


def test_swagger_ui_renders_offline_from_the_footer_link(browser: BrowserSession, e2e_stack: E2EStack) -> None:
    blocked = _offline(browser, e2e_stack)
    page = browser.new_page()
    browser.login(page, e2e_stack.key)
    page.get_by_role("contentinfo").get_by_role("link", name="REST API docs").click()
    page.wait_for_url("**/docs")
    jobs_post = page.locator(".opblock-post", has=page.locator("[data-path='/api/v1/jobs']"))
    expect(jobs_post).to_be_visible(timeout=30_000)  # the spec and a 1.7 MB bundle on a busy machine
    assert page.locator(".opblock").count() >= 20  # every route of the API, not an empty shell
    jobs_post.locator(".opblock-summary").click()
    expect(page.get_by_role("button", name="Try it out")).to_be_visible()
    assert blocked == [], blocked


def test_redoc_renders_offline(browser: BrowserSession, e2e_stack: E2EStack) -> None:
    blocked = _offline(browser, e2e_stack)
    # The page's CSP stops the bundle's one off-site request (Redocly's logo) before it is made.
    browser.allow(r"image 'https://cdn\.redoc\.ly/redoc/logo-mini\.svg' violates the following Content Security")
    page = browser.new_page()
    page.goto("/redoc")
    expect(page.locator("h1").first).to_contain_text("edgedistill")
    expect(page.get_by_text("/api/v1/jobs/{job_id}/artifacts").first).to_be_attached()
    assert blocked == [], blocked
