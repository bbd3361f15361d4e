"""Twilio Voice call-backs without Rasa: TwiML, claims (no double call), status mapping,
the signed status route (403, dedupe), recovery after a crash, missed call-backs, End call.

The fake Twilio is module-scoped (calls accumulate), so every test uses its own number.
"""
from __future__ import annotations

import asyncio
import itertools
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any, AsyncIterator, Dict, List, Tuple
from urllib.parse import urlencode

import pytest

from bot import db
from bot.support.ops import StateError, SupportStore
from bot.twilio.bridge import TwilioConfig
from bot.twilio.channel import TwilioConversationsInput
from bot.twilio.client import RetryPolicy, TwilioApi
from bot.twilio.store import TwilioStore
from bot.twilio.voice import STATUS_PATH, VoiceConfig, VoiceService, twiml
from bot.twilio.voice_store import VoiceStore, status_for
from tests.twilio.conftest import AUTH_TOKEN, PUBLIC_URL
from tests.twilio.fake_twilio import FakeTwilio, sign

VOICE_FROM = "+15005550006"
SUPPORT_LINE = "+4930123456789"
_numbers = itertools.count(100)

Events = List[Tuple[str, Dict[str, Any]]]


def new_phone() -> str:
    """A number no other test of this module calls."""
    return f"+49151100{next(_numbers):05d}"  # valid German mobile numbers


def voice_config(config: TwilioConfig, **overrides: Any) -> VoiceConfig:
    return replace(VoiceConfig(voice_from=VOICE_FROM, support_line=SUPPORT_LINE,
                               public_url=config.public_url, poll_interval=0.1,
                               max_late=900, stale_seconds=60, greeting="Hello from support.",
                               policy=RetryPolicy(attempts=3, base=0.01, cap=0.04)),
                   **overrides)


class Stack:
    """A store + voice service on a fresh database, bus events collected."""

    def __init__(self, config: TwilioConfig, voice: VoiceConfig) -> None:
        self.twilio_store = TwilioStore.from_url(config.support_db_url)
        self.support = SupportStore(self.twilio_store.engine)
        self.api = TwilioApi(config.account_sid or "", config.auth_token or "",
                             timeout=config.timeout, api_base=config.api_base)
        self.events: Events = []

        async def publish(topic: str, event: Dict[str, Any]) -> None:
            self.events.append((topic, event))

        self.voice = VoiceService(voice, VoiceStore(self.twilio_store.engine), self.api,
                                  publish=publish, claim_keys=self.twilio_store.do_claim_keys)

    async def close(self) -> None:
        await self.voice.close()
        await self.api.close()
        await self.twilio_store.dispose()

    async def book(self, phone: str, in_seconds: float = -1.0,
                   conversation_id: str = "widget:cust-voice") -> str:
        when = datetime.now(timezone.utc) + timedelta(seconds=in_seconds)
        callback = await self.support.do_schedule_callback(conversation_id, phone, when,
                                                           "Europe/Berlin", topic="refund")
        return callback.reference

    def frames(self) -> List[Dict[str, Any]]:
        return [e["frame"] for topic, e in self.events if topic == "call.state"]


@pytest.fixture
async def stack(config: TwilioConfig) -> AsyncIterator[Stack]:
    made = Stack(config, voice_config(config))
    await made.twilio_store.create_schema()
    from bot.support.chat import ChatStore

    await ChatStore(made.twilio_store.engine).do_open_conversation(
        "widget:cust-voice", "cust-voice", "widget", profile={"name": "Vera"})
    try:
        yield made
    finally:
        await made.close()


def calls_to(fake: FakeTwilio, phone: str) -> List[Dict[str, Any]]:
    return [c for c in fake.calls() if c["to"] == phone]


# ---------------------------------------------------------------- pure parts


def test_twiml_says_then_dials_the_support_line() -> None:
    xml = twiml("Hello & welcome <Anna>", SUPPORT_LINE, VOICE_FROM)
    root = ET.fromstring(xml)
    assert root.tag == "Response"
    say, dial = list(root)
    assert say.tag == "Say" and say.text == "Hello & welcome <Anna>"
    assert dial.tag == "Dial" and dial.text == SUPPORT_LINE
    assert dial.attrib == {"callerId": VOICE_FROM}


@pytest.mark.parametrize("twilio_status, ours", [
    ("queued", "calling"), ("initiated", "calling"), ("ringing", "calling"),
    ("in-progress", "in_progress"), ("completed", "completed"), ("busy", "no_answer"),
    ("no-answer", "no_answer"), ("failed", "failed"), ("canceled", "cancelled"),
    ("weird", None), ("", None)])
