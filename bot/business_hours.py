"""Opening hours of the support team and call-back time validation.

A spec looks like ``"mon-fri 09:00-18:00, sat 10:00-14:00"``: comma- or
semicolon-separated entries of a day or day range followed by one or more
``HH:MM-HH:MM`` windows. Entries for the same day add up, so a lunch break is
``"mon-fri 09:00-12:00 13:00-18:00"``. ``24:00`` may end a window; windows do
not cross midnight. ``daily`` is short for ``mon-sun``.

Public holidays (the ``holidays`` package, for ``SUPPORT_HOLIDAYS_COUNTRY`` and
``SUPPORT_HOLIDAYS_SUBDIV``) and the extra ``SUPPORT_CLOSED_DATES`` are closed all day,
whatever the weekly windows say (:class:`Closures`; dates in the team's timezone). The
holiday calendar is computed on first use, once per year, never at import time.

Every time the bot says is in the customer's zone (:class:`CustomerClock`), named
("08:00 London time") when that is not the team's zone or the customer's zone is unknown.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from types import MappingProxyType
from typing import Literal, Mapping, Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.settings import get_settings
from bot.timeparse import humanize, zone_label

__all__ = [
    "BusinessHours",
    "CallbackProblem",
    "Closures",
    "CustomerClock",
    "MAX_CALLBACK_AHEAD",
    "from_settings",
    "validate_callback_time",
]

CallbackProblem = Literal["past", "too_far", "closed"]

MAX_CALLBACK_AHEAD = timedelta(days=30)

#: How far :meth:`BusinessHours.next_opening` looks ahead (closed dates may add up).
_MAX_LOOKAHEAD_DAYS = 400

_DAY_ABBR = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
#: Weekdays as :meth:`BusinessHours.describe` says them in German and French.
_DAY_ABBRS = {"de": ("Mo", "Di", "Mi", "Do", "Fr", "Sa", "So"),
              "fr": ("lun.", "mar.", "mer.", "jeu.", "ven.", "sam.", "dim.")}
_CLOSED = {"en": "Closed", "de": "Geschlossen", "fr": "Fermé"}
_DAY_WORDS: dict[str, int] = {
    **{abbr.lower(): i for i, abbr in enumerate(_DAY_ABBR)},
    **{
        name: i
        for i, name in enumerate(
            ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
        )
    },
    "tues": 1, "thur": 3, "thurs": 3,
}
_DASH = r"\s*[-–—]\s*"
_ENTRY = re.compile(rf"(?P<days>[a-z]+(?:{_DASH}[a-z]+)?)\s+(?P<windows>.+)", re.IGNORECASE)
_WINDOW = re.compile(rf"(?P<s>\d{{1,2}}:\d{{2}}){_DASH}(?P<e>\d{{1,2}}:\d{{2}})")

Window = tuple[int, int]  # minutes after midnight, [start, end)


def _minutes(raw: str, spec: str) -> int:
    hours, minutes = (int(x) for x in raw.split(":"))
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise ValueError(f"Invalid time {raw!r} in business hours spec {spec!r}")
    return hours * 60 + minutes


def _day(word: str, spec: str) -> int:
    try:
        return _DAY_WORDS[word.lower()]
    except KeyError:
        raise ValueError(
            f"Unknown day {word!r} in business hours spec {spec!r} (use mon, tue, ... sun)"
        ) from None


def _fmt(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _at(day: date, minutes: int, tz: ZoneInfo) -> datetime:
    """``day`` at ``minutes`` past midnight in ``tz``; DST gaps shift forward."""
    naive = datetime.combine(day, time()) + timedelta(minutes=minutes)
    return naive.replace(tzinfo=tz).astimezone(timezone.utc).astimezone(tz)


def _require_aware(dt: datetime, name: str) -> None:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {dt!r}")


def _english(languages: tuple[str, ...]) -> Optional[str]:
    """The English variant of a holiday calendar's languages, else None (its own)."""
    for language in ("en_US", "en_GB", *languages):
        if language in languages and language.startswith("en"):
            return language
    return None


