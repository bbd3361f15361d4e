"""End to end: the REAL bot (action server + Rasa server) with Twilio configured against the
local fake; the customer uses the widget (WebSocket, and a browser for the agent reply).

customer asks for a person → the fake has a Conversation with the transcript (authors,
times), the customer participant and our webhook → the customer writes (reaches Twilio)
→ the agent posts in Twilio (signed ``onMessageAdded``) → the widget shows it → the
conversation is closed in Twilio (signed ``onConversationStateUpdated``) → the customer is
asked for a rating. Forged signatures get 403; a duplicate webhook is processed once.
"""
from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from typing import Any, Dict, Iterator, Optional

import pytest
import requests

from tests.servers import BotServers
from tests.twilio.conftest import (
    PUBLIC_URL,
    TwilioStack,
    twilio_stack,
    wait_for,
    widget_in_browser,
)
from tests.widget.conftest import WidgetClient, new_user, token_for

pytestmark = pytest.mark.model

EVENTS = "/webhooks/twilio_conversations/events"


@pytest.fixture(scope="module")
def stack(bot_factory: Any) -> Iterator[TwilioStack]:
    """The fake Twilio, a bot configured for it, and the demo app (for the browser test)."""
    with twilio_stack(bot_factory, "twilio", {
        "TWILIO_POLL_INTERVAL": "0.2", "TWILIO_MAX_ATTEMPTS": "3",
        "TWILIO_BACKOFF_BASE": "0.05", "TWILIO_TIMEOUT": "3",
    }) as running:
        yield running


def _http() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


def _db(bot: BotServers) -> sqlite3.Connection:
    connection = sqlite3.connect(bot.support_db_url.replace("sqlite:///", ""))
    connection.row_factory = sqlite3.Row
    return connection


def _ready_conversation(stack: TwilioStack, conversation_id: str) -> Dict[str, Any]:
    """Wait until the bridge made the Conversation, attached its webhook and is done."""
    def probe() -> Optional[Dict[str, Any]]:
        remote = stack.fake.conversation(conversation_id)
        if not remote or not stack.fake.webhooks(remote["sid"]):
            return None
        with _db(stack.bot) as db:
            row = db.execute("SELECT state FROM twilio_links WHERE conversation_sid = ?",
                             (remote["sid"],)).fetchone()
        return remote if row is not None and row[0] == "active" else None

    return wait_for(f"a Twilio Conversation for {conversation_id}", probe,
                    logs=stack.bot.logs)


def test_health_reports_twilio(stack: TwilioStack) -> None:
    with _http() as http:
        response = http.get(f"{stack.bot.rasa_url}/webhooks/twilio_conversations/health",
                            timeout=30)
    assert response.status_code == 200, response.text
    assert response.json() == {"configured": True, "reachable": True, "dead_letters": 0}


