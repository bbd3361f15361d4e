"""The agent console input channel: REST API, live WebSocket and the console page.

Registered in ``credentials.yml`` as ``bot.agent_console.channel.AgentConsoleInput``;
routes live under ``/webhooks/agent/`` (docs/agent-console.md):

* ``/`` and ``/static/<file>``: the single page (``static/``), no build step.
* ``/api/...``: JSON, ``Authorization: Bearer <session token>`` except ``/api/login``.
* ``/ws``: live events for online agents (first frame ``{"type": "hello", "token"}``).
* ``/prometheus``: Prometheus text format 0.0.4 (metrics token or an admin session).

It runs in the Rasa server process next to the widget channel and talks to it over

It runs in the Rasa server process next to the widget channel and talks to it over
:func:`bot.live.bus`. Handoffs happen in the action server process, so new and changed
tickets are read from the change feed (:func:`bot.live.change_feed`, one reader per process,
gap-free). Each agent socket has a bounded send queue and a send timeout
(:class:`~bot.agent_console.connection.AgentConnection`): a stuck socket is closed, the
others keep their latency. Stores are opened on first use. Logins are throttled in memory
(:class:`~bot.agent_console.throttle.LoginThrottle`).

The channel is split into modules of one job each (docs/agent-console.md, "Module map");
this one assembles :class:`AgentConsoleInput` and declares its blueprint:

* :mod:`bot.agent_console.wire`: API errors, request bodies, tickets as JSON;
* :mod:`bot.agent_console.throttle`: login limits and the client address;
* :mod:`bot.agent_console.connection`: one agent socket's bounded send queue;
* :mod:`bot.agent_console.assets`: the page and its static files;
* :mod:`bot.agent_console.session_routes`: authentication, login, logout, ``/api/me``;
* :mod:`bot.agent_console.ticket_routes`: inbox, agents, canned replies, metrics, actions;
* :mod:`bot.agent_console.prometheus`: the Prometheus route;
* :mod:`bot.agent_console.live_socket`: the agents' WebSocket;
* :mod:`bot.agent_console.live_feed`: bus and change-feed events to the agents' sockets.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Optional, Set, Text, Tuple

from rasa.core.channels.channel import InputChannel, UserMessage
from sanic import Blueprint
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.agent_console.assets import ASSETS, serve_asset
from bot.attachments.console_routes import ConsoleAttachments
from bot.agent_console.connection import SEND_QUEUE, SEND_TIMEOUT, AgentConnection
from bot.agent_console.live_feed import ConsoleLiveFeed, TicketState
from bot.agent_console.live_socket import ConsoleSocket
from bot.agent_console.prometheus import ConsolePrometheus
from bot.agent_console.session_routes import ConsoleSessionRoutes
from bot.agent_console.throttle import LoginThrottle, client_ip, parse_networks
from bot.agent_console.ticket_routes import ConsoleTicketRoutes
from bot.agent_console.wire import ApiError
from bot.push.routes import install as install_push
from bot.support.agents import AgentStore, AgentView
from bot.support.chat import ChatStore

__all__ = ["AgentConsoleInput", "ConsoleConfig", "LoginThrottle", "client_ip",
           "parse_networks"]

OnNewMessage = Callable[[UserMessage], Awaitable[Any]]


@dataclass(frozen=True)
class ConsoleConfig:
    """The console's settings (from :func:`bot.settings.get_settings`)."""

    support_db_url: str
    session_ttl: int
    metrics_token: Optional[str]
    poll_interval: float
    canned_file: Path
    login_rate: int
    login_account_failures: int = 5
    login_backoff_max: float = 900.0
    trusted_proxies: Tuple[str, ...] = ()
    limiter_max_keys: int = 10000
    send_queue: int = SEND_QUEUE
    send_timeout: float = SEND_TIMEOUT


