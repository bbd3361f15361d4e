"""Tests of action_route (triage) and action_session_start."""
from __future__ import annotations

from typing import Any, Dict, Iterator, List

import pytest
from rasa_sdk.events import ActionExecuted, SessionStarted, SlotSet

from actions.common import faq_index
from actions.session import ActionSessionStart
from actions.triage import ActionRoute
from tests.unit.actions_helpers import (
    action_env,
    guided_resets,
    triage,
    bot_message,
    dispatcher,
    domain,
    entity,
    make_tracker,
)

PERSON = {"title": "Talk to a person", "payload": "/contact_human_agent"}


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with action_env(monkeypatch):
        yield


async def route(**tracker: Any) -> Any:
    collector = dispatcher()
    events = await ActionRoute().run(collector, make_tracker(**tracker), domain())
    return events, collector.messages


# ------------------------------------------------------------- self-service


async def test_self_service_intent_answers_with_the_faq_article() -> None:
    events, messages = await route(
        text="what is your refund policy", intent="check_refund_policy", confidence=0.93
    )

    summary = triage("check_refund_policy", 0.93, "REFUND", "self_service", "low", [])
    assert events == [
        SlotSet("route", "self_service"),
        SlotSet("flow", None),
        SlotSet("triage", summary),
        SlotSet("failed_turns", 0),
    ]
    article = faq_index().get("refund-policy")
    assert article is not None
    assert messages == [
        bot_message(
            article.summary,
            buttons=[
                {"title": "Request a refund", "payload": "/get_refund"},
                {"title": "Track my refund", "payload": "/track_refund"},
            ],
            # the whole article, for channels that draw Markdown (docs/widget-protocol.md)
            custom={"format": "markdown", "markdown": article.body},
        )
    ]
    assert messages[0]["text"].startswith("You can return unused items within 30 days of delivery")


async def test_self_service_resets_failed_turns_after_a_misunderstanding() -> None:
    events, _ = await route(
        text="how long does delivery take",
        intent="delivery_period",
        confidence=0.88,
        slots={"failed_turns": 1.0},
    )

    assert events[-1] == SlotSet("failed_turns", 0)


async def test_self_service_without_article_or_search_hit_offers_a_person() -> None:
    events, messages = await route(text="qwxzv", intent="greet", confidence=0.99)

    assert events[0] == SlotSet("route", "self_service")
    assert messages == [
        bot_message(
            "Sorry, I don't have an answer for that yet. Would you like to ask a person from "
            "our team?",
            buttons=[PERSON],
        )
    ]


# ------------------------------------------------------------------ guided


async def test_guided_intent_starts_its_flow_and_resets_the_flow_slots() -> None:
    events, messages = await route(
        customer="cust-anna",
        text="I want to cancel my order", intent="cancel_order", confidence=0.9
    )

    summary = triage("cancel_order", 0.9, "ORDER", "guided", "normal", [])
    assert events == [
        SlotSet("route", "guided"),
        SlotSet("flow", "cancel_order"),
        SlotSet("triage", summary),
        SlotSet("failed_turns", 0),
        SlotSet("flow_triage", summary),
        *guided_resets(),
    ]
    assert messages == []


async def test_guided_intent_without_a_verified_customer_asks_to_log_in() -> None:
    # No customer on the message (an anonymous caller, or a slot someone cleared/forged):
    # the flow does not start, nothing about any order is said.
    events, messages = await route(
        text="I want to cancel my order 104250", intent="cancel_order", confidence=0.9,
        slots={"customer_id": "cust-ben"},
    )

    summary = triage("cancel_order", 0.9, "ORDER", "guided", "normal", [])
    assert events == [
        SlotSet("route", "self_service"),
        SlotSet("flow", None),
        SlotSet("triage", summary),
        SlotSet("failed_turns", 0),
    ]
    assert messages == [bot_message(
        "To look at orders, refunds, tickets or call-backs I need to know it's you: please log "
        "in to the app (or the website) and open the chat from there. I can still answer "
        "general questions here.")]


