"""Opening hours of the support team and call-back time validation.

A spec looks like ``"mon-fri 09:00-18:00, sat 10:00-14:00"``: comma- or
semicolon-separated entries of a day or day range followed by one or more
``HH:MM-HH:MM`` windows. Entries for the same day add up, so a lunch break is
``"mon-fri 09:00-12:00 13:00-18:00"``. ``24:00`` may end a window; windows do
not cross midnight. ``daily`` is short for ``mon-sun``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Literal, Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.settings import get_settings

__all__ = [
    "BusinessHours",
    "CallbackProblem",
    "MAX_CALLBACK_AHEAD",
    "from_settings",
    "validate_callback_time",
]

CallbackProblem = Literal["past", "too_far", "closed"]

MAX_CALLBACK_AHEAD = timedelta(days=30)

_DAY_ABBR = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
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


@dataclass(frozen=True)
class BusinessHours:
    """Weekly opening windows in one timezone.

    Attributes:
        tz: The timezone the windows are expressed in.
        windows: Seven tuples (Monday first) of sorted, non-overlapping
            ``(start, end)`` minute ranges; an empty tuple means closed.
    """

    tz: ZoneInfo
    windows: tuple[tuple[Window, ...], ...]

    @classmethod
    def parse(cls, spec: str, tz: str) -> BusinessHours:
        """Parse a spec such as ``"mon-fri 09:00-18:00, sat 10:00-14:00"``.

        Args:
            spec: The opening hours (see the module docstring for the grammar).
            tz: IANA timezone name, e.g. ``"Europe/Berlin"``.

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
        return cls(tz=zone, windows=tuple(result))

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

    def is_open(self, dt: datetime) -> bool:
        """Whether the team is available at ``dt``.

        Args:
            dt: A timezone-aware datetime in any timezone.

        Returns:
            True if ``dt`` falls inside an opening window (start inclusive,
            end exclusive).

        Raises:
            ValueError: If ``dt`` is naive.
        """
        local = self._local(dt, "dt")
        minute = local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60
        return any(start <= minute < end for start, end in self.windows[local.weekday()])

    def next_opening(self, after: datetime) -> datetime:
        """The earliest instant at or after ``after`` when the team is available.

        Args:
            after: A timezone-aware datetime in any timezone.

        Returns:
            ``after`` itself (in the business timezone) if open then, else the
            start of the next opening window, in the business timezone.

        Raises:
            ValueError: If ``after`` is naive or no day has opening hours.
        """
        local = self._local(after, "after")
        for offset in range(8):
            day = local.date() + timedelta(days=offset)
            for start, end in self.windows[day.weekday()]:
                if local < _at(day, end, self.tz):
                    return max(local, _at(day, start, self.tz))
        raise ValueError("Business hours contain no opening window")

    def describe(self) -> str:
        """Human-readable hours, e.g. "Mon–Fri 09:00–18:00, Sat 10:00–14:00 (Europe/Berlin)"."""
        groups: list[tuple[int, int, tuple[Window, ...]]] = []
        for weekday, windows in enumerate(self.windows):
            if groups and groups[-1][2] == windows and groups[-1][1] == weekday - 1:
                groups[-1] = (groups[-1][0], weekday, windows)
            else:
                groups.append((weekday, weekday, windows))
        parts: list[str] = []
        for first, last, windows in groups:
            if not windows:
                continue
            days = _DAY_ABBR[first] if first == last else f"{_DAY_ABBR[first]}–{_DAY_ABBR[last]}"
            hours = " & ".join(f"{_fmt(s)}–{_fmt(e)}" for s, e in windows)
            parts.append(f"{days} {hours}")
        return f"{', '.join(parts) or 'Closed'} ({self.tz.key})"


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
        30 days ahead) or ``"closed"`` (outside business hours).

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
    """Business hours from ``BUSINESS_HOURS`` / ``BUSINESS_TZ`` (see :mod:`bot.settings`)."""
    settings = get_settings()
    return BusinessHours.parse(settings.business_hours, settings.business_tz)
