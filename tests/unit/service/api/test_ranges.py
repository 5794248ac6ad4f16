from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgedistill.service.api.ranges import RangeNotSatisfiable, parse_range


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("bytes=0-0", 10, (0, 1)),
        ("bytes=2-", 10, (2, 10)),
        ("bytes=-3", 10, (7, 10)),
        ("bytes=-30", 10, (0, 10)),
        ("bytes=5-100", 10, (5, 10)),
        ("bytes=0-1,4-5", 10, None),  # several ranges: whole body
        ("items=0-1", 10, None),  # other units are ignored
        ("bytes=5-2", 10, None),  # invalid spec is ignored
        ("bytes=-", 10, None),
    ],
)
def test_parse(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(("header", "size"), [("bytes=10-", 10), ("bytes=-0", 10), ("bytes=0-", 0)])
def test_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, size)


@given(st.integers(0, 10_000), st.integers(0, 10_000), st.integers(1, 10_000))
def test_satisfiable_ranges_stay_inside_the_file(a: int, b: int, size: int) -> None:
    try:
        span = parse_range(f"bytes={a}-{b}", size)
    except RangeNotSatisfiable:
        assert a >= size
        return
    if span is not None:
        start, end = span
        assert 0 <= start < end <= size and start == a


def test_positions_with_thousands_of_digits_are_not_a_500() -> None:
    huge = "9" * 5000
    with pytest.raises(RangeNotSatisfiable):
        parse_range(f"bytes={huge}-", 10)
    assert parse_range(f"bytes=0-{huge}", 10) == (0, 10)
    assert parse_range(f"bytes=-{huge}", 10) == (0, 10)
