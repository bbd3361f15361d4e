"""The Twilio bridge without Rasa: the real ``twilio`` client against the local fake.

Signature checks, the handoff set-up (Conversation, participant, transcript, webhook),
webhooks (agent messages, echoes, duplicates, close), retries with backoff on 500/429/
timeouts, the dead-letter table, replay (delivered once) and the operator command.
"""
from __future__ import annotations

import asyncio
import json
import sqlite3
from typing import Any, Dict, List, Tuple

import pytest

from bot.twilio.bridge import ORIGIN, TwilioBridge
from bot.twilio.channel import signature_valid
from bot.twilio.client import RedirectingHttpClient, RetryPolicy, is_retryable, with_retries
from tests.twilio.conftest import AUTH_TOKEN, PUBLIC_URL, hand_off
from tests.twilio.fake_twilio import FakeTwilio, sign

Bridge = Tuple[TwilioBridge, List[Tuple[str, Dict[str, Any]]]]
EVENTS = "/webhooks/twilio_conversations/events"


def _db(url: str) -> sqlite3.Connection:
    connection = sqlite3.connect(url.replace("sqlite:///", ""))
    connection.row_factory = sqlite3.Row
    return connection


# ------------------------------------------------------------------ signatures


def test_signature_is_checked_against_the_public_url() -> None:
    params = {"EventType": "onMessageAdded", "Body": "Hello Anna", "Author": "maria",
              "ConversationSid": "CH" + "0" * 32}
    url = PUBLIC_URL + EVENTS
    good = sign(AUTH_TOKEN, url, params)
    assert signature_valid(AUTH_TOKEN, PUBLIC_URL, EVENTS, "", params, good)
    assert signature_valid(AUTH_TOKEN, PUBLIC_URL + "/", EVENTS, "", params, good)
    # forged / tampered / wrong URL / wrong token / missing
    assert not signature_valid(AUTH_TOKEN, PUBLIC_URL, EVENTS, "", params, "Zm9yZ2Vk")
    assert not signature_valid(AUTH_TOKEN, PUBLIC_URL, EVENTS, "",
                               {**params, "Body": "Send me your password"}, good)
    assert not signature_valid(AUTH_TOKEN, "http://127.0.0.1:5005", EVENTS, "", params, good)
    assert not signature_valid("another-token", PUBLIC_URL, EVENTS, "", params, good)
    assert not signature_valid(AUTH_TOKEN, PUBLIC_URL, EVENTS, "", params, None)
    # a query string is part of what Twilio signs
    signed_q = sign(AUTH_TOKEN, url + "?x=1", params)
    assert signature_valid(AUTH_TOKEN, PUBLIC_URL, EVENTS, "x=1", params, signed_q)
    assert not signature_valid(AUTH_TOKEN, PUBLIC_URL, EVENTS, "", params, signed_q)


def test_base_url_rewrite_and_bad_base() -> None:
    client = RedirectingHttpClient(api_base="http://127.0.0.1:9999/")
    assert client.rewrite("https://conversations.twilio.com/v1/Conversations?PageSize=1") \
        == "http://127.0.0.1:9999/v1/Conversations?PageSize=1"
    assert client.rewrite("https://api.twilio.com/2010-04-01/Accounts/AC1/Calls.json") \
        == "http://127.0.0.1:9999/2010-04-01/Accounts/AC1/Calls.json"
    assert client.rewrite("https://example.com/x") == "https://example.com/x"
    with pytest.raises(ValueError, match="TWILIO_API_BASE"):
        RedirectingHttpClient(api_base="ftp://nowhere")


