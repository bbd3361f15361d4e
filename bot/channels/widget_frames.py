"""What each frame a customer sends does: messages, typing, receipts, history, rating ...

:class:`WidgetFrameHandlers` is mixed into :class:`bot.channels.widget.WidgetInput`; the
dispatch table is in :meth:`bot.channels.widget_socket.WidgetSocketSession._on_frame`.

* ``message``: validated (client id, size, an offered quick reply's payload, the message
  rate), stored, acknowledged, shown on the customer's other devices, published for agents,
  then its turn is queued (:mod:`bot.channels.widget_turns`).
* ``typing``, ``delivered``, ``read``: typing events and receipts (published for agents).
* ``history``, ``context``, ``auth``, ``end``, ``rate``, ``ping``.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Dict

from bot.channels.hub import Connection
from bot.channels.text import INTENT_PREFIX, RESERVED_INTENTS, payload_allowed, payload_intent
from bot.channels.auth import AuthError
from bot.channels.widget_wire import (
    CLIENT_ID_RE, CLOSE_CODES, HISTORY_PAGE, MAX_PAYLOAD_CHARS, NOT_STORED_RETRY, ClientError,
)
from bot.support.chat import OUTGOING_SENDERS, TURN_PENDING, clean_context

__all__ = ["WidgetFrameHandlers"]

logger = logging.getLogger("bot.channels.widget")  # the channel logs under one name


class WidgetFrameHandlers:
    """Handlers of the customer's frames (a mixin of ``WidgetInput``)."""

    async def _on_message(self, connection: Connection, frame: Dict[str, Any]) -> None:
        client_id = frame.get("client_id")
        if not isinstance(client_id, str) or not CLIENT_ID_RE.match(client_id):
            raise ClientError(
                "bad_request", "client_id must be 1-64 characters of A-Za-z0-9_.:-."
            )
        attachments = await self.attachments.message_refs(connection, frame, client_id)
        text = frame.get("text", "" if attachments else None)  # a photo needs no words
        if not isinstance(text, str) or not (text.strip() or attachments):
            raise ClientError("bad_request", "text must be a non-empty string.", client_id=client_id)
        text = text.strip()
        if len(text) > self.config.max_message_chars:
            raise ClientError(
                "too_large",
                f"Messages can have at most {self.config.max_message_chars} characters.",
                413,
                client_id=client_id,
            )
        payload = frame.get("payload")
        if payload is not None and (
            not isinstance(payload, str)
            or not payload.startswith(INTENT_PREFIX)
            or len(payload) > MAX_PAYLOAD_CHARS
        ):
            raise ClientError(
                "bad_request", "payload must be a quick reply's /intent.", client_id=client_id
            )
        chat = await self.chat()
        stored = None
        if payload is not None:
            stored = await chat.find_customer_message(connection.conversation_id, client_id)
            if stored is None:  # a resend of a stored message was checked when it was stored
                await self._check_payload(connection, payload, client_id)
        retry = self.hub.message_limiter.check(connection.user_id)
        if retry and not (
            stored or await chat.find_customer_message(connection.conversation_id, client_id)
        ):
            # Over the limit and not a resend of a stored message: refused, not stored.
            raise ClientError(
                "rate_limited",
                f"At most {self.config.rate_messages} messages per "
                f"{self.config.rate_window:g} s; this one was not sent.",
                429,
                client_id=client_id,
                retry_after=retry,
            )
        try:
            result = await chat.do_store_customer_message(
                connection.conversation_id, client_id, text, payload,
                extra={"attachments": attachments} if attachments else None,
            )
        except LookupError:
            raise
        except Exception:  # noqa: BLE001 - not stored, so not acknowledged: the widget resends
            logger.exception("Could not store message %s of %s", client_id,
                             connection.conversation_id)
            raise ClientError(
                "not_stored",
                "The message could not be saved just now; it will be sent again.",
                503, client_id=client_id, retry_after=NOT_STORED_RETRY,
            ) from None
        message = result.message
        await connection.send(
            {
                "type": "ack",
                "client_id": client_id,
                "message": message.to_wire(),
                "duplicate": result.duplicate,
            }
        )
        if result.duplicate:
            if message.status not in TURN_PENDING:
                return  # already handed to the bot: answered once
        else:
            await self.hub.push(
                connection.conversation_id,
                {"type": "message", "message": message.to_wire()},
                exclude=connection,
            )
        self._queue_turn(connection.customer, message)

    async def _check_payload(self, connection: Connection, payload: str, client_id: str) -> None:
        """Refuse a quick-reply payload the bot's latest message did not offer.

        Raises:
            ClientError: ``payload_not_offered`` (the message is not stored; the widget
                sends the button's title again as plain text).
        """
        offered = await (await self.chat()).offered_payloads(connection.conversation_id)
        if not payload_allowed(payload, offered):
            logger.info(
                "Widget payload refused on connection %s: %s.", connection.id,
                "a reserved command" if payload_intent(payload) in RESERVED_INTENTS
                else "not offered",
            )
            raise ClientError(
                "payload_not_offered",
                "That quick reply is not offered any more; send the text instead.",
                client_id=client_id,
            )
    async def _on_typing(self, connection: Connection, frame: Dict[str, Any]) -> None:
        state = frame.get("state")
        if state not in ("start", "stop"):
            raise ClientError("bad_request", "typing.state must be start or stop.")
        now = time.monotonic()
        if state == "start" and now - connection.last_typing < self.config.typing_interval:
            return  # rate-limited: dropped
        connection.last_typing = now if state == "start" else 0.0
        self.typing_events.append((connection.conversation_id, state, time.time()))
        await self.bridge.publish(
            "customer.typing", {"conversation_id": connection.conversation_id, "state": state}
        )

    async def _on_delivered(self, connection: Connection, frame: Dict[str, Any]) -> None:
        ids = frame.get("ids")
        if not isinstance(ids, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in ids
        ):
            raise ClientError("bad_request", "delivered.ids must be a list of message ids.")
        await (await self.chat()).do_mark(
            connection.conversation_id, "delivered", ids=ids[:500], senders=OUTGOING_SENDERS
        )

    async def _on_read(self, connection: Connection, frame: Dict[str, Any]) -> None:
        up_to = frame.get("up_to")
        if not isinstance(up_to, int) or isinstance(up_to, bool):
            raise ClientError("bad_request", "read.up_to must be a message id.")
        read = await (await self.chat()).do_mark(
            connection.conversation_id, "read", up_to=up_to, senders=OUTGOING_SENDERS
        )
        if read:  # the customer's other devices clear their unread badge; agents see ticks
            await self.hub.push(
                connection.conversation_id,
                {"type": "receipt", "ids": read, "status": "read"},
                exclude=connection,
            )

    async def _on_history(self, connection: Connection, frame: Dict[str, Any]) -> None:
        before, limit = frame.get("before"), frame.get("limit", HISTORY_PAGE)
        if before is not None and (not isinstance(before, int) or isinstance(before, bool)):
            raise ClientError("bad_request", "history.before must be a message id or null.")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 100:
            raise ClientError("bad_request", "history.limit must be between 1 and 100.")
        messages, has_more = await (await self.chat()).history(
            connection.conversation_id, before, limit
        )
        await connection.send(
            {"type": "history", "messages": [m.to_wire() for m in messages], "has_more": has_more}
        )

    async def _on_context(self, connection: Connection, frame: Dict[str, Any]) -> None:
        try:
            context = clean_context(frame.get("context"))
        except ValueError as error:
            raise ClientError("bad_request", str(error)) from None
        await (await self.chat()).do_update_context(connection.conversation_id, context)

    async def _on_auth(self, connection: Connection, frame: Dict[str, Any]) -> None:
        try:
            customer = self._verifier.verify(frame.get("token"))
        except AuthError as error:
            raise ClientError(error.code, str(error), 401) from None
        if customer.user_id != connection.user_id:
            await connection.send(
                ClientError("invalid_token", "The new token names another user.").frame()
            )
            await connection.close(CLOSE_CODES["invalid_token"], "invalid_token")
            return
        connection.expires_at = customer.expires_at
        connection.customer = customer
        await connection.send({"type": "auth_ok", "expires_at": int(customer.expires_at)})

    async def _on_end(self, connection: Connection, _frame: Dict[str, Any]) -> None:
        await self._end_session(connection.customer)

    async def _on_rate(self, connection: Connection, frame: Dict[str, Any]) -> None:
        try:
            rated = await self.bridge.rate(connection.conversation_id, connection.user_id, frame)
        except (ValueError, LookupError) as error:
            raise ClientError("bad_request", str(error)) from None
        await connection.send(rated)

    async def _on_ping(self, connection: Connection, _frame: Dict[str, Any]) -> None:
        await connection.send({"type": "pong"})

