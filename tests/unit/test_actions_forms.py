"""The forms' common rules (actions/forms.py): exact events and messages.

1. An empty value (a flow's reset) is never validated: no message.
2. A flow takes what the first message (or a recent order) already says, and confirms.
3. A plain answer to the question just asked is taken; a question about something else,
   or a request to stop, is not.
"""
from __future__ import annotations

from typing import Any, AsyncIterator, Dict, Iterator, List, Tuple

import pytest
from rasa_sdk.events import ActionExecutionRejected, SlotSet

from actions.callbacks import ValidateCallbackForm, ValidateRescheduleCallbackForm
from actions.orders import ValidateCancelOrderForm, ValidateOrderStatusForm, ValidateRefundRequestForm
from actions.tickets import ValidateTicketForm
from tests.unit.actions_helpers import (
    T0,
    action_env,
    action_event,
    dispatcher,
    domain,
    entity,
    form_tracker,
    installed_services,
    make_tracker,
    slot_event,
    user_event,
)


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with action_env(monkeypatch):
        yield


@pytest.fixture
async def svc(sqlite_url: str) -> AsyncIterator[Any]:
    async with installed_services(sqlite_url) as services:
        yield services


async def run(action: Any, tracker: Any) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    collector = dispatcher()
    events = await action.run(collector, tracker, domain())
    return events, collector.messages


def starting(form: str, text: str, intent: str, resets: Dict[str, Any],
             entities: Tuple[Dict[str, Any], ...] = (), customer: str = "cust-anna",
             earlier: Tuple[Dict[str, Any], ...] = ()) -> Any:
    """The tracker a form's validation gets when the form starts: ``action_route`` reset
    the flow's slots after the message (``resets``), nothing was asked yet."""
    events = [
        *earlier,
        action_event("action_listen", T0),
        user_event(text, intent, 0.97, entities, timestamp=T0 + 1),
        *(slot_event(name, value, T0 + 1) for name, value in resets.items()),
    ]
    return make_tracker(slots=dict(resets), text=text, intent=intent, confidence=0.97,
                        entities=entities, events=events, customer=customer)


# ------------------------------------------------------------ 1. no false error

@pytest.mark.parametrize(
    ("action", "form", "resets"),
    [
        (ValidateOrderStatusForm, "order_status_form", {"order_number": None}),
        (ValidateRefundRequestForm, "refund_request_form",
         {"order_number": None, "refund_reason": None, "confirm": None}),
        (ValidateTicketForm, "ticket_form", {"ticket_summary": None}),
        (ValidateCallbackForm, "callback_form", {"callback_time": None, "confirm": None}),
    ],
    ids=["track", "refund", "ticket", "callback"],
)
async def test_starting_a_flow_validates_nothing_and_says_nothing(
    svc: Any, action: Any, form: str, resets: Dict[str, Any]
) -> None:
    intents = {"order_status_form": ("where is my order", "track_order"),
               "refund_request_form": ("I'd like a refund", "get_refund"),
               "ticket_form": ("I want to report a problem", "open_ticket"),
               "callback_form": ("can someone call me back?", "request_callback")}
    text, intent = intents[form]
    events, messages = await run(action(), starting(form, text, intent, resets))

    assert messages == []
    assert all(e["value"] is None for e in events if e["name"] in resets), events


# ------------------------------------------------------------ 2. prefilled from the message

async def test_refund_reason_and_order_come_from_the_first_message(svc: Any) -> None:
    text = "the jacket from order 104190 is too small, I want my money back"
    tracker = starting(
        "refund_request_form", text, "get_refund",
        {"refund_reason": None, "confirm": None},
        entities=(entity("order_number", "104190"),), customer="cust-anna")
    tracker.slots["order_number"] = "104190"
    tracker.events.append(slot_event("order_number", "104190", T0 + 1))

    events, messages = await run(ValidateRefundRequestForm(), tracker)

    assert events == [
        SlotSet("refund_reason", "The jacket is too small"),
        SlotSet("confirm", None),
        SlotSet("order_number", "104190"),
        SlotSet("order_attempts", 0),
        SlotSet("order_status", "delivered"),
        SlotSet("order_eligible", True),
        SlotSet("recent_order", "104190"),
        SlotSet("prefilled", ["refund_reason"]),
    ]
    assert messages == []


