"""Email to customers against a local SMTP server (aiosmtpd) started by the tests.

Stores on SQLite and PostgreSQL (``db_url``); the sender (:class:`bot.mail.sender.MailSender`)
is run pass by pass (``run_once``), presence is injected.
"""
from __future__ import annotations

import asyncio
from typing import Any, Tuple
from urllib.parse import parse_qs, urlparse

import pytest

from bot.mail import tokens
from bot.mail.outbox import clean_address
from tests.mail.conftest import SmtpServer, body_of

CONV = "widget:cust-anna"
ANNA = "anna@example.com"


async def _ticket(stores: Any, name: str = "Anna Schmidt", summary: str = "The app crashes "
                  "when I open my cart <b>bold</b>", email: str = ANNA) -> Any:
    support, _, agents, _ = stores
    await agents.do_upsert_customer("cust-anna", {"name": name, "email": email})
    return await support.do_create_ticket(
        "api:anna", summary, "APP", "normal", contact_email=email, customer_id="cust-anna")


async def _assigned(stores: Any, profile: Any = None) -> Tuple[Any, Any]:
    """A widget conversation handed to a person and claimed by Maria (no email address on
    the ticket: the profile's is used)."""
    support, chat, agents, _ = stores
    await chat.do_open_conversation(CONV, "cust-anna", "widget",
                                    profile=profile or {"name": "Anna Schmidt", "email": ANNA})
    await chat.do_store_customer_message(CONV, "c1", "I want a person")
    ticket, _ = await support.do_handoff(CONV, summary="wants a person", category="CONTACT",
                                         priority="high", reason="human_requested",
                                         customer_id="cust-anna")
    maria = await agents.do_create_agent("maria", "Maria", "a-long-password-1")
    await agents.do_claim(ticket.reference, maria)
    return ticket, maria


def _unsubscribe_token(message: Any) -> str:
    header = str(message["List-Unsubscribe"])
    assert header.startswith("<https://support.example/webhooks/mail/unsubscribe?token=")
    return parse_qs(urlparse(header.strip("<>")).query)["token"][0]


