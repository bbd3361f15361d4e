"""Twilio faults: nothing acknowledged is lost, nothing is done twice.

* Outgoing: 5xx / 429 / timeout storms from the local fake Twilio while a handoff is set up,
  customer messages are forwarded and a call-back is placed: each is delivered exactly once
  (the fake's received requests and state, the stored rows); ``Retry-After`` (seconds or
  an HTTP date) is waited for, bounded by ``TWILIO_RETRY_AFTER_MAX``.
* Incoming: a webhook is stored in ``twilio_inbox`` before its 200; its processing fails
  (the database raises) for the first tries and is retried from the inbox, processed once; a
  duplicate delivery is processed once; a database that cannot store answers 500 (Twilio
  retries); a process killed (``kill -9``) while processing leaves rows that are processed
  after the restart, in order; a dead letter is replayed with the CLI.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, AsyncIterator, Dict, List, Tuple
from urllib.parse import urlencode

import pytest
from sqlalchemy.exc import OperationalError

from bot.twilio.bridge import EVENTS_PATH, TwilioBridge, TwilioConfig
from bot.twilio.channel import TwilioConversationsInput
from bot.twilio.client import RetryPolicy, TwilioApi, with_retries
from bot.twilio.inbox import InboxConfig
from bot.twilio.store import TwilioStore
from tests.twilio.conftest import ACCOUNT_SID, AUTH_TOKEN, PUBLIC_URL, hand_off
from tests.twilio.fake_twilio import FakeTwilio, sign

PROJECT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable

Published = List[Tuple[str, Dict[str, Any]]]


@pytest.fixture(scope="module")
def fake() -> Any:
    with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as fake_twilio:
        fake_twilio.route(PUBLIC_URL, "http://127.0.0.1:9")  # no bot listens here
        yield fake_twilio


@pytest.fixture
def config(fake: FakeTwilio, sqlite_url: str) -> TwilioConfig:
    """Patient enough for storms: 25 tries of 10-50 ms, 0.5 s per request (more tries than
    a storm below has faults: concurrent requests share the faults in any order, so one
    request may meet all of them); an inbox that retries after 20-40 ms."""
    fake.clear_faults()
    return TwilioConfig(
        account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, public_url=PUBLIC_URL,
        api_base=fake.base_url, timeout=0.5,
        policy=RetryPolicy(attempts=25, base=0.01, cap=0.05, retry_after_max=5.0),
        poll_interval=0.1, support_db_url=sqlite_url, handoff_delay=0.0, catchup_seconds=0,
        inbox=InboxConfig(max_attempts=4, backoff_base=0.02, backoff_max=0.04, lease=4.0,
                          poll=0.05, drain_timeout=2.0))


@pytest.fixture
async def bridge(config: TwilioConfig) -> AsyncIterator[Tuple[TwilioBridge, Published]]:
    store = TwilioStore.from_url(config.support_db_url)
    await store.create_schema()
    published: Published = []

    async def publish(topic: str, event: Dict[str, Any]) -> None:
        published.append((topic, event))

    made = TwilioBridge(config, store, publish=publish)
    try:
        yield made, published
    finally:
        await made.close()
        await store.dispose()


def _sql(url: str, query: str, *args: Any) -> List[Tuple[Any, ...]]:
    import sqlite3

    with sqlite3.connect(url.replace("sqlite:///", "")) as connection:
        return [tuple(r) for r in connection.execute(query, args).fetchall()]


def _request(params: Dict[str, str], token: str, signature: str = "") -> Any:
    """A Sanic-like request of a signed Conversations webhook."""
    body = urlencode(params).encode()
    signature = signature or sign(AUTH_TOKEN, PUBLIC_URL + EVENTS_PATH, params)
    return SimpleNamespace(body=body, path=EVENTS_PATH, query_string="", args={},
                           headers={"X-Twilio-Signature": signature,
                                    "I-Twilio-Idempotency-Token": token},
                           remote_addr="127.0.0.1", ip="127.0.0.1")


def _agent_webhook(sid: str, n: int, body: str) -> Dict[str, str]:
    return {"AccountSid": ACCOUNT_SID, "EventType": "onMessageAdded", "ConversationSid": sid,
            "MessageSid": f"IM{n:032d}", "Author": "maria", "Body": body, "Attributes": "{}",
            "Index": str(10 + n), "Source": "SDK"}


async def _until(what: str, probe: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await probe() if asyncio.iscoroutinefunction(probe) else probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def _handed_off(bridge_: TwilioBridge, config: TwilioConfig) -> Tuple[Dict[str, Any], str]:
    handed = await hand_off(config.support_db_url)
    assert await bridge_.on_handoff(handed["conversation_id"], handed["reference"]) is True
    link = await bridge_.store.link_for_ticket(handed["reference"])
    assert link is not None
    return handed, link.conversation_sid


# ------------------------------------------------------------ outgoing storms


async def test_handoff_through_a_5xx_429_and_timeout_storm_is_delivered_once(
        bridge: Tuple[TwilioBridge, Published], fake: FakeTwilio, config: TwilioConfig) -> None:
    bridge_, _ = bridge
    handed = await hand_off(config.support_db_url)
    name = handed["conversation_id"]
    # create: 503, 500, then a try that IS carried out but whose answer is lost (timeout)
    fake.fail(1, 503, method="POST", path_contains="/v1/Conversations")
    fake.fail(1, 500, method="POST", path_contains="/v1/Conversations")
    fake.fail(1, 500, delay=1.0, after=True, method="POST", path_contains="/v1/Conversations")
    fake.fail(2, 429, retry_after=0, method="POST", path_contains="/Participants")
    fake.storm(2, rate=0.5, statuses=(500, 502, 503), method="POST", path_contains="/Messages")
    fake.fail(2, 502, method="POST", path_contains="/Webhooks")
    fake.fail(1, 500, delay=1.0, method="POST", path_contains="/Webhooks")  # timeout
    before = fake.count_requests("POST", "/v1/Conversations")

    assert await bridge_.on_handoff(name, handed["reference"]) is True

    [remote] = [c for c in fake.conversations() if c["unique_name"] == name]
    sid = remote["sid"]
    assert len(fake.participants(sid)) == 1
    assert [(m["author"], m["body"]) for m in fake.messages(sid)] == [
        (handed["customer"], "Where is my parcel?"), ("support-bot", "Let me get a person."),
        (handed["customer"], "Order 104233, please hurry")], "each line once, in order"
    assert len(fake.webhooks(sid)) == 1
    assert fake.count_requests("POST", "/v1/Conversations") - before > 7, "retried"
    assert await bridge_.store.count_dead_letters() == 0
    assert _sql(config.support_db_url, "SELECT state, imported, conversation_sid FROM "
                "twilio_links") == [("active", 3, sid)]
    assert _sql(config.support_db_url, "SELECT status FROM tickets") == [("assigned",)]


async def test_customer_messages_through_a_storm_arrive_once(
        bridge: Tuple[TwilioBridge, Published], fake: FakeTwilio, config: TwilioConfig) -> None:
    bridge_, _ = bridge
    handed, sid = await _handed_off(bridge_, config)
    fake.storm(6, rate=0.6, statuses=(500, 503), method="POST", path_contains=f"{sid}/Messages",
               timeout_delay=1.0)
    fake.fail(2, 429, retry_after=0, method="POST", path_contains=f"{sid}/Messages")
    bodies = [f"storm message {i}" for i in range(8)]
    results = await asyncio.gather(*(bridge_.forward_customer_message(
        handed["conversation_id"], {"id": 500_000 + i, "text": body})
        for i, body in enumerate(bodies)))
    assert results == [True] * len(bodies)
    delivered = [m["body"] for m in fake.messages(sid) if m["body"].startswith("storm")]
    assert sorted(delivered) == sorted(bodies), "every message exactly once"
    assert await bridge_.store.count_dead_letters() == 0
    # forwarding again (a replayed bus event) sends nothing
    assert await bridge_.forward_customer_message(
        handed["conversation_id"], {"id": 500_000, "text": bodies[0]}) is True
    assert [m["body"] for m in fake.messages(sid)].count(bodies[0]) == 1


async def test_retry_after_is_honoured_in_seconds_and_as_a_date_and_bounded(
        fake: FakeTwilio, config: TwilioConfig) -> None:
    api = TwilioApi(ACCOUNT_SID, AUTH_TOKEN, timeout=2.0, api_base=fake.base_url)
    slept: List[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    policy = RetryPolicy(attempts=4, base=0.01, cap=0.02, retry_after_max=30.0)
    try:
        fake.fail(1, 429, retry_after=7, method="POST", path_contains="/v1/Conversations")
        made = await with_retries(lambda: api.conversations.create_async(friendly_name="a"),
                                  policy, sleep=sleep)
        assert made.sid.startswith("CH") and slept == [7.0]

        slept.clear()
        when = datetime.now(timezone.utc) + timedelta(seconds=20)
        fake.fail(1, 503, retry_after=format_datetime(when, usegmt=True), method="POST",
                  path_contains="/v1/Conversations")
        await with_retries(lambda: api.conversations.create_async(friendly_name="b"),
                           policy, sleep=sleep)
        assert len(slept) == 1 and 17.0 <= slept[0] <= 20.0, slept

        slept.clear()  # more than the bound: waits the bound
        fake.fail(1, 429, retry_after=3600, method="POST", path_contains="/v1/Conversations")
        await with_retries(lambda: api.conversations.create_async(friendly_name="c"),
                           policy, sleep=sleep)
        assert slept == [30.0]

        slept.clear()  # a 500 with Retry-After: ordinary backoff; a 503 without: too
        fake.fail(1, 500, retry_after=60, method="POST", path_contains="/v1/Conversations")
        fake.fail(1, 503, method="POST", path_contains="/v1/Conversations")
        await with_retries(lambda: api.conversations.create_async(friendly_name="d"),
                           policy, sleep=sleep)
        assert len(slept) == 2 and all(s <= 0.02 for s in slept), slept

        # really waited (asyncio.sleep), on a page fetch too (GET /v1/Conversations)
        fake.fail(1, 429, retry_after=1, method="GET", path_contains="/v1/Conversations")
        started = time.monotonic()
        await with_retries(lambda: api.conversations.page_async(page_size=1), policy)
        assert time.monotonic() - started >= 0.95
    finally:
        await api.close()


async def test_a_call_back_through_a_storm_is_placed_once(
        fake: FakeTwilio, config: TwilioConfig) -> None:
    from tests.twilio.test_voice import Stack, new_phone, voice_config

    stack = Stack(config, voice_config(config, policy=config.policy))
    await stack.twilio_store.create_schema()
    try:
        phone = new_phone()
        reference = await stack.book(phone)
        before = fake.count_requests("POST", "/Calls.json")
        fake.fail(1, 503, method="POST", path_contains="/Calls.json")
        fake.fail(1, 429, retry_after=0, method="POST", path_contains="/Calls.json")
        fake.fail(1, 500, delay=1.0, method="POST", path_contains="/Calls.json")  # timeout
        fake.fail(1, 502, method="POST", path_contains="/Calls.json")
        await stack.voice.run_once()
        calls = [c for c in fake.calls() if c["to"] == phone]
        assert len(calls) == 1
        assert fake.count_requests("POST", "/Calls.json") - before == 5
        row = await stack.voice.store.get(reference)
        assert row is not None and row.status == "calling" and row.call_sid == calls[0]["sid"]
        await stack.voice.run_once()  # nothing placed twice
        assert len([c for c in fake.calls() if c["to"] == phone]) == 1
    finally:
        await stack.close()


# ------------------------------------------------------------- incoming: inbox


async def test_a_failing_webhook_is_retried_from_the_inbox_and_processed_once(
        bridge: Tuple[TwilioBridge, Published], config: TwilioConfig, monkeypatch: Any) -> None:
    bridge_, published = bridge
    handed, sid = await _handed_off(bridge_, config)
    original = bridge_.store.do_agent_message
    calls = {"n": 0}

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise OperationalError("INSERT INTO chat_messages", {}, Exception("database is locked"))
        return await original(*args, **kwargs)

    monkeypatch.setattr(bridge_.store, "do_agent_message", flaky)
    channel = TwilioConversationsInput(config)
    channel.bridge = bridge_
    bridge_.inbox.start()
    answer = await channel._events(_request(_agent_webhook(sid, 1, "Maria here, checking."),
                                            "tok-flaky"))
    assert answer.status == 200 and json.loads(answer.body) == {"ok": True, "duplicate": False}

    async def done() -> bool:
        return (await bridge_.inbox.store.counts())["done"] == 1

    await _until("the webhook processed", done)
    [item] = await bridge_.inbox.store.items()
    assert (item.status, item.attempts, item.result) == ("done", 3, "delivered")
    assert "database is locked" in (item.last_error or "")
    assert calls["n"] == 3
    assert _sql(config.support_db_url, "SELECT COUNT(*) FROM chat_messages WHERE "
                "sender = 'agent'") == [(1,)]
    assert [t for t, _e in published].count("agent.message") == 1


async def test_a_duplicate_delivery_is_stored_and_processed_once(
        bridge: Tuple[TwilioBridge, Published], config: TwilioConfig) -> None:
    bridge_, published = bridge
    handed, sid = await _handed_off(bridge_, config)
    channel = TwilioConversationsInput(config)
    channel.bridge = bridge_
    params = _agent_webhook(sid, 2, "One answer only.")
    answers = [await channel._events(_request(params, token)) for token in
               ("tok-a", "tok-a", "tok-b")]  # Twilio's retry, then a redelivery
    assert [a.status for a in answers] == [200, 200, 200]
    assert [json.loads(a.body)["duplicate"] for a in answers] == [False, True, True]
    assert len(await bridge_.inbox.store.items()) == 1
    bridge_.inbox.start()

    async def done() -> bool:
        return (await bridge_.inbox.store.counts())["done"] == 1

    await _until("processed", done)
    await bridge_.idle()
    assert await bridge_.inbox.store.counts() == {"pending": 0, "done": 1, "dead": 0}
    assert _sql(config.support_db_url, "SELECT text FROM chat_messages WHERE sender = 'agent'") \
        == [("One answer only.",)]
    assert [t for t, _e in published].count("agent.message") == 1


async def test_a_webhook_that_cannot_be_stored_is_answered_500(
        bridge: Tuple[TwilioBridge, Published], config: TwilioConfig, monkeypatch: Any) -> None:
    bridge_, _ = bridge
    channel = TwilioConversationsInput(config)
    channel.bridge = bridge_
    original = bridge_.inbox.store.do_accept

    async def down(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("INSERT INTO twilio_inbox", {}, Exception("disk I/O error"))

    monkeypatch.setattr(bridge_.inbox.store, "do_accept", down)
    params = _agent_webhook("CH" + "5" * 32, 3, "hello")
    answer = await channel._events(_request(params, "tok-down"))
    assert answer.status == 500, "not stored: Twilio must retry"
    monkeypatch.setattr(bridge_.inbox.store, "do_accept", original)
    again = await channel._events(_request(params, "tok-down"))
    assert again.status == 200 and json.loads(again.body)["duplicate"] is False
    assert len(await bridge_.inbox.store.items()) == 1


_CRASHING_PROCESSOR = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from bot.twilio.inbox import InboxConfig, InboxProcessor, InboxStore

    async def main(url, marker):
        store = InboxStore.from_url(url)
        processor = InboxProcessor(store, InboxConfig(lease=3.0, poll=0.05))

        async def handler(payload):  # the server dies in the middle of this one
            Path(marker).write_text(payload.get("MessageSid", ""))
            await asyncio.sleep(3600)

        processor.register("conversations", handler)
        processor.start()
        await asyncio.sleep(3600)

    asyncio.run(main(sys.argv[1], sys.argv[2]))
""")


