"""Call-backs cannot be turned into toll fraud (docs/twilio.md, "Limits").

Against the real bot (``embedded_bot``): a caller no channel verified books nothing; a
verified widget customer (signed token, real WebSocket) cannot get a premium-rate or
foreign number called and is refused a 4th booking in a day, with no row written. Against
a bot with Twilio Voice pointed at the local fake Twilio: 20 due call-backs are placed at
most 2 at a time (``TWILIO_CALLBACK_MAX_CONCURRENT=2``), counted at the fake.
"""
from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, Iterator, List
from zoneinfo import ZoneInfo

import pytest

from tests.servers import bot_texts, new_conversation_id
from tests.widget.conftest import WidgetClient, new_user, token_for

pytestmark = pytest.mark.model

LOGIN_REQUIRED = (
    "To look at orders, refunds, tickets or call-backs I need to know it's you: please log in "
    "to the app (or the website) and open the chat from there. I can still answer general "
    "questions here."
)
ASK_PHONE = "Which phone number should we call?"
COUNTRIES = ("Sorry, we can only call phone numbers in Germany, Austria, Switzerland, France "
             "and the United Kingdom.")
NUMBER_TYPE = "Sorry, we can't call premium-rate, shared-cost or other service numbers"
FOURTH = ("You've booked 3 call-backs today, which is as many as we can take from one "
          "customer in a day.")
WANT_A_CALL = "i'd like a call back please"


def callbacks(bot: Any, **where: str) -> List[Dict[str, Any]]:
    """Rows of the bot's ``callbacks`` table (optionally filtered by equal columns)."""
    query = "SELECT * FROM callbacks"
    if where:
        query += " WHERE " + " AND ".join(f"{column} = ?" for column in where)
    connection = sqlite3.connect(bot.support_db_url.replace("sqlite:///", ""))
    connection.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in connection.execute(query + " ORDER BY id",
                                                       tuple(where.values()))]
    finally:
        connection.close()


def texts(turn: Dict[str, Any]) -> List[str]:
    return [m["text"] for m in turn["replies"]]


def a_working_day_phrase() -> str:
    """"thursday at 11:00": a day 2-6 days ahead in business hours in Berlin (no holiday)."""
    from bot.business_hours import from_settings

    berlin = ZoneInfo("Europe/Berlin")
    today = datetime.now(berlin).date()
    for ahead in range(2, 7):
        day = today + timedelta(days=ahead)
        if from_settings().is_open(datetime(day.year, day.month, day.day, 11, 0, tzinfo=berlin)):
            return f"{day.strftime('%A').lower()} at 11:00"
    raise AssertionError("no working day ahead")  # pragma: no cover


# ---------------------------------------------------------------- booking


def test_a_caller_no_channel_verified_books_nothing(embedded_bot: Any) -> None:
    sender = new_conversation_id("cb")
    replies = bot_texts(embedded_bot.send(sender, WANT_A_CALL))
    assert LOGIN_REQUIRED in replies, replies
    assert not any(ASK_PHONE in text for text in replies)
    # a number anyway: still nothing booked
    replies = bot_texts(embedded_bot.send(sender, "+49 151 23456789"))
    replies += bot_texts(embedded_bot.send(sender, "yes"))
    assert callbacks(embedded_bot, conversation_id=sender) == []


@pytest.mark.parametrize(("number", "refusal"), [
    ("+1 900 234 5678", COUNTRIES),  # US premium rate
    ("+1 202 555 0123", COUNTRIES),  # US, not in the default allow-list
    ("+7 912 345 67 89", COUNTRIES),  # a Russian mobile
    ("+49 900 1234567", NUMBER_TYPE),  # German premium rate
    ("+44 901 234 5678", NUMBER_TYPE),  # UK premium rate
], ids=["us-premium", "us", "ru", "de-premium", "gb-premium"])
async def test_premium_and_foreign_numbers_are_refused_and_asked_again(
        embedded_bot: Any, number: str, refusal: str) -> None:
    user = new_user("cb")
    client = await WidgetClient.connect(embedded_bot, token_for(user, name="Nora",
                                                                timezone="Europe/Berlin"))
    try:
        first = await client.turn(WANT_A_CALL)
        assert any(ASK_PHONE in t for t in texts(first)), texts(first)
        refused = await client.turn(number)
        replies = texts(refused)
        assert any(t.startswith(refusal) for t in replies), replies
        assert any(ASK_PHONE in t for t in replies), replies  # asked again
        assert callbacks(embedded_bot, customer_id=user) == []
    finally:
        await client.close()


