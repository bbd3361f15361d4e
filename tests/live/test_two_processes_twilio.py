"""Two Rasa processes, both with the Twilio bridge and the call-back scheduler, ONE Twilio.

Rasa processes A and B (tests/live/conftest.py: the production configuration on PostgreSQL,
Redis and RabbitMQ, ``REDIS_URL`` set) are both configured for the same local Twilio fake
(tests/twilio/fake_twilio.py) with Voice call-backs on. Both follow the change feed for
handoffs and both poll for due call-backs; the fake's webhooks are routed to one process or
the other (:meth:`FakeTwilio.route`), as a load balancer without stickiness would.

Checked against what the fake recorded (REST requests, webhook deliveries) and the stored
rows (psycopg2 on the test's database): a handoff makes ONE Conversation, ONE participant,
ONE transcript import and ONE ``twilio_links`` row; an agent's message delivered to B reaches
the customer's socket on A once; closing the Conversation resolves the ticket once; a due
call-back is ONE call with ONE ``twilio_calls`` row whose status callbacks (to A and B
alternately, one delivered twice) are each applied once; and when the process placing a
call-back is killed (``kill -9``) after Twilio made the call but before its answer came, the
other process takes the stale claim over and adopts that call: still one call. That test
kills a process, so it runs last.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from tests.integration.conftest import (
    postgres_user,
    production_bot_started,
    redis_client,
    require_rabbitmq,
)
from tests.live.conftest import connection_owner, second_rasa
from tests.servers import REDIS_DB, REDIS_HOST, REDIS_PORT, BotFactory, BotServers, _stop
from tests.twilio.conftest import ACCOUNT_SID, AUTH_TOKEN, PUBLIC_URL, SUPPORT_LINE, VOICE_FROM
from tests.twilio.fake_twilio import Delivery, FakeTwilio
from tests.widget.conftest import WidgetClient, new_user, token_for

WAIT = 60.0
CALLBACK_POLL = 0.5
"""``TWILIO_CALLBACK_POLL``: both schedulers look for due call-backs this often."""
CALLBACK_STALE = 4
"""``TWILIO_CALLBACK_STALE``: a call-back left ``calling`` without a call SID this long was
left by a dead process and is taken over."""
QUIET = 3.0
"""Seconds in which nothing more may happen (several polls of both processes)."""


class Pair:
    """The fake Twilio and the two Rasa processes that use it."""

    def __init__(self, fake: FakeTwilio, a: BotServers, b: BotServers) -> None:
        self.fake, self.a, self.b = fake, a, b

    def to(self, bot: BotServers) -> None:
        """Route the fake's webhooks (signed for the public URL) to ``bot``."""
        self.fake.route(PUBLIC_URL, bot.rasa_url)

    def logs(self) -> str:
        return f"--- A\n{self.a.logs()}\n--- B\n{self.b.logs()}"

    def rows(self, query: str, *args: Any) -> List[Tuple[Any, ...]]:
        import psycopg2

        connection = psycopg2.connect(self.a.extra["pg_url"])
        try:
            with connection.cursor() as cursor:
                cursor.execute(query, args)
                return [tuple(r) for r in cursor.fetchall()]
        finally:
            connection.close()

    def posts(self, path: str) -> List[Dict[str, List[str]]]:
        """The form fields of every POST the fake got at exactly ``path``."""
        with self.fake._lock:
            return [f for m, p, f, _h in self.fake.requests if m == "POST" and p == path]


@pytest.fixture(scope="module")
def pair(bot_factory: BotFactory) -> Iterator[Pair]:
    user = postgres_user()
    redis_client().close()
    require_rabbitmq()
    with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as fake:
        env = {
            "REDIS_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}",
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_API_BASE": fake.base_url, "TWILIO_PUBLIC_URL": PUBLIC_URL,
            "TWILIO_POLL_INTERVAL": "0.2", "TWILIO_MAX_ATTEMPTS": "3",
            "TWILIO_BACKOFF_BASE": "0.05", "TWILIO_TIMEOUT": "10", "TWILIO_INBOX_POLL": "0.2",
            "TWILIO_VOICE_FROM": VOICE_FROM, "SUPPORT_LINE_NUMBER": SUPPORT_LINE,
            "TWILIO_CALLBACK_POLL": str(CALLBACK_POLL),
            "TWILIO_CALLBACK_STALE": str(CALLBACK_STALE),
        }
        with production_bot_started(bot_factory, "twtwo", user, env=env) as a:
            fake.route(PUBLIC_URL, a.rasa_url)
            b = second_rasa(a, "b")
            try:
                _both_run_twilio(a, b)
                yield Pair(fake, a, b)
            finally:
                _stop(b._rasa)


