"""Issue 16's "you have a reply" email for Twilio agents (plain Conversations mode; Flex: in
test_twilio_flex_e2e.py): the real bridge and the real ``twilio`` client against the local
fake, the outbox drained by the real sender into a local SMTP server (aiosmtpd).

The reply is queued in the transaction that stores it (the console path's outbox: one email
per reply, none when the customer is connected or read it, none after unsubscribing)."""
from __future__ import annotations

import asyncio
from typing import Any, Iterator

import pytest

from tests.mail.conftest import Presence, SmtpServer, body_of, free_port
from tests.twilio.conftest import hand_off

ANNA = "anna@example.com"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mail(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, smtp: SmtpServer) -> Iterator[Any]:
    """Email on, SMTP at the local server, no reply delay."""
    from bot.settings import get_settings, reset_settings_cache

    for name, value in {
        "SUPPORT_VAR_DIR": str(tmp_path / "var"), "MAIL_ENABLED": "true",
        "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp.port), "SMTP_STARTTLS": "false",
        "SMTP_TIMEOUT": "5", "APP_LINK_BASE": "https://shop.example/app",
        "MAIL_PUBLIC_URL": "https://support.example", "MAIL_REPLY_DELAY": "0",
        "MAIL_UNSUBSCRIBE_SECRET": "test-secret-0123456789",
    }.items():
        monkeypatch.setenv(name, value)
    reset_settings_cache()
    yield get_settings().mail
    reset_settings_cache()


async def _run(fake: Any, method: str, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, getattr(fake, method), *args)


async def test_twilio_agent_reply_while_away_is_emailed_once(
        mail: Any, smtp: SmtpServer, bridge: Any, fake_twilio: Any, config: Any) -> None:
    from bot.mail.sender import MailSender
    from bot.mail.store import MailStore

    bridge_, published = bridge
    handed = await hand_off(config.support_db_url)
    conversation_id, reference = handed["conversation_id"], handed["reference"]
    assert await bridge_.on_handoff(conversation_id, reference) is True
    sid = fake_twilio.conversation(conversation_id)["sid"]
    presence = Presence()
    sender = MailSender(bridge_.store.engine, mail, online=presence, owner="test")
    outbox = MailStore(bridge_.store.engine)

    async def agent_says(text: str) -> Any:
        _m, hooks = await _run(fake_twilio, "agent_says", sid, "Maria", text)
        assert await bridge_.accept_webhook(hooks[0].params, hooks[0].token)
        await bridge_.idle()
        return hooks[0]

    hook = await agent_says("Your parcel left the depot today.")
    assert await sender.run_once() >= 1
    [got] = [r for r in smtp.received if "replied" in str(r.message["Subject"])]
    assert got.rcpt_tos == [ANNA]
    assert str(got.message["Subject"]) == f"Maria replied to your ticket {reference}"
    text = body_of(got.message)
    assert "Your parcel left the depot today." in text
    assert f"https://shop.example/app?chat=open&ticket={reference}" in text
    assert str(got.message["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"

    # Twilio delivers the same webhook again: no second message, no second email
    assert await bridge_.accept_webhook(hook.params, None) is False
    await bridge_.handle_webhook(hook.params)  # even when processed again
    await sender.run_once()
    replies = [r for r in await outbox.outbox(conversation_id=conversation_id)
               if r.kind == "agent_reply"]
    assert [r.status for r in replies] == ["sent"]

    # the customer is in the app: read in the chat, not emailed
    presence.online.add(conversation_id)
    await agent_says("Anything else I can do?")
    await sender.run_once()
    presence.online.clear()
    # unsubscribed: nothing more is queued
    assert await outbox.do_unsubscribe(ANNA) is True
    await agent_says("A last note.")
    await sender.run_once()
    replies = [r for r in await outbox.outbox(conversation_id=conversation_id)
               if r.kind == "agent_reply"]
    assert [(r.status, r.last_error) for r in replies] == [
        ("sent", None), ("skipped", "customer connected")]
    assert len([r for r in smtp.received if "replied" in str(r.message["Subject"])]) == 1
    assert [e["message"]["text"] for t, e in published if t == "agent.message"] == [
        "Your parcel left the depot today.", "Anything else I can do?", "A last note."]
