"""The in-app widget channel: WebSocket live traffic plus a small REST surface.

Registered in ``credentials.yml`` as ``bot.channels.widget.WidgetInput``; its
routes live under ``/webhooks/widget/``. The protocol (frames, close codes,
guarantees) is documented in ``docs/widget-protocol.md``; the widget bundle it
serves is ``bot/widget/``.

Flow of a customer message: verify the connection's token (done at ``hello``),
check size and rate limits, store the message (:class:`~bot.support.chat.ChatStore`)
and only then ``ack`` it; then, one turn per conversation at a time, hand it to
Rasa with the customer's profile and app context as metadata, store and push
each bot reply (:class:`WidgetOutput`), and send receipts and typing frames.

Customer text is always text: what the channel passes to Rasa for a typed message
never starts with Rasa's intent prefix ``/`` (:func:`as_free_text`), and a quick
reply's ``payload`` is only accepted when the bot's latest message offered it
(restart/session commands never). Limits that hold before authentication: the
WebSocket layer refuses frames over ``WIDGET_MAX_FRAME_BYTES`` (set on the app's
config when the blueprint is registered, before the server builds its protocol),
``hello`` must come within ``WIDGET_AUTH_TIMEOUT``, and at most
``WIDGET_MAX_PREAUTH_PER_IP`` sockets per address may wait for it. After ``hello``
a token bucket per connection limits every frame type.

Settings come from :func:`bot.settings.get_settings` (``WIDGET_*``); a
``credentials.yml`` entry may override ``allowed_origins`` (a list) for one
deployment. Nothing happens at import time: the store and the FAQ index are
opened on first use.
"""
from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import re
import socket
import time
import uuid
from datetime import timedelta
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Deque, Dict, List, Optional, Text, Tuple

from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.channels.agent_bridge import AgentBridge
from bot.channels.auth import AuthError, Customer, TokenVerifier, verifier_from_settings
from bot.channels.frames import decode_frame
from bot.channels.hub import (
    SLOW_CONSUMER_CLOSE, Connection, Hub, RateLimiter, TokenBucket, TooManyConnections,
)
from bot.channels.text import (
    INTENT_PREFIX, RESERVED_INTENTS, as_free_text, payload_allowed, payload_intent,
)
from bot.faq import current_index
from bot import db
from bot.support.chat import (
    OUTGOING_SENDERS, TURN_PENDING, ChatStore, MessageView, TurnClaim, clean_context,
)

__all__ = ["WidgetInput", "WidgetOutput", "CLOSE_CODES"]

logger = logging.getLogger(__name__)

WIDGET_ASSETS = Path(__file__).resolve().parent.parent / "widget"
HISTORY_PAGE = 50
REPLAY_LIMIT = 500
MAX_CLIENT_ID = 64
MAX_PAYLOAD_CHARS = 500
FAQ_RATE_PER_MINUTE = 120
NOT_STORED_RETRY = 2.0
"""``retry_after`` of a ``not_stored`` error (the database refused the write)."""
_CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_ASSETS = {"widget.js": "application/javascript", "widget.css": "text/css"}

CLOSE_CODES: Dict[str, int] = {
    "invalid_token": 4001,
    "missing_token": 4001,
    "auth_timeout": 4001,
    "hello_required": 4001,
    "token_expired": 4002,
    "origin_not_allowed": 4003,
    "too_many_connections": 4008,
    "too_many_pending": 4029,
    "rate_limited": 1008,
    "frame_too_large": 1009,
    "slow_consumer": SLOW_CONSUMER_CLOSE,
    "server_going_away": 1001,
}

OnNewMessage = Callable[[UserMessage], Awaitable[Any]]


@dataclass(frozen=True)
class WidgetConfig:
    """The channel's limits and keys (from the settings)."""

    allowed_origins: Tuple[str, ...]
    max_message_chars: int
    max_frame_bytes: int
    rate_messages: int
    rate_window: float
    max_connections: int
    typing_interval: float
    auth_timeout: float
    token_warning: float
    preauth_per_ip: int = 10
    frame_rate: float = 5.0
    frame_burst: int = 30
    max_keys: int = 10000
    drain_seconds: float = 20.0
    turn_lease: float = 30.0
    turn_attempts: int = 3
    turn_backoff: float = 2.0
    send_queue: int = 256
    send_timeout: float = 10.0

    def limits(self) -> Dict[str, Any]:
        """The limits a client is told about."""
        return {
            "max_message_chars": self.max_message_chars,
            "max_frame_bytes": self.max_frame_bytes,
            "rate_messages": self.rate_messages,
            "rate_window": self.rate_window,
            "typing_interval": self.typing_interval,
            "max_connections": self.max_connections,
            "frame_rate": self.frame_rate,
            "frame_burst": self.frame_burst,
            "auth_timeout": self.auth_timeout,
        }


