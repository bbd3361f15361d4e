"""A widget WebSocket's life: origin and ``hello``, welcome and replay, token expiry, frames.

:class:`WidgetSocketSession` is mixed into :class:`bot.channels.widget.WidgetInput`. It
checks the origin and the per-address limit of sockets waiting for ``hello``, verifies the
``hello`` token, opens the conversation, registers the connection on the hub, sends
``welcome`` and the messages the client missed (resume after ``after``, else the last
page), the ongoing call's frame, re-queues unfinished turns, then reads frames (frame rate
bucket, size) and dispatches each to its handler (:mod:`bot.channels.widget_frames`,
:mod:`bot.channels.widget_calls`). It warns before the token expires and closes with 4002
when it was not refreshed.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Dict, List, Optional, Tuple

from sanic.request import Request

from bot.channels.auth import AuthError, Customer
from bot.channels.frames import decode_frame
from bot.channels.hub import Connection, TokenBucket, TooManyConnections
from bot.channels.widget_wire import (
    CLOSE_CODES, HISTORY_PAGE, REPLAY_LIMIT, ClientError, close_socket, is_closed_error,
    send_raw,
)
from bot.support.chat import MessageView, clean_context

__all__ = ["WidgetSocketSession"]

logger = logging.getLogger("bot.channels.widget")  # the channel logs under one name


DRAIN_SECONDS = 2.0
"""How long a socket the server closed is still read (and what it sends dropped) while
waiting for the client's close frame."""


async def _drain_until_closed(ws: Any, seconds: float) -> None:
    """Read and drop frames until the client answers the close frame (or ``seconds`` pass).

    RFC 6455 (7.1.1): an endpoint that sent Close goes on reading until the peer's Close.
    Without it, a client still flooding the socket leaves unread data in the server's
    receive buffer; closing the TCP connection then sends a reset, which can destroy the
    close frame (and the error before it) in the client's buffer: it sees 1006, not the
    close code the server sent.
    """
    deadline = time.monotonic() + seconds
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await ws.recv(timeout=remaining)
    except asyncio.CancelledError:
        # Sanic cancels a waiting recv when the peer's close frame arrives
        if _state_name(ws) != "CLOSED":
            raise
    except Exception:  # noqa: BLE001 - the close handshake finished (or the peer vanished)
        return


def _state_name(ws: Any) -> str:
    """The protocol state of a Sanic WebSocket (``OPEN``, ``CLOSING``, ``CLOSED``)."""
    state = getattr(getattr(ws, "connection", None), "state", None)
    return str(getattr(state, "name", state))


