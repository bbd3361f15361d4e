"""Natural-language date/time understanding for scheduling a support call-back.

The parser works in two steps:

1. :func:`_scan` finds *tokens* in the text with a set of regular expressions:
   a day ("tomorrow", "next friday", "24 Nov", ...), a clock time ("at 10",
   "3pm", "half past 2", "before 11", ...), a part of the day ("afternoon"),
   or a relative offset ("in 2 hours"). Scanning needs no clock, which is why
   :func:`find_when` can report a span without knowing "now".
2. Adjacent tokens (separated only by filler words such as "at", "on", "the")
   form a *cluster*; the most informative cluster is resolved against ``now``
   in the customer's timezone by :func:`parse_when`.

Conventions (call-backs happen in daytime):

* A bare hour 1-7 without am/pm means pm ("at 4" -> 16:00) unless the text says
  "morning" or the hour is zero-padded ("07:30").
* A day without a time resolves to 10:00 with ``exact=False``; parts of the day
  resolve to morning 10:00, lunchtime 12:00, afternoon 14:00, evening 18:00.
* A time without a day means today if still in the future, else tomorrow.
* A weekday means its next occurrence; today only counts when the resolved
  time today is still ahead. "next <weekday>" never means today.
* "after 3pm" -> 15:00; "before 11" -> 09:00 (the earliest business time),
  or one hour before the stated time when that is earlier than 09:00.
* Slash dates are day-first ("24/11"), except in ``America/*``/``US/*``/
  ``Canada/*`` timezones where they are month-first unless that is impossible.

German and French ("morgen um 10", "demain à 10h") are rewritten in English first
(:mod:`bot.timeparse_lang`); spans and matched text are the customer's own.
"""
from __future__ import annotations

import calendar
import difflib
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Callable, Iterable, Literal, Optional
from zoneinfo import ZoneInfo

from bot.timeparse_lang import to_english

__all__ = ["ParsedTime", "parse_when", "find_when", "humanize", "say_date", "zone_label"]


@dataclass(frozen=True)
class ParsedTime:
    """A resolved call-back time.

    Attributes:
        start: Timezone-aware start, in the customer's timezone.
        text: The substring of the input that expressed the time.
        exact: True when a clock time (or relative offset) was given, False
            when only a day and/or a part of the day was given.
    """

    start: datetime
    text: str
    exact: bool


# --------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------

_WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTH_NAMES = (
    "January", "February", "March", "April", "May", "June", "July",
    "August", "September", "October", "November", "December",
)

# Spelling variants -> weekday index (Monday == 0). Longest first in the regex.
_WEEKDAY_WORDS: dict[str, int] = {
    "monday": 0, "mon": 0, "mondy": 0, "monady": 0,
    "tuesday": 1, "tues": 1, "tue": 1, "teusday": 1, "tuseday": 1, "tuesdy": 1,
    "wednesday": 2, "wed": 2, "weds": 2, "wednsday": 2, "wensday": 2,
    "wendsday": 2, "wedensday": 2, "wednesdy": 2, "wendesday": 2,
    "thursday": 3, "thurs": 3, "thur": 3, "thu": 3, "thrusday": 3, "thursdy": 3,
    "friday": 4, "fri": 4, "firday": 4, "fridy": 4, "fryday": 4,
    "saturday": 5, "sat": 5, "satruday": 5, "saterday": 5, "saturdy": 5,
    "sunday": 6, "sun": 6, "sundy": 6, "sonday": 6,
}
# Abbreviations that are also ordinary words ("I sat", "the sun", "c'mon").
_AMBIGUOUS_WEEKDAY_WORDS = frozenset({"sat", "sun", "mon", "wed"})

_MONTH_WORDS: dict[str, int] = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3,
    "april": 4, "apr": 4, "may": 5, "june": 6, "jun": 6, "july": 7, "jul": 7,
    "august": 8, "aug": 8, "september": 9, "sept": 9, "sep": 9,
    "october": 10, "oct": 10, "november": 11, "nov": 11, "december": 12, "dec": 12,
}

_NUMBER_WORDS: dict[str, int] = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
}

