"""An agent's console WebSocket: ``hello`` with the session token, re-checks, frames.

:class:`ConsoleSocket` is mixed into :class:`bot.agent_console.channel.AgentConsoleInput`.
The first frame must be ``{"type": "hello", "token"}`` (within :data:`HELLO_TIMEOUT`); the
session is checked again every :data:`REAUTH_SECONDS`; the agent's frames are ``ping`` and
``typing`` (published as ``agent.typing`` for the customer, at most every
:data:`TYPING_INTERVAL` s). What the agent receives comes from
:mod:`bot.agent_console.live_feed`.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Dict

from sanic.request import Request

from bot.agent_console.connection import AgentConnection, close_raw, send_raw
from bot.channels.frames import decode_frame
from bot.support.agents import AuthFailed

__all__ = ["ConsoleSocket", "HELLO_TIMEOUT", "REAUTH_SECONDS", "TYPING_INTERVAL"]

logger = logging.getLogger("bot.agent_console.channel")  # the console logs under one name

HELLO_TIMEOUT = 10.0
REAUTH_SECONDS = 30.0
TYPING_INTERVAL = 1.5


class ConsoleSocket:
    """The console WebSocket (a mixin of ``AgentConsoleInput``)."""

    async def _serve_socket(self, request: Request, ws: Any) -> None:
        try:
            raw = await ws.recv(timeout=HELLO_TIMEOUT)
        except Exception:  # noqa: BLE001 - gone before hello
            return
        hello = decode_frame(raw)
        if not isinstance(hello, dict) or hello.get("type") != "hello":
            await send_raw(ws, {"type": "error", "code": "hello_required",
                             "message": "Send hello with your session token first."})
            await close_raw(ws, 4001, "hello_required")
            return
        token = hello.get("token") if isinstance(hello.get("token"), str) else None
        try:
            agents, _ = await self.stores()
            agent = await agents.authenticate(token)
        except AuthFailed as error:
            await send_raw(ws, {"type": "error", "code": error.code, "message": str(error)})
            await close_raw(ws, 4002 if error.code == "expired" else 4001, error.code)
            return
        connection = AgentConnection(ws, agent, token or "", queue_size=self.config.send_queue,
                                     send_timeout=self.config.send_timeout)
        self._connections.add(connection)
        await agents.do_touch(agent.id)  # online: handoffs tell customers someone is there
        self._ensure_tail()
        await connection.send({"type": "welcome", "agent": agent.to_json(),
                               "poll_interval": self.config.poll_interval})
        try:
            while True:
                try:
                    raw = await ws.recv(timeout=REAUTH_SECONDS)
                except asyncio.TimeoutError:
                    raw = None
                if connection.closed or (raw is None and getattr(ws, "closed", False)):
                    break
                if not await self._still_valid(connection):
                    break
                if raw is None:
                    continue
                await self._on_frame(connection, decode_frame(raw))
        except Exception as error:  # noqa: BLE001 - closed sockets end the loop
            if not type(error).__name__.startswith("ConnectionClosed"):
                logger.exception("Agent console socket failed")
        finally:
            self._connections.discard(connection)
            await connection.finish()

    async def _still_valid(self, connection: AgentConnection) -> bool:
        if time.monotonic() - connection.checked_at < REAUTH_SECONDS:
            return True
        connection.checked_at = time.monotonic()
        agents, _ = await self.stores()
        try:
            connection.agent = await agents.authenticate(connection.token)
            await agents.do_touch(connection.agent.id)
            return True
        except AuthFailed as error:
            await connection.send({"type": "error", "code": error.code, "message": str(error)})
            await connection.close(4002 if error.code == "expired" else 4001, error.code)
            return False

    async def _on_frame(self, connection: AgentConnection, frame: Any) -> None:
        if not isinstance(frame, dict):
            await connection.send({"type": "error", "code": "malformed_frame",
                                   "message": "Frames are JSON objects."})
            return
        kind = frame.get("type")
        if kind == "ping":
            await connection.send({"type": "pong"})
        elif kind == "typing":
            await self._on_agent_typing(connection, frame)
        else:
            await connection.send({"type": "error", "code": "unknown_type",
                                   "message": f"Unknown frame type {kind!r}."})

    async def _on_agent_typing(self, connection: AgentConnection, frame: Dict[str, Any]) -> None:
        from bot.live import bus

        reference, state = frame.get("ticket"), frame.get("state")
        if not isinstance(reference, str) or state not in ("start", "stop"):
            await connection.send({"type": "error", "code": "bad_request",
                                   "message": "typing needs ticket and state start|stop."})
            return
        now = time.monotonic()
        key = f"{reference.upper()}:{state}"
        if state == "start" and now - connection.typing_sent.get(key, 0.0) < TYPING_INTERVAL:
            return
        connection.typing_sent[key] = now
        ticket = await self._ticket_state(reference=reference)
        agent = connection.agent
        if ticket is None or ticket.status != "assigned" or not (
                agent.is_admin or ticket.assignee_id == agent.id):
            await connection.send({"type": "error", "code": "forbidden",
                                   "message": "Only the ticket's agent may type in it."})
            return
        await bus().publish("agent.typing", {"conversation_id": ticket.conversation_id,
                                             "state": state, "name": agent.display_name})
