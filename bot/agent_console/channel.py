"""The agent console input channel: REST API, live WebSocket and the console page.

Registered in ``credentials.yml`` as ``bot.agent_console.channel.AgentConsoleInput``;
routes live under ``/webhooks/agent/`` (docs/agent-console.md):

* ``/`` and ``/static/<file>``: the single page (``static/``), no build step.
* ``/api/...``: JSON, ``Authorization: Bearer <session token>`` except ``/api/login``.
* ``/ws``: live events for online agents (first frame ``{"type": "hello", "token"}``).
* ``/prometheus``: Prometheus text format 0.0.4 (metrics token or an admin session).

It runs in the Rasa server process next to the widget channel and talks to it over
:func:`bot.live.bus`. Handoffs happen in the action server process, so new and changed
tickets are read from the change feed (:func:`bot.live.change_feed`, one reader per process,
gap-free). Each agent socket has a bounded send queue and a send timeout
(:class:`AgentConnection`): a stuck socket is closed, the others keep their latency. Stores
are opened on first use.

Logins are throttled in memory (:class:`LoginThrottle`): ``AGENT_LOGIN_RATE`` attempts per
client IP per minute, and per account a back-off after ``AGENT_LOGIN_ACCOUNT_FAILURES``
failures in a row (30 s, doubling up to ``AGENT_LOGIN_BACKOFF_MAX``; a success resets it),
whichever IPs the attempts come from. The client IP is the socket's peer, or, only when
the peer is one of ``AGENT_TRUSTED_PROXIES``, the right-most address of
``X-Forwarded-For`` that is not a trusted proxy (:func:`client_ip`). Every limiter keeps at
most ``LIMITER_MAX_KEYS`` keys (the least recently used go first).
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import math
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import (Any, Awaitable, Callable, Deque, Dict, Iterable, List, Optional, Sequence,
                    Set, Text, Tuple, Union)

from rasa.core.channels.channel import InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.channels.frames import decode_frame
from bot.support.agents import AgentStore, AgentView, AuthFailed, Forbidden, InboxItem
from bot.support.chat import ChatStore
from bot.support.ops import NotFound, StateError, TicketView

__all__ = ["AgentConsoleInput", "ConsoleConfig", "LoginThrottle", "client_ip",
           "parse_networks"]

logger = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
_ASSETS = {
    "console.js": "application/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'")
AUDIT_ACTIONS = ("handoff.recorded", "ticket.claimed", "ticket.transferred", "ticket.resolved")
CUSTOMER_TOPICS = ("customer.message", "customer.typing", "customer.read",
                   "conversation.ended", "rating.created")
AGENT_TOPICS = ("agent.message", "agent.read")
"""What agents on other Rasa processes do, shown to this process's agents."""
HELLO_TIMEOUT = 10.0
SEND_QUEUE = 256
"""Frames an agent socket may fall behind before it is closed."""
SEND_TIMEOUT = 5.0
"""Seconds a socket may take to accept one frame before it is closed."""
MAX_BODY_BYTES = 64 * 1024
REAUTH_SECONDS = 30.0
TYPING_INTERVAL = 1.5
INBOX_STATES = ("queued", "assigned", "resolved")
LOGIN_WINDOW = 60.0
ACCOUNT_BACKOFF_BASE = 30.0
"""Seconds of the first per-account back-off; each further failure doubles it."""
LOGIN_THROTTLED = "Too many login attempts; try again in {seconds} s."

OnNewMessage = Callable[[UserMessage], Awaitable[Any]]


