"""Fixtures for the Twilio bridge tests: the fake Twilio API, a bridge on a fresh database,
and a widget conversation handed off as the action server does it."""
from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from bot.twilio.bridge import TwilioBridge, TwilioConfig
from bot.twilio.client import RetryPolicy
from bot.twilio.store import TwilioStore
from tests.twilio.fake_twilio import FakeTwilio

ACCOUNT_SID = "AC" + "a1" * 16
AUTH_TOKEN = "test-twilio-auth-token-0123456789"
PUBLIC_URL = "https://support-bot.example.test"
WAIT = 60.0
VOICE_FROM = "+15005550006"
SUPPORT_LINE = "+4930123456789"
CALLBACK_POLL = 1.0
WORKER_CACHE_SECONDS = 2.0
"""``TWILIO_FLEX_WORKER_CACHE_SECONDS`` of the Flex stack (a rename shows after this long)."""


@dataclass
class TwilioStack:
    """A real bot configured for the fake Twilio, and the demo shop app in front of it."""

    fake: FakeTwilio
    bot: Any  # tests.servers.BotServers
    demo_url: str
    smtp: Any = None  # tests.mail.conftest.SmtpServer when email is on


@contextlib.contextmanager
def twilio_stack(bot_factory: Any, name: str, env: Dict[str, str]) -> Iterator[TwilioStack]:
    """Start the fake Twilio, a bot (action + Rasa server) pointed at it, and the demo app.

    Args:
        bot_factory: The session's ``bot_factory`` fixture.
        name: The bot's name (its own directory and databases).
        env: Settings on top of the Twilio credentials, API base and public URL.
    """
    from tests.servers import HOST, PYTHON, WIDGET_TEST_ORIGIN, WIDGET_TEST_SECRET, _popen, _stop
    from tests.servers import free_port

    demo_port = free_port()
    demo_url = f"http://{HOST}:{demo_port}"
    with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as fake:
        bot = bot_factory.start(name, env={
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_API_BASE": fake.base_url, "TWILIO_PUBLIC_URL": PUBLIC_URL,
            "WIDGET_ALLOWED_ORIGINS": f"{WIDGET_TEST_ORIGIN},{demo_url}",
            **env,
        })
        fake.route(PUBLIC_URL, bot.rasa_url)  # as a proxy would: signed for the public URL
        demo = _popen([str(PYTHON), "-m", "bot.demo"], {
            **bot.env, "DEMO_HOST": HOST, "DEMO_PORT": str(demo_port),
            "WIDGET_PUBLIC_URL": bot.rasa_url, "WIDGET_JWT_SECRET": WIDGET_TEST_SECRET,
        }, bot.var_dir.parent / "demo.log")
        try:
            yield TwilioStack(fake, bot, demo_url)
        finally:
            _stop(demo)


@contextlib.contextmanager
def widget_in_browser(demo_url: str, customer: str) -> Iterator[Any]:
    """A phone-sized Chromium page of the demo shop, logged in, with the chat open and online.

    Yields:
        The widget's dialog locator (``.page`` is the page).
    """
    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, PHONE
    from tests.servers import unavailable

    if not CHROMIUM.is_file():  # skipped with the reason; a failure when CI=true
        unavailable(f"{CHROMIUM} is missing: install Debian's chromium")
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                             args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(base_url=demo_url, **PHONE)
            assert context.request.post("/api/login", data={"customer_id": customer}).ok
            page = context.new_page()
            page.goto("/#/home")
            page.locator(".sw-fab").click()
            dialog = page.get_by_role("dialog", name="Northwind Support")
            expect(dialog.locator(".sw-status")).to_have_text("Online", timeout=90_000)
            yield dialog
            context.close()
        finally:
            browser.close()