_PART_WORDS: dict[str, str] = {
    "morning": "morning", "mornin": "morning", "morining": "morning", "moring": "morning",
    "afternoon": "afternoon", "afternon": "afternoon", "afernoon": "afternoon",
    "aftrnoon": "afternoon", "arvo": "afternoon",
    "evening": "evening", "evenin": "evening", "evning": "evening",
}
# Part of day -> (default minutes after midnight, hours 1-11 are pm?)
_PART_DEFAULTS: dict[str, tuple[int, bool]] = {
    "morning": (10 * 60, False),
    "lunch": (12 * 60, True),
    "after_lunch": (13 * 60, True),
    "afternoon": (14 * 60, True),
    "evening": (18 * 60, True),
}

_DEFAULT_DAY_MINUTES = 10 * 60  # a day without a time means 10:00
_EARLIEST_MINUTES = 9 * 60  # "before 11" means 09:00


def _alt(words: Iterable[str]) -> str:
    """Regex alternation of ``words``, longest first so prefixes do not win."""
    return "|".join(sorted((re.escape(w) for w in words), key=len, reverse=True))


_WD = _alt(_WEEKDAY_WORDS)
_MON = _alt(_MONTH_WORDS)
_NUMW = _alt(_NUMBER_WORDS)
_PARTS = _alt(_PART_WORDS)
_TOMORROW = (
    r"tomorrow|tomorow|tommorow|tommorrow|tomorrrow|tomorro|tomoro|tommorw|"
    r"tmrw|tmrrw|tmrow|tmr|2morrow|2moro|2mrw"
)
_TODAY = r"today|todya|tody|tdy|2day"
_TONIGHT = r"tonight|tonite|tonigt|2nite|2night"

_HOUR = rf"(?P<h>\d{{1,2}}|{_NUMW})"
_HOUR_DIGITS = r"(?P<h>\d{1,2})"
_MERIDIEM = r"(?P<mer>[ap])(?:\.m\.?|m)(?![a-z])"
_PREP = r"(?:\b(?P<prep>at|after|from|before|by|until|till|til|around|about|approx|approximately|circa)\s+|(?P<sym>[@~])\s*)"

_UNITS = (
    r"days?|weeks?|months?|years?|yrs?|hours?|hrs?|h|minutes?|mins?|seconds?|secs?|"
    r"items?|pieces?|pcs|units?|euros?|eur|dollars?|usd|pounds?|gbp|percent|times|"
    r"people|persons|orders?|stars?|packages?|parcels?|boxes|kg|g|cm|mm|m|x|point"
)
# A number must not be followed by these to count as a clock hour.
_DENY = rf"(?!\s*(?:\d|[.,/\-:]\d|%|€|\$|£|(?:st|nd|rd|th)\b|(?:{_UNITS})\b|(?:{_MON})\b))"

_FLAGS = re.IGNORECASE


# --------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------

DayKind = Literal["offset", "weekday", "date", "ordinal", "next_week"]


@dataclass(frozen=True)
class _Day:
    """A day reference, resolved later against "now"."""

    kind: DayKind
    offset: int = 0
    weekday: int = 0
    strict_next: bool = False
    day: int = 0
    month: int = 0
    year: Optional[int] = None
    month_first_ok: bool = False  # slash date that may be read month-first
    day_first_ok: bool = True


@dataclass(frozen=True)
class _Clock:
    """A clock time as written; ``minute`` may be negative ("quarter to 3")."""

    hour: int
    minute: int
    meridiem: Optional[str]  # "a" / "p" / None
    prep: str  # "at" / "after" / "before"
    twenty_four: bool  # written as 24h ("07:30", "15:00"): no pm guessing


@dataclass(frozen=True)
class _Token:
    start: int
    end: int
    day: Optional[_Day] = None
    clock: Optional[_Clock] = None
    part: Optional[str] = None
    delta: Optional[timedelta] = None
    weak: bool = False  # bare number: a time only right after a day ("fri 3")
    ambiguous: bool = False  # "sat"/"sun"/...: needs context to count


_Builder = Callable[["re.Match[str]"], Optional[_Token]]


def _prep_kind(m: "re.Match[str]") -> str:
    prep = (m.groupdict().get("prep") or m.groupdict().get("sym") or "at").lower()
    if prep in ("after", "from"):
        return "after"
    if prep in ("before", "by", "until", "till", "til"):
        return "before"
    return "at"


def _hour_value(raw: str) -> int:
    raw = raw.lower()
    return _NUMBER_WORDS[raw] if raw in _NUMBER_WORDS else int(raw)


