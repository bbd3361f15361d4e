"""German and French call-back times (bot/timeparse_lang.py through bot/timeparse.py)."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

import pytest
from zoneinfo import ZoneInfo

from bot.timeparse import find_when, parse_when
from bot.timeparse_lang import to_english

BERLIN = ZoneInfo("Europe/Berlin")
PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 12, 4, 9, 0, tzinfo=BERLIN)  # a Friday morning


@pytest.mark.parametrize(("text", "expected", "said", "exact"), [
    ("morgen um 10", "Sat 05 10:00", "morgen um 10", True),
    ("Rufen Sie mich morgen um 10 Uhr an", "Sat 05 10:00", "morgen um 10 Uhr", True),
    ("Freitagnachmittag", "Fri 04 14:00", "Freitagnachmittag", False),
    ("am Montag um 14:30", "Mon 07 14:30", "am Montag um 14:30", True),
    ("Montag 9.30 Uhr", "Mon 07 09:30", "Montag 9.30 Uhr", True),
    ("übermorgen gegen 15 Uhr", "Sun 06 15:00", "übermorgen gegen 15 Uhr", True),
    ("in 2 Stunden", "Fri 04 11:00", "in 2 Stunden", True),
    ("heute nachmittag", "Fri 04 14:00", "heute nachmittag", False),
    ("am 10. Dezember um 11 Uhr", "Thu 10 11:00", "10. Dezember um 11 Uhr", True),
    ("morgen früh", "Sat 05 10:00", "morgen früh", False),
    ("nächsten Dienstag ab 15 Uhr", "Tue 08 15:00", "nächsten Dienstag ab 15 Uhr", True),
    ("demain à 10h", "Sat 05 10:00", "demain à 10h", True),
    ("demain à 10h30", "Sat 05 10:30", "demain à 10h30", True),
    ("vendredi après-midi", "Fri 04 14:00", "vendredi après-midi", False),
    ("vendredi apres midi", "Fri 04 14:00", "vendredi apres midi", False),
    ("lundi prochain à 14h", "Mon 07 14:00", "lundi prochain à 14h", True),
    ("après-demain vers 15h", "Sun 06 15:00", "après-demain vers 15h", True),
    ("dans 2 heures", "Fri 04 11:00", "dans 2 heures", True),
    ("cet après-midi", "Fri 04 14:00", "cet après-midi", False),
    ("le 10 décembre à 11 heures", "Thu 10 11:00", "10 décembre à 11 heures", True),
    ("mardi à midi", "Tue 08 12:00", "mardi à midi", True),
    ("jeudi 9h", "Thu 10 09:00", "jeudi 9h", True),
])
def test_german_and_french_times(text: str, expected: str, said: str, exact: bool) -> None:
    parsed = parse_when(text, NOW, BERLIN)

    assert parsed is not None
    assert parsed.start.strftime("%a %d %H:%M") == expected
    assert parsed.text == said  # the customer's own words, not the English rewrite
    assert parsed.exact is exact
    start, end = find_when(text)
    assert text[start:end] == said


@pytest.mark.parametrize("text", [
    "guten morgen, ich habe eine frage", "vor 2 tagen kam nichts an", "il a 10 ans",
    "des 2 articles un seul est arrivé", "I am 30 years old", "mars attacks",
    "Bonjour, j'ai une question",
])
def test_no_time_in_ordinary_sentences(text: str) -> None:
    assert parse_when(text, NOW, PARIS) is None


@pytest.mark.parametrize("text", [
    "tomorrow at 10", "friday afternoon", "um, maybe next week", "call me at 5pm on the 12th",
    "order 104233 arrived damaged",
])
def test_english_is_left_alone(text: str) -> None:
    said = to_english(text)
    assert said.text == text
    assert said.span(0, len(text)) == (0, len(text))


def test_the_rewrite_maps_back_to_the_customers_text() -> None:
    said = to_english("Rückruf bitte morgen um 10 Uhr")
    assert said.text == "Rückruf bitte tomorrow at 10:00"
    start = said.text.index("tomorrow")
    assert said.span(start, len(said.text)) == (14, len("Rückruf bitte morgen um 10 Uhr"))
