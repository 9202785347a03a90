"""Retry-After header parsing (delay-seconds and HTTP-date)."""

from __future__ import annotations

import pytest

from notify_service.providers.retry_after import MAX_RETRY_AFTER_S, parse_retry_after

# Sun, 06 Nov 1994 08:49:37 GMT
NOV_1994 = 784111777.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("Sun, 06 Nov 1994 08:49:37 GMT", 30.0),
        ("Sun Nov  6 08:49:37 1994", 30.0),
        ("Sunday, 06-Nov-94 08:49:37 GMT", 30.0),
    ],
)
def test_readable_values_become_seconds(value: str, expected: float) -> None:
    """Delay-seconds as given; an HTTP-date as seconds from now."""
    assert parse_retry_after(value, NOV_1994 - 30) == expected


@pytest.mark.parametrize(
    "value",
    [None, "", "soon", "-5", "1.5", "+5", "²", "١٢", "Sun, 99 Nov 1994 08:49:37 GMT"],
)
def test_absent_or_unreadable_is_none(value: str | None) -> None:
    """No header, or one that is neither form: None (the caller's own backoff applies).
    Delay-seconds are ASCII digits: a superscript or Arabic-Indic digit is not a number here."""
    assert parse_retry_after(value, NOV_1994) is None


def test_date_in_the_past_is_zero() -> None:
    """An HTTP-date already past means retry now."""
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", NOV_1994 + 100) == 0.0


def test_huge_values_are_capped() -> None:
    """Delays beyond a day are capped at a day."""
    assert parse_retry_after("99999999", 0.0) == MAX_RETRY_AFTER_S
