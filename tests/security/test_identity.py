"""Identity comes only from a verified channel; customer data fails closed.

Attacks from the issue, one request each, against the real Rasa server and action
server (``embedded_bot``): Rasa's open REST channel, forged ``sender`` and
``metadata``, an anonymous caller naming somebody else's order.
"""
from __future__ import annotations

import sqlite3
from typing import Any, Dict, List

import pytest
import requests

from tests.servers import ANNA_METADATA, bot_texts, new_conversation_id

pytestmark = pytest.mark.model

LOGIN_REQUIRED = (
    "To look at orders, refunds, tickets or call-backs I need to know it's you: please log in "
    "to the app (or the website) and open the chat from there. I can still answer general "
    "questions here."
)
BEN_ORDER = "104250"  # Ben's, packed: cancellable


def _order_status(bot: Any, number: str) -> str:
    path = bot.orders_db_url.replace("sqlite:///", "")
    with sqlite3.connect(path) as db:
        (status,) = db.execute("SELECT status FROM orders WHERE number = ?", (number,)).fetchone()
    return status


def _events(bot: Any, sender: str) -> List[Dict[str, Any]]:
    return [e for e in bot.tracker(sender)["events"] if e["event"] in ("user", "bot")]


def _post(bot: Any, path: str, body: Any, headers: Dict[str, str] = None) -> requests.Response:
    session = requests.Session()
    session.trust_env = False
    try:
        return session.post(f"{bot.rasa_url}{path}", json=body, headers=headers or {},
                            timeout=60)
    finally:
        session.close()


def test_rasas_open_rest_channel_is_not_enabled(embedded_bot: Any) -> None:
    sender = new_conversation_id("rest")
    response = _post(embedded_bot, "/webhooks/rest/webhook",
                     {"sender": sender, "message": f"where is my order {BEN_ORDER}"})

    assert response.status_code == 404
    assert _events(embedded_bot, sender) == []


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", "Basic abc", "Bearer "])
def test_api_channel_refuses_callers_without_the_token(embedded_bot: Any, header: Any) -> None:
    sender = new_conversation_id("noauth")
    response = _post(
        embedded_bot, "/webhooks/api/webhook",
        {"sender": sender, "message": "where is my order 104250", "metadata": ANNA_METADATA},
        headers={"Authorization": header} if header else {},
    )

    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized",
                               "message": "A valid bearer token is required."}
    assert _events(embedded_bot, sender) == []


@pytest.mark.parametrize("sender", ["widget:cust-anna", "widget:cust-ben", "twilio:CH123",
                                    "", "a" * 65, "../x"])
def test_api_channel_cannot_address_other_channels_conversations(
    embedded_bot: Any, sender: str
) -> None:
    before = _events(embedded_bot, "widget:cust-anna")

    response = embedded_bot.post_message(sender, "cancel my order 104301", ANNA_METADATA)

    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
    assert _events(embedded_bot, "widget:cust-anna") == before


def test_anonymous_caller_learns_nothing_about_an_order(embedded_bot: Any) -> None:
    sender = new_conversation_id("anon")

    replies = embedded_bot.send(sender, f"where is my order {BEN_ORDER}")

    assert bot_texts(replies) == [LOGIN_REQUIRED]
    assert not any(reply.get("buttons") for reply in replies)  # no "Cancel this order"


def test_anonymous_caller_cannot_cancel_an_order(embedded_bot: Any) -> None:
    sender = new_conversation_id("anon")

    first = embedded_bot.send(sender, f"please cancel my order {BEN_ORDER}")
    second = embedded_bot.post_message(sender, "Yes", payload="/affirm")

    assert bot_texts(first) == [LOGIN_REQUIRED]
    assert second.status_code == 400  # "Yes" was never offered
    assert second.json()["error"] == "payload_not_offered"
    assert _order_status(embedded_bot, BEN_ORDER) == "packed"


@pytest.mark.parametrize("message", [
    "I want to open a ticket: the app crashes when I open my cart",
    "can someone call me back tomorrow at 10?",
    "I'd like a refund for order 104205",
])
def test_anonymous_caller_gets_no_ticket_callback_or_refund(
    embedded_bot: Any, message: str
) -> None:
    sender = new_conversation_id("anon")

    replies = embedded_bot.send(sender, message)

    assert bot_texts(replies) == [LOGIN_REQUIRED]
    slots = embedded_bot.tracker(sender)["slots"]
    assert slots["requested_slot"] is None and slots["flow"] is None


