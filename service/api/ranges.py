"""HTTP Range (RFC 9110 section 14): a single byte range; several ranges are served as the whole."""

from __future__ import annotations

import re

_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


class RangeNotSatisfiable(Exception):
    pass


_HUGE = 10**20  # past any object's size; stands for positions with more digits than a size can have


def _position(digits: str) -> int:
    # int() of thousands of digits is slow and, past 4300, a ValueError (a 500): no size has 21 digits.
    return int(digits) if len(digits) <= 20 else _HUGE


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """[start, end) for a satisfiable single range; None to send the whole body (no header, several
    ranges or a malformed one, which RFC 9110 says to ignore); RangeNotSatisfiable otherwise."""
    if not header or "," in header:
        return None
    m = _RANGE_RE.match(header)
    if not m:
        return None
    first, last = m.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        n = _position(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return max(0, size - n), size
    start = _position(first)
    end = size if not last else _position(last) + 1
    if last and _position(last) < start:
        return None  # invalid range spec: ignored
    if start >= size:
        raise RangeNotSatisfiable(header)
    return start, min(end, size)
