"""Server-side dashboard sessions: the cookie is a random token, the row (found by its sha256) is the
session. Logout revokes the row; revoking an API key revokes every session opened with it."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from edgedistill.service.db.base import utcnow
from edgedistill.service.db.models import WebSession
from edgedistill.service.repos.tokens import hash_secret


@dataclass(frozen=True)
class NewSession:
    token: str  # goes into the cookie; never stored
    session: WebSession


def open_session(session: Session, *, key_id: str, max_age_s: float) -> NewSession:
    token = secrets.token_urlsafe(32)
    now = utcnow()
    row = WebSession(token_hash=hash_secret(token), key_id=key_id, expires_at=now + timedelta(seconds=max_age_s))
    session.add(row)
    session.flush()
    return NewSession(token=token, session=row)


def live_session(session: Session, *, token: str) -> WebSession | None:
    """The unexpired, unrevoked session this cookie token opened; None for anything else."""
    if not token or len(token) > 128:
        return None
    row = session.scalar(select(WebSession).where(WebSession.token_hash == hash_secret(token)))
    if row is None or row.revoked_at is not None or row.expires_at <= utcnow():
        return None
    return row


def end_session(session: Session, *, token: str) -> bool:
    result = session.execute(
        update(WebSession)
        .where(WebSession.token_hash == hash_secret(token), WebSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return bool(getattr(result, "rowcount", 0))


def end_sessions_of_key(session: Session, *, key_id: str) -> int:
    result = session.execute(
        update(WebSession)
        .where(WebSession.key_id == key_id, WebSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return int(getattr(result, "rowcount", 0) or 0)


def purge_expired(session: Session, *, older_than: timedelta = timedelta(days=1)) -> int:
    """Rows of sessions that expired or were revoked long enough ago; kept that long for auditing."""
    cutoff = utcnow() - older_than
    result = session.execute(
        delete(WebSession).where((WebSession.expires_at < cutoff) | (WebSession.revoked_at < cutoff))
    )
    return int(getattr(result, "rowcount", 0) or 0)