class ApiError(Exception):
    """A refused request: JSON ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str,
                 retry_after: Optional[float] = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after = retry_after

    def response(self) -> HTTPResponse:
        headers = {"Cache-Control": "no-store"}
        body: Dict[str, Any] = {"code": self.code, "message": str(self)}
        if self.retry_after is not None:
            seconds = max(1, math.ceil(self.retry_after))
            headers["Retry-After"] = str(seconds)
            body["retry_after"] = seconds
        return response.json({"error": body}, status=self.status, headers=headers)


Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


def parse_networks(entries: Iterable[str]) -> Tuple[Network, ...]:
    """``AGENT_TRUSTED_PROXIES`` entries (IPs or CIDRs) as networks.

    Raises:
        ValueError: An entry that is neither, naming it.
    """
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"AGENT_TRUSTED_PROXIES: {entry!r} is not an IP address or "
                             "CIDR range.") from None
    return tuple(networks)


def _address(value: str) -> Optional[Address]:
    """An IP from a peer or ``X-Forwarded-For`` item (``[v6]:port`` and ``v4:port`` too)."""
    value = value.strip().strip('"')
    if value.startswith("["):
        value = value[1:].split("]", 1)[0]
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def client_ip(peer: str, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """The address a request is counted against.

    Args:
        peer: The socket's peer address.
        forwarded_for: The ``X-Forwarded-For`` header values, in order.
        trusted: The proxies whose ``X-Forwarded-For`` is believed.

    Returns:
        The peer, unless it is a trusted proxy: then the right-most ``X-Forwarded-For``
        address that is not a trusted proxy (addresses left of it may be forged by the
        client). When every listed address is trusted, the left-most one; when the header is
        missing, or the next hop is not an IP, the last trusted hop.
    """
    hop = _address(peer)
    if hop is None:
        return peer or "?"
    if not any(hop in network for network in trusted):
        return str(hop)
    items = [item for value in forwarded_for for item in value.split(",") if item.strip()]
    for item in reversed(items):
        address = _address(item)
        if address is None:
            break
        hop = address
        if not any(address in network for network in trusted):
            break
    return str(hop)


class _Bounded(OrderedDict):
    """An LRU mapping of at most ``max_keys`` keys (the least recently used are dropped)."""

    def __init__(self, max_keys: int) -> None:
        super().__init__()
        self.max_keys = max(1, int(max_keys))

    def touch(self, key: str, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.max_keys:
            self.popitem(last=False)


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0
    blocked_until: float = 0.0


class LoginThrottle:
    """Console login limits, in memory: per client IP and per account.

    * Per IP: at most ``ip_limit`` attempts in ``window`` seconds (a sliding window).
    * Per account (the typed user name, whether it exists or not, so answers never tell):
      after ``account_failures`` failed logins in a row, further attempts wait
      ``base`` seconds, doubling with each further failure up to ``backoff_max``; a success
      resets it, and so do ``backoff_max`` seconds without a failure after the wait. A wait
      refuses every attempt on the account (even the right password) without checking it,
      from any IP; other accounts are not affected.

    Both maps keep at most ``max_keys`` keys (least recently used dropped first).

    Args:
        ip_limit: Attempts per IP per window.
        account_failures: Failures in a row before the back-off.
        backoff_max: Longest wait, seconds.
        max_keys: Keys per map.
        window: The IP window, seconds.
        base: The first wait, seconds.
        clock: Monotonic clock (tests pass their own).
    """

    def __init__(self, ip_limit: int, account_failures: int, backoff_max: float,
                 max_keys: int, window: float = LOGIN_WINDOW,
                 base: float = ACCOUNT_BACKOFF_BASE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ip_limit = max(1, int(ip_limit))
        self.account_failures = max(1, int(account_failures))
        self.backoff_max = float(backoff_max)
        self.window = float(window)
        self.base = min(float(base), self.backoff_max)
        self._clock = clock
        self._ips: _Bounded = _Bounded(max_keys)
        self._accounts: _Bounded = _Bounded(max_keys)

    @staticmethod
    def account_key(username: Any) -> str:
        """The account key of a typed user name (as ``AgentStore.do_login`` matches it)."""
        return str(username or "").strip().lower()[:64]

    def check(self, ip: str, username: Any) -> float:
        """Count a login attempt from ``ip`` for ``username`` if it may be tried now.

        Returns:
            0.0 when it may (the IP attempt is counted), else the seconds to wait.
        """
        now = self._clock()
        events: Deque[float] = self._ips.get(ip) or deque()
        while events and now - events[0] >= self.window:
            events.popleft()
        if len(events) >= self.ip_limit:
            self._ips.touch(ip, events)
            return max(0.001, self.window - (now - events[0]))
        key = self.account_key(username)
        state = self._accounts.get(key)
        if state is not None and now < state.blocked_until:
            return state.blocked_until - now
        events.append(now)
        self._ips.touch(ip, events)
        return 0.0

    def failed(self, username: Any) -> float:
        """Record a failed login; returns the back-off it starts (0.0: none yet)."""
        now = self._clock()
        key = self.account_key(username)
        state = self._accounts.get(key) or _Failures()
        if state.count and now >= max(state.last, state.blocked_until) + self.backoff_max:
            state = _Failures()  # quiet for long enough: start counting again
        state.count += 1
        state.last = now
        delay = 0.0
        if state.count >= self.account_failures:
            delay = min(self.backoff_max,
                        self.base * 2 ** (state.count - self.account_failures))
            state.blocked_until = now + delay
        self._accounts.touch(key, state)
        return delay

    def succeeded(self, username: Any) -> None:
        """A successful login resets the account's failures."""
        self._accounts.pop(self.account_key(username), None)

    def sizes(self) -> Tuple[int, int]:
        """``(IP keys, account keys)`` held (tests, bounded memory)."""
        return len(self._ips), len(self._accounts)


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


