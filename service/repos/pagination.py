"""Keyset pagination over (created_at, id), newest first, with an opaque cursor."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute, Session

from edgedistill.service.repos.errors import InvalidCursor

T = TypeVar("T")

MAX_LIMIT = 200


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(created_at: datetime, row_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, row_id = json.loads(raw)
        when = datetime.fromisoformat(stamp)
        if when.tzinfo is None or not isinstance(row_id, str):
            raise ValueError("bad cursor fields")
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidCursor("invalid cursor: pass the next_cursor value of the previous page unchanged") from exc
    return when, row_id


def paginate(
    session: Session,
    stmt: Select[Any],
    *,
    created_at: InstrumentedAttribute[datetime],
    row_id: InstrumentedAttribute[str],
    cursor: str | None,
    limit: int,
) -> Page[Any]:
    """Run stmt (a select of one entity) newest first; one extra row tells whether a next page exists."""
    limit = max(1, min(limit, MAX_LIMIT))
    if cursor:
        when, last_id = decode_cursor(cursor)
        stmt = stmt.where(or_(created_at < when, and_(created_at == when, row_id < last_id)))
    rows = list(session.scalars(stmt.order_by(created_at.desc(), row_id.desc()).limit(limit + 1)))
    if len(rows) <= limit:
        return Page(items=rows, next_cursor=None)
    last = rows[limit - 1]
    return Page(items=rows[:limit], next_cursor=encode_cursor(last.created_at, last.id))
