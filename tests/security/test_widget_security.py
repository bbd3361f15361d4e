"""The widget channel attacked from outside: tokens, WebSocket limits, customer text.

Every attack of the issue ("Trust boundary", parts 2, 5 and 6) against the REAL Rasa
server and action server (``embedded_bot``), over real WebSockets and HTTP, with the
test limits of ``tests.servers.WIDGET_TEST_ENV``: tokens must carry ``aud``
``northwind-chat-test`` and ``iss`` ``https://shop.test``, live at most 3600 s, no
leeway; 8 KiB frames; 2 s to say hello; 10 sockets per address waiting for hello;
30 frames at once, then 5 per second.
"""
from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from typing import Any, Dict, List

import jwt
import pytest
import websockets

from tests.servers import WIDGET_TEST_SECRET
from tests.widget.conftest import (
    TEST_AUDIENCE,
    TEST_ISSUER,
    WidgetClient,
    new_user,
    rest,
    token_for,
)

pytestmark = pytest.mark.model

INVALID = {"type": "error", "code": "invalid_token", "message": "The token is not valid."}
"""The one answer to every refused token, whatever the reason."""
TEN_YEARS = 10 * 365 * 24 * 3600
WORD_JOINER = "\u2060"


def rows(bot: Any, conversation_id: str) -> List[Dict[str, Any]]:
    """The stored messages of a conversation, straight from the support database."""
    with sqlite3.connect(bot.support_db_url.replace("sqlite:///", "")) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute(
            "SELECT m.id, m.client_id, m.sender, m.text, m.payload FROM chat_messages m "
            "JOIN conversations c ON c.id = m.conversation_pk "
            "WHERE c.conversation_id = ? ORDER BY m.id", (conversation_id,))]


def conversation_exists(bot: Any, conversation_id: str) -> bool:
    with sqlite3.connect(bot.support_db_url.replace("sqlite:///", "")) as db:
        return db.execute("SELECT 1 FROM conversations WHERE conversation_id = ?",
                          (conversation_id,)).fetchone() is not None


def signed(claims: Dict[str, Any], secret: str = WIDGET_TEST_SECRET) -> str:
    """A token with exactly these claims (the test secret: a genuine signature)."""
    return jwt.encode(claims, secret, algorithm="HS256")


def claims_for(user: str, **override: Any) -> Dict[str, Any]:
    now = int(time.time())
    claims = {"sub": user, "iat": now, "exp": now + 600, "aud": TEST_AUDIENCE,
              "iss": TEST_ISSUER, "name": "Mallory"}
    claims.update(override)
    return {key: value for key, value in claims.items() if value is not None}


async def closed_with(client: WidgetClient, timeout: float = 20.0) -> int:
    """Read (and record in ``client.frames``) every frame until the server closes the socket.

    Returns:
        The close code.
    """
    deadline = time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"the server did not close the socket in {timeout} s")
            await client.recv(remaining)
    except websockets.ConnectionClosed as closed:
        return closed.code
    except asyncio.TimeoutError:
        raise AssertionError(f"the server did not close the socket in {timeout} s") from None


async def refused_hello(bot: Any, token: Any) -> Dict[str, Any]:
    """Say hello with ``token``; return the error frame (the socket must close with 4001)."""
    client = await WidgetClient.open(bot)
    await client.send({"type": "hello", "token": token, "after": None, "context": {}})
    assert await closed_with(client, timeout=10) == 4001
    assert [f["type"] for f in client.frames] == ["error"]  # no welcome, nothing else
    return client.frames[0]


# ------------------------------------------------------------------ tokens


async def test_ten_year_token_is_refused(embedded_bot: Any) -> None:
    user = new_user("sec")
    token = token_for(user, ttl=TEN_YEARS)
    assert await refused_hello(embedded_bot, token) == INVALID
    response = rest(embedded_bot, "GET", "/history", token=token)
    assert response.status_code == 401
    assert response.json() == {"error": {"code": "invalid_token",
                                         "message": "The token is not valid."}}
    assert not conversation_exists(embedded_bot, f"widget:{user}")
    # one second over WIDGET_JWT_MAX_TTL (3600) is refused too, exactly 3600 s is fine
    assert await refused_hello(embedded_bot, token_for(user, ttl=3601)) == INVALID
    client = await WidgetClient.connect(embedded_bot, token_for(user, ttl=3600))
    assert client.welcome["conversation_id"] == f"widget:{user}"
    await client.close()


async def test_token_without_iat_or_exp_or_from_the_future_is_refused(embedded_bot: Any) -> None:
    user = new_user("sec")
    now = int(time.time())
    for claims in (
        claims_for(user, iat=None),                          # no iat
        claims_for(user, exp=None),                          # no exp
        claims_for(user, iat=now + 120, exp=now + 600),      # issued in the future
        claims_for(user, iat="yesterday"),                   # not a number
    ):
        assert await refused_hello(embedded_bot, signed(claims)) == INVALID
    assert not conversation_exists(embedded_bot, f"widget:{user}")


