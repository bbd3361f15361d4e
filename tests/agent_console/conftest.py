"""Helpers for the agent console tests: an HTTP client for its API, accounts and tickets
seeded straight into the bot's support database (the same file the Rasa server uses)."""
from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any, Dict, Optional

import requests

from bot.support.agents import AgentStore
from bot.support.chat import ChatStore
from bot.support.ops import SupportStore

PASSWORD = "correct horse battery staple"


def _run(make: Any) -> Any:
    """Run ``make()``'s coroutine on a fresh loop in a worker thread (Playwright's sync API
    keeps a loop running in the test's thread)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()
HTTP_TIMEOUT = 60.0


@dataclass
class Console:
    """The agent console API of one running bot."""

    base: str  # http://127.0.0.1:port/webhooks/agent

    def call(self, method: str, path: str, token: Optional[str] = None,
             **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        with requests.Session() as http:
            http.trust_env = False
            return http.request(method, f"{self.base}{path}", headers=headers,
                                timeout=HTTP_TIMEOUT, **kwargs)

    def login(self, username: str, password: str = PASSWORD) -> str:
        response = self.call("POST", "/api/login",
                             json={"username": username, "password": password})
        assert response.status_code == 200, response.text
        return response.json()["token"]

    @property
    def ws_url(self) -> str:
        return self.base.replace("http://", "ws://") + "/ws"


def create_agent(db_url: str, username: str, role: str = "agent",
                 name: Optional[str] = None) -> int:
    """Create an account in the bot's database; return its id."""
    async def run() -> int:
        store = AgentStore.from_url(db_url)
        try:
            await store.create_schema()
            view = await store.do_create_agent(username, name or username.title(), PASSWORD,
                                               role=role)
            return view.id
        finally:
            await store.dispose()

    return _run(run)


def queue_ticket(db_url: str, customer: str = "", category: str = "SHIPPING",
                 text: str = "Where is my parcel? It has not arrived yet") -> Dict[str, Any]:
    """A widget conversation with one customer message, handed off (as the bot does)."""
    customer = customer or f"cust-{uuid.uuid4().hex[:8]}"
    conversation = f"widget:{customer}"

    async def run() -> Dict[str, Any]:
        support, chat = SupportStore.from_url(db_url), ChatStore.from_url(db_url)
        try:
            await chat.do_open_conversation(conversation, customer, "widget",
                                            profile={"name": "Test Customer"},
                                            context={"screen": "orders", "app_version": "5.2.0"})
            stored = await chat.do_store_customer_message(conversation, uuid.uuid4().hex, text)
            ticket, _ = await support.do_handoff(
                conversation, summary=text, category=category, priority="high",
                reason="human_requested", customer_id=customer,
                details={"triage": {"category": category, "confidence": 0.93},
                         "slots": {"order_number": "104233"},
                         "context": {"device": "Pixel 8"},
                         "transcript": [{"author": "customer", "text": text,
                                         "at": "2026-11-23T10:00:00+00:00"},
                                        {"author": "bot", "text": "Let me get a person.",
                                         "at": "2026-11-23T10:00:01+00:00"}]})
            return {"reference": ticket.reference, "conversation_id": conversation,
                    "message_id": stored.message.id}
        finally:
            await support.dispose()
            await chat.dispose()

    return _run(run)