@functools.lru_cache(maxsize=64)
def _public_holidays(country: str, subdiv: Optional[str], year: int) -> Mapping[date, str]:
    """The public holidays of one year, with their English names (cached per year)."""
    import holidays  # on first use only: the import takes a while

    languages = tuple(holidays.country_holidays(country, subdiv=subdiv, years=[]).supported_languages)
    calendar = holidays.country_holidays(
        country, subdiv=subdiv, years=year, language=_english(languages)
    )
    return MappingProxyType(
        {day: " and ".join(calendar.get_list(day)) for day in sorted(calendar) if day.year == year}
    )


@dataclass(frozen=True)
class Closures:
    """Whole days the team is closed: public holidays and extra closed dates.

    Attributes:
        country: ISO code of the holiday calendar (``holidays`` package); None: none.
        subdiv: Its subdivision (e.g. ``"BE"``, Berlin); None: nationwide holidays only.
        dates: Extra closed days with a name to say (``""``: unnamed).
    """

    country: Optional[str] = None
    subdiv: Optional[str] = None
    dates: tuple[tuple[date, str], ...] = ()

    def name(self, day: date) -> Optional[str]:
        """None when ``day`` is not a closed day, else its name ("" when it has none).

        A name given in ``dates`` wins over the public holiday's.
        """
        extra = next((name for closed, name in self.dates if closed == day), None)
        if extra:
            return extra
        if self.country:
            holiday = _public_holidays(self.country, self.subdiv, day.year).get(day)
            if holiday is not None:
                return holiday
        return extra  # "" for an unnamed closed date, else None