async def test_token_for_another_audience_or_issuer_is_refused(embedded_bot: Any) -> None:
    user = new_user("sec")
    for token in (
        token_for(user, audience="payments-api"),        # minted for another service
        token_for(user, issuer="https://evil.test"),     # by another issuer
        token_for(user, audience=None),                  # no aud at all
        token_for(user, issuer=None),                    # no iss at all
    ):
        assert await refused_hello(embedded_bot, token) == INVALID
        assert rest(embedded_bot, "GET", "/history", token=token).status_code == 401
    assert not conversation_exists(embedded_bot, f"widget:{user}")


async def test_every_refused_token_gets_the_same_answer(embedded_bot: Any) -> None:
    user = new_user("sec")
    tokens = {
        "forged signature": token_for(user, secret="forged-secret-forged-secret-forged!!"),
        "wrong audience": token_for(user, audience="payments-api"),
        "missing claim": signed(claims_for(user, iat=None)),
        "too long-lived": token_for(user, ttl=TEN_YEARS),
        "bad sub": signed(claims_for("../../etc/passwd")),
        "garbage": "not.a.token",
        "alg none": jwt.encode(claims_for(user), None, algorithm="none"),
    }
    frames = {reason: await refused_hello(embedded_bot, token) for reason, token in tokens.items()}
    assert frames == {reason: INVALID for reason in tokens}
    bodies = {reason: rest(embedded_bot, "GET", "/history", token=token).json()
              for reason, token in tokens.items()}
    assert bodies == {reason: {"error": {"code": "invalid_token",
                                         "message": "The token is not valid."}}
                      for reason in tokens}
    # re-authenticating a live connection gets the same answer and nothing else changes
    client = await WidgetClient.connect(embedded_bot, token_for(user))
    await client.send({"type": "auth", "token": tokens["wrong audience"]})
    assert await client.expect("error") == INVALID
    await client.send({"type": "ping"})
    assert await client.expect("pong") == {"type": "pong"}
    await client.close()
    # an expired genuine token keeps its own code: the widget fetches a new one
    expired = token_for(user, ttl=-5)
    client = await WidgetClient.open(embedded_bot)
    await client.send({"type": "hello", "token": expired})
    assert await client.expect("error") == {"type": "error", "code": "token_expired",
                                            "message": "The token has expired."}
    assert await client.close_code() == 4002


# ---------------------------------------------------------- WebSocket limits


async def test_oversized_frame_before_hello_is_refused_by_the_socket(embedded_bot: Any) -> None:
    user = new_user("sec")
    client = await WidgetClient.open(embedded_bot)
    # a genuine hello, padded to 200 KB: were it read and parsed, it would get a welcome
    big_hello = json.dumps({"type": "hello", "token": token_for(user), "after": None,
                            "context": {"screen": "x" * 200_000}})
    started = time.monotonic()
    await client.send(big_hello)
    assert await closed_with(client, timeout=10) == 1009
    assert time.monotonic() - started < 1.9  # refused at once, not at the 2 s hello timeout
    assert client.frames == []  # no welcome, no error frame: the frame was never parsed
    assert not conversation_exists(embedded_bot, f"widget:{user}")
    # a frame just over WIDGET_MAX_FRAME_BYTES (8192) is refused the same way
    client = await WidgetClient.open(embedded_bot)
    await client.send(json.dumps({"type": "ping", "pad": "y" * 8200}))
    assert await closed_with(client, timeout=10) == 1009
    assert client.frames == []


async def test_silence_before_hello_is_closed_after_the_timeout(embedded_bot: Any) -> None:
    client = await WidgetClient.open(embedded_bot)
    started = time.monotonic()
    assert await client.close_code(timeout=15) == 4001
    waited = time.monotonic() - started
    assert 1.5 <= waited < 5.0, waited  # WIDGET_AUTH_TIMEOUT=2


async def test_sockets_waiting_for_hello_are_capped_per_address(embedded_bot: Any) -> None:
    silent = [await WidgetClient.open(embedded_bot) for _ in range(10)]
    await asyncio.sleep(0.3)  # every handler is waiting for hello now
    started = time.monotonic()
    eleventh = await WidgetClient.open(embedded_bot)
    assert await eleventh.close_code(timeout=10) == 4029
    assert time.monotonic() - started < 1.5  # at once, not after the hello timeout
    # the ten are held only until the hello timeout, then closed with 4001
    codes = await asyncio.gather(*(client.close_code(timeout=15) for client in silent))
    assert codes == [4001] * 10
    # the slots are free again: a customer from the same address gets in
    client = await WidgetClient.connect(embedded_bot, token_for(new_user("sec")))
    assert client.welcome["type"] == "welcome"
    await client.close()