async def test_a_ticket_text_given_up_front_is_confirmed_not_asked(svc: Any) -> None:
    text = "I want to open a ticket: the app crashes when I open my cart"
    tracker = starting("ticket_form", text, "open_ticket", {"ticket_summary": None},
                       customer="cust-ben")

    events, messages = await run(ValidateTicketForm(), tracker)

    assert events == [
        SlotSet("ticket_summary", "The app crashes when I open my cart"),
        SlotSet("contact_email", "ben@example.com"),
        SlotSet("prefilled", ["ticket_summary"]),
    ]  # every slot of the form is needed: Rasa asks the next one of domain.yml, `confirm`
    assert messages == []
    tracker.slots.update({e["name"]: e["value"] for e in events})
    assert await ValidateTicketForm().required_slots(
        ["ticket_summary", "contact_email", "confirm"], dispatcher(), tracker, domain()
    ) == ["ticket_summary", "contact_email", "confirm"]


async def test_a_request_without_details_asks_for_them(svc: Any) -> None:
    tracker = starting("ticket_form", "I want to report a problem", "open_ticket",
                       {"ticket_summary": None}, customer="cust-ben")

    events, messages = await run(ValidateTicketForm(), tracker)

    assert events == [
        SlotSet("ticket_summary", None),
        SlotSet("contact_email", "ben@example.com"),
    ]  # no requested_slot: Rasa asks the first empty slot of domain.yml, ticket_summary
    assert messages == []


async def test_a_ticket_text_typed_when_asked_is_shown_before_it_is_sent(svc: Any) -> None:
    tracker = form_tracker("ticket_form", {"ticket_summary": "the app crashes when I open my cart"},
                           slots={"contact_email": "ben@example.com"},
                           intent="complaint", customer="cust-ben")

    events, messages = await run(ValidateTicketForm(), tracker)

    assert events == [SlotSet("ticket_summary", "the app crashes when I open my cart")]
    assert messages == []
    tracker.slots.update({e["name"]: e["value"] for e in events})
    assert await ValidateTicketForm().required_slots(
        ["ticket_summary", "contact_email", "confirm"], dispatcher(), tracker, domain()
    ) == ["ticket_summary", "contact_email", "confirm"]  # `confirm` is asked next


async def test_the_ticket_text_can_come_from_the_message_the_bot_did_not_understand(
    svc: Any
) -> None:
    earlier = (
        action_event("action_listen", T0 - 20),
        user_event("the checkout button does nothing on my phone", "nlu_fallback", 0.3,
                   timestamp=T0 - 19),
        action_event("action_route", T0 - 18),
        slot_event("route", "clarify", T0 - 18),
    )
    tracker = starting("ticket_form", "I want to report a problem", "open_ticket",
                       {"ticket_summary": None}, customer="cust-ben", earlier=earlier)

    events, _ = await run(ValidateTicketForm(), tracker)

    assert SlotSet("ticket_summary", "The checkout button does nothing on my phone") in events
    assert SlotSet("prefilled", ["ticket_summary"]) in events