@dataclass(frozen=True)
class BusinessHours:
    """Weekly opening windows in one timezone, and the days closed all day.

    Attributes:
        tz: The timezone the windows (and closed dates) are expressed in.
        windows: Seven tuples (Monday first) of sorted, non-overlapping
            ``(start, end)`` minute ranges; an empty tuple means closed.
        closures: Public holidays and extra closed dates.
    """

    tz: ZoneInfo
    windows: tuple[tuple[Window, ...], ...]
    closures: Closures = field(default_factory=Closures)

    @classmethod
    def parse(cls, spec: str, tz: str, closures: Optional[Closures] = None) -> BusinessHours:
        """Parse a spec such as ``"mon-fri 09:00-18:00, sat 10:00-14:00"``.

        Args:
            spec: The opening hours (see the module docstring for the grammar).
            tz: IANA timezone name, e.g. ``"Europe/Berlin"``.
            closures: Holidays and closed dates (default: none).

        Returns:
            The parsed opening hours.

        Raises:
            ValueError: On an unknown timezone, an unparsable entry, an invalid
                time, an empty window, overlapping windows, or no windows at all.
        """
        try:
            zone = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"Unknown timezone {tz!r} for business hours") from None
        days: list[list[Window]] = [[] for _ in range(7)]
        entries = [e.strip() for e in re.split(r"[,;]", spec) if e.strip()]
        if not entries:
            raise ValueError(f"Empty business hours spec {spec!r}")
        for entry in entries:
            match = _ENTRY.fullmatch(entry)
            if match is None:
                raise ValueError(
                    f"Cannot parse {entry!r} in business hours spec {spec!r}; "
                    "expected e.g. 'mon-fri 09:00-18:00'"
                )
            weekdays = cls._parse_days(match["days"], spec)
            for window in cls._parse_windows(match["windows"], entry, spec):
                for weekday in weekdays:
                    days[weekday].append(window)
        result: list[tuple[Window, ...]] = []
        for weekday, windows in enumerate(days):
            windows.sort()
            for (_, end), (start, _) in zip(windows, windows[1:]):
                if start < end:
                    raise ValueError(
                        f"Overlapping windows on {_DAY_ABBR[weekday]} in business hours spec {spec!r}"
                    )
            result.append(tuple(windows))
        return cls(tz=zone, windows=tuple(result), closures=closures or Closures())

    @staticmethod
    def _parse_days(raw: str, spec: str) -> list[int]:
        if raw.lower() == "daily":
            return list(range(7))
        parts = re.split(_DASH, raw)
        first = _day(parts[0], spec)
        last = _day(parts[-1], spec)
        count = (last - first) % 7 + 1  # ranges may wrap: "sat-mon"
        return [(first + i) % 7 for i in range(count)]

    @staticmethod
    def _parse_windows(raw: str, entry: str, spec: str) -> list[Window]:
        windows: list[Window] = []
        for chunk in re.sub(_DASH, "-", raw).split():
            match = _WINDOW.fullmatch(chunk)
            if match is None:
                raise ValueError(
                    f"Cannot parse time window {chunk!r} in {entry!r} of business hours spec "
                    f"{spec!r}; expected HH:MM-HH:MM"
                )
            start, end = _minutes(match["s"], spec), _minutes(match["e"], spec)
            if end <= start:
                raise ValueError(
                    f"Window {chunk!r} in business hours spec {spec!r} ends before it starts"
                )
            windows.append((start, end))
        return windows

    def _local(self, dt: datetime, name: str) -> datetime:
        _require_aware(dt, name)
        return dt.astimezone(self.tz)

    def closure(self, dt: datetime) -> Optional[str]:
        """Whether ``dt`` falls on a closed day (public holiday, closed date) of the team.

        Args:
            dt: A timezone-aware datetime in any timezone (its date in the team's zone counts).

        Returns:
            None on an ordinary day, else the day's name ("Christmas Day"; "" when unnamed).

        Raises:
            ValueError: If ``dt`` is naive.
        """
        return self.closures.name(self._local(dt, "dt").date())

    def is_open(self, dt: datetime) -> bool:
        """Whether the team is available at ``dt``.

        Args:
            dt: A timezone-aware datetime in any timezone.

        Returns:
            True if ``dt`` falls inside an opening window (start inclusive,
            end exclusive) and not on a closed day.

        Raises:
            ValueError: If ``dt`` is naive.
        """
        local = self._local(dt, "dt")
        minute = local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60
        if not any(start <= minute < end for start, end in self.windows[local.weekday()]):
            return False
        return self.closures.name(local.date()) is None

    def next_opening(self, after: datetime) -> datetime:
        """The earliest instant at or after ``after`` when the team is available.

        Args:
            after: A timezone-aware datetime in any timezone.

        Returns:
            ``after`` itself (in the business timezone) if open then, else the
            start of the next opening window on a day that is not closed (public
            holiday, closed date), in the business timezone.

        Raises:
            ValueError: If ``after`` is naive or there is no opening within a year.
        """
        local = self._local(after, "after")
        if not any(self.windows):
            raise ValueError("Business hours contain no opening window")
        for offset in range(_MAX_LOOKAHEAD_DAYS):
            day = local.date() + timedelta(days=offset)
            if not self.windows[day.weekday()] or self.closures.name(day) is not None:
                continue
            for start, end in self.windows[day.weekday()]:
                if local < _at(day, end, self.tz):
                    return max(local, _at(day, start, self.tz))
        raise ValueError(f"No opening within {_MAX_LOOKAHEAD_DAYS} days of {local.isoformat()}")

    def _windows_in(self, tz: ZoneInfo, at: datetime) -> tuple[tuple[Window, ...], ...]:
        """The weekly windows as clock times in ``tz``, for the seven days from ``at``.

        A window that ends on the next day in ``tz`` keeps its start day and an end
        past 24:00 (``(17 * 60, 26 * 60)`` is 17:00–02:00).
        """
        if tz.key == self.tz.key:
            return self.windows
        first = self._local(at, "at").date()
        days: list[list[Window]] = [[] for _ in range(7)]
        for offset in range(7):
            day = first + timedelta(days=offset)
            for start, end in self.windows[day.weekday()]:
                begins = _at(day, start, self.tz).astimezone(tz)
                ends = _at(day, end, self.tz).astimezone(tz)
                into = (ends.date() - begins.date()).days * 24 * 60 + ends.hour * 60 + ends.minute
                days[begins.weekday()].append((begins.hour * 60 + begins.minute, into))
        return tuple(tuple(sorted(windows)) for windows in days)

    def describe(
        self, tz: Optional[ZoneInfo] = None, at: Optional[datetime] = None, zone: bool = True
    ) -> str:
        """Human-readable hours, e.g. "Mon–Fri 09:00–18:00, Sat 10:00–14:00 Berlin time".

        Args:
            tz: The zone to say the hours in (default: the team's). Converted with the
                UTC offsets of the seven days from ``at``, so "Mon–Fri 08:00–17:00 London
                time" for Berlin's 09:00–18:00; a window running past midnight there
                reads "17:00–02:00".
            at: When the hours are said (default: now); only used to convert.
            zone: Whether to name the zone (:func:`bot.timeparse.zone_label`).

        Returns:
            The weekly hours, days with the same windows grouped ("Closed" when none).
            Closed days (holidays) are not part of the weekly description.
        """
        tz = tz or self.tz
        windows = self._windows_in(tz, at or datetime.now(timezone.utc))
        groups: list[tuple[int, int, tuple[Window, ...]]] = []
        for weekday, day_windows in enumerate(windows):
            if groups and groups[-1][2] == day_windows and groups[-1][1] == weekday - 1:
                groups[-1] = (groups[-1][0], weekday, day_windows)
            else:
                groups.append((weekday, weekday, day_windows))
        parts: list[str] = []
        from bot.i18n import current_locale

        language = current_locale()
        abbr = _DAY_ABBRS.get(language, _DAY_ABBR)
        for first, last, day_windows in groups:
            if not day_windows:
                continue
            days = abbr[first] if first == last else f"{abbr[first]}–{abbr[last]}"
            hours = " & ".join(f"{_fmt(s)}–{_fmt(e if e <= 24 * 60 else e - 24 * 60)}"
                               for s, e in day_windows)
            parts.append(f"{days} {hours}")
        described = ", ".join(parts) or _CLOSED[language]
        return f"{described} {zone_label(tz, language)}" if zone else described


