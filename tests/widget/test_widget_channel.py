"""The widget channel over real WebSockets against a running Rasa server with the trained model.

Each test uses its own customer id (its own conversation and rate limit) on the session's
embedded bot, whose widget limits are ``tests.servers.WIDGET_TEST_ENV``: 12 messages per
60 s, 3 connections, 500 characters, 8 KiB frames, 2 s to say hello, no token leeway.
"""
from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from typing import Any, Dict, List

import pytest

from tests.servers import WIDGET_TEST_ORIGIN
from tests.widget.conftest import WidgetClient, new_user, rest, token_for

pytestmark = pytest.mark.model

GREETING = (
    "Hi! I'm the Northwind Shop assistant. I can track orders, answer questions about "
    "delivery, refunds and payments, open a ticket or book a call-back. What can I do for you?"
)


def rows(bot: Any, conversation_id: str) -> List[Dict[str, Any]]:
    """The stored messages of a conversation, straight from the support database."""
    path = bot.support_db_url.replace("sqlite:///", "")
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        return [
            dict(row)
            for row in db.execute(
                "SELECT m.id, m.client_id, m.sender, m.text, m.status, m.session, m.payload "
                "FROM chat_messages m JOIN conversations c ON c.id = m.conversation_pk "
                "WHERE c.conversation_id = ? ORDER BY m.id",
                (conversation_id,),
            )
        ]


async def wait_for(predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.2)


# ------------------------------------------------------------------ auth


async def test_hello_with_missing_forged_or_expired_token_is_closed(widget_bot: Any) -> None:
    user = new_user()
    cases = [
        (None, "missing_token", 4001),
        (token_for(user, secret="forged-secret-forged-secret-forged-secret"), "invalid_token", 4001),
        (token_for(user, ttl=-5), "token_expired", 4002),
    ]
    for token, code, close_code in cases:
        client = await WidgetClient.open(widget_bot)
        await client.send({"type": "hello", "token": token})
        error = await client.expect("error")
        assert error["code"] == code
        assert await client.close_code() == close_code
    assert rows(widget_bot, f"widget:{user}") == []


async def test_hello_must_come_first_and_in_time(widget_bot: Any) -> None:
    client = await WidgetClient.open(widget_bot)
    await client.send({"type": "message", "client_id": "x", "text": "hi"})
    assert (await client.expect("error"))["code"] == "hello_required"
    assert await client.close_code() == 4001

    silent = await WidgetClient.open(widget_bot)
    started = time.monotonic()
    assert await silent.close_code() == 4001  # WIDGET_AUTH_TIMEOUT=2
    assert time.monotonic() - started < 15