async def test_ticket_confirmation_arrives(stores: Any, sender: Any,
                                           smtp_server: SmtpServer) -> None:
    ticket = await _ticket(stores)

    assert await sender.run_once() == 1
    assert len(smtp_server.received) == 1
    got = smtp_server.received[0]
    message = got.message
    assert got.rcpt_tos == [ANNA]
    assert str(message["To"]) == f"Anna Schmidt <{ANNA}>"
    assert str(message["From"]) == "Northwind Support <support@northwind.example>"
    assert str(message["Subject"]).startswith(f"Your ticket {ticket.reference}: The app crashes")
    text = body_of(message)
    link = f"https://shop.example/app?chat=open&ticket={ticket.reference}"
    assert "Hello Anna Schmidt," in text and ticket.reference in text
    assert "The app crashes when I open my cart <b>bold</b>" in text
    assert "What happens next" in text and "24 hours" in text and link in text
    assert tokens.verify(_unsubscribe_token(message)) == ANNA
    assert str(message["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    assert "Unsubscribe: https://support.example/webhooks/mail/unsubscribe?token=" in text
    html = body_of(message, "html")
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold</b>" not in html
    assert f'<a href="{link.replace("&", "&amp;")}">' in html

    [row] = await stores[3].outbox()
    assert (row.status, row.attempts, row.kind) == ("sent", 1, "ticket_confirmation")
    assert await sender.run_once() == 0
    assert len(smtp_server.received) == 1


async def test_nothing_is_queued_while_email_is_off(stores: Any, monkeypatch: Any) -> None:
    from bot.settings import reset_settings_cache

    monkeypatch.setenv("MAIL_ENABLED", "false")
    reset_settings_cache()
    await _ticket(stores)
    assert await stores[3].outbox() == []


async def test_reply_while_offline_sends_one_email_while_online_none(
        stores: Any, sender: Any, smtp_server: SmtpServer, presence: Any) -> None:
    _, _, agents, mail = stores
    ticket, maria = await _assigned(stores)

    await agents.do_agent_message(ticket.reference, maria, "Your parcel left the depot today.")
    assert await sender.run_once() == 1
    assert len(smtp_server.received) == 1
    message = smtp_server.received[0].message
    assert str(message["Subject"]) == f"Maria replied to your ticket {ticket.reference}"
    text = body_of(message)
    assert "Your parcel left the depot today." in text
    assert f"https://shop.example/app?chat=open&ticket={ticket.reference}" in text
    assert tokens.verify(_unsubscribe_token(message)) == ANNA

    presence.online.add(CONV)
    await agents.do_agent_message(ticket.reference, maria, "Anything else I can do?")
    assert await sender.run_once() == 1
    assert len(smtp_server.received) == 1  # connected: she reads it in the chat
    rows = await mail.outbox(conversation_id=CONV)
    assert [(r.kind, r.status) for r in rows] == [("agent_reply", "sent"),
                                                 ("agent_reply", "skipped")]
    assert rows[1].last_error == "customer connected"


async def test_a_reply_a_device_received_is_not_emailed(stores: Any, sender: Any,
                                                        smtp_server: SmtpServer) -> None:
    _, chat, agents, mail = stores
    ticket, maria = await _assigned(stores)
    reply = await agents.do_agent_message(ticket.reference, maria, "Done, refunded.")
    await chat.do_mark(CONV, "delivered", ids=[reply.id])

    await sender.run_once()
    assert smtp_server.received == []
    assert [r.status for r in await mail.outbox()] == ["skipped"]


async def test_smtp_down_the_email_waits_and_is_sent_once_when_it_is_back(
        stores: Any, sender: Any, smtp_port: int, mail_settings: Any) -> None:
    from bot.mail.sender import MailSender

    ticket = await _ticket(stores)
    assert await sender.run_once() == 1  # nobody listens on smtp_port
    [row] = await stores[3].outbox()
    assert (row.status, row.attempts) == ("queued", 1)
    assert row.last_error and ("SMTPConnectError" in row.last_error or "Error" in row.last_error)

    server = SmtpServer(smtp_port)
    server.start()
    try:
        await asyncio.sleep(0.1)  # MAIL_BACKOFF_BASE
        # a restarted process (another owner) sends it, the old one finds nothing more
        restarted = MailSender(stores[0].engine, mail_settings, owner="restarted")
        results = await asyncio.gather(restarted.run_once(), sender.run_once())
        assert sorted(results) == [0, 1]
        await asyncio.sleep(0.3)
        assert await restarted.run_once() == 0 and await sender.run_once() == 0
        assert len(server.received) == 1
        assert ticket.reference in str(server.received[0].message["Subject"])
    finally:
        server.stop()
    [row] = await stores[3].outbox()
    assert (row.status, row.attempts, row.last_error) == ("sent", 2, None)


async def test_an_email_that_fails_every_attempt_ends_failed(stores: Any, sender: Any) -> None:
    await _ticket(stores)
    for _ in range(5):  # MAIL_MAX_ATTEMPTS
        await sender.run_once()
        await asyncio.sleep(0.25)
    [row] = await stores[3].outbox()
    assert (row.status, row.attempts) == ("failed", 5)


async def test_the_background_task_sends_and_stops(stores: Any, sender: Any,
                                                   smtp_server: SmtpServer) -> None:
    sender.start()
    try:
        await _ticket(stores)
        sender.wake()
        for _ in range(100):
            if smtp_server.received:
                break
            await asyncio.sleep(0.05)
    finally:
        await sender.stop()
    assert len(smtp_server.received) == 1


async def test_after_unsubscribing_nothing_more_is_sent_but_an_asked_for_transcript(
        stores: Any, sender: Any, smtp_server: SmtpServer) -> None:
    support, chat, agents, mail = stores
    ticket, maria = await _assigned(stores)
    await agents.do_agent_message(ticket.reference, maria, "queued before the opt-out")
    assert await mail.do_unsubscribe(ANNA) is True
    assert await mail.do_unsubscribe(ANNA.upper()) is False  # once

    await agents.do_agent_message(ticket.reference, maria, "after the opt-out")
    await support.do_create_ticket(CONV, "another problem here", "APP", "low",
                                   contact_email=ANNA, customer_id="cust-anna")
    await sender.run_once()
    assert smtp_server.received == []
    assert [r.status for r in await mail.outbox()] == ["suppressed"]

    await chat.do_store_outgoing(CONV, "bot", "Thanks for your patience!")
    transcript = await mail.do_request_transcript(CONV, ANNA, "Anna Schmidt")
    assert transcript is not None
    await sender.run_once()
    assert len(smtp_server.received) == 1
    message = smtp_server.received[0].message
    assert str(message["Subject"]) == "Your chat with Northwind Support"
    text = body_of(message)
    assert "You: I want a person" in text
    assert "Maria: queued before the opt-out" in text
    assert "Northwind assistant: Thanks for your patience!" in text


async def test_header_injection_through_names_and_subjects_is_impossible(
        stores: Any, sender: Any, smtp_server: SmtpServer) -> None:
    evil = "Anna\r\nBcc: evil@attacker.example\r\nX-Injected: yes"
    await _ticket(stores, name=evil, summary="Broken\r\nBcc: evil@attacker.example\nhello")
    # an address with a line break in it is no address: nothing is queued for it
    assert clean_address(f"{ANNA}\r\nBcc: evil@attacker.example") is None
    await stores[0].do_create_ticket("api:x", "summary text", "APP", "low",
                                     contact_email=None, customer_id=None)

    assert await sender.run_once() == 1
    [got] = smtp_server.received
    assert got.rcpt_tos == [ANNA]
    message = got.message
    assert message["Bcc"] is None and message["X-Injected"] is None
    assert "\n" not in str(message["To"]) and "\r" not in str(message["To"])
    assert message["To"].addresses[0].addr_spec == ANNA
    assert "\n" not in str(message["Subject"])
    assert "Bcc:" in str(message["Subject"])  # kept as text, on the one subject line
    assert len(message.get_all("To")) == 1 and len(message.get_all("Subject")) == 1


def test_forged_or_altered_unsubscribe_tokens_are_refused(mail_settings: Any) -> None:
    good = tokens.sign(ANNA)
    assert tokens.verify(good) == ANNA
    encoded, signature = good.split(".")
    other = tokens.sign("ben@example.com").split(".")[0]
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    for bad in (f"{other}.{signature}", f"{encoded}.{flipped}", encoded, "", "a.b.c",
                tokens.sign(ANNA, secret="another-secret"), good + "x"):
        with pytest.raises(tokens.InvalidToken):
            tokens.verify(bad)
