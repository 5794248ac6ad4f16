"""Signed webhook delivery: the job's final state is POSTed to the job's webhook_url.

Each tenant has its own webhook secret (POST /api/v1/webhook-secret or `edgedistill admin
webhook-secret --tenant NAME`, shown once), unrelated to any other secret of the install. Every
delivery carries

    X-Edgedistill-Timestamp: <unix seconds when this attempt was signed>
    X-Edgedistill-Delivery:  <delivery id, the same on every retry of one delivery>
    X-Edgedistill-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<delivery id>." + raw body)>

so a captured delivery cannot be replayed later (the timestamp is signed; verify() refuses it after
DEFAULT_TOLERANCE_S) nor as another delivery (the id is signed; a ReplayGuard refuses an id it has seen).
Receivers: `verify(body, headers, secret, guard=guard)` below, or the same three steps in any language.

deliver() connects only to a destination that service.netpolicy has checked, to the checked address
itself (Host header and TLS name kept), and gives each attempt a total deadline: a receiver that
trickles its answer is cut off at `timeout_s`, not at `timeout_s` per read.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from edgedistill.service.netpolicy import Allowlist, DestinationRefused, Resolver, check_destination, system_resolver

SIGNATURE_HEADER = "X-Edgedistill-Signature"
TIMESTAMP_HEADER = "X-Edgedistill-Timestamp"
DELIVERY_HEADER = "X-Edgedistill-Delivery"
SIGNATURE_VERSION = "v1"
USER_AGENT = "edgedistill-webhook/2"
# How old (or how far in the future, for clock skew) a signed timestamp verify() accepts by default.
DEFAULT_TOLERANCE_S = 300

log = logging.getLogger(__name__)


def signed_content(timestamp: int, delivery_id: str, body: bytes) -> bytes:
    return f"{timestamp}.{delivery_id}.".encode("ascii") + body


def sign(body: bytes, secret: str, *, timestamp: int, delivery_id: str) -> str:
    mac = hmac.new(secret.encode("utf-8"), signed_content(timestamp, delivery_id, body), hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def signed_headers(body: bytes, secret: str, *, delivery_id: str, timestamp: int) -> dict[str, str]:
    return {
        TIMESTAMP_HEADER: str(timestamp),
        DELIVERY_HEADER: delivery_id,
        SIGNATURE_HEADER: sign(body, secret, timestamp=timestamp, delivery_id=delivery_id),
    }


class VerificationError(ValueError):
    """A delivery that must not be trusted; the message says why."""


class ReplayGuard:
    """Delivery ids seen within the tolerance window (bounded memory). A receiver keeps one per process;
    a fleet of receivers would keep the ids in a shared store instead."""

    def __init__(self, max_ids: int = 100_000) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._max = max_ids
        self._lock = threading.Lock()

    def check_and_remember(self, delivery_id: str, *, now: float, tolerance_s: float) -> bool:
        """True the first time an id is seen (and remembers it); False for a replay."""
        with self._lock:
            while self._seen and (
                next(iter(self._seen.values())) < now - 2 * tolerance_s or len(self._seen) > self._max
            ):
                self._seen.popitem(last=False)
            if delivery_id in self._seen:
                return False
            self._seen[delivery_id] = now
            return True


@dataclass(frozen=True)
class Verified:
    delivery_id: str
    timestamp: int


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secret: str,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    guard: ReplayGuard | None = None,
    now: float | None = None,
) -> Verified:
    """Check a received delivery: signature over timestamp + delivery id + body, timestamp within
    tolerance_s of now, and (with a guard) a delivery id not seen before. Raises VerificationError."""
    lower = {k.lower(): v for k, v in headers.items()}
    ts_text = lower.get(TIMESTAMP_HEADER.lower(), "").strip()
    delivery_id = lower.get(DELIVERY_HEADER.lower(), "").strip()
    signature = lower.get(SIGNATURE_HEADER.lower(), "").strip()
    if not ts_text or not delivery_id or not signature:
        raise VerificationError("missing timestamp, delivery id or signature header")
    if not ts_text.isdigit() or len(ts_text) > 12:
        raise VerificationError("the timestamp header is not a unix time")
    timestamp = int(ts_text)
    expected = sign(body, secret, timestamp=timestamp, delivery_id=delivery_id)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise VerificationError("signature mismatch")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise VerificationError(
            f"timestamp {timestamp} is more than {tolerance_s:g} s from now: a replay or a bad clock"
        )
    if guard is not None and not guard.check_and_remember(delivery_id, now=current, tolerance_s=tolerance_s):
        raise VerificationError(f"delivery {delivery_id} was already received: a replay")
    return Verified(delivery_id=delivery_id, timestamp=timestamp)


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")


@dataclass(frozen=True)
class DeliveryResult:
    ok: bool
    attempts: int
    status_code: int | None = None
    error: str | None = None
    refused: bool = False  # the destination policy refused the URL: nothing was sent
    address: str | None = None  # the address the last attempt connected to


def _retryable(status: int) -> bool:
    return status >= 500 or status in (408, 429)


async def _post_once(
    url: str, body: bytes, headers: dict[str, str], sni: str | None, timeout_s: float,
    transport: httpx.AsyncBaseTransport | None,
) -> int:  # fmt: skip
    extensions = {"sni_hostname": sni} if sni else {}
    # trust_env=False: a proxy from the environment would resolve the name again, past the check.
    async with httpx.AsyncClient(
        timeout=timeout_s, transport=transport, follow_redirects=False, trust_env=False
    ) as client:
        request = client.build_request("POST", url, content=body, headers=headers, extensions=extensions)
        # The status line and headers are the answer; its body is never read (a huge one costs nothing).
        response = await client.send(request, stream=True)
        await response.aclose()
        return response.status_code


def _attempt(url: str, body: bytes, headers: dict[str, str], sni: str | None, timeout_s: float,
             transport: httpx.AsyncBaseTransport | None) -> int:  # fmt: skip
    """One POST under a total deadline (asyncio cancels it mid-read: httpx's own timeout is per read)."""

    async def bounded() -> int:
        return await asyncio.wait_for(_post_once(url, body, headers, sni, timeout_s, transport), timeout_s)

    return asyncio.run(bounded())


def deliver(
    url: str,
    payload: dict[str, Any],
    secret: str,
    *,
    delivery_id: str,
    allow: Allowlist | None = None,
    timeout_s: float = 10.0,
    retries: int = 2,
    backoff_s: float = 1.0,
    resolver: Resolver = system_resolver,
    transport: httpx.AsyncBaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> DeliveryResult:
    """POST payload as JSON, retrying transport errors, timeouts and 5xx/408/429 up to `retries` times.
    Each attempt checks the destination again and connects to the address it checked. Never raises."""
    body = encode(payload)
    allow = allow or Allowlist()
    status: int | None = None
    error: str | None = None
    address: str | None = None
    attempts = 0
    for attempt in range(retries + 1):
        if attempt:
            sleep(backoff_s * 2 ** (attempt - 1))
        try:
            target = check_destination(url, allow, resolver=resolver)
        except DestinationRefused as exc:
            log.warning("webhook %s refused: %s", url, exc)
            return DeliveryResult(ok=False, attempts=attempts, error=f"refused: {exc}", refused=True)
        assert target is not None
        attempts, address = attempt + 1, target.address
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Host": target.host_header,
            **signed_headers(body, secret, delivery_id=delivery_id, timestamp=int(clock())),
        }
        sni = target.host if target.scheme == "https" else None
        try:
            status = _attempt(target.connect_url(), body, headers, sni, timeout_s, transport)
        except (TimeoutError, asyncio.TimeoutError):
            status, error = None, f"no complete answer within {timeout_s:g} s"
            continue
        except httpx.HTTPError as exc:
            status, error = None, f"{type(exc).__name__}: {exc}"
            continue
        if 200 <= status < 300:
            return DeliveryResult(ok=True, attempts=attempts, status_code=status, address=address)
        error = f"HTTP {status}"
        if not _retryable(status):
            break
    log.warning("webhook %s failed after %d attempt(s): %s", url, attempts, error)
    return DeliveryResult(ok=False, attempts=attempts, status_code=status, error=error, address=address)