async def test_guided_intent_keeps_a_callback_time_given_in_the_same_message() -> None:
    events, _ = await route(
        customer="cust-anna",
        text="please call me back tomorrow at 10",
        intent="request_callback",
        confidence=0.97,
        entities=[entity("time", "tomorrow at 10")],
    )

    summary = triage("request_callback", 0.97, "CONTACT", "guided", "normal", [])
    assert events == [
        SlotSet("route", "guided"),
        SlotSet("flow", "schedule_callback"),
        SlotSet("triage", summary),
        SlotSet("failed_turns", 0),
        SlotSet("flow_triage", summary),
        SlotSet("confirm", None),
        SlotSet("change_request", None),
        SlotSet("refund_reason", None),
        SlotSet("ticket_summary", None),
        SlotSet("prefilled", None),
        SlotSet("order_number", None),
        SlotSet("order_eligible", None),
        SlotSet("order_attempts", 0),
    ]


ORDER_SLOTS = {"order_number": "104190", "order_status": "delivered", "order_eligible": False}


async def test_guided_flow_forgets_the_previous_order_when_the_message_names_none() -> None:
    """After a flow about 104190, "I want a refund" asks which order it is about again."""
    events, messages = await route(
        text="I want a refund", intent="get_refund", confidence=0.92, slots=ORDER_SLOTS,
        customer="cust-anna",
    )

    summary = triage("get_refund", 0.92, "REFUND", "guided", "normal", [])
    assert events == [
        SlotSet("route", "guided"),
        SlotSet("flow", "request_refund"),
        SlotSet("triage", summary),
        SlotSet("failed_turns", 0),
        SlotSet("flow_triage", summary),
        SlotSet("confirm", None),
        SlotSet("change_request", None),
        SlotSet("refund_reason", None),
        SlotSet("ticket_summary", None),
        SlotSet("prefilled", None),
        SlotSet("callback_time", None),
        SlotSet("order_number", None),
        SlotSet("order_eligible", None),
        SlotSet("order_attempts", 0),
    ]
    assert messages == []


async def test_guided_flow_keeps_an_order_number_given_in_the_same_message() -> None:
    """The form fills order_number from the entity and validates it (order_eligible anew)."""
    events, messages = await route(
        text="I want a refund for 104233",
        intent="get_refund",
        confidence=0.92,
        entities=[entity("order_number", "104233")],
        slots=ORDER_SLOTS,
        customer="cust-anna",
    )

    summary = triage("get_refund", 0.92, "REFUND", "guided", "normal", [])
    assert events == [
        SlotSet("route", "guided"),
        SlotSet("flow", "request_refund"),
        SlotSet("triage", summary),
        SlotSet("failed_turns", 0),
        SlotSet("flow_triage", summary),
        *guided_resets(order_number=True),
    ]
    assert SlotSet("order_number", None) not in events
    assert SlotSet("order_eligible", None) not in events
    assert messages == []


async def test_guided_flow_with_a_time_and_an_order_number_keeps_both() -> None:
    events, _ = await route(
        customer="cust-anna",
        text="call me tomorrow at 10 about order 104233",
        intent="request_callback",
        confidence=0.95,
        entities=[entity("time", "tomorrow at 10"), entity("order_number", "104233")],
    )

    assert events[5:] == guided_resets(time=True, order_number=True)


@pytest.mark.parametrize("route_name", ["self_service", "clarify", "agent"])
async def test_only_guided_flows_reset_the_order(route_name: str) -> None:
    message = {
        "self_service": dict(text="how long does delivery take", intent="delivery_period",
                             confidence=0.88),
        "clarify": dict(text="blorp zzz", intent="nlu_fallback", confidence=0.2),
        "agent": dict(text="I want to talk to a human", intent="contact_human_agent",
                      confidence=0.95),
    }[route_name]

    events, _ = await route(**message, slots=ORDER_SLOTS)

    assert events[0] == SlotSet("route", route_name)
    assert [e["name"] for e in events] == ["route", "flow", "triage", "failed_turns"]


async def test_guided_confidence_is_rounded_in_the_triage_slot() -> None:
    events, _ = await route(text="track my order", intent="track_order", confidence=0.876543219)

    assert events[2] == SlotSet(
        "triage", triage("track_order", 0.8765, "ORDER", "guided", "normal", [])
    )


# ----------------------------------------------------------- not understood


