"""Live connections of the widget channel, per conversation, in this process.

The :class:`Hub` knows every open WebSocket of every customer, pushes frames to
all devices of a conversation, serialises the bot turns of a conversation (one
at a time, in arrival order) and enforces the per-user limits: connections,
messages per window, typing events per interval.

Everything here is in memory and per process; what must survive a restart (the
messages and their status) is in the chat store. A deployment with several Rasa
server processes would route a customer's connections to one process (sticky
sessions on the user id) or replace :meth:`Hub.push` with a pub/sub fan-out.
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

__all__ = ["Connection", "Hub", "RateLimiter", "TooManyConnections"]

logger = logging.getLogger(__name__)

_ids = itertools.count(1)


class TooManyConnections(Exception):
    """The user already has the maximum number of open connections."""


class RateLimiter:
    """A sliding-window limit of events per key.

    Args:
        limit: Events allowed per window.
        window: Window length in seconds.
        clock: Monotonic clock (tests pass their own).
    """

    def __init__(
        self, limit: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._events: Dict[str, Deque[float]] = {}

    def check(self, key: str) -> float:
        """Count one event for ``key`` if allowed.

        Returns:
            0.0 when the event is allowed (and counted), else the seconds until
            the next one would be.
        """
        now = self._clock()
        events = self._events.setdefault(key, collections.deque())
        while events and now - events[0] >= self._window:
            events.popleft()
        if len(events) >= self._limit:
            return max(0.001, self._window - (now - events[0]))
        events.append(now)
        return 0.0

    def forget_idle(self) -> None:
        """Drop keys with no event in the current window (bounded memory)."""
        now = self._clock()
        for key in [k for k, v in self._events.items() if not v or now - v[-1] >= self._window]:
            del self._events[key]


@dataclass(eq=False)
class Connection:
    """One open WebSocket of a verified customer."""

    ws: Any
    user_id: str
    conversation_id: str
    expires_at: float
    customer: Any = None
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
    """

    def __init__(self, max_connections: int, rate_messages: int, rate_window: float) -> None:
        self._max_connections = max_connections
        self._connections: Dict[str, Set[Connection]] = {}
        self._turn_locks: Dict[str, asyncio.Lock] = {}
        self._turn_waiters: Dict[str, int] = collections.Counter()
        self.message_limiter = RateLimiter(rate_messages, rate_window)
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
