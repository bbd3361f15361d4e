"""End-to-end conversations through the REST channel, on the embedded defaults.

The real action server and the real Rasa server run as subprocesses (``embedded_bot``):
SQLite tracker store, in-memory lock store, SQLite support and orders databases seeded
with the demo orders, all in a temporary directory. Each test uses its own conversation.
"""
from __future__ import annotations

import re
from typing import Any, Dict

import pytest
import yaml

from tests.integration.conftest import (
    ANNA_METADATA,
    ROOT,
    TICKET_REFERENCE,
    BotServers,
    bot_texts,
    load_ticket_and_handoffs,
    new_conversation_id,
    open_ticket_of,
)

pytestmark = pytest.mark.model

ORDER = "104233"  # Anna's order in transit with DHL (bot/orders.py demo data)


def _faq_front_matter(article: str) -> Dict[str, Any]:
    text = (ROOT / "data" / "faq" / f"{article}.md").read_text(encoding="utf-8")
    _, front, _ = text.split("---", 2)
    return yaml.safe_load(front)


async def _order(orders_db_url: str, number: str) -> Any:
    from bot.orders import SqlOrderSource

    source = SqlOrderSource.from_url(orders_db_url)
    try:
        return await source.get_order(number)
    finally:
        await source.dispose()


async def test_track_order_reply_names_carrier_and_expected_delivery(
    embedded_bot: BotServers,
) -> None:
    order = await _order(embedded_bot.orders_db_url, ORDER)
    assert order is not None and order.carrier == "DHL" and order.expected_delivery

    sender = new_conversation_id("track")
    replies = embedded_bot.send(sender, f"where is my order {ORDER}", ANNA_METADATA)

    text = " ".join(bot_texts(replies))
    expected = order.expected_delivery
    assert f"#{ORDER}" in text, replies
    assert "DHL" in text, replies
    assert order.tracking_code in text, replies
    assert f"Expected delivery: {expected:%A} {expected.day} {expected:%B}." in text, replies
    # Tracking an order is self-service: nobody gets a ticket.
    assert await open_ticket_of(embedded_bot.support_db_url, sender) is None


async def test_refund_policy_question_gets_the_faq_summary(embedded_bot: BotServers) -> None:
    summary = " ".join(_faq_front_matter("refund-policy")["summary"].split())

    sender = new_conversation_id("faq")
    replies = embedded_bot.send(sender, "what is your refund policy?", ANNA_METADATA)

    texts = [" ".join(text.split()) for text in bot_texts(replies)]
    assert summary in texts, replies
    # The article's quick replies come along as REST buttons.
    payloads = [b.get("payload") for r in replies for b in r.get("buttons") or []]
    assert "/get_refund" in payloads, replies
    assert await open_ticket_of(embedded_bot.support_db_url, sender) is None


async def test_one_misunderstood_message_asks_to_rephrase_without_a_ticket(
    embedded_bot: BotServers,
) -> None:
    """triage.yml: only `failed_in_row` (2) not-understood messages in a row go to a person."""
    sender = new_conversation_id("clarify")

    replies = embedded_bot.send(sender, "blorp zint quaxle", ANNA_METADATA)

    assert not re.search(TICKET_REFERENCE, " ".join(bot_texts(replies))), replies
    assert await open_ticket_of(embedded_bot.support_db_url, sender) is None
    tracker = embedded_bot.tracker(sender)
    assert tracker["slots"]["route"] == "clarify", tracker["slots"]
    assert tracker["slots"]["failed_turns"] == 1
    assert tracker["paused"] is False