async def test_low_confidence_first_time_asks_to_clarify_with_suggestions() -> None:
    events, messages = await route(
        text="I have a question about my invoice", intent="check_invoice", confidence=0.3
    )

    assert events == [
        SlotSet("route", "clarify"),
        SlotSet("flow", None),
        SlotSet(
            "triage",
            triage("check_invoice", 0.3, "OTHER", "clarify", "normal", ["low_confidence"]),
        ),
        SlotSet("failed_turns", 1),
    ]
    assert messages == [
        bot_message(
            "I'm not sure I understood. Is your question about one of these?",
            buttons=[
                {"title": "Contact customer service", "payload": "/contact_customer_service"},
                {"title": "Reviews and feedback", "payload": "/review"},
                {"title": "Invoices", "payload": "/check_invoice"},
                PERSON,
            ],
        )
    ]


async def test_not_understood_without_suggestions_asks_to_rephrase() -> None:
    events, messages = await route(text="blorp zzz", intent="nlu_fallback", confidence=0.2)

    assert events == [
        SlotSet("route", "clarify"),
        SlotSet("flow", None),
        SlotSet("triage", triage("nlu_fallback", 0.2, "OTHER", "clarify", "normal",
                                 ["not_understood"])),
        SlotSet("failed_turns", 1),
    ]
    assert messages == [
        bot_message(
            "Sorry, I didn't understand that. Could you say it another way? I can help with "
            "orders, delivery, refunds, payments and your account, or pass you to a person.",
            buttons=[PERSON],
        )
    ]


async def test_second_misunderstanding_in_a_row_goes_to_a_person_with_raised_priority() -> None:
    events, messages = await route(
        text="blorp zzz", intent="nlu_fallback", confidence=0.3, slots={"failed_turns": 1.0}
    )

    assert events == [
        SlotSet("route", "agent"),
        SlotSet("flow", None),
        SlotSet(
            "triage",
            triage("nlu_fallback", 0.3, "OTHER", "agent", "high",
                   ["not_understood", "repeated_misunderstanding"]),
        ),
        SlotSet("failed_turns", 2),
    ]
    assert messages == []  # action_handoff speaks next


async def test_low_confidence_after_a_misunderstanding_also_escalates() -> None:
    events, _ = await route(
        text="where is my parcel", intent="track_order", confidence=0.2, slots={"failed_turns": 1}
    )

    assert events == [
        SlotSet("route", "agent"),
        SlotSet("flow", None),
        SlotSet(
            "triage",
            triage("track_order", 0.2, "OTHER", "agent", "high",
                   ["low_confidence", "repeated_misunderstanding"]),
        ),
        SlotSet("failed_turns", 2),
    ]


# ------------------------------------------------------------------ agent


async def test_explicit_request_for_a_person_routes_to_an_agent_with_high_priority() -> None:
    events, messages = await route(
        text="I want to talk to a human", intent="contact_human_agent", confidence=0.95
    )

    assert events == [
        SlotSet("route", "agent"),
        SlotSet("flow", None),
        SlotSet(
            "triage",
            triage("contact_human_agent", 0.95, "CONTACT", "agent", "high", ["human_requested"]),
        ),
        SlotSet("failed_turns", 0),
    ]
    assert messages == []


async def test_angry_message_routes_to_an_agent_with_raised_priority() -> None:
    events, messages = await route(
        text="this is a fucking scam, where is my money", intent="track_refund", confidence=0.9
    )

    assert events == [
        SlotSet("route", "agent"),
        SlotSet("flow", None),
        SlotSet(
            "triage", triage("track_refund", 0.9, "REFUND", "agent", "high", ["angry_language"])
        ),
        SlotSet("failed_turns", 0),
    ]
    assert messages == []


async def test_angry_and_not_understood_goes_to_a_person_at_once() -> None:
    events, _ = await route(text="WHY IS THIS SO BLOODY SLOW", intent="nlu_fallback",
                            confidence=0.1)

    assert events == [
        SlotSet("route", "agent"),
        SlotSet("flow", None),
        SlotSet("triage", triage("nlu_fallback", 0.1, "OTHER", "agent", "high",
                                 ["not_understood", "angry_language"])),
        SlotSet("failed_turns", 1),
    ]


# ----------------------------------------------------------------- inform


