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
never starts with Rasa's intent prefix ``/`` (:func:`bot.channels.text.as_free_text`), and a quick
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

The channel is split into modules of one job each (docs/widget.md, "Module map"); this one
assembles :class:`WidgetInput` from them and declares its blueprint:

* :mod:`bot.channels.widget_wire`: limits, close codes, the client error, socket helpers;
* :mod:`bot.channels.widget_output`: :class:`WidgetOutput` (bot replies stored and pushed);
* :mod:`bot.channels.widget_rest`: the REST routes (CORS, history, session end, FAQ);
* :mod:`bot.channels.widget_socket`: a WebSocket's life (hello, welcome/resume, frames);
* :mod:`bot.channels.widget_frames`: what each customer frame does;
* :mod:`bot.channels.widget_calls`: the call-back frames (through :mod:`bot.calls`);
* :mod:`bot.channels.widget_turns`: bot turns, exactly once, and the shutdown drain;
* :mod:`bot.channels.widget_session`: session end and resuming the bot after a person;
* :mod:`bot.channels.agent_bridge`: the live agent's side (bus topics to the customer).
"""
from __future__ import annotations

import asyncio
import collections
import os
import socket
import uuid
from pathlib import Path
from typing import Any, Deque, Dict, Optional, Text, Tuple

from rasa.core.channels.channel import InputChannel, OutputChannel
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.attachments.widget_routes import WidgetAttachments
from bot.channels.agent_bridge import AgentBridge
from bot.channels.auth import TokenVerifier, verifier_from_settings
from bot.channels.hub import Hub, RateLimiter
from bot.channels.widget_calls import WidgetCallFrames
from bot.channels.widget_frames import WidgetFrameHandlers
from bot.channels.widget_output import WidgetOutput
from bot.channels.widget_rest import WidgetRestRoutes
from bot.channels.widget_session import WidgetChatSessions
from bot.channels.widget_socket import WidgetSocketSession
from bot.channels.widget_turns import WidgetBotTurns
from bot.channels.widget_wire import (
    CLOSE_CODES, FAQ_RATE_PER_MINUTE, ClientError, OnNewMessage, WidgetConfig,
)
from bot.support.chat import ChatStore

__all__ = ["WidgetInput", "WidgetOutput", "CLOSE_CODES", "WidgetConfig"]

WIDGET_ASSETS = Path(__file__).resolve().parent.parent / "widget"
_ASSETS = {"widget.js": "application/javascript", "widget.css": "text/css"}


class WidgetInput(
    WidgetRestRoutes,
    WidgetSocketSession,
    WidgetFrameHandlers,
    WidgetCallFrames,
    WidgetBotTurns,
    WidgetChatSessions,
    InputChannel,
):
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
        self._turn_slots: Optional[asyncio.Semaphore] = None
        """At most ``turn_concurrency`` turns claim and run at once in this process."""
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
        self.attachments = WidgetAttachments(self)  # photos and PDFs (bot/attachments)

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
            turn_concurrency=settings.widget_turn_concurrency,
            send_queue=settings.widget_send_queue,
            send_timeout=settings.widget_send_timeout,
            attachment_max_bytes=settings.attachments.max_bytes,
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
                return ClientError("not_found", f"{asset} is missing.", 404).response()
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

        self.attachments.register(bp)  # POST /attachments, GET /attachments/<id>[/thumb]
        return bp


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