async def test_an_order_from_the_last_turns_is_taken_for_the_next_flow(svc: Any) -> None:
    earlier = (
        action_event("action_listen", T0 - 30),
        user_event("where is order 104301", "track_order", 0.99,
                   (entity("order_number", "104301"),), timestamp=T0 - 29),
        slot_event("recent_order", "104301", T0 - 28),
    )
    tracker = starting("cancel_order_form", "/cancel_order", "cancel_order",
                       {"order_number": None, "confirm": None}, earlier=earlier)
    tracker.slots["recent_order"] = "104301"

    events, messages = await run(ValidateCancelOrderForm(), tracker)

    assert events[:6] == [
        SlotSet("order_number", "104301"),
        SlotSet("order_attempts", 0),
        SlotSet("order_status", "processing"),
        SlotSet("order_eligible", True),
        SlotSet("recent_order", "104301"),
        SlotSet("confirm", None),
    ]
    assert messages == []


async def test_an_order_from_an_earlier_session_is_not_taken(svc: Any) -> None:
    earlier = (
        user_event("where is order 104301", "track_order", 0.99, timestamp=T0 - 90),
        slot_event("recent_order", "104301", T0 - 89),
        {"event": "session_started", "timestamp": T0 - 60},
    )
    tracker = starting("cancel_order_form", "cancel my order", "cancel_order",
                       {"order_number": None, "confirm": None}, earlier=earlier)
    tracker.slots["recent_order"] = "104301"

    events, messages = await run(ValidateCancelOrderForm(), tracker)

    assert SlotSet("order_number", None) in events
    assert messages == []


# ------------------------------------------------------------ 3. plain answers

async def test_a_plain_answer_is_taken_whatever_intent_the_nlu_saw(svc: Any) -> None:
    tracker = form_tracker(
        "refund_request_form", {}, requested_slot="refund_reason",
        text="the zip broke after two days", intent="complaint",
        slots={"order_number": "104190"}, customer="cust-anna")

    events, messages = await run(ValidateRefundRequestForm(), tracker)

    assert events == [SlotSet("refund_reason", "the zip broke after two days")]
    assert messages == []


async def test_a_question_about_something_else_is_not_an_answer(svc: Any) -> None:
    tracker = form_tracker(
        "refund_request_form", {}, requested_slot="refund_reason",
        text="how long does a refund take?", intent="check_refund_policy",
        slots={"order_number": "104190"}, customer="cust-anna")

    events, messages = await run(ValidateRefundRequestForm(), tracker)

    assert events == []  # the form rejects: the rules answer the question, then ask again
    assert messages == []


async def test_stop_and_person_requests_are_not_answers(svc: Any) -> None:
    for text, intent in (("no", "deny"), ("let me talk to a person", "contact_human_agent")):
        tracker = form_tracker("ticket_form", {}, requested_slot="ticket_summary",
                               text=text, intent=intent, customer="cust-ben")
        events, messages = await run(ValidateTicketForm(), tracker)
        assert SlotSet("ticket_summary", text) not in events
        assert messages == []


async def test_another_request_is_not_taken_as_an_order_number(svc: Any) -> None:
    tracker = form_tracker("order_status_form", {}, requested_slot="order_number",
                           text="actually I want a refund", intent="get_refund",
                           customer="cust-anna")

    events, messages = await run(ValidateOrderStatusForm(), tracker)

    # the form rejects the turn: action_route starts the refund flow
    assert events == [ActionExecutionRejected("order_status_form")]
    assert messages == []


async def test_another_flow_with_an_order_number_rejects_the_turn(svc: Any) -> None:
    """Rasa filled order_number from the entity, but the customer asked to cancel."""
    tracker = form_tracker("order_status_form", {"order_number": "104301"},
                           requested_slot="order_number",
                           text="wait no, i want to cancel 104301 instead", intent="cancel_order",
                           customer="cust-anna")

    events, messages = await run(ValidateOrderStatusForm(), tracker)

    assert events == [ActionExecutionRejected("order_status_form")]
    assert messages == []


async def test_a_description_that_reads_like_a_complaint_is_the_refund_reason(svc: Any) -> None:
    tracker = form_tracker("refund_request_form", {}, requested_slot="refund_reason",
                           text="it arrived damaged", intent="complaint",
                           slots={"order_number": "104190"}, customer="cust-anna")

    events, _ = await run(ValidateRefundRequestForm(), tracker)

    assert events == [SlotSet("refund_reason", "it arrived damaged")]


