"""The FAQ articles agree with the shop's real rules (bot/orders.py, data/messages.yml,
bot/settings.py): order numbers, times with their time zone, carriers, refund timing,
returns, cancellation, opening hours and call-back countries.

The articles are read as a customer sees them: every paragraph, list item, table row and
the summary is one "passage" (rendered by bot/richtext.py, so Markdown marks do not get
in the way).
"""
from __future__ import annotations

import re
from typing import Iterator, List, Tuple

import pytest

from bot import orders
from bot.business_hours import MAX_CALLBACK_AHEAD, BusinessHours
from bot.faq import Article, FaqIndex
from bot.messages import load_messages
from bot.richtext import Block, blocks_to_text
from bot.settings import PROJECT_ROOT, get_settings, reset_settings_cache

FAQ_DIR = PROJECT_ROOT / "data" / "faq"

#: What names the time zone of a time of day.
ZONE = re.compile(r"German time|Europe/Berlin|\bCES?T\b|\bUTC\b")
#: A time of day: 14:00, 9.30, 9 am, 6pm, noon, midnight.
TIME_OF_DAY = re.compile(
    r"\b(?:[01]?\d|2[0-4])[:.][0-5]\d\b|\b(?:1[0-2]|0?[1-9])\s?(?:a\.?m\.?|p\.?m\.?)(?!\w)"
    r"|\bnoon\b|\bmidnight\b",
    re.IGNORECASE,
)
#: "N digits" / "N-digit" / "eight digits" ...
DIGIT_COUNT = re.compile(
    r"\b(\d+|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)[- ]digits?\b",
    re.IGNORECASE,
)
WORDS = {"six": "6"}
COUNTRY_NAMES = {
    "DE": "Germany", "AT": "Austria", "CH": "Switzerland", "FR": "France",
    "GB": "United Kingdom", "NL": "Netherlands", "BE": "Belgium", "IT": "Italy",
    "ES": "Spain", "PL": "Poland", "LU": "Luxembourg", "DK": "Denmark", "IE": "Ireland",
}


@pytest.fixture(scope="module")
def index() -> FaqIndex:
    return FaqIndex.load(FAQ_DIR)


def _passages(blocks: List[Block]) -> Iterator[str]:
    """Plain text of every paragraph, heading, list item paragraph and table row."""
    for block in blocks:
        kind = block["type"]
        if kind == "list":
            for item in block["items"]:
                yield from _passages(item)
        elif kind == "quote":
            yield from _passages(block["blocks"])
        elif kind == "table":
            for row in [block["header"], *block["rows"]]:
                yield blocks_to_text([{"type": "table", "header": row, "rows": []}])
        else:
            yield blocks_to_text([block])


def passages(article: Article) -> List[str]:
    """What a customer reads: the summary and every passage of the body, on one line each."""
    return [" ".join(text.split()) for text in [article.summary, *_passages(article.blocks)]]


def all_passages(index: FaqIndex) -> Iterator[Tuple[str, str]]:
    for article in index.articles:
        for text in passages(article):
            yield article.id, text


# ------------------------------------------------------------------ order numbers


def test_order_numbers_are_described_as_six_digits(index: FaqIndex) -> None:
    """bot/orders.py: order numbers are exactly six digits (#104233)."""
    wrong = []
    for article_id, passage in all_passages(index):
        for sentence in re.split(r"(?<=[.!?])\s+", passage):
            if not re.search(r"order numbers?", sentence, re.IGNORECASE):
                continue
            for match in DIGIT_COUNT.finditer(sentence):
                count = WORDS.get(match.group(1).lower(), match.group(1))
                if count != "6":
                    wrong.append((article_id, match.group(0), sentence))
    assert wrong == []


def test_example_order_numbers_are_real_order_numbers(index: FaqIndex) -> None:
    """Every "#123456" is a valid order number, and no other format (NW-…) is mentioned."""
    wrong = []
    for article_id, text in all_passages(index):
        for match in re.finditer(r"#\s?(\d+)", text):
            if orders.normalize_order_number(match.group(0)) != match.group(1):
                wrong.append((article_id, match.group(0)))
        for match in re.finditer(r"\b[A-Z]{2,3}-\s?\d{3,}\b|\bNW-", text):
            wrong.append((article_id, match.group(0)))
    assert wrong == []


def test_the_order_number_format_is_explained_where_customers_look_for_it(
    index: FaqIndex,
) -> None:
    for article_id in ("contact-us", "invoices", "placing-an-order", "payment-problems"):
        text = " ".join(passages(index.get(article_id)))
        assert "6 digits, for example #104233" in text, article_id


def test_the_checks_catch_the_old_format() -> None:
    """The checks above would have caught the old "NW- followed by 8 digits"."""
    text = "Your order number (NW- followed by 8 digits, for example NW-20481736)"
    assert [m.group(1) for m in DIGIT_COUNT.finditer(text)] == ["8"]
    assert re.findall(r"\b[A-Z]{2,3}-\s?\d{3,}\b|\bNW-", text) == ["NW-", "NW-20481736"]


# ------------------------------------------------------------------ times and zones