def test_status_mapping(twilio_status: str, ours: Any) -> None:
    assert status_for(twilio_status) == ours


# -------------------------------------------------------------- the scheduler


async def test_due_callback_is_called_once_with_twiml_and_status_callback(
        stack: Stack, fake_twilio: FakeTwilio) -> None:
    phone = new_phone()
    reference = await stack.book(phone)
    later = await stack.book(new_phone(), in_seconds=3600)
    taken = await stack.voice.run_once()
    assert [c.reference for c in taken] == [reference]
    [call] = calls_to(fake_twilio, phone)
    assert call["from"] == VOICE_FROM
    assert SUPPORT_LINE in call["_instructions"] and "<Say>" in call["_instructions"]
    assert call["_status_callback"] == f"{PUBLIC_URL}{STATUS_PATH}?callback={reference}"
    assert call["_status_callback_events"] == ["initiated", "ringing", "answered", "completed"]
    row = await stack.voice.store.get(reference)
    assert row is not None and row.status == "calling" and row.call_sid == call["sid"]
    assert row.attempts == 1
    # the customer is told, and the widget can offer "End call"
    assert stack.frames()[-1] == {"type": "call", "callback": reference, "state": "calling",
                                  "status": "calling", "can_end": True}
    texts = [e["message"]["text"] for t, e in stack.events if e.get("message")]
    assert any("calling you now" in t for t in texts)
    # nothing more on the next runs; the later one stays scheduled
    assert await stack.voice.run_once() == []
    assert len(calls_to(fake_twilio, phone)) == 1
    assert (await stack.voice.store.get(later)).status == "scheduled"  # type: ignore[union-attr]


async def test_two_schedulers_racing_place_one_call(stack: Stack, config: TwilioConfig,
                                                   fake_twilio: FakeTwilio) -> None:
    phones = [new_phone() for _ in range(3)]
    for phone in phones:
        await stack.book(phone)
    stack.voice.config = voice_config(config, max_concurrent=5)
    other = Stack(config, voice_config(config, max_concurrent=5))
    try:
        results = await asyncio.gather(stack.voice.run_once(), other.voice.run_once(),
                                       stack.voice.run_once(), other.voice.run_once())
    finally:
        await other.close()
    assert sum(len(r) for r in results) == 3
    for phone in phones:
        assert len(calls_to(fake_twilio, phone)) == 1, phone


async def test_claims_race_on_both_databases(config: TwilioConfig, db_url: str) -> None:
    """Three processes' stores claim the same due call-backs at once: each once."""
    on_db = replace(config, support_db_url=db_url)
    stacks = [Stack(on_db, voice_config(on_db)) for _ in range(3)]
    try:
        await stacks[0].twilio_store.create_schema()
        refs = {await stacks[0].book(new_phone()) for _ in range(4)}
        now = db.utcnow()
        results = await asyncio.gather(*(s.voice.store.do_claim_due_callbacks(now)
                                         for s in stacks))
        claimed = [c.reference for r in results for c in r]
        assert sorted(claimed) == sorted(refs)
    finally:
        for made in stacks:
            await made.close()


async def test_claims_never_exceed_the_concurrent_calls_on_both_databases(
        config: TwilioConfig, db_url: str) -> None:
    """Three processes claim six due call-backs at once with room for two calls: two are
    claimed; the rest wait until a call ends; one found too late is missed regardless."""
    on_db = replace(config, support_db_url=db_url)
    stacks = [Stack(on_db, voice_config(on_db)) for _ in range(3)]
    try:
        await stacks[0].twilio_store.create_schema()
        refs = [await stacks[0].book(new_phone()) for _ in range(6)]
        late = await stacks[0].book(new_phone(), in_seconds=-3600)
        now = db.utcnow()
        results = await asyncio.gather(*(
            s.voice.store.do_claim_due_callbacks(now, timedelta(seconds=900), max_active=2)
            for s in stacks))
        claimed = [c for r in results for c in r]
        assert sorted(c.status for c in claimed) == ["calling", "calling", "missed"]
        assert [c.reference for c in claimed if c.status == "missed"] == [late]
        store = stacks[0].voice.store
        assert await store.count_active() == 2
        assert await store.do_claim_due_callbacks(db.utcnow(), max_active=2) == []
        first = next(c for c in claimed if c.status == "calling")
        await store.do_record_call_sid(first.id, "CA" + "0" * 32)
        await store.do_record_call_status("CA" + "0" * 32, "completed")
        [next_one] = await store.do_claim_due_callbacks(db.utcnow(), max_active=2)
        assert next_one.status == "calling" and next_one.reference in refs
    finally:
        for made in stacks:
            await made.close()


