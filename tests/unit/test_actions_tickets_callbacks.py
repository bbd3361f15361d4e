"""Tests of the ticket form and the call-back flows (book, move, cancel).

Store-backed tests run on SQLite and PostgreSQL (``db_url``); the clock is frozen at
:data:`~tests.unit.actions_helpers.NOW`, Monday 23 November 2026, 11:00 in Berlin.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, AsyncIterator, Dict, Iterator, List, Optional, Tuple

import pytest
from rasa_sdk.events import SlotSet

from actions.callbacks import (
    ActionAskCallbackConfirm,
    ActionAskRescheduleTime,
    ActionCancelCallback,
    ActionRescheduleCallback,
    ActionScheduleCallback,
    ValidateCallbackForm,
    ValidateRescheduleCallbackForm,
)
from actions.prompts import AskCallbackTime, AskContactEmail, AskPhone, AskTicketSummary
from actions.tickets import ActionCreateTicket, ValidateTicketForm
from bot.support.models import AuditLog, Callback, Ticket
from bot.support.ops import StateError
from tests.unit.actions_helpers import (
    T0,
    action_env,
    bot_message,
    conversation,
    dispatcher,
    domain,
    form_tracker,
    freeze_clock,
    installed_services,
    iso,
    make_tracker,
    table_rows,
)

YES_NO = [{"title": "Yes", "payload": "/affirm"}, {"title": "No", "payload": "/deny"}]
TUESDAY_10_BERLIN = "2026-11-24T10:00:00+01:00"
TUESDAY_9_UTC = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)
#: The phone hours as each customer reads them: in their zone, named unless it is the team's.
HOURS = "Mon–Fri 09:00–18:00, Sat 10:00–14:00"
HOURS_LONDON = "Mon–Fri 08:00–17:00, Sat 09:00–13:00 London time"
HOURS_PARIS = "Mon–Fri 09:00–18:00, Sat 10:00–14:00 Paris time"
NOT_UNDERSTOOD = (
    'Sorry, I couldn\'t work out a time from that. Try something like "tomorrow at 10" or '
    '"Friday 14:30".'
)
PAST = "That time has already passed (or is too soon). When else suits you?"


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with action_env(monkeypatch):
        yield


@pytest.fixture
async def svc(db_url: str) -> AsyncIterator[Any]:
    async with installed_services(db_url) as services:
        yield services


async def run_action(action: Any, tracker: Any) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    collector = dispatcher()
    events = await action.run(collector, tracker, domain())
    return events, collector.messages


# ----------------------------------------------------------------- questions


@pytest.mark.parametrize(
    ("action", "text"),
    [
        (AskTicketSummary, "Please describe the problem in a few sentences, and I'll open a "
                           "ticket for our support team."),
        (AskContactEmail, "Which email address should our team reply to?"),
        (AskPhone, "Which phone number should we call? Please include the country code, e.g. "
                   "+49 151 23456789."),
        (AskCallbackTime, 'When should we call you? For example "tomorrow at 10" or "friday '
                          'afternoon".'),
    ],
)
async def test_form_questions(action: Any, text: str) -> None:
    events, messages = await run_action(action(), make_tracker())

    assert events == []
    assert messages == [bot_message(text)]


# --------------------------------------------------------------- ticket form


async def test_ticket_form_prefills_the_contact_email_from_the_profile() -> None:
    tracker = form_tracker(
        "ticket_form",
        {"ticket_summary": "  The app crashes when I open my orders  "},
        customer="cust-anna",
    )

    events, messages = await run_action(ValidateTicketForm(), tracker)

    assert events == [
        SlotSet("ticket_summary", "The app crashes when I open my orders"),
        SlotSet("contact_email", "anna@example.com"),
    ]  # no requested_slot: Rasa asks the next slot of domain.yml, `confirm`
    assert messages == []


async def test_ticket_form_keeps_an_email_the_customer_gave() -> None:
    tracker = form_tracker(
        "ticket_form",
        {"ticket_summary": "The app crashes when I open my orders"},
        slots={"contact_email": "anna.work@example.com"},
        customer="cust-anna",
    )

    events, _ = await run_action(ValidateTicketForm(), tracker)

    assert events == [SlotSet("ticket_summary", "The app crashes when I open my orders")]


async def test_ticket_form_extract_contact_email() -> None:
    form = ValidateTicketForm()

    assert await form.extract_contact_email(
        dispatcher(), make_tracker(customer="cust-ben"), domain()
    ) == {"contact_email": "ben@example.com"}
    assert await form.extract_contact_email(dispatcher(), make_tracker(), domain()) == {}


async def test_ticket_summary_too_short() -> None:
    events, messages = await run_action(
        ValidateTicketForm(), form_tracker("ticket_form", {"ticket_summary": "broken"})
    )

    assert events == [SlotSet("ticket_summary", None)]
    assert messages == [
        bot_message("Could you describe it in a little more detail? A sentence or two is enough.")
    ]


async def test_contact_email_is_found_in_the_text_and_lowercased() -> None:
    tracker = form_tracker(
        "ticket_form",
        {"contact_email": "Mail me at Anna.S@Example.COM please"},
        slots={"ticket_summary": "The app crashes when I open my orders"},
    )

    events, messages = await run_action(ValidateTicketForm(), tracker)

    assert events == [SlotSet("contact_email", "anna.s@example.com")]
    assert messages == []


async def test_invalid_contact_email() -> None:
    tracker = form_tracker(
        "ticket_form",
        {"contact_email": "anna at example"},
        slots={"ticket_summary": "The app crashes when I open my orders"},
    )

    events, messages = await run_action(ValidateTicketForm(), tracker)

    assert events == [SlotSet("contact_email", None)]
    assert messages == [
        bot_message(
            '"anna at example" doesn\'t look like an email address. Please send it again, e.g. '
            "name@example.com."
        )
    ]


# ------------------------------------------------------------- create ticket

#: What the ticket action resets, whatever happens: the next ticket starts afresh.
TICKET_FORM_DONE = [SlotSet("ticket_summary", None), SlotSet("confirm", None),
                    SlotSet("prefilled", None)]

PAYMENT_TRIAGE = {
    "intent": "payment_issue",
    "confidence": 0.87,
    "category": "PAYMENT",
    "route": "guided",
    "priority": "high",
    "reasons": [],
}


async def test_create_ticket_stores_triage_slots_and_transcript(svc: Any) -> None:
    events_in = conversation(
        "My card was charged twice",
        "Please describe the problem in a few sentences, and I'll open a ticket for our "
        "support team.",
        "I paid order 104233 and was charged twice by my bank",
    )
    tracker = make_tracker(
        slots={
            "flow_triage": PAYMENT_TRIAGE,
            "ticket_summary": "I paid order 104233 and was charged twice by my bank",
            "contact_email": "anna@example.com",
        },
        customer="cust-anna",
        events=events_in,
        sender_id="conv-77",
    )

    events, messages = await run_action(ActionCreateTicket(), tracker)

    assert events == [*TICKET_FORM_DONE, SlotSet("last_ticket", "T-000001")]
    assert messages == [
        bot_message(
            "I've opened ticket T-000001 for you. Our support team will reply to "
            "anna@example.com within 4 hours, and you'll see the answer here in the chat too."
        )
    ]
    (row,) = await table_rows(svc.store.engine, Ticket)
    assert {k: row[k] for k in (
        "reference", "conversation_id", "customer_id", "contact_email", "summary", "category",
        "priority", "status", "source",
    )} == {
        "reference": "T-000001",
        "conversation_id": "conv-77",
        "customer_id": "cust-anna",
        "contact_email": "anna@example.com",
        "summary": "I paid order 104233 and was charged twice by my bank",
        "category": "PAYMENT",
        "priority": "high",
        "status": "open",
        "source": "bot",
    }
    assert row["details"] == {
        "triage": PAYMENT_TRIAGE,
        "slots": {
            "ticket_summary": "I paid order 104233 and was charged twice by my bank",
            "contact_email": "anna@example.com",
            "customer_id": "cust-anna",
            "customer_name": "Anna Schmidt",
            "customer_email": "anna@example.com",
            "customer_tz": "Europe/Berlin",
            "customer_context": {"locale": "de-DE", "app_version": "5.2.0"},
        },
        "transcript": [
            {"author": "customer", "text": "My card was charged twice", "at": iso(T0)},
            {
                "author": "bot",
                "text": "Please describe the problem in a few sentences, and I'll open a ticket "
                "for our support team.",
                "at": iso(T0 + 10),
            },
            {
                "author": "customer",
                "text": "I paid order 104233 and was charged twice by my bank",
                "at": iso(T0 + 20),
            },
        ],
        "context": {"locale": "de-DE", "app_version": "5.2.0"},
    }
    audit = await table_rows(svc.store.engine, AuditLog)
    assert [(a["actor"], a["action"], a["object_id"]) for a in audit] == [
        ("bot", "ticket.created", "T-000001")
    ]


async def test_create_ticket_without_triage_uses_other_and_normal(svc: Any) -> None:
    tracker = make_tracker(
        slots={"ticket_summary": "Something else entirely", "contact_email": "x@example.org"},
        sender_id="conv-7", customer="cust-ben",
    )

    events, messages = await run_action(ActionCreateTicket(), tracker)

    assert events == [*TICKET_FORM_DONE, SlotSet("last_ticket", "T-000001")]
    assert messages == [
        bot_message(
            "I've opened ticket T-000001 for you. Our support team will reply to x@example.org "
            "within 24 hours, and you'll see the answer here in the chat too."
        )
    ]
    (row,) = await table_rows(svc.store.engine, Ticket)
    assert (row["category"], row["priority"], row["customer_id"]) == ("OTHER", "normal", "cust-ben")


async def test_create_ticket_without_a_verified_customer_opens_nothing(svc: Any) -> None:
    tracker = make_tracker(
        slots={"ticket_summary": "Please call me", "contact_email": "x@example.org",
               "customer_id": "cust-ben"},  # a slot is not a verified customer
        sender_id="anon-1",
    )

    events, messages = await run_action(ActionCreateTicket(), tracker)

    assert events == TICKET_FORM_DONE
    assert [m["text"] for m in messages] == [
        "To look at orders, refunds, tickets or call-backs I need to know it's you: please log "
        "in to the app (or the website) and open the chat from there. I can still answer "
        "general questions here."]
    assert await table_rows(svc.store.engine, Ticket) == []


# ------------------------------------------------------------- callback form


@pytest.mark.parametrize(
    ("customer", "typed", "expected"),
    [
        ("cust-anna", "0151 23456789", "+4915123456789"),  # de-DE
        ("cust-ben", "07400 123456", "+447400123456"),  # en-GB
        ("cust-chloe", "06 12 34 56 78", "+33612345678"),  # fr-FR
        ("no-locale", "my number is 0151 2345 6789", "+4915123456789"),  # default region DE
        ("cust-ben", "+49 151 23456789", "+4915123456789"),  # country code wins
    ],
)
async def test_phone_is_normalised_to_e164_with_the_region_from_the_locale(
    customer: str, typed: str, expected: str
) -> None:
    if customer == "no-locale":
        tracker = form_tracker("callback_form", {"phone": typed}, customer="cust-anna",
                               slots={"customer_context": None})
    else:
        tracker = form_tracker("callback_form", {"phone": typed}, customer=customer)

    events, messages = await run_action(ValidateCallbackForm(), tracker)

    assert events == [SlotSet("phone", expected)]
    assert messages == []


@pytest.mark.parametrize("typed", ["12345", "call me", "0151 234"])
async def test_invalid_phone(typed: str) -> None:
    events, messages = await run_action(
        ValidateCallbackForm(), form_tracker("callback_form", {"phone": typed},
                                             customer="cust-anna")
    )

    assert events == [SlotSet("phone", None)]
    assert messages == [
        bot_message(
            "That doesn't look like a valid phone number. Please send it with the country code, "
            "e.g. +49 151 23456789."
        )
    ]


async def validate_time(typed: str, customer: str = "cust-anna") -> Any:
    tracker = form_tracker(
        "callback_form",
        {"callback_time": typed},
        slots={"phone": "+4915123456789"},
        customer=customer,
    )
    return await run_action(ValidateCallbackForm(), tracker)


@pytest.mark.parametrize(
    ("customer", "typed", "expected"),
    [
        ("cust-anna", "tomorrow at 10", TUESDAY_10_BERLIN),
        ("cust-ben", "tomorrow at 10", "2026-11-24T10:00:00+00:00"),  # Europe/London
        ("cust-anna", "friday 4 december at 10", "2026-12-04T10:00:00+01:00"),
        ("cust-anna", "today at 11:30", "2026-11-23T11:30:00+01:00"),
    ],
)
async def test_callback_time_is_stored_as_iso_in_the_customers_zone(
    customer: str, typed: str, expected: str
) -> None:
    events, messages = await validate_time(typed, customer)

    assert events == [SlotSet("callback_time", expected)]
    assert messages == []


async def test_callback_time_on_a_sunday_is_closed_with_a_suggestion() -> None:
    events, messages = await validate_time("sunday at 10")

    assert events == [SlotSet("callback_time", None)]
    assert messages == [
        bot_message(
            f"Sorry, Sunday 29 November at 10:00 is outside our phone hours; we call {HOURS}. "
            "The next possible time is Monday 30 November at 09:00. When should we call?"
        )
    ]


async def test_closed_suggestion_is_in_the_customers_zone() -> None:
    events, messages = await validate_time("saturday at 3pm", customer="cust-ben")

    assert events == [SlotSet("callback_time", None)]
    assert messages == [
        bot_message(
            "Sorry, Saturday 28 November at 15:00 London time is outside our phone hours; we "
            f"call {HOURS_LONDON}. The next possible time is Monday 30 November at 08:00 "
            "London time. When should we call?"
        )
    ]


@pytest.mark.parametrize(
    ("customer", "typed", "text"),
    [
        ("cust-anna", "today at 7pm",
         f"Sorry, today at 19:00 is outside our phone hours; we call {HOURS}. The next "
         "possible time is tomorrow at 09:00. When should we call?"),
        # 18:00 in London is 19:00 in Berlin.
        ("cust-ben", "today at 6pm",
         "Sorry, today at 18:00 London time is outside our phone hours; we call "
         f"{HOURS_LONDON}. The next possible time is tomorrow at 08:00 London time. When "
         "should we call?"),
        ("cust-chloe", "today at 7pm",
         "Sorry, today at 19:00 Paris time is outside our phone hours; we call "
         f"{HOURS_PARIS}. The next possible time is tomorrow at 09:00 Paris time. When should "
         "we call?"),
        # A Friday evening: the next opening is Saturday morning.
        ("cust-anna", "friday at 7pm",
         f"Sorry, Friday 27 November at 19:00 is outside our phone hours; we call {HOURS}. "
         "The next possible time is Saturday 28 November at 10:00. When should we call?"),
    ],
)
async def test_closed_times_are_said_in_the_customers_zone_with_today_and_tomorrow(
    customer: str, typed: str, text: str
) -> None:
    events, messages = await validate_time(typed, customer)

    assert events == [SlotSet("callback_time", None)]
    assert messages == [bot_message(text)]


@pytest.mark.parametrize(
    ("now", "customer", "typed", "text"),
    [
        # Monday 21 December 2026: Christmas Day (Friday) and the 26th are holidays.
        (datetime(2026, 12, 21, 10, 0, tzinfo=timezone.utc), "cust-anna", "friday at 10",
         "Sorry, our team is off for Christmas Day at that time (Friday 25 December at 10:00). "
         "The next possible time is Monday 28 December at 09:00. When should we call?"),
        (datetime(2026, 12, 21, 10, 0, tzinfo=timezone.utc), "cust-ben", "25 december at 11",
         "Sorry, our team is off for Christmas Day at that time (Friday 25 December at 11:00 "
         "London time). The next possible time is Monday 28 December at 08:00 London time. "
         "When should we call?"),
        (datetime(2026, 12, 21, 10, 0, tzinfo=timezone.utc), "cust-anna", "saturday at 11",
         "Sorry, our team is off for Second Day of Christmas at that time (Saturday 26 "
         "December at 11:00). The next possible time is Monday 28 December at 09:00. When "
         "should we call?"),
        # Thursday 25 March 2027: Good Friday is tomorrow, Easter Monday a holiday Monday.
        (datetime(2027, 3, 25, 10, 0, tzinfo=timezone.utc), "cust-anna", "tomorrow at 10",
         "Sorry, our team is off for Good Friday at that time (tomorrow at 10:00). The next "
         "possible time is Saturday 27 March at 10:00. When should we call?"),
        (datetime(2027, 3, 25, 10, 0, tzinfo=timezone.utc), "cust-chloe", "monday at 10",
         "Sorry, our team is off for Easter Monday at that time (Monday 29 March at 10:00 "
         "Paris time). The next possible time is Tuesday 30 March at 09:00 Paris time. When "
         "should we call?"),
    ],
)
async def test_a_call_back_on_a_public_holiday_is_refused_with_its_name(
    monkeypatch: pytest.MonkeyPatch, now: datetime, customer: str, typed: str, text: str
) -> None:
    freeze_clock(monkeypatch, now)

    events, messages = await validate_time(typed, customer)

    assert events == [SlotSet("callback_time", None)]
    assert messages == [bot_message(text)]


async def test_christmas_eve_is_bookable_in_berlin(monkeypatch: pytest.MonkeyPatch) -> None:
    freeze_clock(monkeypatch, datetime(2026, 12, 21, 10, 0, tzinfo=timezone.utc))

    events, messages = await validate_time("thursday at 10")

    assert events == [SlotSet("callback_time", "2026-12-24T10:00:00+01:00")]
    assert messages == []


@pytest.mark.parametrize(
    ("typed", "text"),
    [
        ("yesterday", PAST),
        ("the day before yesterday", PAST),
        ("day before yesterday at 3pm", PAST),
        ("yday", PAST),
        ("whenever suits you", NOT_UNDERSTOOD),
        ("today at 9", PAST),
        ("monday 23 november at 8", PAST),
        ("in 5 minutes", PAST),  # less than the 15 minutes' notice
        ("30 december at 10", "We can book call-backs up to 30 days ahead. Please pick an "
                              "earlier day."),
    ],
)
async def test_callback_time_rejected(typed: str, text: str) -> None:
    events, messages = await validate_time(typed)

    assert events == [SlotSet("callback_time", None)]
    assert messages == [bot_message(text)]


async def test_yesterday_with_a_time_is_not_booked_for_tomorrow() -> None:
    events, messages = await validate_time("yesterday at 10")

    assert events == [SlotSet("callback_time", None)]
    assert messages == [bot_message(PAST)]


async def test_callback_confirmation_question() -> None:
    tracker = make_tracker(
        slots={"phone": "+4915123456789", "callback_time": TUESDAY_10_BERLIN},
        customer="cust-anna",
    )

    events, messages = await run_action(ActionAskCallbackConfirm(), tracker)

    assert events == []
    assert messages == [
        bot_message("Shall I book a call to +4915123456789 for tomorrow at 10:00?", buttons=YES_NO)
    ]


@pytest.mark.parametrize(
    ("customer", "callback_time", "text"),
    [
        ("cust-ben", "2026-11-24T10:00:00+00:00",
         "Shall I book a call to +4915123456789 for tomorrow at 10:00 London time?"),
        ("cust-chloe", "2026-11-25T14:00:00+01:00",
         "Shall I book a call to +4915123456789 for Wednesday 25 November at 14:00 Paris time?"),
        # Today, said in the customer's zone whatever zone the slot was stored in.
        ("cust-ben", "2026-11-23T16:30:00+01:00",
         "Shall I book a call to +4915123456789 for today at 15:30 London time?"),
    ],
)
async def test_callback_confirmation_in_the_customers_zone(
    customer: str, callback_time: str, text: str
) -> None:
    tracker = make_tracker(
        slots={"phone": "+4915123456789", "callback_time": callback_time}, customer=customer
    )

    _, messages = await run_action(ActionAskCallbackConfirm(), tracker)

    assert messages == [bot_message(text, buttons=YES_NO)]


# ------------------------------------------------------------ book a call


def booking_tracker(confirm: Any, customer: Optional[str] = "cust-anna", **kwargs: Any) -> Any:
    return make_tracker(
        slots={
            "phone": "+4915123456789",
            "callback_time": TUESDAY_10_BERLIN,
            "confirm": confirm,
            "flow_triage": {"intent": "request_callback", "priority": "normal"},
        },
        customer=customer,
        **kwargs,
    )


async def test_schedule_callback_confirmed_books_a_call(svc: Any) -> None:
    events, messages = await run_action(ActionScheduleCallback(), booking_tracker(True))

    assert events == [SlotSet("confirm", None), SlotSet("callback_time", None)]
    assert messages == [
        bot_message(
            "Booked (C-000001): a call to +4915123456789 for tomorrow at 10:00. You can move or "
            "cancel it here in the chat at any time before the call.",
            buttons=[
                {"title": "Move the call", "payload": "/reschedule_callback"},
                {"title": "Cancel the call", "payload": "/cancel_callback"},
            ],
        )
    ]
    (row,) = await table_rows(svc.store.engine, Callback)
    assert {k: row[k] for k in (
        "reference", "conversation_id", "customer_id", "phone", "scheduled_for", "customer_tz",
        "status", "topic",
    )} == {
        "reference": "C-000001",
        "conversation_id": "conv-1",
        "customer_id": "cust-anna",
        "phone": "+4915123456789",
        "scheduled_for": TUESDAY_9_UTC,
        "customer_tz": "Europe/Berlin",
        "status": "scheduled",
        "topic": "request_callback",
    }


async def test_schedule_callback_declined_books_nothing(svc: Any) -> None:
    events, messages = await run_action(ActionScheduleCallback(), booking_tracker(False))

    assert events == [SlotSet("confirm", None), SlotSet("callback_time", None)]
    assert messages == [bot_message("OK, I haven't booked a call-back.")]
    assert await table_rows(svc.store.engine, Callback) == []


LOGIN_REQUIRED = (
    "To look at orders, refunds, tickets or call-backs I need to know it's you: please log in "
    "to the app (or the website) and open the chat from there. I can still answer general "
    "questions here.")
COUNTRIES = "Germany, Austria, Switzerland, France and the United Kingdom"


async def test_schedule_callback_without_a_verified_customer_books_nothing(svc: Any) -> None:
    tracker = booking_tracker(True, customer=None, sender_id="anon-1")
    tracker.slots["customer_id"] = "cust-anna"  # a slot is not a verified customer

    events, messages = await run_action(ActionScheduleCallback(), tracker)

    assert events == [SlotSet("confirm", None), SlotSet("callback_time", None)]
    assert messages == [bot_message(LOGIN_REQUIRED)]
    assert await table_rows(svc.store.engine, Callback) == []


async def test_callback_form_asks_nothing_without_a_verified_customer(svc: Any) -> None:
    form = ValidateCallbackForm()
    slots = ["phone", "callback_time", "confirm"]

    assert await form.required_slots(slots, dispatcher(), make_tracker(), domain()) == []
    assert await form.required_slots(
        slots, dispatcher(), make_tracker(customer="cust-anna"), domain()) == slots


@pytest.mark.parametrize(
    ("typed", "text"),
    [
        ("+1 900 234 5678", f"Sorry, we can only call phone numbers in {COUNTRIES}."),
        ("+1 202 555 0123", f"Sorry, we can only call phone numbers in {COUNTRIES}."),
        ("+7 912 345 67 89", f"Sorry, we can only call phone numbers in {COUNTRIES}."),
        ("0900 1234567", "Sorry, we can't call premium-rate, shared-cost or other service "
                         "numbers, only a regular mobile or landline number."),
        ("+44 901 234 5678", "Sorry, we can't call premium-rate, shared-cost or other service "
                             "numbers, only a regular mobile or landline number."),
    ],
    ids=["us-premium", "us", "russia", "de-0900", "gb-premium"],
)
async def test_phone_outside_the_allowed_countries_or_premium_is_asked_again(
    svc: Any, typed: str, text: str
) -> None:
    tracker = form_tracker("callback_form", {"phone": typed}, customer="cust-anna")

    events, messages = await run_action(ValidateCallbackForm(), tracker)

    assert events == [SlotSet("phone", None)]
    assert messages == [bot_message(text)]


async def test_the_country_allow_list_is_a_setting(
    svc: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.settings import reset_settings_cache

    monkeypatch.setenv("CALLBACK_COUNTRIES", "us")
    reset_settings_cache()
    us = form_tracker("callback_form", {"phone": "+1 202 555 0123"}, customer="cust-anna")
    de = form_tracker("callback_form", {"phone": "0151 23456789"}, customer="cust-anna")

    assert await run_action(ValidateCallbackForm(), us) == ([SlotSet("phone", "+12025550123")], [])
    assert await run_action(ValidateCallbackForm(), de) == (
        [SlotSet("phone", None)],
        [bot_message("Sorry, we can only call phone numbers in the United States.")])


async def test_open_callbacks_cap_skips_the_form_and_says_so(svc: Any) -> None:
    for _ in range(2):  # CALLBACK_MAX_OPEN_PER_CUSTOMER = 2
        assert (await run_action(ActionScheduleCallback(), booking_tracker(True)))[1][0][
            "text"].startswith("Booked")
    form = ValidateCallbackForm()
    tracker = make_tracker(customer="cust-anna")

    assert await form.required_slots(["phone", "callback_time", "confirm"], dispatcher(),
                                     tracker, domain()) == []
    events, messages = await run_action(ActionScheduleCallback(), booking_tracker(None))

    assert events == [SlotSet("confirm", None), SlotSet("callback_time", None)]
    assert messages == [bot_message(
        "You already have 2 call-backs booked, which is as many as we can hold for you at "
        "once. You can move or cancel one of them here in the chat.",
        buttons=[{"title": "Move the call", "payload": "/reschedule_callback"},
                 {"title": "Cancel the call", "payload": "/cancel_callback"}])]
    assert len(await table_rows(svc.store.engine, Callback)) == 2


async def test_a_fourth_booking_in_a_day_is_refused_even_after_cancelling(svc: Any) -> None:
    for _ in range(3):  # CALLBACK_MAX_PER_CUSTOMER_DAY = 3; cancelled ones count
        await run_action(ActionScheduleCallback(), booking_tracker(True))
        await run_action(ActionCancelCallback(), make_tracker(customer="cust-anna"))

    events, messages = await run_action(ActionScheduleCallback(), booking_tracker(True))

    assert events[-1] == SlotSet("phone", None)
    assert messages == [bot_message(
        "You've booked 3 call-backs today, which is as many as we can take from one customer in "
        "a day. Please try again tomorrow, or ask me to open a ticket and we'll answer in "
        "writing.")]
    rows = await table_rows(svc.store.engine, Callback)
    assert [r["status"] for r in rows] == ["cancelled"] * 3


async def test_a_number_booked_three_times_today_is_asked_again(svc: Any) -> None:
    for owner in ("cust-ben", "cust-chloe", "cust-ben"):  # CALLBACK_MAX_PER_NUMBER_DAY = 3
        await run_action(ActionScheduleCallback(), booking_tracker(True, customer=owner))
        if owner == "cust-ben":
            await run_action(ActionCancelCallback(), make_tracker(customer="cust-ben"))
    tracker = form_tracker("callback_form", {"phone": "+49 151 23456789"}, customer="cust-anna")

    events, messages = await run_action(ValidateCallbackForm(), tracker)

    assert events == [SlotSet("phone", None)]
    assert messages == [bot_message(
        "We've already booked 3 call-backs to +4915123456789 today, which is as many as we "
        "make to one number in a day. Please give us another number, or try again tomorrow.")]
    _, booked = await run_action(ActionScheduleCallback(), booking_tracker(True))
    assert booked[0]["text"].startswith("We've already booked 3 call-backs")
    assert len(await table_rows(svc.store.engine, Callback)) == 3


async def test_the_daily_cap_for_everyone(svc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.settings import reset_settings_cache

    monkeypatch.setenv("CALLBACK_MAX_PER_DAY", "1")
    reset_settings_cache()
    await run_action(ActionScheduleCallback(), booking_tracker(True, customer="cust-ben"))

    _, messages = await run_action(ActionScheduleCallback(), booking_tracker(True))

    assert messages == [bot_message(
        "Sorry, our phone team is fully booked for call-backs today. Please try again "
        "tomorrow, or ask me to open a ticket and we'll answer in writing.")]
    assert [r["customer_id"] for r in await table_rows(svc.store.engine, Callback)] == [
        "cust-ben"]


# ------------------------------------------------------------ move a call


async def book(svc: Any, customer: Optional[str] = "cust-anna", conversation_id: str = "conv-1") -> Any:
    return await svc.store.do_schedule_callback(
        conversation_id=conversation_id,
        phone="+4915123456789",
        scheduled_for=TUESDAY_9_UTC,
        customer_tz="Europe/Berlin",
        topic="request_callback",
        customer_id=customer,
    )


async def test_reschedule_form_is_skipped_when_nothing_is_booked(svc: Any) -> None:
    tracker = form_tracker(
        "reschedule_callback_form", {"callback_time": "tomorrow at 10"}, customer="cust-anna"
    )
    form = ValidateRescheduleCallbackForm()

    assert await form.required_slots(["callback_time"], dispatcher(), tracker, domain()) == []
    events, messages = await run_action(form, tracker)

    assert events == [SlotSet("requested_slot", None)]
    assert messages == []


async def test_reschedule_form_validates_the_new_time_when_a_call_is_booked(svc: Any) -> None:
    await book(svc)
    tracker = form_tracker(
        "reschedule_callback_form", {"callback_time": "wednesday at 2pm"}, customer="cust-anna"
    )

    events, messages = await run_action(ValidateRescheduleCallbackForm(), tracker)

    assert events == [SlotSet("callback_time", "2026-11-25T14:00:00+01:00")]
    assert messages == []


async def test_reschedule_form_asks_for_the_new_time(svc: Any) -> None:
    await book(svc)

    events, messages = await run_action(
        ActionAskRescheduleTime(), make_tracker(customer="cust-anna")
    )

    assert events == []
    assert messages == [
        bot_message("When should we call you instead? It's booked for tomorrow at 10:00.")
    ]


async def test_reschedule_question_is_silent_when_nothing_is_booked(svc: Any) -> None:
    assert await run_action(ActionAskRescheduleTime(), make_tracker(customer="cust-anna")) == ([], [])


async def test_reschedule_callback_moves_the_stored_call(svc: Any) -> None:
    booked = await book(svc)
    tracker = make_tracker(
        slots={"callback_time": "2026-11-25T14:00:00+01:00"}, customer="cust-anna",
        sender_id="another-conversation",
    )

    events, messages = await run_action(ActionRescheduleCallback(), tracker)

    assert events == [SlotSet("callback_time", None)]
    assert messages == [
        bot_message(
            "Done: the call to +4915123456789 is now booked for Wednesday 25 November at 14:00 "
            "(C-000001)."
        )
    ]
    moved = await svc.store.get_callback(booked.reference)
    assert (moved.status, moved.scheduled_for) == (
        "scheduled", datetime(2026, 11, 25, 13, 0, tzinfo=timezone.utc),
    )
    audit = await svc.store.audit_log("callback", "C-000001")
    assert [(a.actor, a.action, a.data) for a in audit][-1] == (
        "customer:cust-anna",
        "callback.rescheduled",
        {"scheduled_for": {"from": "2026-11-24T09:00:00+00:00", "to": "2026-11-25T13:00:00+00:00"}},
    )


async def test_moving_or_cancelling_needs_a_verified_customer(svc: Any) -> None:
    """A conversation id or a forged slot is not a customer: nothing is moved or cancelled."""
    booked = await book(svc, customer="cust-anna", conversation_id="web-9")
    forged = {"callback_time": "2026-11-24T11:00:00+01:00", "customer_id": "cust-anna"}

    moved = await run_action(ActionRescheduleCallback(),
                             make_tracker(slots=forged, sender_id="web-9"))
    cancelled = await run_action(ActionCancelCallback(),
                                 make_tracker(slots=forged, sender_id="web-9"))
    form = ValidateRescheduleCallbackForm()
    skipped = await form.required_slots(["callback_time"], dispatcher(),
                                        make_tracker(slots=forged, sender_id="web-9"), domain())

    assert moved == ([SlotSet("callback_time", None)], [bot_message(LOGIN_REQUIRED)])
    assert cancelled == ([], [bot_message(LOGIN_REQUIRED)])
    assert skipped == []
    row = await svc.store.get_callback(booked.reference)
    assert (row.status, row.scheduled_for) == ("scheduled", TUESDAY_9_UTC)


async def test_reschedule_with_nothing_booked(svc: Any) -> None:
    events, messages = await run_action(
        ActionRescheduleCallback(), make_tracker(customer="cust-anna")
    )

    assert events == [SlotSet("callback_time", None)]
    assert messages == [
        bot_message(
            "You don't have a call-back booked at the moment.",
            buttons=[{"title": "Book a call-back", "payload": "/request_callback"}],
        )
    ]


# ---------------------------------------------------------- cancel a call


async def test_cancel_callback_cancels_the_stored_call(svc: Any) -> None:
    booked = await book(svc)

    events, messages = await run_action(ActionCancelCallback(), make_tracker(customer="cust-anna"))

    assert events == []
    assert messages == [
        bot_message(
            "Cancelled: we won't make the call booked for tomorrow at 10:00 (C-000001)."
        )
    ]
    assert (await svc.store.get_callback(booked.reference)).status == "cancelled"
    assert await svc.store.active_callbacks(customer_id="cust-anna") == []
    audit = await svc.store.audit_log("callback", "C-000001")
    assert [(a.actor, a.action) for a in audit] == [
        ("bot", "callback.scheduled"),
        ("customer:cust-anna", "callback.cancelled"),
    ]


async def test_cancel_callback_with_nothing_booked_says_so(svc: Any) -> None:
    await book(svc, customer="cust-ben")

    events, messages = await run_action(ActionCancelCallback(), make_tracker(customer="cust-anna"))

    assert events == []
    assert messages == [
        bot_message("You don't have a call-back booked, so there's nothing to cancel.")
    ]
    assert len(await svc.store.active_callbacks(customer_id="cust-ben")) == 1


async def test_cancel_callback_that_was_just_locked(
    svc: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    await book(svc)

    async def locked(reference: str, actor: str = "bot") -> Any:
        raise StateError(f"Call-back {reference} is done")

    monkeypatch.setattr(svc.store, "do_cancel_callback", locked)

    events, messages = await run_action(ActionCancelCallback(), make_tracker(customer="cust-anna"))

    assert events == []
    assert messages == [
        bot_message("Sorry, that call-back can't be changed any more (Call-back C-000001 is done).")
    ]
