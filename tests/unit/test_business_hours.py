"""Tests for bot.business_hours."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from bot.business_hours import BusinessHours, from_settings, validate_callback_time
from bot.settings import reset_settings_cache

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
SPEC = "mon-fri 09:00-18:00, sat 10:00-14:00"
NOW = datetime(2026, 11, 23, 11, 20, tzinfo=BERLIN)  # Monday


@pytest.fixture
def hours() -> BusinessHours:
    return BusinessHours.parse(SPEC, "Europe/Berlin")


def berlin(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=BERLIN)


def test_describe(hours: BusinessHours) -> None:
    assert hours.describe() == "Mon–Fri 09:00–18:00, Sat 10:00–14:00 (Europe/Berlin)"


def test_describe_split_days_and_breaks() -> None:
    spec = "Mon - Fri 09:00 - 12:00 13:00-18:00; wed 19:00-20:00; sat-sun 10:00-12:00"
    hours = BusinessHours.parse(spec, "UTC")
    assert hours.describe() == (
        "Mon–Tue 09:00–12:00 & 13:00–18:00, Wed 09:00–12:00 & 13:00–18:00 & 19:00–20:00, "
        "Thu–Fri 09:00–12:00 & 13:00–18:00, Sat–Sun 10:00–12:00 (UTC)"
    )


def test_daily_and_wrapping_ranges() -> None:
    assert BusinessHours.parse("daily 08:00-24:00", "UTC").describe() == "Mon–Sun 08:00–24:00 (UTC)"
    wrapped = BusinessHours.parse("sat-mon 10:00-12:00", "UTC")
    assert wrapped.describe() == "Mon 10:00–12:00, Sat–Sun 10:00–12:00 (UTC)"


@pytest.mark.parametrize(
    "dt, expected",
    [
        (berlin(11, 23, 9, 0), True),  # start inclusive
        (berlin(11, 23, 8, 59), False),
        (berlin(11, 23, 17, 59), True),
        (berlin(11, 23, 18, 0), False),  # end exclusive
        (berlin(11, 28, 10, 0), True),  # Saturday
        (berlin(11, 28, 14, 0), False),
        (berlin(11, 29, 12, 0), False),  # Sunday
        # Other timezones are converted: 08:30 UTC is 09:30 in Berlin (winter).
        (datetime(2026, 11, 23, 8, 30, tzinfo=timezone.utc), True),
        (datetime(2026, 11, 23, 7, 30, tzinfo=timezone.utc), False),
        # 12:00 in New York is 18:00 in Berlin: closed.
        (datetime(2026, 11, 23, 12, 0, tzinfo=NEW_YORK), False),
        (datetime(2026, 11, 23, 11, 59, tzinfo=NEW_YORK), True),
    ],
)
def test_is_open(hours: BusinessHours, dt: datetime, expected: bool) -> None:
    assert hours.is_open(dt) is expected


def test_is_open_in_summer_time(hours: BusinessHours) -> None:
    # In July Berlin is UTC+2: 07:30 UTC is 09:30 local.
    assert hours.is_open(datetime(2026, 7, 6, 7, 30, tzinfo=timezone.utc))
    assert not hours.is_open(datetime(2026, 7, 6, 16, 30, tzinfo=timezone.utc))


@pytest.mark.parametrize(
    "after, expected",
    [
        (berlin(11, 23, 11, 20), berlin(11, 23, 11, 20)),  # open now
        (berlin(11, 23, 7, 0), berlin(11, 23, 9, 0)),
        (berlin(11, 23, 18, 0), berlin(11, 24, 9, 0)),
        (berlin(11, 27, 19, 0), berlin(11, 28, 10, 0)),  # Friday evening -> Saturday
        (berlin(11, 28, 14, 0), berlin(11, 30, 9, 0)),  # Saturday after close -> Monday
        (berlin(11, 29, 12, 0), berlin(11, 30, 9, 0)),  # Sunday
        (datetime(2026, 11, 28, 2, 0, tzinfo=timezone.utc), berlin(11, 28, 10, 0)),
    ],
)
def test_next_opening(hours: BusinessHours, after: datetime, expected: datetime) -> None:
    result = hours.next_opening(after)
    assert result == expected
    assert result.tzinfo == BERLIN


def test_next_opening_across_dst_change(hours: BusinessHours) -> None:
    # Saturday 24 Oct 2026 after closing; Sunday the clocks go back.
    result = hours.next_opening(berlin(10, 24, 15, 0))
    assert result.isoformat() == "2026-10-26T09:00:00+01:00"


@pytest.mark.parametrize(
    "dt, expected",
    [
        (berlin(11, 23, 14, 0), None),
        (berlin(11, 23, 11, 35), None),  # exactly the minimum lead
        (berlin(11, 23, 11, 34), "past"),
        (berlin(11, 23, 10, 0), "past"),
        (berlin(11, 23, 19, 0), "closed"),
        (berlin(11, 29, 10, 0), "closed"),  # Sunday
        (berlin(12, 23, 11, 20), None),  # exactly 30 days ahead
        (berlin(12, 23, 11, 21), "too_far"),
        (datetime(2026, 11, 23, 13, 0, tzinfo=timezone.utc), None),  # 14:00 Berlin
        (datetime(2026, 11, 23, 13, 0, tzinfo=NEW_YORK), "closed"),  # 19:00 Berlin
    ],
)
def test_validate_callback_time(hours: BusinessHours, dt: datetime, expected: str | None) -> None:
    assert validate_callback_time(dt, NOW, hours) == expected


def test_validate_callback_time_custom_lead(hours: BusinessHours) -> None:
    dt = berlin(11, 23, 12, 0)
    assert validate_callback_time(dt, NOW, hours) is None
    assert validate_callback_time(dt, NOW, hours, min_lead=timedelta(hours=1)) == "past"


def test_naive_datetimes_are_rejected(hours: BusinessHours) -> None:
    with pytest.raises(ValueError):
        hours.is_open(datetime(2026, 11, 23, 10, 0))
    with pytest.raises(ValueError):
        validate_callback_time(berlin(11, 23, 14), datetime(2026, 11, 23, 10, 0), hours)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "Empty business hours spec"),
        (" , ", "Empty business hours spec"),
        ("mon-fri", "Cannot parse 'mon-fri'"),
        ("funday 09:00-10:00", "Unknown day 'funday'"),
        ("mon 9-17", "Cannot parse time window '9-17'"),
        ("mon 18:00-09:00", "ends before it starts"),
        ("mon 09:00-09:00", "ends before it starts"),
        ("mon 25:00-26:00", "Invalid time '25:00'"),
        ("mon 09:60-10:00", "Invalid time '09:60'"),
        ("mon 09:00-12:00, mon 11:00-13:00", "Overlapping windows on Mon"),
    ],
)
def test_bad_spec(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BusinessHours.parse(spec, "Europe/Berlin")


def test_bad_timezone() -> None:
    with pytest.raises(ValueError, match="Unknown timezone 'Mars/Olympus'"):
        BusinessHours.parse(SPEC, "Mars/Olympus")


def test_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUSINESS_HOURS", "mon-thu 08:00-16:00")
    monkeypatch.setenv("BUSINESS_TZ", "America/New_York")
    reset_settings_cache()
    try:
        assert from_settings().describe() == "Mon–Thu 08:00–16:00 (America/New_York)"
    finally:
        monkeypatch.undo()
        reset_settings_cache()
    assert from_settings().tz.key == "Europe/Berlin"