async def test_a_flood_of_history_frames_closes_the_socket(embedded_bot: Any) -> None:
    user = new_user("sec")
    client = await WidgetClient.connect(embedded_bot, token_for(user))
    await client.turn("hi")
    started = time.monotonic()
    sent = 0
    try:
        for _ in range(300):
            await client.send({"type": "history", "before": None, "limit": 100})
            sent += 1
    except websockets.ConnectionClosed:
        pass
    assert time.monotonic() - started < 2.0  # 300 frames in under 2 s (or closed before)
    assert await closed_with(client, timeout=20) == 1008
    elapsed = time.monotonic() - started
    served = [f for f in client.frames if f["type"] == "history"]
    errors = [f for f in client.frames if f["type"] == "error"]
    # WIDGET_FRAME_BURST=30 at once, then WIDGET_FRAME_RATE=5 per second
    assert len(served) <= 30 + 5 * elapsed + 1, (len(served), elapsed)
    assert len(served) < 300
    assert [e["code"] for e in errors] == ["rate_limited"]
    assert client.ws.close_reason == "rate_limited"
    # the customer can reconnect at once; the limit is per connection
    again = await WidgetClient.connect(embedded_bot, token_for(user))
    await again.send({"type": "history", "before": None, "limit": 2})
    assert len((await again.expect("history"))["messages"]) == 2
    await again.close()


# ------------------------------------------------- customer text is text


def _user_events(tracker: Dict[str, Any]) -> List[Dict[str, Any]]:
    return [e for e in tracker["events"] if e["event"] == "user"]


@pytest.mark.parametrize("command", ["/restart", "  /session_start", "/back", "/restart@1.0{}"])
async def test_typed_restart_and_session_commands_are_plain_text(
    embedded_bot: Any, command: str
) -> None:
    user = new_user("sec")
    conversation_id = f"widget:{user}"
    client = await WidgetClient.connect(embedded_bot, token_for(user))
    await client.turn("hi")
    assert embedded_bot.tracker(conversation_id)["slots"]["customer_id"] == user
    turn = await client.turn(command)
    assert turn["ack"]["message"]["text"] == command.strip()  # shown as typed
    assert turn["replies"], "the bot answers it like any other text"
    tracker = embedded_bot.tracker(conversation_id)
    kinds = [e["event"] for e in tracker["events"]]
    assert "restart" not in kinds and "undo" not in kinds, kinds
    assert kinds.count("session_started") == 1
    assert tracker["slots"]["customer_id"] == user  # nothing was reset
    typed = _user_events(tracker)[-1]
    assert typed["text"] == WORD_JOINER + command.strip()  # never starts with "/" for Rasa
    assert typed["parse_data"]["intent"]["name"] not in ("restart", "session_start", "back")
    assert len(typed["parse_data"]["intent_ranking"]) > 1  # ranked by the NLU, not unpacked
    # the customer and the agents see exactly what was typed
    assert [r["text"] for r in rows(embedded_bot, conversation_id)
            if r["sender"] == "customer"] == ["hi", command.strip()]
    await client.close()


async def test_typed_intent_with_entities_is_plain_text(embedded_bot: Any) -> None:
    user = new_user("sec")
    conversation_id = f"widget:{user}"
    client = await WidgetClient.connect(embedded_bot, token_for(user))
    await client.turn("hi")
    text = '/inform{"order_number":"104250","email":"attacker"}'
    await client.turn(text)
    tracker = embedded_bot.tracker(conversation_id)
    event = _user_events(tracker)[-1]
    assert event["text"] == WORD_JOINER + text
    parse = event["parse_data"]
    # not unpacked by Rasa's RegexMessageHandler (one ranked intent, confidence 1.0, and
    # the entities of the JSON): ranked by the NLU, entities only from the normal extractors
    assert len(parse["intent_ranking"]) > 1, parse
    assert all(e.get("extractor") != "RegexMessageHandler" for e in parse["entities"]), parse
    assert not any(e["entity"] == "email" for e in parse["entities"]), parse
    assert tracker["slots"].get("contact_email") in (None, "")
    assert tracker["slots"].get("customer_email") in (None, "")
    assert "restart" not in [e["event"] for e in tracker["events"]]
    assert [r["text"] for r in rows(embedded_bot, conversation_id)
            if r["sender"] == "customer"] == ["hi", text]
    await client.close()