def test_every_time_of_day_names_its_time_zone(index: FaqIndex) -> None:
    missing = [
        (article_id, text)
        for article_id, text in all_passages(index)
        if TIME_OF_DAY.search(text) and not ZONE.search(text)
    ]
    assert missing == []


@pytest.mark.parametrize("text, has_time", [
    ("Orders placed before 14:00 ship the same day.", True),
    ("Call us from 9 am.", True),
    ("Open until 6pm on Saturdays.", True),
    ("We reply by noon.", True),
    ("Within 24 hours, 2 to 3 business days, 10 digits, €4.95, 30 days.", False),
    ("Version 2.5 of the app", False),
])
def test_the_time_check_recognises_times_of_day(text: str, has_time: bool) -> None:
    assert bool(TIME_OF_DAY.search(text)) is has_time


# ------------------------------------------------------------------ shop rules


@pytest.fixture
def default_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """bot/settings.py defaults (no BUSINESS_HOURS/CALLBACK_COUNTRIES from the environment)."""
    for name in ("BUSINESS_HOURS", "BUSINESS_TZ", "CALLBACK_COUNTRIES"):
        monkeypatch.delenv(name, raising=False)
    reset_settings_cache()
    yield
    reset_settings_cache()


def test_opening_hours_match_the_business_hours(index: FaqIndex, default_settings: None) -> None:
    settings = get_settings()
    hours = BusinessHours.parse(settings.business_hours, settings.business_tz)
    article = index.get("contact-us")
    for text in (article.summary, " ".join(passages(article))):
        assert settings.business_tz in text
        for windows in hours.windows:
            for start, end in windows:
                for minutes in (start, end):
                    assert f"{minutes // 60:02d}:{minutes % 60:02d}" in text


def test_callback_countries_match_the_settings(index: FaqIndex, default_settings: None) -> None:
    text = " ".join(passages(index.get("contact-us")))
    countries = get_settings().callback_countries
    assert countries == ("DE", "AT", "CH", "FR", "GB")
    for code in countries:
        assert COUNTRY_NAMES[code] in text, code
    assert "all EU countries" not in text
    assert f"{MAX_CALLBACK_AHEAD.days} days" in text


def test_carriers_are_the_shops_carriers(index: FaqIndex) -> None:
    carriers = {spec.carrier for spec in orders._DEMO_ORDERS if spec.carrier}
    assert carriers == {"DHL", "DPD", "UPS"}
    for article_id in ("delivery-options", "order-tracking-help"):
        text = " ".join(passages(index.get(article_id)))
        for carrier in carriers:
            assert carrier in text, (article_id, carrier)
    everything = " ".join(text for _, text in all_passages(index))
    assert "national partners" not in everything


def test_refund_timing_matches_what_the_bot_says(index: FaqIndex) -> None:
    """data/messages.yml: reviewed within 2 business days, paid within 3-5 business days."""
    requested = " ".join(bot_says("refund_requested").split())
    assert "within 2 business days" in requested and "within 3-5 business days" in requested
    assert "within 3-5 business days" in bot_says("order_cancelled")
    for article_id in ("refund-policy", "returns", "cancellation-fees", "payment-problems"):
        text = " ".join(passages(index.get(article_id)))
        assert "3 to 5 business days" in text, article_id
    for article_id in ("refund-policy", "returns"):
        text = " ".join(passages(index.get(article_id)))
        assert "within 2 business days" in text, article_id
        assert "within 3 business days" not in text, article_id
    assert "within 24 hours" not in " ".join(passages(index.get("refund-policy")))


def test_returns_are_free_within_30_days(index: FaqIndex) -> None:
    """data/messages.yml: "you can return it free of charge within 30 days of delivery"."""
    assert "free of charge within 30 days of delivery" in bot_says("cannot_cancel_shipped")
    for article_id in ("returns", "refund-policy", "cancellation-fees"):
        text = " ".join(passages(index.get(article_id)))
        assert "30 days" in text and "free of charge" in text, article_id
    fees = [
        (article_id, text)
        for article_id, text in all_passages(index)
        if re.search(r"\breturn", text, re.IGNORECASE) and re.search(r"€\s?\d", text)
        and not re.search(r"delivery cost|standard delivery", text, re.IGNORECASE)
    ]
    assert fees == []


def test_cancelling_is_free_until_the_order_ships(index: FaqIndex) -> None:
    """bot/orders.py: orders can be cancelled and changed while processing or packed."""
    assert set(orders.CANCELLABLE_STATUSES) == set(orders.CHANGEABLE_STATUSES) == {
        "processing", "packed"}
    summary = index.get("cancellation-fees").summary
    assert "free" in summary and "Processing or Packed" in summary
    # the app shows these statuses (bot/demo/static/app.js); "Received" is none of them
    stale = [(a, t) for a, t in all_passages(index) if re.search(r"\bReceived\b", t)]
    assert stale == []


def bot_says(key: str) -> str:
    """A text of data/messages.yml, placeholders unfilled, on one line."""
    return " ".join(load_messages(PROJECT_ROOT / "data" / "messages.yml").get(key).text.split())
