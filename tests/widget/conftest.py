"""A WebSocket test client for the widget channel, and token helpers.

The tests talk to a REAL Rasa server (``embedded_bot`` from ``tests/conftest.py``: trained
model, action server, SQLite stores) over real WebSockets, exactly as the widget does.
Every bot started by the tests has the small limits of :data:`tests.servers.WIDGET_TEST_ENV`.
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any, Callable, Dict, List, Optional

import pytest
import requests
import websockets

from bot.channels.auth import issue_token
from tests.servers import WIDGET_TEST_ENV, WIDGET_TEST_ORIGIN, WIDGET_TEST_SECRET

#: The ``aud`` and ``iss`` every bot of the tests checks (``WIDGET_TEST_ENV``).
TEST_AUDIENCE = WIDGET_TEST_ENV["WIDGET_JWT_AUDIENCE"]
TEST_ISSUER = WIDGET_TEST_ENV["WIDGET_JWT_ISSUER"]

FRAME_TIMEOUT = 90.0
"""Seconds to wait for a frame: a bot turn takes well under a second on an idle machine."""


def new_user(prefix: str = "wt") -> str:
    """A fresh customer id, so tests never share a conversation or a rate limit."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def token_for(user: str, ttl: int = 600, secret: str = WIDGET_TEST_SECRET,
              audience: Optional[str] = TEST_AUDIENCE, issuer: Optional[str] = TEST_ISSUER,
              now: Optional[float] = None, **profile: str) -> str:
    """A token as the host app's backend would sign it (``iat``, ``exp``, ``aud``, ``iss``)."""
    return issue_token(user, secret, profile=profile or {"name": "Test Customer"},
                       ttl_seconds=ttl, audience=audience, issuer=issuer, now=now)


def ws_url(bot: Any) -> str:
    return bot.rasa_url.replace("http://", "ws://") + "/webhooks/widget/ws"


def rest(bot: Any, method: str, path: str, token: Optional[str] = None,
         origin: Optional[str] = WIDGET_TEST_ORIGIN, **kwargs: Any) -> requests.Response:
    """Call a REST route of the widget channel."""
    headers = dict(kwargs.pop("headers", {}) or {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if origin is not None:
        headers["Origin"] = origin
    session = requests.Session()
    session.trust_env = False
    try:
        return session.request(
            method, f"{bot.rasa_url}/webhooks/widget{path}", headers=headers, timeout=60, **kwargs
        )
    finally:
        session.close()


class WidgetClient:
    """One widget connection: sends frames, collects every frame the server sends."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.frames: List[Dict[str, Any]] = []
        self._unread: List[Dict[str, Any]] = []

    @classmethod
    async def open(cls, bot: Any, origin: Optional[str] = WIDGET_TEST_ORIGIN,
                   max_size: Optional[int] = 2 ** 20) -> "WidgetClient":
        ws = await websockets.connect(
            ws_url(bot), origin=origin, max_size=max_size, open_timeout=30, close_timeout=5
        )
        return cls(ws)

    @classmethod
    async def connect(cls, bot: Any, token: str, after: Optional[int] = None,
                      context: Optional[Dict[str, Any]] = None, **kwargs: Any) -> "WidgetClient":
        """Open a connection, say hello and wait for ``welcome``."""
        client = await cls.open(bot, **kwargs)
        await client.send({"type": "hello", "token": token, "after": after,
                           "context": context or {}})
        client.welcome = await client.expect("welcome")
        return client

    async def send(self, frame: Any) -> None:
        await self.ws.send(frame if isinstance(frame, (str, bytes)) else json.dumps(frame))

    async def recv(self, timeout: float = FRAME_TIMEOUT) -> Dict[str, Any]:
        if self._unread:
            return self._unread.pop(0)
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        frame = json.loads(raw)
        self.frames.append(frame)
        return frame

    async def expect(self, kind: str, where: Callable[[Dict[str, Any]], bool] = lambda f: True,
                     timeout: float = FRAME_TIMEOUT) -> Dict[str, Any]:
        """The next frame of this type that matches; other frames stay readable."""
        skipped: List[Dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise asyncio.TimeoutError
                frame = await self.recv(remaining)
                if frame.get("type") == kind and where(frame):
                    return frame
                skipped.append(frame)
        except asyncio.TimeoutError:
            raise AssertionError(
                f"no {kind!r} frame within {timeout:.0f} s; got {self.frames[-20:]}"
            ) from None
        finally:
            self._unread = skipped + self._unread

    async def nothing_for(self, seconds: float) -> List[Dict[str, Any]]:
        """Frames that arrive within ``seconds`` (for 'nothing else happens' checks)."""
        got = list(self._unread)
        self._unread.clear()
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return got
            try:
                got.append(await self.recv(remaining))
            except asyncio.TimeoutError:
                return got

    async def say(self, text: str, client_id: Optional[str] = None,
                  payload: Optional[str] = None) -> Dict[str, Any]:
        """Send a customer message and return its ``ack``."""
        client_id = client_id or uuid.uuid4().hex
        frame: Dict[str, Any] = {"type": "message", "client_id": client_id, "text": text}
        if payload:
            frame["payload"] = payload
        await self.send(frame)
        return await self.expect("ack", lambda f: f.get("client_id") == client_id)

    async def turn(self, text: str, **kwargs: Any) -> Dict[str, Any]:
        """Send a message and collect the bot's turn: ack, receipts, typing, replies."""
        ack = await self.say(text, **kwargs)
        message_id = ack["message"]["id"]
        read = await self.expect(
            "receipt", lambda f: f["status"] == "read" and message_id in f["ids"]
        )
        # the bot's messages of this turn are pushed before its read receipt
        replies = [
            f["message"] for f in self.frames[: next(i for i, f in enumerate(self.frames)
                                                     if f is read)]
            if f.get("type") == "message" and f["message"]["sender"] == "bot"
            and f["message"]["id"] > message_id
        ]
        # frames of this turn are consumed; later ones stay readable
        cut = next(i for i, f in enumerate(self.frames) if f is read)
        later = {id(f) for f in self.frames[cut + 1:]}
        self._unread = [f for f in self._unread if id(f) in later]
        return {"ack": ack, "replies": replies, "read": read}

    async def close_code(self, timeout: float = 30.0) -> int:
        """Wait for the server to close the socket and return the close code."""
        try:
            while True:
                await asyncio.wait_for(self.ws.recv(), timeout)
        except websockets.ConnectionClosed as closed:
            return closed.code
        except asyncio.TimeoutError:
            raise AssertionError(f"the server did not close the socket in {timeout} s") from None

    async def close(self) -> None:
        await self.ws.close()


@pytest.fixture
def widget_bot(embedded_bot: Any) -> Any:
    """The embedded bot (its widget channel has the test limits)."""
    return embedded_bot
