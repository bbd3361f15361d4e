"""Tests of action_handoff: ticket, handoff record, the bot paused; SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, AsyncIterator, Dict, Iterator, List, Optional, Tuple

import pytest
from rasa_sdk.events import ActiveLoop, ConversationPaused, SlotSet

from actions.common import transcript
from actions.handoff import ActionHandoff
from bot.support.agents import AgentStore
from bot.support.models import AuditLog, Handoff, Ticket
from tests.unit.actions_helpers import (
    NOW,
    SUNDAY,
    T0,
    action_env,
    action_event,
    bot_event,
    bot_message,
    conversation,
    dispatcher,
    domain,
    freeze_clock,
    installed_services,
    iso,
    make_tracker,
    table_rows,
    user_event,
)

QUEUED = (
    "I'm passing you to a person from our support team. Your ticket {reference} is queued with "
    "everything we've said so far, so you won't have to repeat yourself. Someone will reply here "
    "shortly. You can close the chat: the reply will be waiting here."
)
QUEUED_CLOSED = (
    "I'm passing you to a person from our support team. Your ticket {reference} is queued with "
    "everything we've said so far, so you won't have to repeat yourself. Our team is offline "
    "right now and back {opening}; our hours are {hours}. You can close the chat: the reply "
    "will be waiting here."
)
QUEUED_HOLIDAY = (
    "I'm passing you to a person from our support team. Your ticket {reference} is queued with "
    "everything we've said so far, so you won't have to repeat yourself. We're closed for "
    "{holiday} and back {opening}; our hours are {hours}. You can close the chat: the reply "
    "will be waiting here."
)
#: Sunday 29 November, 11:00 in Berlin: the team is back tomorrow.
MONDAY_9_BERLIN = "tomorrow at 09:00"
HOURS_BERLIN = "Mon–Fri 09:00–18:00, Sat 10:00–14:00"
HOURS_LONDON = "Mon–Fri 08:00–17:00, Sat 09:00–13:00 London time"
HOURS_PARIS = "Mon–Fri 09:00–18:00, Sat 10:00–14:00 Paris time"
#: Friday 25 December 2026 (Christmas Day), 11:00 in Berlin.
CHRISTMAS = datetime(2026, 12, 25, 10, 0, tzinfo=timezone.utc)
SORRY = "I'm sorry about this. "

HUMAN_TRIAGE = {
    "intent": "contact_human_agent",
    "confidence": 0.95,
    "category": "CONTACT",
    "route": "agent",
    "priority": "high",
    "reasons": ["human_requested"],
}
ANGRY_TRIAGE = {
    "intent": "track_refund",
    "confidence": 0.8,
    "category": "REFUND",
    "route": "agent",
    "priority": "high",
    "reasons": ["angry_language"],
}
CONVERSATION = conversation(
    "where is my refund for 104190",
    "Which order is it about?",
    "I want to talk to a human",
)
TRANSCRIPT = [
    {"author": "customer", "text": "where is my refund for 104190", "at": iso(T0)},
    {"author": "bot", "text": "Which order is it about?", "at": iso(T0 + 10)},
    {"author": "customer", "text": "I want to talk to a human", "at": iso(T0 + 20)},
]
ANNA_SLOTS = {
    "customer_id": "cust-anna",
    "customer_name": "Anna Schmidt",
    "customer_email": "anna@example.com",
    "customer_tz": "Europe/Berlin",
    "customer_context": {"locale": "de-DE", "app_version": "5.2.0"},
}


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with action_env(monkeypatch):
        yield


@pytest.fixture
async def svc(db_url: str) -> AsyncIterator[Any]:
    """The services, with one agent who has the console open."""
    async with installed_services(db_url) as services:
        agents = AgentStore(services.store.engine)
        agent = await agents.do_create_agent("maria", "Maria", "correct horse battery")
        await agents.do_touch(agent.id)
        yield services


@pytest.fixture
async def svc_nobody_online(db_url: str) -> AsyncIterator[Any]:
    """The services with no agent online."""
    async with installed_services(db_url) as services:
        yield services


async def anna_recent_orders(svc: Any) -> List[Dict[str, Any]]:
    """What the handoff stores of Anna's latest orders (read from the order source)."""
    return [
        {"number": o.number, "status": o.status, "placed_at": o.placed_at.isoformat(),
         "total_eur": str(o.total_eur), "refund_status": o.refund_status}
        for o in await svc.orders.recent_orders("cust-anna", limit=5)
    ]