async def test_inform_with_an_order_number_starts_order_tracking() -> None:
    events, messages = await route(
        customer="cust-anna",
        text="104233",
        intent="inform",
        confidence=0.9,
        entities=[entity("order_number", "104233")],
    )

    summary = triage("inform", 0.9, "ORDER", "guided", "normal", [])
    assert events == [
        SlotSet("route", "guided"),
        SlotSet("flow", "track_order"),
        SlotSet("triage", summary),
        SlotSet("failed_turns", 0),
        SlotSet("flow_triage", summary),
        SlotSet("confirm", None),
        SlotSet("change_request", None),
        SlotSet("refund_reason", None),
        SlotSet("ticket_summary", None),
        SlotSet("prefilled", None),
        SlotSet("callback_time", None),
        SlotSet("order_attempts", 0),
    ]
    assert messages == []


async def test_inform_without_an_order_number_is_not_understood() -> None:
    events, messages = await route(text="it's about my order", intent="inform", confidence=0.9)

    assert events == [
        SlotSet("route", "clarify"),
        SlotSet("flow", None),
        SlotSet("triage", triage("inform", 0.9, "OTHER", "clarify", "normal",
                                 ["low_confidence"])),
        SlotSet("failed_turns", 1),
    ]
    assert [m["text"] for m in messages] == [
        "I'm not sure I understood. Is your question about one of these?"
    ]
    assert messages[0]["buttons"][-1] == PERSON


# ----------------------------------------------------------- session start

METADATA = {
    "customer": {
        "id": "cust-anna",
        "name": " Anna Schmidt ",
        "email": "anna@example.com",
        "phone": "+4915123456789",
        "timezone": "Europe/Berlin",
        "locale": "de-DE",
    },
    "context": {
        "app_version": "5.2.0",
        "device": "ios",
        "screen": "orders",
        "locale": "de-DE",
        "nested": {"dropped": True},
    },
}


async def session_start(slots: Dict[str, Any]) -> Any:
    collector = dispatcher()
    events = await ActionSessionStart().run(collector, make_tracker(slots=slots), domain())
    assert collector.messages == []
    return events


async def test_session_start_carries_slots_and_loads_the_profile() -> None:
    events = await session_start(
        {
            "session_started_metadata": METADATA,
            "order_number": "104233",
            "contact_email": "anna.work@example.com",
            "route": "guided",  # dialogue state is not carried
            "flow": "track_order",
            "failed_turns": 1.0,
        }
    )

    assert events == [
        SessionStarted(),
        SlotSet("order_number", "104233"),
        SlotSet("contact_email", "anna.work@example.com"),
        SlotSet("customer_id", "cust-anna"),
        SlotSet("customer_name", "Anna Schmidt"),
        SlotSet("customer_email", "anna@example.com"),
        SlotSet("customer_phone", "+4915123456789"),
        SlotSet("customer_tz", "Europe/Berlin"),
        SlotSet(
            "customer_context",
            {"app_version": "5.2.0", "device": "ios", "screen": "orders", "locale": "de-DE"},
        ),
        SlotSet("locale", "de"),
        ActionExecuted("action_listen"),
    ]


async def test_session_start_carries_the_previous_profile_when_there_is_no_metadata() -> None:
    events = await session_start(
        {
            "customer_id": "cust-ben",
            "customer_tz": "Europe/London",
            "customer_context": {"locale": "en-GB"},
            "phone": "+447911123456",
        }
    )

    assert events == [
        SessionStarted(),
        SlotSet("customer_id", "cust-ben"),
        SlotSet("customer_tz", "Europe/London"),
        SlotSet("customer_context", {"locale": "en-GB"}),
        SlotSet("phone", "+447911123456"),
        ActionExecuted("action_listen"),
    ]


async def test_session_start_on_an_empty_tracker() -> None:
    assert await session_start({}) == [SessionStarted(), ActionExecuted("action_listen")]


@pytest.mark.parametrize(
    "metadata",
    [
        "cust-anna",
        ["customer"],
        {"customer": "cust-anna", "context": ["ios"]},
        {"customer": {"id": ["cust-anna"], "name": "   ", "email": None, "timezone": {}}},
        {"unrelated": {"id": "cust-anna"}},
    ],
    ids=["string", "list", "wrong-section-types", "bad-values", "unknown-section"],
)
async def test_session_start_ignores_malformed_metadata(metadata: Any) -> None:
    events = await session_start({"session_started_metadata": metadata, "order_number": "104190"})

    assert events == [
        SessionStarted(),
        SlotSet("order_number", "104190"),
        ActionExecuted("action_listen"),
    ]


