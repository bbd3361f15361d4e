"""action_email_transcript: the chat transcript by email, on the customer's request.

Store-backed tests run on SQLite and PostgreSQL (``db_url``); the email is queued in the
outbox (``mail_outbox``), which bot.mail's sender delivers (tests/mail)."""
from __future__ import annotations

from typing import Any, AsyncIterator, Dict, Iterator, List, Tuple

import pytest

from actions.transcript import ActionEmailTranscript
from bot.mail.store import MailStore
from tests.unit.actions_helpers import (
    T0,
    action_env,
    action_event,
    bot_event,
    bot_message,
    dispatcher,
    domain,
    installed_services,
    make_tracker,
    user_event,
)

SENT = ("I'm sending a copy of this conversation to anna@example.com; it usually arrives "
        "within a few minutes.")


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with action_env(monkeypatch):
        yield


@pytest.fixture
def mail_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.settings import reset_settings_cache

    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("MAIL_UNSUBSCRIBE_SECRET", "s" * 32)
    reset_settings_cache()


@pytest.fixture
async def svc(db_url: str) -> AsyncIterator[Any]:
    async with installed_services(db_url) as services:
        yield services


def chat_events() -> List[Dict[str, Any]]:
    return [
        action_event("action_listen", T0),
        user_event("where is order 104233", "track_order", 0.99, timestamp=T0 + 1),
        bot_event("Order #104233 is on its way with DHL.", T0 + 2),
        action_event("action_listen", T0 + 3),
        user_event("email me this conversation", "email_transcript", 0.98, timestamp=T0 + 4),
    ]


async def run(tracker: Any) -> Tuple[List[Any], List[Dict[str, Any]]]:
    collector = dispatcher()
    events = await ActionEmailTranscript().run(collector, tracker, domain())
    return events, collector.messages


async def test_the_transcript_is_queued_for_the_verified_customers_address(
        svc: Any, mail_on: None) -> None:
    tracker = make_tracker(customer="cust-anna", text="email me this conversation",
                           intent="email_transcript", events=chat_events())

    events, messages = await run(tracker)

    assert events == []
    assert messages == [bot_message(SENT)]
    rows = await MailStore(svc.store.engine).outbox(conversation_id="conv-1")
    assert [(r.kind, r.to_address, r.status) for r in rows] == [
        ("transcript", "anna@example.com", "queued")]
    lines = rows[0].params["lines"]
    assert [(line["sender"], line["text"]) for line in lines] == [
        ("customer", "where is order 104233"),
        ("bot", "Order #104233 is on its way with DHL."),
        ("customer", "email me this conversation"),
    ]


async def test_without_a_verified_customer_nothing_is_sent(svc: Any, mail_on: None) -> None:
    tracker = make_tracker(text="email me this conversation", intent="email_transcript",
                           events=chat_events())

    events, messages = await run(tracker)

    assert events == []
    assert "log in" in messages[0]["text"]
    assert await MailStore(svc.store.engine).outbox() == []


async def test_while_email_is_off_the_customer_is_told(svc: Any) -> None:
    tracker = make_tracker(customer="cust-anna", text="email me this conversation",
                           intent="email_transcript", events=chat_events())

    _, messages = await run(tracker)

    assert messages == [bot_message(
        "Sorry, I can't send emails yet. You can read this conversation in the app any time: "
        "just open the chat again.")]
    assert await MailStore(svc.store.engine).outbox() == []


async def test_a_customer_without_an_email_address_is_asked_to_add_one(
        svc: Any, mail_on: None) -> None:
    tracker = make_tracker(customer="cust-anna", text="email me this conversation",
                           intent="email_transcript", events=chat_events())
    del tracker.latest_message["metadata"]["customer"]["email"]

    _, messages = await run(tracker)

    assert messages == [bot_message(
        "I don't have a valid email address for you. Please add one under Account > Account "
        "details, then ask me again.")]
    assert await MailStore(svc.store.engine).outbox() == []


def test_the_resolved_notice_offers_the_transcript_only_while_email_is_on(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.channels.agent_bridge import _transcript_button
    from bot.settings import reset_settings_cache

    assert _transcript_button() is None
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    reset_settings_cache()
    assert _transcript_button() == [
        {"title": "Email me this conversation", "payload": "/email_transcript"}]
