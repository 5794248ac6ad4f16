from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgedistill.service.repos.errors import InvalidCursor
from edgedistill.service.repos.pagination import decode_cursor, encode_cursor


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(timezone.utc)),
    st.text(min_size=1, max_size=40),
)
def test_cursor_round_trips(when: datetime, row_id: str) -> None:
    assert decode_cursor(encode_cursor(when, row_id)) == (when, row_id)


@pytest.mark.parametrize("bad", ["", "not-base64!!", "bnVsbA", encode_cursor.__name__])
def test_garbage_cursor_is_invalid(bad: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(bad)