async def test_origin_not_on_the_allow_list_is_refused(widget_bot: Any) -> None:
    client = await WidgetClient.open(widget_bot, origin="http://evil.test")
    assert await client.close_code() == 4003
    response = rest(widget_bot, "GET", "/faq/search", params={"q": "refund"},
                    origin="http://evil.test")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_rest_requires_a_valid_token(widget_bot: Any) -> None:
    user = new_user()
    assert rest(widget_bot, "GET", "/history").json()["error"]["code"] == "missing_token"
    forged = rest(widget_bot, "GET", "/history",
                  token=token_for(user, secret="x" * 40))
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "invalid_token"
    expired = rest(widget_bot, "GET", "/history", token=token_for(user, ttl=-1))
    assert expired.status_code == 401 and expired.json()["error"]["code"] == "token_expired"
    ok = rest(widget_bot, "GET", "/history", token=token_for(user))
    assert ok.status_code == 200 and ok.json() == {"messages": [], "has_more": False}
    assert ok.headers["Access-Control-Allow-Origin"] == WIDGET_TEST_ORIGIN
    preflight = rest(widget_bot, "OPTIONS", "/history",
                     headers={"Access-Control-Request-Method": "GET",
                              "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code in (200, 204)
    assert preflight.headers["Access-Control-Allow-Origin"] == WIDGET_TEST_ORIGIN
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]


# ---------------------------------------------------------- conversation


async def test_message_is_stored_acked_answered_and_receipted(widget_bot: Any) -> None:
    user = new_user()
    client = await WidgetClient.connect(widget_bot, token_for(user, name="Dana"))
    assert client.welcome["conversation_id"] == f"widget:{user}"
    assert client.welcome["user"] == {"id": user, "name": "Dana"}
    assert client.welcome["session"] == 1
    assert client.welcome["limits"]["max_message_chars"] == 500

    turn = await client.turn("hi", client_id="c-hi-1")
    ack = turn["ack"]
    assert ack["duplicate"] is False
    assert ack["message"]["client_id"] == "c-hi-1"
    assert (ack["message"]["sender"], ack["message"]["text"], ack["message"]["status"]) == (
        "customer", "hi", "received")
    assert [(m["text"], m["buttons"][0]) for m in turn["replies"]] == [
        (GREETING, {"title": "Track my order", "payload": "/track_order"})
    ]
    kinds = [f["type"] for f in client.frames[1:]]
    assert kinds == ["ack", "receipt", "typing", "message", "typing", "receipt"], client.frames
    assert client.frames[2] == {"type": "receipt", "ids": [ack["message"]["id"]],
                                "status": "delivered"}
    assert client.frames[3] == {"type": "typing", "sender": "bot", "state": "start"}
    assert client.frames[5] == {"type": "typing", "sender": "bot", "state": "stop"}

    reply_id = turn["replies"][0]["id"]
    assert [(r["sender"], r["status"]) for r in rows(widget_bot, f"widget:{user}")] == [
        ("customer", "read"), ("bot", "sent")]
    await client.send({"type": "delivered", "ids": [reply_id]})
    await wait_for(lambda: rows(widget_bot, f"widget:{user}")[1]["status"] == "delivered")
    await client.send({"type": "read", "up_to": reply_id})
    await wait_for(lambda: rows(widget_bot, f"widget:{user}")[1]["status"] == "read")
    await client.close()


async def test_quick_reply_payload_reaches_the_bot_and_title_is_shown(widget_bot: Any) -> None:
    user = new_user()
    client = await WidgetClient.connect(widget_bot, token_for(user))
    greeting = await client.turn("hi")  # a payload counts only when the bot offered it
    assert {"title": "Refund policy", "payload": "/check_refund_policy"} in (
        greeting["replies"][-1]["buttons"])
    turn = await client.turn("Refund policy", payload="/check_refund_policy")
    assert turn["ack"]["message"]["text"] == "Refund policy"
    assert turn["replies"] and "refund" in turn["replies"][0]["text"].lower()
    tracker = widget_bot.tracker(f"widget:{user}")
    assert tracker["latest_message"]["intent"]["name"] == "check_refund_policy"
    stored = rows(widget_bot, f"widget:{user}")
    assert [(r["sender"], r["payload"]) for r in stored[:3]] == [
        ("customer", None), ("bot", None), ("customer", "/check_refund_policy")]
    await client.close()


async def test_resent_message_is_stored_and_answered_once(widget_bot: Any) -> None:
    user = new_user()
    client = await WidgetClient.connect(widget_bot, token_for(user))
    first = await client.turn("hello there", client_id="dup-1")
    again = await client.say("hello there", client_id="dup-1")
    assert again["duplicate"] is True
    assert again["message"]["id"] == first["ack"]["message"]["id"]
    late = await client.nothing_for(3.0)
    assert [f for f in late if f["type"] in ("message", "typing", "receipt")] == []
    assert [r["sender"] for r in rows(widget_bot, f"widget:{user}")] == ["customer", "bot"]
    user_events = [e for e in widget_bot.tracker(f"widget:{user}")["events"]
                   if e["event"] == "user"]
    assert len(user_events) == 1
    await client.close()


async def test_other_devices_see_the_customer_message_and_the_reply(widget_bot: Any) -> None:
    user = new_user()
    token = token_for(user)
    phone = await WidgetClient.connect(widget_bot, token)
    tablet = await WidgetClient.connect(widget_bot, token)
    turn = await phone.turn("hi")
    echoed = await tablet.expect("message", lambda f: f["message"]["sender"] == "customer")
    assert echoed["message"]["id"] == turn["ack"]["message"]["id"]
    reply = await tablet.expect("message", lambda f: f["message"]["sender"] == "bot")
    assert reply["message"]["text"] == GREETING
    # reading on the tablet clears the phone's unread state
    await tablet.send({"type": "read", "up_to": reply["message"]["id"]})
    synced = await phone.expect("receipt", lambda f: reply["message"]["id"] in f["ids"])
    assert synced == {"type": "receipt", "ids": [reply["message"]["id"]], "status": "read"}
    assert [f for f in await tablet.nothing_for(0.5)
            if f["type"] == "receipt" and reply["message"]["id"] in f["ids"]] == []
    await phone.close()
    await tablet.close()


async def test_replies_missed_while_offline_arrive_on_reconnect(widget_bot: Any) -> None:
    user = new_user()
    token = token_for(user)
    client = await WidgetClient.connect(widget_bot, token)
    ack = await client.say("hi")
    await client.close()  # the app went to the background before the bot answered
    conversation = f"widget:{user}"
    await wait_for(lambda: [r["sender"] for r in rows(widget_bot, conversation)]
                   == ["customer", "bot"])
    again = await WidgetClient.connect(widget_bot, token, after=ack["message"]["id"])
    assert again.welcome["has_more"] is True  # the customer's own message is older
    missed = await again.expect("message")
    assert (missed["message"]["sender"], missed["message"]["text"]) == ("bot", GREETING)
    assert await again.nothing_for(1.0) == []
    # a new device (no local state) gets the latest page of the conversation
    fresh = await WidgetClient.connect(widget_bot, token)
    assert fresh.welcome["has_more"] is False
    first = await fresh.expect("message")
    second = await fresh.expect("message")
    assert [first["message"]["text"], second["message"]["text"]] == ["hi", GREETING]
    await again.close()
    await fresh.close()


async def test_history_pages_over_websocket_and_rest(widget_bot: Any) -> None:
    user = new_user()
    token = token_for(user)
    client = await WidgetClient.connect(widget_bot, token)
    for text in ("hi", "thanks", "hello"):
        await client.turn(text)
    stored = rows(widget_bot, f"widget:{user}")
    assert len(stored) >= 6
    await client.send({"type": "history", "before": None, "limit": 2})
    page = await client.expect("history")
    assert [m["id"] for m in page["messages"]] == [r["id"] for r in stored[-2:]]
    assert page["has_more"] is True
    await client.send({"type": "history", "before": stored[-2]["id"], "limit": 100})
    older = await client.expect("history")
    assert [m["id"] for m in older["messages"]] == [r["id"] for r in stored[:-2]]
    assert older["has_more"] is False
    over_rest = rest(widget_bot, "GET", "/history", token=token,
                     params={"before": stored[-1]["id"], "limit": 3}).json()
    assert [m["id"] for m in over_rest["messages"]] == [r["id"] for r in stored[-4:-1]]
    bad = rest(widget_bot, "GET", "/history", token=token, params={"limit": "lots"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_request"
    await client.send({"type": "history", "limit": 1000})
    assert (await client.expect("error"))["code"] == "bad_request"
    await client.close()


# ---------------------------------------------------------------- limits


async def test_oversized_message_is_refused_and_not_stored(widget_bot: Any) -> None:
    user = new_user()
    client = await WidgetClient.connect(widget_bot, token_for(user))
    await client.send({"type": "message", "client_id": "big", "text": "x" * 501})
    error = await client.expect("error")
    assert (error["code"], error["client_id"]) == ("too_large", "big")
    assert rows(widget_bot, f"widget:{user}") == []
    await client.send({"type": "ping"})
    assert await client.expect("pong") == {"type": "pong"}  # still connected
    # a frame over WIDGET_MAX_FRAME_BYTES (8 KiB) closes the socket with 1009
    await client.send(json.dumps({"type": "message", "client_id": "huge", "text": "y" * 9000}))
    assert await client.close_code() == 1009
    assert rows(widget_bot, f"widget:{user}") == []


async def test_message_rate_per_user_over_all_connections(widget_bot: Any) -> None:
    user = new_user()
    token = token_for(user)
    one = await WidgetClient.connect(widget_bot, token)
    two = await WidgetClient.connect(widget_bot, token)
    for n in range(12):  # WIDGET_RATE_MESSAGES=12 per 60 s, shared by both devices
        await (one if n % 2 else two).say(f"message {n}", client_id=f"r-{n}")
    await one.send({"type": "message", "client_id": "r-12", "text": "one too many"})
    error = await one.expect("error", lambda f: f.get("client_id") == "r-12")
    assert error["code"] == "rate_limited" and 0 < error["retry_after"] <= 60
    # resending an already stored message is still acknowledged (nothing lost, nothing twice)
    again = await one.say("message 3", client_id="r-3")
    assert again["duplicate"] is True
    stored = rows(widget_bot, f"widget:{user}")
    assert [r["client_id"] for r in stored if r["sender"] == "customer"] == [
        f"r-{n}" for n in range(12)]
    await one.close()
    await two.close()


async def test_connections_per_user_are_limited(widget_bot: Any) -> None:
    user = new_user()
    token = token_for(user)
    open_ = [await WidgetClient.connect(widget_bot, token) for _ in range(3)]
    extra = await WidgetClient.open(widget_bot)
    await extra.send({"type": "hello", "token": token})
    assert (await extra.expect("error"))["code"] == "too_many_connections"
    assert await extra.close_code() == 4008
    await open_[0].close()
    await asyncio.sleep(0.5)
    replacement = await WidgetClient.connect(widget_bot, token)
    assert replacement.welcome["conversation_id"] == f"widget:{user}"
    for client in (*open_[1:], replacement):
        await client.close()


async def test_bad_frames_get_errors_and_the_connection_survives(widget_bot: Any) -> None:
    client = await WidgetClient.connect(widget_bot, token_for(new_user()))
    await client.send("this is not json")
    assert (await client.expect("error"))["code"] == "malformed_frame"
    await client.send("[1, 2]")
    assert (await client.expect("error"))["code"] == "malformed_frame"
    await client.send({"type": "teleport"})
    assert (await client.expect("error"))["code"] == "unknown_type"
    await client.send({"type": "message", "client_id": "has spaces", "text": "hi"})
    assert (await client.expect("error"))["code"] == "bad_request"
    await client.send({"type": "message", "client_id": "ok-1", "text": "   "})
    assert (await client.expect("error"))["code"] == "bad_request"
    await client.send({"type": "message", "client_id": "ok-2", "text": "hi",
                       "payload": "<script>"})
    assert (await client.expect("error"))["code"] == "bad_request"
    await client.send({"type": "typing", "state": "dancing"})
    assert (await client.expect("error"))["code"] == "bad_request"
    await client.send({"type": "read", "up_to": "all"})
    assert (await client.expect("error"))["code"] == "bad_request"
    await client.send({"type": "typing", "state": "start"})
    await client.send({"type": "typing", "state": "start"})  # within 2 s: dropped silently
    await client.send({"type": "ping"})
    assert await client.expect("pong") == {"type": "pong"}
    assert [f for f in await client.nothing_for(0.5) if f["type"] == "error"] == []
    await client.close()


# ------------------------------------------------------ token lifetime


async def test_expiring_token_is_refreshed_or_the_connection_closed(widget_bot: Any) -> None:
    user = new_user()
    refreshed = await WidgetClient.connect(widget_bot, token_for(user, ttl=4))
    warning = await refreshed.expect("token_expiring", timeout=10)
    assert warning["expires_at"] == refreshed.welcome["expires_at"]
    await refreshed.send({"type": "auth", "token": token_for(user, ttl=600)})
    ok = await refreshed.expect("auth_ok")
    assert ok["expires_at"] > time.time() + 500

    stale = await WidgetClient.connect(widget_bot, token_for(user, ttl=4))
    await stale.expect("token_expiring", timeout=10)
    assert await stale.close_code(timeout=20) == 4002
    await refreshed.send({"type": "ping"})
    assert await refreshed.expect("pong") == {"type": "pong"}  # the refreshed one lives on

    # a token of another user on a live connection closes it
    await refreshed.send({"type": "auth", "token": token_for(new_user())})
    assert (await refreshed.expect("error"))["code"] == "invalid_token"
    assert await refreshed.close_code() == 4001


# ------------------------------------------------- context and session


async def test_app_context_and_profile_reach_the_bot(widget_bot: Any) -> None:
    token = token_for("cust-anna", name="Anna Schmidt", email="anna@example.com",
                      app_version="5.2.0", device="iPhone 15", locale="de-DE")
    context = {"screen": "orders", "app_version": "5.2.1"}
    client = await WidgetClient.connect(widget_bot, token, context=context)
    turn = await client.turn("where is my order 104233?")
    assert any("104233" in reply["text"] for reply in turn["replies"]), turn["replies"]
    tracker = widget_bot.tracker("widget:cust-anna")
    metadata = [e for e in tracker["events"] if e["event"] == "user"][-1]["metadata"]
    assert metadata["customer"] == {"id": "cust-anna", "name": "Anna Schmidt",
                                    "email": "anna@example.com", "locale": "de-DE"}
    assert metadata["context"] == {"app_version": "5.2.1", "device": "iPhone 15",
                                   "locale": "de-DE", "screen": "orders"}
    assert tracker["slots"]["customer_id"] == "cust-anna"
    assert tracker["slots"]["customer_context"]["screen"] == "orders"
    assert tracker["slots"]["locale"] == "de"  # the token's de-DE: the bot speaks German
    assert any("Bestellung #104233" in reply["text"] for reply in turn["replies"]), turn["replies"]
    # a screen change is stored and goes with the next message
    await client.send({"type": "context", "context": {"screen": "cart"}})
    await client.turn("thanks")
    tracker = widget_bot.tracker("widget:cust-anna")
    metadata = [e for e in tracker["events"] if e["event"] == "user"][-1]["metadata"]
    assert metadata["context"]["screen"] == "cart"
    await client.close()


async def test_end_chat_starts_a_new_session_and_keeps_history(widget_bot: Any) -> None:
    user = new_user()
    token = token_for(user)
    client = await WidgetClient.connect(widget_bot, token)
    await client.turn("hi")
    await client.send({"type": "end"})
    ended = await client.expect("session_ended")
    assert ended == {"type": "session_ended", "session": 2}
    notice = await client.expect("message", lambda f: f["message"]["sender"] == "system")
    assert (notice["message"]["text"], notice["message"]["session"]) == ("Chat ended", 1)
    events = widget_bot.tracker(f"widget:{user}")["events"]
    assert [e["event"] for e in events].count("session_started") == 2
    turn = await client.turn("hello")
    assert turn["ack"]["message"]["session"] == 2
    assert [(r["sender"], r["session"]) for r in rows(widget_bot, f"widget:{user}")] == [
        ("customer", 1), ("bot", 1), ("system", 1), ("customer", 2), ("bot", 2)]
    # over REST too
    ended_rest = rest(widget_bot, "POST", "/session/end", token=token)
    assert ended_rest.status_code == 200 and ended_rest.json() == {"session": 3}
    await client.close()


# ------------------------------------------------------------------ FAQ


async def test_faq_search_is_open_to_anonymous_visitors(widget_bot: Any) -> None:
    found = rest(widget_bot, "GET", "/faq/search", params={"q": "refund"})
    assert found.status_code == 200
    results = found.json()["results"]
    assert results and all({"id", "title", "summary", "snippet"} <= set(r) for r in results)
    assert any("refund" in r["title"].lower() for r in results)
    article = rest(widget_bot, "GET", f"/faq/articles/{results[0]['id']}").json()
    assert article["title"] == results[0]["title"] and article["body"]
    assert "**" not in article["body"]
    missing = rest(widget_bot, "GET", "/faq/articles/no-such-article")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    forged = rest(widget_bot, "GET", "/faq/search", params={"q": "refund"},
                  token=token_for(new_user(), secret="z" * 40))
    assert forged.status_code == 401
    assert rest(widget_bot, "GET", "/faq/search", params={"q": ""}).json()["results"] == []
    too_long = rest(widget_bot, "GET", "/faq/search", params={"q": "x" * 501})
    assert too_long.status_code == 413


async def test_widget_assets_are_served(widget_bot: Any) -> None:
    config = rest(widget_bot, "GET", "/config").json()
    assert config["close_codes"]["token_expired"] == 4002
    assert config["limits"]["rate_messages"] == 12
    script = rest(widget_bot, "GET", "/widget.js")
    assert script.status_code == 200
    assert script.headers["Content-Type"].startswith("application/javascript")
    assert "SupportWidget" in script.text