def _clock_token(
    m: "re.Match[str]", hour_raw: str, minute: int, meridiem: Optional[str], *, weak: bool = False
) -> Optional[_Token]:
    hour = _hour_value(hour_raw)
    if meridiem is not None:
        if not 1 <= hour <= 12:
            return None
    elif hour > 23:
        return None
    if not -59 <= minute <= 59:
        return None
    twenty_four = meridiem is None and (hour == 0 or hour > 12 or (len(hour_raw) == 2 and hour_raw[0] == "0"))
    clock = _Clock(hour, minute, meridiem.lower() if meridiem else None, _prep_kind(m), twenty_four)
    return _Token(m.start(), m.end(), clock=clock, weak=weak)


def _b_meridiem(m: "re.Match[str]") -> Optional[_Token]:
    return _clock_token(m, m["h"], int(m["m"] or 0), m["mer"])


def _b_clock(m: "re.Match[str]") -> Optional[_Token]:
    return _clock_token(m, m["h"], int(m["m"] or 0), None)


def _b_weak(m: "re.Match[str]") -> Optional[_Token]:
    return _clock_token(m, m["h"], int(m["m"] or 0), None, weak=True)


def _b_noon(m: "re.Match[str]") -> Optional[_Token]:
    return _Token(m.start(), m.end(), clock=_Clock(12, 0, None, _prep_kind(m), True))


def _b_half_quarter(m: "re.Match[str]") -> Optional[_Token]:
    if m["half"]:  # British "half 2" == 2:30
        minute = 30
    else:
        amount = 30 if m["q"].lower() == "half" else 15
        minute = -amount if m["dir"].lower() in ("to", "before") else amount
    return _clock_token(m, m["h"], minute, m["mer"])


def _b_offset(days: int, part: Optional[str] = None) -> _Builder:
    def build(m: "re.Match[str]") -> Optional[_Token]:
        return _Token(m.start(), m.end(), day=_Day("offset", offset=days), part=part)

    return build


def _b_this_part(m: "re.Match[str]") -> Optional[_Token]:
    return _Token(m.start(), m.end(), day=_Day("offset", offset=0), part=_PART_WORDS[m["part"].lower()])


def _weekday_token(m: "re.Match[str]", weekday: int, word: str) -> _Token:
    mod = (m["mod"] or "").lower()
    written = m.group("wd")
    ambiguous = word in _AMBIGUOUS_WEEKDAY_WORDS and not mod and not written[0].isupper()
    return _Token(
        m.start(),
        m.end(),
        day=_Day("weekday", weekday=weekday, strict_next=mod.startswith("next")),
        ambiguous=ambiguous,
    )


def _b_weekday(m: "re.Match[str]") -> Optional[_Token]:
    word = m["wd"].lower()
    return _weekday_token(m, _WEEKDAY_WORDS[word], word)


_FUZZY_TARGETS = {name.lower(): i for i, name in enumerate(_WEEKDAY_NAMES)}


def _b_fuzzy(m: "re.Match[str]") -> Optional[_Token]:
    """Typo tolerance for full weekday names and "tomorrow" ("wendesday")."""
    word = m["wd"].lower()
    if word in _WEEKDAY_WORDS or word in _PART_WORDS:
        return None
    hit = difflib.get_close_matches(word, [*_FUZZY_TARGETS, "tomorrow"], n=1, cutoff=0.8)
    if not hit:
        return None
    if hit[0] == "tomorrow":
        if m["mod"]:
            return None
        return _Token(m.start(), m.end(), day=_Day("offset", offset=1))
    return _weekday_token(m, _FUZZY_TARGETS[hit[0]], hit[0])


def _b_next_week(m: "re.Match[str]") -> Optional[_Token]:
    return _Token(m.start(), m.end(), day=_Day("next_week"))


def _valid_day_month(day: int, month: int) -> bool:
    return 1 <= month <= 12 and 1 <= day <= calendar.monthrange(2024, month)[1]  # 2024: leap


def _year(raw: Optional[str]) -> Optional[int]:
    if not raw:
        return None
    value = int(raw)
    return value + 2000 if value < 100 else value


def _date_token(m: "re.Match[str]", day: int, month: int, year_raw: Optional[str]) -> Optional[_Token]:
    if not _valid_day_month(day, month):
        return None
    return _Token(m.start(), m.end(), day=_Day("date", day=day, month=month, year=_year(year_raw)))


def _b_iso(m: "re.Match[str]") -> Optional[_Token]:
    return _date_token(m, int(m["d"]), int(m["mo"]), m["y"])


