from __future__ import annotations

import hashlib
import hmac
import json

import httpx
import pytest

from edgedistill.service.netpolicy import Allowlist
from edgedistill.service.webhooks import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ReplayGuard,
    VerificationError,
    deliver,
    encode,
    sign,
    signed_headers,
    verify,
)

PUBLIC = "93.184.216.34"


def public_resolver(host: str, port: int) -> list[str]:
    return [PUBLIC]


def test_signature_covers_timestamp_delivery_id_and_body() -> None:
    body = b'{"status":"succeeded"}'
    expected = hmac.new(b"s3cret", b"1700000000.d1." + body, hashlib.sha256).hexdigest()
    assert sign(body, "s3cret", timestamp=1700000000, delivery_id="d1") == f"v1={expected}"
    headers = signed_headers(body, "s3cret", delivery_id="d1", timestamp=1700000000)
    assert verify(body, headers, "s3cret", now=1700000010).delivery_id == "d1"
    for bad_body, bad_headers, secret in (
        (body + b" ", headers, "s3cret"),
        (body, headers, "other"),
        (body, {**headers, DELIVERY_HEADER: "d2"}, "s3cret"),  # the id is signed
        (body, {**headers, TIMESTAMP_HEADER: "1700000001"}, "s3cret"),  # so is the time
        (body, {k: v for k, v in headers.items() if k != TIMESTAMP_HEADER}, "s3cret"),
        (body, {**headers, TIMESTAMP_HEADER: "1e9"}, "s3cret"),
    ):
        with pytest.raises(VerificationError):
            verify(bad_body, bad_headers, secret, now=1700000010)


def test_verify_refuses_old_timestamps_and_replays() -> None:
    body = b"{}"
    headers = signed_headers(body, "k", delivery_id="abc", timestamp=1000)
    with pytest.raises(VerificationError, match="more than 300 s"):
        verify(body, headers, "k", now=1000 + 301)
    with pytest.raises(VerificationError, match="more than 300 s"):
        verify(body, headers, "k", now=1000 - 301)
    assert verify(body, headers, "k", now=1000 + 299, tolerance_s=300)
    guard = ReplayGuard()
    assert verify(body, headers, "k", now=1001, guard=guard).timestamp == 1000
    with pytest.raises(VerificationError, match="already received"):
        verify(body, headers, "k", now=1002, guard=guard)
    # Header names are case-insensitive, as HTTP says.
    lower = {k.lower(): v for k, v in signed_headers(body, "k", delivery_id="x", timestamp=1000).items()}
    assert verify(body, lower, "k", now=1000).delivery_id == "x"


def test_deliver_connects_to_the_checked_address_with_the_host_kept() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    result = deliver(
        "https://hooks.example:8443/x?y=1",
        {"job_id": "j", "status": "failed"},
        "k",
        delivery_id="d-1",
        resolver=public_resolver,
        transport=httpx.MockTransport(handler),
        clock=lambda: 1234.0,
    )
    assert result.ok and result.attempts == 1 and result.status_code == 204 and result.address == PUBLIC
    req = seen[0]
    assert str(req.url) == f"https://{PUBLIC}:8443/x?y=1"
    assert req.headers["host"] == "hooks.example:8443"
    assert req.extensions["sni_hostname"] == "hooks.example"  # TLS is verified for the name, not the IP
    assert req.method == "POST" and json.loads(req.content) == {"job_id": "j", "status": "failed"}
    assert req.content == encode({"job_id": "j", "status": "failed"})
    assert req.headers[TIMESTAMP_HEADER] == "1234" and req.headers[DELIVERY_HEADER] == "d-1"
    assert verify(req.content, dict(req.headers), "k", now=1234.0)
    assert req.headers[SIGNATURE_HEADER].startswith("v1=")


def test_deliver_retries_server_errors_with_one_delivery_id_then_gives_up() -> None:
    calls: list[str] = []
    sleeps: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers[DELIVERY_HEADER])
        return httpx.Response(503)

    result = deliver(
        "http://h.example/x", {}, "k", delivery_id="same", retries=2, resolver=public_resolver,
        transport=httpx.MockTransport(handler), sleep=sleeps.append,
    )  # fmt: skip
    assert not result.ok and result.attempts == 3 and result.status_code == 503
    assert calls == ["same"] * 3
    assert sleeps == [1.0, 2.0]


def test_deliver_does_not_retry_client_errors_and_survives_transport_errors() -> None:
    result = deliver(
        "http://h.example/x", {}, "k", delivery_id="d", resolver=public_resolver,
        transport=httpx.MockTransport(lambda r: httpx.Response(400)), sleep=lambda s: None,
    )  # fmt: skip
    assert not result.ok and result.attempts == 1

    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    result = deliver(
        "http://h.example/x", {}, "k", delivery_id="d", retries=1, resolver=public_resolver,
        transport=httpx.MockTransport(broken), sleep=lambda s: None,
    )  # fmt: skip
    assert not result.ok and result.attempts == 2 and "ConnectError" in (result.error or "")


def test_deliver_refuses_a_destination_that_resolves_inward_at_connect_time() -> None:
    """DNS rebinding: the name was public at submit, now it points at loopback. Nothing is sent."""
    sent: list[httpx.Request] = []
    result = deliver(
        "http://rebind.example/x", {}, "k", delivery_id="d", resolver=lambda h, p: ["127.0.0.1"],
        transport=httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(200)),
    )  # fmt: skip
    assert result.refused and not result.ok and result.attempts == 0 and sent == []
    assert "loopback" in (result.error or "")
    allowed = deliver(
        "http://rebind.example/x", {}, "k", delivery_id="d", resolver=lambda h, p: ["127.0.0.1"],
        allow=Allowlist.parse(["127.0.0.0/8"]), transport=httpx.MockTransport(lambda r: httpx.Response(200)),
    )  # fmt: skip
    assert allowed.ok and allowed.address == "127.0.0.1"


def test_each_attempt_has_a_total_deadline() -> None:
    import asyncio

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)  # a receiver that never finishes its answer
        return httpx.Response(200)

    import time

    started = time.monotonic()
    result = deliver(
        "http://slow.example/x", {}, "k", delivery_id="d", retries=0, timeout_s=0.3, resolver=public_resolver,
        transport=httpx.MockTransport(slow),
    )  # fmt: skip
    assert not result.ok and "within 0.3 s" in (result.error or "")
    assert time.monotonic() - started < 10