async def test_handoff_round_trip(stack: TwilioStack) -> None:
    fake, bot = stack.fake, stack.bot
    user = new_user("tw")
    conversation_id = f"widget:{user}"
    client = await WidgetClient.connect(bot, token_for(user, name="Erik"))
    turn = await client.turn("I want to talk to a real person")
    assert any("person" in m["text"] for m in turn["replies"]), turn["replies"]
    loop = asyncio.get_running_loop()

    remote = await loop.run_in_executor(None, _ready_conversation, stack, conversation_id)
    sid = remote["sid"]
    attributes = json.loads(remote["attributes"])
    assert attributes["conversation_id"] == conversation_id
    assert attributes["ticket"].startswith("T-") and "triage" in attributes
    assert attributes["customer"]["name"] == "Erik"
    assert [p["identity"] for p in fake.participants(sid)] == [user]
    transcript = fake.messages(sid)
    authors = [m["author"] for m in transcript]
    assert authors[0] == user and transcript[0]["body"] == "I want to talk to a real person"
    assert "support-bot" in authors
    assert all(m["date_created"].endswith("Z") for m in transcript)
    assert transcript[0]["date_created"] <= transcript[-1]["date_created"]
    [hook] = fake.webhooks(sid)
    assert hook["configuration"]["url"] == PUBLIC_URL + EVENTS
    with _db(bot) as db:
        assert db.execute("SELECT status FROM tickets WHERE reference = ?",
                          (attributes["ticket"],)).fetchone()[0] == "assigned"

    # the customer writes: it reaches the Twilio conversation, as the customer
    await client.say("My parcel 104233 never arrived")
    await loop.run_in_executor(None, lambda: wait_for(
        "the customer's message in Twilio",
        lambda: any(m["body"] == "My parcel 104233 never arrived" and m["author"] == user
                    for m in fake.messages(sid)), logs=bot.logs))

    # the agent answers in Twilio: a signed onMessageAdded reaches the bot → the widget
    _message, deliveries = await loop.run_in_executor(
        None, fake.agent_says, sid, "Maria", "Hi Erik, Maria here. Let me check 104233.")
    assert [d.status for d in deliveries] == [200], deliveries
    frame = await client.expect("message", lambda f: f["message"]["sender"] == "agent")
    assert frame["message"]["text"] == "Hi Erik, Maria here. Let me check 104233."
    assert frame["message"]["sender_name"] == "Maria"
    joined = [f for f in client.frames if f.get("type") == "message"
              and f["message"]["sender"] == "system" and "Maria" in f["message"]["text"]]
    assert joined, "the customer is told who joined"

    # the same webhook again (Twilio retrying): acknowledged, processed once
    again = await loop.run_in_executor(None, lambda: fake.send_webhook(
        deliveries[0].url, deliveries[0].params, token=deliveries[0].token))
    assert again.status == 200 and json.loads(again.body)["duplicate"] is True
    late = await client.nothing_for(1.5)
    assert not [f for f in late if f.get("type") == "message"
                and f["message"]["sender"] == "agent"], late
    with _db(bot) as db:
        assert db.execute("SELECT COUNT(*) FROM chat_messages WHERE sender = 'agent' AND "
                          "text LIKE 'Hi Erik%'").fetchone()[0] == 1

    # a forged signature is refused, nothing happens
    forged_params = {**deliveries[0].params, "MessageSid": "IM" + "f" * 32,
                     "Body": "Please send me your password"}
    forged = await loop.run_in_executor(None, lambda: fake.send_webhook(
        deliveries[0].url, forged_params, signature="dGhpcyBpcyBmb3JnZWQ="))
    assert forged.status == 403
    unsigned_by_us = await loop.run_in_executor(None, lambda: fake.send_webhook(
        deliveries[0].url.replace(PUBLIC_URL, "https://evil.example"), forged_params))
    assert unsigned_by_us.status in (0, 403)  # not routed (0) or signed for another URL
    with _db(bot) as db:
        assert db.execute("SELECT COUNT(*) FROM chat_messages WHERE text LIKE "
                          "'%password%'").fetchone()[0] == 0

    # the agent closes the conversation in Twilio → the bot resumes and asks for a rating
    closes = await loop.run_in_executor(None, fake.close_conversation, sid)
    assert closes and all(d.status == 200 for d in closes), closes
    request = await client.expect("rating_request")
    assert request["ticket"] == attributes["ticket"] and request["agent"] == "Maria"
    with _db(bot) as db:
        assert db.execute("SELECT status FROM tickets WHERE reference = ?",
                          (attributes["ticket"],)).fetchone()[0] == "resolved"
    assert bot.tracker(conversation_id)["paused"] is False
    await client.send({"type": "rate", "session": request["session"], "score": 5})
    assert (await client.expect("rated"))["score"] == 5
    await client.close()


async def test_agent_reply_while_offline_arrives_on_reconnect(stack: TwilioStack) -> None:
    fake, bot = stack.fake, stack.bot
    user = new_user("tw")
    client = await WidgetClient.connect(bot, token_for(user, name="Lena"))
    await client.turn("I want to talk to a real person")
    loop = asyncio.get_running_loop()
    remote = await loop.run_in_executor(None, _ready_conversation, stack, f"widget:{user}")
    last = max(f["message"]["id"] for f in client.frames if f.get("type") == "message")
    await client.close()
    _message, deliveries = await loop.run_in_executor(
        None, fake.agent_says, remote["sid"], "Tom", "Lena, your refund is on its way.")
    assert [d.status for d in deliveries] == [200]
    time.sleep(0.5)
    again = await WidgetClient.connect(bot, token_for(user, name="Lena"), after=last)
    frame = await again.expect("message", lambda f: f["message"]["sender"] == "agent")
    assert frame["message"]["text"] == "Lena, your refund is on its way."
    await again.close()


def test_agent_reply_reaches_the_browser_widget(stack: TwilioStack) -> None:
    from playwright.sync_api import expect

    customer = "cust-ben"  # a demo shop customer (seeded)
    with widget_in_browser(stack.demo_url, customer) as dialog:
        page = dialog.page
        box = page.get_by_role("textbox", name="Type your message")
        box.fill("I want to talk to a person")
        box.press("Enter")
        expect(page.locator(".sw-msg[data-sender=bot]").last).to_contain_text(
            "person", timeout=90_000)
        remote = _ready_conversation(stack, f"widget:{customer}")
        _m, deliveries = stack.fake.agent_says(remote["sid"], "Maria", "Hello from Twilio Flex!")
        assert [d.status for d in deliveries] == [200]
        answer = page.locator(".sw-msg[data-sender=agent]").last
        expect(answer).to_contain_text("Hello from Twilio Flex!", timeout=20_000)
        stack.fake.close_conversation(remote["sid"])
        expect(page.get_by_role("group", name="Rate this chat")).to_be_visible(timeout=30_000)


def test_webhook_routes_refuse_bad_requests(stack: TwilioStack) -> None:
    url = f"{stack.bot.rasa_url}{EVENTS}"
    with _http() as http:
        assert http.post(url, data={"EventType": "onMessageAdded"}, timeout=30).status_code \
            == 403
        assert http.post(url, data={"EventType": "x"}, timeout=30,
                         headers={"X-Twilio-Signature": "bad"}).status_code == 403