def _b_dotted(m: "re.Match[str]") -> Optional[_Token]:
    return _date_token(m, int(m["d"]), int(m["mo"]), m["y"])


def _b_slash(m: "re.Match[str]") -> Optional[_Token]:
    a, b = int(m["a"]), int(m["b"])
    if (a, b) == (24, 7):
        return None
    day_first = _valid_day_month(a, b)
    month_first = _valid_day_month(b, a)
    if not (day_first or month_first):
        return None
    day = _Day(
        "date", day=a, month=b, year=_year(m["y"]),
        month_first_ok=month_first, day_first_ok=day_first,
    )
    return _Token(m.start(), m.end(), day=day)


def _b_day_month(m: "re.Match[str]") -> Optional[_Token]:
    return _date_token(m, int(m["d"]), _MONTH_WORDS[m["mon"].lower()], m["y"])


def _b_ordinal(m: "re.Match[str]") -> Optional[_Token]:
    day = int(m["d"])
    if not 1 <= day <= 31:
        return None
    return _Token(m.start(), m.end(), day=_Day("ordinal", day=day))


def _b_part(m: "re.Match[str]") -> Optional[_Token]:
    return _Token(m.start(), m.end(), part=_PART_WORDS[m["part"].lower()])


def _b_lunch(m: "re.Match[str]") -> Optional[_Token]:
    prep = (m["lp"] or "").lower()
    if not prep and not m["lt"]:
        return None  # a bare "lunch" is rarely a time ("my lunch box")
    return _Token(m.start(), m.end(), part="after_lunch" if prep == "after" else "lunch")


_AMOUNT_WORDS: dict[str, float] = {
    **{k: float(v) for k, v in _NUMBER_WORDS.items()},
    "a": 1, "an": 1, "fifteen": 15, "twenty": 20, "thirty": 30, "forty": 40,
    "fortyfive": 45, "fifty": 50, "sixty": 60, "ninety": 90, "couple": 2, "few": 3,
}


def _b_relative(m: "re.Match[str]") -> Optional[_Token]:
    if m["halfhour"]:
        return _Token(m.start(), m.end(), delta=timedelta(minutes=30))
    raw = re.sub(r"[\s\-]|of$", "", m["n"].lower()).replace(",", ".")
    raw = raw[1:] if raw.startswith("a") and raw[1:] in ("couple", "few") else raw
    amount = _AMOUNT_WORDS.get(raw)
    if amount is None:
        try:
            amount = float(raw)
        except ValueError:
            return None
    if m["and_half"]:
        amount += 0.5
    unit = m["unit"].lower()
    if unit.startswith(("d", "w")):
        days = int(amount * (7 if unit.startswith("w") else 1))
        return _Token(m.start(), m.end(), day=_Day("offset", offset=days))
    minutes = amount * (60 if unit.startswith("h") else 1)
    if minutes <= 0 or minutes > 60 * 24 * 7:
        return None
    return _Token(m.start(), m.end(), delta=timedelta(minutes=minutes))


