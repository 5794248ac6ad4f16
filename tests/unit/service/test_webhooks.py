from __future__ import annotations

import hashlib
import hmac
import json

import httpx

from service.webhooks import SIGNATURE_HEADER, deliver, encode, sign, verify


def test_signature_is_hmac_sha256_of_the_body() -> None:
    body = b'{"status":"succeeded"}'
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert sign(body, "s3cret") == expected
    assert verify(body, "s3cret", f"sha256={expected}")
    assert not verify(body + b" ", "s3cret", f"sha256={expected}")
    assert not verify(body, "other", f"sha256={expected}")


def test_deliver_posts_signed_json() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    result = deliver(
        "https://hooks.example/x", {"job_id": "j", "status": "failed"}, "k", transport=httpx.MockTransport(handler)
    )
    assert result.ok and result.attempts == 1 and result.status_code == 204
    req = seen[0]
    assert req.method == "POST" and json.loads(req.content) == {"job_id": "j", "status": "failed"}
    assert req.content == encode({"job_id": "j", "status": "failed"})
    assert verify(req.content, "k", req.headers[SIGNATURE_HEADER])


def test_deliver_retries_server_errors_then_gives_up() -> None:
    calls: list[str] = []
    sleeps: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers["X-Edgedistill-Delivery"])
        return httpx.Response(503)

    result = deliver("http://h/x", {}, "k", retries=2, transport=httpx.MockTransport(handler), sleep=sleeps.append)
    assert not result.ok and result.attempts == 3 and result.status_code == 503
    assert len(set(calls)) == 1  # one delivery id across retries
    assert sleeps == [1.0, 2.0]


def test_deliver_does_not_retry_client_errors_and_survives_transport_errors() -> None:
    result = deliver(
        "http://h/x", {}, "k", transport=httpx.MockTransport(lambda r: httpx.Response(400)), sleep=lambda s: None
    )
    assert not result.ok and result.attempts == 1

    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    result = deliver("http://h/x", {}, "k", retries=1, transport=httpx.MockTransport(broken), sleep=lambda s: None)
    assert not result.ok and result.attempts == 2 and "ConnectError" in (result.error or "")