async def test_the_scheduler_places_at_most_max_concurrent_calls(
        stack: Stack, config: TwilioConfig, fake_twilio: FakeTwilio) -> None:
    phones = [new_phone() for _ in range(5)]
    for phone in phones:
        await stack.book(phone)
    stack.voice.config = voice_config(config, max_concurrent=2)
    taken = await stack.voice.run_once()
    assert len(taken) == 2 and await stack.voice.run_once() == []
    placed = [c for p in phones for c in calls_to(fake_twilio, p)]
    assert len(placed) == 2
    await asyncio.get_running_loop().run_in_executor(
        None, fake_twilio.advance_call, placed[0]["sid"], "completed")
    await stack.voice.handle_status({"CallSid": placed[0]["sid"], "CallStatus": "completed"},
                                    None)
    assert len(await stack.voice.run_once()) == 1
    assert sum(len(calls_to(fake_twilio, p)) for p in phones) == 3


async def test_a_call_whose_status_callbacks_were_lost_is_looked_up(
        stack: Stack, config: TwilioConfig, fake_twilio: FakeTwilio) -> None:
    """A lost "completed" webhook must not hold one of the call slots for ever."""
    phones = [new_phone() for _ in range(2)]
    for phone in phones:
        await stack.book(phone)
    stack.voice.config = voice_config(config, max_concurrent=1, stale_seconds=60)
    [first] = await stack.voice.run_once()
    [call] = calls_to(fake_twilio, first.phone)
    # Twilio ends the call but its status callback never arrives (the public URL is closed)
    await asyncio.get_running_loop().run_in_executor(
        None, fake_twilio.advance_call, call["sid"], "completed")
    assert await stack.voice.run_once() == []  # still "calling" as far as we know
    later = db.utcnow() + timedelta(seconds=120)
    [second] = await stack.voice.run_once(now=later)
    assert (await stack.voice.store.get(first.reference)).status == "completed"  # type: ignore
    assert second.phone != first.phone and second.status == "calling"


async def test_numbers_outside_the_allowed_countries_are_never_dialled(
        stack: Stack, config: TwilioConfig, fake_twilio: FakeTwilio) -> None:
    """Booked around the rules (straight into the table): the scheduler still refuses."""
    premium, foreign = "+499001234567", "+12025550123"  # German 0900, a US number
    references = [await stack.book(premium), await stack.book(foreign)]
    stack.voice.config = voice_config(config, max_concurrent=5)
    taken = await stack.voice.run_once()
    assert sorted(c.reference for c in taken) == sorted(references)
    assert calls_to(fake_twilio, premium) == calls_to(fake_twilio, foreign) == []
    for reference in references:
        row = await stack.voice.store.get(reference)
        assert row is not None and row.status == "failed" and "not allowed" in row.call_error


async def test_claimed_callback_can_no_longer_be_cancelled_or_moved(stack: Stack) -> None:
    reference = await stack.book(new_phone())
    await stack.voice.run_once()
    with pytest.raises(StateError):
        await stack.support.do_cancel_callback(reference, actor="customer")
    with pytest.raises(StateError):
        await stack.support.do_reschedule_callback(
            reference, datetime.now(timezone.utc) + timedelta(hours=1))


async def test_cancelled_or_moved_callbacks_are_not_called(stack: Stack,
                                                           fake_twilio: FakeTwilio) -> None:
    cancelled, moved = new_phone(), new_phone()
    await stack.support.do_cancel_callback(await stack.book(cancelled, in_seconds=-1))
    await stack.support.do_reschedule_callback(
        await stack.book(moved, in_seconds=-1), datetime.now(timezone.utc) + timedelta(hours=2))
    assert await stack.voice.run_once() == []
    assert calls_to(fake_twilio, cancelled) == calls_to(fake_twilio, moved) == []


async def test_a_callback_found_too_late_is_missed(stack: Stack,
                                                   fake_twilio: FakeTwilio) -> None:
    phone = new_phone()
    reference = await stack.book(phone, in_seconds=-2000)
    [taken] = await stack.voice.run_once()
    assert taken.status == "missed"
    assert calls_to(fake_twilio, phone) == []
    assert stack.frames()[-1]["state"] == "ended"
    assert any("missed" in e["message"]["text"] for t, e in stack.events if e.get("message"))
    audit = await stack.support.audit_log("callback", reference)
    assert audit[-1].action == "callback.missed"