async def test_a_time_is_the_answer_whatever_flow_the_nlu_saw(svc: Any) -> None:
    tracker = form_tracker("reschedule_callback_form", {}, requested_slot="callback_time",
                           text="friday at 3", intent="request_callback",
                           entities=(entity("time", "friday at 3"),), customer="cust-anna")

    assert ValidateRescheduleCallbackForm().other_request(tracker) is False


async def test_a_wrong_plain_answer_gets_its_validation_message(svc: Any) -> None:
    tracker = form_tracker("order_status_form", {}, requested_slot="order_number",
                           text="the blue one", intent="nlu_fallback", customer="cust-anna")

    events, messages = await run(ValidateOrderStatusForm(), tracker)

    assert SlotSet("order_number", None) in events
    assert [m["text"] for m in messages] == [
        '"the blue one" doesn\'t look like an order number. Order numbers have 6 digits, like '
        "#104233: you'll find yours under Orders in the app and in your confirmation email."]


async def test_typed_slash_text_is_quoted_as_typed(svc: Any) -> None:
    tracker = form_tracker("order_status_form", {}, requested_slot="order_number",
                           text="\u2060/restart", intent="nlu_fallback", customer="cust-anna")

    _, messages = await run(ValidateOrderStatusForm(), tracker)

    assert messages[0]["text"].startswith('"/restart" doesn\'t look like an order number.')


async def test_repeating_the_request_at_the_confirmation_means_yes(svc: Any) -> None:
    tracker = form_tracker("cancel_order_form", {}, requested_slot="confirm",
                           text="yes cancel it", intent="cancel_order",
                           slots={"order_number": "104301", "order_eligible": True},
                           customer="cust-anna")

    events, messages = await run(ValidateCancelOrderForm(), tracker)

    assert events == [SlotSet("confirm", True)]
    assert messages == []


async def test_an_unsure_no_at_the_confirmation_is_a_no(svc: Any) -> None:
    tracker = form_tracker("cancel_order_form", {}, requested_slot="confirm",
                           text="no dont do it, found it in my account already",
                           intent="nlu_fallback",
                           slots={"order_number": "104301", "order_eligible": True},
                           customer="cust-anna")
    tracker.latest_message["intent"]["confidence"] = 0.25

    events, messages = await run(ValidateCancelOrderForm(), tracker)

    assert events == [SlotSet("confirm", False)]
    assert messages == []


async def test_a_confident_other_intent_at_the_confirmation_is_not_read_as_a_no(
        svc: Any) -> None:
    tracker = form_tracker("cancel_order_form", {}, requested_slot="confirm",
                           text="no wait, where is my refund for 104012", intent="track_refund",
                           slots={"order_number": "104301", "order_eligible": True},
                           customer="cust-anna")

    events, _ = await run(ValidateCancelOrderForm(), tracker)

    assert SlotSet("confirm", False) not in events


async def test_a_marker_alone_is_no_refund_reason(svc: Any) -> None:
    tracker = form_tracker("refund_request_form", {}, requested_slot="refund_reason",
                           text="because", intent="out_of_scope",
                           slots={"order_number": "104205"}, customer="cust-ben")

    events, messages = await run(ValidateRefundRequestForm(), tracker)

    assert SlotSet("refund_reason", None) in events
    assert [m["text"] for m in messages] == ["Please tell me briefly why you'd like a refund."]


async def test_a_delivery_complaint_is_the_refund_reason_not_a_tracking_request(svc: Any) -> None:
    tracker = form_tracker("refund_request_form", {}, requested_slot="refund_reason",
                           text="it never arrived, the tracking has been stuck for days",
                           intent="track_order", slots={"order_number": "104205"},
                           customer="cust-ben")

    events, _ = await run(ValidateRefundRequestForm(), tracker)

    assert events == [SlotSet("refund_reason",
                              "it never arrived, the tracking has been stuck for days")]