async def test_rows_of_a_killed_process_are_processed_after_the_restart(
        bridge: Tuple[TwilioBridge, Published], config: TwilioConfig, tmp_path: Path) -> None:
    bridge_, published = bridge
    handed, sid = await _handed_off(bridge_, config)
    other = await hand_off(config.support_db_url)
    assert await bridge_.on_handoff(other["conversation_id"], other["reference"]) is True
    other_sid = (await bridge_.store.link_for_ticket(other["reference"])).conversation_sid
    # stored and acknowledged: three agent messages of one conversation, one of another
    for n, body in ((11, "first"), (12, "second"), (13, "third")):
        assert await bridge_.accept_webhook(_agent_webhook(sid, n, body), f"tok-k{n}")
    assert await bridge_.accept_webhook(_agent_webhook(other_sid, 14, "elsewhere"), "tok-k14")

    marker = tmp_path / "processing"
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    process = subprocess.Popen([PYTHON, "-c", _CRASHING_PROCESSOR, config.support_db_url,
                                str(marker)], cwd=PROJECT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        await _until("the server processing a row", marker.exists, timeout=60)
        assert marker.read_text() == f"IM{11:032d}"
    finally:
        os.kill(process.pid, signal.SIGKILL)  # kill -9 in the middle of the row
        process.wait(10)
    [claimed] = [i for i in await bridge_.inbox.store.items() if i.claimed_by]
    assert claimed.attempts == 1 and claimed.payload["Body"] == "first"

    # the restarted server: what was never claimed goes at once, the claimed row after its
    # lease; the conversation's order holds; each row exactly once
    started = time.monotonic()
    bridge_.inbox.start()

    async def all_done() -> bool:
        return (await bridge_.inbox.store.counts())["done"] == 4

    await _until("all rows processed", all_done, timeout=30)
    assert time.monotonic() - started < 15
    texts = [r[0] for r in _sql(config.support_db_url, "SELECT text FROM chat_messages WHERE "
                                "sender = 'agent' ORDER BY id")]
    assert sorted(texts) == ["elsewhere", "first", "second", "third"]
    ours = [t for t in texts if t != "elsewhere"]
    assert ours == ["first", "second", "third"], "in order within the conversation"
    assert texts[0] == "elsewhere", "the other conversation did not wait for the lease"
    assert (await bridge_.inbox.store.get(claimed.id)).attempts == 2
    assert [t for t, _e in published].count("agent.message") == 4


def _cli(url: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "bot.twilio.inbox", "--url", url, *argv], cwd=PROJECT,
                          env={**os.environ, "PYTHONPATH": str(PROJECT)}, capture_output=True,
                          text=True, timeout=120)