_RULES: list[tuple["re.Pattern[str]", _Builder]] = [
    # ---- relative offsets
    (re.compile(
        r"\bin\s+(?:(?P<n>\d+(?:[.,]\d+)?|an?|one|two|three|four|five|six|seven|eight|nine|"
        r"ten|eleven|twelve|fifteen|twenty|thirty|forty[-\s]?five|forty|fifty|sixty|ninety|"
        r"a\s+couple(?:\s+of)?|couple(?:\s+of)?|a\s+few|few)\s*"
        r"(?P<unit>hours?|hrs?|h|minutes?|mins?|m|days?|weeks?)(?P<and_half>\s+and\s+a\s+half)?"
        r"|(?P<halfhour>half\s+an?\s+hour))\b", _FLAGS), _b_relative),
    # ---- days
    (re.compile(rf"\b(?:the\s+)?day\s+after\s+(?:{_TOMORROW})\b", _FLAGS), _b_offset(2)),
    (re.compile(rf"\b(?:the\s+)?day\s+before\s+yesterday\b", _FLAGS), _b_offset(-2)),
    (re.compile(r"\b(?:yesterday|yesterdy|yday)\b", _FLAGS), _b_offset(-1)),
    (re.compile(rf"\b(?:{_TOMORROW})\b", _FLAGS), _b_offset(1)),
    (re.compile(rf"\b(?:{_TODAY})\b", _FLAGS), _b_offset(0)),
    (re.compile(rf"\b(?:{_TONIGHT})\b", _FLAGS), _b_offset(0, "evening")),
    (re.compile(rf"\bthis\s+(?P<part>{_PARTS})\b", _FLAGS), _b_this_part),
    (re.compile(
        rf"(?:\b(?P<mod>next|this\s+coming|this|coming|on)\s+(?:the\s+)?)?(?<!['’])\b(?P<wd>{_WD})\b",
        _FLAGS), _b_weekday),
    (re.compile(
        r"(?:\b(?P<mod>next|this\s+coming|this|coming|on)\s+(?:the\s+)?)?(?<!['’])\b(?P<wd>[a-z]{5,})\b",
        _FLAGS), _b_fuzzy),
    (re.compile(r"\b(?:next|the\s+following)\s+week\b", _FLAGS), _b_next_week),
    (re.compile(r"(?<![\d.\-/])\b(?P<y>\d{4})-(?P<mo>\d{1,2})-(?P<d>\d{1,2})\b(?![\-/]\d)", _FLAGS), _b_iso),
    (re.compile(r"(?<![\d.])\b(?P<d>\d{1,2})\.(?P<mo>\d{1,2})\.(?:(?P<y>\d{4}|\d{2})\b)?(?!\d)", _FLAGS),
     _b_dotted),
    (re.compile(
        r"(?<![\d/.])\b(?P<a>\d{1,2})/(?P<b>\d{1,2})(?:/(?P<y>\d{4}|\d{2}))?(?![\d/])"
        r"(?!\s*(?:hours?|hrs?|h)\b)", _FLAGS), _b_slash),
    (re.compile(
        rf"\b(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\.?\s*(?:of\s+)?(?P<mon>{_MON})\b(?:,?\s*(?P<y>\d{{4}})\b)?",
        _FLAGS), _b_day_month),
    (re.compile(
        rf"\b(?P<mon>{_MON})\.?\s+(?:the\s+)?(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\b"
        r"(?!\s*(?:[:.]\d|[ap]\.?m\b|h\b|o['’]?\s?clock))(?:,?\s*(?P<y>\d{4})\b)?", _FLAGS), _b_day_month),
    (re.compile(r"\b(?:on\s+)?the\s+(?P<d>\d{1,2})(?:st|nd|rd|th)\b", _FLAGS), _b_ordinal),
    # ---- clock times
    (re.compile(rf"{_PREP}?(?<![\d:./])\b{_HOUR}(?:[:.](?P<m>\d{{2}}))?\s*{_MERIDIEM}", _FLAGS), _b_meridiem),
    (re.compile(
        rf"{_PREP}?(?<![\d:./])\b{_HOUR_DIGITS}:(?P<m>\d{{2}})(?![\d:])(?:\s*(?:h|hrs|uhr|o['’]?\s?clock)\b)?",
        _FLAGS), _b_clock),
    (re.compile(
        rf"{_PREP}{_HOUR_DIGITS}(?:[.h](?P<m>\d{{2}}))?(?:\s*(?:o['’]?\s?clock|-?ish|sharp)\b)?{_DENY}",
        _FLAGS), _b_clock),
    (re.compile(rf"{_PREP}?\b{_HOUR}\s*(?:o['’]?\s?clock\b|-?ish\b)(?P<m>)", _FLAGS), _b_clock),
    (re.compile(rf"{_PREP}?\b(?:12\s*)?(?:noon|midday|mid-day)\b", _FLAGS), _b_noon),
    (re.compile(
        rf"{_PREP}?\b(?:(?P<q>half|quarter)\s+(?P<dir>past|after|to|before)|(?P<half>half))\s+{_HOUR}"
        rf"(?:\s*{_MERIDIEM}|(?![a-z])){_DENY}", _FLAGS), _b_half_quarter),
    (re.compile(rf"(?<![\w:./,+\-])(?P<h>\d{{1,2}})(?:[:.h](?P<m>\d{{2}}))?(?!\w){_DENY}", _FLAGS), _b_weak),
    # ---- parts of the day
    (re.compile(
        rf"(?<!good\s)\b(?:(?:in|during)\s+the\s+|around\s+|about\s+)?(?P<part>{_PARTS})\b", _FLAGS), _b_part),
    (re.compile(r"\b(?:(?P<lp>at|around|over|after|during)\s+)?lunch(?P<lt>\s*time)?\b", _FLAGS), _b_lunch),
]