def test_backoff_grows_is_jittered_and_capped() -> None:
    policy = RetryPolicy(attempts=6, base=0.5, cap=4.0)
    for attempt in range(8):
        ceiling = min(4.0, 0.5 * 2 ** attempt)
        delays = [policy.delay(attempt) for _ in range(50)]
        assert all(0 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jitter
    # Retry-After replaces the backoff (Twilio asked for it), bounded by retry_after_max
    assert policy.delay(0, retry_after=3) == 3
    assert policy.delay(0, retry_after=60) == 60
    assert RetryPolicy(cap=4.0, retry_after_max=10).delay(0, retry_after=3600) == 10
    assert policy.delay(5, retry_after=0) == 0


async def test_with_retries_only_retries_transient_failures() -> None:
    from twilio.base.exceptions import TwilioRestException

    from bot.twilio.client import RetriesExhausted

    slept: List[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    calls = {"n": 0}

    async def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise TwilioRestException(503, "https://x", "busy")
        return "ok"

    assert await with_retries(flaky, RetryPolicy(5, 0.1, 1.0), sleep=sleep) == "ok"
    assert calls["n"] == 3 and len(slept) == 2

    async def bad_request() -> None:
        raise TwilioRestException(400, "https://x", "bad")

    with pytest.raises(RetriesExhausted) as info:
        await with_retries(bad_request, RetryPolicy(5, 0.1, 1.0), sleep=sleep)
    assert info.value.attempts == 1
    assert is_retryable(asyncio.TimeoutError()) and is_retryable(
        TwilioRestException(429, "u", "slow down"))
    assert not is_retryable(TwilioRestException(404, "u", "gone"))


# ----------------------------------------------------------------- handoff


async def test_handoff_creates_the_conversation_with_the_transcript(
        bridge: Bridge, fake_twilio: FakeTwilio, config: Any) -> None:
    bridge_, _published = bridge
    handed = await hand_off(config.support_db_url)
    assert await bridge_.on_handoff(handed["conversation_id"], handed["reference"]) is True

    remote = fake_twilio.conversation(handed["conversation_id"])
    assert remote is not None, "unique name = our conversation id"
    attributes = json.loads(remote["attributes"])
    assert attributes["ticket"] == handed["reference"]
    assert attributes["conversation_id"] == handed["conversation_id"]
    assert attributes["customer"]["name"] == "Anna Schmidt"
    assert attributes["triage"]["category"] == "SHIPPING"
    assert attributes["context"]["screen"] == "orders"
    assert attributes["context"]["device"] == "Pixel 8"
    sid = remote["sid"]
    assert [p["identity"] for p in fake_twilio.participants(sid)] == [handed["customer"]]
    messages = fake_twilio.messages(sid)
    assert [(m["author"], m["body"]) for m in messages] == [
        (handed["customer"], "Where is my parcel?"),
        ("support-bot", "Let me get a person."),
        (handed["customer"], "Order 104233, please hurry"),
    ]
    start = handed["start"]
    assert messages[0]["date_created"] == start.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert all(json.loads(m["attributes"])["origin"] == ORIGIN for m in messages)
    [hook] = fake_twilio.webhooks(sid)
    assert hook["configuration"]["url"] == PUBLIC_URL + EVENTS
    assert hook["configuration"]["method"] == "POST"
    assert "onMessageAdded" in hook["configuration"]["filters"]
    assert "onConversationStateUpdated" in hook["configuration"]["filters"]
    [created] = [f for m, path, f, _h in fake_twilio.requests
                 if m == "POST" and path.endswith(f"{sid}/Webhooks")]
    assert created["Configuration.ReplayAfter"] == ["3"], \
        "what agents wrote before the webhook existed is replayed"
    with _db(config.support_db_url) as db:
        ticket = db.execute("SELECT status, assignee_id FROM tickets WHERE reference = ?",
                            (handed["reference"],)).fetchone()
        assert (ticket["status"], ticket["assignee_id"]) == ("assigned", None)
        assert db.execute("SELECT state FROM conversations WHERE conversation_id = ?",
                          (handed["conversation_id"],)).fetchone()[0] == "assigned"
        link = db.execute("SELECT state, imported, conversation_sid FROM twilio_links").fetchone()
        assert tuple(link) == ("active", 3, sid)
        assert db.execute("SELECT actor FROM audit_log WHERE action = 'ticket.claimed'")\
            .fetchone()[0] == "twilio"

    # the customer message that was imported is not sent a second time
    assert await bridge_.forward_customer_message(
        handed["conversation_id"], {"id": handed["message_id"],
                                    "text": "Order 104233, please hurry"}) is True
    assert len(fake_twilio.messages(sid)) == 3
    # a new one is, as the customer, with webhooks on (service webhooks expect its words)
    assert await bridge_.forward_customer_message(
        handed["conversation_id"], {"id": 999_001, "text": "Hello?"}) is True
    last = fake_twilio.messages(sid)[-1]
    assert (last["author"], last["body"]) == (handed["customer"], "Hello?")
    posted = [h for m, p, _f, h in fake_twilio.requests
              if m == "POST" and p.endswith(f"{sid}/Messages")]
    flags = [h.get("X-Twilio-Webhook-Enabled") for h in posted]
    assert flags == ["false"] * 3 + ["true"], "transcript: history; the customer: webhooks"
    # handing off again changes nothing
    assert await bridge_.on_handoff(handed["conversation_id"], handed["reference"]) is None
    assert len(fake_twilio.conversations()) >= 1 and len(fake_twilio.messages(sid)) == 4


async def test_webhooks_agent_message_echo_duplicate_and_close(
        bridge: Bridge, fake_twilio: FakeTwilio, config: Any) -> None:
    bridge_, published = bridge
    handed = await hand_off(config.support_db_url)
    await bridge_.on_handoff(handed["conversation_id"], handed["reference"])
    sid = fake_twilio.conversation(handed["conversation_id"])["sid"]
    base = {"ConversationSid": sid, "AccountSid": config.account_sid}

    agent = {**base, "EventType": "onMessageAdded", "MessageSid": "IM" + "1" * 32,
             "Author": "maria", "Body": "Hi Anna, I am looking at order 104233.",
             "Attributes": "{}", "Index": "4"}
    assert await bridge_.accept_webhook(agent, "token-1") is True
    assert await bridge_.accept_webhook(agent, "token-1") is False  # Twilio's retry
    assert await bridge_.accept_webhook(agent, "token-2") is False  # same message SID
    await bridge_.idle()
    topics = [t for t, _e in published]
    assert topics == ["ticket.claimed", "agent.message"]
    message = published[1][1]["message"]
    assert (message["sender"], message["sender_name"], message["text"]) == (
        "agent", "maria", "Hi Anna, I am looking at order 104233.")
    assert published[0][1]["agent_name"] == "maria"

    # our own posts (attributes or author) are not taken for agent messages
    echo = {**agent, "MessageSid": "IM" + "2" * 32, "Author": handed["customer"]}
    assert await bridge_.handle_webhook(echo) == "echo"
    ours = {**agent, "MessageSid": "IM" + "3" * 32, "Author": "maria",
            "Attributes": json.dumps({"origin": ORIGIN})}
    assert await bridge_.handle_webhook(ours) == "echo"
    assert await bridge_.handle_webhook({**agent, "ConversationSid": "CH" + "9" * 32}) \
        == "unknown_conversation"

    with _db(config.support_db_url) as db:
        rows = db.execute("SELECT sender, sender_name, text FROM chat_messages "
                          "WHERE sender = 'agent'").fetchall()
        assert [tuple(r) for r in rows] == [("agent", "maria",
                                             "Hi Anna, I am looking at order 104233.")]
        assert db.execute("SELECT first_response_at IS NOT NULL FROM tickets").fetchone()[0] == 1

    closed = {**base, "EventType": "onConversationStateUpdated", "StateFrom": "active",
              "StateTo": "closed"}
    assert await bridge_.accept_webhook(closed, "token-3") is True
    await bridge_.idle()
    assert published[-1] == ("ticket.resolved", {
        "conversation_id": handed["conversation_id"], "ticket": handed["reference"],
        "agent_name": "maria"})
    # the onConversationUpdated of the same close changes nothing
    assert await bridge_.handle_webhook({**base, "EventType": "onConversationUpdated",
                                         "State": "closed"}) == "already_closed"
    with _db(config.support_db_url) as db:
        assert db.execute("SELECT status FROM tickets").fetchone()[0] == "resolved"
        assert db.execute("SELECT state FROM conversations").fetchone()[0] == "resolved"
        assert db.execute("SELECT state FROM twilio_links").fetchone()[0] == "closed"


# ------------------------------------------------- retries and dead letters


async def test_transient_failures_are_retried(bridge: Bridge, fake_twilio: FakeTwilio,
                                              config: Any) -> None:
    bridge_, _ = bridge
    handed = await hand_off(config.support_db_url)
    fake_twilio.fail(1, 503, method="POST", path_contains="/v1/Conversations")
    fake_twilio.fail(1, 429, method="POST", path_contains="/Participants", retry_after=0)
    fake_twilio.fail(1, 500, delay=2.0, method="POST", path_contains="/Webhooks")  # timeout
    assert await bridge_.on_handoff(handed["conversation_id"], handed["reference"]) is True
    sid = fake_twilio.conversation(handed["conversation_id"])["sid"]
    assert len(fake_twilio.participants(sid)) == 1
    assert len(fake_twilio.webhooks(sid)) == 1
    assert bridge_.store and await bridge_.store.count_dead_letters() == 0


async def test_dead_letter_then_replay_delivers_once(
        bridge: Bridge, fake_twilio: FakeTwilio, config: Any, monkeypatch: Any,
        capsys: Any) -> None:
    bridge_, _ = bridge
    handed = await hand_off(config.support_db_url)
    await bridge_.on_handoff(handed["conversation_id"], handed["reference"])
    sid = fake_twilio.conversation(handed["conversation_id"])["sid"]
    before = len(fake_twilio.messages(sid))

    # 500, 500 and a timeout: all three tries fail → the dead-letter table
    fake_twilio.fail(2, 500, method="POST", path_contains=f"{sid}/Messages")
    fake_twilio.fail(1, 500, delay=2.0, method="POST", path_contains=f"{sid}/Messages")
    tries_before = fake_twilio.count_requests("POST", f"{sid}/Messages")
    message = {"id": 424_242, "text": "Is anyone there?"}
    assert await bridge_.forward_customer_message(handed["conversation_id"], message) is False
    assert fake_twilio.count_requests("POST", f"{sid}/Messages") - tries_before == 3
    assert len(fake_twilio.messages(sid)) == before
    [letter] = await bridge_.store.dead_letters()
    assert (letter.kind, letter.attempts, letter.status) == ("message", 3, "dead")
    assert letter.key == f"msg:{handed['conversation_id']}:424242"
    assert "timeout" in letter.error
    assert (await bridge_.health())["dead_letters"] == 1

    # the operator command lists and shows it (and replays it, see below)
    from bot.settings import reset_settings_cache
    from bot.twilio import deadletters

    monkeypatch.setenv("SUPPORT_DB_URL", config.support_db_url)
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", config.account_sid)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", config.auth_token)
    monkeypatch.setenv("TWILIO_API_BASE", fake_twilio.base_url)
    monkeypatch.setenv("TWILIO_PUBLIC_URL", PUBLIC_URL)
    monkeypatch.setenv("TWILIO_BACKOFF_BASE", "0.01")
    reset_settings_cache()
    try:
        def run(*argv: str) -> Tuple[int, str, str]:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(1) as pool:  # the command runs its own event loop
                code = pool.submit(deadletters.main, list(argv)).result()
            out = capsys.readouterr()
            return code, out.out, out.err

        code, out, _ = run("list")
        assert code == 0 and letter.key in out and "timeout" in out
        code, out, _ = run("show", str(letter.id))
        assert code == 0 and json.loads(out)["payload"]["body"] == "Is anyone there?"
        code, _, err = run("show", "99999")
        assert code == 2 and "No dead letter 99999" in err

        # replay: one 429 first (retried), then delivered — exactly once
        fake_twilio.fail(1, 429, method="POST", path_contains=f"{sid}/Messages")
        code, out, _ = run("replay", str(letter.id))
        assert code == 0 and "delivered" in out
        bodies = [m["body"] for m in fake_twilio.messages(sid)]
        assert bodies.count("Is anyone there?") == 1
        code, out, _ = run("replay", str(letter.id))  # again: nothing is sent
        assert code == 0
        assert [m["body"] for m in fake_twilio.messages(sid)].count("Is anyone there?") == 1
        code, out, _ = run("list")
        assert "No dead letters." in out
        code, out, _ = run("list", "--all", "--json")
        assert json.loads(out)[0]["status"] == "replayed"
    finally:
        reset_settings_cache()
    assert (await bridge_.health())["dead_letters"] == 0


async def test_failed_handoff_is_replayed_where_it_stopped(
        bridge: Bridge, fake_twilio: FakeTwilio, config: Any) -> None:
    bridge_, _ = bridge
    handed = await hand_off(config.support_db_url)
    # the 2nd transcript message fails every try: conversation made, 1 line imported
    original = bridge_.store.do_update_link

    async def fail_second_import(link_id: int, **values: Any) -> Any:
        if values.get("imported") == 1:
            fake_twilio.fail(3, 502, method="POST", path_contains="/Messages")
        return await original(link_id, **values)

    bridge_.store.do_update_link = fail_second_import  # type: ignore[assignment]
    assert await bridge_.on_handoff(handed["conversation_id"], handed["reference"]) is False
    bridge_.store.do_update_link = original  # type: ignore[assignment]
    sid = fake_twilio.conversation(handed["conversation_id"])["sid"]
    assert len(fake_twilio.messages(sid)) == 1
    [letter] = await bridge_.store.dead_letters()
    assert letter.kind == "handoff" and "502" in letter.error
    with _db(config.support_db_url) as db:
        assert db.execute("SELECT status FROM tickets").fetchone()[0] == "queued", \
            "the agent console keeps the ticket while Twilio has not got it"

    _after, ok = await bridge_.replay(letter.id)
    assert ok and _after.status == "replayed"
    assert [c["sid"] for c in fake_twilio.conversations()
            if c["unique_name"] == handed["conversation_id"]] == [sid]
    assert [m["body"] for m in fake_twilio.messages(sid)] == [
        "Where is my parcel?", "Let me get a person.", "Order 104233, please hurry"]
    assert len(fake_twilio.webhooks(sid)) == 1
    with _db(config.support_db_url) as db:
        assert db.execute("SELECT status FROM tickets").fetchone()[0] == "assigned"


async def test_health_reports_unreachable(bridge: Bridge, fake_twilio: FakeTwilio) -> None:
    bridge_, _ = bridge
    fake_twilio.fail(1, 500, method="GET", path_contains="/v1/Conversations")
    assert await bridge_.health() == {"configured": True, "reachable": False,
                                      "dead_letters": 0}


async def test_calls_endpoints_and_status_callbacks(fake_twilio: FakeTwilio) -> None:
    """The Voice part of the fake, for the call-back feature (driven by the real client)."""
    from aiohttp import web

    from bot.twilio.client import TwilioApi

    received: List[Dict[str, str]] = []

    async def callback(request: web.Request) -> web.Response:
        form = await request.post()
        url = PUBLIC_URL + "/calls/status"
        assert signature_valid(AUTH_TOKEN, PUBLIC_URL, "/calls/status", "", dict(form),
                               request.headers["X-Twilio-Signature"]), url
        received.append(dict(form))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/calls/status", callback)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    fake_twilio.route(PUBLIC_URL + "/calls", f"http://127.0.0.1:{port}/calls")
    api = TwilioApi(fake_twilio.account_sid, fake_twilio.auth_token, timeout=5,
                    api_base=fake_twilio.base_url)
    try:
        call = await api.client.calls.create_async(
            to="+4915112345678", from_="+15005550006", url=PUBLIC_URL + "/calls/twiml",
            status_callback=PUBLIC_URL + "/calls/status",
            status_callback_event=["ringing", "answered", "completed"])
        assert call.sid.startswith("CA") and call.status == "queued"
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, fake_twilio.advance_call, call.sid, "ringing")
        await loop.run_in_executor(None, fake_twilio.advance_call, call.sid, "in-progress")
        fetched = await api.client.calls(call.sid).fetch_async()
        assert fetched.status == "in-progress"
        updated = await api.client.calls(call.sid).update_async(status="completed")
        assert updated.status == "completed"
        await loop.run_in_executor(None, fake_twilio.wait_background)
        assert [r["CallStatus"] for r in received] == ["ringing", "in-progress", "completed"]
        assert received[-1]["CallSid"] == call.sid
    finally:
        await api.close()
        await runner.cleanup()


