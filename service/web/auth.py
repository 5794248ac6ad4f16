"""Dashboard sessions and CSRF protection, with hmac/hashlib only.

- Session: an HTTP-only, SameSite=Lax cookie holding a random 256-bit token; the server keeps the
  session (its sha256, the API key it was opened with, expiry) in web_sessions. Nothing in the cookie
  can be made from a secret: logout and key revocation end a session by ending its row, and every
  request re-checks that the key is live.
- CSRF: a signed double-submit token. The token lives in its own HTTP-only cookie and in a hidden
  field of every form; a POST must carry both, equal, with a valid signature, and (when the browser
  sends one) an Origin header of this site. SameSite=Lax already keeps the session cookie off
  cross-site POSTs; the token covers older browsers and same-site attackers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request, Response
from sqlalchemy.orm import Session

from edgedistill.service.api.deps import Principal, SessionDep
from edgedistill.service.repos import api_keys, web_sessions

SESSION_COOKIE = "edgedistill_session"
CSRF_COOKIE = "edgedistill_csrf"
CSRF_FIELD = "csrf_token"
SESSION_MAX_AGE_S = 12 * 3600
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


class LoginRequired(Exception):
    """Raised by page dependencies; answered with a redirect to the login page."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class NotAuthenticated(Exception):
    """Raised by non-page endpoints (event streams, downloads): answered 401, no redirect."""


class CsrfError(Exception):
    """A form POST without a matching CSRF token or from another origin: answered 403."""


@dataclass(frozen=True)
class WebUser:
    tenant_id: str
    tenant_name: str
    key_id: str
    key_prefix: str

    def principal(self) -> Principal:
        """The API's caller type, so the dashboard can call the API's route functions unchanged."""
        return Principal(
            tenant_id=self.tenant_id, tenant_name=self.tenant_name, key_id=self.key_id, key_prefix=self.key_prefix
        )


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key(secret: str, purpose: str) -> bytes:
    """A separate key per use, so a CSRF token can never pass as a session and vice versa."""
    return hmac.new(secret.encode("utf-8"), f"edgedistill.web.{purpose}".encode(), hashlib.sha256).digest()


def _sign(secret: str, purpose: str, data: str) -> str:
    return _b64(hmac.new(_key(secret, purpose), data.encode("ascii"), hashlib.sha256).digest())


def new_csrf_token(secret: str) -> str:
    nonce = secrets.token_urlsafe(24)
    return f"{nonce}.{_sign(secret, 'csrf', nonce)}"


def csrf_token_valid(secret: str, token: str | None) -> bool:
    if not token or token.count(".") != 1:
        return False
    nonce, signature = token.split(".")
    return bool(nonce) and hmac.compare_digest(signature, _sign(secret, "csrf", nonce))


def secret_of(request: Request) -> str:
    """The signing secret, read once per app (it may live in a file in the data folder)."""
    cached: str | None = getattr(request.app.state, "web_secret", None)
    if cached is None:
        cached = request.app.state.settings.resolved_secret_key()
        request.app.state.web_secret = cached
    return cached


def cookie_secure(request: Request) -> bool:
    """Secure on HTTPS, and on loopback HTTP where browsers accept Secure cookies too. On plain HTTP to
    another host a Secure cookie would never come back, so the login page warns instead."""
    return request.url.scheme == "https" or (request.url.hostname or "") in _LOOPBACK


def plain_http_warning(request: Request) -> bool:
    return not cookie_secure(request)


def csrf_token(request: Request) -> str:
    """This browser's CSRF token (made, and marked for setting as a cookie, on first use)."""
    token: str | None = getattr(request.state, "csrf_token", None)
    if token is not None:
        return token
    secret = secret_of(request)
    cookie = request.cookies.get(CSRF_COOKIE)
    if csrf_token_valid(secret, cookie):
        token = str(cookie)
    else:
        token = new_csrf_token(secret)
        request.state.csrf_new = True
    request.state.csrf_token = token
    return token