async def test_placing_fails_for_good_marks_it_failed(stack: Stack,
                                                      fake_twilio: FakeTwilio) -> None:
    phone = new_phone()
    reference = await stack.book(phone)
    fake_twilio.fail(3, 503, method="POST", path_contains="/Calls.json")
    await stack.voice.run_once()
    row = await stack.voice.store.get(reference)
    assert row is not None and row.status == "failed" and "503" in (row.call_error or "")
    assert calls_to(fake_twilio, phone) == []


async def test_stale_claim_after_a_crash_is_retried_once(stack: Stack,
                                                         fake_twilio: FakeTwilio) -> None:
    phone = new_phone()
    reference = await stack.book(phone)
    # a process claimed it and died before placing the call
    now = db.utcnow()
    [claimed] = await stack.voice.store.do_claim_due_callbacks(now)
    assert claimed.status == "calling" and claimed.call_sid is None
    assert await stack.voice.run_once(now + timedelta(seconds=10)) == []  # not stale yet
    [again] = await stack.voice.run_once(now + timedelta(seconds=61))
    assert again.reference == reference and again.attempts == 2
    [call] = calls_to(fake_twilio, phone)
    row = await stack.voice.store.get(reference)
    assert row is not None and row.call_sid == call["sid"]


async def test_stale_claim_adopts_a_call_twilio_already_has(stack: Stack,
                                                            fake_twilio: FakeTwilio) -> None:
    phone = new_phone()
    reference = await stack.book(phone)
    now = db.utcnow()
    [claimed] = await stack.voice.store.do_claim_due_callbacks(now)
    # the call was created, but the process died before storing its SID
    call = await stack.api.client.calls.create_async(to=phone, from_=VOICE_FROM,
                                                     twiml="<Response/>")
    await stack.voice.run_once(now + timedelta(seconds=61))
    assert len(calls_to(fake_twilio, phone)) == 1
    row = await stack.voice.store.get(reference)
    assert row is not None and row.call_sid == call.sid and row.status == "calling"


async def test_stale_twice_gives_up(stack: Stack) -> None:
    reference = await stack.book(new_phone())
    now = db.utcnow()
    [claimed] = await stack.voice.store.do_claim_due_callbacks(now)
    again = await stack.voice.store.do_reclaim_stale(claimed, now + timedelta(seconds=61))
    assert again is not None and again.attempts == 2
    final = await stack.voice.store.do_reclaim_stale(again, now + timedelta(seconds=200))
    assert final is not None and final.status == "failed"
    assert (await stack.voice.store.get(reference)).status == "failed"  # type: ignore[union-attr]


# ---------------------------------------------------------- status callbacks


async def _placed(stack: Stack, fake: FakeTwilio) -> Tuple[str, str]:
    phone = new_phone()
    reference = await stack.book(phone)
    await stack.voice.run_once()
    [call] = calls_to(fake, phone)
    return reference, call["sid"]


async def test_status_callbacks_update_the_callback(stack: Stack,
                                                    fake_twilio: FakeTwilio) -> None:
    reference, sid = await _placed(stack, fake_twilio)
    voice = stack.voice
    assert await voice.handle_status({"CallSid": sid, "CallStatus": "initiated"},
                                     reference) == "unchanged"
    assert await voice.handle_status({"CallSid": sid, "CallStatus": "in-progress"},
                                     reference) == "in_progress"
    row = await voice.store.get(reference)
    assert row is not None and row.call_started_at is not None
    assert stack.frames()[-1]["state"] == "in_progress"
    # late "ringing" after "in-progress" does not go back
    assert await voice.handle_status({"CallSid": sid, "CallStatus": "ringing"},
                                     reference) == "unchanged"
    assert await voice.handle_status({"CallSid": sid, "CallStatus": "completed",
                                      "CallDuration": "42"}, reference) == "completed"
    row = await voice.store.get(reference)
    assert row is not None and row.status == "completed" and row.call_ended_at is not None
    assert stack.frames()[-1] == {"type": "call", "callback": reference, "state": "ended",
                                  "status": "completed", "can_end": False}
    audit = [a.action for a in await stack.support.audit_log("callback", reference)]
    assert audit == ["callback.scheduled", "callback.calling", "callback.in_progress",
                     "callback.completed"]
    assert await voice.handle_status({"CallSid": "CA" + "0" * 32, "CallStatus": "completed"},
                                     None) == "unknown_call"


async def test_no_answer(stack: Stack, fake_twilio: FakeTwilio) -> None:
    reference, sid = await _placed(stack, fake_twilio)
    assert await stack.voice.handle_status({"CallSid": sid, "CallStatus": "no-answer"},
                                           reference) == "no_answer"
    assert any("could not reach you" in e["message"]["text"]
               for t, e in stack.events if e.get("message"))