@dataclass(frozen=True)
class CustomerClock:
    """How the bot says times to one customer.

    Every time is said in the customer's zone; "today"/"tomorrow" are the customer's
    dates. The zone is named on every time and on the hours ("08:00 London time") when it
    is not the team's zone, or when the customer's zone is not known (a default), so a
    sentence never mixes zones or leaves one unsaid.

    Attributes:
        hours: The team's opening hours.
        tz: The customer's zone.
        now: The current instant.
        labelled: Whether times name their zone.
    """

    hours: BusinessHours
    tz: ZoneInfo
    now: datetime
    labelled: bool

    @classmethod
    def of(
        cls, hours: BusinessHours, tz: ZoneInfo, now: datetime, zone_known: bool = True
    ) -> CustomerClock:
        """The clock for a customer in ``tz``; ``zone_known=False`` when ``tz`` is a default."""
        _require_aware(now, "now")
        return cls(hours=hours, tz=tz, now=now, labelled=not zone_known or tz.key != hours.tz.key)

    def when(self, dt: datetime) -> str:
        """``dt`` for this customer: "tomorrow at 08:00 London time", "Monday 30 November at 09:00"."""
        _require_aware(dt, "dt")
        return humanize(dt.astimezone(self.tz), now=self.now, zone=self.labelled)

    def opening_hours(self) -> str:
        """The weekly hours for this customer: "Mon–Fri 08:00–17:00, Sat 09:00–13:00 London time"."""
        return self.hours.describe(self.tz, at=self.now, zone=self.labelled)


def validate_callback_time(
    dt: datetime,
    now: datetime,
    hours: BusinessHours,
    min_lead: timedelta = timedelta(minutes=15),
) -> Optional[CallbackProblem]:
    """Check a requested call-back time.

    Args:
        dt: The requested time (timezone-aware, any timezone).
        now: The current instant (timezone-aware).
        hours: The team's opening hours.
        min_lead: The minimum notice the team needs.

    Returns:
        None if the time is acceptable, else the first problem found:
        ``"past"`` (earlier than ``now + min_lead``), ``"too_far"`` (more than
        30 days ahead) or ``"closed"`` (outside business hours, or on a public
        holiday or closed date: :meth:`BusinessHours.closure` names it).

    Raises:
        ValueError: If ``dt`` or ``now`` is naive.
    """
    _require_aware(dt, "dt")
    _require_aware(now, "now")
    if dt < now + min_lead:
        return "past"
    if dt > now + MAX_CALLBACK_AHEAD:
        return "too_far"
    if not hours.is_open(dt):
        return "closed"
    return None


def from_settings() -> BusinessHours:
    """Business hours from ``BUSINESS_HOURS`` / ``BUSINESS_TZ`` with the holidays of
    ``SUPPORT_HOLIDAYS_COUNTRY`` / ``SUPPORT_HOLIDAYS_SUBDIV`` and ``SUPPORT_CLOSED_DATES``
    (see :mod:`bot.settings`)."""
    settings = get_settings()
    closures = Closures(
        country=settings.holidays_country,
        subdiv=settings.holidays_subdiv,
        dates=settings.closed_dates,
    )
    return BusinessHours.parse(settings.business_hours, settings.business_tz, closures)
