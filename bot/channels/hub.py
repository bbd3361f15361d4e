"""Live connections of the widget channel, per conversation, in this process.

The :class:`Hub` knows every open WebSocket of every customer, pushes frames to
all devices of a conversation, serialises the bot turns of a conversation (one
at a time, in arrival order) and enforces the per-user limits: connections,
messages per window, typing events per interval. :class:`TokenBucket` limits the
frames of one connection, :class:`PreAuthGate` the sockets per client address that
have not said ``hello`` yet.

Everything here is in memory and per process, and bounded: the limiters keep at
most ``LIMITER_MAX_KEYS`` keys (idle keys go first, then the least recently used).
What must survive a restart (the messages and their status) is in the chat store.
A deployment with several Rasa server processes would route a customer's
connections to one process (sticky sessions on the user id) or replace
:meth:`Hub.push` with a pub/sub fan-out.
"""
from __future__ import annotations

import asyncio
import collections
import itertools
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Set

__all__ = [
    "Connection",
    "Hub",
    "PreAuthGate",
    "RateLimiter",
    "TokenBucket",
    "TooManyConnections",
]

logger = logging.getLogger(__name__)

_ids = itertools.count(1)

DEFAULT_MAX_KEYS = 10000
"""Most keys a limiter keeps (``LIMITER_MAX_KEYS``)."""


class TooManyConnections(Exception):
    """The user already has the maximum number of open connections."""


class RateLimiter:
    """A sliding-window limit of events per key, with a bounded number of keys.

    Args:
        limit: Events allowed per window.
        window: Window length in seconds.
        clock: Monotonic clock (tests pass their own).
        max_keys: Most keys kept. A new key beyond it first drops the idle keys (no
            event in the window), then the least recently used one: memory stays
            bounded whatever the number of distinct keys (users, addresses).
    """

    def __init__(
        self,
        limit: int,
        window: float,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._max_keys = max(1, int(max_keys))
        self._events: "collections.OrderedDict[str, Deque[float]]" = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._events)

    def check(self, key: str) -> float:
        """Count one event for ``key`` if allowed.

        Returns:
            0.0 when the event is allowed (and counted), else the seconds until
            the next one would be.
        """
        now = self._clock()
        events = self._events.get(key)
        if events is None:
            if len(self._events) >= self._max_keys:
                self._make_room(now)
            events = self._events[key] = collections.deque()
        else:
            self._events.move_to_end(key)  # most recently used last
        while events and now - events[0] >= self._window:
            events.popleft()
        if len(events) >= self._limit:
            return max(0.001, self._window - (now - events[0]))
        events.append(now)
        return 0.0

    def forget_idle(self) -> None:
        """Drop keys with no event in the current window (bounded memory)."""
        self._forget_idle(self._clock())

    def _forget_idle(self, now: float) -> None:
        for key in [k for k, v in self._events.items() if not v or now - v[-1] >= self._window]:
            del self._events[key]

    def _make_room(self, now: float) -> None:
        self._forget_idle(now)
        while len(self._events) >= self._max_keys:
            self._events.popitem(last=False)  # the least recently used key


