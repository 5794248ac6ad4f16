"""Shared pieces of the dashboard's browser tests (imported as tests.e2e.support)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.integration.stack import REPO, Stack

CHROMIUM = Path(os.environ.get("EDGEDISTILL_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
OUTPUT = REPO / "test-results" / "e2e"


@dataclass
class E2EStack:
    stack: Stack
    key: str  # tenant "acme"
    other_key: str  # tenant "globex": must never see acme's things

    @property
    def url(self) -> str:
        return self.stack.url


@dataclass
class BrowserSession:
    """A fresh browser profile (no cookies) whose pages record their console errors."""

    context: Any
    base_url: str
    downloads: Path
    console_errors: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def new_page(self) -> Any:
        page = self.context.new_page()
        page.on("console", lambda msg: self._console(msg.type, msg.text, page.url))
        page.on("pageerror", lambda exc: self.console_errors.append(f"uncaught exception on {page.url}: {exc}"))
        return page

    def _console(self, kind: str, text: str, url: str) -> None:
        if kind == "error" and not any(p.search(text) for p in self.allowed):
            self.console_errors.append(f"console error on {url}: {text}")

    def allow(self, pattern: str) -> None:
        """Expect this console message (e.g. the status of a page a test asks for on purpose)."""
        self.allowed.append(re.compile(pattern))

    def login(self, page: Any, key: str) -> None:
        page.goto(f"{self.base_url}/ui/login")
        page.get_by_label("API key").fill(key)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(re.compile(r".*/ui/jobs$"))