async def test_session_start_truncates_long_profile_values_and_keeps_numbers() -> None:
    events = await session_start(
        {"session_started_metadata": {"customer": {"id": 4711, "name": "x" * 300},
                                      "context": {"build": 812, "beta": True, "ratio": 0.5}}}
    )

    assert events == [
        SessionStarted(),
        SlotSet("customer_id", "4711"),
        SlotSet("customer_name", "x" * 200),
        SlotSet("customer_context", {"build": 812, "beta": True, "ratio": 0.5}),
        ActionExecuted("action_listen"),
    ]


@pytest.mark.parametrize(
    ("metadata", "context"),
    [
        ({"customer": {"id": "cust-ben", "locale": "en-GB"}}, {"locale": "en-GB"}),
        (
            {"customer": {"id": "cust-ben", "locale": "en-GB"}, "context": {"app_version": "5.2.0"}},
            {"app_version": "5.2.0", "locale": "en-GB"},
        ),
        (
            {"customer": {"id": "cust-ben", "locale": "en-GB"},
             "context": {"nested": {"dropped": True}}},
            {"locale": "en-GB"},
        ),
    ],
    ids=["no-context", "context-without-locale", "context-with-nothing-kept"],
)
async def test_session_start_merges_the_customers_locale_into_the_context(
    metadata: Dict[str, Any], context: Dict[str, Any]
) -> None:
    events = await session_start({"session_started_metadata": metadata})

    assert events == [
        SessionStarted(),
        SlotSet("customer_id", "cust-ben"),
        SlotSet("customer_context", context),
        SlotSet("locale", "en"),
        ActionExecuted("action_listen"),
    ]


async def test_session_start_the_context_locale_wins_over_the_customers() -> None:
    metadata = {
        "customer": {"id": "cust-chloe", "locale": "fr-FR"},
        "context": {"locale": "en-US", "screen": "orders"},
    }

    events = await session_start({"session_started_metadata": metadata})

    assert events == [
        SessionStarted(),
        SlotSet("customer_id", "cust-chloe"),
        SlotSet("customer_context", {"locale": "en-US", "screen": "orders"}),
        SlotSet("locale", "en"),  # the app's language wins over the profile's
        ActionExecuted("action_listen"),
    ]


@pytest.mark.parametrize(
    "metadata",
    [
        {"customer": {"id": "cust-ben"}, "context": {}},
        {"customer": {"id": "cust-ben", "locale": 44}, "context": {"nested": {"dropped": True}}},
        {"customer": {"id": "cust-ben", "locale": ["en-GB"]}},
    ],
    ids=["empty-context", "nothing-kept-and-locale-not-a-text", "locale-a-list"],
)
async def test_session_start_sets_no_context_when_there_is_nothing_in_it(
    metadata: Dict[str, Any],
) -> None:
    events = await session_start({"session_started_metadata": metadata})

    assert events == [
        SessionStarted(),
        SlotSet("customer_id", "cust-ben"),
        ActionExecuted("action_listen"),
    ]


async def test_session_start_keeps_the_carried_context_when_the_metadata_has_none() -> None:
    events = await session_start(
        {
            "customer_context": {"locale": "en-GB", "app_version": "5.1.0"},
            "session_started_metadata": {"customer": {"id": "cust-ben"}, "context": {}},
        }
    )

    assert events == [
        SessionStarted(),
        SlotSet("customer_context", {"locale": "en-GB", "app_version": "5.1.0"}),
        SlotSet("customer_id", "cust-ben"),
        ActionExecuted("action_listen"),
    ]


async def test_route_follows_the_app_context_the_channel_sends_mid_session() -> None:
    tracker = make_tracker(
        text="what is your refund policy", intent="check_refund_policy", confidence=0.93,
        slots={"customer_context": {"screen": "home", "app_version": "5.2.0"}},
    )
    tracker.latest_message["metadata"] = {
        "customer": {"id": "cust-anna"},
        "context": {"screen": "cart", "app_version": "5.2.0", "nested": {"no": 1}},
    }
    events = await ActionRoute().run(dispatcher(), tracker, domain())
    assert events[0] == SlotSet("customer_context", {"screen": "cart", "app_version": "5.2.0"})
    assert events[1] == SlotSet("route", "self_service")

    # the same context again: no slot event
    tracker = make_tracker(
        text="what is your refund policy", intent="check_refund_policy", confidence=0.93,
        slots={"customer_context": {"screen": "cart", "app_version": "5.2.0"}},
    )
    tracker.latest_message["metadata"] = {"context": {"screen": "cart", "app_version": "5.2.0"}}
    events = await ActionRoute().run(dispatcher(), tracker, domain())
    assert events[0] == SlotSet("route", "self_service")