class TokenBucket:
    """A token bucket: ``burst`` tokens, refilled at ``rate`` tokens per second.

    One per connection, over every frame type (``WIDGET_FRAME_RATE``,
    ``WIDGET_FRAME_BURST``).

    Args:
        rate: Tokens added per second.
        burst: Capacity (and the initial content).
        clock: Monotonic clock (tests pass their own).
    """

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = float(rate)
        self._burst = float(max(1, burst))
        self._clock = clock
        self._tokens = self._burst
        self._updated = clock()

    def take(self) -> bool:
        """Take one token; False when the bucket is empty (the frame is over the limit)."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class PreAuthGate:
    """Counts the sockets per client address that have not authenticated yet.

    Args:
        per_key: Sockets allowed at once per address (``WIDGET_MAX_PREAUTH_PER_IP``).
        max_keys: Most addresses tracked at once (``LIMITER_MAX_KEYS``); when that
            many addresses each have a socket waiting, a socket from a new address
            is refused too. An address is forgotten when its last socket leaves.
    """

    def __init__(self, per_key: int, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self._per_key = max(1, int(per_key))
        self._max_keys = max(1, int(max_keys))
        self._pending: Dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def pending(self, key: str) -> int:
        """How many sockets from ``key`` are waiting to authenticate."""
        return self._pending.get(key, 0)

    def enter(self, key: str) -> bool:
        """Admit one more unauthenticated socket from ``key``; False when over the cap."""
        count = self._pending.get(key, 0)
        if count >= self._per_key or (count == 0 and len(self._pending) >= self._max_keys):
            return False
        self._pending[key] = count + 1
        return True

    def leave(self, key: str) -> None:
        """That socket authenticated or went away (call once per successful :meth:`enter`)."""
        count = self._pending.get(key, 0) - 1
        if count > 0:
            self._pending[key] = count
        else:
            self._pending.pop(key, None)


@dataclass(eq=False)
class Connection:
    """One open WebSocket of a verified customer."""

    ws: Any
    user_id: str
    conversation_id: str
    expires_at: float
    customer: Any = None
    frames: Optional[TokenBucket] = None
    """Frames this connection may still send (None: unlimited, e.g. in unit tests)."""
    id: int = field(default_factory=lambda: next(_ids))
    last_typing: float = 0.0
    closed: bool = False
    _send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, frame: Dict[str, Any]) -> bool:
        """Send one JSON frame; False (and the connection marked closed) on failure."""
        if self.closed:
            return False
        data = json.dumps(frame, ensure_ascii=False, separators=(",", ":"))
        try:
            async with self._send_lock:
                await self.ws.send(data)
            return True
        except Exception:  # noqa: BLE001 - a dead socket is normal; the store keeps it
            self.closed = True
            return False

    async def close(self, code: int, reason: str) -> None:
        """Close the socket with a close code (idempotent)."""
        self.closed = True
        try:
            await self.ws.close(code=code, reason=reason[:120])
        except Exception:  # noqa: BLE001 - already gone
            logger.debug("closing connection %s failed", self.id, exc_info=True)


class Hub:
    """Open connections by conversation, turn locks, and per-user limits.

    Args:
        max_connections: Open connections allowed per user.
        rate_messages / rate_window: Customer messages allowed per user per window.
        preauth_per_ip: Sockets per client address allowed to wait for ``hello``.
        max_keys: Most keys each limiter keeps (``LIMITER_MAX_KEYS``).
    """

    def __init__(
        self,
        max_connections: int,
        rate_messages: int,
        rate_window: float,
        preauth_per_ip: int = 10,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        self._max_connections = max_connections
        self._connections: Dict[str, Set[Connection]] = {}
        self._turn_locks: Dict[str, asyncio.Lock] = {}
        self._turn_waiters: Dict[str, int] = collections.Counter()
        self.message_limiter = RateLimiter(rate_messages, rate_window, max_keys=max_keys)
        self.preauth = PreAuthGate(preauth_per_ip, max_keys=max_keys)
        self.tasks: Set[asyncio.Task] = set()

    # --------------------------------------------------------- connections

    def register(self, connection: Connection) -> None:
        """Add a connection.

        Raises:
            TooManyConnections: If the user is at the limit.
        """
        open_ = self._connections.setdefault(connection.conversation_id, set())
        live = {c for c in open_ if not c.closed}
        if len(live) >= self._max_connections:
            self._connections[connection.conversation_id] = live
            raise TooManyConnections(
                f"At most {self._max_connections} open chat connections per customer."
            )
        live.add(connection)
        self._connections[connection.conversation_id] = live

    def unregister(self, connection: Connection) -> None:
        """Remove a connection (idempotent)."""
        connection.closed = True
        open_ = self._connections.get(connection.conversation_id)
        if open_ is not None:
            open_.discard(connection)
            if not open_:
                del self._connections[connection.conversation_id]
        self.message_limiter.forget_idle()

    def connections(self, conversation_id: str) -> List[Connection]:
        """The open connections of a conversation."""
        return [c for c in self._connections.get(conversation_id, ()) if not c.closed]

    def all_connections(self) -> Iterator[Connection]:
        """Every open connection (for shutdown)."""
        for open_ in list(self._connections.values()):
            yield from list(open_)

    async def push(
        self,
        conversation_id: str,
        frame: Dict[str, Any],
        exclude: Optional[Connection] = None,
    ) -> int:
        """Send a frame to every open connection of a conversation.

        Returns:
            How many connections received it.
        """
        targets = [c for c in self.connections(conversation_id) if c is not exclude]
        if not targets:
            return 0
        results = await asyncio.gather(*(c.send(frame) for c in targets))
        return sum(1 for ok in results if ok)

    # ---------------------------------------------------------------- turns

    def turn_lock(self, conversation_id: str) -> "_TurnLock":
        """An async context manager: one bot turn per conversation at a time, FIFO."""
        return _TurnLock(self, conversation_id)

    def spawn(self, coroutine: Any) -> asyncio.Task:
        """Run a background task and keep a reference until it is done."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task


class _TurnLock:
    def __init__(self, hub: Hub, conversation_id: str) -> None:
        self._hub = hub
        self._key = conversation_id

    async def __aenter__(self) -> None:
        hub = self._hub
        lock = hub._turn_locks.get(self._key)
        if lock is None:
            lock = hub._turn_locks[self._key] = asyncio.Lock()
        hub._turn_waiters[self._key] += 1
        try:
            await lock.acquire()
        except BaseException:
            self._leave()
            raise

    def _leave(self) -> None:
        hub = self._hub
        hub._turn_waiters[self._key] -= 1
        if hub._turn_waiters[self._key] <= 0:  # nobody waiting: free the memory
            del hub._turn_waiters[self._key]
            del hub._turn_locks[self._key]

    async def __aexit__(self, *exc: Any) -> None:
        self._hub._turn_locks[self._key].release()
        self._leave()