def test_a_forged_customer_slot_is_not_a_customer(embedded_bot: Any) -> None:
    """Slots set through the (token-protected) HTTP API do not make anybody a customer."""
    sender = new_conversation_id("forged")
    response = requests.post(
        f"{embedded_bot.rasa_url}/conversations/{sender}/tracker/events",
        params={"token": embedded_bot.token},
        json=[{"event": "slot", "name": "customer_id", "value": "cust-ben"}],
        timeout=60,
    )
    assert response.status_code == 200

    replies = embedded_bot.send(sender, f"where is my order {BEN_ORDER}")

    assert bot_texts(replies) == [LOGIN_REQUIRED]


def test_rasa_http_api_needs_its_token(embedded_bot: Any) -> None:
    for path in ("/conversations/widget:cust-anna/tracker", "/status"):
        assert requests.get(f"{embedded_bot.rasa_url}{path}", timeout=30).status_code == 401
    response = requests.post(
        f"{embedded_bot.rasa_url}/conversations/widget:cust-anna/messages",
        json={"text": "cancel my order", "sender": "user"}, timeout=30)
    assert response.status_code == 401


def test_verified_customer_sees_only_their_own_orders(embedded_bot: Any) -> None:
    sender = new_conversation_id("anna")

    replies = embedded_bot.send(sender, f"where is my order {BEN_ORDER}", ANNA_METADATA)

    assert bot_texts(replies) == [
        f"I couldn't find an order #{BEN_ORDER} in your account. Please check the number and "
        "send it again.",
        "Which order is it about? Here are your latest ones, or type the order number.",
    ]
    assert [b["title"].split(" ")[0] for b in replies[-1]["buttons"]] == [
        "#104301", "#104233", "#104190"]


def test_verified_customer_tracks_their_order(embedded_bot: Any) -> None:
    sender = new_conversation_id("anna")

    replies = embedded_bot.send(sender, "where is my order 104233", ANNA_METADATA)

    assert bot_texts(replies)[0].startswith("Order #104233 is on its way with DHL")


@pytest.mark.parametrize("typed", ["/restart", '/inform{"order_number":"104250"}',
                                   "/session_start", "  /cancel_order"])
def test_typed_commands_are_text(embedded_bot: Any, typed: str) -> None:
    sender = new_conversation_id("slash")
    embedded_bot.send(sender, "where is my order 104233", ANNA_METADATA)

    embedded_bot.send(sender, typed, ANNA_METADATA)

    tracker = embedded_bot.tracker(sender)
    kinds = [e["event"] for e in tracker["events"]]
    assert "restart" not in kinds
    assert kinds.count("session_started") == 1
    user = [e for e in tracker["events"] if e["event"] == "user"][-1]
    # read by the NLU like any text (Rasa's command parser gives confidence 1.0 and
    # entities without an extractor), shown as typed
    assert user["parse_data"]["intent"]["confidence"] < 1.0
    assert all(e.get("extractor") for e in user["parse_data"]["entities"])
    assert user["parse_data"]["text"].lstrip("\u2060") == typed.strip()
    assert tracker["slots"]["customer_id"] == "cust-anna"


def test_offered_quick_reply_is_accepted_and_others_are_refused(embedded_bot: Any) -> None:
    sender = new_conversation_id("qr")
    replies = embedded_bot.send(sender, "where is my order 104301", ANNA_METADATA)
    offered = [b["payload"] for r in replies for b in r.get("buttons") or []]
    assert offered == ["/cancel_order"]

    refused = embedded_bot.post_message(sender, "Restart", ANNA_METADATA, payload="/restart")
    forged = embedded_bot.post_message(
        sender, "104250", ANNA_METADATA, payload='/inform{"order_number":"104250"}')
    accepted = embedded_bot.send(sender, "Cancel this order", ANNA_METADATA,
                                 payload="/cancel_order")

    assert (refused.status_code, refused.json()["error"]) == (400, "payload_not_offered")
    assert (forged.status_code, forged.json()["error"]) == (400, "payload_not_offered")
    users = [e for e in embedded_bot.tracker(sender)["events"] if e["event"] == "user"]
    assert [u["text"] for u in users] == ["where is my order 104301", "/cancel_order"]
    assert users[-1]["parse_data"]["intent"] == {"name": "cancel_order", "confidence": 1.0}
    assert bot_texts(accepted)