class WidgetSocketSession:
    """The WebSocket side of the widget channel (a mixin of ``WidgetInput``)."""

    async def _serve_socket(self, request: Request, ws: Any) -> None:
        self._app = self._app or request.app
        if not self._origin_allowed(request.headers.get("origin")):
            await close_socket(ws, "origin_not_allowed")
            return
        address = str(request.remote_addr or request.ip or "unknown")
        if not self.hub.preauth.enter(address):
            logger.warning(
                "Widget socket refused: %d sockets from one address are waiting for hello "
                "already (WIDGET_MAX_PREAUTH_PER_IP).", self.hub.preauth.pending(address),
            )
            await close_socket(ws, "too_many_pending")
            return
        try:
            authenticated = await self._authenticate(ws)
        finally:
            self.hub.preauth.leave(address)
        if authenticated is None:
            return
        customer, hello = authenticated
        try:
            context = clean_context(hello.get("context"))
        except ValueError:
            context = {}
        chat = await self.chat()
        conversation = await chat.do_open_conversation(
            customer.conversation_id,
            customer.user_id,
            "widget",
            profile=customer.profile,
            context=context or None,
        )
        await (await self.bridge.agents()).do_upsert_customer(customer.user_id,
                                                               customer.metadata_customer())
        connection = Connection(
            ws, customer.user_id, customer.conversation_id, customer.expires_at, customer=customer,
            frames=TokenBucket(self.config.frame_rate, self.config.frame_burst),
        )
        try:
            self.hub.register(connection)
        except TooManyConnections as error:
            await send_raw(ws, {"type": "error", "code": "too_many_connections",
                                 "message": str(error)})
            await close_socket(ws, "too_many_connections")
            return
        watcher = self.hub.spawn(self._watch_token(connection))
        try:
            replay, has_more = await self._replay_messages(connection, hello.get("after"))
            await connection.send(
                {
                    "type": "welcome",
                    "conversation_id": customer.conversation_id,
                    "user": {"id": customer.user_id, "name": customer.profile.get("name")},
                    "expires_at": int(customer.expires_at),
                    "session": conversation.session,
                    "limits": self.config.limits(),
                    "has_more": has_more,
                }
            )
            for message in replay:
                await connection.send({"type": "message", "message": message.to_wire()},
                                      wait=True)
            await self._send_call_state(connection)
            await self._requeue(customer.conversation_id, customer)
            while not connection.closed:
                raw = await ws.recv()
                if raw is None:
                    continue
                if connection.frames is not None and not connection.frames.take():
                    await self._rate_limited(connection)
                    await _drain_until_closed(ws, DRAIN_SECONDS)
                    break
                if len(raw) > self.config.max_frame_bytes:  # the socket refuses these first
                    await connection.close(1009, "frame_too_large")
                    break
                await self._on_frame(connection, raw)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - closed sockets end up here
            if not is_closed_error(error):
                logger.exception("Widget connection %s failed", connection.id)
                await connection.close(1011, "server_error")
        finally:
            watcher.cancel()
            self.hub.unregister(connection)

    async def _authenticate(self, ws: Any) -> Optional[Tuple[Customer, Dict[str, Any]]]:
        """Wait for ``hello`` (within ``auth_timeout``) and verify its token.

        Returns:
            The customer and the ``hello`` frame, or None when the socket was closed
            (no hello in time, another frame first, or a refused token).
        """
        try:
            raw = await ws.recv(timeout=self.config.auth_timeout)
        except Exception:  # noqa: BLE001 - the client went away (or sent too big a frame)
            return None
        if raw is None:
            await close_socket(ws, "auth_timeout")
            return None
        hello = decode_frame(raw)
        if not isinstance(hello, dict) or hello.get("type") != "hello":
            await send_raw(ws, ClientError("hello_required", "Send hello first.").frame())
            await close_socket(ws, "hello_required")
            return None
        try:
            customer = self._verifier.verify(hello.get("token"))
        except AuthError as error:  # the message is generic; the reason is in the log
            await send_raw(ws, {"type": "error", "code": error.code, "message": str(error)})
            await close_socket(ws, error.code)
            return None
        return customer, hello

    async def _rate_limited(self, connection: Connection) -> None:
        """The connection's frame bucket ran dry: tell it, close it with 1008."""
        logger.warning(
            "Widget connection %s sent more than %d frames at once (%g/s): closed.",
            connection.id, self.config.frame_burst, self.config.frame_rate,
        )
        await connection.send(
            ClientError(
                "rate_limited",
                f"More than {self.config.frame_burst} frames at once "
                f"({self.config.frame_rate:g} per second); reconnect in a moment.",
            ).frame()
        )
        await connection.close(CLOSE_CODES["rate_limited"], "rate_limited")

    async def _replay_messages(
        self, connection: Connection, after: Any
    ) -> Tuple[List[MessageView], bool]:
        """What a (re)connecting client gets: messages after ``after``, else the last page.

        Returns:
            The messages, oldest first, and whether older ones exist before them.
        """
        chat = await self.chat()
        if isinstance(after, int) and not isinstance(after, bool) and after >= 0:
            messages = await chat.messages_after(connection.conversation_id, after, REPLAY_LIMIT)
            if not messages:
                return [], after > 0
            older, _ = await chat.history(connection.conversation_id, messages[0].id, 1)
            return messages, bool(older)
        return await chat.history(connection.conversation_id, None, HISTORY_PAGE)

    async def _watch_token(self, connection: Connection) -> None:
        """Warn before the token expires; close with 4002 when it was not refreshed."""
        warned_for = 0.0
        while not connection.closed:
            remaining = connection.expires_at - time.time()
            if remaining <= 0:
                await connection.send(
                    {"type": "error", "code": "token_expired", "message": "The token expired."}
                )
                await connection.close(CLOSE_CODES["token_expired"], "token_expired")
                return
            if remaining <= self.config.token_warning and warned_for != connection.expires_at:
                warned_for = connection.expires_at
                await connection.send(
                    {"type": "token_expiring", "expires_at": int(connection.expires_at)}
                )
            wait = remaining - self.config.token_warning if warned_for != connection.expires_at \
                else remaining
            await asyncio.sleep(max(0.05, min(wait, 30.0)))

    async def _on_frame(self, connection: Connection, raw: Any) -> None:
        frame = decode_frame(raw)
        if not isinstance(frame, dict):
            await connection.send(
                ClientError("malformed_frame", "Frames must be JSON objects.").frame()
            )
            return
        kind = frame.get("type")
        handler = {
            "message": self._on_message,
            "typing": self._on_typing,
            "delivered": self._on_delivered,
            "read": self._on_read,
            "history": self._on_history,
            "context": self._on_context,
            "auth": self._on_auth,
            "end": self._on_end,
            "rate": self._on_rate,
            "ping": self._on_ping,
            "end_call": self._on_end_call,
        }.get(kind if isinstance(kind, str) else "")
        if handler is None:
            await connection.send(
                ClientError("unknown_type", f"Unknown frame type {kind!r}.").frame()
            )
            return
        try:
            await handler(connection, frame)
        except ClientError as error:
            await connection.send(error.frame())
        except Exception:  # noqa: BLE001 - one bad frame must not end the chat
            logger.exception("Widget frame %r failed", kind)
            await connection.send(
                ClientError("server_error", "Something went wrong on our side.").frame()
            )
