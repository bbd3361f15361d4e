"""Tests for bot.phone."""
from __future__ import annotations

import pytest

from bot.phone import find_phone, normalize_phone


@pytest.mark.parametrize(
    "text, region, expected",
    [
        ("my number is 0151 2345 6789", "DE", "+4915123456789"),
        ("+44 20 7946 0958", "DE", "+442079460958"),
        ("call +1 (415) 555-2671", "DE", "+14155552671"),
        ("call +1 (415) 555-2671", "US", "+14155552671"),
        ("0049 151 23456789", "DE", "+4915123456789"),
        ("+49 (0)151 23456789", "DE", "+4915123456789"),
        ("015123456789", "DE", "+4915123456789"),
        ("tel: 030/1234567", "DE", "+49301234567"),
        ("(415) 555-2671", "US", "+14155552671"),
        ("my number is 0151 2345 6789", "de", "+4915123456789"),  # region case
    ],
)
def test_normalize_valid(text: str, region: str, expected: str) -> None:
    assert normalize_phone(text, region) == expected


@pytest.mark.parametrize(
    "text, region",
    [
        ("my number is 0151 2345 6789", "US"),  # not a valid US number
        ("0151 234", "DE"),  # too short
        ("my number is 0000 000000", "DE"),
        ("+49 123", "DE"),
        ("order 12345678", "DE"),
        ("call me tomorrow at 10", "DE"),
        ("", "DE"),
        ("no number here", "DE"),
    ],
)
def test_normalize_invalid(text: str, region: str) -> None:
    assert normalize_phone(text, region) is None


@pytest.mark.parametrize(
    "text, expected",
    [
        ("my number is 0151 2345 6789", (13, 27)),
        ("+44 20 7946 0958", (0, 16)),
        ("call +1 (415) 555-2671", (5, 22)),
        ("call 0151 2345 6789 at 10", (5, 19)),
        ("my number is 0000 000000", (13, 24)),  # found, although invalid
        ("0151 234", (0, 8)),  # 7 digits is enough to find
    ],
)
def test_find_phone(text: str, expected: tuple[int, int]) -> None:
    assert find_phone(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "order 12345678",  # no leading + or 0
        "4155552671",
        "+49 123",  # fewer than 7 digits
        "call me tomorrow at 10",
        "I paid 10 euros on 24.11.",
        "",
    ],
)
def test_find_phone_none(text: str) -> None:
    assert find_phone(text) is None


def test_find_phone_region() -> None:
    # A German mobile number does not look like a US number at all.
    assert find_phone("call 0151 2345 6789", "US") is None
    assert find_phone("ring 020 7946 0958", "GB") == (5, 18)
    assert normalize_phone("ring 020 7946 0958", "GB") == "+442079460958"