async def test_an_faq_question_is_not_the_ticket_text(svc: Any) -> None:
    tracker = form_tracker("ticket_form", {}, requested_slot="ticket_summary",
                           text="wait, how do I reset my password?", intent="recover_password",
                           customer="cust-ben")

    events, messages = await run(ValidateTicketForm(), tracker)

    assert SlotSet("ticket_summary", "wait, how do I reset my password?") not in events
    assert messages == []


@pytest.mark.parametrize(("reply", "number"), [("the first one", "104301"),
                                               ("the 2nd", "104233"),
                                               ("the last one", "104190")])
async def test_a_pick_from_the_listed_orders_is_that_order(svc: Any, reply: str,
                                                           number: str) -> None:
    """The buttons list Anna's newest orders first: 104301, 104233, 104190."""
    tracker = form_tracker("order_status_form", {"order_number": reply},
                           text=reply, intent="nlu_fallback", customer="cust-anna")

    events, messages = await run(ValidateOrderStatusForm(), tracker)

    assert SlotSet("order_number", number) in events
    assert messages == []


async def test_a_pick_without_a_customer_is_no_order(svc: Any) -> None:
    tracker = form_tracker("order_status_form", {"order_number": "the first one"},
                           text="the first one", intent="nlu_fallback", customer=None)

    events, messages = await run(ValidateOrderStatusForm(), tracker)

    assert SlotSet("order_number", None) in events
    assert messages[0]["text"].startswith('"the first one" doesn\'t look like an order number.')


async def test_a_reason_that_reads_like_a_change_is_the_refund_reason(svc: Any) -> None:
    """Read as change_order, but nothing in it asks for a change (FLOW_REQUEST_SLOTS)."""
    text = "wrong item, I got a 20 L backpack and not the 30 L"
    tracker = form_tracker("refund_request_form", {}, requested_slot="refund_reason",
                           text=text, intent="change_order",
                           slots={"order_number": "104190"}, customer="cust-anna")

    events, messages = await run(ValidateRefundRequestForm(), tracker)

    assert events == [SlotSet("refund_reason", text)]
    assert messages == []


async def test_asking_for_a_change_instead_of_a_reason_is_another_request(svc: Any) -> None:
    tracker = form_tracker("refund_request_form", {}, requested_slot="refund_reason",
                           text="actually can I change the size to a 30 L instead",
                           intent="change_order",
                           slots={"order_number": "104190"}, customer="cust-anna")

    events, messages = await run(ValidateRefundRequestForm(), tracker)

    assert events == [ActionExecutionRejected("refund_request_form")]
    assert messages == []


async def test_a_mistyped_order_number_up_front_gets_its_validation_message(svc: Any) -> None:
    tracker = starting("cancel_order_form", "cancel order 10427", "cancel_order",
                       {"order_number": None, "confirm": None}, customer="cust-chloe")

    events, messages = await run(ValidateCancelOrderForm(), tracker)

    assert SlotSet("order_number", None) in events
    assert SlotSet("order_attempts", 1) in events
    assert [m["text"] for m in messages] == [
        '"10427" doesn\'t look like an order number. Order numbers have 6 digits, like '
        "#104233: you'll find yours under Orders in the app and in your confirmation email."]


async def test_an_order_number_answer_with_the_reason_fills_both(svc: Any) -> None:
    text = "104190, one of the bulbs was smashed in the box"
    tracker = form_tracker("refund_request_form", {"order_number": "104190"},
                           text=text, intent="nlu_fallback",
                           entities=(entity("order_number", "104190"),), customer="cust-anna")

    events, messages = await run(ValidateRefundRequestForm(), tracker)

    assert SlotSet("order_number", "104190") in events
    assert SlotSet("refund_reason", "One of the bulbs was smashed in the box") in events
    assert messages == []