def test_blank_and_repeated_form_fields_are_part_of_the_signature() -> None:
    from urllib.parse import urlencode

    from bot.twilio.channel import FormParams

    params = {"EventType": "onMessageAdded", "ParticipantSid": "", "Body": "a+b & c=d ü"}
    good = sign(AUTH_TOKEN, PUBLIC_URL + EVENTS, params)
    parsed = FormParams.parse(urlencode(params).encode())
    assert parsed.first() == params
    assert signature_valid(AUTH_TOKEN, PUBLIC_URL, EVENTS, "", parsed, good)
    dropped = FormParams.parse(urlencode({k: v for k, v in params.items() if v}).encode())
    assert not signature_valid(AUTH_TOKEN, PUBLIC_URL, EVENTS, "", dropped, good)
    repeated = FormParams.parse(b"Filters=b&Filters=a&X=1")
    assert repeated.getlist("Filters") == ["b", "a"]
    with pytest.raises(ValueError):
        FormParams.parse(b"\xff\xfe")


async def test_messages_stored_during_the_set_up_are_posted_once(
        bridge: Bridge, fake_twilio: FakeTwilio, config: Any) -> None:
    from bot.support.chat import ChatStore

    bridge_, _ = bridge
    handed = await hand_off(config.support_db_url)
    material = await bridge_.store.handoff_material(handed["reference"])
    payload = bridge_._handoff_payload(material)
    chat = ChatStore.from_url(config.support_db_url)
    try:  # the bot's handoff reply and the customer's next words land after the read
        await chat.do_store_outgoing(handed["conversation_id"], "bot", "Passing you on.")
        late = await chat.do_store_customer_message(handed["conversation_id"], "late-1",
                                                    "Thanks!")
    finally:
        await chat.dispose()
    assert await bridge_.deliver("handoff", f"handoff:{handed['reference']}", payload,
                                 handed["conversation_id"])
    sid = fake_twilio.conversation(handed["conversation_id"])["sid"]
    assert [(m["author"], m["body"]) for m in fake_twilio.messages(sid)][-2:] == [
        ("support-bot", "Passing you on."), (handed["customer"], "Thanks!")]
    assert await bridge_.forward_customer_message(
        handed["conversation_id"], late.message.to_wire()) is True
    assert [m["body"] for m in fake_twilio.messages(sid)].count("Thanks!") == 1