def finish_response(request: Request, response: Response) -> Response:
    """Set the CSRF cookie when this request made a new token."""
    if getattr(request.state, "csrf_new", False):
        response.set_cookie(
            CSRF_COOKIE,
            request.state.csrf_token,
            httponly=True,
            samesite="lax",
            secure=cookie_secure(request),
            path="/",
        )
    return response


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:
        referer = request.headers.get("referer")
        if not referer:
            return True  # some privacy settings send neither; the token still has to match
        parts = urlsplit(referer)
        origin = f"{parts.scheme}://{parts.netloc}"
    if origin == "null":
        return False
    return origin.rstrip("/") == f"{request.url.scheme}://{request.url.netloc}"


def check_origin(request: Request) -> None:
    if not _same_origin(request):
        raise CsrfError("cross-origin form submission refused")


def check_csrf(request: Request, submitted: str | None) -> None:
    """Raise CsrfError unless the submitted token matches this browser's cookie and the origin is ours."""
    secret = secret_of(request)
    cookie = request.cookies.get(CSRF_COOKIE)
    check_origin(request)
    if (
        not submitted
        or not cookie
        or not csrf_token_valid(secret, cookie)
        or not hmac.compare_digest(submitted.encode(), cookie.encode())
    ):
        raise CsrfError("the form's security token is missing or stale; reload the page and try again")


def set_session(request: Request, response: Response, session: Session, key_id: str) -> None:
    """Open a server-side session for the key and set its cookie; the caller commits."""
    opened = web_sessions.open_session(session, key_id=key_id, max_age_s=SESSION_MAX_AGE_S)
    response.set_cookie(
        SESSION_COOKIE,
        opened.token,
        max_age=SESSION_MAX_AGE_S,
        httponly=True,
        samesite="lax",
        secure=cookie_secure(request),
        path="/",
    )
    # A new token after login: one seen before the login is not trusted after it.
    response.set_cookie(
        CSRF_COOKIE,
        new_csrf_token(secret_of(request)),
        httponly=True,
        samesite="lax",
        secure=cookie_secure(request),
        path="/",
    )


def clear_session(request: Request, response: Response, session: Session) -> None:
    """End this browser's session on the server (a copied cookie stops working too) and drop the cookie."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        web_sessions.end_session(session, token=token)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=cookie_secure(request))


def user_from_request(request: Request, session: Session) -> WebUser | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    row = web_sessions.live_session(session, token=token)
    if row is None:
        return None
    auth = api_keys.get_live_key(session, key_id=row.key_id)
    if auth is None:
        return None
    return WebUser(
        tenant_id=auth.tenant.id, tenant_name=auth.tenant.name, key_id=auth.key.id, key_prefix=auth.key.prefix
    )


def _next_url(request: Request) -> str:
    path = request.url.path
    return path + (f"?{request.url.query}" if request.url.query else "")


def require_user(request: Request, session: SessionDep) -> WebUser:
    """Pages: the logged-in user, or a redirect to the login page that comes back here."""
    user = user_from_request(request, session)
    if user is None:
        raise LoginRequired(_next_url(request))
    request.state.user = user
    return user


def require_user_401(request: Request, session: SessionDep) -> WebUser:
    """Streams and downloads: the logged-in user, or 401 (a redirect makes no sense to EventSource)."""
    user = user_from_request(request, session)
    if user is None:
        raise NotAuthenticated("log in to the dashboard first")
    request.state.user = user
    return user


def login_url(next_url: str | None) -> str:
    if next_url and safe_next(next_url) == next_url and next_url not in ("/", "/ui/login"):
        return f"/ui/login?next={quote(next_url, safe='/')}"
    return "/ui/login"


def safe_next(next_url: str | None, default: str = "/ui/jobs") -> str:
    """Only same-site paths: an open redirect after login would be a phishing helper."""
    if not next_url or not next_url.startswith("/") or next_url.startswith("//") or "\\" in next_url:
        return default
    if any(ord(c) < 0x20 for c in next_url):
        return default
    return next_url


UserDep = Annotated[WebUser, Depends(require_user)]
StreamUserDep = Annotated[WebUser, Depends(require_user_401)]