@dataclass(eq=False)
class AgentConnection:
    """One open console WebSocket, written only by its own task.

    :meth:`send` queues a frame and returns at once: a socket that is slow or stuck (the
    client stopped reading) never holds up the sender (the bus, the change feed, another
    agent). Its queue holds at most ``queue_size`` frames; a frame that does not fit, or one
    the socket does not take within ``send_timeout`` seconds, closes the socket (the
    console reconnects and reloads its inbox).
    """

    ws: Any
    agent: AgentView
    token: str
    checked_at: float = field(default_factory=time.monotonic)
    typing_sent: Dict[str, float] = field(default_factory=dict)
    queue_size: int = SEND_QUEUE
    send_timeout: float = SEND_TIMEOUT
    closed: bool = False
    _closing: bool = False
    _queue: Optional["asyncio.Queue[Any]"] = None
    _writer: Optional[asyncio.Task] = None

    async def send(self, frame: Dict[str, Any]) -> bool:
        """Queue ``frame``; False when the socket is closed (or was just closed: full)."""
        return self._put(json.dumps(frame, default=_json_default))

    async def close(self, code: int, reason: str) -> None:
        """Close after the frames already queued (bounded by the send timeout)."""
        self._closing = self._put(("close", code, reason)) or self._closing

    def _put(self, item: Any) -> bool:
        if self.closed:
            return False
        if self._queue is None:
            self._queue = asyncio.Queue(self.queue_size)
            self._writer = asyncio.create_task(self._write(), name="agent-socket-writer")
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            logger.warning("Agent %s's console socket is %d frames behind: closing it",
                           self.agent.username, self._queue.qsize())
            self.abort()
            return False
        return True

    async def _write(self) -> None:
        assert self._queue is not None
        while True:
            item = await self._queue.get()
            try:
                if isinstance(item, tuple):
                    await asyncio.wait_for(self.ws.close(code=item[1], reason=item[2]),
                                           self.send_timeout)
                    self.closed = True
                    return
                await asyncio.wait_for(self.ws.send(item), self.send_timeout)
            except asyncio.TimeoutError:
                logger.warning("Agent %s's console socket took no frame for %.1f s: closing it",
                               self.agent.username, self.send_timeout)
                self.abort()
                return
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the client is gone
                self.closed = True
                return

    def abort(self) -> None:
        """Drop the connection now (no closing handshake: the peer does not read)."""
        self.closed = True
        if self._writer is not None and self._writer is not asyncio.current_task():
            self._writer.cancel()
        transport = getattr(getattr(self.ws, "io_proto", None), "transport", None)
        try:
            if transport is not None:
                transport.abort()
            elif hasattr(self.ws, "fail_connection"):
                self.ws.fail_connection(1011, "too_slow")
        except Exception:  # noqa: BLE001 - already gone
            pass

    async def finish(self) -> None:
        """The socket's handler ends: let a queued close go out (bounded), stop the writer."""
        writer = self._writer
        if writer is not None and not writer.done():
            if self._closing:
                await asyncio.wait([writer], timeout=self.send_timeout)
            if not writer.done():
                writer.cancel()
        self.closed = True


@dataclass
class _TicketState:
    reference: str
    conversation_id: str
    status: str
    assignee_id: Optional[int]
    category: str
    priority: str


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _iso(value: Optional[datetime]) -> Optional[str]:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def _json(body: Any, status: int = 200) -> HTTPResponse:
    return response.json(body, status=status, dumps=lambda o: json.dumps(o, default=_json_default),
                         headers={"Cache-Control": "no-store"})


def ticket_json(ticket: TicketView) -> Dict[str, Any]:
    """A ticket for the API (without the bulky ``details``)."""
    return {
        "id": ticket.id, "reference": ticket.reference,
        "conversation_id": ticket.conversation_id, "customer_id": ticket.customer_id,
        "contact_email": ticket.contact_email, "summary": ticket.summary,
        "category": ticket.category, "priority": ticket.priority, "status": ticket.status,
        "source": ticket.source, "assignee_id": ticket.assignee_id,
        "created_at": _iso(ticket.created_at), "updated_at": _iso(ticket.updated_at),
        "queued_at": _iso(ticket.queued_at), "first_response_at": _iso(ticket.first_response_at),
        "resolved_at": _iso(ticket.resolved_at),
    }


def inbox_json(item: InboxItem) -> Dict[str, Any]:
    """One inbox line for the API."""
    return {
        "ticket": ticket_json(item.ticket), "conversation_id": item.conversation_id,
        "customer_id": item.customer_id, "customer_name": item.customer_name,
        "state": item.state, "assignee": item.assignee.to_json() if item.assignee else None,
        "waiting_since": _iso(item.waiting_since), "last_message": item.last_message,
        "last_message_at": _iso(item.last_message_at), "unread": item.unread,
    }


