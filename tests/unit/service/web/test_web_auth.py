"""Login, the session cookie, CSRF and what an anonymous browser gets."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from edgedistill.service.db.models import Tenant
from edgedistill.service.repos import api_keys
from edgedistill.service.web import auth
from tests.unit.service.web.helpers import Browser


def _old_scheme_cookie(secret: str, key_id: str) -> str:
    """What the session cookie used to be: {"k": key id, "t": issued} signed with the secret key."""
    import base64
    import hashlib
    import hmac
    import json
    import time

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    payload = b64(json.dumps({"k": key_id, "t": int(time.time())}).encode())
    key = hmac.new(secret.encode(), b"edgedistill.web.session", hashlib.sha256).digest()
    return f"{payload}.{b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())}"


def test_a_cookie_forged_with_the_secret_key_opens_no_session(app: FastAPI, alice: Browser, db: Session) -> None:
    """Knowing secret_key (the old webhook secret) was enough to mint a session; now only a token the
    server handed out (and still holds) is."""
    key = api_keys.authenticate(db, secret=alice.key)
    assert key is not None
    with TestClient(app) as client:
        client.cookies.set(auth.SESSION_COOKIE, _old_scheme_cookie("test-secret", key.key.id))
        assert client.get("/ui/jobs", follow_redirects=False).status_code == 303
        client.cookies.set(auth.SESSION_COOKIE, key.key.id)
        assert client.get("/ui/jobs", follow_redirects=False).status_code == 303
    assert alice.client.get("/ui/jobs", follow_redirects=False).status_code == 200


def test_expired_sessions_end(alice: Browser, db: Session) -> None:
    from datetime import timedelta

    from edgedistill.service.db.base import utcnow
    from edgedistill.service.db.models import WebSession

    assert alice.client.get("/ui/jobs", follow_redirects=False).status_code == 200
    for row in db.query(WebSession).all():
        row.expires_at = utcnow() - timedelta(seconds=1)
    db.commit()
    assert alice.client.get("/ui/jobs", follow_redirects=False).status_code == 303


def test_csrf_tokens_are_signed() -> None:
    token = auth.new_csrf_token("s3cret")
    assert auth.csrf_token_valid("s3cret", token)
    assert not auth.csrf_token_valid("other", token)
    assert not auth.csrf_token_valid("s3cret", token.split(".")[0] + ".x")
    assert not auth.csrf_token_valid("s3cret", None)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/ui/jobs/abc?x=1", "/ui/jobs/abc?x=1"),
        ("//evil.example/x", "/ui/jobs"),
        ("https://evil.example", "/ui/jobs"),
        ("/\\evil.example", "/ui/jobs"),
        ("/ui/jobs\r\nSet-Cookie: x", "/ui/jobs"),
        (None, "/ui/jobs"),
    ],
)
def test_next_url_stays_on_this_site(raw: str | None, expected: str) -> None:
    assert auth.safe_next(raw) == expected


def test_root_and_pages_send_an_anonymous_browser_to_login(anonymous: Browser) -> None:
    c = anonymous.client
    r = c.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/jobs"
    for path in ("/ui/jobs", "/ui/jobs/new", "/ui/profiles", "/ui/measurements", "/ui/jobs/abc"):
        r = c.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/ui/login?next=/ui/"), r.headers["location"]
    # Streams, fragments and downloads answer 401 (EventSource and fetch cannot use a redirect).
    for path in ("/ui/jobs/events", "/ui/jobs/abc/events", "/ui/jobs/abc/fragment", "/ui/artifacts/abc/download"):
        assert c.get(path).status_code == 401, path


def test_login_page_sets_an_http_only_csrf_cookie_and_security_headers(anonymous: Browser) -> None:
    r = anonymous.client.get("/ui/login")
    assert r.status_code == 200
    assert 'name="api_key"' in r.text and 'type="password"' in r.text
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{auth.CSRF_COOKIE}=") and "HttpOnly" in cookie and "SameSite=lax" in cookie
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "plain HTTP" in r.text  # testserver is neither HTTPS nor loopback


def test_login_with_a_wrong_key_shows_the_error_next_to_the_field(anonymous: Browser) -> None:
    r = anonymous.post_form("/ui/login", {"api_key": "edk_wrong"})
    assert r.status_code == 401
    assert 'id="api_key-error"' in r.text and "unknown or has been revoked" in r.text
    assert 'aria-invalid="true" aria-describedby="api_key-error"' in r.text
    r = anonymous.post_form("/ui/login", {"api_key": "  "})
    assert r.status_code == 422 and "Enter your API key" in r.text


def test_login_sets_a_signed_session_cookie_without_the_key(
    anonymous: Browser, make_key: Callable[[str], tuple[Tenant, str]]
) -> None:
    _, key = make_key("acme")
    r = anonymous.post_form("/ui/login", {"api_key": key, "next": "/ui/profiles"})
    assert r.status_code == 303 and r.headers["location"] == "/ui/profiles"
    cookies = r.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith(f"{auth.SESSION_COOKIE}="))
    assert "HttpOnly" in session and "SameSite=lax" in session and "Max-Age=" in session
    assert key not in session and key[:12] not in session
    page = anonymous.client.get("/ui/jobs")
    assert page.status_code == 200 and "acme" in page.text


def test_login_next_cannot_leave_the_site(anonymous: Browser, make_key: Callable[[str], tuple[Tenant, str]]) -> None:
    _, key = make_key("acme")
    r = anonymous.post_form("/ui/login", {"api_key": key, "next": "//evil.example/phish"})
    assert r.status_code == 303 and r.headers["location"] == "/ui/jobs"


def test_cookies_are_secure_over_https(app: FastAPI, make_key: Callable[[str], tuple[Tenant, str]]) -> None:
    _, key = make_key("acme")
    with TestClient(app, base_url="https://dash.example") as client:
        browser = Browser(client)
        r = browser.post_form("/ui/login", {"api_key": key})
        assert r.status_code == 303
        assert all("Secure" in c for c in r.headers.get_list("set-cookie"))


def test_posts_without_a_matching_token_or_from_another_origin_are_refused(
    anonymous: Browser, make_key: Callable[[str], tuple[Tenant, str]]
) -> None:
    _, key = make_key("acme")
    c = anonymous.client
    c.get("/ui/login")  # has a CSRF cookie now
    assert c.post("/ui/login", data={"api_key": key}).status_code == 403
    assert c.post("/ui/login", data={"api_key": key, "csrf_token": "forged.token"}).status_code == 403
    token = anonymous.csrf()
    r = c.post(
        "/ui/login",
        data={"api_key": key, "csrf_token": token},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert r.status_code == 403 and "cross-origin" in r.text
    r = c.post(
        "/ui/login",
        data={"api_key": key, "csrf_token": token},
        headers={"Origin": "http://testserver"},
        follow_redirects=False,
    )
    assert r.status_code == 303


def test_logout_ends_the_session(app: FastAPI, alice: Browser) -> None:
    copied = alice.client.cookies.get(auth.SESSION_COOKIE)
    assert copied
    token = alice.csrf("/ui/jobs")
    r = alice.client.post("/ui/logout", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    assert alice.client.get("/ui/jobs", follow_redirects=False).status_code == 303
    # A copy of the cookie taken before logout (another tab, a stolen cookie) is dead on the server too.
    with TestClient(app) as other:
        other.cookies.set(auth.SESSION_COOKIE, copied)
        assert other.get("/ui/jobs", follow_redirects=False).status_code == 303


def test_a_revoked_key_logs_its_browsers_out(alice: Browser, db: Session) -> None:
    from edgedistill.service.db.models import WebSession

    assert alice.client.get("/ui/jobs", follow_redirects=False).status_code == 200
    api_keys.revoke_key(db, prefix=alice.key[:12])
    db.commit()
    assert all(row.revoked_at is not None for row in db.query(WebSession).all())
    r = alice.client.get("/ui/jobs", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")


def test_unknown_dashboard_paths_get_a_404_page(alice: Browser) -> None:
    r = alice.client.get("/ui/nothing/here")
    assert r.status_code == 404 and "There is no page at /ui/nothing/here" in r.text
    assert r.headers["content-type"].startswith("text/html")


def test_static_assets_are_served(anonymous: Browser) -> None:
    for name, kind in (("app.css", "text/css"), ("app.js", "javascript"), ("favicon.svg", "image/svg+xml")):
        r = anonymous.client.get(f"/ui/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"], name


def test_form_bodies_are_capped_before_they_are_read(anonymous: Browser) -> None:
    big = b"api_key=" + b"x" * (2 * 1024 * 1024)
    r = anonymous.client.post("/ui/login", content=big, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413
