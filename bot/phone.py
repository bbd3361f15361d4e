"""Finding and normalising phone numbers in free text (via ``phonenumbers``)."""
from __future__ import annotations

from typing import Iterator, Optional

import phonenumbers
from phonenumbers import Leniency, PhoneNumberFormat, PhoneNumberMatch, PhoneNumberMatcher

__all__ = ["normalize_phone", "find_phone", "FALLBACK_REGION", "MIN_DIGITS"]

FALLBACK_REGION = "DE"
MIN_DIGITS = 7


def _region(default_region: Optional[str]) -> str:
    return (default_region or FALLBACK_REGION).upper()


def _looks_like_phone(raw: str) -> bool:
    """Numbers written with ``+`` or a leading ``0`` and at least 7 digits."""
    stripped = raw.lstrip("( ")
    digits = sum(ch.isdigit() for ch in raw)
    return stripped[:1] in ("+", "0") and digits >= MIN_DIGITS


def _matches(text: str, region: str, leniency: int) -> Iterator[PhoneNumberMatch]:
    return iter(PhoneNumberMatcher(text, region, leniency=leniency))


def normalize_phone(text: str, default_region: str) -> str | None:
    """Find a valid phone number in ``text`` and return it in E.164.

    Args:
        text: Free text, e.g. "my number is 0151 2345 6789".
        default_region: ISO 3166 region for numbers without ``+``, e.g. "DE".

    Returns:
        The first valid number as E.164 (e.g. "+4915123456789"), or None if
        there is no number that ``phonenumbers.is_valid_number`` accepts.
    """
    region = _region(default_region)
    for match in _matches(text, region, Leniency.VALID):
        if phonenumbers.is_valid_number(match.number):
            return phonenumbers.format_number(match.number, PhoneNumberFormat.E164)
    try:  # the matcher skips some bare inputs that parse() accepts
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if phonenumbers.is_valid_number(number):
        return phonenumbers.format_number(number, PhoneNumberFormat.E164)
    return None


def find_phone(text: str, default_region: Optional[str] = None) -> tuple[int, int] | None:
    """Locate something that looks like a phone number, valid or not.

    Only numbers written with a leading ``+`` or ``0`` and at least 7 digits
    count, so order numbers and amounts are not mistaken for phone numbers.

    Args:
        text: Free text.
        default_region: Region for numbers without ``+``; "DE" when None.

    Returns:
        The ``(start, end)`` character span of the first candidate, or None.
    """
    for match in _matches(text, _region(default_region), Leniency.POSSIBLE):
        if _looks_like_phone(match.raw_string):
            return match.start, match.end
    return None