# Text allowed between two tokens of the same expression ("tomorrow, at 10").
_FILLER = re.compile(
    r"[\s,\-–]*(?:(?:at|on|in|the|around|about|say|ideally|preferably|maybe|perhaps|"
    r"sometime|some\s+time|anytime|any\s+time|ish|then|from|of|for)[\s,\-–]+)*",
    _FLAGS,
)

_ABBREVIATION = re.compile(r"(?<![a-z])[a-z]{2,4}$", _FLAGS)


def _scan(text: str) -> list[_Token]:
    """All non-overlapping tokens in ``text``, in text order."""
    found: list[_Token] = []
    for pattern, build in _RULES:
        for match in pattern.finditer(text):
            token = build(match)
            if token is not None and token.end > token.start:
                found.append(token)
    # Strong tokens beat weak ones; longer beats shorter; earlier beats later.
    found.sort(key=lambda t: (t.weak, -(t.end - t.start), t.start))
    chosen: list[_Token] = []
    for token in found:
        if all(token.end <= c.start or token.start >= c.end for c in chosen):
            chosen.append(token)
    return sorted(chosen, key=lambda t: t.start)


def _clusters(text: str, tokens: list[_Token]) -> list[list[_Token]]:
    """Group adjacent tokens into expressions, dropping weak/ambiguous strays."""
    clusters: list[list[_Token]] = []
    for token in tokens:
        current = clusters[-1] if clusters else None
        gap = text[current[-1].end:token.start] if current else ""
        if token.weak:
            # A bare number is a time only right after a day: "friday 3".
            if (
                current
                and current[-1].day is not None
                and not any(t.clock for t in current)
                and re.fullmatch(r"[\s,]*", gap)
            ):
                current.append(token)
            continue
        if current and _ABBREVIATION.search(text, 0, current[-1].end) and gap.startswith("."):
            gap = gap[1:]  # "tue. 3pm", "Nov. 24"
        if current and len(gap) <= 40 and _FILLER.fullmatch(gap):
            current.append(token)
        else:
            clusters.append([token])
    return [c for c in clusters if not _is_noise(text, c)]


def _is_noise(text: str, cluster: list[_Token]) -> bool:
    if len(cluster) != 1:
        return False
    token = cluster[0]
    if token.ambiguous:
        return True
    # "Morning, my parcel is missing" is a greeting, not a time.
    greeting = (
        token.part is not None
        and token.day is None
        and not text[: token.start].strip()
        and re.match(r"\s*[,!]\s*\S", text[token.end:]) is not None
    )
    return greeting


def _best_cluster(text: str) -> Optional[list[_Token]]:
    clusters = _clusters(text, _scan(text))
    if not clusters:
        return None
    # Most informative wins; ties go to the earliest (max keeps the first).
    return max(clusters, key=_cluster_score)


def _cluster_score(cluster: list[_Token]) -> int:
    return (
        4 * any(t.clock or t.delta for t in cluster)
        + 2 * any(t.day for t in cluster)
        + any(t.part for t in cluster)
    )


def find_when(text: str) -> tuple[int, int] | None:
    """Locate the date/time expression in ``text`` without resolving it.

    Args:
        text: Free text from the customer.

    Returns:
        The ``(start, end)`` character span of the expression, or None.
    """
    said = to_english(text)
    cluster = _best_cluster(said.text)
    if cluster is None:
        return None
    return said.span(cluster[0].start, cluster[-1].end)


# --------------------------------------------------------------------------
# Resolution
# --------------------------------------------------------------------------


def _at(day: date, minutes: int, tz: ZoneInfo) -> datetime:
    """``day`` at ``minutes`` past midnight in ``tz`` (DST gaps shift forward)."""
    naive = datetime.combine(day, time()) + timedelta(minutes=max(minutes, 0))
    return naive.replace(tzinfo=tz).astimezone(timezone.utc).astimezone(tz)


def _clock_minutes(clock: _Clock, part: Optional[str]) -> int:
    hour = clock.hour
    if clock.meridiem == "p" and hour < 12:
        hour += 12
    elif clock.meridiem == "a" and hour == 12:
        hour = 0
    elif clock.meridiem is None and not clock.twenty_four and hour < 12:
        if part is not None:
            if _PART_DEFAULTS[part][1]:
                hour += 12
        elif 1 <= hour <= 7:
            hour += 12
    minutes = hour * 60 + clock.minute
    if clock.prep == "before":
        minutes = _EARLIEST_MINUTES if minutes > _EARLIEST_MINUTES else minutes - 60
    return minutes


