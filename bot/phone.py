"""Finding and normalising phone numbers in free text (via ``phonenumbers``)."""
from __future__ import annotations

from typing import Iterable, Iterator, Optional

import phonenumbers
from phonenumbers import Leniency, PhoneNumberFormat, PhoneNumberMatch, PhoneNumberMatcher

__all__ = ["normalize_phone", "find_phone", "phone_region", "is_personal_number",
           "country_names", "FALLBACK_REGION", "MIN_DIGITS"]

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


# Numbers a person answers: anything else (premium rate, shared cost, personal/UAN numbers,
# pagers, voicemail, toll free, unknown) is never called back (toll fraud, docs/twilio.md).
_PERSONAL_TYPES = frozenset({
    phonenumbers.PhoneNumberType.FIXED_LINE,
    phonenumbers.PhoneNumberType.MOBILE,
    phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    phonenumbers.PhoneNumberType.VOIP,
})


def _parse_e164(number: str) -> Optional[phonenumbers.PhoneNumber]:
    if not isinstance(number, str) or not number.startswith("+"):
        return None
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None
    return parsed if phonenumbers.is_valid_number(parsed) else None


def phone_region(number: str) -> Optional[str]:
    """The ISO 3166 region of a valid E.164 number.

    Args:
        number: E.164, e.g. "+4915123456789".

    Returns:
        "DE" for that example; None for an invalid number or one of no single region
        (e.g. +800 international freephone).
    """
    parsed = _parse_e164(number)
    if parsed is None:
        return None
    region = phonenumbers.region_code_for_number(parsed)
    return region if region and region != "001" else None


def is_personal_number(number: str) -> bool:
    """Whether a valid E.164 number is a line a person answers (fixed line, mobile, VoIP),
    not a premium-rate, shared-cost, personal/UAN, pager, voicemail or toll-free number."""
    parsed = _parse_e164(number)
    return parsed is not None and phonenumbers.number_type(parsed) in _PERSONAL_TYPES


def country_names(regions: Iterable[str], lang: str = "en") -> str:
    """Regions as readable text: ("DE", "AT", "GB") → "Germany, Austria and the United
    Kingdom" (the code itself when phonenumbers has no name for it); ``lang`` "de" or "fr"
    names them in German or French ("Deutschland, Österreich und Vereinigtes Königreich")."""
    from phonenumbers import geocoder

    names = []
    for region in regions:
        code = str(region).strip().upper()
        example = phonenumbers.example_number(code)
        name = geocoder.country_name_for_number(example, lang) if example is not None else ""
        if name in ("United Kingdom", "United States", "Netherlands", "Czech Republic"):
            name = f"the {name}"
        names.append(name or code)
    if len(names) <= 1:
        return "".join(names)
    word = {"de": "und", "fr": "et"}.get(lang, "and")
    return f"{', '.join(names[:-1])} {word} {names[-1]}"