async def test_a_dead_letter_is_replayed_with_the_cli(
        bridge: Tuple[TwilioBridge, Published], config: TwilioConfig, monkeypatch: Any) -> None:
    bridge_, published = bridge
    bridge_.inbox.config = replace(bridge_.inbox.config, max_attempts=2)
    handed, sid = await _handed_off(bridge_, config)

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("INSERT INTO chat_messages", {}, Exception("no space left"))

    original = bridge_.store.do_agent_message
    monkeypatch.setattr(bridge_.store, "do_agent_message", broken)
    assert await bridge_.accept_webhook(_agent_webhook(sid, 21, "Replayed answer."), "tok-dl")
    bridge_.inbox.start()

    async def dead() -> bool:
        return (await bridge_.inbox.store.counts())["dead"] == 1

    await _until("a dead letter", dead)
    [item] = await bridge_.inbox.store.items("dead")
    assert item.attempts == 2 and "no space left" in (item.last_error or "")

    loop = asyncio.get_running_loop()
    listing = await loop.run_in_executor(None, _cli, config.support_db_url, "list")
    assert listing.returncode == 0 and item.dedupe_key in listing.stdout
    assert "no space left" in listing.stdout
    shown = await loop.run_in_executor(None, _cli, config.support_db_url, "show", str(item.id))
    assert json.loads(shown.stdout)["payload"]["Body"] == "Replayed answer."

    monkeypatch.setattr(bridge_.store, "do_agent_message", original)  # the fault is fixed
    replayed = await loop.run_in_executor(None, _cli, config.support_db_url, "replay", "--id",
                                          str(item.id))
    assert replayed.returncode == 0 and "Re-queued 1" in replayed.stdout, replayed.stderr

    async def done() -> bool:
        return (await bridge_.inbox.store.counts())["done"] == 1

    await _until("the replayed row processed by the running processor", done)
    assert _sql(config.support_db_url, "SELECT text FROM chat_messages WHERE sender = 'agent'") \
        == [("Replayed answer.",)]
    assert [t for t, _e in published].count("agent.message") == 1
    again = await loop.run_in_executor(None, _cli, config.support_db_url, "replay", "--id",
                                       str(item.id))
    assert again.returncode == 2 and "not dead" in again.stderr
    none = await loop.run_in_executor(None, _cli, config.support_db_url, "replay", "--dead")
    assert none.returncode == 2 and "No dead inbox rows" in none.stderr
