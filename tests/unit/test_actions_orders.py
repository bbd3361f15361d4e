"""Tests of the order actions: form validation, tracking, cancel, change, refunds.

Every test runs against real stores on a fresh SQLite database seeded with the demo
orders at :data:`~tests.unit.actions_helpers.NOW` (Monday 23 November 2026).
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, AsyncIterator, Dict, Iterator, List, Optional, Tuple

import pytest
from rasa_sdk.events import SlotSet

from actions.orders import (
    ActionAskCancelConfirm,
    ActionAskChangeConfirm,
    ActionAskOrderNumber,
    ActionAskRefundConfirm,
    ActionCancelOrder,
    ActionChangeOrder,
    ActionRequestRefund,
    ActionTrackOrder,
    ActionTrackRefund,
    ValidateCancelOrderForm,
    ValidateChangeOrderForm,
    ValidateOrderStatusForm,
    ValidateRefundRequestForm,
    ValidateRefundStatusForm,
)
from bot.orders import OrderChangeRow, OrderRow
from bot.support.models import AuditLog, Ticket
from tests.unit.actions_helpers import (
    NOW,
    action_env,
    bot_message,
    dispatcher,
    domain,
    form_tracker,
    freeze_clock,
    installed_services,
    make_tracker,
    table_rows,
)

YES_NO = [{"title": "Yes", "payload": "/affirm"}, {"title": "No", "payload": "/deny"}]
FLOW_TRIAGE = {
    "intent": "get_refund",
    "confidence": 0.91,
    "category": "REFUND",
    "route": "guided",
    "priority": "normal",
    "reasons": [],
}

MALFORMED = (
    '"12ab" doesn\'t look like an order number. Order numbers have 6 digits, like #104233: '
    "you'll find yours under Orders in the app and in your confirmation email."
)
IN_TRANSIT = (
    "Order #104233 is on its way with DHL (tracking number 00340434161234567890). "
    "Expected delivery: Tuesday 24 November."
)

LOGIN_REQUIRED = (
    "To look at orders, refunds, tickets or call-backs I need to know it's you: please log "
    "in to the app (or the website) and open the chat from there. I can still answer "
    "general questions here."
)


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with action_env(monkeypatch):
        yield


@pytest.fixture
async def svc(sqlite_url: str) -> AsyncIterator[Any]:
    async with installed_services(sqlite_url) as services:
        yield services


async def run_action(action: Any, tracker: Any) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    collector = dispatcher()
    events = await action.run(collector, tracker, domain())
    return events, collector.messages


async def order_row(svc: Any, number: str) -> Dict[str, Any]:
    (row,) = await table_rows(svc.orders.engine, OrderRow, number=number)
    return row


async def mark_unpaid(svc: Any, number: str) -> None:
    """Make a seeded order unpaid (the demo data's only unpaid order is still processing)."""
    from sqlalchemy import update

    async with svc.orders.engine.begin() as connection:
        await connection.execute(
            update(OrderRow.__table__).where(OrderRow.__table__.c.number == number).values(paid=False)
        )
    order = await svc.orders.get_order(number)
    assert order is not None and not order.paid


async def changes(svc: Any, number: str) -> List[Tuple[str, str, str]]:
    rows = await table_rows(svc.orders.engine, OrderChangeRow, order_number=number)
    return [(r["kind"], r["description"], r["actor"]) for r in rows]


# ------------------------------------------------------------ validation

ORDER_FORMS = [
    (ValidateOrderStatusForm, "order_status_form"),
    (ValidateRefundStatusForm, "refund_status_form"),
    (ValidateCancelOrderForm, "cancel_order_form"),
    (ValidateChangeOrderForm, "change_order_form"),
    (ValidateRefundRequestForm, "refund_request_form"),
]
FORM_IDS = [form for _, form in ORDER_FORMS]


@pytest.mark.parametrize(("action", "form"), ORDER_FORMS, ids=FORM_IDS)
async def test_malformed_order_number_is_rejected(svc: Any, action: Any, form: str) -> None:
    tracker = form_tracker(form, {"order_number": "12ab"}, slots={"order_attempts": 1.0})

    events, messages = await run_action(action(), tracker)

    assert events == [
        SlotSet("order_number", None),
        SlotSet("order_attempts", 2),
        SlotSet("order_status", None),
        SlotSet("order_eligible", None),
    ]
    assert messages == [bot_message(MALFORMED)]


@pytest.mark.parametrize(("action", "form"), ORDER_FORMS, ids=FORM_IDS)
async def test_unknown_order_number_is_not_found(svc: Any, action: Any, form: str) -> None:
    events, messages = await run_action(
        action(), form_tracker(form, {"order_number": "999999"}, customer="cust-anna"))

    assert events == [
        SlotSet("order_number", None),
        SlotSet("order_attempts", 1),
        SlotSet("order_status", None),
        SlotSet("order_eligible", None),
    ]
    assert messages == [bot_message(
        "I couldn't find an order #999999 in your account. Please check the number and send it "
        "again.")]


@pytest.mark.parametrize(("action", "form"), ORDER_FORMS, ids=FORM_IDS)
async def test_another_customers_order_is_not_found_in_your_account(
    svc: Any, action: Any, form: str
) -> None:
    tracker = form_tracker(form, {"order_number": "104250"}, customer="cust-anna")  # Ben's

    events, messages = await run_action(action(), tracker)

    assert events == [
        SlotSet("order_number", None),
        SlotSet("order_attempts", 1),
        SlotSet("order_status", None),
        SlotSet("order_eligible", None),
    ]
    assert messages == [
        bot_message(
            "I couldn't find an order #104250 in your account. Please check the number and "
            "send it again."
        )
    ]


@pytest.mark.parametrize(("action", "form"), ORDER_FORMS, ids=FORM_IDS)
async def test_own_open_order_is_accepted(svc: Any, action: Any, form: str) -> None:
    tracker = form_tracker(
        form, {"order_number": "it's #104301"}, slots={"order_attempts": 2.0}, customer="cust-anna"
    )

    events, messages = await run_action(action(), tracker)

    eligible = form != "refund_request_form"  # nothing to refund yet
    expected = [
        SlotSet("order_number", "104301"),
        SlotSet("order_attempts", 0),
        SlotSet("order_status", "processing"),
        SlotSet("order_eligible", eligible),
        SlotSet("recent_order", "104301"),
    ]
    if not eligible:  # the form ends at once
        expected.append(SlotSet("requested_slot", None))
    assert events == expected
    assert messages == []


async def test_logged_out_customer_is_asked_to_log_in_and_learns_nothing(svc: Any) -> None:
    # A slot saying "cust-ben" is not a verified customer: only the message's metadata is.
    tracker = form_tracker("order_status_form", {"order_number": "104250"},
                           slots={"customer_id": "cust-ben"})

    events, messages = await run_action(ValidateOrderStatusForm(), tracker)

    assert events == [
        SlotSet("order_number", None),
        SlotSet("order_attempts", 1),
        SlotSet("order_status", None),
        SlotSet("order_eligible", None),
    ]
    assert messages == [bot_message(LOGIN_REQUIRED)]


@pytest.mark.parametrize(
    ("action", "form", "number", "status", "customer"),
    [
        (ValidateCancelOrderForm, "cancel_order_form", "104233", "in_transit", "cust-anna"),
        (ValidateCancelOrderForm, "cancel_order_form", "104190", "delivered", "cust-anna"),
        (ValidateCancelOrderForm, "cancel_order_form", "103987", "cancelled", "cust-ben"),
        (ValidateChangeOrderForm, "change_order_form", "104233", "in_transit", "cust-anna"),
        (ValidateChangeOrderForm, "change_order_form", "104077", "cancelled", "cust-chloe"),
        (ValidateRefundRequestForm, "refund_request_form", "104301", "processing", "cust-anna"),
        # delivered, but a refund is requested already / was rejected / cancelled and refunded
        (ValidateRefundRequestForm, "refund_request_form", "104122", "delivered", "cust-ben"),
        (ValidateRefundRequestForm, "refund_request_form", "104012", "delivered", "cust-anna"),
        (ValidateRefundRequestForm, "refund_request_form", "103987", "cancelled", "cust-ben"),
        # not paid yet (and still processing)
        (ValidateRefundRequestForm, "refund_request_form", "104275", "processing", "cust-chloe"),
    ],
    ids=[
        "cancel-in_transit", "cancel-delivered", "cancel-cancelled", "change-in_transit",
        "change-cancelled", "refund-processing", "refund-requested", "refund-rejected",
        "refund-refunded", "refund-unpaid",
    ],
)
async def test_form_ends_at_once_when_the_order_cannot_proceed(
    svc: Any, action: Any, form: str, number: str, status: str, customer: str
) -> None:
    tracker = form_tracker(form, {"order_number": number}, customer=customer)

    events, messages = await run_action(action(), tracker)

    assert events == [
        SlotSet("order_number", number),
        SlotSet("order_attempts", 0),
        SlotSet("order_status", status),
        SlotSet("order_eligible", False),
        SlotSet("recent_order", number),
        SlotSet("requested_slot", None),
    ]
    assert messages == []


@pytest.mark.parametrize(
    ("action", "form", "number", "customer"),
    [
        (ValidateCancelOrderForm, "cancel_order_form", "104250", "cust-ben"),  # packed
        (ValidateChangeOrderForm, "change_order_form", "104275", "cust-chloe"),  # unpaid
        (ValidateRefundRequestForm, "refund_request_form", "104205", "cust-ben"),  # shipped
        (ValidateRefundRequestForm, "refund_request_form", "104218", "cust-chloe"),  # in transit
        (ValidateOrderStatusForm, "order_status_form", "103987", "cust-ben"),  # cancelled
        (ValidateRefundStatusForm, "refund_status_form", "104122", "cust-ben"),  # requested
    ],
    ids=["cancel-packed", "change-unpaid", "refund-shipped", "refund-in_transit",
         "status-cancelled", "refund_status-requested"],
)
async def test_form_goes_on_when_the_order_is_eligible(
    svc: Any, action: Any, form: str, number: str, customer: str
) -> None:
    order = await svc.orders.get_order(number)
    tracker = form_tracker(form, {"order_number": number}, customer=customer)

    events, messages = await run_action(action(), tracker)

    assert events == [
        SlotSet("order_number", number),
        SlotSet("order_attempts", 0),
        SlotSet("order_status", order.status),
        SlotSet("order_eligible", True),
        SlotSet("recent_order", number),
    ]
    assert messages == []


async def test_refund_form_ends_at_once_for_a_delivered_order_that_is_not_paid(svc: Any) -> None:
    """The demo data has no shipped unpaid order, so one is made: 104160 (delivered)."""
    await mark_unpaid(svc, "104160")
    tracker = form_tracker(
        "refund_request_form", {"order_number": "104160"}, customer="cust-chloe"
    )

    events, messages = await run_action(ValidateRefundRequestForm(), tracker)

    assert events == [
        SlotSet("order_number", "104160"),
        SlotSet("order_attempts", 0),
        SlotSet("order_status", "delivered"),
        SlotSet("order_eligible", False),
        SlotSet("recent_order", "104160"),
        SlotSet("requested_slot", None),
    ]
    assert messages == []


async def test_cancel_form_required_slots_shortcut_for_a_shipped_order(svc: Any) -> None:
    tracker = make_tracker(
        slots={"order_number": "104233", "order_status": "in_transit", "order_eligible": False},
        customer="cust-anna",
        active_loop="cancel_order_form",
    )
    form = ValidateCancelOrderForm()
    collector = dispatcher()

    assert await form.required_slots(
        ["order_number", "confirm"], collector, tracker, domain()
    ) == ["order_number"]
    assert await form.next_requested_slot(collector, tracker, domain()) == SlotSet(
        "requested_slot", None
    )


async def test_cancel_form_asks_everything_for_an_open_order(svc: Any) -> None:
    tracker = make_tracker(
        slots={"order_number": "104301", "order_status": "processing", "order_eligible": True},
        customer="cust-anna",
        active_loop="cancel_order_form",
    )
    form = ValidateCancelOrderForm()

    assert await form.required_slots(
        ["order_number", "confirm"], dispatcher(), tracker, domain()
    ) == ["order_number", "confirm"]
    assert await form.next_requested_slot(dispatcher(), tracker, domain()) is None


@pytest.mark.parametrize(
    "slots",
    [
        # The order status alone no longer ends the form: order_eligible decides.
        {"order_number": "104233", "order_status": "in_transit"},
        # Not eligible, but no order number (yet): it must be asked first.
        {"order_number": None, "order_eligible": False},
    ],
    ids=["status-without-eligibility", "no-order-number"],
)
async def test_cancel_form_shortcut_needs_an_order_number_that_is_not_eligible(
    svc: Any, slots: Dict[str, Any]
) -> None:
    tracker = make_tracker(slots=slots, customer="cust-anna", active_loop="cancel_order_form")

    assert await ValidateCancelOrderForm().required_slots(
        ["order_number", "confirm"], dispatcher(), tracker, domain()
    ) == ["order_number", "confirm"]


REFUND_FORM_SLOTS = ["order_number", "refund_reason", "confirm"]


@pytest.mark.parametrize(
    ("number", "customer", "status", "text", "buttons"),
    [
        ("104122", "cust-ben", "delivered",
         "There's already a refund for order #104122 (status: requested).",
         [{"title": "Refund status", "payload": "/track_refund"}]),
        # Unpaid and processing: "not shipped" is checked before "not paid".
        ("104275", "cust-chloe", "processing",
         "Order #104275 hasn't shipped yet, so you can simply cancel it for free.",
         [{"title": "Cancel the order", "payload": "/cancel_order"}]),
    ],
    ids=["refund-requested", "unpaid"],
)
async def test_refund_request_form_shortcut_ends_in_the_reason_it_cannot_proceed(
    svc: Any, number: str, customer: str, status: str, text: str, buttons: List[Dict[str, str]]
) -> None:
    form = ValidateRefundRequestForm()
    validated, _ = await run_action(
        form, form_tracker("refund_request_form", {"order_number": number}, customer=customer)
    )
    assert validated[-3:] == [SlotSet("order_eligible", False), SlotSet("recent_order", number),
                              SlotSet("requested_slot", None)]

    # The next turn: the form sees the validated slots and asks nothing more.
    slots = {"order_number": number, "order_status": status, "order_eligible": False}
    tracker = make_tracker(slots=slots, customer=customer, active_loop="refund_request_form")
    collector = dispatcher()
    assert await form.required_slots(REFUND_FORM_SLOTS, collector, tracker, domain()) == [
        "order_number"
    ]
    assert await form.next_requested_slot(collector, tracker, domain()) == SlotSet(
        "requested_slot", None
    )
    assert collector.messages == []

    # The submit action explains why (no reason or confirmation was asked).
    events, messages = await run_action(
        ActionRequestRefund(), make_tracker(slots=slots, customer=customer)
    )
    assert events == [SlotSet("confirm", None), SlotSet("refund_reason", None)]
    assert messages == [bot_message(text, buttons=buttons)]
    assert (await order_row(svc, number))["refund_status"] == (
        "requested" if number == "104122" else "none"
    )
    assert await table_rows(svc.store.engine, Ticket) == []


async def test_refund_request_form_asks_everything_for_a_refundable_order(svc: Any) -> None:
    tracker = make_tracker(
        slots={"order_number": "104190", "order_status": "delivered", "order_eligible": True},
        customer="cust-anna",
        active_loop="refund_request_form",
    )
    form = ValidateRefundRequestForm()

    assert await form.required_slots(
        REFUND_FORM_SLOTS, dispatcher(), tracker, domain()
    ) == REFUND_FORM_SLOTS
    assert await form.next_requested_slot(dispatcher(), tracker, domain()) is None


@pytest.mark.parametrize(
    ("value", "expected", "message"),
    [
        ("ab", None, "Please tell me in a few words what should change."),
        ("  size L instead of M  ", "size L instead of M", None),
    ],
)
async def test_change_request_validation(
    svc: Any, value: str, expected: Optional[str], message: Optional[str]
) -> None:
    tracker = form_tracker(
        "change_order_form",
        {"change_request": value},
        slots={"order_number": "104301", "order_status": "processing"},
        customer="cust-anna",
    )

    events, messages = await run_action(ValidateChangeOrderForm(), tracker)

    assert events == [SlotSet("change_request", expected)]
    assert messages == ([bot_message(message)] if message else [])


@pytest.mark.parametrize(
    ("value", "expected", "message"),
    [
        ("no", None, "Please tell me briefly why you'd like a refund."),
        ("arrived damaged", "arrived damaged", None),
    ],
)
async def test_refund_reason_validation(
    svc: Any, value: str, expected: Optional[str], message: Optional[str]
) -> None:
    tracker = form_tracker(
        "refund_request_form",
        {"refund_reason": value},
        slots={"order_number": "104190", "order_status": "delivered"},
        customer="cust-anna",
    )

    events, messages = await run_action(ValidateRefundRequestForm(), tracker)

    assert events == [SlotSet("refund_reason", expected)]
    assert messages == ([bot_message(message)] if message else [])


# --------------------------------------------------------------- questions


async def test_ask_order_number_offers_the_customers_recent_orders(svc: Any) -> None:
    events, messages = await run_action(ActionAskOrderNumber(), make_tracker(customer="cust-anna"))

    assert events == []
    assert messages == [
        bot_message(
            "Which order is it about? Here are your latest ones, or type the order number.",
            buttons=[
                {
                    "title": "#104301 · Monday 23 November · processing",
                    "payload": '/inform{"order_number":"104301"}',
                },
                {
                    "title": "#104233 · Friday 20 November · in transit",
                    "payload": '/inform{"order_number":"104233"}',
                },
                {
                    "title": "#104190 · Wednesday 11 November · delivered",
                    "payload": '/inform{"order_number":"104190"}',
                },
            ],
        )
    ]


#: 01:00 UTC on Monday 23 November = 02:00 in Paris: Chloé's newest order (2 hours ago) was
#: placed on Sunday 22 November at 23:00 UTC, which is already Monday at 00:00 in Paris.
JUST_AFTER_MIDNIGHT_IN_PARIS = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)


