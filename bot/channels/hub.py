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


DEFAULT_SEND_QUEUE = 256
"""Frames a connection's send queue holds (``WIDGET_SEND_QUEUE``)."""
DEFAULT_SEND_TIMEOUT = 10.0
"""Seconds one frame may take to be written to a socket (``WIDGET_SEND_TIMEOUT``)."""
SLOW_CONSUMER_CLOSE = 4009
"""Close code of a socket that does not keep up: its send queue overflowed, or writing
one frame took longer than the send timeout (``docs/widget-protocol.md``)."""

_CLOSE = object()  # the writer's "close after what is queued" marker


@dataclass(eq=False)
class Connection:
    """One open WebSocket of a verified customer.

    Frames go through a bounded queue and one writer task per socket
    (:meth:`send` never waits on the network): pushing a frame to a customer's sockets
    never waits on a slow one. A socket whose queue overflows, or whose write of one
    frame takes longer than ``send_timeout``, is closed with
    :data:`SLOW_CONSUMER_CLOSE` (4009); the frames it missed are in the chat store and
    come back with ``hello.after`` when the client reconnects.
    """

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
    queue_size: int = DEFAULT_SEND_QUEUE
    send_timeout: float = DEFAULT_SEND_TIMEOUT
    close_reason: Optional[str] = None
    """Why the server closed the socket (``slow_consumer``, a close reason), if it did."""
    _queue: Optional["asyncio.Queue[Any]"] = field(default=None, repr=False)
    _writer: Optional["asyncio.Task[None]"] = field(default=None, repr=False)
    _aborted: bool = field(default=False, repr=False)

    def _ensure_writer(self) -> "asyncio.Queue[Any]":
        if self._queue is None:
            self._queue = asyncio.Queue(maxsize=max(1, int(self.queue_size)))
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())
        return self._queue

    @property
    def queued(self) -> int:
        """Frames waiting in the send queue."""
        return 0 if self._queue is None else self._queue.qsize()

    async def send(self, frame: Dict[str, Any], wait: bool = False) -> bool:
        """Queue one JSON frame for the socket's writer.

        Args:
            frame: The frame.
            wait: Wait (up to the send timeout) for room in the queue instead of closing
                the socket when it is full: for the connection's own answers (welcome, the
                replay), where waiting delays only this socket.

        Returns:
            False when the connection is closed (or was closed because the queue is full).
        """
        if self.closed:
            return False
        data = json.dumps(frame, ensure_ascii=False, separators=(",", ":"))
        queue = self._ensure_writer()
        try:
            if wait:
                await asyncio.wait_for(queue.put(data), self.send_timeout)
            else:
                queue.put_nowait(data)
            return True
        except (asyncio.QueueFull, asyncio.TimeoutError):
            logger.warning(
                "Widget connection %s (%s) does not keep up: %d frames queued; closed (%d).",
                self.id, self.conversation_id, queue.qsize(), SLOW_CONSUMER_CLOSE,
            )
            self.abort(SLOW_CONSUMER_CLOSE, "slow_consumer")
            return False

    async def _write_loop(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            item = await queue.get()
            if item is _CLOSE:
                return
            if self._aborted:
                return  # dropped: what is left is in the store
            # A watchdog instead of wait_for (which would run each send in a task of its
            # own): a socket that is written at once is written in this very step.
            watchdog = asyncio.get_running_loop().call_later(
                self.send_timeout, self._send_timed_out
            )
            try:
                await self.ws.send(item)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a dead socket is normal; the store keeps it
                self.closed = True
                return
            finally:
                watchdog.cancel()

    def _send_timed_out(self) -> None:
        logger.warning(
            "Widget connection %s (%s): a frame took over %g s to send; closed (%d).",
            self.id, self.conversation_id, self.send_timeout, SLOW_CONSUMER_CLOSE,
        )
        self.abort(SLOW_CONSUMER_CLOSE, "slow_consumer")

    async def close(self, code: int, reason: str) -> None:
        """Send what is queued (within the send timeout), then close the socket with a
        close code (idempotent)."""
        if self.closed:
            self.stop()
            return
        self.closed = True
        self.close_reason = self.close_reason or reason
        writer = self._writer
        if writer is not None and not writer.done() and self._queue is not None:
            try:
                self._queue.put_nowait(_CLOSE)
                await asyncio.wait_for(asyncio.shield(writer), self.send_timeout)
            except (asyncio.QueueFull, asyncio.TimeoutError):
                self.abort(code, reason)
                return
            except Exception:  # noqa: BLE001 - the writer ended on a dead socket
                pass
        try:
            await asyncio.wait_for(self.ws.close(code=code, reason=reason[:120]),
                                   self.send_timeout)
        except Exception:  # noqa: BLE001 - already gone, or stuck: drop it
            logger.debug("closing connection %s failed", self.id, exc_info=True)
            _fail(self.ws, code, reason)

    def abort(self, code: int, reason: str) -> None:
        """Close the socket now, without waiting on it (its queue is dropped)."""
        if self.close_reason is None:
            self.close_reason = reason
        self._aborted = True
        self.stop()
        _fail(self.ws, code, reason)

    def stop(self) -> None:
        """Stop the writer task (the connection is gone)."""
        self.closed = True
        writer, self._writer = self._writer, None
        if writer is not None and not writer.done():
            writer.cancel()


def _fail(ws: Any, code: int, reason: str) -> None:
    """Close a socket at once: Sanic's ``fail_connection`` (synchronous: writes the close
    frame into the transport's buffer, then drops the connection), else a background
    ``close``."""
    fail = getattr(ws, "fail_connection", None)
    if callable(fail):
        try:
            fail(code, reason[:120])
        except Exception:  # noqa: BLE001 - already gone
            logger.debug("fail_connection failed", exc_info=True)
        transport = getattr(getattr(ws, "io_proto", None), "transport", None)
        if transport is not None:
            # a client that never reads never takes the close frame: drop it after a moment
            try:
                asyncio.get_running_loop().call_later(2.0, transport.abort)
            except RuntimeError:
                transport.abort()
        return
    close = getattr(ws, "close", None)
    if callable(close):
        try:
            task = asyncio.get_running_loop().create_task(close(code=code, reason=reason[:120]))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
        except Exception:  # noqa: BLE001 - no loop / already gone
            pass


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
        send_queue: int = DEFAULT_SEND_QUEUE,
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
    ) -> None:
        self._max_connections = max_connections
        self.send_queue = max(1, int(send_queue))
        self.send_timeout = float(send_timeout)
        self._connections: Dict[str, Set[Connection]] = {}
        self._turn_locks: Dict[str, asyncio.Lock] = {}
        self._turn_waiters: Dict[str, int] = collections.Counter()
        self.message_limiter = RateLimiter(rate_messages, rate_window, max_keys=max_keys)
        self.preauth = PreAuthGate(preauth_per_ip, max_keys=max_keys)
        self.tasks: Set[asyncio.Task] = set()
        #: ``on_presence(conversation_id, online)`` when a conversation gets its first open
        #: connection here or loses its last (the live bus's presence, bot/live.py).
        self.on_presence: Optional[Callable[[str, bool], None]] = None

    # --------------------------------------------------------- connections

    def register(self, connection: Connection) -> None:
        """Add a connection (it gets the hub's send queue size and timeout).

        Raises:
            TooManyConnections: If the user is at the limit.
        """
        connection.queue_size = self.send_queue
        connection.send_timeout = self.send_timeout
        open_ = self._connections.setdefault(connection.conversation_id, set())
        live = {c for c in open_ if not c.closed}
        if len(live) >= self._max_connections:
            self._connections[connection.conversation_id] = live
            raise TooManyConnections(
                f"At most {self._max_connections} open chat connections per customer."
            )
        first = not live
        live.add(connection)
        self._connections[connection.conversation_id] = live
        if first and self.on_presence is not None:
            self.on_presence(connection.conversation_id, True)

    def unregister(self, connection: Connection) -> None:
        """Remove a connection (idempotent); its writer stops."""
        connection.stop()
        open_ = self._connections.get(connection.conversation_id)
        if open_ is not None:
            open_.discard(connection)
            if not open_:
                del self._connections[connection.conversation_id]
                if self.on_presence is not None:
                    self.on_presence(connection.conversation_id, False)
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
        settle: bool = True,
    ) -> int:
        """Queue a frame for every open connection of a conversation.

        Never waits on a socket: each connection has its own bounded queue and writer
        (:class:`Connection`); one that does not keep up is closed (4009).

        Args:
            conversation_id: The conversation.
            frame: The frame.
            exclude: A connection not to send it to.
            settle: Give the writers one loop iteration before returning (a fast socket is
                written now, and a dead one is not counted). False for callers that push
                many frames in a row and need no count (the live bus's frames from other
                processes): one iteration per frame of a busy loop made that subscriber fall
                1,000 events behind at 200 conversations, and it lost replies (issue 14).

        Returns:
            How many connections took it: queued, and (``settle``) not found dead by their
            writers in the one loop iteration they get before this returns (a socket that is
            merely slow counts; its writer keeps going in the background).
        """
        targets = [c for c in self.connections(conversation_id) if c is not exclude]
        if not targets:
            return 0
        queued = [c for c in targets if await c.send(frame)]
        if settle:
            await asyncio.sleep(0)  # let the writers start (a fast socket is written now)
        return sum(1 for c in queued if not c.closed)

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