def expected_events(reference: str) -> List[Dict[str, Any]]:
    return [
        ActiveLoop(None),
        SlotSet("requested_slot", None),
        SlotSet("handoff_ticket", reference),
        ConversationPaused(),
    ]


async def handoff(
    triage: Optional[Dict[str, Any]] = None,
    events: Optional[List[Dict[str, Any]]] = None,
    customer: Optional[str] = "cust-anna",
    **kwargs: Any,
) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    slots = {"triage": triage, **kwargs.pop("slots", {})}
    tracker = make_tracker(
        slots=slots,
        events=CONVERSATION if events is None else events,
        customer=customer,
        active_loop=kwargs.pop("active_loop", None),
        **kwargs,
    )
    collector = dispatcher()
    result = await ActionHandoff().run(collector, tracker, domain())
    return result, collector.messages


def ticket_fields(row: Dict[str, Any], *names: str) -> Dict[str, Any]:
    return {name: row[name] for name in names}


# ------------------------------------------------------------- no ticket yet


async def test_handoff_without_a_ticket_creates_one_and_queues_it(svc: Any) -> None:
    events, messages = await handoff(HUMAN_TRIAGE, active_loop="order_status_form")

    assert events == expected_events("T-000001")
    assert messages == [bot_message(QUEUED.format(reference="T-000001"))]

    (ticket,) = await table_rows(svc.store.engine, Ticket)
    assert ticket_fields(
        ticket, "reference", "conversation_id", "customer_id", "contact_email", "summary",
        "category", "priority", "status", "source", "created_at", "details",
    ) == {
        "reference": "T-000001",
        "conversation_id": "conv-1",
        "customer_id": "cust-anna",
        "contact_email": "anna@example.com",
        "summary": "where is my refund for 104190 / I want to talk to a human",
        "category": "CONTACT",
        "priority": "high",
        "status": "queued",
        "source": "handoff",
        "created_at": NOW,
        "details": {
            "transcript": TRANSCRIPT,
            "slots": ANNA_SLOTS,
            "triage": HUMAN_TRIAGE,
            "context": {"locale": "de-DE", "app_version": "5.2.0"},
            "recent_orders": await anna_recent_orders(svc),
        },
    }
    assert [(o["number"], o["status"]) for o in ticket["details"]["recent_orders"]] == [
        ("104301", "processing"), ("104233", "in_transit"), ("104190", "delivered"),
        ("104012", "delivered")]
    (row,) = await table_rows(svc.store.engine, Handoff)
    assert ticket_fields(
        row, "conversation_id", "ticket_id", "reason", "priority", "status", "created_at"
    ) == {
        "conversation_id": "conv-1",
        "ticket_id": ticket["id"],
        "reason": "human_requested",
        "priority": "high",
        "status": "queued",
        "created_at": NOW,
    }
    audit = [a for a in await table_rows(svc.store.engine, AuditLog)
             if a["object_type"] != "agent"]  # the fixture's online agent
    assert [(a["action"], a["object_type"]) for a in audit] == [
        ("ticket.created", "ticket"),
        ("handoff.recorded", "handoff"),
    ]
    # one transaction: the ticket is created already queued for a person
    assert (audit[0]["data"]["status"], audit[0]["data"]["source"]) == ("queued", "handoff")
    assert audit[1]["data"] == {"conversation_id": "conv-1", "ticket": ticket["reference"],
                                "reason": "human_requested", "priority": "high"}


async def test_handoff_without_triage_or_customer(svc: Any) -> None:
    events_in = [
        action_event("action_listen", T0),
        user_event("/contact_human_agent", "contact_human_agent", timestamp=T0),
    ]

    events, messages = await handoff(None, events=events_in, customer=None, sender_id="web-3")

    assert events == expected_events("T-000001")
    assert messages == [bot_message(QUEUED.format(reference="T-000001"))]
    (ticket,) = await table_rows(svc.store.engine, Ticket)
    assert ticket_fields(
        ticket, "conversation_id", "customer_id", "contact_email", "summary", "category",
        "priority", "status",
    ) == {
        "conversation_id": "web-3",
        "customer_id": None,
        "contact_email": None,
        "summary": "Customer asked for a person",
        "category": "CONTACT",
        "priority": "normal",
        "status": "queued",
    }
    assert ticket["details"]["transcript"] == [
        {"author": "customer", "text": "[quick reply: contact human agent]", "at": iso(T0)}
    ]
    (row,) = await table_rows(svc.store.engine, Handoff)
    assert (row["reason"], row["priority"]) == ("agent_route", "normal")