def _month_first(tz: ZoneInfo) -> bool:
    return str(tz.key).startswith(("America/", "US/", "Canada/"))


def _resolve_date(spec: _Day, today: date, tz: ZoneInfo) -> Optional[date]:
    day, month = spec.day, spec.month
    if spec.month_first_ok and (_month_first(tz) or not spec.day_first_ok):
        day, month = spec.month, spec.day
    if spec.year is not None:
        try:
            return date(spec.year, month, day)
        except ValueError:
            return None
    for year in range(today.year, today.year + 9):  # Feb 29 needs a leap year
        try:
            candidate = date(year, month, day)
        except ValueError:
            continue
        if candidate >= today:
            return candidate
    return None


def _resolve_ordinal(spec: _Day, today: date) -> Optional[date]:
    year, month = today.year, today.month
    for _ in range(13):
        if spec.day <= calendar.monthrange(year, month)[1]:
            candidate = date(year, month, spec.day)
            if candidate >= today:
                return candidate
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return None


_DAY_PRIORITY: dict[str, int] = {"date": 0, "ordinal": 1, "weekday": 2, "next_week": 3, "offset": 4}


def _resolve(cluster: list[_Token], now: datetime, tz: ZoneInfo) -> Optional[tuple[datetime, bool]]:
    now_local = now.astimezone(tz)
    today = now_local.date()

    delta = next((t.delta for t in cluster if t.delta is not None), None)
    if delta is not None:
        return (now.astimezone(timezone.utc) + delta).astimezone(tz), True

    days = sorted((t.day for t in cluster if t.day is not None), key=lambda d: _DAY_PRIORITY[d.kind])
    clock = next((t.clock for t in cluster if t.clock is not None), None)
    part = next((t.part for t in cluster if t.part is not None), None)

    if clock is not None:
        minutes, exact = _clock_minutes(clock, part), True
    elif part is not None:
        minutes, exact = _PART_DEFAULTS[part][0], False
    else:
        minutes, exact = _DEFAULT_DAY_MINUTES, False

    if not days:
        start = _at(today, minutes, tz)
        if start <= now_local:
            start = _at(today + timedelta(days=1), minutes, tz)
        return start, exact

    spec = days[0]
    target: Optional[date]
    if spec.kind == "date":
        target = _resolve_date(spec, today, tz)
    elif spec.kind == "ordinal":
        target = _resolve_ordinal(spec, today)
    elif spec.kind == "offset":
        target = today + timedelta(days=spec.offset)
    elif spec.kind == "next_week":
        target = today + timedelta(days=7 - today.weekday())
    else:  # weekday
        if any(d.kind == "next_week" for d in days):  # "friday next week"
            target = today + timedelta(days=7 - today.weekday() + spec.weekday)
        else:
            ahead = (spec.weekday - today.weekday()) % 7
            if ahead == 0 and (spec.strict_next or _at(today, minutes, tz) <= now_local):
                ahead = 7
            target = today + timedelta(days=ahead)
    if target is None:
        return None
    return _at(target, minutes, tz), exact


