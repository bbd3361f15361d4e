"""action_route on a message that asks several things (``requests``, bot.multi_request),
and on a request typed right after the bot offered a quick reply for it."""
from __future__ import annotations

from typing import Any, Dict, Iterator, List

import pytest
from rasa_sdk.events import SlotSet

from actions.common import faq_index
from actions.triage import ActionRoute
from tests.unit.actions_helpers import (
    T0,
    action_event,
    action_env,
    bot_event,
    bot_message,
    dispatcher,
    domain,
    entity,
    guided_resets,
    make_tracker,
    triage,
    user_event,
)

PAYMENT_Q = {"text": "do you accept apple pay?", "intent": "check_payment_methods",
             "confidence": 0.99}
ORDER = entity("order_number", "104233")


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with action_env(monkeypatch):
        yield


def answer(article_id: str) -> Dict[str, Any]:
    """The chat message that answers with the FAQ article ``article_id``."""
    article = faq_index().get(article_id)
    assert article is not None
    return bot_message(article.summary, buttons=[dict(b) for b in article.buttons],
                       custom={"format": "markdown", "markdown": article.body})


def guided(flow: str, summary: Dict[str, Any], order_number: bool) -> List[Any]:
    """The events of action_route starting ``flow`` (the message names no time)."""
    return [
        SlotSet("route", "guided"),
        SlotSet("flow", flow),
        SlotSet("triage", summary),
        SlotSet("failed_turns", 0),
        SlotSet("flow_triage", summary),
        *guided_resets(order_number=order_number),
    ]


async def route(**tracker: Any) -> Any:
    collector = dispatcher()
    events = await ActionRoute().run(collector, make_tracker(**tracker), domain())
    return events, collector.messages


async def test_a_question_besides_a_flow_is_answered_before_the_flow_starts() -> None:
    events, messages = await route(
        customer="cust-anna",
        text="where is order 104233 and also, do you accept apple pay?",
        intent="track_order", confidence=0.97, entities=[ORDER],
        requests=[{"text": "where is order 104233", "intent": "track_order",
                   "confidence": 0.99, "entities": [ORDER]}, PAYMENT_Q],
    )

    assert events == guided(
        "track_order", triage("track_order", 0.97, "ORDER", "guided", "normal", []),
        order_number=True)
    assert messages == [answer("payment-methods")]


async def test_a_question_first_then_a_flow_answers_and_runs_the_flow() -> None:
    events, messages = await route(
        customer="cust-anna",
        text="do you accept apple pay? and where is my order 104233",
        intent="check_payment_methods", confidence=0.95, entities=[ORDER],
        requests=[PAYMENT_Q, {"text": "where is my order 104233", "intent": "track_order",
                              "confidence": 0.99, "entities": [ORDER]}],
    )

    assert events == guided(
        "track_order", triage("track_order", 0.99, "ORDER", "guided", "normal", []),
        order_number=True)
    assert messages == [answer("payment-methods")]


async def test_two_questions_are_both_answered_in_their_order() -> None:
    events, messages = await route(
        text="can I pay with paypal? also how long does delivery take?",
        intent="check_payment_methods", confidence=0.94,
        requests=[{"text": "can I pay with paypal?", "intent": "check_payment_methods"},
                  {"text": "how long does delivery take?", "intent": "delivery_period"}],
    )

    assert events == [
        SlotSet("route", "self_service"),
        SlotSet("flow", None),
        SlotSet("triage", triage("check_payment_methods", 0.94, "PAYMENT", "self_service",
                                  "low", [])),
        SlotSet("failed_turns", 0),
    ]
    assert messages == [answer("payment-methods"), answer("delivery-times")]


async def test_a_message_not_understood_whole_is_led_by_its_flow_request() -> None:
    events, messages = await route(
        customer="cust-ben",
        text="where's my refund? and how long do refunds usually take?",
        intent="check_refund_policy", confidence=0.55,
        requests=[{"text": "where's my refund?", "intent": "track_refund"},
                  {"text": "how long do refunds usually take?", "intent": "check_refund_policy"}],
    )

    assert events == guided(
        "track_refund", triage("track_refund", 1.0, "REFUND", "guided", "normal", []),
        order_number=False)
    assert messages == [answer("refund-policy")]


