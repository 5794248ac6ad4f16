"""Signed webhook delivery: the worker POSTs the job's final state to the job's webhook_url.

The receiver verifies `X-Edgedistill-Signature: sha256=<hex>`, the HMAC-SHA256 of the raw body with
the shared secret (EDGEDISTILL_WEBHOOK_SECRET), e.g. with verify() below.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

SIGNATURE_HEADER = "X-Edgedistill-Signature"
DELIVERY_HEADER = "X-Edgedistill-Delivery"
USER_AGENT = "edgedistill-webhook/1"

log = logging.getLogger(__name__)


def sign(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def signature_header(body: bytes, secret: str) -> str:
    return f"sha256={sign(body, secret)}"


def verify(body: bytes, secret: str, header_value: str) -> bool:
    return hmac.compare_digest(signature_header(body, secret), header_value.strip())


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")


@dataclass(frozen=True)
class DeliveryResult:
    ok: bool
    attempts: int
    status_code: int | None = None
    error: str | None = None


def _retryable(status: int) -> bool:
    return status >= 500 or status in (408, 429)


def deliver(
    url: str,
    payload: dict[str, Any],
    secret: str,
    *,
    timeout: float = 10.0,
    retries: int = 2,
    backoff_s: float = 1.0,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryResult:
    """POST payload as JSON, retrying transport errors and 5xx/408/429 up to `retries` times.
    Never raises: a failing receiver must not fail the job."""
    body = encode(payload)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: signature_header(body, secret),
        DELIVERY_HEADER: uuid.uuid4().hex,  # the same id on every retry: receivers can dedupe
    }
    status: int | None = None
    error: str | None = None
    attempts = 0
    with httpx.Client(timeout=timeout, transport=transport, follow_redirects=False) as client:
        for attempt in range(retries + 1):
            attempts = attempt + 1
            if attempt:
                sleep(backoff_s * 2 ** (attempt - 1))
            try:
                resp = client.post(url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                status, error = None, f"{type(exc).__name__}: {exc}"
                continue
            status = resp.status_code
            if resp.is_success:
                return DeliveryResult(ok=True, attempts=attempts, status_code=status)
            error = f"HTTP {status}"
            if not _retryable(status):
                break
    log.warning("webhook %s failed after %d attempt(s): %s", url, attempts, error)
    return DeliveryResult(ok=False, attempts=attempts, status_code=status, error=error)
