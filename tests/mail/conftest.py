"""Fixtures of the email tests: a local SMTP server (aiosmtpd) on a free port, email
settings pointing at it, and the stores on ``db_url`` (SQLite and PostgreSQL)."""
from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, AsyncIterator, Iterator, List, Optional, Tuple

import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: List[str]
    message: EmailMessage


@dataclass
class SmtpServer:
    """aiosmtpd in its own thread; ``received`` collects what it accepted."""

    port: int
    received: List[Received] = field(default_factory=list)
    _controller: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self._lock:
            self.received.append(Received(
                envelope.mail_from, list(envelope.rcpt_tos),
                message_from_bytes(envelope.content, policy=policy.default)))
        return "250 OK"

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        self._controller = Controller(self, hostname="127.0.0.1", port=self.port,
                                      ready_timeout=5.0)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
def smtp_server(smtp_port: int) -> Iterator[SmtpServer]:
    server = SmtpServer(smtp_port)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mail_settings(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, smtp_port: int) -> Iterator[Any]:
    """Email on, SMTP at the local test server, short back-off, no reply delay."""
    from bot.settings import get_settings, reset_settings_cache

    for name, value in {
        "SUPPORT_VAR_DIR": str(tmp_path / "var"), "MAIL_ENABLED": "true",
        "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp_port), "SMTP_STARTTLS": "false",
        "SMTP_TIMEOUT": "5", "MAIL_FROM": "Northwind Support <support@northwind.example>",
        "APP_LINK_BASE": "https://shop.example/app", "MAIL_PUBLIC_URL": "https://support.example",
        "MAIL_UNSUBSCRIBE_SECRET": "test-secret-0123456789", "MAIL_REPLY_DELAY": "0",
        "MAIL_BACKOFF_BASE": "0.05", "MAIL_BACKOFF_MAX": "0.2", "MAIL_MAX_ATTEMPTS": "5",
    }.items():
        monkeypatch.setenv(name, value)
    reset_settings_cache()
    yield get_settings().mail
    reset_settings_cache()


@pytest.fixture
async def stores(db_url: str, mail_settings: Any) -> AsyncIterator[Tuple[Any, Any, Any, Any]]:
    """(support, chat, agents, mail) stores on one fresh database."""
    from bot.mail.store import MailStore
    from bot.support.agents import AgentStore
    from bot.support.chat import ChatStore
    from bot.support.ops import SupportStore

    support = SupportStore.from_url(db_url)
    await support.create_schema()
    chat, agents, mail = ChatStore(support.engine), AgentStore(support.engine), MailStore(
        support.engine)
    try:
        yield support, chat, agents, mail
    finally:
        await support.dispose()


class Presence:
    """The customer's presence as the sender sees it (bot.live's online())."""

    def __init__(self) -> None:
        self.online: set = set()

    async def __call__(self, conversation_id: str) -> bool:
        return conversation_id in self.online


@pytest.fixture
def presence() -> Presence:
    return Presence()


@pytest.fixture
def sender(stores: Any, mail_settings: Any, presence: Presence) -> Any:
    from bot.mail.sender import MailSender

    return MailSender(stores[0].engine, mail_settings, online=presence, owner="test-sender")


def body_of(message: EmailMessage, subtype: str = "plain") -> str:
    part: Optional[Any] = message.get_body(preferencelist=(subtype,))
    assert part is not None, f"no text/{subtype} part"
    return part.get_content()