def wait_for(what: str, probe: Callable[[], Any], timeout: float = WAIT,
             logs: Optional[Callable[[], str]] = None) -> Any:
    """Poll ``probe()`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{logs() if logs else ''}")
        time.sleep(0.2)


@pytest.fixture(scope="package")
def flex_stack(bot_factory: Any) -> Iterator[TwilioStack]:
    """ONE real bot for the Flex, Voice and Twilio email end-to-end tests (one Rasa start for
    all of them): Flex mode (``TWILIO_FLEX_MODE=interactions``, the fake's workspace and
    workflow), Voice call-backs, and email to a local SMTP server (aiosmtpd, collected in
    ``stack.smtp.received``). Package scope: ``test_twilio_flex_e2e.py`` and
    ``test_voice_e2e.py`` share it."""
    from tests.mail.conftest import SmtpServer, free_port

    from tests.twilio.fake_flex import FlexFake

    smtp = SmtpServer(free_port())
    smtp.start()
    probe = FlexFake()  # the fake's workspace and workflow SIDs
    try:
        with twilio_stack(bot_factory, "twilio-flex-voice", {
            "TWILIO_POLL_INTERVAL": "0.2", "TWILIO_MAX_ATTEMPTS": "3",
            "TWILIO_BACKOFF_BASE": "0.05", "TWILIO_TIMEOUT": "3",
            "TWILIO_VOICE_FROM": VOICE_FROM, "SUPPORT_LINE_NUMBER": SUPPORT_LINE,
            "TWILIO_CALLBACK_POLL": str(CALLBACK_POLL),
            "TWILIO_FLEX_MODE": "interactions",
            "TWILIO_FLEX_WORKSPACE_SID": probe.workspace_sid,
            "TWILIO_FLEX_WORKFLOW_SID": probe.workflow_sid,
            "TWILIO_FLEX_WORKER_CACHE_SECONDS": str(WORKER_CACHE_SECONDS),
            "MAIL_ENABLED": "true", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp.port),
            "SMTP_STARTTLS": "false", "SMTP_TIMEOUT": "5", "MAIL_REPLY_DELAY": "1",
            "MAIL_POLL_INTERVAL": "0.3", "MAIL_UNSUBSCRIBE_SECRET": "test-mail-secret-0123456789",
            "MAIL_PUBLIC_URL": PUBLIC_URL, "APP_LINK_BASE": "https://shop.example/app",
        }) as running:
            running.smtp = smtp
            running.fake.configure_event_callback(
                PUBLIC_URL + "/webhooks/twilio_conversations/taskrouter")
            yield running
    finally:
        smtp.stop()


@pytest.fixture(scope="module")
def fake_twilio() -> Iterator[FakeTwilio]:
    """The fake Twilio REST API (one per test module)."""
    with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as fake:
        yield fake


@pytest.fixture
def config(fake_twilio: FakeTwilio, sqlite_url: str) -> TwilioConfig:
    """Bridge settings: the fake, fast retries (3 tries, 10-40 ms), a 1 s timeout.

    No bot listens here: webhooks for the public URL go to a closed local port."""
    fake_twilio.route(PUBLIC_URL, "http://127.0.0.1:9")
    return TwilioConfig(
        account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, public_url=PUBLIC_URL,
        api_base=fake_twilio.base_url, timeout=1.0,
        policy=RetryPolicy(attempts=3, base=0.01, cap=0.04), poll_interval=0.1,
        support_db_url=sqlite_url, handoff_delay=0.0)


@pytest.fixture
async def bridge(config: TwilioConfig) -> AsyncIterator[Tuple[TwilioBridge, List[Tuple[str, Dict[str, Any]]]]]:
    """A bridge on a fresh SQLite database; its bus events are collected in a list."""
    store = TwilioStore.from_url(config.support_db_url)
    await store.create_schema()
    published: List[Tuple[str, Dict[str, Any]]] = []

    async def publish(topic: str, event: Dict[str, Any]) -> None:
        published.append((topic, event))

    bridge = TwilioBridge(config, store, publish=publish)
    try:
        yield bridge, published
    finally:
        await bridge.close()
        await store.dispose()


async def hand_off(db_url: str, customer: str = "") -> Dict[str, Any]:
    """A widget conversation (bot transcript + one message after it), handed off."""
    from bot.support.chat import ChatStore
    from bot.support.ops import SupportStore

    from datetime import datetime, timedelta, timezone

    customer = customer or f"cust-{uuid.uuid4().hex[:8]}"
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=2)
    conversation = f"widget:{customer}"
    support, chat = SupportStore.from_url(db_url), ChatStore.from_url(db_url)
    try:
        await chat.do_open_conversation(conversation, customer, "widget",
                                        profile={"name": "Anna Schmidt", "email": "anna@example.com"},
                                        context={"screen": "orders", "app_version": "5.2.0"})
        ticket, _ = await support.do_handoff(
            conversation, summary="Where is my parcel?", category="SHIPPING", priority="high",
            reason="human_requested", customer_id=customer,
            details={"triage": {"category": "SHIPPING", "confidence": 0.93},
                     "slots": {"order_number": "104233"},
                     "context": {"device": "Pixel 8"},
                     "transcript": [
                         {"author": "customer", "text": "Where is my parcel?",
                          "at": start.isoformat()},
                         {"author": "bot", "text": "Let me get a person.",
                          "at": (start + timedelta(seconds=1)).isoformat()}]})
        after = await chat.do_store_customer_message(conversation, uuid.uuid4().hex,
                                                     "Order 104233, please hurry")
        return {"reference": ticket.reference, "conversation_id": conversation,
                "customer": customer, "message_id": after.message.id, "start": start}
    finally:
        await support.dispose()
        await chat.dispose()
