"""Tests for bot.business_hours."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator
from zoneinfo import ZoneInfo

import pytest

from bot.business_hours import (
    BusinessHours,
    Closures,
    CustomerClock,
    from_settings,
    validate_callback_time,
)
from bot.settings import Settings, get_settings, reset_settings_cache

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
    assert hours.describe() == "Mon–Fri 09:00–18:00, Sat 10:00–14:00 Berlin time"
    assert hours.describe(zone=False) == "Mon–Fri 09:00–18:00, Sat 10:00–14:00"


def test_describe_split_days_and_breaks() -> None:
    spec = "Mon - Fri 09:00 - 12:00 13:00-18:00; wed 19:00-20:00; sat-sun 10:00-12:00"
    hours = BusinessHours.parse(spec, "UTC")
    assert hours.describe() == (
        "Mon–Tue 09:00–12:00 & 13:00–18:00, Wed 09:00–12:00 & 13:00–18:00 & 19:00–20:00, "
        "Thu–Fri 09:00–12:00 & 13:00–18:00, Sat–Sun 10:00–12:00 UTC"
    )


def test_daily_and_wrapping_ranges() -> None:
    assert BusinessHours.parse("daily 08:00-24:00", "UTC").describe() == "Mon–Sun 08:00–24:00 UTC"
    wrapped = BusinessHours.parse("sat-mon 10:00-12:00", "UTC")
    assert wrapped.describe() == "Mon 10:00–12:00, Sat–Sun 10:00–12:00 UTC"


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
        assert from_settings().describe() == "Mon–Thu 08:00–16:00 New York time"
    finally:
        monkeypatch.undo()
        reset_settings_cache()
    assert from_settings().tz.key == "Europe/Berlin"


# ------------------------------------------------------------ public holidays

BERLIN_HOLIDAYS = Closures(country="DE", subdiv="BE")
LONDON = ZoneInfo("Europe/London")
PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture
def holiday_hours() -> BusinessHours:
    return BusinessHours.parse(SPEC, "Europe/Berlin", BERLIN_HOLIDAYS)


def test_holidays_package_works_on_the_installed_python_dateutil() -> None:
    """holidays 0.105 is installed with --no-deps on Rasa's python-dateutil 2.8 pin
    (requirements-nodeps.lock): its calendar, Easter included, must still be right."""
    import dateutil
    import holidays

    assert holidays.__version__ == "0.105"
    assert dateutil.__version__.startswith("2.8.")
    berlin = holidays.country_holidays("DE", subdiv="BE", years=[2026, 2027], language="en_US")
    assert {day.isoformat(): name for day, name in berlin.items() if day.month in (3, 4, 5, 12)} == {
        "2026-03-08": "Women's Day",
        "2026-04-03": "Good Friday",
        "2026-04-06": "Easter Monday",
        "2026-05-01": "Labor Day",
        "2026-05-14": "Ascension Day",
        "2026-05-25": "Pentecost Monday",
        "2026-12-25": "Christmas Day",
        "2026-12-26": "Second Day of Christmas",
        "2027-03-08": "Women's Day",
        "2027-03-26": "Good Friday",
        "2027-03-29": "Easter Monday",
        "2027-05-01": "Labor Day",
        "2027-05-06": "Ascension Day",
        "2027-05-17": "Pentecost Monday",
        "2027-12-25": "Christmas Day",
        "2027-12-26": "Second Day of Christmas",
    }
    # Christmas Eve is no public holiday in Berlin; Women's Day is Berlin's own.
    assert date(2026, 12, 24) not in berlin
    assert date(2026, 3, 8) not in holidays.country_holidays("DE", years=2026)


@pytest.mark.parametrize(
    "day, expected",
    [
        (date(2026, 12, 24), None),  # not a public holiday in Berlin
        (date(2026, 12, 25), "Christmas Day"),
        (date(2026, 12, 26), "Second Day of Christmas"),
        (date(2027, 3, 29), "Easter Monday"),
        (date(2027, 3, 8), "Women's Day"),
        (date(2026, 11, 23), None),
    ],
)
def test_closures_name_the_public_holidays(day: date, expected: str | None) -> None:
    assert BERLIN_HOLIDAYS.name(day) == expected


def test_closed_dates_add_to_the_holidays_and_may_be_unnamed() -> None:
    closures = Closures(
        country="DE", subdiv="BE",
        dates=((date(2026, 12, 24), "Christmas Eve"), (date(2026, 12, 31), ""),
               (date(2026, 12, 25), "")),
    )
    assert closures.name(date(2026, 12, 24)) == "Christmas Eve"
    assert closures.name(date(2026, 12, 31)) == ""
    assert closures.name(date(2026, 12, 25)) == "Christmas Day"  # the holiday's name
    assert closures.name(date(2026, 12, 30)) is None
    assert Closures(dates=((date(2026, 12, 31), ""),)).name(date(2026, 12, 25)) is None


def test_nationwide_holidays_without_a_subdivision() -> None:
    nationwide = Closures(country="DE")
    assert nationwide.name(date(2026, 12, 25)) == "Christmas Day"
    assert nationwide.name(date(2026, 3, 8)) is None  # Berlin only


@pytest.mark.parametrize(
    "dt, expected",
    [
        (berlin(12, 24, 10, 0), True),  # Christmas Eve, a Thursday
        (berlin(12, 25, 10, 0), False),  # Christmas Day, a Friday
        (berlin(12, 26, 11, 0), False),  # a Saturday, the second day of Christmas
        (berlin(12, 28, 9, 0), True),
        (datetime(2027, 3, 29, 10, 0, tzinfo=BERLIN), False),  # Easter Monday
        # The holiday is the team's date: 23:30 UTC on the 24th is Christmas Day in Berlin.
        (datetime(2026, 12, 24, 23, 30, tzinfo=timezone.utc), False),
    ],
)
def test_public_holidays_are_closed(holiday_hours: BusinessHours, dt: datetime, expected: bool) -> None:
    assert holiday_hours.is_open(dt) is expected


def test_closure_names_the_team_date_of_any_instant(holiday_hours: BusinessHours) -> None:
    assert holiday_hours.closure(datetime(2026, 12, 24, 23, 30, tzinfo=timezone.utc)) == "Christmas Day"
    assert holiday_hours.closure(datetime(2026, 12, 24, 22, 30, tzinfo=timezone.utc)) is None
    assert holiday_hours.closure(berlin(12, 26, 11)) == "Second Day of Christmas"
    with pytest.raises(ValueError):
        holiday_hours.closure(datetime(2026, 12, 25, 10, 0))


@pytest.mark.parametrize(
    "after, expected",
    [
        # Christmas Eve evening: the 25th and 26th are holidays, the 27th a Sunday.
        (berlin(12, 24, 19, 0), berlin(12, 28, 9, 0)),
        (berlin(12, 25, 10, 0), berlin(12, 28, 9, 0)),
        # Easter: Good Friday closed, Saturday open, Easter Monday closed -> Tuesday.
        (datetime(2027, 3, 25, 19, 0, tzinfo=BERLIN), datetime(2027, 3, 27, 10, 0, tzinfo=BERLIN)),
        (datetime(2027, 3, 27, 15, 0, tzinfo=BERLIN), datetime(2027, 3, 30, 9, 0, tzinfo=BERLIN)),
        # Labour Day is a Friday in 2026: Thursday evening -> Saturday.
        (datetime(2026, 4, 30, 18, 0, tzinfo=BERLIN), datetime(2026, 5, 2, 10, 0, tzinfo=BERLIN)),
        # An ordinary Friday evening -> Saturday.
        (berlin(11, 27, 19, 0), berlin(11, 28, 10, 0)),
    ],
)
def test_next_opening_skips_public_holidays(
    holiday_hours: BusinessHours, after: datetime, expected: datetime
) -> None:
    assert holiday_hours.next_opening(after) == expected


def test_friday_evening_to_monday_and_a_holiday_monday_to_tuesday() -> None:
    weekdays = BusinessHours.parse("mon-fri 09:00-18:00", "Europe/Berlin", BERLIN_HOLIDAYS)
    assert weekdays.next_opening(berlin(11, 27, 19, 0)) == berlin(11, 30, 9, 0)
    # Easter Monday 2026 is 6 April.
    assert weekdays.next_opening(datetime(2026, 4, 2, 18, 30, tzinfo=BERLIN)) == datetime(
        2026, 4, 7, 9, 0, tzinfo=BERLIN
    )


def test_next_opening_beyond_a_long_closure() -> None:
    days = tuple((date(2026, 7, 1) + timedelta(days=n), "") for n in range(40))
    hours = BusinessHours.parse("mon-fri 09:00-18:00", "Europe/Berlin", Closures(dates=days))
    assert hours.next_opening(datetime(2026, 6, 30, 19, 0, tzinfo=BERLIN)) == datetime(
        2026, 8, 10, 9, 0, tzinfo=BERLIN
    )


def test_no_opening_within_a_year_is_an_error() -> None:
    days = tuple((date(2026, 1, 1) + timedelta(days=n), "") for n in range(800))
    hours = BusinessHours.parse("mon-fri 09:00-18:00", "Europe/Berlin", Closures(dates=days))
    with pytest.raises(ValueError, match="No opening within 400 days"):
        hours.next_opening(berlin(11, 23, 10))


def test_a_call_back_on_a_public_holiday_is_closed(holiday_hours: BusinessHours) -> None:
    now = berlin(12, 22, 10, 0)
    assert validate_callback_time(berlin(12, 24, 10, 0), now, holiday_hours) is None
    assert validate_callback_time(berlin(12, 25, 10, 0), now, holiday_hours) == "closed"
    assert validate_callback_time(berlin(12, 26, 11, 0), now, holiday_hours) == "closed"


def test_the_holiday_calendar_is_made_once_per_year_and_not_at_import() -> None:
    import subprocess
    import sys

    from bot import business_hours

    code = (
        "import sys, bot.business_hours, actions.handoff, actions.callbacks\n"
        "assert 'holidays' not in sys.modules, 'holidays imported at import time'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=str(Path(__file__).resolve().parents[2]))
    assert done.returncode == 0, done.stderr

    business_hours._public_holidays.cache_clear()
    closures = Closures(country="DE", subdiv="BE")
    for day in range(1, 32):
        closures.name(date(2026, 12, day))
    closures.name(date(2027, 1, 1))
    info = business_hours._public_holidays.cache_info()
    assert (info.misses, info.hits) == (2, 30)


# ------------------------------------------------------ hours in another zone


def test_describe_in_the_customers_zone(hours: BusinessHours) -> None:
    at = berlin(11, 23, 11)
    assert hours.describe(LONDON, at=at) == "Mon–Fri 08:00–17:00, Sat 09:00–13:00 London time"
    assert hours.describe(PARIS, at=at) == "Mon–Fri 09:00–18:00, Sat 10:00–14:00 Paris time"
    assert hours.describe(NEW_YORK, at=at) == "Mon–Fri 03:00–12:00, Sat 04:00–08:00 New York time"
    assert hours.describe(LONDON, at=at, zone=False) == "Mon–Fri 08:00–17:00, Sat 09:00–13:00"
    # Past midnight there: the window keeps its start day.
    assert hours.describe(ZoneInfo("Asia/Tokyo"), at=at) == (
        "Mon–Fri 17:00–02:00, Sat 18:00–22:00 Tokyo time"
    )


def test_describe_in_another_zone_uses_the_offsets_of_the_week(hours: BusinessHours) -> None:
    # New York moves its clocks on 8 March 2026, Berlin on 29 March: in between, 09:00 in
    # Berlin is 04:00 in New York.
    assert hours.describe(NEW_YORK, at=berlin(3, 16, 10)) == (
        "Mon–Fri 04:00–13:00, Sat 05:00–09:00 New York time"
    )
    # The seven days from Monday 23 March all come before Berlin's change.
    assert hours.describe(NEW_YORK, at=berlin(3, 23, 10)) == (
        "Mon–Fri 04:00–13:00, Sat 05:00–09:00 New York time"
    )
    # From Friday 27 March: Friday and Saturday before the change, Monday to Thursday after.
    assert hours.describe(NEW_YORK, at=berlin(3, 27, 10)) == (
        "Mon–Thu 03:00–12:00, Fri 04:00–13:00, Sat 05:00–09:00 New York time"
    )
    # The same zone needs no conversion.
    assert hours.describe(BERLIN, at=berlin(3, 27, 10)) == hours.describe()


# ---------------------------------------------------- how a customer hears it

SUNDAY_NOON = datetime(2026, 11, 29, 11, 0, tzinfo=timezone.utc)  # Berlin 12:00, London 11:00


@pytest.mark.parametrize(
    "tz, known, opening, described",
    [
        (BERLIN, True, "tomorrow at 09:00", "Mon–Fri 09:00–18:00, Sat 10:00–14:00"),
        (LONDON, True, "tomorrow at 08:00 London time",
         "Mon–Fri 08:00–17:00, Sat 09:00–13:00 London time"),
        (PARIS, True, "tomorrow at 09:00 Paris time",
         "Mon–Fri 09:00–18:00, Sat 10:00–14:00 Paris time"),
        # A default zone (none in the profile) is named: it may not be the customer's.
        (BERLIN, False, "tomorrow at 09:00 Berlin time",
         "Mon–Fri 09:00–18:00, Sat 10:00–14:00 Berlin time"),
    ],
)
def test_customer_clock_says_times_in_the_customers_zone(
    hours: BusinessHours, tz: ZoneInfo, known: bool, opening: str, described: str
) -> None:
    clock = CustomerClock.of(hours, tz, SUNDAY_NOON, zone_known=known)

    assert clock.when(hours.next_opening(SUNDAY_NOON)) == opening
    assert clock.opening_hours() == described
    assert clock.labelled is (tz is not BERLIN or not known)


def test_today_and_tomorrow_are_the_customers_dates(hours: BusinessHours) -> None:
    # 23:30 UTC on Sunday: already Monday 00:30 in Berlin, still Sunday 23:30 in London.
    now = datetime(2026, 11, 29, 23, 30, tzinfo=timezone.utc)
    opening = hours.next_opening(now)

    assert CustomerClock.of(hours, BERLIN, now).when(opening) == "today at 09:00"
    assert CustomerClock.of(hours, LONDON, now).when(opening) == "tomorrow at 08:00 London time"
    later = CustomerClock.of(hours, LONDON, now).when(berlin(12, 2, 15))
    assert later == "Wednesday 2 December at 14:00 London time"


def test_customer_clock_needs_aware_datetimes(hours: BusinessHours) -> None:
    with pytest.raises(ValueError):
        CustomerClock.of(hours, LONDON, datetime(2026, 11, 29, 12, 0))
    with pytest.raises(ValueError):
        CustomerClock.of(hours, LONDON, SUNDAY_NOON).when(datetime(2026, 11, 30, 9, 0))


# ----------------------------------------------------------------- settings


def settings_with(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name in ("SUPPORT_HOLIDAYS_COUNTRY", "SUPPORT_HOLIDAYS_SUBDIV", "SUPPORT_CLOSED_DATES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_settings_cache()
    return get_settings()


@pytest.fixture
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield
    monkeypatch.undo()
    reset_settings_cache()


@pytest.mark.parametrize(
    "env, country, subdiv",
    [
        ({}, "DE", "BE"),
        ({"SUPPORT_HOLIDAYS_COUNTRY": "", "SUPPORT_HOLIDAYS_SUBDIV": ""}, "DE", "BE"),
        ({"SUPPORT_HOLIDAYS_SUBDIV": "none"}, "DE", None),
        ({"SUPPORT_HOLIDAYS_SUBDIV": "by"}, "DE", "BY"),
        ({"SUPPORT_HOLIDAYS_SUBDIV": "Berlin"}, "DE", "BE"),
        ({"SUPPORT_HOLIDAYS_COUNTRY": "gb"}, "GB", None),  # BE is only DE's default
        ({"SUPPORT_HOLIDAYS_COUNTRY": "GB", "SUPPORT_HOLIDAYS_SUBDIV": "england"}, "GB", "ENG"),
        ({"SUPPORT_HOLIDAYS_COUNTRY": "off", "SUPPORT_HOLIDAYS_SUBDIV": "BE"}, None, None),
        ({"SUPPORT_HOLIDAYS_COUNTRY": "none"}, None, None),
    ],
)
def test_holiday_settings(
    monkeypatch: pytest.MonkeyPatch, fresh_settings: None, env: dict, country: str | None,
    subdiv: str | None,
) -> None:
    settings = settings_with(monkeypatch, **env)
    assert (settings.holidays_country, settings.holidays_subdiv) == (country, subdiv)


@pytest.mark.parametrize(
    "env, message",
    [
        ({"SUPPORT_HOLIDAYS_COUNTRY": "XX"},
         "SUPPORT_HOLIDAYS_COUNTRY must be a country code the holidays package knows "
         "(e.g. DE, AT, GB, FR) or 'none', got 'XX'."),
        ({"SUPPORT_HOLIDAYS_COUNTRY": "Germany"},
         "SUPPORT_HOLIDAYS_COUNTRY must be a country code the holidays package knows "
         "(e.g. DE, AT, GB, FR) or 'none', got 'Germany'."),
        ({"SUPPORT_HOLIDAYS_SUBDIV": "ZZ"},
         "SUPPORT_HOLIDAYS_SUBDIV: DE has no subdivision 'ZZ'; use one of BB, BE, BW, BY, HB, "
         "HE, HH, MV, NI, NW, RP, SH, SL, SN, ST, TH, Augsburg, or 'none' for nationwide "
         "holidays only."),
        ({"SUPPORT_HOLIDAYS_COUNTRY": "FR", "SUPPORT_HOLIDAYS_SUBDIV": "BE"},
         "SUPPORT_HOLIDAYS_SUBDIV: FR has no subdivision 'BE'"),
        ({"SUPPORT_CLOSED_DATES": "2026-12-24, 24.12.2026"},
         "SUPPORT_CLOSED_DATES: '24.12.2026' is not a date YYYY-MM-DD, optionally followed by "
         "a name (e.g. '2026-12-24 Christmas Eve'); separate dates with commas."),
        ({"SUPPORT_CLOSED_DATES": "2026-02-30"},
         "SUPPORT_CLOSED_DATES: '2026-02-30' is not a date YYYY-MM-DD"),
    ],
)
def test_bad_holiday_settings_are_named(
    monkeypatch: pytest.MonkeyPatch, fresh_settings: None, env: dict, message: str
) -> None:
    with pytest.raises(ValueError) as error:
        settings_with(monkeypatch, **env)
    assert str(error.value).startswith(message)


def test_closed_dates_setting_and_from_settings(
    monkeypatch: pytest.MonkeyPatch, fresh_settings: None
) -> None:
    settings = settings_with(
        monkeypatch,
        SUPPORT_CLOSED_DATES=" 2026-12-31 , 2026-12-24 Christmas Eve  ,2026-12-24 Team day",
    )
    assert settings.closed_dates == ((date(2026, 12, 24), "Team day"), (date(2026, 12, 31), ""))

    hours = from_settings()
    assert hours.closures == Closures("DE", "BE", settings.closed_dates)
    assert hours.closure(berlin(12, 24, 10)) == "Team day"
    assert hours.next_opening(berlin(12, 30, 19)) == datetime(2027, 1, 2, 10, 0, tzinfo=BERLIN)


def test_from_settings_without_holidays(monkeypatch: pytest.MonkeyPatch, fresh_settings: None) -> None:
    settings_with(monkeypatch, SUPPORT_HOLIDAYS_COUNTRY="none")
    assert from_settings().is_open(berlin(12, 25, 10))