async def test_customer_leaving_closes_the_twilio_conversation(
        bridge: Bridge, fake_twilio: FakeTwilio, config: Any) -> None:
    from datetime import timedelta

    bridge_, _ = bridge
    handed = await hand_off(config.support_db_url)
    await bridge_.on_handoff(handed["conversation_id"], handed["reference"])
    sid = fake_twilio.conversation(handed["conversation_id"])["sid"]
    await bridge_.on_conversation_ended({"conversation_id": handed["conversation_id"],
                                         "session": 2})
    await bridge_.idle()
    assert fake_twilio.conversation(sid)["state"] == "closed"
    assert fake_twilio.messages(sid)[-1]["body"] == "The customer ended the chat."
    with _db(config.support_db_url) as db:
        assert db.execute("SELECT status FROM tickets").fetchone()[0] == "resolved"
        assert db.execute("SELECT state FROM twilio_links").fetchone()[0] == "closed"
    assert await bridge_.forward_customer_message(
        handed["conversation_id"], {"id": 777, "text": "hello again"}) is None
    # webhook keys are pruned after a while; delivered-operation keys are kept
    await bridge_.accept_webhook({"EventType": "onMessageAdded", "MessageSid": "IMx",
                                  "ConversationSid": sid}, "tok-old")
    await bridge_.idle()
    assert await bridge_.store.do_prune_keys(timedelta(seconds=-1)) == 2
    assert await bridge_.store.is_processed(f"out:handoff:{handed['reference']}")


async def test_a_conversation_made_by_a_lost_try_is_found_by_its_unique_name(
        bridge: Bridge, fake_twilio: FakeTwilio, config: Any) -> None:
    bridge_, _ = bridge
    handed = await hand_off(config.support_db_url)
    # an earlier try created it, but its answer never arrived (no link was stored)
    earlier = await bridge_.api.conversations.create_async(
        unique_name=handed["conversation_id"], friendly_name="lost answer")
    assert await bridge_.on_handoff(handed["conversation_id"], handed["reference"]) is True
    link = await bridge_.store.link_for_ticket(handed["reference"])
    assert link is not None and link.conversation_sid == earlier.sid
    assert len(fake_twilio.messages(earlier.sid)) == 3