class AgentConsoleInput(
    ConsoleSessionRoutes,
    ConsoleTicketRoutes,
    ConsolePrometheus,
    ConsoleSocket,
    ConsoleLiveFeed,
    InputChannel,
):
    """The live agents' console (REST + WebSocket + page) as a Rasa input channel.

    Args:
        config: Settings of the console.
    """

    def __init__(self, config: ConsoleConfig) -> None:
        self.config = config
        self._agents: Optional[AgentStore] = None
        self._chat: Optional[ChatStore] = None
        self._lock: Optional[asyncio.Lock] = None
        self._connections: Set[AgentConnection] = set()
        self._tickets: Dict[str, TicketState] = {}  # conversation_id -> open ticket
        self._feed: Any = None  # bot.live.ChangeFeedConsumer while subscribed
        self._subscribed = False
        self._callbacks: Dict[str, Callable[[Dict[str, Any]], Awaitable[None]]] = {}
        self._trusted_proxies = parse_networks(config.trusted_proxies)
        self._login_throttle = LoginThrottle(
            config.login_rate, config.login_account_failures, config.login_backoff_max,
            config.limiter_max_keys)
        self.attachments = ConsoleAttachments(self)  # photos and PDFs (bot/attachments)

    @classmethod
    def name(cls) -> Text:
        return "agent"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> "AgentConsoleInput":
        """Build the channel from the settings (``credentials.yml`` needs no keys)."""
        from bot.settings import get_settings

        settings = get_settings()
        return cls(ConsoleConfig(
            support_db_url=settings.support_db_url,
            session_ttl=settings.agent_session_ttl,
            metrics_token=settings.agent_metrics_token,
            poll_interval=settings.agent_audit_poll_interval,
            canned_file=settings.agent_canned_file,
            login_rate=settings.agent_login_rate,
            login_account_failures=settings.agent_login_account_failures,
            login_backoff_max=settings.agent_login_backoff_max,
            trusted_proxies=tuple(settings.agent_trusted_proxies),
            limiter_max_keys=settings.limiter_max_keys,
        ))

    # ----------------------------------------------------------------- stores

    async def stores(self) -> Tuple[AgentStore, ChatStore]:
        """The agent and chat stores, opened (schema brought up to date) on first use."""
        if self._agents is not None and self._chat is not None:
            return self._agents, self._chat
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._agents is None:
                agents = AgentStore.from_url(self.config.support_db_url)
                await agents.create_schema()
                self._chat = ChatStore.from_url(self.config.support_db_url)
                self._agents = agents
            self._subscribe()
        assert self._agents is not None and self._chat is not None
        return self._agents, self._chat

    # -------------------------------------------------------------- blueprint

    def blueprint(self, on_new_message: OnNewMessage) -> Blueprint:
        """The Sanic blueprint: page, REST API, WebSocket and Prometheus routes."""
        bp = Blueprint("agent_console_webhook", __name__)

        @bp.listener("before_server_stop")
        async def _shutdown(_app: Any, _loop: Any) -> None:
            await self.close()

        @bp.route("/", methods=["GET"])
        async def index(_request: Request) -> HTTPResponse:
            return await serve_asset("index.html", "text/html; charset=utf-8")

        @bp.route("/static/<name>", methods=["GET"])
        async def asset(_request: Request, name: str) -> HTTPResponse:
            if name not in ASSETS:
                return ApiError(404, "not_found", "No such file.").response()
            return await serve_asset(name, ASSETS[name])

        @bp.route("/api/login", methods=["POST"])
        async def login(request: Request) -> HTTPResponse:
            return await self._call(request, self._login, auth=False)

        routes: List[Tuple[str, str, Callable[..., Awaitable[Any]]]] = [
            ("/api/logout", "POST", self._logout),
            ("/api/me", "GET", self._me),
            ("/api/inbox", "GET", self._inbox),
            ("/api/agents", "GET", self._list_agents),
            ("/api/canned", "GET", self._canned),
            ("/api/metrics", "GET", self._metrics),
        ]
        for path, method, handler in routes:
            bp.add_route(self._bind(handler), path, methods=[method],
                         name=path.strip("/").replace("/", "_"))

        @bp.route("/api/tickets/<reference>", methods=["GET"])
        async def ticket(request: Request, reference: str) -> HTTPResponse:
            return await self._call(request, lambda r, a: self._detail(a, reference))

        @bp.route("/api/tickets/<reference>/<action:(claim|transfer|resolve|reply|read)>",
                  methods=["POST"])
        async def ticket_action(request: Request, reference: str, action: str) -> HTTPResponse:
            handler = getattr(self, f"_{action}")
            return await self._call(request, lambda r, a: handler(r, a, reference))

        @bp.route("/prometheus", methods=["GET"])
        async def prometheus(request: Request) -> HTTPResponse:
            return await self._prometheus(request)

        @bp.websocket("/ws")
        async def websocket(request: Request, ws: Any) -> None:
            await self._serve_socket(request, ws)

        install_push(bp, self)  # /sw.js, /api/push/..., the push sender (bot/push)
        self.attachments.register(bp)  # /api/tickets/<ref>/attachments, /api/attachments/<id>

        return bp

    def _bind(self, handler: Callable[[Request, AgentView], Awaitable[Any]]) -> Any:
        async def route(request: Request) -> HTTPResponse:
            return await self._call(request, handler)

        return route

    async def close(self) -> None:
        """Close sockets, leave the change feed, dispose the stores (server shutdown)."""
        connections = list(self._connections)
        for connection in connections:
            await connection.close(1001, "server_going_away")
        await asyncio.gather(*(c.finish() for c in connections), return_exceptions=True)
        if self._feed is not None:
            feed, self._feed = self._feed, None
            await feed.unsubscribe(self._on_changes)
        if self._subscribed:
            from bot.live import bus

            for topic, callback in self._callbacks.items():
                bus().unsubscribe(topic, callback)
            self._callbacks.clear()
            self._subscribed = False
        for store in (self._agents, self._chat):
            if store is not None:
                await store.dispose()
        self._agents = self._chat = None
        self.attachments.reset()
