"""End to end: the REAL bot with Twilio Voice configured against the local fake.

A call-back is booked, the Rasa server restarts before it is due, and after the restart
the fake receives exactly one call on time; signed status callbacks move the call-back on
and the customer's widget gets ``call`` frames; the customer's ``end_call`` frame ends the
call in Twilio and the call-back is ``completed``.
"""
from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List

import pytest
import requests

from bot.support.ops import StateError, SupportStore
from tests.servers import BotServers
from tests.twilio.conftest import (
    CALLBACK_POLL,
    PUBLIC_URL,
    SUPPORT_LINE,
    VOICE_FROM,
    TwilioStack,
    wait_for,
    widget_in_browser,
)
from tests.twilio.fake_twilio import FakeTwilio
from tests.widget.conftest import WidgetClient, new_user, token_for

pytestmark = pytest.mark.model

POLL = CALLBACK_POLL
MARGIN = 6.0  # on a busy 2-core machine; the poll interval is the real bound
STATUS = "/webhooks/twilio_conversations/voice/status"


@pytest.fixture(scope="module")
def voice_stack(flex_stack: TwilioStack) -> TwilioStack:
    """The package's Twilio bot (Voice on; Flex mode and email do not touch call-backs),
    shared with test_twilio_flex_e2e.py: one Rasa start for both."""
    return flex_stack


def _row(bot: BotServers, reference: str) -> Dict[str, Any]:
    connection = sqlite3.connect(bot.support_db_url.replace("sqlite:///", ""))
    connection.row_factory = sqlite3.Row
    try:
        row = connection.execute(
            "SELECT c.status, t.call_sid, t.attempts, t.started_at, t.ended_at FROM callbacks c "
            "LEFT JOIN twilio_calls t ON t.callback_id = c.id WHERE c.reference = ?",
            (reference,)).fetchone()
        return dict(row) if row is not None else {}
    finally:
        connection.close()


def _calls_to(fake: FakeTwilio, phone: str) -> List[Dict[str, Any]]:
    return [c for c in fake.calls() if c["to"] == phone]


async def _book(bot: BotServers, conversation_id: str, phone: str, at: datetime) -> str:
    store = SupportStore.from_url(bot.support_db_url)
    try:
        callback = await store.do_schedule_callback(conversation_id, phone, at, "Europe/Berlin",
                                                    topic="refund", actor="customer")
        return callback.reference
    finally:
        await store.dispose()