async def test_a_question_in_a_form_gives_back_the_slots_rasa_took_from_it() -> None:
    """"are you also open on saturday?" while asked for the phone: Rasa filled
    callback_time from "on saturday"; the answer to the question sets it back."""
    from tests.unit.actions_helpers import action_event, slot_event, user_event

    events_in = [
        action_event("callback_form", 100),
        slot_event("requested_slot", "phone", 100),
        action_event("action_listen", 100),
        user_event("are you also open on saturday?", "contact_customer_service", 0.92,
                   (entity("time", "on saturday"),), timestamp=101),
        slot_event("callback_time", "on saturday", 101),
    ]
    events, messages = await route(
        text="are you also open on saturday?", intent="contact_customer_service",
        confidence=0.92, entities=(entity("time", "on saturday"),), events=events_in,
        active_loop="callback_form", slots={"requested_slot": "phone",
                                            "callback_time": "on saturday"})

    assert events[-1] == SlotSet("callback_time", None)
    assert "Saturday 10:00-14:00" in messages[0]["text"]


async def test_an_unsure_question_in_a_form_is_answered_not_clarified() -> None:
    """Round 7: a question the NLU was unsure about while a flow asks for the order gets
    the article of its intent (at least unsure_question_confidence), then the form asks
    again (rules.yml), instead of "I'm not sure I understood"."""
    events, messages = await route(
        text="do i have to pay for the return shipping?", intent="check_refund_policy",
        confidence=0.72, active_loop="refund_request_form",
        slots={"requested_slot": "order_number"})

    assert events[:2] == [SlotSet("route", "self_service"), SlotSet("flow", None)]
    assert messages[0]["text"] == faq_index().get("refund-policy").summary


async def test_a_very_unsure_question_in_a_form_gets_the_search_answer() -> None:
    events, messages = await route(
        text="how long does it take?", intent="track_refund", confidence=0.3,
        active_loop="refund_request_form", slots={"requested_slot": "order_number"})

    assert events[:2] == [SlotSet("route", "self_service"), SlotSet("flow", None)]
    assert messages[0]["text"] == faq_index().get("delivery-times").summary


async def test_an_unsure_statement_in_a_form_is_still_clarified() -> None:
    events, _ = await route(
        text="the thing with the box", intent="check_refund_policy", confidence=0.6,
        active_loop="refund_request_form", slots={"requested_slot": "order_number"})

    assert events[0] == SlotSet("route", "clarify")


async def test_a_question_outside_a_form_keeps_its_slots() -> None:
    events, _ = await route(text="are you also open on saturday?",
                            intent="contact_customer_service", confidence=0.92,
                            entities=(entity("time", "on saturday"),))

    assert all(e.get("name") != "callback_time" for e in events)


async def test_a_session_the_channel_starts_takes_the_apps_language_from_its_message() -> None:
    """The customer ended the chat and the widget sent /session_start with the app's context:
    Rasa leaves session_started_metadata empty then, and the carried English must not win
    over the German app (the greeting after "Hallo" came in English)."""
    tracker = make_tracker(slots={"locale": "en", "customer_context": {"locale": "en"},
                                  "customer_id": "cust-anna"}, text="/session_start")
    tracker.latest_message["metadata"] = {"context": {"locale": "de", "screen": "home"}}
    collector = dispatcher()
    events = await ActionSessionStart().run(collector, tracker, domain())
    assert events == [
        SessionStarted(),
        SlotSet("customer_id", "cust-anna"),
        SlotSet("customer_context", {"locale": "en"}),
        SlotSet("locale", "en"),
        SlotSet("customer_context", {"locale": "de", "screen": "home"}),
        SlotSet("locale", "de"),
        ActionExecuted("action_listen"),
    ]