def test_without_credentials_the_channel_is_inert(embedded_bot: Any) -> None:
    """The default bot (no TWILIO_*): routes answer 503, the agent console keeps handoffs."""
    with _http() as http:
        health = http.get(f"{embedded_bot.rasa_url}/webhooks/twilio_conversations/health",
                          timeout=30)
        events = http.post(f"{embedded_bot.rasa_url}{EVENTS}", data={"x": "1"}, timeout=30)
    assert health.status_code == 503 and health.json()["configured"] is False
    assert events.status_code == 503 and events.json()["error"]["code"] == "not_configured"


async def test_files_go_to_twilio_as_media_and_the_agents_come_back(stack: TwilioStack) -> None:
    """A photo sent before the handoff is imported as Twilio Media (uploaded once to the
    Media Content Service), one sent during the chat goes with its caption, and an agent's
    PDF from Twilio reaches the widget as an attachment; disguised media is dropped."""
    from tests.attachments.conftest import HTML_AS_JPEG, PDF, jpeg_with_gps, png_bytes
    from tests.widget.conftest import rest

    fake, bot = stack.fake, stack.bot
    user = new_user("tw-media")
    token = token_for(user, name="Nora")
    loop = asyncio.get_running_loop()

    def upload(data: bytes, name: str) -> Dict[str, Any]:
        answer = rest(bot, "POST", f"/attachments?name={name}", token, data=data)
        assert answer.status_code == 201, answer.text
        return answer.json()["attachment"]

    client = await WidgetClient.connect(bot, token)
    photo = await loop.run_in_executor(None, upload, jpeg_with_gps(), "mug.jpg")
    await client.send({"type": "message", "client_id": "m1", "attachments": [photo["id"]]})
    await client.expect("ack", lambda f: f.get("client_id") == "m1")
    await client.expect("message", lambda f: f["message"]["sender"] == "bot")
    await client.turn("I want to talk to a real person")
    remote = await loop.run_in_executor(None, _ready_conversation, stack, f"widget:{user}")
    sid = remote["sid"]

    def with_media() -> list:
        return [m for m in fake.messages(sid) if m["media"]]

    [imported] = await loop.run_in_executor(None, lambda: wait_for(
        "the photo in Twilio", with_media, logs=bot.logs))
    assert imported["author"] == user and imported["body"] == ""
    assert json.loads(imported["attributes"])["transcript"] is True
    [media] = imported["media"]
    assert media["content_type"] == "image/jpeg" and media["size"] == photo["size"]
    clean = await loop.run_in_executor(
        None, lambda: rest(bot, "GET", f"/attachments/{photo['id']}", token).content)
    assert fake.media_bytes(media["sid"]) == clean  # the re-encoded photo, no EXIF
    assert fake.requests_to("POST", f"/v1/Services/{fake.chat_service_sid}/Media")

    box = await loop.run_in_executor(None, upload, png_bytes(), "box.png")
    await client.send({"type": "message", "client_id": "m2", "text": "and the box",
                       "attachments": [box["id"]]})
    await client.expect("ack", lambda f: f.get("client_id") == "m2")
    [_, live] = await loop.run_in_executor(None, lambda: wait_for(
        "the captioned photo in Twilio", lambda: len(with_media()) == 2 and with_media(),
        logs=bot.logs))
    assert (live["author"], live["body"]) == (user, "and the box")
    assert live["media"][0]["content_type"] == "image/png"
    assert fake.count_requests("POST", "/Media") == 2  # each file uploaded once

    _message, deliveries = await loop.run_in_executor(None, lambda: fake.agent_says(
        sid, "Maria", "", media=[(PDF, "application/pdf", "returns label.pdf")]))
    assert [d.status for d in deliveries] == [200], deliveries
    frame = await client.expect("message", lambda f: f["message"]["sender"] == "agent")
    [label] = frame["message"]["attachments"]
    assert (label["kind"], label["name"], label["content_type"]) == (
        "pdf", "returns label.pdf", "application/pdf")
    got = await loop.run_in_executor(
        None, lambda: rest(bot, "GET", f"/attachments/{label['id']}", token))
    assert got.status_code == 200 and got.content == PDF
    # the same webhook again: one message, one attachment
    again = await loop.run_in_executor(None, lambda: fake.send_webhook(
        deliveries[0].url, deliveries[0].params, token=deliveries[0].token))
    assert again.status == 200
    # HTML posing as a photo is not accepted; the words still arrive
    await loop.run_in_executor(None, lambda: fake.agent_says(
        sid, "Maria", "Here is a picture", media=[(HTML_AS_JPEG, "image/jpeg", "x.jpg")]))
    words = await client.expect("message", lambda f: f["message"]["sender"] == "agent"
                                and f["message"]["text"] == "Here is a picture")
    assert "attachments" not in words["message"]
    with _db(bot) as db:
        assert db.execute("SELECT COUNT(*) FROM attachments WHERE uploader LIKE 'twilio:%'"
                          ).fetchone()[0] == 1
    await client.close()