async def test_handoff_after_repeated_misunderstanding_keeps_the_reasons(svc: Any) -> None:
    triage = {
        "intent": "nlu_fallback",
        "confidence": 0.3,
        "category": "OTHER",
        "route": "agent",
        "priority": "high",
        "reasons": ["not_understood", "repeated_misunderstanding"],
    }

    await handoff(triage, slots={"contact_email": "anna.work@example.com"})

    (ticket,) = await table_rows(svc.store.engine, Ticket)
    assert (ticket["category"], ticket["priority"], ticket["contact_email"]) == (
        "CONTACT", "high", "anna.work@example.com",
    )
    (row,) = await table_rows(svc.store.engine, Handoff)
    assert row["reason"] == "not_understood,repeated_misunderstanding"


# ------------------------------------------------------- an open ticket exists


async def open_ticket(svc: Any, priority: str = "normal", **kwargs: Any) -> Any:
    return await svc.store.do_create_ticket(
        conversation_id="conv-1",
        summary="Card charged twice for order 104233",
        category="PAYMENT",
        priority=priority,
        contact_email="anna@example.com",
        customer_id="cust-anna",
        source="bot",
        details={"order_number": "104233", "transcript": []},
        **kwargs,
    )


async def test_handoff_with_an_open_ticket_raises_priority_and_updates_details(svc: Any) -> None:
    existing = await open_ticket(svc, "normal")

    events, messages = await handoff(HUMAN_TRIAGE)

    assert events == expected_events(existing.reference)
    assert messages == [bot_message(QUEUED.format(reference=existing.reference))]
    (ticket,) = await table_rows(svc.store.engine, Ticket)
    assert ticket_fields(
        ticket, "reference", "summary", "category", "priority", "status", "source", "details"
    ) == {
        "reference": existing.reference,
        "summary": "Card charged twice for order 104233",  # unchanged
        "category": "PAYMENT",
        "priority": "high",
        "status": "queued",
        "source": "bot",
        "details": {
            "order_number": "104233",
            "transcript": TRANSCRIPT,
            "slots": ANNA_SLOTS,
            "triage": HUMAN_TRIAGE,
            "context": {"locale": "de-DE", "app_version": "5.2.0"},
            "recent_orders": await anna_recent_orders(svc),
        },
    }
    (row,) = await table_rows(svc.store.engine, Handoff)
    assert (row["ticket_id"], row["reason"], row["priority"]) == (
        existing.id, "human_requested", "high",
    )
    update = (await svc.store.audit_log("ticket", existing.reference))[-1]
    assert (update.action, update.data) == (
        "ticket.updated",
        {
            "priority": {"from": "normal", "to": "high"},
            "details_keys": ["context", "recent_orders", "slots", "transcript", "triage"],
            "status": {"from": "open", "to": "queued"},
        },
    )


async def test_handoff_never_lowers_the_priority_of_an_open_ticket(svc: Any) -> None:
    existing = await open_ticket(svc, "urgent")

    events, _ = await handoff(HUMAN_TRIAGE)

    assert events == expected_events(existing.reference)
    (ticket,) = await table_rows(svc.store.engine, Ticket)
    assert (ticket["priority"], ticket["status"]) == ("urgent", "queued")
    assert ticket["details"]["transcript"] == TRANSCRIPT
    (row,) = await table_rows(svc.store.engine, Handoff)
    assert row["priority"] == "urgent"  # the ticket's priority, not the lower triage one


async def test_handoff_after_a_resolved_ticket_opens_a_new_one(svc: Any) -> None:
    await open_ticket(svc, "normal", status="resolved")

    events, messages = await handoff(HUMAN_TRIAGE)

    assert events == expected_events("T-000002")
    assert messages == [bot_message(QUEUED.format(reference="T-000002"))]
    rows = await table_rows(svc.store.engine, Ticket)
    assert [(r["reference"], r["status"], r["source"]) for r in rows] == [
        ("T-000001", "resolved", "bot"),
        ("T-000002", "queued", "handoff"),
    ]