async def test_callback_survives_a_restart_and_end_call(voice_stack: TwilioStack) -> None:
    fake, bot = voice_stack.fake, voice_stack.bot
    loop = asyncio.get_running_loop()
    user = new_user("vc")
    conversation_id = f"widget:{user}"
    phone = "+4915112345678"
    client = await WidgetClient.connect(bot, token_for(user, name="Vera"))
    await client.close()

    # due after the restart (which takes at most as long as the first start-up)
    lead = max(15.0, float(bot.extra.get("startup_seconds", 30)) + 10.0)
    due = datetime.now(timezone.utc) + timedelta(seconds=lead)
    reference = await _book(bot, conversation_id, phone, due)
    await loop.run_in_executor(None, bot.restart_rasa)
    restarted_at = datetime.now(timezone.utc)
    assert restarted_at < due, f"the restart took longer than {lead:.0f} s"
    assert _calls_to(fake, phone) == [] and _row(bot, reference)["status"] == "scheduled"

    client = await WidgetClient.connect(bot, token_for(user, name="Vera"))
    [call] = await loop.run_in_executor(None, lambda: wait_for(
        "the call-back's call", lambda: _calls_to(fake, phone),
        timeout=lead + 60, logs=bot.logs))
    placed_at = datetime.now(timezone.utc)
    assert due - timedelta(seconds=1) <= placed_at <= due + timedelta(seconds=POLL + MARGIN), \
        (due, placed_at)
    assert call["from"] == VOICE_FROM and SUPPORT_LINE in call["_instructions"]
    assert call["_status_callback"] == f"{PUBLIC_URL}{STATUS}?callback={reference}"
    sid = call["sid"]
    frame = await client.expect("call", lambda f: f.get("can_end"), timeout=30)
    assert frame["callback"] == reference and frame["state"] == "calling"
    message = await client.expect("message", lambda f: f["message"]["sender"] == "system"
                                  and reference in f["message"]["text"])
    assert "calling you now" in message["message"]["text"]
    with pytest.raises(StateError):  # a started call-back cannot be cancelled any more
        store = SupportStore.from_url(bot.support_db_url)
        try:
            await store.do_cancel_callback(reference, actor="customer")
        finally:
            await store.dispose()

    # Twilio's signed status callbacks
    for status in ("initiated", "ringing", "in-progress"):
        deliveries = await loop.run_in_executor(None, fake.advance_call, sid, status)
        assert [d.status for d in deliveries] == [200], deliveries
    frame = await client.expect("call", lambda f: f["state"] == "in_progress")
    assert frame["can_end"] is True
    await loop.run_in_executor(None, lambda: wait_for(
        "in_progress", lambda: _row(bot, reference).get("status") == "in_progress",
        logs=bot.logs))
    row = _row(bot, reference)
    assert row["call_sid"] == sid and row["started_at"] and row["attempts"] == 1

    # a duplicate status callback is acknowledged and ignored; a forged one is refused
    again = await loop.run_in_executor(None, lambda: fake.send_webhook(
        deliveries[0].url, deliveries[0].params))
    assert again.status == 200 and '"duplicate":true' in again.body.replace(" ", "")
    with requests.Session() as http:
        http.trust_env = False
        forged = http.post(f"{bot.rasa_url}{STATUS}?callback={reference}",
                           data={"CallSid": sid, "CallStatus": "completed"},
                           headers={"X-Twilio-Signature": "Zm9yZ2Vk"}, timeout=30)
    assert forged.status_code == 403
    assert _row(bot, reference)["status"] == "in_progress"

    # the customer presses "End call"
    await client.send({"type": "end_call", "callback": reference})
    ended = await client.expect("call", lambda f: f["state"] == "ended")
    assert ended == {"type": "call", "callback": reference, "state": "ended",
                     "status": "completed", "can_end": False}
    assert [c["status"] for c in _calls_to(fake, phone)] == ["completed"]
    await loop.run_in_executor(None, fake.wait_background)
    row = _row(bot, reference)
    assert row["status"] == "completed" and row["ended_at"]
    assert len(_calls_to(fake, phone)) == 1
    await client.send({"type": "end_call"})
    assert (await client.expect("error"))["code"] == "no_call"
    await client.close()


def test_end_call_button_in_the_browser_widget(voice_stack: TwilioStack) -> None:
    """The customer sees "End call" while the call-back call goes on and ends it."""
    from playwright.sync_api import expect

    fake, bot = voice_stack.fake, voice_stack.bot
    customer = "cust-ben"  # a demo shop customer (seeded)
    phone = "+4915187654321"
    with widget_in_browser(voice_stack.demo_url, customer) as dialog:
        with ThreadPoolExecutor(1) as pool:  # playwright's loop runs in this thread
            reference = pool.submit(asyncio.run, _book(
                bot, f"widget:{customer}", phone, datetime.now(timezone.utc))).result()
        [call] = wait_for("the call", lambda: _calls_to(fake, phone), logs=bot.logs)
        bar = dialog.get_by_role("group", name="Call-back call")
        end = bar.get_by_role("button", name="End call")
        expect(end).to_be_enabled(timeout=30_000)
        expect(bar).to_contain_text(reference)
        fake.advance_call(call["sid"], "in-progress")
        expect(bar).to_contain_text("in progress", timeout=30_000)
        end.click()
        expect(bar).to_be_hidden(timeout=30_000)
        assert [c["status"] for c in _calls_to(fake, phone)] == ["completed"]
        expect(dialog.page.locator(".sw-msg[data-sender=system]").last).to_contain_text(
            "has ended", timeout=30_000)
        wait_for("completed", lambda: _row(bot, reference).get("status") == "completed")