async def test_payload_the_bot_did_not_offer_is_refused(embedded_bot: Any) -> None:
    user = new_user("sec")
    conversation_id = f"widget:{user}"
    client = await WidgetClient.connect(embedded_bot, token_for(user))
    # no bot message yet: nothing was offered
    await client.send({"type": "message", "client_id": "p-0", "text": "Track my order",
                       "payload": "/track_order"})
    refused = await client.expect("error", lambda f: f.get("client_id") == "p-0")
    assert (refused["code"], refused["client_id"]) == ("payload_not_offered", "p-0")
    assert rows(embedded_bot, conversation_id) == []
    greeting = await client.turn("hi")
    offered = [b["payload"] for b in greeting["replies"][-1]["buttons"]]
    assert offered == ["/track_order", "/check_refund_policy", "/contact_human_agent"]
    stored_before = rows(embedded_bot, conversation_id)
    events_before = len(embedded_bot.tracker(conversation_id)["events"])
    for n, payload in enumerate((
        "/cancel_order",                               # a real intent, not offered
        "/restart",                                    # Rasa's commands: never
        "/session_start",
        '/inform{"order_number":"104250"}',            # entities of the attacker's choice
        "/track_order@1.0",                            # an offered intent, dressed up
    )):
        await client.send({"type": "message", "client_id": f"p-{n + 1}",
                           "text": "Track my order", "payload": payload})
        error = await client.expect("error", lambda f, n=n: f.get("client_id") == f"p-{n + 1}")
        assert error["code"] == "payload_not_offered", (payload, error)
    assert [f for f in await client.nothing_for(1.0) if f["type"] in ("ack", "typing")] == []
    assert rows(embedded_bot, conversation_id) == stored_before  # nothing stored
    assert len(embedded_bot.tracker(conversation_id)["events"]) == events_before  # nor run
    await client.close()


async def test_offered_payload_is_accepted_once(embedded_bot: Any) -> None:
    user = new_user("sec")
    conversation_id = f"widget:{user}"
    client = await WidgetClient.connect(embedded_bot, token_for(user))
    await client.turn("hi")
    client_id = uuid.uuid4().hex
    turn = await client.turn("Track my order", payload="/track_order", client_id=client_id)
    assert turn["ack"]["message"]["text"] == "Track my order"
    assert turn["replies"], "the bot answers the quick reply"
    tracker = embedded_bot.tracker(conversation_id)
    assert tracker["latest_message"]["intent"]["name"] == "track_order"
    customer_rows = [r for r in rows(embedded_bot, conversation_id) if r["sender"] == "customer"]
    assert [(r["text"], r["payload"]) for r in customer_rows] == [
        ("hi", None), ("Track my order", "/track_order")]
    # a resend of the stored quick reply is a duplicate, not a refused payload
    again = await client.say("Track my order", client_id=client_id, payload="/track_order")
    assert again["duplicate"] is True
    # the greeting's buttons are no longer the latest: tapping one now is refused
    await client.send({"type": "message", "client_id": "late", "text": "Refund policy",
                       "payload": "/check_refund_policy"})
    late = await client.expect("error", lambda f: f.get("client_id") == "late")
    assert late["code"] == "payload_not_offered"
    await client.close()


# ----------------------------------------------------- the happy path still works


async def test_demo_shop_tokens_carry_the_checked_claims_and_open_the_chat(
    embedded_bot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from bot.demo.app import create_app
    from bot.settings import get_settings, reset_settings_cache

    for name in ("SUPPORT_VAR_DIR", "ORDERS_DB_URL", "WIDGET_JWT_SECRET", "WIDGET_JWT_AUDIENCE",
                 "WIDGET_JWT_ISSUER", "WIDGET_JWT_MAX_TTL"):
        monkeypatch.setenv(name, embedded_bot.env[name])
    monkeypatch.setenv("DEMO_TOKEN_TTL", str(2 * 3600))  # longer than the chat accepts
    reset_settings_cache()
    try:
        settings = get_settings()
        async with TestClient(TestServer(create_app(settings))) as shop:
            assert (await shop.post("/api/login", json={"customer_id": "cust-chloe"})).status \
                == 200
            issued = await (await shop.get("/api/token")).json()
    finally:
        reset_settings_cache()
    claims = jwt.decode(issued["token"], WIDGET_TEST_SECRET, algorithms=["HS256"],
                        audience=TEST_AUDIENCE, issuer=TEST_ISSUER)
    assert (claims["sub"], claims["aud"], claims["iss"]) == ("cust-chloe", TEST_AUDIENCE,
                                                             TEST_ISSUER)
    assert claims["exp"] - claims["iat"] == 3600  # capped at WIDGET_JWT_MAX_TTL
    assert issued["expires_at"] == claims["exp"]
    client = await WidgetClient.connect(embedded_bot, issued["token"])
    assert client.welcome["conversation_id"] == "widget:cust-chloe"
    assert client.welcome["expires_at"] == claims["exp"]  # no leeway in the tests
    await client.close()