def parse_when(text: str, now: datetime, tz: ZoneInfo) -> ParsedTime | None:
    """Understand a call-back time such as "tomorrow after 3pm".

    Args:
        text: Free text from the customer.
        now: The current instant (timezone-aware).
        tz: The customer's timezone; the text is interpreted in it.

    Returns:
        The resolved time in ``tz`` with the matched span, or None when the
        text holds no date/time expression (or an impossible date).

    Raises:
        ValueError: If ``now`` is naive.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("parse_when needs a timezone-aware 'now'")
    said = to_english(text)
    cluster = _best_cluster(said.text)
    if cluster is None:
        return None
    resolved = _resolve(cluster, now, tz)
    if resolved is None:
        return None
    start, exact = resolved
    first, last = said.span(cluster[0].start, cluster[-1].end)
    return ParsedTime(start=start, text=text[first:last], exact=exact)


# Areas of IANA zone names ("Europe/London"): the zone is named after its city.
_ZONE_AREAS = frozenset({
    "Africa", "America", "Antarctica", "Arctic", "Asia", "Atlantic", "Australia", "Europe",
    "Indian", "Pacific",
})
_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/Universal", "Universal",
                        "Etc/Zulu", "Zulu", "GMT", "Etc/GMT", "Etc/GMT0", "Etc/Greenwich"})


def zone_label(tz: tzinfo, locale: Optional[str] = None) -> str:
    """A short name for the zone times are said in: "London time", "New York time", "UTC".

    Args:
        tz: A :class:`~zoneinfo.ZoneInfo` (or :data:`datetime.timezone.utc`).

    Returns:
        "<city> time" for ``Area/City`` zones (the last part, underscores as spaces),
        "UTC" for UTC, else "<zone name> time" (e.g. "US/Eastern time").
    """
    key = getattr(tz, "key", None) or str(tz)
    if key in _UTC_NAMES or tz is timezone.utc:
        return "UTC"
    area, _, rest = key.partition("/")
    place = rest.rsplit('/', 1)[-1].replace('_', ' ') if area in _ZONE_AREAS and rest else key
    language = _language(locale)
    if language == "de":
        return f"(Ortszeit {place})"
    if language == "fr":
        return f"(heure de {place})"
    return f"{place} time"


def humanize(dt: datetime, now: Optional[datetime] = None, zone: bool = False,
             locale: Optional[str] = None) -> str:
    """Format ``dt`` in its own timezone, e.g. "Tuesday 24 November at 10:00".

    Args:
        dt: The datetime to describe (timezone-aware; it is said in its own zone).
        now: The current instant. When given, a time on the same date as ``now`` in
            ``dt``'s zone is "today at 10:00", one on the next date "tomorrow at 10:00".
        zone: Whether to name the zone: "Tuesday 24 November at 10:00 London time"
            (see :func:`zone_label`).
        locale: The language (en, de, fr; None: the current turn's, bot/i18n.py):
            "morgen um 10:00 (Ortszeit London)", "demain à 10:00 (heure de Londres)".

    Returns:
        An English description that does not depend on the process locale; it needs no
        preposition in front ("back tomorrow at 08:00", "booked for Tuesday ...").

    Raises:
        ValueError: If ``zone`` or ``now`` is given and ``dt`` is naive.
    """
    if (zone or now is not None) and (dt.tzinfo is None or dt.utcoffset() is None):
        raise ValueError(f"humanize needs a timezone-aware datetime, got {dt!r}")
    language = _language(locale)
    names = _SAID[language]
    if language == "de":
        day = f"{names['days'][dt.weekday()]}, {dt.day}. {names['months'][dt.month - 1]}"
    else:
        day = f"{names['days'][dt.weekday()]} {dt.day} {names['months'][dt.month - 1]}"
    if now is not None:
        ahead = (dt.date() - now.astimezone(dt.tzinfo).date()).days
        day = {0: names["today"], 1: names["tomorrow"]}.get(ahead, day)
    said = f"{day} {names['at']} {dt:%H:%M}"
    return f"{said} {zone_label(dt.tzinfo, language)}" if zone else said  # type: ignore[arg-type]


#: How :func:`humanize` says days in each language ("Dienstag, 24. November um 10:00",
#: "mardi 24 novembre à 10:00").
_SAID: dict[str, dict] = {
    "en": {"days": _WEEKDAY_NAMES, "months": _MONTH_NAMES, "today": "today",
           "tomorrow": "tomorrow", "at": "at"},
    "de": {"days": ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag",
                    "Sonntag"),
           "months": ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August",
                      "September", "Oktober", "November", "Dezember"),
           "today": "heute", "tomorrow": "morgen", "at": "um"},
    "fr": {"days": ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"),
           "months": ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août",
                      "septembre", "octobre", "novembre", "décembre"),
           "today": "aujourd'hui", "tomorrow": "demain", "at": "à"},
}


def say_date(day: date, locale: Optional[str] = None) -> str:
    """A day without a time: "Tuesday 24 November", "Dienstag, 24. November", "mardi 24
    novembre" (``locale`` None: the current turn's language)."""
    names = _SAID[_language(locale)]
    weekday, month = names["days"][day.weekday()], names["months"][day.month - 1]
    if _language(locale) == "de":
        return f"{weekday}, {day.day}. {month}"
    return f"{weekday} {day.day} {month}"


def _language(locale: Optional[str]) -> str:
    from bot.i18n import current_locale, normalise_locale

    return current_locale() if locale is None else normalise_locale(locale)