async def test_an_order_number_alone_asks_for_the_reason_next(svc: Any) -> None:
    tracker = form_tracker("refund_request_form", {"order_number": "104190"},
                           text="104190 please", intent="inform",
                           entities=(entity("order_number", "104190"),), customer="cust-anna")

    events, _ = await run(ValidateRefundRequestForm(), tracker)

    assert all(e.get("name") != "refund_reason" for e in events)


async def test_an_faq_question_instead_of_the_phone_is_answered_first(svc: Any) -> None:
    tracker = form_tracker("callback_form", {}, requested_slot="phone",
                           text="are you also open on saturday?",
                           intent="contact_customer_service",
                           entities=(entity("time", "on saturday"),), customer="cust-anna")

    events, messages = await run(ValidateCallbackForm(), tracker)

    assert events == [ActionExecutionRejected("callback_form")]
    assert messages == []


async def test_the_form_asks_again_after_the_answer_for_the_same_message(svc: Any) -> None:
    tracker = form_tracker("callback_form", {}, requested_slot="phone",
                           text="are you also open on saturday?",
                           intent="contact_customer_service", customer="cust-anna")
    tracker.events.append({"event": "action_execution_rejected", "name": "callback_form"})
    tracker.events.append(action_event("action_route", T0 + 2))

    events, messages = await run(ValidateCallbackForm(), tracker)

    assert ActionExecutionRejected("callback_form") not in events
    assert messages == []


async def test_a_rejected_unsure_question_is_no_order_number_when_the_form_asks_again(
        svc: Any) -> None:
    """Round 7: "do i have to pay for the return shipping?" (0.72) while asked for the order:
    answered by the rules, then the form asks again without "doesn't look like an order
    number"."""
    tracker = form_tracker("refund_request_form", {}, requested_slot="order_number",
                           text="do i have to pay for the return shipping?",
                           intent="check_refund_policy", customer="cust-chloe")
    tracker.latest_message["intent"]["confidence"] = 0.72
    tracker.events.append({"event": "action_execution_rejected", "name": "refund_request_form"})
    tracker.events.append(action_event("action_route", T0 + 2))

    events, messages = await run(ValidateRefundRequestForm(), tracker)

    assert all(e.get("name") != "order_number" for e in events if e.get("event") == "slot")
    assert messages == []


async def test_any_question_instead_of_the_phone_is_not_a_bad_number(svc: Any) -> None:
    """Understood only vaguely (0.71): still a question, so no "invalid phone" message."""
    tracker = form_tracker("callback_form", {"phone": "wait, until what time are you open?"},
                           requested_slot="phone", text="wait, until what time are you open?",
                           intent="contact_customer_service", customer="cust-anna")
    tracker.latest_message["intent"]["confidence"] = 0.71

    events, messages = await run(ValidateCallbackForm(), tracker)

    assert events == [ActionExecutionRejected("callback_form")]
    assert messages == []


async def test_an_address_change_after_an_order_flow_is_about_that_order(svc: Any) -> None:
    from actions.forms import triage_entities

    earlier = (
        action_event("action_listen", T0 - 30),
        user_event("cancel 104301", "cancel_order", 0.99,
                   (entity("order_number", "104301"),), timestamp=T0 - 29),
        slot_event("recent_order", "104301", T0 - 28),
    )
    text = "I just want to change the delivery address to Torstrasse 12, Berlin"
    tracker = starting("cancel_order_form", text, "change_shipping_address", {},
                       customer="cust-anna", earlier=earlier)
    tracker.slots["recent_order"] = "104301"

    assert triage_entities(tracker) == ["order_number"]
    tracker.latest_message["intent"] = {"name": "nlu_fallback", "confidence": 0.3}
    assert triage_entities(tracker) == []  # not understood: not about the last order
