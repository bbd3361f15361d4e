"""Tests for bot.timeparse."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.timeparse import ParsedTime, find_when, humanize, parse_when, zone_label

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
# Monday 23 November 2026, 11:20 in Berlin.
NOW = datetime(2026, 11, 23, 11, 20, tzinfo=BERLIN)


def at(month: int, day: int, hour: int, minute: int = 0, year: int = 2026, tz: ZoneInfo = BERLIN) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=tz)


@pytest.mark.parametrize(
    "text, expected, exact",
    [
        # days
        ("today", at(11, 23, 10), False),
        ("tonight", at(11, 23, 18), False),
        ("tomorrow", at(11, 24, 10), False),
        ("tomorow", at(11, 24, 10), False),
        ("tmrw", at(11, 24, 10), False),
        ("day after tomorrow", at(11, 25, 10), False),
        ("the day after tomorrow", at(11, 25, 10), False),
        ("friday", at(11, 27, 10), False),
        ("Fri", at(11, 27, 10), False),
        ("next friday", at(11, 27, 10), False),
        ("this friday", at(11, 27, 10), False),
        ("wendesday", at(11, 25, 10), False),
        ("thrusday morning", at(11, 26, 10), False),
        ("monday", at(11, 30, 10), False),  # 10:00 today already passed
        ("monday at 3pm", at(11, 23, 15), True),  # later today counts
        ("next monday at 3pm", at(11, 30, 15), True),  # "next" never means today
        ("next week", at(11, 30, 10), False),
        ("friday next week", at(12, 4, 10), False),
        ("in 2 days", at(11, 25, 10), False),
        # explicit dates
        ("24 Nov", at(11, 24, 10), False),
        ("24th of November", at(11, 24, 10), False),
        ("November 24", at(11, 24, 10), False),
        ("Nov. 24th", at(11, 24, 10), False),
        ("24.11.", at(11, 24, 10), False),
        ("24.11.2026", at(11, 24, 10), False),
        ("24/11", at(11, 24, 10), False),
        ("2026-11-24", at(11, 24, 10), False),
        ("3/4", at(4, 3, 10, year=2027), False),  # day-first in Europe
        ("24 Oct", at(10, 24, 10, year=2027), False),  # already past -> next year
        ("the 30th", at(11, 30, 10), False),
        ("on the 2nd", at(12, 2, 10), False),
        ("29 Feb", at(2, 29, 10, year=2028), False),  # next leap year
        # clock times without a day: today if still ahead, else tomorrow
        ("at 10", at(11, 24, 10), True),
        ("10am", at(11, 24, 10), True),
        ("10 a.m.", at(11, 24, 10), True),
        ("10:30", at(11, 24, 10, 30), True),
        ("3pm", at(11, 23, 15), True),
        ("3 pm", at(11, 23, 15), True),
        ("3 p.m.", at(11, 23, 15), True),
        ("15:00", at(11, 23, 15), True),
        ("noon", at(11, 23, 12), True),
        ("midday", at(11, 23, 12), True),
        ("half past 2", at(11, 23, 14, 30), True),
        ("quarter to 3", at(11, 23, 14, 45), True),
        ("quarter past 10", at(11, 24, 10, 15), True),
        ("3 o'clock", at(11, 23, 15), True),
        ("around 4ish", at(11, 23, 16), True),
        ("after 3pm", at(11, 23, 15), True),
        ("after 3", at(11, 23, 15), True),
        ("before 11", at(11, 24, 9), True),  # 09:00 today has passed
        ("before 8", at(11, 24, 7), True),  # earlier than 09:00 was stated
        ("at 1", at(11, 23, 13), True),  # bare 1-7 means pm
        ("at 7", at(11, 23, 19), True),
        ("at 8", at(11, 24, 8), True),
        ("at 12", at(11, 23, 12), True),
        ("07:30", at(11, 24, 7, 30), True),  # zero-padded: 24h clock
        ("12pm", at(11, 23, 12), True),
        ("at 10 pm", at(11, 23, 22), True),
        ("at 10.30.", at(11, 24, 10, 30), True),
        # parts of the day
        ("morning", at(11, 24, 10), False),
        ("afternoon", at(11, 23, 14), False),
        ("evening", at(11, 23, 18), False),
        ("lunchtime", at(11, 23, 12), False),
        ("after lunch", at(11, 23, 13), False),
        ("this morning", at(11, 23, 10), False),  # explicit today, even if past
        ("at 7 in the morning", at(11, 24, 7), True),
        ("tonight at 8", at(11, 23, 20), True),
        ("tomorrow evening at 7", at(11, 24, 19), True),
        # relative
        ("in 2 hours", at(11, 23, 13, 20), True),
        ("in 30 minutes", at(11, 23, 11, 50), True),
        ("in an hour", at(11, 23, 12, 20), True),
        ("in half an hour", at(11, 23, 11, 50), True),
        ("in 1.5 hours", at(11, 23, 12, 50), True),
        ("in a couple of hours", at(11, 23, 13, 20), True),
        # combinations
        ("tomorrow after 3pm", at(11, 24, 15), True),
        ("friday afternoon", at(11, 27, 14), False),
        ("Mon 9:30", at(11, 30, 9, 30), True),
        ("next tuesday at 4", at(11, 24, 16), True),
        ("at 4 on friday", at(11, 27, 16), True),
        ("friday 3", at(11, 27, 15), True),
        ("tue. 3pm", at(11, 24, 15), True),
        ("today at 9", at(11, 23, 9), True),  # explicit day kept even if past
        ("noon tomorrow", at(11, 24, 12), True),
        ("10 a.m. tomorrow", at(11, 24, 10), True),
        ("Tuesday, 24th of November 2026 at 10:30", at(11, 24, 10, 30), True),
        ("Fri, 27.11. at 14:00", at(11, 27, 14), True),
    ],
)
def test_parse_when_berlin(text: str, expected: datetime, exact: bool) -> None:
    parsed = parse_when(text, NOW, BERLIN)
    assert parsed is not None
    assert parsed.start == expected
    assert parsed.start.utcoffset() == expected.utcoffset()
    assert parsed.start.tzinfo == BERLIN
    assert parsed.exact is exact


@pytest.mark.parametrize(
    "text, span_text",
    [
        ("call me back tomorrow at 10 please", "tomorrow at 10"),
        ("could you call me tomorrow after 3pm?", "tomorrow after 3pm"),
        ("Friday afternoon would be great", "Friday afternoon"),
        ("call back at 2:30 pm tomorrow please", "at 2:30 pm tomorrow"),
        ("good morning, call me at 3", "at 3"),
        ("tomorrow at 10 or friday at 3", "tomorrow at 10"),
    ],
)
def test_matched_text_and_span(text: str, span_text: str) -> None:
    parsed = parse_when(text, NOW, BERLIN)
    assert parsed is not None
    assert parsed.text == span_text
    span = find_when(text)
    assert span is not None
    assert text[span[0]:span[1]] == span_text


def test_full_result() -> None:
    assert parse_when("call me back tomorrow at 10 please", NOW, BERLIN) == ParsedTime(
        start=at(11, 24, 10), text="tomorrow at 10", exact=True
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "my order 12345 is late",
        "I paid 10 euros",
        "2 items are missing",
        "after 3 days it still had not arrived",
        "we're open 24/7",
        "Morning, my parcel is missing",
        "I sat down and the sun came out",
        "c'mon, really?",
        "I may come back",
        "call me at 0151 2345 6789",
        "at 25",
        "31 Feb",
        "32/12",
    ],
)
def test_nothing_time_like(text: str) -> None:
    assert parse_when(text, NOW, BERLIN) is None
    assert find_when(text) is None


def test_dst_change_late_october() -> None:
    # Saturday 24 Oct 2026 11:00 CEST; clocks go back on Sunday 25 Oct.
    now = datetime(2026, 10, 24, 11, 0, tzinfo=BERLIN)
    assert now.utcoffset().total_seconds() == 7200
    tomorrow = parse_when("tomorrow at 10", now, BERLIN)
    assert tomorrow is not None
    assert tomorrow.start == datetime(2026, 10, 25, 10, 0, tzinfo=BERLIN)
    assert tomorrow.start.utcoffset().total_seconds() == 3600
    # 24 elapsed hours across the change land at 10:00 wall-clock time.
    later = parse_when("in 24 hours", now, BERLIN)
    assert later is not None
    assert later.start.isoformat() == "2026-10-25T10:00:00+01:00"


def test_dst_gap_shifts_forward() -> None:
    now = datetime(2026, 3, 28, 12, 0, tzinfo=BERLIN)
    parsed = parse_when("tomorrow at 2:30am", now, BERLIN)
    assert parsed is not None
    assert parsed.start.isoformat() == "2026-03-29T03:30:00+02:00"


def test_new_york_interprets_in_customer_tz() -> None:
    # 03:00 UTC on 24 Nov is still Monday 23 Nov 22:00 in New York.
    now = datetime(2026, 11, 24, 3, 0, tzinfo=timezone.utc)
    parsed = parse_when("tomorrow at 10", now, NEW_YORK)
    assert parsed is not None
    assert parsed.start == at(11, 24, 10, tz=NEW_YORK)
    assert parsed.start.isoformat() == "2026-11-24T10:00:00-05:00"
    today = parse_when("today", now, NEW_YORK)
    assert today is not None and today.start == at(11, 23, 10, tz=NEW_YORK)
    soon = parse_when("in 2 hours", now, NEW_YORK)
    assert soon is not None and soon.start.isoformat() == "2026-11-24T00:00:00-05:00"


def test_new_york_slash_dates_are_month_first() -> None:
    now = datetime(2026, 11, 23, 11, 20, tzinfo=NEW_YORK)
    march = parse_when("3/4", now, NEW_YORK)
    assert march is not None and march.start == at(3, 4, 10, year=2027, tz=NEW_YORK)
    # 13 cannot be a month, so this is read day-first.
    april = parse_when("13/4", now, NEW_YORK)
    assert april is not None and april.start.isoformat() == "2027-04-13T10:00:00-04:00"


def test_new_york_dst_end() -> None:
    now = datetime(2026, 10, 31, 12, 0, tzinfo=NEW_YORK)
    parsed = parse_when("tomorrow at 10", now, NEW_YORK)
    assert parsed is not None
    assert parsed.start.isoformat() == "2026-11-01T10:00:00-05:00"


def test_naive_now_is_rejected() -> None:
    with pytest.raises(ValueError):
        parse_when("tomorrow", datetime(2026, 11, 23, 11, 20), BERLIN)


def test_humanize() -> None:
    assert humanize(at(11, 24, 10)) == "Tuesday 24 November at 10:00"
    assert humanize(at(3, 4, 9, 5, year=2027, tz=NEW_YORK)) == "Thursday 4 March at 09:05"
    # Uses the datetime's own timezone.
    utc = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)
    assert humanize(utc) == "Tuesday 24 November at 09:00"
    assert humanize(utc.astimezone(BERLIN)) == "Tuesday 24 November at 10:00"


LONDON = ZoneInfo("Europe/London")
PARIS = ZoneInfo("Europe/Paris")


@pytest.mark.parametrize(
    "tz, expected",
    [
        (BERLIN, "Berlin time"),
        (LONDON, "London time"),
        (PARIS, "Paris time"),
        (NEW_YORK, "New York time"),
        (ZoneInfo("America/Argentina/Buenos_Aires"), "Buenos Aires time"),
        (ZoneInfo("UTC"), "UTC"),
        (ZoneInfo("Etc/UTC"), "UTC"),
        (timezone.utc, "UTC"),
        (ZoneInfo("US/Eastern"), "US/Eastern time"),
        (ZoneInfo("Etc/GMT+5"), "Etc/GMT+5 time"),
    ],
)
def test_zone_label(tz: Any, expected: str) -> None:
    assert zone_label(tz) == expected


def test_humanize_names_the_zone_on_request() -> None:
    assert humanize(at(11, 30, 8, tz=LONDON), zone=True) == "Monday 30 November at 08:00 London time"
    assert humanize(at(11, 30, 9, tz=PARIS), zone=True) == "Monday 30 November at 09:00 Paris time"
    assert humanize(at(11, 30, 9), zone=True) == "Monday 30 November at 09:00 Berlin time"
    assert humanize(datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc), zone=True) == (
        "Monday 30 November at 08:00 UTC"
    )


@pytest.mark.parametrize(
    "when, expected",
    [
        (at(11, 23, 16), "today at 16:00"),
        (at(11, 24, 10), "tomorrow at 10:00"),
        (at(11, 24, 0, 5), "tomorrow at 00:05"),
        (at(11, 25, 10), "Wednesday 25 November at 10:00"),
        (at(11, 22, 10), "Sunday 22 November at 10:00"),  # yesterday: the date
        (at(11, 23, 16, year=2027), "Tuesday 23 November at 16:00"),  # not "today"
    ],
)
def test_humanize_says_today_and_tomorrow(when: datetime, expected: str) -> None:
    assert humanize(when, now=NOW) == expected


def test_today_and_tomorrow_are_dates_in_the_datetimes_zone() -> None:
    # 23:30 UTC on Sunday 29 November: Monday 00:30 in Berlin, Sunday 23:30 in London.
    now = datetime(2026, 11, 29, 23, 30, tzinfo=timezone.utc)
    monday_9_berlin = at(11, 30, 9)

    assert humanize(monday_9_berlin, now=now) == "today at 09:00"
    assert humanize(monday_9_berlin.astimezone(LONDON), now=now) == "tomorrow at 08:00"
    assert humanize(monday_9_berlin.astimezone(LONDON), now=now, zone=True) == (
        "tomorrow at 08:00 London time"
    )


def test_humanize_with_now_or_zone_needs_an_aware_datetime() -> None:
    assert humanize(datetime(2026, 11, 24, 10, 0)) == "Tuesday 24 November at 10:00"
    with pytest.raises(ValueError):
        humanize(datetime(2026, 11, 24, 10, 0), now=NOW)
    with pytest.raises(ValueError):
        humanize(datetime(2026, 11, 24, 10, 0), zone=True)