async def test_second_handoff_in_a_conversation_reuses_the_queued_ticket(svc: Any) -> None:
    await handoff(HUMAN_TRIAGE)

    events, _ = await handoff(HUMAN_TRIAGE)

    assert events == expected_events("T-000001")
    assert len(await table_rows(svc.store.engine, Ticket)) == 1
    assert len(await table_rows(svc.store.engine, Handoff)) == 2


# ------------------------------------------------------------ wording


async def test_outside_business_hours_the_team_is_offline_until_the_opening(
    svc: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    freeze_clock(monkeypatch, SUNDAY)

    events, messages = await handoff(HUMAN_TRIAGE)

    assert events == expected_events("T-000001")
    assert messages == [bot_message(QUEUED_CLOSED.format(
        reference="T-000001", opening=MONDAY_9_BERLIN, hours=HOURS_BERLIN))]
    (ticket,) = await table_rows(svc.store.engine, Ticket)
    assert (ticket["status"], ticket["created_at"]) == ("queued", SUNDAY)


async def test_angry_customer_gets_an_apology_first(svc: Any) -> None:
    events_in = conversation("where is my refund", "Which order is it about?",
                             "this is a fucking scam, where is my money")

    events, messages = await handoff(ANGRY_TRIAGE, events=events_in)

    assert events == expected_events("T-000001")
    assert messages == [bot_message(SORRY + QUEUED.format(reference="T-000001"))]
    (ticket,) = await table_rows(svc.store.engine, Ticket)
    assert (ticket["category"], ticket["priority"], ticket["summary"]) == (
        "REFUND", "high", "where is my refund / this is a fucking scam, where is my money",
    )
    (row,) = await table_rows(svc.store.engine, Handoff)
    assert row["reason"] == "angry_language"


async def test_angry_customer_outside_business_hours(
    svc: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    freeze_clock(monkeypatch, SUNDAY)

    _, messages = await handoff(ANGRY_TRIAGE)

    assert messages == [bot_message(SORRY + QUEUED_CLOSED.format(
        reference="T-000001", opening=MONDAY_9_BERLIN, hours=HOURS_BERLIN))]


@pytest.mark.parametrize(
    ("customer", "opening", "hours"),
    [
        ("cust-anna", "tomorrow at 09:00", HOURS_BERLIN),  # Europe/Berlin, the team's zone
        ("cust-ben", "tomorrow at 08:00 London time", HOURS_LONDON),
        ("cust-chloe", "tomorrow at 09:00 Paris time", HOURS_PARIS),
        # No profile: the default zone, named, as it may not be the customer's.
        (None, "tomorrow at 09:00 Berlin time", HOURS_BERLIN + " Berlin time"),
    ],
)
async def test_outside_business_hours_the_opening_and_hours_are_in_the_customers_zone(
    svc: Any, monkeypatch: pytest.MonkeyPatch, customer: Optional[str], opening: str, hours: str
) -> None:
    freeze_clock(monkeypatch, SUNDAY)

    _, messages = await handoff(HUMAN_TRIAGE, customer=customer)

    assert messages == [
        bot_message(QUEUED_CLOSED.format(reference="T-000001", opening=opening, hours=hours))
    ]


async def test_tomorrow_is_the_customers_tomorrow(svc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # 23:30 UTC on Sunday: Monday 00:30 in Berlin, still Sunday 23:30 in London.
    freeze_clock(monkeypatch, datetime(2026, 11, 29, 23, 30, tzinfo=timezone.utc))

    _, anna = await handoff(HUMAN_TRIAGE, customer="cust-anna")
    _, ben = await handoff(HUMAN_TRIAGE, customer="cust-ben", sender_id="conv-ben")

    assert anna == [bot_message(QUEUED_CLOSED.format(
        reference="T-000001", opening="today at 09:00", hours=HOURS_BERLIN))]
    assert ben == [bot_message(QUEUED_CLOSED.format(
        reference="T-000002", opening="tomorrow at 08:00 London time", hours=HOURS_LONDON))]


@pytest.mark.parametrize(
    ("customer", "opening", "hours"),
    [
        ("cust-anna", "Monday 28 December at 09:00", HOURS_BERLIN),
        ("cust-ben", "Monday 28 December at 08:00 London time", HOURS_LONDON),
    ],
)
async def test_on_a_public_holiday_the_customer_is_told_which(
    svc: Any, monkeypatch: pytest.MonkeyPatch, customer: str, opening: str, hours: str
) -> None:
    freeze_clock(monkeypatch, CHRISTMAS)  # the 26th is a holiday too, the 27th a Sunday

    _, messages = await handoff(HUMAN_TRIAGE, customer=customer)

    assert messages == [bot_message(QUEUED_HOLIDAY.format(
        reference="T-000001", holiday="Christmas Day", opening=opening, hours=hours))]


async def test_a_holiday_monday_is_back_on_tuesday(svc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    freeze_clock(monkeypatch, datetime(2027, 3, 29, 10, 0, tzinfo=timezone.utc))  # Easter Monday

    _, messages = await handoff(ANGRY_TRIAGE)

    assert messages == [bot_message(SORRY + QUEUED_HOLIDAY.format(
        reference="T-000001", holiday="Easter Monday", opening="tomorrow at 09:00",
        hours=HOURS_BERLIN))]


async def test_christmas_eve_evening_is_closed_but_no_holiday(
    svc: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    freeze_clock(monkeypatch, datetime(2026, 12, 24, 18, 0, tzinfo=timezone.utc))  # 19:00 Berlin

    _, messages = await handoff(HUMAN_TRIAGE, customer="cust-chloe")

    assert messages == [bot_message(QUEUED_CLOSED.format(
        reference="T-000001", opening="Monday 28 December at 09:00 Paris time",
        hours=HOURS_PARIS))]


async def test_christmas_eve_is_open_in_berlin(
    svc_nobody_online: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    freeze_clock(monkeypatch, datetime(2026, 12, 24, 10, 0, tzinfo=timezone.utc))

    _, messages = await handoff(HUMAN_TRIAGE)

    assert [m["text"] for m in messages] == [  # open, but nobody online a month on
        "I'm passing you to a person from our support team. Your ticket T-000001 is queued "
        "with everything we've said so far, so you won't have to repeat yourself. Nobody from "
        "the team is online this very moment; replies usually take a little while. You can "
        "close the chat: the reply will be waiting here."
    ]


async def test_a_named_closed_date_is_said_like_a_holiday(
    svc: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.settings import reset_settings_cache

    monkeypatch.setenv("SUPPORT_CLOSED_DATES", "2026-11-30 our team day, 2026-12-01")
    reset_settings_cache()
    freeze_clock(monkeypatch, datetime(2026, 11, 30, 10, 0, tzinfo=timezone.utc))

    _, monday = await handoff(HUMAN_TRIAGE)
    freeze_clock(monkeypatch, datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc))
    _, tuesday = await handoff(HUMAN_TRIAGE, sender_id="conv-2")

    assert monday == [bot_message(QUEUED_HOLIDAY.format(
        reference="T-000001", holiday="our team day", opening="Wednesday 2 December at 09:00",
        hours=HOURS_BERLIN))]
    assert tuesday == [bot_message(QUEUED_CLOSED.format(  # unnamed: closed, no name
        reference="T-000002", opening="tomorrow at 09:00", hours=HOURS_BERLIN))]


# ---------------------------------------------------------------- transcript


def payload_event(text: str, parse: Any, timestamp: float) -> Dict[str, Any]:
    """A user event whose ``parse_data`` is ``parse`` (``"missing"``: no parse_data at all)."""
    event = user_event(text, timestamp=timestamp)
    if parse == "missing":
        del event["parse_data"]
    else:
        event["parse_data"] = parse
    return event


async def test_transcript_shows_button_payloads_as_quick_replies() -> None:
    events = [
        action_event("action_listen", T0),
        user_event("where is my order", "track_order", timestamp=T0),
        bot_event("Which order is it about?", timestamp=T0 + 1),
        action_event("action_listen", T0 + 2),
        # Rasa parses a payload into its intent (and entities).
        user_event('/inform{"order_number":"104233"}', "inform",
                   entities=[{"entity": "order_number", "value": "104233"}], timestamp=T0 + 2),
        bot_event("Order #104233 is on its way.", timestamp=T0 + 3),
        action_event("action_listen", T0 + 4),
        user_event("/contact_human_agent", "contact_human_agent", timestamp=T0 + 4),
    ]

    assert transcript(make_tracker(events=events)) == [
        {"author": "customer", "text": "where is my order", "at": iso(T0)},
        {"author": "bot", "text": "Which order is it about?", "at": iso(T0 + 1)},
        {"author": "customer", "text": "[quick reply: inform]", "at": iso(T0 + 2)},
        {"author": "bot", "text": "Order #104233 is on its way.", "at": iso(T0 + 3)},
        {"author": "customer", "text": "[quick reply: contact human agent]", "at": iso(T0 + 4)},
    ]


@pytest.mark.parametrize(
    "parse",
    [
        {"text": "/check_refund_policy", "intent": {}, "entities": []},
        {"text": "/check_refund_policy", "intent": {"name": None, "confidence": 0.0}},
        {"text": "/check_refund_policy"},
        None,
        "missing",
    ],
    ids=["empty-intent", "intent-without-name", "no-intent", "parse-data-none", "no-parse-data"],
)
async def test_transcript_takes_the_intent_from_the_payload_when_parse_data_has_none(
    parse: Any,
) -> None:
    events = [payload_event("/check_refund_policy", parse, T0)]

    assert transcript(make_tracker(events=events)) == [
        {"author": "customer", "text": "[quick reply: check refund policy]", "at": iso(T0)}
    ]


async def test_transcript_prefers_the_parsed_intent_over_the_payload() -> None:
    events = [user_event("/affirm", "deny", timestamp=T0)]  # whatever NLU made of it

    assert transcript(make_tracker(events=events)) == [
        {"author": "customer", "text": "[quick reply: deny]", "at": iso(T0)}
    ]


async def test_transcript_leaves_other_texts_as_they_are() -> None:
    events = [
        user_event("my order 104233 / 104190 is late", "track_order", timestamp=T0),
        bot_event("/not_a_payload from the bot", timestamp=T0 + 1),
        user_event(" /contact_human_agent", "contact_human_agent", timestamp=T0 + 2),
        user_event("", "greet", timestamp=T0 + 3),  # no text: left out
    ]

    assert transcript(make_tracker(events=events)) == [
        {"author": "customer", "text": "my order 104233 / 104190 is late", "at": iso(T0)},
        {"author": "bot", "text": "/not_a_payload from the bot", "at": iso(T0 + 1)},
        {"author": "customer", "text": " /contact_human_agent", "at": iso(T0 + 2)},
    ]


async def test_handoff_summary_still_leaves_out_payloads_but_the_transcript_shows_them(
    svc: Any,
) -> None:
    events_in = [
        action_event("action_listen", T0),
        user_event("my parcel is damaged", "get_refund", timestamp=T0),
        bot_event("Which order is it about?", timestamp=T0 + 1),
        action_event("action_listen", T0 + 2),
        user_event("/contact_human_agent", "contact_human_agent", timestamp=T0 + 2),
    ]

    await handoff(HUMAN_TRIAGE, events=events_in)

    (ticket,) = await table_rows(svc.store.engine, Ticket)
    assert ticket["summary"] == "my parcel is damaged"
    assert ticket["details"]["transcript"] == [
        {"author": "customer", "text": "my parcel is damaged", "at": iso(T0)},
        {"author": "bot", "text": "Which order is it about?", "at": iso(T0 + 1)},
        {"author": "customer", "text": "[quick reply: contact human agent]", "at": iso(T0 + 2)},
    ]


async def test_nobody_online_in_business_hours_tells_the_usual_wait(
    svc_nobody_online: Any,
) -> None:
    events, messages = await handoff(HUMAN_TRIAGE)
    (ticket,) = await table_rows(svc_nobody_online.store.engine, Ticket)
    assert events == expected_events(ticket["reference"])
    assert [m["text"] for m in messages] == [
        "I'm passing you to a person from our support team. Your ticket "
        f"{ticket['reference']} is queued with everything we've said so far, so you won't have "
        "to repeat yourself. Nobody from the team is online this very moment; replies usually "
        "take a little while. You can close the chat: the reply will be waiting here."
    ]


async def test_the_usual_wait_is_the_median_first_response_of_the_last_30_days(
    svc_nobody_online: Any,
) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from bot import db as bot_db

    store = svc_nobody_online.store
    now = bot_db.utcnow()
    for n, minutes in enumerate((30, 90, 200)):
        ticket = await store.do_create_ticket(f"old-{n}", "earlier", "CONTACT", "normal")
        async with bot_db.write_session(store._sessions) as session:
            await session.execute(update(Ticket).where(Ticket.id == ticket.id).values(
                queued_at=now - timedelta(days=1),
                first_response_at=now - timedelta(days=1) + timedelta(minutes=minutes)))
    assert await store.typical_first_response() == 90 * 60
    _, messages = await handoff(HUMAN_TRIAGE)
    assert "replies usually take about 2 hours." in messages[0]["text"]