def _both_run_twilio(*bots: BotServers) -> None:
    """Wait until every process started its bridge (change feed, inbox) and its call-back
    scheduler: otherwise "once" could mean "only one process was running it"."""
    lines = ("Twilio Conversations bridge started", "Call-back scheduler started")
    deadline = time.monotonic() + WAIT
    while not all(line in bot.rasa_log.read_text(errors="replace")
                  for bot in bots for line in lines):
        if time.monotonic() > deadline:
            pytest.fail("the Twilio bridge or the call-back scheduler did not start in both "
                        "processes\n" + "\n".join(bot.logs() for bot in bots), pytrace=False)
        time.sleep(0.2)


async def _until(what: str, probe: Callable[[], Any], pair: Pair,
                 timeout: float = WAIT) -> Any:
    """Poll ``probe()`` (in a thread: it may block) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(probe)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{pair.logs()}")
        await asyncio.sleep(0.2)


def _handed_off_lines(pair: Pair, reference: str) -> Dict[str, int]:
    """How often each process logged that it handed ``reference`` to Twilio."""
    return {label: bot.rasa_log.read_text(errors="replace").count(f"Handed {reference} (")
            for label, bot in (("a", pair.a), ("b", pair.b))}


async def _later_frames(customer: WidgetClient) -> List[Dict[str, Any]]:
    """The frames that arrive in the next :data:`QUIET` seconds (not those read before)."""
    seen = len(customer.frames)
    await customer.nothing_for(QUIET)
    return customer.frames[seen:]


async def _in_thread(function: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(function, *args)


async def test_a_handoff_is_bridged_once_and_its_webhooks_act_once(pair: Pair) -> None:
    fake = pair.fake
    user = new_user("tw2")
    conversation_id = f"widget:{user}"
    customer = await WidgetClient.connect(pair.a, token_for(user, name="Erik"))  # on A
    turn = await customer.turn("I want to talk to a real person")
    assert any("person" in m["text"] for m in turn["replies"]), turn["replies"]

    def ready() -> Optional[Dict[str, Any]]:
        remote = fake.conversation(conversation_id)
        if not remote or not fake.webhooks(remote["sid"]):
            return None
        rows = pair.rows("SELECT state FROM twilio_links WHERE conversation_sid = %s",
                         remote["sid"])
        return remote if rows == [("active",)] else None

    remote = await _until("the Twilio Conversation", ready, pair)
    sid, reference = remote["sid"], json.loads(remote["attributes"])["ticket"]
    await asyncio.sleep(QUIET)  # both processes had the change and swept: nothing more

    # one Conversation, one participant, one transcript import, one webhook, one link
    assert [c["sid"] for c in fake.conversations()
            if json.loads(c["attributes"]).get("ticket") == reference] == [sid]
    assert [f["UniqueName"] for f in pair.posts("/v1/Conversations")
            if f.get("UniqueName") == [conversation_id]] == [[conversation_id]]
    assert [f["Identity"] for f in pair.posts(f"/v1/Conversations/{sid}/Participants")] \
        == [[user]]
    assert [p["identity"] for p in fake.participants(sid)] == [user]
    assert len(pair.posts(f"/v1/Conversations/{sid}/Webhooks")) == 1
    imported = [(m["author"], m["body"]) for m in fake.messages(sid)]
    posted = [(f["Author"][0], f["Body"][0])
              for f in pair.posts(f"/v1/Conversations/{sid}/Messages")]
    assert imported == posted and len(set(imported)) == len(imported), imported
    assert imported[0] == (user, "I want to talk to a real person")
    links = pair.rows("SELECT conversation_sid, participant_sid, imported, state "
                      "FROM twilio_links WHERE ticket_reference = %s", reference)
    assert len(links) == 1 and links[0][0] == sid and links[0][1] and links[0][3] == "active"
    assert links[0][2] == len(imported)
    [(owner, attempts, done_at)] = pair.rows(
        "SELECT k.owner, k.attempts, k.done_at FROM change_feed_claims k JOIN change_feed f "
        "ON f.id = k.change_id WHERE k.consumer = 'twilio.handoff' AND f.ticket = %s",
        reference)
    assert attempts == 1 and done_at is not None
    bridged_by = int(owner.split("-", 1)[0])
    assert bridged_by in (pair.a.rasa_pid, pair.b.rasa_pid), owner
    assert sorted(_handed_off_lines(pair, reference).values()) == [0, 1]
    assert pair.rows("SELECT status FROM tickets WHERE reference = %s", reference) \
        == [("assigned",)]

    # the customer writes on A: it reaches the Conversation once
    await customer.say("My parcel 104233 never arrived")
    words = (user, "My parcel 104233 never arrived")
    await _until("the customer's message in Twilio", lambda: words in [
        (m["author"], m["body"]) for m in fake.messages(sid)], pair)

    # the agent answers in Twilio; the webhook goes to B, the customer is on A
    pair.to(pair.b)
    _message, deliveries = await _in_thread(fake.agent_says, sid, "Maria",
                                            "Hi Erik, Maria here. Let me check 104233.")
    assert [d.status for d in deliveries] == [200], deliveries
    frame = await customer.expect("message", lambda f: f["message"]["sender"] == "agent")
    assert (frame["message"]["text"], frame["message"]["sender_name"]) == (
        "Hi Erik, Maria here. Let me check 104233.", "Maria")
    # Twilio retries the same webhook, this time to A: acknowledged, not acted on
    pair.to(pair.a)
    again: Delivery = await _in_thread(lambda: fake.send_webhook(
        deliveries[0].url, deliveries[0].params, token=deliveries[0].token))
    assert again.status == 200 and json.loads(again.body)["duplicate"] is True

    # the agent closes the Conversation; the state webhooks go to A
    closes = await _in_thread(fake.close_conversation, sid)
    assert closes and all(d.status == 200 for d in closes), closes
    rating = await customer.expect("rating_request")
    assert rating["ticket"] == reference and rating["agent"] == "Maria"
    late = await _later_frames(customer)  # a side effect run twice would show twice
    assert [f for f in late if f.get("type") in ("message", "rating_request")] == [], late

    shown = [f["message"]["text"] for f in customer.frames if f.get("type") == "message"
             and f["message"]["sender"] in ("agent", "system")]
    assert shown.count("Hi Erik, Maria here. Let me check 104233.") == 1, shown
    assert shown.count("Maria from our support team has joined the chat.") == 1, shown
    assert len([f for f in customer.frames if f.get("type") == "rating_request"]) == 1
    stored = pair.rows(
        "SELECT m.sender, m.text FROM chat_messages m JOIN conversations c ON c.id = "
        "m.conversation_pk WHERE c.conversation_id = %s AND (m.sender IN ('agent', 'system') "
        "OR m.text LIKE %s) ORDER BY m.id", conversation_id, f"%{reference} is resolved%")
    assert sorted(stored) == [  # each once (the join notice follows the reply it came with)
        ("agent", "Hi Erik, Maria here. Let me check 104233."),
        ("bot", next(text for sender, text in stored if sender == "bot")),
        ("system", "Maria from our support team has joined the chat.")], stored
    assert pair.rows("SELECT COUNT(*) FROM audit_log WHERE action = 'ticket.resolved' AND "
                     "object_id = %s", reference) == [(1,)]
    assert pair.rows("SELECT status FROM tickets WHERE reference = %s", reference) \
        == [("resolved",)]
    assert pair.rows("SELECT state FROM twilio_links WHERE ticket_reference = %s",
                     reference) == [("closed",)]
    inbox = pair.rows("SELECT payload->>'EventType', status, result FROM twilio_inbox "
                      "WHERE order_key = %s ORDER BY id", f"conversation:{sid}")
    assert all(status == "done" for _e, status, _r in inbox), inbox
    results = [result for _e, _s, result in inbox]
    assert results.count("delivered") == 1 and results.count("resolved") == 1, inbox
    await customer.close()


async def test_a_due_callback_is_called_once_and_its_status_callbacks_apply_once(
        pair: Pair) -> None:
    from bot.support.ops import SupportStore

    fake = pair.fake
    user = new_user("vc2")
    conversation_id = f"widget:{user}"
    phone = "+4915112345678"
    customer = await WidgetClient.connect(pair.b, token_for(user, name="Vera"))  # on B
    store = SupportStore.from_url(pair.a.support_db_url)
    try:
        booked = await store.do_schedule_callback(
            conversation_id, phone, datetime.now(timezone.utc), "Europe/Berlin",
            topic="refund", actor="customer")
    finally:
        await store.dispose()
    reference = booked.reference

    def calls() -> List[Dict[str, Any]]:
        return [c for c in fake.calls() if c["to"] == phone]

    [call] = await _until("the call-back's call", calls, pair)
    await asyncio.sleep(QUIET)  # both schedulers polled several times meanwhile
    assert [c["sid"] for c in calls()] == [call["sid"]]
    calls_path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
    assert [f["To"] for f in pair.posts(calls_path)] == [[phone]]
    assert call["_status_callback"] == \
        f"{PUBLIC_URL}/webhooks/twilio_conversations/voice/status?callback={reference}"
    sid = call["sid"]
    assert pair.rows(
        "SELECT c.status, t.call_sid, t.attempts FROM callbacks c JOIN twilio_calls t ON "
        "t.callback_id = c.id WHERE c.reference = %s", reference) == [("calling", sid, 1)]

    # Twilio's status callbacks, to A and B in turn; one is delivered twice, to both
    for status, bot in (("initiated", pair.a), ("ringing", pair.b), ("in-progress", pair.a)):
        pair.to(bot)
        deliveries = await _in_thread(fake.advance_call, sid, status)
        assert [(d.status, json.loads(d.body)["duplicate"]) for d in deliveries] \
            == [(200, False)], (status, deliveries)
    pair.to(pair.b)
    again = await _in_thread(lambda: fake.send_webhook(deliveries[0].url,
                                                       deliveries[0].params))
    assert again.status == 200 and json.loads(again.body)["duplicate"] is True
    connected = await customer.expect("call", lambda f: f["state"] == "in_progress")
    assert connected["callback"] == reference
    deliveries = await _in_thread(fake.advance_call, sid, "completed")
    assert [d.status for d in deliveries] == [200], deliveries
    ended = await customer.expect("call", lambda f: f["state"] == "ended")
    assert ended["status"] == "completed"

    await _until("the call-back completed", lambda: pair.rows(
        "SELECT status FROM callbacks WHERE reference = %s", reference) == [("completed",)],
        pair)
    late = await _later_frames(customer)
    assert [f for f in late if f.get("type") in ("message", "call")] == [], late
    assert [c["sid"] for c in calls()] == [sid] and len(pair.posts(calls_path)) == 1
    [(call_sid, call_status, attempts, started, finished)] = pair.rows(
        "SELECT t.call_sid, t.call_status, t.attempts, t.started_at, t.ended_at FROM "
        "twilio_calls t JOIN callbacks c ON c.id = t.callback_id WHERE c.reference = %s",
        reference)
    assert (call_sid, call_status, attempts) == (sid, "completed", 1)
    assert started is not None and finished is not None
    inbox = pair.rows("SELECT payload->'params'->>'CallStatus', status FROM twilio_inbox "
                      "WHERE order_key = %s ORDER BY id", f"call:{sid}")
    assert inbox == [(s, "done") for s in ("initiated", "ringing", "in-progress",
                                           "completed")], inbox
    notices = pair.rows(
        "SELECT m.text FROM chat_messages m JOIN conversations c ON c.id = m.conversation_pk "
        "WHERE c.conversation_id = %s AND m.sender = 'system' ORDER BY m.id", conversation_id)
    assert [text for (text,) in notices] == [
        f"We're calling you now at {phone} for your call-back {reference}.",
        f"Your call-back {reference} is connected.",
        f"Your call-back {reference} has ended. Thank you for talking to us."], notices
    shown = [f["message"]["text"] for f in customer.frames if f.get("type") == "message"
             and f["message"]["sender"] == "system"]
    assert shown == [text for (text,) in notices], shown
    await customer.close()


async def test_a_process_killed_while_placing_a_call_is_taken_over_without_a_second_call(
        pair: Pair) -> None:
    from bot.support.ops import SupportStore

    fake = pair.fake
    user = new_user("vc3")
    conversation_id = f"widget:{user}"
    phone = "+4915187650042"
    customer = await WidgetClient.connect(pair.a, token_for(user, name="Kai"))
    await customer.close()  # the conversation exists; its notices are checked as rows
    calls_path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
    before = len(pair.posts(calls_path))
    # Twilio makes the call, its answer never comes: the placing process waits for it
    fake.fail(1, 500, delay=120.0, after=True, method="POST", path_contains="/Calls.json")
    store = SupportStore.from_url(pair.a.support_db_url)
    try:
        reference = (await store.do_schedule_callback(
            conversation_id, phone, datetime.now(timezone.utc), "Europe/Berlin",
            topic="refund", actor="customer")).reference
    finally:
        await store.dispose()

    def calls() -> List[Dict[str, Any]]:
        return [c for c in fake.calls() if c["to"] == phone]

    [call] = await _until("the call in Twilio", calls, pair)
    assert len(pair.posts(calls_path)) == before + 1
    port = fake.client_port("POST", "/Calls.json")
    pids = (pair.a.rasa_pid, pair.b.rasa_pid)
    placing = connection_owner(port or 0, int(fake.base_url.rsplit(":", 1)[1]), pids)
    assert placing in pids, (port, pids)
    os.kill(placing, signal.SIGKILL)
    dead, survivor = (pair.a, pair.b) if placing == pair.a.rasa_pid else (pair.b, pair.a)
    await asyncio.to_thread(dead._rasa.wait, 10)
    assert pair.rows("SELECT c.status, t.call_sid, t.attempts FROM callbacks c JOIN "
                     "twilio_calls t ON t.callback_id = c.id WHERE c.reference = %s",
                     reference) == [("calling", None, 1)]

    # the survivor finds the claim stale, sees Twilio's call and adopts it
    adopted = await _until("the call adopted by the other process", lambda: pair.rows(
        "SELECT c.status, t.call_sid, t.attempts FROM callbacks c JOIN twilio_calls t ON "
        "t.callback_id = c.id WHERE c.reference = %s AND t.call_sid IS NOT NULL", reference),
        pair, timeout=CALLBACK_STALE + WAIT)
    assert adopted == [("calling", call["sid"], 2)]
    await asyncio.sleep(QUIET)
    assert [c["sid"] for c in calls()] == [call["sid"]]
    assert len(pair.posts(calls_path)) == before + 1
    assert f"adopted the call {call['sid']}" in survivor.rasa_log.read_text(errors="replace")

    pair.to(survivor)
    for status in ("in-progress", "completed"):
        deliveries = await _in_thread(fake.advance_call, call["sid"], status)
        assert [d.status for d in deliveries] == [200], (status, deliveries)
    await _until("the call-back completed", lambda: pair.rows(
        "SELECT status FROM callbacks WHERE reference = %s", reference) == [("completed",)],
        pair)
    notices = pair.rows(
        "SELECT m.text FROM chat_messages m JOIN conversations c ON c.id = m.conversation_pk "
        "WHERE c.conversation_id = %s AND m.sender = 'system' ORDER BY m.id", conversation_id)
    assert [text for (text,) in notices] == [
        f"We're calling you now at {phone} for your call-back {reference}.",
        f"Your call-back {reference} is connected.",
        f"Your call-back {reference} has ended. Thank you for talking to us."], notices