async def test_ask_order_number_dates_the_buttons_in_the_customers_zone(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    freeze_clock(monkeypatch, JUST_AFTER_MIDNIGHT_IN_PARIS)
    async with installed_services(db_url, JUST_AFTER_MIDNIGHT_IN_PARIS) as services:
        newest = await services.orders.get_order("104275")
        assert newest.placed_at == datetime(2026, 11, 22, 23, 0, tzinfo=timezone.utc)

        events, messages = await run_action(
            ActionAskOrderNumber(), make_tracker(customer="cust-chloe")  # Europe/Paris
        )

    assert events == []
    assert messages == [
        bot_message(
            "Which order is it about? Here are your latest ones, or type the order number.",
            buttons=[
                {
                    "title": "#104275 · Monday 23 November · processing",  # UTC: Sunday 22
                    "payload": '/inform{"order_number":"104275"}',
                },
                {
                    "title": "#104218 · Thursday 19 November · in transit",
                    "payload": '/inform{"order_number":"104218"}',
                },
                {
                    "title": "#104077 · Tuesday 17 November · cancelled",
                    "payload": '/inform{"order_number":"104077"}',
                },
            ],
        )
    ]


@pytest.mark.parametrize(
    ("zone", "newest"),
    [
        # 104301 was placed at 05:00 UTC on Monday 23 November.
        ("America/Los_Angeles", "Sunday 22 November"),  # 21:00 the day before
        ("Asia/Tokyo", "Monday 23 November"),  # 14:00
        ("Not/AZone", "Monday 23 November"),  # falls back to Europe/Berlin: 06:00
    ],
)
async def test_ask_order_number_button_dates_follow_the_profile_zone(
    svc: Any, zone: str, newest: str
) -> None:
    tracker = make_tracker(slots={"customer_tz": zone}, customer="cust-anna")

    _, messages = await run_action(ActionAskOrderNumber(), tracker)

    assert [b["title"] for b in messages[0]["buttons"]] == [
        f"#104301 · {newest} · processing",
        "#104233 · Friday 20 November · in transit",
        "#104190 · Wednesday 11 November · delivered",
    ]


async def test_ask_order_number_without_a_customer_and_with_the_hint(svc: Any) -> None:
    _, first = await run_action(ActionAskOrderNumber(), make_tracker())
    _, third = await run_action(ActionAskOrderNumber(), make_tracker(slots={"order_attempts": 2.0}))

    assert first == [bot_message("What's the order number? It has 6 digits, like #104233.")]
    assert third == [
        bot_message(
            "What's the order number? It has 6 digits, like #104233. If you can't find it, say "
            '"talk to a person", or "no" to leave this.'
        )
    ]


@pytest.mark.parametrize(
    ("action", "slots", "text"),
    [
        (ActionAskCancelConfirm, {"order_number": "104301"},
         "Shall I cancel order #104301? Cancelling is free while it hasn't shipped."),
        (ActionAskChangeConfirm, {"order_number": "104301", "change_request": "size L"},
         'Shall I ask our warehouse to change order #104301 as follows: "size L"?'),
        (ActionAskRefundConfirm, {"order_number": "104190", "refund_reason": "arrived damaged"},
         'Shall I request a refund for order #104190 (reason: "arrived damaged")?'),
    ],
)
async def test_confirmation_questions(action: Any, slots: Dict[str, Any], text: str) -> None:
    events, messages = await run_action(action(), make_tracker(slots=slots))

    assert events == []
    assert messages == [bot_message(text, buttons=YES_NO)]


# ----------------------------------------------------------------- tracking


async def test_track_order_in_transit_names_carrier_tracking_and_date(svc: Any) -> None:
    events, messages = await run_action(
        ActionTrackOrder(), make_tracker(slots={"order_number": "104233"}, customer="cust-anna")
    )

    assert events == []
    assert messages == [
        bot_message(IN_TRANSIT, buttons=[{"title": "Delivery times", "payload": "/delivery_period"}])
    ]


async def test_track_order_processing_offers_to_cancel(svc: Any) -> None:
    events, messages = await run_action(
        ActionTrackOrder(), make_tracker(slots={"order_number": "104301"}, customer="cust-anna")
    )

    assert events == []
    assert messages == [
        bot_message(
            "Order #104301 is being prepared.",
            buttons=[{"title": "Cancel this order", "payload": "/cancel_order"}],
        )
    ]


@pytest.mark.parametrize(
    ("number", "text", "buttons"),
    [
        ("104250", "Order #104250 is packed and waiting for the carrier. Expected delivery: "
                   "Thursday 26 November.", [{"title": "Cancel this order",
                                              "payload": "/cancel_order"}]),
        ("104205", "Order #104205 has shipped with UPS (tracking number 1Z999AA10987654321). "
                   "Expected delivery: Thursday 26 November.",
         [{"title": "Delivery times", "payload": "/delivery_period"}]),
        ("104122", "Order #104122 was delivered.", []),
        ("103987", "Order #103987 was cancelled.", []),
    ],
)
async def test_track_order_other_statuses(
    svc: Any, number: str, text: str, buttons: List[Dict[str, str]]
) -> None:
    owner = {"104250": "cust-ben", "104205": "cust-ben", "104122": "cust-ben",
             "103987": "cust-ben"}[number]
    _, messages = await run_action(
        ActionTrackOrder(), make_tracker(slots={"order_number": number}, customer=owner))

    assert messages == [bot_message(text, buttons=buttons)]


async def test_track_order_that_is_not_the_customers_any_more(svc: Any) -> None:
    events, messages = await run_action(
        ActionTrackOrder(), make_tracker(slots={"order_number": "104250"}, customer="cust-anna")
    )

    assert events == [SlotSet("order_number", None)]
    assert messages == [bot_message("Sorry, I can't find that order any more.")]


# ------------------------------------------------------------------- cancel


async def test_cancel_confirmed_cancels_the_order_in_the_database(svc: Any) -> None:
    tracker = make_tracker(
        slots={"order_number": "104301", "order_status": "processing", "confirm": True},
        customer="cust-anna",
    )

    events, messages = await run_action(ActionCancelOrder(), tracker)

    assert events == [
        SlotSet("confirm", None),
        SlotSet("order_status", "cancelled"),
        SlotSet("order_eligible", False),
    ]
    assert messages == [
        bot_message(
            "Done: order #104301 is cancelled. If you already paid, the full amount goes back to "
            "your original payment method within 3-5 business days."
        )
    ]
    row = await order_row(svc, "104301")
    assert (row["status"], row["refund_status"], row["refund_amount_cents"]) == (
        "cancelled", "approved", 6399,
    )
    assert row["updated_at"] == NOW
    assert await changes(svc, "104301") == [("cancel", "cancelled", "customer:cust-anna")]


async def test_cancel_without_a_verified_customer_changes_nothing(svc: Any) -> None:
    tracker = make_tracker(slots={"order_number": "104250", "confirm": True,
                                  "customer_id": "cust-ben"}, sender_id="web-42")

    events, messages = await run_action(ActionCancelOrder(), tracker)

    assert events == [SlotSet("confirm", None)]
    assert messages == [bot_message(LOGIN_REQUIRED)]
    assert (await order_row(svc, "104250"))["status"] == "packed"
    assert await changes(svc, "104250") == []


async def test_cancel_declined_changes_nothing(svc: Any) -> None:
    tracker = make_tracker(
        slots={"order_number": "104301", "confirm": False}, customer="cust-anna"
    )

    events, messages = await run_action(ActionCancelOrder(), tracker)

    assert events == [SlotSet("confirm", None)]
    assert messages == [bot_message("OK, order #104301 stays as it is.")]
    assert (await order_row(svc, "104301"))["status"] == "processing"
    assert await changes(svc, "104301") == []


async def test_cancel_refused_for_a_shipped_order(svc: Any) -> None:
    tracker = make_tracker(slots={"order_number": "104233", "confirm": True}, customer="cust-anna")

    events, messages = await run_action(ActionCancelOrder(), tracker)

    assert events == [SlotSet("confirm", None)]
    assert messages == [
        bot_message(
            IN_TRANSIT + " It can't be cancelled any more, but you can return it free of charge "
            "within 30 days of delivery.",
            buttons=[{"title": "How returns work", "payload": "/check_refund_policy"}],
        )
    ]
    assert (await order_row(svc, "104233"))["status"] == "in_transit"


async def test_cancel_an_already_cancelled_order(svc: Any) -> None:
    tracker = make_tracker(slots={"order_number": "103987", "confirm": True}, customer="cust-ben")

    events, messages = await run_action(ActionCancelOrder(), tracker)

    assert events == [SlotSet("confirm", None)]
    assert messages == [bot_message("Order #103987 is already cancelled.")]


async def test_cancel_an_order_that_is_gone(svc: Any) -> None:
    tracker = make_tracker(slots={"order_number": "104233", "confirm": True}, customer="cust-ben")

    events, messages = await run_action(ActionCancelOrder(), tracker)

    assert events == [SlotSet("confirm", None)]
    assert messages == [bot_message("Sorry, I can't find that order any more.")]


# ------------------------------------------------------------------- change


async def test_change_confirmed_stores_the_change_and_opens_an_order_ticket(svc: Any) -> None:
    tracker = make_tracker(
        slots={
            "order_number": "104250",
            "change_request": "size L instead of M",
            "confirm": True,
            "flow_triage": {**FLOW_TRIAGE, "intent": "change_order", "category": "ORDER"},
        },
        customer="cust-ben",
    )

    events, messages = await run_action(ActionChangeOrder(), tracker)

    assert events == [SlotSet("confirm", None), SlotSet("change_request", None)]
    assert messages == [
        bot_message(
            "Thanks! I've passed your change for order #104250 to our warehouse team (ticket "
            "T-000001). You'll get an email once it's done, usually within 2 hours."
        )
    ]
    assert await changes(svc, "104250") == [("change", "size L instead of M", "customer:cust-ben")]
    order = await svc.orders.get_order("104250")
    assert order.change_requests == ("size L instead of M",)
    (ticket,) = await table_rows(svc.store.engine, Ticket)
    assert {k: ticket[k] for k in (
        "reference", "conversation_id", "customer_id", "contact_email", "summary", "category",
        "priority", "status", "source", "details",
    )} == {
        "reference": "T-000001",
        "conversation_id": "conv-1",
        "customer_id": "cust-ben",
        "contact_email": "ben@example.com",
        "summary": "Change request for order #104250: size L instead of M",
        "category": "ORDER",
        "priority": "normal",
        "status": "open",
        "source": "bot",
        "details": {
            "order_number": "104250",
            "triage": {**FLOW_TRIAGE, "intent": "change_order", "category": "ORDER"},
        },
    }
    audit = await table_rows(svc.store.engine, AuditLog)
    assert [(a["action"], a["object_id"]) for a in audit] == [("ticket.created", "T-000001")]


async def test_change_takes_the_priority_from_the_flow_triage(svc: Any) -> None:
    tracker = make_tracker(
        slots={
            "order_number": "104301",
            "change_request": "deliver to my office",
            "confirm": True,
            "flow_triage": {**FLOW_TRIAGE, "priority": "high"},
        },
        customer="cust-anna",
    )

    await run_action(ActionChangeOrder(), tracker)

    (ticket,) = await table_rows(svc.store.engine, Ticket)
    assert (ticket["priority"], ticket["category"]) == ("high", "ORDER")


async def test_change_declined_stores_nothing(svc: Any) -> None:
    tracker = make_tracker(
        slots={"order_number": "104301", "change_request": "size L", "confirm": False},
        customer="cust-anna",
    )

    events, messages = await run_action(ActionChangeOrder(), tracker)

    assert events == [SlotSet("confirm", None), SlotSet("change_request", None)]
    assert messages == [bot_message("OK, I haven't changed order #104301.")]
    assert await changes(svc, "104301") == []
    assert await table_rows(svc.store.engine, Ticket) == []


async def test_change_refused_for_a_shipped_order(svc: Any) -> None:
    tracker = make_tracker(
        slots={"order_number": "104233", "change_request": "size L", "confirm": True},
        customer="cust-anna",
    )

    events, messages = await run_action(ActionChangeOrder(), tracker)

    assert events == [SlotSet("confirm", None), SlotSet("change_request", None)]
    assert messages == [
        bot_message(
            IN_TRANSIT + " It can't be changed any more, but you can return it free of charge "
            "within 30 days of delivery and order again."
        )
    ]
    assert await table_rows(svc.store.engine, Ticket) == []


# -------------------------------------------------------------- refund status


@pytest.mark.parametrize(
    ("number", "text", "buttons"),
    [
        ("104190", "There's no refund for order #104190 yet.",
         [{"title": "Request a refund", "payload": "/get_refund"}]),
        ("104122", "Your refund request for order #104122 has arrived and is being reviewed. "
                   "We decide within 2 business days.", []),
        ("104077", "Your refund of €27.80 for order #104077 is approved. The money reaches your "
                   "original payment method within 3-5 business days.", []),
        ("103987", "The refund of €24.90 for order #103987 has been paid out.", []),
        ("104012", "The refund request for order #104012 was declined; our email explains why. "
                   "If you disagree, a person from our team can look at it again.",
         [{"title": "Talk to a person", "payload": "/contact_human_agent"}]),
    ],
    ids=["none", "requested", "approved", "refunded", "rejected"],
)
async def test_track_refund_for_each_refund_status(
    svc: Any, number: str, text: str, buttons: List[Dict[str, str]]
) -> None:
    owner = {"104190": "cust-anna", "104122": "cust-ben", "104077": "cust-chloe",
             "103987": "cust-ben", "104012": "cust-anna"}[number]
    events, messages = await run_action(
        ActionTrackRefund(), make_tracker(slots={"order_number": number}, customer=owner)
    )

    assert events == []
    assert messages == [bot_message(text, buttons=buttons)]


async def test_track_refund_of_an_order_that_is_gone(svc: Any) -> None:
    events, messages = await run_action(
        ActionTrackRefund(), make_tracker(slots={"order_number": "104077"}, customer="cust-anna")
    )

    assert events == []
    assert messages == [bot_message("Sorry, I can't find that order any more.")]


# ------------------------------------------------------------ refund request


def refund_tracker(number: str, confirm: Any = True, customer: str = "cust-anna") -> Any:
    return make_tracker(
        slots={
            "order_number": number,
            "refund_reason": "arrived damaged",
            "confirm": confirm,
            "flow_triage": FLOW_TRIAGE,
        },
        customer=customer,
    )


async def test_request_refund_opens_a_refund_ticket_and_marks_the_order(svc: Any) -> None:
    events, messages = await run_action(ActionRequestRefund(), refund_tracker("104190"))

    assert events == [SlotSet("confirm", None), SlotSet("refund_reason", None)]
    assert messages == [
        bot_message(
            "Your refund request for order #104190 is in (ticket T-000001). We review it within "
            "2 business days and email you; approved refunds reach your original payment method "
            "within 3-5 business days."
        )
    ]
    row = await order_row(svc, "104190")
    assert (row["refund_status"], row["refund_amount_cents"], row["refund_reason"]) == (
        "requested", 12900, "arrived damaged",
    )
    assert await changes(svc, "104190") == [("refund", "arrived damaged", "customer:cust-anna")]
    (ticket,) = await table_rows(svc.store.engine, Ticket)
    assert {k: ticket[k] for k in (
        "reference", "summary", "category", "priority", "status", "source", "customer_id",
        "contact_email", "details",
    )} == {
        "reference": "T-000001",
        "summary": "Refund request for order #104190: arrived damaged",
        "category": "REFUND",
        "priority": "normal",
        "status": "open",
        "source": "bot",
        "customer_id": "cust-anna",
        "contact_email": "anna@example.com",
        "details": {"order_number": "104190", "triage": FLOW_TRIAGE},
    }


async def test_request_refund_twice_says_there_is_one_already(svc: Any) -> None:
    await run_action(ActionRequestRefund(), refund_tracker("104190"))

    events, messages = await run_action(ActionRequestRefund(), refund_tracker("104190"))

    assert events == [SlotSet("confirm", None), SlotSet("refund_reason", None)]
    assert messages == [
        bot_message(
            "There's already a refund for order #104190 (status: requested).",
            buttons=[{"title": "Refund status", "payload": "/track_refund"}],
        )
    ]
    assert len(await table_rows(svc.store.engine, Ticket)) == 1


async def test_request_refund_refused_for_a_processing_order(svc: Any) -> None:
    events, messages = await run_action(ActionRequestRefund(), refund_tracker("104301"))

    assert events == [SlotSet("confirm", None), SlotSet("refund_reason", None)]
    assert messages == [
        bot_message(
            "Order #104301 hasn't shipped yet, so you can simply cancel it for free.",
            buttons=[{"title": "Cancel the order", "payload": "/cancel_order"}],
        )
    ]
    assert (await order_row(svc, "104301"))["refund_status"] == "none"
    assert await table_rows(svc.store.engine, Ticket) == []


async def test_request_refund_for_an_unpaid_processing_order_says_it_has_not_shipped(
    svc: Any,
) -> None:
    """104275 is unpaid *and* processing: the "not shipped" check fires first."""
    events, messages = await run_action(
        ActionRequestRefund(), refund_tracker("104275", customer="cust-chloe")
    )

    assert events == [SlotSet("confirm", None), SlotSet("refund_reason", None)]
    assert messages == [
        bot_message(
            "Order #104275 hasn't shipped yet, so you can simply cancel it for free.",
            buttons=[{"title": "Cancel the order", "payload": "/cancel_order"}],
        )
    ]
    assert await table_rows(svc.store.engine, Ticket) == []


async def test_request_refund_for_a_delivered_unpaid_order_says_nothing_was_paid(
    svc: Any,
) -> None:
    await mark_unpaid(svc, "104160")

    events, messages = await run_action(
        ActionRequestRefund(), refund_tracker("104160", customer="cust-chloe")
    )

    assert events == [SlotSet("confirm", None), SlotSet("refund_reason", None)]
    assert messages == [
        bot_message("Order #104160 hasn't been paid yet, so there's nothing to refund.")
    ]
    assert (await order_row(svc, "104160"))["refund_status"] == "none"
    assert await changes(svc, "104160") == []
    assert await table_rows(svc.store.engine, Ticket) == []


async def test_request_refund_for_a_cancelled_order(svc: Any) -> None:
    events, messages = await run_action(
        ActionRequestRefund(), refund_tracker("104077", customer="cust-chloe")
    )

    assert events == [SlotSet("confirm", None), SlotSet("refund_reason", None)]
    assert messages == [bot_message("Order #104077 was cancelled. There's nothing to refund.")]


async def test_request_refund_declined_by_the_customer(svc: Any) -> None:
    events, messages = await run_action(ActionRequestRefund(), refund_tracker("104190", False))

    assert events == [SlotSet("confirm", None), SlotSet("refund_reason", None)]
    assert messages == [bot_message("OK, I haven't requested a refund.")]
    assert (await order_row(svc, "104190"))["refund_status"] == "none"
    assert await table_rows(svc.store.engine, Ticket) == []