def _bearer(request: Request) -> Optional[str]:
    header = request.headers.get("authorization") or ""
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return None


def _body(request: Request) -> Dict[str, Any]:
    if len(request.body or b"") > MAX_BODY_BYTES:
        raise ApiError(413, "too_large", "The request body is too large.")
    if not request.body:
        return {}
    try:
        body = json.loads(request.body)
    except (TypeError, ValueError):
        raise ApiError(400, "bad_request", "The body must be a JSON object.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "The body must be a JSON object.")
    return body


def _int_field(body: Dict[str, Any], name: str, *, required: bool = True) -> Optional[int]:
    value = body.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().isdigit():
            return int(value.strip())
        raise ApiError(400, "bad_request", f"{name} must be an integer.")
    return value


def _str_field(body: Dict[str, Any], name: str, *, required: bool = True,
               max_chars: int = 4000) -> Optional[str]:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise ApiError(400, "bad_request", f"{name} must be a non-empty string.")
    if len(value) > max_chars:
        raise ApiError(400, "bad_request", f"{name} must have at most {max_chars} characters.")
    return value


class AgentConsoleInput(InputChannel):
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
        self._tickets: Dict[str, _TicketState] = {}  # conversation_id -> open ticket
        self._feed: Any = None  # bot.live.ChangeFeedConsumer while subscribed
        self._subscribed = False
        self._callbacks: Dict[str, Callable[[Dict[str, Any]], Awaitable[None]]] = {}
        self._trusted_proxies = parse_networks(config.trusted_proxies)
        self._login_throttle = LoginThrottle(
            config.login_rate, config.login_account_failures, config.login_backoff_max,
            config.limiter_max_keys)

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

    def _subscribe(self) -> None:
        if self._subscribed:
            return
        from bot.live import REMOTE, bus

        for topic in CUSTOMER_TOPICS:
            callback = self._topic_callback(topic)
            self._callbacks[topic] = callback
            bus().subscribe(topic, callback, group=self)  # one queue: events keep their order
        # an agent's reply and reads reach this process's agents at once (_reply, _read);
        # those of agents on other processes come over the bus (REDIS_URL)
        for topic in AGENT_TOPICS:
            callback = self._topic_callback(topic)
            self._callbacks[topic] = callback
            bus().subscribe(topic, callback, group=self, scope=REMOTE)
        self._subscribed = True

    def _topic_callback(self, topic: str) -> Callable[[Dict[str, Any]], Awaitable[None]]:
        async def callback(event: Dict[str, Any]) -> None:
            await self._on_customer_event(topic, event)

        return callback

    # -------------------------------------------------------------- blueprint

    def blueprint(self, on_new_message: OnNewMessage) -> Blueprint:
        """The Sanic blueprint: page, REST API, WebSocket and Prometheus routes."""
        bp = Blueprint("agent_console_webhook", __name__)

        @bp.listener("before_server_stop")
        async def _shutdown(_app: Any, _loop: Any) -> None:
            await self.close()

        @bp.route("/", methods=["GET"])
        async def index(_request: Request) -> HTTPResponse:
            return await self._asset("index.html", "text/html; charset=utf-8")

        @bp.route("/static/<name>", methods=["GET"])
        async def asset(_request: Request, name: str) -> HTTPResponse:
            if name not in _ASSETS:
                return ApiError(404, "not_found", "No such file.").response()
            return await self._asset(name, _ASSETS[name])

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

    async def _asset(self, name: str, mime: str) -> HTTPResponse:
        path = STATIC / name
        if not path.is_file():
            return ApiError(404, "not_found", f"{name} is missing.").response()
        headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
                   "Referrer-Policy": "no-referrer"}
        if name == "index.html":
            headers.update({"Content-Security-Policy": _CSP, "X-Frame-Options": "DENY"})
        return await response.file(path, mime_type=mime, headers=headers)

    # ------------------------------------------------------------------- REST

    async def _call(self, request: Request,
                    handler: Callable[[Request, AgentView], Awaitable[Any]],
                    auth: bool = True) -> HTTPResponse:
        try:
            agents, _ = await self.stores()
            agent: Any = None
            if auth:
                agent = await agents.authenticate(_bearer(request))
            body = await handler(request, agent)
            if isinstance(body, HTTPResponse):
                return body
            return _json(body)
        except ApiError as error:
            return error.response()
        except AuthFailed as error:
            return ApiError(401, error.code, str(error)).response()
        except Forbidden as error:
            return ApiError(403, "forbidden", str(error)).response()
        except NotFound as error:
            return ApiError(404, "not_found", str(error)).response()
        except StateError as error:
            return ApiError(409, "conflict", str(error)).response()
        except (ValueError, LookupError) as error:
            return ApiError(400, "bad_request", str(error)).response()
        except Exception:  # noqa: BLE001 - logged; the client gets a clean 500
            logger.exception("Agent console request %s failed", request.path)
            return ApiError(500, "server_error", "Something went wrong on our side.").response()

    def client_ip(self, request: Request) -> str:
        """The request's client address (see :func:`client_ip`)."""
        return client_ip(request.ip or "", request.headers.getall("x-forwarded-for", []),
                         self._trusted_proxies)

    async def _login(self, request: Request, _agent: None) -> Dict[str, Any]:
        body = _body(request)
        username = _str_field(body, "username", max_chars=64)
        password = _str_field(body, "password", max_chars=1024)
        ip = self.client_ip(request)
        retry = self._login_throttle.check(ip, username)
        if retry:
            logger.warning("Console login throttled (ip %s, account %r): %.0f s", ip,
                           LoginThrottle.account_key(username), retry)
            raise ApiError(429, "rate_limited",
                           LOGIN_THROTTLED.format(seconds=max(1, math.ceil(retry))), retry)
        agents, _ = await self.stores()
        try:
            token, agent, expires = await agents.do_login(username or "", password or "",
                                                          ttl_seconds=self.config.session_ttl)
        except AuthFailed:
            backoff = self._login_throttle.failed(username)
            if backoff:
                logger.warning("Console account %r backs off for %.0f s after failed logins "
                               "(last from %s)", LoginThrottle.account_key(username), backoff,
                               ip)
            raise
        self._login_throttle.succeeded(username)
        logger.info("Agent %s logged in to the console.", agent.username)
        return {"token": token, "agent": agent.to_json(), "expires_at": _iso(expires)}

    async def _logout(self, request: Request, agent: AgentView) -> Dict[str, Any]:
        token = _bearer(request) or ""
        agents, _ = await self.stores()
        await agents.do_logout(token)
        for connection in [c for c in self._connections if c.token == token]:
            await connection.send({"type": "logged_out"})
            await connection.close(4001, "logged_out")
        return {"ok": True}

    async def _me(self, _request: Request, agent: AgentView) -> Dict[str, Any]:
        return {"agent": agent.to_json()}

    async def _inbox(self, request: Request, agent: AgentView) -> Dict[str, Any]:
        raw = (request.args.get("state") or "queued,assigned").strip().lower()
        states = list(INBOX_STATES) if raw == "all" else [s.strip() for s in raw.split(",")
                                                            if s.strip()]
        bad = [s for s in states if s not in INBOX_STATES]
        if bad or not states:
            raise ApiError(400, "bad_request",
                           f"state must be 'all' or a comma-separated list of {INBOX_STATES}.")
        category = (request.args.get("category") or "").strip().upper() or None
        if category and (len(category) > 64 or not category.replace("_", "").isalnum()):
            raise ApiError(400, "bad_request", "category must be a triage category name.")
        agents, _ = await self.stores()
        items = await agents.inbox(agent, states=states, category=category)
        return {"tickets": [inbox_json(i) for i in items], "states": states,
                "category": category}

    async def _list_agents(self, _request: Request, agent: AgentView) -> Dict[str, Any]:
        agents, _ = await self.stores()
        online = {c.agent.id for c in self._connections}
        return {"agents": [{**a.to_json(), "online": a.id in online}
                           for a in await agents.list_agents() if a.active or agent.is_admin]}

    async def _canned(self, _request: Request, _agent: AgentView) -> Dict[str, Any]:
        from bot.agent_console.resources import canned_responses

        try:
            responses = await canned_responses(self.config.canned_file)
        except ValueError as error:
            logger.error("Canned responses unusable: %s", error)
            raise ApiError(500, "canned_invalid", "The canned responses file is invalid.") \
                from None
        return {"responses": [r.to_json() for r in responses]}

    async def _metrics(self, request: Request, _agent: AgentView) -> Dict[str, Any]:
        raw = request.args.get("days") or "30"
        try:
            days = int(raw)
        except ValueError:
            raise ApiError(400, "bad_request", "days must be an integer from 1 to 366.") from None
        if not 1 <= days <= 366:
            raise ApiError(400, "bad_request", "days must be an integer from 1 to 366.")
        until = datetime.now(timezone.utc)
        since = (until - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0,
                                                           microsecond=0)
        agents, _ = await self.stores()
        figures = await agents.metrics(since, until + timedelta(seconds=1))
        return {"days": days, "since": _iso(since), "until": _iso(until), **figures}

    async def _detail(self, agent: AgentView, reference: str) -> Dict[str, Any]:
        from bot.agent_console.resources import faq_suggestions

        agents, _ = await self.stores()
        detail = await agents.ticket_detail(agent, reference)
        customer_texts = [m.text for m in reversed(detail.messages) if m.sender == "customer"]
        customer_texts += [line.get("text", "") for line in reversed(detail.bot_transcript)
                           if line.get("author") == "customer"]
        try:
            suggestions = await faq_suggestions(customer_texts or [detail.ticket.summary])
        except Exception:  # noqa: BLE001 - suggestions are optional
            logger.exception("FAQ suggestions failed for %s", reference)
            suggestions = []
        self._remember(detail.ticket)
        return {
            "ticket": ticket_json(detail.ticket),
            "conversation_id": detail.conversation_id,
            "state": detail.state,
            "assignee": detail.assignee.to_json() if detail.assignee else None,
            "customer": detail.customer,
            "context": detail.context,
            "triage": detail.triage,
            "slots": detail.slots,
            "recent_orders": detail.recent_orders,
            "transcript": detail.bot_transcript,
            "messages": [m.to_wire() for m in detail.messages],
            "suggestions": suggestions,
            "can_act": detail.state == "assigned" and (
                agent.is_admin or (detail.assignee is not None
                                   and detail.assignee.id == agent.id)),
        }

    async def _claim(self, _request: Request, agent: AgentView, reference: str) -> Dict[str, Any]:
        agents, _ = await self.stores()
        ticket = await agents.do_claim(reference, agent)
        await self._ticket_changed("ticket.claimed", ticket, agent.display_name)
        return {"ticket": ticket_json(ticket)}

    async def _transfer(self, request: Request, agent: AgentView, reference: str
                        ) -> Dict[str, Any]:
        to_id = _int_field(_body(request), "agent_id")
        agents, _ = await self.stores()
        ticket = await agents.do_transfer(reference, agent, int(to_id or 0))
        target = await agents.get_agent(int(to_id or 0))
        await self._ticket_changed("ticket.transferred", ticket, target.display_name)
        return {"ticket": ticket_json(ticket), "assignee": target.to_json()}

    async def _resolve(self, request: Request, agent: AgentView, reference: str
                       ) -> Dict[str, Any]:
        note = _str_field(_body(request), "note", required=False, max_chars=2000)
        agents, _ = await self.stores()
        ticket = await agents.do_resolve(reference, agent, note=(note or "").strip() or None)
        await self._ticket_changed("ticket.resolved", ticket, agent.display_name)
        return {"ticket": ticket_json(ticket)}

    async def _reply(self, request: Request, agent: AgentView, reference: str) -> Dict[str, Any]:
        from bot.live import bus

        body = _body(request)
        text = _str_field(body, "text")
        client_id = _str_field(body, "client_id", required=False, max_chars=64)
        agents, _ = await self.stores()
        message = await agents.do_agent_message(reference, agent, text or "", client_id=client_id)
        wire = message.to_wire()
        await bus().publish("agent.message",
                            {"conversation_id": message.conversation_id, "message": wire})
        await self._push_conversation(message.conversation_id, {
            "type": "agent.message", "conversation_id": message.conversation_id,
            "ticket": reference.upper(), "message": wire})
        return {"message": wire}

    async def _read(self, request: Request, agent: AgentView, reference: str) -> Dict[str, Any]:
        from bot.live import bus

        up_to = _int_field(_body(request), "up_to")
        agents, chat = await self.stores()
        detail = await agents.ticket_detail(agent, reference)  # authorises
        ids = await chat.do_mark(detail.conversation_id, "read", up_to=up_to,
                                 senders=("customer",))
        if ids:
            await bus().publish("agent.read", {"conversation_id": detail.conversation_id,
                                               "ids": ids})
            await self._push_conversation(detail.conversation_id, {
                "type": "agent.read", "conversation_id": detail.conversation_id,
                "ticket": detail.ticket.reference, "ids": ids})
        return {"ids": ids}

    async def _ticket_changed(self, action: str, ticket: TicketView, agent_name: str) -> None:
        from bot.live import bus

        self._remember(ticket)
        await bus().publish(action, {"conversation_id": ticket.conversation_id,
                                     "ticket": ticket.reference, "agent_name": agent_name})

    # ------------------------------------------------------------- Prometheus

    async def _prometheus(self, request: Request) -> HTTPResponse:
        import hmac

        token = _bearer(request) or request.args.get("token")
        allowed = bool(token and self.config.metrics_token
                       and hmac.compare_digest(token, self.config.metrics_token))
        try:
            agents, _ = await self.stores()
            if not allowed:
                agent = await agents.authenticate(token)
                if not agent.is_admin:
                    raise Forbidden("Only admins and the metrics token may read metrics.")
            body = await self._prometheus_text(agents)
        except AuthFailed as error:
            return ApiError(401, error.code, str(error)).response()
        except Forbidden as error:
            return ApiError(403, "forbidden", str(error)).response()
        return response.text(body, content_type="text/plain; version=0.0.4; charset=utf-8",
                             headers={"Cache-Control": "no-store"})

    async def _prometheus_text(self, agents: AgentStore) -> str:
        """All-time series from a few aggregate queries (no rows are loaded per scrape)."""
        from sqlalchemy import func, select

        from bot import db
        from bot.twilio.models import TwilioDeadLetter

        totals = await agents.metric_totals()
        async with db.read_session(db.session_factory(agents.engine)) as session:
            dead_letters = int((await session.execute(
                select(func.count(TwilioDeadLetter.id)).where(TwilioDeadLetter.status == "dead")
            )).scalar_one())
        lines: List[str] = []

        def metric(name: str, kind: str, help_text: str,
                   samples: List[Tuple[str, Optional[float]]]) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                shown = "NaN" if value is None else repr(float(value))
                lines.append(f"{name}{labels} {shown}")

        def label(value: str) -> str:
            return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

        def ratio(part: float, whole: float) -> Optional[float]:
            return part / whole if whole else None

        metric("support_tickets", "gauge", "Tickets by state.",
               [(f'{{state="{s}"}}', float(n))
                for s, n in sorted(totals["tickets_by_state"].items())])
        metric("support_tickets_by_category", "gauge", "Tickets by triage category and state.",
               [(f'{{category="{label(c)}",state="{s}"}}', float(n))
                for (c, s), n in sorted(((c, s), n) for (s, c), n in totals["tickets"].items())])
        ratings = totals["ratings"]
        count, score_sum = sum(ratings.values()), sum(k * n for k, n in ratings.items())
        metric("support_ratings_total", "counter", "Customer ratings (CSAT) received.",
               [("", float(count))])
        metric("support_rating_score_total", "counter", "Sum of the ratings' scores (1-5).",
               [("", float(score_sum))])
        metric("support_rating_average", "gauge", "Average rating, 1-5.",
               [("", ratio(score_sum, count))])
        metric("support_ratings", "gauge", "Ratings by score.",
               [(f'{{score="{n}"}}', float(ratings.get(n, 0))) for n in range(1, 6)])
        resolved, resolution_sum = totals["resolution"]
        metric("support_resolved_tickets_total", "counter", "Tickets resolved by an agent.",
               [("", float(resolved))])
        metric("support_resolution_seconds_total", "counter",
               "Sum of the seconds from queued to resolved of the resolved tickets.",
               [("", resolution_sum)])
        metric("support_resolution_seconds_average", "gauge",
               "Average seconds from queued to resolved.",
               [("", ratio(resolution_sum, resolved))])
        answered, first_sum = totals["first_response"]
        metric("support_first_responses_total", "counter",
               "Tickets an agent answered (first reply).", [("", float(answered))])
        metric("support_first_response_seconds_total", "counter",
               "Sum of the seconds from queued to the first agent reply.", [("", first_sum)])
        metric("support_first_response_seconds_average", "gauge",
               "Average seconds from queued to the first agent reply.",
               [("", ratio(first_sum, answered))])
        questions, handed = totals["questions"], totals["handed_off"]
        metric("support_questions_total", "counter",
               "Questions: chat sessions with at least one customer message.",
               [("", float(questions))])
        metric("support_questions_self_served_total", "counter",
               "Questions the bot handled without a person.", [("", float(questions - handed))])
        metric("support_questions_handed_off_total", "counter",
               "Questions handed to a person (a handoff in that chat session).",
               [("", float(handed))])
        metric("support_self_service_rate", "gauge",
               "Questions the bot handled without a person (0-1).",
               [("", ratio(questions - handed, questions))])
        metric("support_handoff_rate", "gauge", "Questions handed to a person (0-1).",
               [("", ratio(handed, questions))])
        metric("support_agents_online", "gauge", "Agents with an open console.",
               [("", float(len({c.agent.id for c in self._connections})))])
        metric("support_twilio_dead_letters", "gauge",
               "Twilio deliveries that failed every retry and wait for an operator "
               "(python -m bot.twilio.deadletters).",
               [("", float(dead_letters))])
        return "\n".join(lines) + "\n"

    # -------------------------------------------------------------- WebSocket

    async def _serve_socket(self, request: Request, ws: Any) -> None:
        try:
            raw = await ws.recv(timeout=HELLO_TIMEOUT)
        except Exception:  # noqa: BLE001 - gone before hello
            return
        hello = decode_frame(raw)
        if not isinstance(hello, dict) or hello.get("type") != "hello":
            await _send(ws, {"type": "error", "code": "hello_required",
                             "message": "Send hello with your session token first."})
            await _close(ws, 4001, "hello_required")
            return
        token = hello.get("token") if isinstance(hello.get("token"), str) else None
        try:
            agents, _ = await self.stores()
            agent = await agents.authenticate(token)
        except AuthFailed as error:
            await _send(ws, {"type": "error", "code": error.code, "message": str(error)})
            await _close(ws, 4002 if error.code == "expired" else 4001, error.code)
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

    # ----------------------------------------------------- ticket visibility

    def _remember(self, ticket: TicketView) -> None:
        self._tickets[ticket.conversation_id] = _TicketState(
            ticket.reference, ticket.conversation_id, ticket.status, ticket.assignee_id,
            ticket.category, ticket.priority)

    async def _ticket_state(self, *, reference: Optional[str] = None,
                            conversation_id: Optional[str] = None) -> Optional[_TicketState]:
        from sqlalchemy import select

        from bot import db
        from bot.support.models import Ticket

        agents, _ = await self.stores()
        query = select(Ticket)
        if reference is not None:
            query = query.where(Ticket.reference == reference.strip().upper())
        else:
            cached = self._tickets.get(conversation_id or "")
            if cached is not None:
                return cached
            query = query.where(Ticket.conversation_id == conversation_id).order_by(
                Ticket.id.desc()).limit(1)
        async with db.read_session(db.session_factory(agents.engine)) as session:
            row = (await session.execute(query)).scalars().first()
            if row is None:
                return None
            view = TicketView.from_row(row)
        self._remember(view)
        return self._tickets[view.conversation_id]

    @staticmethod
    def _may_see(agent: AgentView, ticket: _TicketState, also: Tuple[int, ...] = ()) -> bool:
        return (agent.is_admin or ticket.status == "queued" or ticket.assignee_id == agent.id
                or agent.id in also)

    async def _push_conversation(self, conversation_id: str, frame: Dict[str, Any]) -> None:
        if not self._connections:
            return
        ticket = await self._ticket_state(conversation_id=conversation_id)
        for connection in list(self._connections):
            if connection.agent.is_admin or (
                    ticket is not None and self._may_see(connection.agent, ticket)):
                await connection.send(frame)

    async def _on_customer_event(self, topic: str, event: Dict[str, Any]) -> None:
        """Pass a widget-side bus event to the agents who may see its conversation."""
        conversation_id = event.get("conversation_id")
        if not isinstance(conversation_id, str) or not self._connections:
            return
        ticket = await self._ticket_state(conversation_id=conversation_id)
        if ticket is None:
            return  # a conversation with the bot only: no agent is concerned
        frame = {**event, "type": topic, "ticket": ticket.reference}
        await self._push_conversation(conversation_id, frame)

    # ------------------------------------------------------------ change feed

    def _ensure_tail(self) -> None:
        """Follow the change feed (from "now"; the console loads its inbox itself)."""
        if self._feed is None:
            from bot.live import change_feed

            self._feed = change_feed(self.config.support_db_url)
            self._feed.subscribe(self._on_changes, self.config.poll_interval)

    async def _on_changes(self, changes: Sequence[Any]) -> int:
        """Ticket changes from the feed: ``ticket`` frames to the agents who may see them."""
        from sqlalchemy import select

        from bot import db
        from bot.support.models import Ticket

        events = [c for c in changes if c.topic in AUDIT_ACTIONS and c.ticket]
        if not events or not self._connections:
            return 0
        agents, _ = await self.stores()
        tickets: Dict[str, TicketView] = {}
        async with db.read_session(db.session_factory(agents.engine)) as session:
            for row in (await session.execute(select(Ticket).where(
                    Ticket.reference.in_({c.ticket for c in events})))).scalars().all():
                tickets[row.reference] = TicketView.from_row(row)
        sent = 0
        for change in events:
            ticket = tickets.get(change.ticket)
            if ticket is None:
                continue
            self._remember(ticket)
            state = self._tickets[ticket.conversation_id]
            previous = change.data.get("from")
            also = (int(previous),) if isinstance(previous, int) else ()
            frame = {"type": "ticket", "action": change.topic, "audit_id": change.audit_id,
                     "feed_id": change.id, "actor": change.actor, "ticket": ticket_json(ticket)}
            for connection in list(self._connections):
                if self._may_see(connection.agent, state, also):
                    await connection.send(frame)  # queued: never waits for a socket
                    sent += 1
        return sent


async def _send(ws: Any, frame: Dict[str, Any]) -> None:
    try:
        await asyncio.wait_for(ws.send(json.dumps(frame, default=_json_default)), SEND_TIMEOUT)
    except Exception:  # noqa: BLE001 - the client is gone (or stuck)
        pass


async def _close(ws: Any, code: int, reason: str) -> None:
    try:
        await asyncio.wait_for(ws.close(code=code, reason=reason), SEND_TIMEOUT)
    except Exception:  # noqa: BLE001 - the client is gone (or stuck)
        pass