async def test_a_fourth_booking_in_a_day_is_refused_and_nothing_is_written(
        embedded_bot: Any) -> None:
    from bot.support.ops import SupportStore

    user = new_user("cb")
    client = await WidgetClient.connect(embedded_bot, token_for(user, name="Nora",
                                                                timezone="Europe/Berlin"))
    try:
        # a real booking through the chat
        await client.turn(WANT_A_CALL)
        await client.turn("+49 151 23456789")
        confirm = await client.turn(a_working_day_phrase())
        assert any(t.startswith("Shall I book a call") for t in texts(confirm)), texts(confirm)
        booked = await client.turn("yes")
        assert any(t.startswith("Booked (C-") for t in texts(booked)), texts(booked)
        [row] = callbacks(embedded_bot, customer_id=user)
        assert (row["phone"], row["status"]) == ("+4915123456789", "scheduled")
        cancelled = await client.turn("please cancel my call back")
        assert any(t.startswith("Cancelled") for t in texts(cancelled)), texts(cancelled)

        # two more today (booked and cancelled), as the chat would have written them
        store = SupportStore.from_url(embedded_bot.support_db_url)
        try:
            for n in range(2):
                extra = await store.do_schedule_callback(
                    f"widget:{user}", f"+4915123456{n:03d}",
                    datetime.now(timezone.utc) + timedelta(days=2), "Europe/Berlin",
                    customer_id=user, actor=f"customer:{user}")
                await store.do_cancel_callback(extra.reference)
        finally:
            await store.dispose()
        assert len(callbacks(embedded_bot, customer_id=user)) == 3

        refused = await client.turn(WANT_A_CALL)
        assert any(t.startswith(FOURTH) for t in texts(refused)), texts(refused)
        assert not any(ASK_PHONE in t for t in texts(refused))  # not asked for details in vain
        again = await client.turn("+49 151 98765432")  # typed anyway: no booking flow
        assert not any(t.startswith("Booked") for t in texts(again))
        assert len(callbacks(embedded_bot, customer_id=user)) == 3
    finally:
        await client.close()


# ------------------------------------------------------------ placing calls

VOICE_FROM = "+15005550006"
SUPPORT_LINE = "+4930123456789"
FLOOD = 20
MAX_CONCURRENT = 2
POLL = 0.5
ENDED = ("completed", "busy", "no-answer", "failed", "canceled")


@pytest.fixture(scope="module")
def voice(bot_factory: Any) -> Iterator[Any]:
    from tests.twilio.conftest import twilio_stack

    with twilio_stack(bot_factory, "callback-flood", {
        "TWILIO_MAX_ATTEMPTS": "3", "TWILIO_BACKOFF_BASE": "0.05", "TWILIO_TIMEOUT": "3",
        "TWILIO_VOICE_FROM": VOICE_FROM, "SUPPORT_LINE_NUMBER": SUPPORT_LINE,
        "TWILIO_CALLBACK_POLL": str(POLL),
        "TWILIO_CALLBACK_MAX_CONCURRENT": str(MAX_CONCURRENT),
    }) as running:
        yield running


async def _flood(bot: Any, count: int) -> List[str]:
    """``count`` call-backs of different customers and numbers, all due now."""
    from bot.twilio.voice_store import CallbackLimits, VoiceStore

    store = VoiceStore.from_url(bot.support_db_url)
    numbers = []
    try:
        for n in range(count):
            booked = await store.do_book_callback(
                f"widget:flood-{n}", f"flood-{n}", f"+49151200{n:05d}",
                datetime.now(timezone.utc) - timedelta(seconds=1), "Europe/Berlin",
                CallbackLimits())
            numbers.append(booked.phone)
    finally:
        await store.dispose()
    return numbers


def test_due_callbacks_are_placed_at_most_two_at_a_time(voice: Any) -> None:
    fake, bot = voice.fake, voice.bot
    numbers = asyncio.run(_flood(bot, FLOOD))
    most = 0
    deadline = time.monotonic() + 240
    while True:
        calls = [c for c in fake.calls() if c["to"] in numbers]
        going_on = [c for c in calls if c["status"] not in ENDED]
        most = max(most, len(going_on))
        assert len(going_on) <= MAX_CONCURRENT, going_on
        if len(calls) == FLOOD and not going_on:
            break
        assert time.monotonic() < deadline, (
            f"{len(calls)} of {FLOOD} calls placed, {len(going_on)} going on\n{bot.logs()}")
        if len(going_on) == MAX_CONCURRENT:
            # nothing more is placed while both lines are busy: wait three polls and look
            time.sleep(3 * POLL)
            assert len([c for c in fake.calls() if c["to"] in numbers]) == len(calls)
            fake.advance_call(going_on[0]["sid"], "in-progress")
            fake.advance_call(going_on[0]["sid"], "completed")  # the customer hangs up
        elif len(calls) == FLOOD:
            for call in going_on:
                fake.advance_call(call["sid"], "completed")
        time.sleep(0.1)

    assert most == MAX_CONCURRENT
    calls = [c for c in fake.calls() if c["to"] in numbers]
    assert sorted(c["to"] for c in calls) == sorted(numbers)  # each number called once
    fake.wait_background()

    def finished() -> bool:
        rows = [r for r in callbacks(bot) if r["phone"] in numbers]
        return len(rows) == FLOOD and all(r["status"] == "completed" for r in rows)

    deadline = time.monotonic() + 30
    while not finished():
        assert time.monotonic() < deadline, [r["status"] for r in callbacks(bot)]
        time.sleep(0.2)
