"""German and French time expressions, said in English for :mod:`bot.timeparse`.

The call-back parser understands English ("tomorrow at 10", "friday afternoon"). Customers
in Berlin and Paris write "morgen um 10", "Freitagnachmittag", "demain à 10h", "lundi
prochain après-midi": :func:`to_english` rewrites the common German and French forms
(days, weekdays, parts of the day, "um/à/vers/gegen 10 Uhr/10h30", "in 2 Stunden/dans
2 heures", "24. November/24 novembre") into the English the parser knows, and keeps a
map back to the customer's text so spans and matched text stay theirs.

Only unambiguous forms are rewritten (a month name only after a day number, "a" only
before "10h"), so English text comes out unchanged.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Dict, List, Tuple

__all__ = ["Translated", "to_english"]

_WEEKDAYS: Dict[str, str] = {
    "montag": "monday", "dienstag": "tuesday", "mittwoch": "wednesday",
    "donnerstag": "thursday", "freitag": "friday", "samstag": "saturday",
    "sonnabend": "saturday", "sonntag": "sunday",
    "lundi": "monday", "mardi": "tuesday", "mercredi": "wednesday", "jeudi": "thursday",
    "vendredi": "friday", "samedi": "saturday", "dimanche": "sunday",
}
_MONTHS: Dict[str, str] = {
    "januar": "january", "jänner": "january", "februar": "february", "märz": "march",
    "maerz": "march", "april": "april", "mai": "may", "juni": "june", "juli": "july",
    "august": "august", "september": "september", "oktober": "october",
    "november": "november", "dezember": "december",
    "janvier": "january", "février": "february", "fevrier": "february", "mars": "march",
    "avril": "april", "juin": "june", "juillet": "july", "août": "august",
    "aout": "august", "septembre": "september", "octobre": "october",
    "novembre": "november", "décembre": "december", "decembre": "december",
}
_PARTS: Dict[str, str] = {
    "vormittag": "morning", "vormittags": "morning", "morgens": "morning",
    "nachmittag": "afternoon", "nachmittags": "afternoon", "abend": "evening",
    "abends": "evening", "mittag": "lunch", "mittags": "lunch", "mittagszeit": "lunch",
    "matin": "morning", "matinée": "morning", "matinee": "morning",
    "après-midi": "afternoon", "apres-midi": "afternoon", "après midi": "afternoon",
    "apres midi": "afternoon", "aprem": "afternoon", "aprèm": "afternoon",
    "soir": "evening", "soirée": "evening", "soiree": "evening",
}
_COMPOUND_PARTS: Dict[str, str] = {  # "Freitagnachmittag", "Montagmorgen"
    "vormittag": "morning", "nachmittag": "afternoon", "morgen": "morning",
    "abend": "evening", "mittag": "lunch",
}
_PREPOSITIONS: Dict[str, str] = {
    "um": "at", "gegen": "around", "ab": "after", "vor": "before", "bis": "by",
    "à": "at", "a": "at", "vers": "around", "après": "after", "apres": "after",
    "avant": "before", "dès": "from",
}
_UNITS: Dict[str, str] = {
    "stunde": "hour", "stunden": "hours", "minute": "minute", "minuten": "minutes",
    "tag": "day", "tagen": "days", "tage": "days",
    "heure": "hour", "heures": "hours", "minutes": "minutes", "jour": "day", "jours": "days",
}
_ONE = {"einer", "eine", "einem", "une", "un"}


def _alt(words) -> str:
    return "|".join(sorted((re.escape(w) for w in words), key=len, reverse=True))


_WD = _alt(_WEEKDAYS)
_NOT_A_QUANTITY = (r"(?!\s*(?:tagen?|tage|wochen?|monaten?|monate|jahren?|jahre|jours?|"
                   r"semaines?|mois|ans|années?|euros?|eur|€|%|stück|articles?|minuten|"
                   r"minutes?|stunden?|heures?\s+de)\b)")
_CLOCK = r"(?P<h>\d{1,2})(?:\s*(?:[:.]|h)\s*(?P<m>\d{2})(?:\s*uhr\b)?|\s*(?P<u>uhr\b|h\b|heures?\b))?"


def _clock(m: "re.Match[str]") -> str:
    hour, minutes = m.group("h"), m.group("m")
    if minutes:
        return f"{hour}:{minutes}"
    return f"{hour}:00" if m.group("u") else hour


def _prep_time(m: "re.Match[str]") -> str:
    word = m.group("p").lower()
    if word == "a" and not (m.group("m") or m.group("u")):
        return m.group(0)  # "a 10" is no time in French ("il a 10 ans")
    return f"{_PREPOSITIONS[word]} {_clock(m)}"


def _relative(m: "re.Match[str]") -> str:
    count = m.group("n").lower()
    number = "1" if count in _ONE else count
    unit = _UNITS[m.group("u").lower()]
    if number == "1":
        unit = unit.rstrip("s")
    elif not unit.endswith("s"):
        unit += "s"
    return f"in {number} {unit}"


def _weekday(m: "re.Match[str]") -> str:
    return _WEEKDAYS[m.group("wd").lower()]


_RULES: List[Tuple["re.Pattern[str]", Callable[["re.Match[str]"], str]]] = [
    (r"\bguten\s+morgen\b", lambda m: "good morning"),
    (r"\b(?:ü|ue|u)bermorgen\b|\bapr[eè]s[\s-]demain\b", lambda m: "day after tomorrow"),
    (r"\bmorgen\s*(?:früh|frueh)\b", lambda m: "tomorrow morning"),
    (r"\bheute\s+abend\b|\bce\s+soir\b", lambda m: "tonight"),
    (r"\bheute\s+(?:nachmittag|am\s+nachmittag)\b|\bcet\s+apr[eè]s[\s-]midi\b|\bcet\s+apr[eè]m\b",
     lambda m: "this afternoon"),
    (r"\bheute\s+(?:vormittag|morgen)\b|\bce\s+matin\b", lambda m: "this morning"),
    (r"\bmorgen\b", lambda m: "tomorrow"),
    (r"\bdemain\b", lambda m: "tomorrow"),
    (r"\bheute\b|\baujourd['’]?\s?hui\b", lambda m: "today"),
    (r"\b(?:nächste|naechste|nächsten|naechsten|kommende|kommenden)\s+woche\b"
     r"|\b(?:la\s+)?semaine\s+prochaine\b", lambda m: "next week"),
    (rf"\b(?P<wd>{_WD})\s*(?P<part>{_alt(_COMPOUND_PARTS)})s?\b",
     lambda m: f"{_WEEKDAYS[m.group('wd').lower()]} {_COMPOUND_PARTS[m.group('part').lower()]}"),
    (rf"\b(?:nächsten|naechsten|nächster|naechster|nächste|naechste|kommenden|kommender)\s+(?P<wd>{_WD})\b",
     lambda m: f"next {_weekday(m)}"),
    (rf"\b(?P<wd>{_WD})\s+prochain\b", lambda m: f"next {_weekday(m)}"),
    (rf"\bam\s+(?P<wd>{_WD})\b", lambda m: f"on {_weekday(m)}"),
    (rf"\b(?P<wd>{_WD})\b", _weekday),
    (rf"\b(?P<d>\d{{1,2}})(?:\.|er)?\s*(?P<mon>{_alt(_MONTHS)})\b",
     lambda m: f"{m.group('d')} {_MONTHS[m.group('mon').lower()]}"),
    (rf"\b(?:in|dans)\s+(?P<n>\d{{1,3}}|{_alt(_ONE)})\s+(?P<u>{_alt(_UNITS)})\b", _relative),
    (r"(?<![\w'’])(?:à|a)\s+midi\b", lambda m: "at noon"),
    (rf"(?<![\w'’])(?P<p>{_alt(_PREPOSITIONS)})\s+{_CLOCK}{_NOT_A_QUANTITY}", _prep_time),
    (r"\b(?P<h>\d{1,2})[.:](?P<m>\d{2})\s*uhr\b(?P<u>)", _clock),
    (r"\b(?P<h>\d{1,2})(?:\s*h\s*(?P<m>\d{2})|(?P<u>\s*uhr|\s*heures?|h))\b" + _NOT_A_QUANTITY, _clock),
    (rf"\b(?:am\s+|au\s+|le\s+|l['’]\s*|en\s+|dans\s+l['’]\s*)?(?P<part>{_alt(_PARTS)})\b",
     lambda m: _PARTS[m.group("part").lower()]),
    (r"\bmidi\b", lambda m: "noon"),
]
_COMPILED = [(re.compile(pattern, re.IGNORECASE), build) for pattern, build in _RULES]


@dataclass(frozen=True)
class Translated:
    """Text said in English, with the way back to the original.

    Attributes:
        text: The rewritten text (the original when nothing was rewritten).
        original: The customer's text.
        starts: For each character of ``text``, where its source starts in ``original``.
        ends: For each character of ``text``, where its source ends in ``original``.
    """

    text: str
    original: str
    starts: Tuple[int, ...]
    ends: Tuple[int, ...]

    def span(self, start: int, end: int) -> Tuple[int, int]:
        """The span of ``original`` that ``text[start:end]`` came from."""
        if not self.text or end <= start:
            return start, end
        return self.starts[start], self.ends[end - 1]


def to_english(text: str) -> Translated:
    """``text`` with its German and French time words rewritten in English."""
    # Every rule finds its matches in the original; earlier rules win overlaps.
    taken: List[Tuple[int, int, str]] = []
    for pattern, build in _COMPILED:
        for match in pattern.finditer(text):
            start, end = match.span()
            if end <= start or any(start < e and s < end for s, e, _ in taken):
                continue
            replacement = build(match)
            if replacement != match.group(0):
                taken.append((start, end, replacement))
    if not taken:
        identity = tuple(range(len(text)))
        return Translated(text, text, identity, tuple(i + 1 for i in identity))
    taken.sort()
    out: List[str] = []
    starts: List[int] = []
    ends: List[int] = []
    position = 0
    for start, end, replacement in taken:
        for index in range(position, start):
            out.append(text[index])
            starts.append(index)
            ends.append(index + 1)
        out.append(replacement)
        starts.extend([start] * len(replacement))
        ends.extend([end] * len(replacement))
        position = end
    for index in range(position, len(text)):
        out.append(text[index])
        starts.append(index)
        ends.append(index + 1)
    return Translated("".join(out), text, tuple(starts), tuple(ends))