def _request(path: str, query: str, params: Dict[str, str], signature: str) -> Any:
    body = urlencode(params).encode()
    args = dict(p.split("=", 1) for p in query.split("&") if p)
    return SimpleNamespace(body=body, path=path, query_string=query, args=args,
                           headers={"X-Twilio-Signature": signature},
                           remote_addr="127.0.0.1", ip="127.0.0.1")


async def test_status_route_checks_the_signature_and_dedupes(
        stack: Stack, config: TwilioConfig, fake_twilio: FakeTwilio) -> None:
    reference, sid = await _placed(stack, fake_twilio)
    channel = TwilioConversationsInput(config, voice_config(config))
    try:
        query = f"callback={reference}"
        params = {"CallSid": sid, "CallStatus": "in-progress", "AccountSid": config.account_sid
                  or "", "To": "+49", "Blank": ""}
        url = f"{PUBLIC_URL}{STATUS_PATH}?{query}"
        good = sign(AUTH_TOKEN, url, params)
        forged = await channel._voice_status(_request(STATUS_PATH, query, params, "Zm9yZ2Vk"))
        assert forged.status == 403
        other_query = await channel._voice_status(
            _request(STATUS_PATH, "callback=C-999999", params, good))
        assert other_query.status == 403  # the query is signed too
        first = await channel._voice_status(_request(STATUS_PATH, query, params, good))
        assert first.status == 200 and b'"duplicate":false' in first.body
        again = await channel._voice_status(_request(STATUS_PATH, query, params, good))
        assert again.status == 200 and b'"duplicate":true' in again.body
        assert channel.voice is not None
        await channel.voice.idle()
        row = await stack.voice.store.get(reference)
        assert row is not None and row.status == "in_progress"
    finally:
        await channel.close()


async def test_status_route_without_voice_settings_is_503(config: TwilioConfig) -> None:
    channel = TwilioConversationsInput(config, voice_config(config, voice_from=None))
    try:
        params = {"CallSid": "CA1", "CallStatus": "completed"}
        signature = sign(AUTH_TOKEN, f"{PUBLIC_URL}{STATUS_PATH}", params)
        answer = await channel._voice_status(_request(STATUS_PATH, "", params, signature))
        assert answer.status == 503
    finally:
        await channel.close()


# ------------------------------------------------------------------- end call


async def test_end_call_completes_the_ongoing_call(stack: Stack,
                                                   fake_twilio: FakeTwilio) -> None:
    nothing = await stack.voice.end_call("widget:cust-voice")
    assert nothing["code"] == "no_call"
    reference, sid = await _placed(stack, fake_twilio)
    await asyncio.get_running_loop().run_in_executor(
        None, fake_twilio.advance_call, sid, "in-progress")
    await stack.voice.handle_status({"CallSid": sid, "CallStatus": "in-progress"}, reference)
    frame = await stack.voice.end_call("widget:cust-voice", reference)
    assert frame == {"type": "call", "callback": reference, "state": "ended",
                     "status": "completed", "can_end": False}
    [call] = [c for c in fake_twilio.calls() if c["sid"] == sid]
    assert call["status"] == "completed"
    row = await stack.voice.store.get(reference)
    assert row is not None and row.status == "completed"
    assert (await stack.voice.end_call("widget:cust-voice"))["code"] == "no_call"


async def test_end_call_while_ringing_cancels_when_completed_is_refused(
        stack: Stack, fake_twilio: FakeTwilio) -> None:
    reference, sid = await _placed(stack, fake_twilio)
    fake_twilio.fail(1, 400, method="POST", path_contains=f"/Calls/{sid}")
    frame = await stack.voice.end_call("widget:cust-voice", reference)
    assert frame["state"] == "ended" and frame["status"] == "cancelled"
    [call] = [c for c in fake_twilio.calls() if c["sid"] == sid]
    assert call["status"] == "canceled"


async def test_a_lost_answer_to_the_call_does_not_place_a_second_call(
        stack: Stack, fake_twilio: FakeTwilio) -> None:
    """Twilio made the call but its answer never came (the client timed out): the retry
    must not call the customer a second time."""
    phone = new_phone()
    reference = await stack.book(phone)
    fake_twilio.fail(1, 500, delay=1.5, after=True, method="POST", path_contains="/Calls.json")
    await stack.voice.run_once()
    [call] = calls_to(fake_twilio, phone)
    row = await stack.voice.store.get(reference)
    assert row is not None and row.status == "calling" and row.call_sid == call["sid"]
