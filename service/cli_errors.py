"""What the API CLIs print for each kind of failure: one line saying what happened and what to do,
never a traceback, and an exit status per kind (documented in README.md and each command's --help)."""

from __future__ import annotations

from typing import Any

import httpx

from edgedistill.client import ApiError, JobFailed

EXIT_OK = 0
EXIT_JOB_FAILED = 1  # the job ended failed or cancelled
EXIT_USAGE = 2  # bad arguments, no API key, a local file that does not exist
EXIT_UNREACHABLE = 3  # no server at --url: refused, unknown host, no answer in time
EXIT_REFUSED = 4  # the server answered with an HTTP error (4xx/5xx)
EXIT_WAIT_TIMEOUT = 5  # --timeout passed; the job goes on on the server
EXIT_BELOW_QUALITY = 6  # --require-quality: the job succeeded but its student is below options.quality_target

EXIT_CODES_HELP = """exit status:
  0  success (with --wait: the job succeeded)
  1  the job failed or was cancelled (its reason is printed)
  2  usage: bad arguments, no API key, a local file that does not exist
  3  the server cannot be reached (refused, unknown host, no answer in time)
  4  the server refused the request (HTTP 4xx/5xx, its message is printed)
  5  --timeout passed before the job ended (it goes on on the server)
  6  with --require-quality: the job succeeded, but its device artifact keeps less than
     options.quality_target of the teacher's quality (artifacts are still downloaded)"""


class UsageError(Exception):
    """A bad command line or option file: exit status 2."""


def _detail_text(detail: Any) -> str:
    if isinstance(detail, list):  # FastAPI's field errors: [{"loc": [...], "msg": ...}, ...]
        parts = []
        for err in detail:
            if isinstance(err, dict):
                loc = ".".join(str(p) for p in err.get("loc", []) if p != "body")
                parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
            else:
                parts.append(str(err))
        return "; ".join(parts)
    return str(detail)


def _http_hint(status: int) -> str:
    if status == 401:
        return "check --api-key / EDGEDISTILL_API_KEY (a new one: edgedistill admin create-key --tenant NAME)"
    if status == 403:
        return "this route takes an API key, not a device token (or the reverse)"
    if status == 404:
        return "check the id (it belongs to the API key's tenant), or pass a local file path"
    if status == 413:
        return "the server's limit is EDGEDISTILL_MAX_UPLOAD_BYTES"
    if status == 429:
        return "too many submissions a minute for this tenant: retry in a minute"
    if status == 503:
        return "the server's database is unavailable: retry shortly"
    if status >= 500:
        return "a server fault: its log says more"
    return "fix the request as the message says"


def describe(exc: BaseException, *, url: str) -> tuple[int, str] | None:
    """(exit status, one line) for a failure the CLI expects, or None for a genuine bug."""
    if isinstance(exc, UsageError):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, FileNotFoundError | IsADirectoryError | PermissionError):
        text = str(exc) if not exc.filename else f"{exc.filename}: {exc.strerror or exc}"
        return EXIT_USAGE, f"{text}: check the path"
    if isinstance(exc, JobFailed):
        return EXIT_JOB_FAILED, str(exc)
    if isinstance(exc, TimeoutError):
        return EXIT_WAIT_TIMEOUT, f"{exc}; it goes on on the server (GET {url}/api/v1/jobs/ID), or raise --timeout"
    if isinstance(exc, ApiError):
        return (
            EXIT_REFUSED,
            f"HTTP {exc.status_code}: {_detail_text(exc.detail)} ({_http_hint(exc.status_code)})",
        )
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return EXIT_USAGE, f"--url {url} is not a usable URL ({exc}): e.g. http://127.0.0.1:8000"
    if isinstance(exc, httpx.TimeoutException):
        return (
            EXIT_UNREACHABLE,
            f"no answer from {url} in time ({type(exc).__name__}): check the server is up ({url}/readyz) "
            "or raise --http-timeout",
        )
    if isinstance(exc, httpx.ConnectError):
        reason = (
            "unknown host" if "name or service" in str(exc).lower() or "resolution" in str(exc).lower() else str(exc)
        )
        return (
            EXIT_UNREACHABLE,
            f"cannot reach the edgedistill server at {url} ({reason}): start one with `edgedistill serve` "
            "or point --url / EDGEDISTILL_URL at yours",
        )
    if isinstance(exc, httpx.TransportError):
        return EXIT_UNREACHABLE, f"the connection to {url} failed ({exc}): check the server is up ({url}/readyz)"
    return None