async def test_an_order_number_fallback_does_not_hide_the_requests() -> None:
    # "cancel ... Also do you charge a cancellation fee?" is unsure as a whole (0.84): the
    # order number alone would make it "show the order"; its parts say what is wanted.
    events, messages = await route(
        customer="cust-anna",
        text="I want to cancel order 104301. Also do you charge a cancellation fee?",
        intent="check_cancellation_fee", confidence=0.84,
        entities=[entity("order_number", "104301")],
        requests=[{"text": "I want to cancel order 104301.", "intent": "cancel_order",
                   "entities": [entity("order_number", "104301")]},
                  {"text": "do you charge a cancellation fee?", "intent": "check_cancellation_fee"}],
    )

    assert events == guided(
        "cancel_order", triage("cancel_order", 1.0, "ORDER", "guided", "normal", []),
        order_number=True)
    assert messages == [answer("cancellation-fees")]


async def test_statements_in_a_description_are_not_answered_as_questions() -> None:
    events, messages = await route(
        customer="cust-chloe",
        text="I want to report a problem. The app crashes. I already reset my password.",
        intent="open_ticket", confidence=0.96,
        requests=[{"text": "I want to report a problem", "intent": "open_ticket"},
                  {"text": "The app crashes", "intent": "complaint"},
                  {"text": "I already reset my password", "intent": "recover_password"}],
    )

    assert events == guided(
        "create_ticket", triage("open_ticket", 0.96, "OTHER", "guided", "normal", []),
        order_number=False)
    assert messages == []


async def test_small_talk_and_unsure_parts_are_no_requests() -> None:
    events, messages = await route(
        customer="cust-ben",
        text="Hello there. Where is my order 104205? thanks, is it raining?",
        intent="track_order", confidence=0.98, entities=[entity("order_number", "104205")],
        requests=[{"text": "Hello there", "intent": "greet"},
                  {"text": "Where is my order 104205?", "intent": "track_order"},
                  {"text": "is it raining?", "intent": "delivery_period", "confidence": 0.4}],
    )

    assert events[1] == SlotSet("flow", "track_order")
    assert messages == []


async def test_a_request_for_a_person_is_not_split() -> None:
    events, messages = await route(
        customer="cust-ben",
        text="I want to talk to a person. also do you take paypal?",
        intent="contact_human_agent", confidence=0.97,
        requests=[{"text": "I want to talk to a person", "intent": "contact_human_agent"},
                  {"text": "do you take paypal?", "intent": "check_payment_methods"}],
    )

    assert events[0] == SlotSet("route", "agent")
    assert messages == []


async def test_a_logged_out_customer_gets_the_answer_and_the_login_notice() -> None:
    events, messages = await route(
        text="where is order 104233 and also, do you accept apple pay?",
        intent="track_order", confidence=0.97, entities=[ORDER],
        requests=[{"text": "where is order 104233", "intent": "track_order",
                   "entities": [ORDER]}, PAYMENT_Q],
    )

    assert events[0] == SlotSet("route", "self_service")
    assert [m["text"] for m in messages][0] == answer("payment-methods")["text"]
    assert "log in" in messages[1]["text"].lower()
    assert len(messages) == 2


async def test_status_typed_after_a_refund_status_quick_reply_means_the_refund() -> None:
    events = [
        action_event("action_listen", T0),
        user_event("104122", "inform", 0.99, [entity("order_number", "104122")], timestamp=T0 + 1),
        bot_event("There's already a refund for order #104122 (status: requested).", T0 + 2,
                  buttons=[{"title": "Refund status", "payload": "/track_refund"}]),
        action_event("action_listen", T0 + 3),
        user_event("oh ok, whats the status of it then", "track_order", 0.99, timestamp=T0 + 4),
    ]
    result, messages = await route(
        customer="cust-ben", text="oh ok, whats the status of it then",
        intent="track_order", confidence=0.99, events=events)

    assert result == guided(
        "track_refund", triage("track_refund", 0.99, "REFUND", "guided", "normal", []),
        order_number=False)
    assert messages == []


async def test_status_typed_without_that_quick_reply_tracks_the_order() -> None:
    events = [
        action_event("action_listen", T0),
        user_event("104122", "inform", 0.99, [entity("order_number", "104122")], timestamp=T0 + 1),
        bot_event("Order #104122 was delivered.", T0 + 2,
                  buttons=[{"title": "Request a refund", "payload": "/get_refund"}]),
        action_event("action_listen", T0 + 3),
        user_event("whats the status of it", "track_order", 0.99, timestamp=T0 + 4),
    ]
    result, _ = await route(customer="cust-ben", text="whats the status of it",
                            intent="track_order", confidence=0.99, events=events)

    assert result[1] == SlotSet("flow", "track_order")