async def test_human_request_queues_a_ticket_with_transcript_and_pauses_the_bot(
    embedded_bot: BotServers,
) -> None:
    sender = new_conversation_id("handoff")
    first = f"where is my order {ORDER}"
    second = "i want to talk to a human"

    assert bot_texts(embedded_bot.send(sender, first, ANNA_METADATA))
    replies = embedded_bot.send(sender, second, ANNA_METADATA)

    text = " ".join(bot_texts(replies))
    match = re.search(TICKET_REFERENCE, text)
    assert match, f"no ticket reference in {replies}"
    reference = match.group(0)

    ticket, handoffs = await load_ticket_and_handoffs(embedded_bot.support_db_url, reference)
    assert ticket.conversation_id == sender
    assert ticket.source == "handoff"
    assert ticket.status == "queued"
    assert ticket.priority == "high"  # contact_human_agent: normal, raised one step
    assert ticket.customer_id == "cust-anna"
    assert ticket.contact_email == "anna@example.com"

    transcript = ticket.details["transcript"]
    assert {line["author"] for line in transcript} <= {"customer", "bot"}
    assert [line["text"] for line in transcript if line["author"] == "customer"] == [
        first,
        second,
    ]
    assert transcript[0] == {**transcript[0], "author": "customer", "text": first}
    assert transcript[1]["author"] == "bot" and "DHL" in transcript[1]["text"]
    assert transcript[-1]["author"] == "customer" and transcript[-1]["text"] == second
    assert [line["at"] for line in transcript] == sorted(line["at"] for line in transcript)
    assert ticket.details["context"] == ANNA_METADATA["context"]
    assert ticket.details["context"]["app_version"] == "5.2.0"

    assert len(handoffs) == 1, handoffs
    assert handoffs[0]["conversation_id"] == sender
    assert handoffs[0]["status"] == "queued"
    assert handoffs[0]["priority"] == "high"

    tracker = embedded_bot.tracker(sender)
    events = [event["event"] for event in tracker["events"]]
    assert "pause" in events, events
    assert tracker["paused"] is True

    # Paused: the next message is stored, but the bot stays silent (a person answers).
    assert embedded_bot.send(sender, "hello? anyone there?", ANNA_METADATA) == []
    tracker = embedded_bot.tracker(sender)
    user_texts = [e.get("text") for e in tracker["events"] if e["event"] == "user"]
    assert user_texts[-1] == "hello? anyone there?"
    assert tracker["paused"] is True


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/status"),
        ("GET", "/conversations/{sender}/tracker"),
        ("POST", "/conversations/{sender}/messages"),
        ("POST", "/conversations/{sender}/tracker/events"),
        ("POST", "/model/parse"),
        ("PUT", "/model"),
    ],
)
@pytest.mark.parametrize("token", [None, "", "wrong-token"], ids=["no-token", "empty", "wrong"])
def test_http_api_refuses_requests_without_the_token(
    embedded_bot: BotServers, method: str, path: str, token: Any
) -> None:
    """CVE-2024-49375: the HTTP API (started with --enable-api) must not be open."""
    import requests

    sender = new_conversation_id("api")
    params = {} if token is None else {"token": token}
    body = {"text": "hi", "sender": "user", "event": "pause", "model_file": "x"}
    http = requests.Session()
    http.trust_env = False  # never through an HTTP proxy
    response = http.request(
        method,
        f"{embedded_bot.rasa_url}{path.format(sender=sender)}",
        params=params,
        json=body,
        timeout=30,
    )
    assert response.status_code in (401, 403), (response.status_code, response.text[:300])
    # ... and nothing was written: the conversation does not exist.
    events = embedded_bot.tracker(sender)["events"]
    assert all(event["event"] not in ("user", "pause") for event in events), events


def test_http_api_answers_with_the_token(embedded_bot: BotServers) -> None:
    response = embedded_bot.get("/status", embedded_bot.token)
    assert response.status_code == 200
    assert response.json()["model_file"] == "support.tar.gz"


# The last two tests stop the action server (and start it again afterwards).


def test_dead_action_server_does_not_crash_the_rest_channel(embedded_bot: BotServers) -> None:
    sender = new_conversation_id("dead")
    embedded_bot.stop_actions()
    try:
        response = embedded_bot.post_message(sender, f"where is my order {ORDER}", ANNA_METADATA)
        # Rasa logs the failed custom action (action_route), the core fallback
        # (action_default_fallback, which needs no action server) reverts the turn, and
        # the channel answers 200 with no messages.
        assert response.status_code == 200, response.text[:500]
        assert response.json() == []
        # Replies that are plain responses still work without the action server.
        response = embedded_bot.post_message(sender, "hello", ANNA_METADATA)
        assert response.status_code == 200, response.text[:500]
        assert [m.get("text", "") for m in response.json()][0].startswith("Hi! I'm the Northwind")
        assert embedded_bot.get("/status", embedded_bot.token).status_code == 200
        assert "Failed to run custom action" in embedded_bot.logs()
    finally:
        embedded_bot.start_actions()

    # The server itself is fine once the action server is back.
    replies = embedded_bot.send(
        new_conversation_id("after"), "what is your refund policy?", ANNA_METADATA
    )
    assert bot_texts(replies), replies


def test_conversation_hit_by_an_outage_recovers_when_the_action_server_is_back(
    embedded_bot: BotServers,
) -> None:
    sender = new_conversation_id("outage")
    embedded_bot.stop_actions()
    try:
        response = embedded_bot.post_message(sender, "what is your refund policy?", ANNA_METADATA)
        assert response.status_code == 200 and response.json() == []
    finally:
        embedded_bot.start_actions()

    replies = embedded_bot.send(sender, "what is your refund policy?", ANNA_METADATA)
    assert bot_texts(replies), replies