class _ClientError(Exception):
    """A frame or request the channel refuses (an ``error`` frame / JSON error)."""

    def __init__(
        self,
        code: str,
        message: str,
        status: int = 400,
        client_id: Optional[str] = None,
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.client_id = client_id
        self.retry_after = retry_after

    def frame(self) -> Dict[str, Any]:
        frame: Dict[str, Any] = {"type": "error", "code": self.code, "message": str(self)}
        if self.client_id is not None:
            frame["client_id"] = self.client_id
        if self.retry_after is not None:
            frame["retry_after"] = round(self.retry_after, 1)
        return frame

    def response(self) -> HTTPResponse:
        body: Dict[str, Any] = {"error": {"code": self.code, "message": str(self)}}
        if self.retry_after is not None:
            body["error"]["retry_after"] = round(self.retry_after, 1)
        return response.json(body, status=self.status)


async def _render_markdown(extra: Dict[str, Any]) -> Dict[str, Any]:
    """A bot message's extras with its Markdown rendered as rich-text ``blocks``.

    An action marks Markdown with ``json_message={"format": "markdown", "markdown": ...}``
    (it arrives as ``custom``). The source is kept as ``markdown`` and rendered by
    :func:`bot.richtext.markdown_to_blocks` in a worker thread; other ``custom`` keys stay.
    Anything else (every ``data/messages.yml`` text, for one) is never read as Markdown.
    """
    from bot.richtext import markdown_to_blocks

    custom = extra.get("custom")
    if not isinstance(custom, dict) or custom.get("format") != "markdown":
        return extra
    rendered = {key: value for key, value in extra.items() if key != "custom"}
    rest = {key: value for key, value in custom.items() if key not in ("format", "markdown")}
    if rest:
        rendered["custom"] = rest
    source = custom.get("markdown")
    if isinstance(source, str) and source.strip():
        blocks = await asyncio.to_thread(markdown_to_blocks, source)
        if blocks:
            rendered.update(markdown=source, blocks=blocks)
    return rendered


class WidgetOutput(OutputChannel):
    """Stores each bot reply, then pushes it to the customer's open connections.

    Args:
        channel: The widget channel (its store and hub).
    """

    def __init__(self, channel: "WidgetInput", reply_to: Optional[int] = None) -> None:
        self._channel = channel
        self._reply_to = reply_to
        self.sent: List[MessageView] = []

    @classmethod
    def name(cls) -> Text:
        return "widget"

    async def send_response(self, recipient_id: Text, message: Dict[Text, Any]) -> None:
        """Store and push one bot message (text, buttons, image, attachment, custom).

        Markdown marked by the action becomes ``blocks`` (:func:`_render_markdown`); the
        stored ``text`` stays the action's plain text (a FAQ answer's summary), which is
        what transcripts, Twilio and handoffs show.
        """
        text = message.get("text") or ""
        buttons = message.get("buttons") or message.get("quick_replies")
        extra = await _render_markdown({
            key: message[key]
            for key in ("image", "attachment", "custom", "elements")
            if message.get(key)
        })
        if not text and not buttons and not extra:
            return
        chat = await self._channel.chat()
        try:
            view = await chat.do_store_outgoing(
                recipient_id, "bot", text, buttons=buttons, extra=extra or None,
                reply_to=self._reply_to,
            )
        except LookupError:
            logger.warning("No widget conversation %s; bot message dropped.", recipient_id)
            return
        self.sent.append(view)
        await self._channel.hub.push(recipient_id, {"type": "message", "message": view.to_wire()})


class WidgetInput(InputChannel):
    """The widget channel (see the module docstring and ``docs/widget-protocol.md``).

    Args:
        verifier: Verifies customer tokens.
        config: Limits and allowed origins.
        support_db_url: Where conversations and messages are stored.
    """

    def __init__(self, verifier: TokenVerifier, config: WidgetConfig, support_db_url: str) -> None:
        self._verifier = verifier
        self.config = config
        self._support_db_url = support_db_url
        self._chat: Optional[ChatStore] = None
        self._chat_lock: Optional[asyncio.Lock] = None
        self.hub = Hub(
            config.max_connections,
            config.rate_messages,
            config.rate_window,
            preauth_per_ip=config.preauth_per_ip,
            max_keys=config.max_keys,
            send_queue=config.send_queue,
            send_timeout=config.send_timeout,
        )
        self._faq_limiter = RateLimiter(FAQ_RATE_PER_MINUTE, 60.0, max_keys=config.max_keys)
        self._inflight: set = set()
        """Customer message ids with a turn task in this process (queued or running)."""
        self._turn_tasks: set = set()
        self._draining = False
        self._drain_event: Optional[asyncio.Event] = None
        self._sweeper: Optional[asyncio.Task] = None
        self.owner = f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        """Who this process is in turn claims (``chat_messages.claimed_by``)."""
        self.bridge = AgentBridge(self)
        self.typing_events: Deque[Tuple[str, str, float]] = collections.deque(maxlen=1000)
        """Customer typing events that passed the rate limit: (conversation, state, time)."""
        self._app: Any = None
        self._on_new_message: Optional[OnNewMessage] = None
        self._call_subscribed = False

    @classmethod
    def name(cls) -> Text:
        return "widget"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> "WidgetInput":
        """Build the channel from the settings; ``credentials.yml`` may set ``allowed_origins``.

        Raises:
            ValueError: When no usable token key is configured, or, in the production
                configuration, ``WIDGET_JWT_AUDIENCE`` or ``WIDGET_JWT_ISSUER`` is not set
                (the message names the setting).
        """
        from bot.settings import get_settings

        settings = get_settings()
        credentials = credentials or {}
        origins = credentials.get("allowed_origins") or settings.widget_allowed_origins
        if isinstance(origins, str):
            origins = origins.split(",")
        verifier = verifier_from_settings(settings)
        config = WidgetConfig(
            allowed_origins=tuple(str(o).strip().rstrip("/") for o in origins if str(o).strip()),
            max_message_chars=settings.widget_max_message_chars,
            max_frame_bytes=settings.widget_max_frame_bytes,
            rate_messages=settings.widget_rate_messages,
            rate_window=settings.widget_rate_window,
            max_connections=settings.widget_max_connections,
            typing_interval=settings.widget_typing_interval,
            auth_timeout=settings.widget_auth_timeout,
            token_warning=settings.widget_token_warning,
            preauth_per_ip=settings.widget_preauth_per_ip,
            frame_rate=settings.widget_frame_rate,
            frame_burst=settings.widget_frame_burst,
            max_keys=settings.limiter_max_keys,
            drain_seconds=settings.widget_drain_seconds,
            turn_lease=settings.widget_turn_lease,
            turn_attempts=settings.widget_turn_attempts,
            turn_backoff=settings.widget_turn_backoff,
            send_queue=settings.widget_send_queue,
            send_timeout=settings.widget_send_timeout,
        )
        return cls(verifier, config, settings.support_db_url)

    def get_output_channel(self) -> OutputChannel:
        """Replies Rasa sends on its own (reminders, external events) reach the widget too."""
        return WidgetOutput(self)

    def get_metadata(self, request: Request) -> Optional[Dict[Text, Any]]:
        """Metadata comes from the verified token and stored context, not the request."""
        return None

    # ------------------------------------------------------------------ store

    async def chat(self) -> ChatStore:
        """The chat store, opened (and its schema created) on first use."""
        if self._chat is not None:
            return self._chat
        if self._chat_lock is None:
            self._chat_lock = asyncio.Lock()
        async with self._chat_lock:
            if self._chat is None:
                store = ChatStore.from_url(self._support_db_url)
                await store.create_schema()
                self._chat = store
        return self._chat

    # -------------------------------------------------------------- blueprint

    def blueprint(self, on_new_message: OnNewMessage) -> Blueprint:
        """The Sanic blueprint with the WebSocket, REST and asset routes."""
        self._on_new_message = on_new_message
        self.bridge.subscribe()
        if not self._call_subscribed:  # Twilio Voice call-backs (bot/twilio/voice.py)
            from bot.live import bus

            bus().subscribe("call.state", self._on_call_state)
            self._call_subscribed = True
        # Frames above the limit are refused by the WebSocket layer itself (close 1009),
        # before hello too: the blueprint sets the limit on the app when it is registered.
        bp = _WidgetBlueprint("widget_webhook", max_frame_bytes=self.config.max_frame_bytes)

        @bp.listener("before_server_start")
        async def _configure(app: Any, _loop: Any) -> None:
            from bot.live import bus

            self._app = app
            live = bus()
            live.start()  # with REDIS_URL: relay and listen to the other processes now
            self.hub.on_presence = live.set_online
            # On shutdown our sockets are closed with 1001 (clients reconnect elsewhere);
            # don't keep the process alive for Sanic's default 15 s grace period.
            app.config.GRACEFUL_SHUTDOWN_TIMEOUT = min(
                float(app.config.get("GRACEFUL_SHUTDOWN_TIMEOUT", 15.0)), 3.0
            )

        @bp.listener("after_server_start")
        async def _start_turns(_app: Any, _loop: Any) -> None:
            # Turns of messages acknowledged before this start (a crash, a stop that did
            # not finish them, another process that died): claimed and run again.
            self._draining = False
            self._sweeper = self.hub.spawn(self._sweep())

        @bp.listener("before_server_stop")
        async def _shutdown(_app: Any, _loop: Any) -> None:
            await self.drain()
            for connection in list(self.hub.all_connections()):
                await connection.close(1001, "server_going_away")
            for task in list(self.hub.tasks):
                task.cancel()
            if self._chat is not None:
                await self._chat.dispose()

        @bp.middleware("response")
        async def _cors_headers(request: Request, resp: Any) -> None:
            # Rasa's CORS extension answers every preflight (OPTIONS) itself, before
            # any route; this adds our allow-list's headers to that answer as well.
            if resp is not None and request.method == "OPTIONS":
                self._cors(request, resp)

        @bp.route("/", methods=["GET"])
        async def health(_request: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @bp.route("/config", methods=["GET"])
        async def config(_request: Request) -> HTTPResponse:
            return response.json({"limits": self.config.limits(), "close_codes": CLOSE_CODES})

        @bp.route("/<asset:(widget\\.js|widget\\.css)>", methods=["GET"])
        async def asset(_request: Request, asset: str) -> HTTPResponse:
            path = WIDGET_ASSETS / asset
            if not path.is_file():
                return _ClientError("not_found", f"{asset} is missing.", 404).response()
            return await response.file(
                path,
                mime_type=_ASSETS[asset],
                headers={"Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*"},
            )

        @bp.route("/history", methods=["GET", "OPTIONS"])
        async def history(request: Request) -> HTTPResponse:
            return await self._rest(request, self._history)

        @bp.route("/session/end", methods=["POST", "OPTIONS"])
        async def end_session(request: Request) -> HTTPResponse:
            return await self._rest(request, self._end_rest)

        @bp.route("/faq/search", methods=["GET", "OPTIONS"])
        async def faq_search(request: Request) -> HTTPResponse:
            return await self._rest(request, self._faq_search, anonymous=True)

        @bp.route("/faq/articles/<article_id>", methods=["GET", "OPTIONS"])
        async def faq_article(request: Request, article_id: str) -> HTTPResponse:
            return await self._rest(
                request, lambda r, c: self._faq_article(article_id), anonymous=True
            )

        @bp.websocket("/ws")
        async def websocket(request: Request, ws: Any) -> None:
            await self._serve_socket(request, ws)

        return bp

    # ------------------------------------------------------------------- REST

    def _origin_allowed(self, origin: Optional[str]) -> bool:
        return origin is None or origin.rstrip("/") in self.config.allowed_origins

    def _cors(self, request: Request, resp: HTTPResponse) -> HTTPResponse:
        origin = request.headers.get("origin")
        if origin and self._origin_allowed(origin):
            resp.headers["Access-Control-Allow-Origin"] = origin
            resp.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            resp.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            resp.headers["Access-Control-Max-Age"] = "600"
            resp.headers["Vary"] = "Origin"
        return resp

    async def _rest(
        self,
        request: Request,
        handler: Callable[[Request, Optional[Customer]], Awaitable[Any]],
        anonymous: bool = False,
    ) -> HTTPResponse:
        try:
            if not self._origin_allowed(request.headers.get("origin")):
                raise _ClientError("origin_not_allowed", "This origin may not use the chat.", 403)
            if request.method == "OPTIONS":
                return self._cors(request, response.empty())
            header = request.headers.get("authorization")
            customer: Optional[Customer] = None
            if header or not anonymous:
                try:
                    customer = self._verifier.verify(header)
                except AuthError as error:
                    raise _ClientError(error.code, str(error), 401) from None
            body = await handler(request, customer)
            return self._cors(request, response.json(body))
        except _ClientError as error:
            return self._cors(request, error.response())
        except Exception:  # noqa: BLE001 - logged; the client gets a clean 500
            logger.exception("Widget REST request %s failed", request.path)
            return self._cors(
                request,
                _ClientError("server_error", "Something went wrong on our side.", 500).response(),
            )

    async def _history(self, request: Request, customer: Optional[Customer]) -> Dict[str, Any]:
        assert customer is not None
        before = _optional_int(request.args.get("before"), "before")
        limit = _optional_int(request.args.get("limit"), "limit") or HISTORY_PAGE
        if not 1 <= limit <= 100:
            raise _ClientError("bad_request", "limit must be between 1 and 100.")
        messages, has_more = await (await self.chat()).history(
            customer.conversation_id, before, limit
        )
        return {"messages": [m.to_wire() for m in messages], "has_more": has_more}

    async def _end_rest(self, _request: Request, customer: Optional[Customer]) -> Dict[str, Any]:
        assert customer is not None
        session = await self._end_session(customer)
        return {"session": session}

    async def _faq_search(self, request: Request, customer: Optional[Customer]) -> Dict[str, Any]:
        key = customer.user_id if customer else f"ip:{request.remote_addr or request.ip}"
        retry = self._faq_limiter.check(key)
        if retry:
            raise _ClientError("rate_limited", "Too many searches.", 429, retry_after=retry)
        query = (request.args.get("q") or "").strip()
        limit = _optional_int(request.args.get("limit"), "limit") or 5
        if len(query) > 500:
            raise _ClientError("too_large", "The search text is too long.", 413)
        if not query:
            return {"query": query, "results": []}
        index = await current_index()
        hits = index.search(query, limit=max(1, min(limit, 10)))
        return {
            "query": query,
            "results": [
                {
                    "id": hit.article.id,
                    "title": hit.article.title,
                    "summary": hit.article.summary,
                    "snippet": hit.snippet,
                    "score": round(hit.score, 3),
                }
                for hit in hits
            ],
        }

    async def _faq_article(self, article_id: str) -> Dict[str, Any]:
        index = await current_index()
        article = index.get(article_id)
        if article is None:
            raise _ClientError("not_found", f"No article {article_id!r}.", 404)
        return {
            "id": article.id,
            "title": article.title,
            "summary": article.summary,
            "body": article.body_text,  # rendered when the index was loaded (a worker thread)
            "blocks": article.blocks,
            "buttons": [dict(b) for b in article.buttons],
        }

    # -------------------------------------------------------------- WebSocket

    async def _serve_socket(self, request: Request, ws: Any) -> None:
        self._app = self._app or request.app
        if not self._origin_allowed(request.headers.get("origin")):
            await _close(ws, "origin_not_allowed")
            return
        address = str(request.remote_addr or request.ip or "unknown")
        if not self.hub.preauth.enter(address):
            logger.warning(
                "Widget socket refused: %d sockets from one address are waiting for hello "
                "already (WIDGET_MAX_PREAUTH_PER_IP).", self.hub.preauth.pending(address),
            )
            await _close(ws, "too_many_pending")
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
            await _send_raw(ws, {"type": "error", "code": "too_many_connections",
                                 "message": str(error)})
            await _close(ws, "too_many_connections")
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
                    break
                if len(raw) > self.config.max_frame_bytes:  # the socket refuses these first
                    await connection.close(1009, "frame_too_large")
                    break
                await self._on_frame(connection, raw)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - closed sockets end up here
            if not _is_closed_error(error):
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
            await _close(ws, "auth_timeout")
            return None
        hello = decode_frame(raw)
        if not isinstance(hello, dict) or hello.get("type") != "hello":
            await _send_raw(ws, _ClientError("hello_required", "Send hello first.").frame())
            await _close(ws, "hello_required")
            return None
        try:
            customer = self._verifier.verify(hello.get("token"))
        except AuthError as error:  # the message is generic; the reason is in the log
            await _send_raw(ws, {"type": "error", "code": error.code, "message": str(error)})
            await _close(ws, error.code)
            return None
        return customer, hello

    async def _rate_limited(self, connection: Connection) -> None:
        """The connection's frame bucket ran dry: tell it, close it with 1008."""
        logger.warning(
            "Widget connection %s sent more than %d frames at once (%g/s): closed.",
            connection.id, self.config.frame_burst, self.config.frame_rate,
        )
        await connection.send(
            _ClientError(
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
                _ClientError("malformed_frame", "Frames must be JSON objects.").frame()
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
                _ClientError("unknown_type", f"Unknown frame type {kind!r}.").frame()
            )
            return
        try:
            await handler(connection, frame)
        except _ClientError as error:
            await connection.send(error.frame())
        except Exception:  # noqa: BLE001 - one bad frame must not end the chat
            logger.exception("Widget frame %r failed", kind)
            await connection.send(
                _ClientError("server_error", "Something went wrong on our side.").frame()
            )

    async def _on_message(self, connection: Connection, frame: Dict[str, Any]) -> None:
        client_id = frame.get("client_id")
        if not isinstance(client_id, str) or not _CLIENT_ID_RE.match(client_id):
            raise _ClientError(
                "bad_request", "client_id must be 1-64 characters of A-Za-z0-9_.:-."
            )
        text = frame.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _ClientError("bad_request", "text must be a non-empty string.", client_id=client_id)
        text = text.strip()
        if len(text) > self.config.max_message_chars:
            raise _ClientError(
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
            raise _ClientError(
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
            raise _ClientError(
                "rate_limited",
                f"At most {self.config.rate_messages} messages per "
                f"{self.config.rate_window:g} s; this one was not sent.",
                429,
                client_id=client_id,
                retry_after=retry,
            )
        try:
            result = await chat.do_store_customer_message(
                connection.conversation_id, client_id, text, payload
            )
        except LookupError:
            raise
        except Exception:  # noqa: BLE001 - not stored, so not acknowledged: the widget resends
            logger.exception("Could not store message %s of %s", client_id,
                             connection.conversation_id)
            raise _ClientError(
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
            await self.bridge.publish(
                "customer.message",
                {"conversation_id": connection.conversation_id, "message": message.to_wire()},
            )
        self._queue_turn(connection.customer, message)

    async def _check_payload(self, connection: Connection, payload: str, client_id: str) -> None:
        """Refuse a quick-reply payload the bot's latest message did not offer.

        Raises:
            _ClientError: ``payload_not_offered`` (the message is not stored; the widget
                sends the button's title again as plain text).
        """
        offered = await (await self.chat()).offered_payloads(connection.conversation_id)
        if not payload_allowed(payload, offered):
            logger.info(
                "Widget payload refused on connection %s: %s.", connection.id,
                "a reserved command" if payload_intent(payload) in RESERVED_INTENTS
                else "not offered",
            )
            raise _ClientError(
                "payload_not_offered",
                "That quick reply is not offered any more; send the text instead.",
                client_id=client_id,
            )

    # ------------------------------------------------------------ bot turns
    #
    # Every acknowledged customer message gets its turn exactly once (docs/widget-protocol.md,
    # "Delivery guarantees"): the turn is claimed in the database (ChatStore.do_claim_turn:
    # received -> processing with a lease, one winner over every process), the lease is
    # renewed while it runs, a failed attempt is handed back with a back-off and tried again,
    # the last failure marks it failed with a notice. Unfinished turns are found again at
    # start-up, periodically (a process that died), and at each hello.

    def _queue_turn(self, customer: Any, message: MessageView) -> None:
        """Run the turn of a stored customer message (once per message in this process)."""
        if self._draining or message.id in self._inflight:
            return
        self._inflight.add(message.id)
        task = self.hub.spawn(self._turn(customer, message))
        self._turn_tasks.add(task)
        task.add_done_callback(self._turn_tasks.discard)

    async def _requeue(self, conversation_id: Optional[str] = None,
                       customer: Optional[Customer] = None) -> int:
        """Queue the turns still to run (of one conversation, or all); returns how many."""
        if self._draining or self._on_new_message is None:
            return 0
        try:
            pending = await (await self.chat()).pending_turns(conversation_id, limit=200)
        except Exception:  # noqa: BLE001 - the next sweep tries again
            logger.exception("Could not read the unfinished widget turns")
            return 0
        queued = 0
        for message, conversation in pending:
            if conversation.channel != "widget" or message.id in self._inflight:
                continue
            who = customer if customer is not None else Customer(
                user_id=conversation.customer_id, profile=dict(conversation.profile))
            self._queue_turn(who, message)
            queued += 1
        if queued:
            logger.info("Re-queued %d unfinished widget turn(s)%s.", queued,
                        f" of {conversation_id}" if conversation_id else "")
        return queued

    def _sweep_interval(self) -> float:
        return max(1.0, min(self.config.turn_lease / 2.0, 15.0))

    async def _sweep(self) -> None:
        """At start-up, then every few seconds: queue unfinished turns nobody holds."""
        while not self._draining and not self._agent_ready():
            await asyncio.sleep(0.2)
        while not self._draining:
            await self._requeue()
            await asyncio.sleep(self._sweep_interval())

    def _agent_ready(self) -> bool:
        agent = getattr(getattr(self._app, "ctx", None), "agent", None)
        try:
            return agent is not None and bool(agent.is_ready())
        except Exception:  # noqa: BLE001 - not loaded yet
            return False

    async def drain(self, seconds: Optional[float] = None) -> int:
        """Stop starting turns; wait up to ``seconds`` (``WIDGET_DRAIN_SECONDS``) for the
        running ones, cancel the rest and hand their claims back (the next start runs them).

        Returns:
            How many turns were handed back unfinished.
        """
        self._draining = True
        if self._drain_event is not None:
            self._drain_event.set()
        if self._sweeper is not None:
            self._sweeper.cancel()
        seconds = self.config.drain_seconds if seconds is None else seconds
        running = [task for task in self._turn_tasks if not task.done()]
        if running:
            logger.info("Shutting down: waiting up to %g s for %d widget turn(s).",
                        seconds, len(running))
            _done, pending = await asyncio.wait(running, timeout=max(0.0, seconds))
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5.0)
        released = 0
        if self._chat is not None:
            try:
                released = await self._chat.do_release_claims(self.owner)
            except Exception:  # noqa: BLE001 - their leases run out instead
                logger.exception("Could not hand back the unfinished widget turns")
        if released:
            logger.warning("Shutting down: %d widget turn(s) not finished in %g s are "
                           "handed back; the next start answers them.", released, seconds)
        return released

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake up when the process starts draining."""
        if self._drain_event is None:
            self._drain_event = asyncio.Event()
            if self._draining:
                self._drain_event.set()
        try:
            await asyncio.wait_for(self._drain_event.wait(), max(0.0, seconds))
        except asyncio.TimeoutError:
            pass

    async def _turn(self, customer: Any, message: MessageView) -> None:
        """Claim, run (and retry) the bot turn of one stored customer message, in order."""
        conversation_id = customer.conversation_id
        try:
            async with self.hub.turn_lock(conversation_id):
                chat = await self.chat()
                while not self._draining:
                    claim = await chat.do_claim_turn(message.id, self.owner,
                                                     self.config.turn_lease)
                    if claim is None:  # done, failed, someone else's, or backing off
                        return
                    if claim.answered:  # ran before its process died: never twice
                        await self._finish(claim, "read")
                        return
                    error = await self._run_claimed(customer, claim)
                    if error is None:
                        return
                    if claim.attempt < self.config.turn_attempts and not self._draining:
                        delay = self.config.turn_backoff * 2 ** (claim.attempt - 1)
                        logger.warning(
                            "Turn of message %s failed (attempt %d of %d: %s); retrying in "
                            "%g s.", message.id, claim.attempt, self.config.turn_attempts,
                            error, delay)
                        await chat.do_release_turn(
                            message.id, self.owner,
                            retry_at=db.utcnow() + timedelta(seconds=delay), error=error)
                        await self._pause(delay)
                        continue
                    if self._draining:  # handed back by drain(); the next start retries
                        await chat.do_release_turn(message.id, self.owner, error=error)
                        return
                    await self._turn_failed(claim, error)
                    return
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the claim's lease runs out; the sweeper retries
            logger.exception("The turn of message %s could not run; it will be retried.",
                             message.id)
        finally:
            self._inflight.discard(message.id)

    async def _keep_claim(self, message_id: int) -> None:
        """Renew the claim's lease while the turn runs."""
        chat = await self.chat()
        while True:
            await asyncio.sleep(max(0.5, self.config.turn_lease / 3.0))
            try:
                if not await chat.do_renew_claim(message_id, self.owner, self.config.turn_lease):
                    logger.warning("Lost the claim of message %s's turn.", message_id)
                    return
            except Exception:  # noqa: BLE001 - try again at the next beat
                logger.exception("Could not renew the claim of message %s", message_id)

    async def _run_claimed(self, customer: Any, claim: TurnClaim) -> Optional[str]:
        """Run one attempt of a claimed turn.

        Returns:
            None when the turn is finished (answered, or handed to a person), else why it
            failed (the claim is still held).
        """
        message, conversation_id = claim.message, claim.conversation.conversation_id
        chat = await self.chat()
        heartbeat = asyncio.get_running_loop().create_task(self._keep_claim(message.id))
        try:
            # Handed to the bot (or the agent's queue) now. The row is written once at the
            # end of the turn: "read" when the bot answered (delivered_at set too), else
            # "delivered".
            await self.hub.push(
                conversation_id, {"type": "receipt", "ids": [message.id], "status": "delivered"}
            )
            if claim.conversation.with_person:  # the bot is silent; the agent gets it
                await self._finish(claim, "delivered")
                return None
            output = WidgetOutput(self, reply_to=message.id)
            await self.hub.push(conversation_id, {"type": "typing", "sender": "bot",
                                                  "state": "start"})
            error: Optional[str] = None
            try:
                # An (offered) quick reply goes as its /intent; typed text always as text.
                await self._handle(
                    customer, message.payload or as_free_text(message.text), output,
                    message_id=f"widget-{message.id}", context=claim.conversation.context,
                )
            except Exception as failure:  # noqa: BLE001 - retried, then the customer is told
                logger.exception("The bot failed on message %s", message.id)
                error = f"{type(failure).__name__}: {failure}"
            await self.hub.push(conversation_id, {"type": "typing", "sender": "bot",
                                                  "state": "stop"})
            if output.sent:
                await self._finish(claim, "read")
                return None
            if error is None:
                if await self._paused(conversation_id):  # handed over during the turn
                    await self._finish(claim, "delivered")
                    return None
                error = "no reply (is the action server reachable?)"
            return error
        finally:
            heartbeat.cancel()

    async def _finish(self, claim: TurnClaim, status: str) -> None:
        chat = await self.chat()
        message_id = claim.message.id
        if not await chat.do_finish_turn(message_id, self.owner, status):
            logger.warning("Turn of message %s finished without its claim.", message_id)
            return
        if status == "read":
            await self.hub.push(
                claim.conversation.conversation_id,
                {"type": "receipt", "ids": [message_id], "status": "read"},
            )

    async def _turn_failed(self, claim: TurnClaim, error: str) -> None:
        """The last attempt failed: ``failed``, a stored notice, an ``error`` frame."""
        message, conversation_id = claim.message, claim.conversation.conversation_id
        logger.error("Turn of message %s failed %d times (%s): marked failed.",
                     message.id, claim.attempt, error)
        stored = await (await self.chat()).do_fail_turn(
            message.id, self.owner, error, notice("widget_bot_unavailable"))
        if stored is None:
            return
        await self.hub.push(conversation_id, {"type": "message", "message": stored.to_wire()})
        await self.hub.push(
            conversation_id,
            _ClientError(
                "bot_unavailable",
                "The assistant could not answer this message.",
                client_id=message.client_id,
            ).frame(),
        )
        # agents see the notice in the conversation (a system message)
        await self.bridge.publish(
            "customer.message",
            {"conversation_id": conversation_id, "message": stored.to_wire()},
        )

    async def _handle(
        self, customer: Customer, text: str, output: OutputChannel,
        message_id: Optional[str] = None, context: Optional[Dict[str, Any]] = None,
    ) -> None:
        if context is None:
            context = (await (await self.chat()).get_conversation(customer.conversation_id)).context
        stored_context = context
        context = {
            key: customer.profile[key]
            for key in ("app_version", "device", "locale")
            if key in customer.profile
        }
        context.update(stored_context)
        metadata = {"customer": customer.metadata_customer(), "context": context,
                    "channel": "widget"}
        assert self._on_new_message is not None
        await self._on_new_message(
            UserMessage(
                text,
                output,
                customer.conversation_id,
                input_channel=self.name(),
                message_id=message_id,
                metadata=metadata,
            )
        )

    async def _paused(self, conversation_id: str) -> bool:
        agent = getattr(getattr(self._app, "ctx", None), "agent", None)
        store = getattr(agent, "tracker_store", None)
        if store is None:
            return False
        try:
            tracker = await store.retrieve(conversation_id)
        except Exception:  # noqa: BLE001 - unknown: treat as not paused
            logger.exception("Could not read the tracker of %s", conversation_id)
            return False
        return bool(tracker is not None and tracker.is_paused())

    async def _on_typing(self, connection: Connection, frame: Dict[str, Any]) -> None:
        state = frame.get("state")
        if state not in ("start", "stop"):
            raise _ClientError("bad_request", "typing.state must be start or stop.")
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
            raise _ClientError("bad_request", "delivered.ids must be a list of message ids.")
        await (await self.chat()).do_mark(
            connection.conversation_id, "delivered", ids=ids[:500], senders=OUTGOING_SENDERS
        )

    async def _on_read(self, connection: Connection, frame: Dict[str, Any]) -> None:
        up_to = frame.get("up_to")
        if not isinstance(up_to, int) or isinstance(up_to, bool):
            raise _ClientError("bad_request", "read.up_to must be a message id.")
        read = await (await self.chat()).do_mark(
            connection.conversation_id, "read", up_to=up_to, senders=OUTGOING_SENDERS
        )
        if read:  # the customer's other devices clear their unread badge; agents see ticks
            await self.hub.push(
                connection.conversation_id,
                {"type": "receipt", "ids": read, "status": "read"},
                exclude=connection,
            )
            await self.bridge.publish(
                "customer.read", {"conversation_id": connection.conversation_id, "ids": read}
            )

    async def _on_history(self, connection: Connection, frame: Dict[str, Any]) -> None:
        before, limit = frame.get("before"), frame.get("limit", HISTORY_PAGE)
        if before is not None and (not isinstance(before, int) or isinstance(before, bool)):
            raise _ClientError("bad_request", "history.before must be a message id or null.")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 100:
            raise _ClientError("bad_request", "history.limit must be between 1 and 100.")
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
            raise _ClientError("bad_request", str(error)) from None
        await (await self.chat()).do_update_context(connection.conversation_id, context)

    async def _on_auth(self, connection: Connection, frame: Dict[str, Any]) -> None:
        try:
            customer = self._verifier.verify(frame.get("token"))
        except AuthError as error:
            raise _ClientError(error.code, str(error), 401) from None
        if customer.user_id != connection.user_id:
            await connection.send(
                _ClientError("invalid_token", "The new token names another user.").frame()
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
            raise _ClientError("bad_request", str(error)) from None
        await connection.send(rated)

    async def resume_bot(self, conversation_id: str) -> None:
        """Un-pause Rasa for a conversation a person has finished (under Rasa's lock).

        Appends ``ConversationResumed`` and ``action_listen`` to the tracker, as if the
        bot had just started listening again.
        """
        from rasa.shared.core.events import ActionExecuted, ConversationResumed

        agent = getattr(getattr(self._app, "ctx", None), "agent", None)
        if agent is None or agent.tracker_store is None:
            return
        async with agent.lock_store.lock(conversation_id):
            tracker = await agent.tracker_store.retrieve(conversation_id)
            if tracker is not None and tracker.is_paused():
                tracker.update(ConversationResumed())
                # the bot listens again (Rasa's default rules, e.g. /session_start, need it)
                tracker.update(ActionExecuted("action_listen"))
                await agent.tracker_store.save(tracker)

    async def _on_ping(self, connection: Connection, _frame: Dict[str, Any]) -> None:
        await connection.send({"type": "pong"})

    # ------------------------------------------- call-backs (bot/twilio/voice.py)

    async def _on_end_call(self, connection: Connection, frame: Dict[str, Any]) -> None:
        from bot.twilio.voice import end_call

        await connection.send(await end_call(connection.conversation_id, frame))

    async def _on_call_state(self, event: Dict[str, Any]) -> None:
        """Bus ``call.state``: the system message (if any), then the ``call`` frame."""
        conversation_id = event["conversation_id"]
        if event.get("message"):
            await self.hub.push(conversation_id, {"type": "message", "message": event["message"]})
        await self.hub.push(conversation_id, event["frame"])

    async def _send_call_state(self, connection: Connection) -> None:
        try:
            from bot.twilio.voice import current_call_frame

            frame = await current_call_frame(connection.conversation_id)
        except Exception:  # noqa: BLE001 - the chat works without it
            logger.exception("Could not read the call state of %s", connection.conversation_id)
            return
        if frame is not None:
            await connection.send(frame)

    async def _end_session(self, customer: Customer) -> int:
        """End the chat session; returns the new session number."""
        conversation_id = customer.conversation_id
        chat = await self.chat()
        await chat.do_open_conversation(
            conversation_id, customer.user_id, "widget", profile=customer.profile
        )
        async with self.hub.turn_lock(conversation_id):
            paused = await self._paused(conversation_id)
            conversation, ended = await chat.do_end_session(
                conversation_id,
                f"customer:{customer.user_id}",
                notice("widget_session_ended"),
            )
            await self.hub.push(conversation_id, {"type": "message", "message": ended.to_wire()})
            output = WidgetOutput(self)
            try:
                if paused:  # the customer left a chat with a person
                    await self.resume_bot(conversation_id)
                await self._handle(customer, "/session_start", output)
            except Exception:  # noqa: BLE001 - the session is ended in our store anyway
                logger.exception("Could not start a new bot session for %s", conversation_id)
            await self.hub.push(
                conversation_id, {"type": "session_ended", "session": conversation.session}
            )
        await self.bridge.publish(
            "conversation.ended",
            {"conversation_id": conversation_id, "session": conversation.session},
        )
        return conversation.session


# ------------------------------------------------------------------ helpers


class _WidgetBlueprint(Blueprint):
    """The channel's blueprint; registering it sets the app's WebSocket frame limit.

    Sanic 21.12 reads ``WEBSOCKET_MAX_SIZE`` when the server builds its protocol, before
    any ``before_server_start`` listener runs; Rasa registers the channel blueprints
    before it calls ``app.run``, so this is the moment to set it. The limit holds for
    every frame, before ``hello`` too: the WebSocket layer closes the socket with 1009
    without reading the frame's payload.

    Args:
        name: The blueprint's name.
        max_frame_bytes: ``WIDGET_MAX_FRAME_BYTES``.
    """

    def __init__(self, name: str, max_frame_bytes: int) -> None:
        super().__init__(name)
        self.ctx.max_frame_bytes = int(max_frame_bytes)

    def register(self, app: Any, options: Any) -> None:
        """Register on ``app`` and lower its ``WEBSOCKET_MAX_SIZE`` to the widget's limit."""
        current = app.config.get("WEBSOCKET_MAX_SIZE") or self.ctx.max_frame_bytes
        app.config.WEBSOCKET_MAX_SIZE = min(int(current), self.ctx.max_frame_bytes)
        super().register(app, options)


def notice(key: str, **values: Any) -> str:
    """A notice text from ``data/messages.yml`` (designers edit it; reloaded on change)."""
    from bot.messages import load_messages

    return load_messages().text(key, **values)


def _optional_int(value: Any, name: str) -> Optional[int]:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _ClientError("bad_request", f"{name} must be an integer.") from None


async def _send_raw(ws: Any, frame: Dict[str, Any]) -> None:
    try:
        await ws.send(json.dumps(frame))
    except Exception:  # noqa: BLE001 - the client is gone
        pass


async def _close(ws: Any, reason: str) -> None:
    try:
        await ws.close(code=CLOSE_CODES[reason], reason=reason)
    except Exception:  # noqa: BLE001 - the client is gone
        pass


def _is_closed_error(error: BaseException) -> bool:
    name = type(error).__name__
    return name.startswith("ConnectionClosed") or name in ("WebsocketClosed",)
