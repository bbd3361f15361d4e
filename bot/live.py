"""Live updates: the in-process bus, and the change feed other processes write to.

**The bus** (:func:`bus`) connects the widget channel and the agent console, both Rasa input
channels in the Rasa server process: the widget channel publishes what customers do and
delivers what agents do, the agent console the other way round. Events are plain dicts.
:meth:`LiveBus.publish` never waits for a subscriber: every subscriber *group* (by default
the object a bound-method callback belongs to, so one object's callbacks keep their order)
has its own bounded queue and task. A subscriber that falls ``BUS_QUEUE_SIZE`` events behind
loses the newest ones (logged), never the publisher's time; a failing subscriber is logged.
State that must survive a restart is in the support database, not here.

**Across processes** (issue 14): with ``REDIS_URL`` set, :func:`bus` relays every event to
the other Rasa processes over Redis pub/sub (:mod:`bot.live_redis`), so a customer whose
socket is on one process and an agent on another see each other live, behind any load
balancer, without stickiness. A subscriber says what it does with an event:

* ``EVERYWHERE`` (default): it *delivers* (writes frames to the sockets this process holds);
  it gets the events of every process.
* ``ORIGIN``: it has a *side effect* (stores a message, resumes the bot, forwards to Twilio,
  notifies an offline customer); it gets only the events published in its own process, so
  the effect happens once however many processes run.
* ``REMOTE``: it delivers what the publishing process already delivered itself (the agent
  console pushes an agent's reply to its own agents at once; other processes' consoles get
  it from the bus).

Pub/sub is at most once: an event lost while Redis is away is a live frame that did not show;
what it announced is stored, and a client gets it on its next ``resume``. Presence (whether
a customer has an open socket on any process) is kept next to it (:meth:`LiveBus.online`).

Topics (``conversation_id`` is always present):

=========================== ============================================= ===============
topic                       other fields                                  published by
=========================== ============================================= ===============
``customer.message``        ``message`` (wire dict, docs/widget-protocol) widget channel
``customer.typing``         ``state`` (start/stop)                        widget channel
``customer.read``           ``ids`` (agent messages the customer read)    widget channel
``conversation.ended``      ``session`` (the new session number)          widget channel
``rating.created``          ``score``, ``comment``, ``ticket_id``          widget channel
``agent.message``           ``message`` (wire dict)                       agent console
``agent.typing``            ``state``, ``name``                           agent console
``agent.read``              ``ids`` (customer messages the agent read)    agent console
``ticket.claimed``          ``ticket`` (reference), ``agent_name``         agent console
``ticket.transferred``      ``ticket``, ``agent_name``                     agent console
``ticket.resolved``         ``ticket``, ``agent_name``                     agent console
``call.state``              ``frame`` (a ``call`` frame), ``message``      Twilio Voice
=========================== ============================================= ===============

**The change feed** (:func:`change_feed`) is how a process learns of changes made by any
process (handoffs are written by the action server): the ``change_feed`` table, a
transactional outbox written in the same transaction as the change
(:func:`bot.support.models.stage_change`). Each process reads it ONCE
(:class:`ChangeFeedConsumer`, shared by the console and the Twilio bridge) from "now" at
start-up, with a cursor that cannot skip a row (:class:`ChangeFeedReader`):

* PostgreSQL: ids are taken from a sequence before commit, so a higher id can commit
  first. Every row carries its transaction id (``txid``); a read only takes rows with
  ``txid < pg_snapshot_xmin(pg_current_snapshot())`` (every transaction older than the
  oldest running one has ended, and no new row can get such a txid) in ``(txid, id)``
  order after the cursor. What is below that horizon never changes, so the cursor never
  passes a row that is still to come. A change waits for older running write transactions
  (milliseconds; keep transactions short).
* SQLite: one writer at a time assigns ids under the write lock, so id order is commit
  order; the cursor is the last id read (never "the newest id").

Work that must happen once across processes and restarts (bridging a handoff to Twilio)
takes a durable claim (:class:`FeedClaims`, table ``change_feed_claims``).
"""
from __future__ import annotations

import asyncio
import logging
import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import (Any, Awaitable, Callable, Dict, FrozenSet, Hashable, List, Optional,
                    Protocol, Sequence, Set, Tuple)

__all__ = ["BUS_QUEUE_SIZE", "EVERYWHERE", "ORIGIN", "REMOTE", "Change", "ChangeFeedConsumer",
           "ChangeFeedReader", "FeedClaims", "FeedPosition", "LiveBus", "Relay", "bus",
           "change_feed", "reset_bus"]

logger = logging.getLogger(__name__)

Subscriber = Callable[[Dict[str, Any]], Awaitable[None]]

BUS_QUEUE_SIZE = 1000
"""Events a bus subscriber group may fall behind before it loses the newest ones."""

EVERYWHERE = "everywhere"
"""Subscriber scope: events published by any process (deliveries to this process's sockets)."""
ORIGIN = "origin"
"""Subscriber scope: events published by this process only (side effects, done once)."""
REMOTE = "remote"
"""Subscriber scope: events of the other processes only (the publisher delivered its own)."""


class Relay(Protocol):
    """Carries events to the other processes (:class:`bot.live_redis.RedisRelay`)."""

    def start(self, bus: "LiveBus") -> None:
        """Begin relaying (in the running loop); remote events go to ``bus.deliver``."""

    def send(self, topic: str, event: Dict[str, Any]) -> None:
        """Queue an event for the other processes (never waits)."""

    def set_online(self, conversation_id: str, online: bool) -> None:
        """This process has (or no longer has) a socket of the conversation."""

    async def online(self, conversation_id: str) -> bool:
        """Whether any process has a socket of the conversation."""

    def close(self) -> None:
        """Stop relaying."""


class _Group:
    """One subscriber group's queue and the task that feeds it (per event loop)."""

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.queue: "asyncio.Queue[Tuple[str, Subscriber, Dict[str, Any]]]" = asyncio.Queue(size)
        self.loop = asyncio.get_running_loop()
        self.dropped = 0
        self.task = self.loop.create_task(self._run(), name=f"live-bus-{name}")

    def alive(self) -> bool:
        return not self.task.done() and self.loop is asyncio.get_running_loop()

    def put(self, topic: str, callback: Subscriber, event: Dict[str, Any]) -> bool:
        try:
            self.queue.put_nowait((topic, callback, event))
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                logger.warning("Live subscriber %s is %d events behind: dropped %d event(s) "
                               "(latest %s)", self.name, self.queue.qsize(), self.dropped, topic)
            return False
        return True

    async def _run(self) -> None:
        while True:
            topic, callback, event = await self.queue.get()
            try:
                await callback(event)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - one broken subscriber must not stop others
                logger.exception("Live subscriber %r failed on %s", callback, topic)
            finally:
                self.queue.task_done()


class LiveBus:
    """Topic → subscribers; :meth:`publish` only queues (one queue and task per group).

    Args:
        queue_size: Events one subscriber group may fall behind (then the newest are dropped).
    """

    def __init__(self, queue_size: int = BUS_QUEUE_SIZE, relay: Optional[Relay] = None) -> None:
        self._subscribers: Dict[str, List[Tuple[Subscriber, Hashable, str]]] = {}
        self._groups: Dict[Hashable, _Group] = {}
        self._queue_size = queue_size
        self._relay = relay
        self._relay_started = False
        self._online: Set[str] = set()

    @property
    def relayed(self) -> bool:
        """Whether events reach the other processes (``REDIS_URL``)."""
        return self._relay is not None

    def start(self) -> None:
        """Start relaying to and from the other processes now (in the server's loop)."""
        self._start_relay()

    def _start_relay(self) -> None:
        if self._relay is None or self._relay_started:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # started by the first subscribe/publish inside the server's loop
        self._relay.start(self)
        self._relay_started = True

    def subscribe(self, topic: str, callback: Subscriber, group: Any = None,
                  scope: str = EVERYWHERE) -> None:
        """Call ``await callback(event)`` for every event published on ``topic``.

        Callbacks of one ``group`` run one at a time in publishing order (default: the
        object of a bound method, else the callback itself). ``scope`` is ``EVERYWHERE``
        (events of every process), ``ORIGIN`` (this process's own events only) or
        ``REMOTE`` (the other processes' events only).
        """
        if scope not in (EVERYWHERE, ORIGIN, REMOTE):
            raise ValueError(f"scope must be one of {EVERYWHERE!r}, {ORIGIN!r}, {REMOTE!r}, "
                             f"not {scope!r}")
        owner = group if group is not None else getattr(callback, "__self__", callback)
        self._subscribers.setdefault(topic, []).append((callback, id(owner), scope))
        self._start_relay()

    def unsubscribe(self, topic: str, callback: Subscriber) -> None:
        """Stop calling ``callback`` (idempotent)."""
        entries = self._subscribers.get(topic, [])
        self._subscribers[topic] = [e for e in entries if e[0] != callback]

    def _group(self, key: Hashable, callback: Subscriber) -> _Group:
        group = self._groups.get(key)
        if group is None or not group.alive():
            group = self._groups[key] = _Group(getattr(callback, "__qualname__", "subscriber"),
                                               self._queue_size)
        return group

    async def publish(self, topic: str, event: Dict[str, Any]) -> int:
        """Queue ``event`` for the topic's subscribers here, and relay it to the others.

        Never waits for a subscriber (a full queue drops the event for that one only) nor
        for Redis (the relay has its own queue).

        Returns:
            How many of this process's subscribers took it.
        """
        self._start_relay()
        if self._relay is not None:
            self._relay.send(topic, event)
        return self._dispatch(topic, event, remote=False)

    def deliver(self, topic: str, event: Dict[str, Any]) -> int:
        """An event another process published: to ``EVERYWHERE`` and ``REMOTE`` subscribers."""
        return self._dispatch(topic, event, remote=True)

    def _dispatch(self, topic: str, event: Dict[str, Any], remote: bool) -> int:
        queued = 0
        skip = ORIGIN if remote else REMOTE
        for callback, key, scope in list(self._subscribers.get(topic, [])):
            if scope == skip:
                continue
            if self._group(key, callback).put(topic, callback, event):
                queued += 1
        return queued

    # ------------------------------------------------------------- presence

    def set_online(self, conversation_id: str, online: bool) -> None:
        """This process has (``online``) or no longer has a socket of the conversation."""
        if online:
            self._online.add(conversation_id)
        else:
            self._online.discard(conversation_id)
        if self._relay is not None:
            self._start_relay()
            self._relay.set_online(conversation_id, online)

    async def online(self, conversation_id: str) -> bool:
        """Whether the customer has an open socket on this or (with Redis) any process.

        When Redis cannot be asked, a customer not connected here counts as offline (a
        notification too many beats a reply nobody hears of).
        """
        if conversation_id in self._online:
            return True
        if self._relay is None:
            return False
        return await self._relay.online(conversation_id)

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait until every queued event was handled (tests, shutdown)."""
        loop = asyncio.get_running_loop()
        groups = [g for g in self._groups.values() if g.loop is loop and not g.task.done()]
        if groups:
            await asyncio.wait_for(asyncio.gather(*(g.queue.join() for g in groups)), timeout)

    def close(self) -> None:
        """Stop the subscriber tasks (queued events are dropped) and the relay."""
        for group in self._groups.values():
            if not group.loop.is_closed():
                group.task.cancel()
        self._groups.clear()
        if self._relay is not None and self._relay_started:
            self._relay.close()
            self._relay_started = False


_BUS: Optional[LiveBus] = None


def bus() -> LiveBus:
    """This process's bus (created on first use): over Redis when ``REDIS_URL`` is set."""
    global _BUS
    if _BUS is None:
        from bot.settings import get_settings

        settings = get_settings()
        relay: Optional[Relay] = None
        if settings.redis_url:
            from bot.live_redis import RedisRelay

            relay = RedisRelay(settings.redis_url, settings.live_prefix)
        _BUS = LiveBus(relay=relay)
    return _BUS


def reset_bus() -> None:
    """Forget the process bus (tests)."""
    global _BUS
    if _BUS is not None:
        _BUS.close()
    _BUS = None


# ================================================================== change feed

FEED_BATCH = 500
"""Rows per read; a full batch is followed by another read at once."""
FEED_KEEP = timedelta(days=7)
"""Feed rows older than this are deleted (by any consumer, hourly)."""
PRUNE_EVERY = 3600.0


@dataclass(frozen=True)
class Change:
    """One committed change (a ``change_feed`` row)."""

    id: int
    txid: Optional[int]
    topic: str
    object_type: str
    object_id: str
    ticket: Optional[str]
    conversation_id: Optional[str]
    payload: Dict[str, Any]
    created_at: datetime

    @property
    def audit_id(self) -> Optional[int]:
        return self.payload.get("audit_id")

    @property
    def actor(self) -> Optional[str]:
        return self.payload.get("actor")

    @property
    def data(self) -> Dict[str, Any]:
        return dict(self.payload.get("data") or {})

    @classmethod
    def from_row(cls, row: Any) -> "Change":
        return cls(row.id, row.txid, row.topic, row.object_type, row.object_id, row.ticket,
                   row.conversation_id, dict(row.payload or {}), row.created_at)


@dataclass(frozen=True)
class FeedPosition:
    """A reader's cursor: everything at or before ``(txid, id)`` was read, and ``skip`` (rows
    already committed when the reader started at "now" on PostgreSQL) is never returned."""

    txid: int
    id: int
    skip: FrozenSet[int] = frozenset()


class ChangeFeedReader:
    """Reads ``change_feed`` in commit-safe order (see the module docs).

    Args:
        engine: An engine of the support database (not owned).
    """

    def __init__(self, engine: Any) -> None:
        from bot import db

        self._engine = engine
        self._sessions = db.session_factory(engine)
        self._pg = engine.dialect.name == "postgresql"

    async def start(self) -> FeedPosition:
        """The position "now": only changes committed from now on will be read."""
        from sqlalchemy import text

        from bot import db

        async with db.read_session(self._sessions) as session:
            if not self._pg:
                newest = (await session.execute(text("SELECT max(id) FROM change_feed"))).scalar()
                return FeedPosition(0, int(newest or 0))
            # one statement, one snapshot: the horizon and the rows above it already visible
            rows = (await session.execute(text(
                "SELECT h.xmin, f.id FROM (SELECT pg_snapshot_xmin(pg_current_snapshot())"
                "::text::bigint AS xmin) h LEFT JOIN change_feed f ON f.txid >= h.xmin"))).all()
        horizon = int(rows[0][0])
        return FeedPosition(horizon - 1, 2 ** 31 - 1, frozenset(r[1] for r in rows if r[1] is not None))

    async def read(self, position: FeedPosition, limit: int = FEED_BATCH
                   ) -> Tuple[List[Change], FeedPosition]:
        """The changes after ``position`` that can no longer be preceded by another, oldest
        first, and the new position (unchanged when there are none)."""
        from sqlalchemy import select, text, tuple_

        from bot import db
        from bot.support.models import ChangeFeed

        query = select(ChangeFeed)
        if self._pg:
            horizon = text("(SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint)")
            query = query.where(
                ChangeFeed.txid < horizon,
                tuple_(ChangeFeed.txid, ChangeFeed.id) > tuple_(position.txid, position.id),
            ).order_by(ChangeFeed.txid, ChangeFeed.id)
        else:
            query = query.where(ChangeFeed.id > position.id).order_by(ChangeFeed.id)
        async with db.read_session(self._sessions) as session:
            rows = (await session.execute(query.limit(limit))).scalars().all()
            changes = [Change.from_row(row) for row in rows]
        if not changes:
            return [], position
        last = changes[-1]
        if position.skip:
            changes = [c for c in changes if c.id not in position.skip]
        return changes, FeedPosition(int(last.txid or 0), last.id, position.skip)

    async def prune(self, keep: timedelta = FEED_KEEP) -> int:
        """Delete feed rows (and their claims) older than ``keep``; returns how many."""
        from sqlalchemy import delete, select

        from bot import db
        from bot.support.models import ChangeFeed, ChangeFeedClaim

        before = db.utcnow() - keep
        async with db.write_session(self._sessions) as session:
            old = select(ChangeFeed.id).where(ChangeFeed.created_at < before)
            await session.execute(delete(ChangeFeedClaim).where(ChangeFeedClaim.change_id.in_(old)))
            result = await session.execute(delete(ChangeFeed).where(ChangeFeed.created_at < before))
            return int(result.rowcount or 0)

    async def recent(self, topic: str, since: datetime) -> List[Change]:
        """The committed changes of ``topic`` since ``since`` (catch-up), oldest first."""
        from sqlalchemy import select

        from bot import db
        from bot.support.models import ChangeFeed

        async with db.read_session(self._sessions) as session:
            rows = (await session.execute(select(ChangeFeed).where(
                ChangeFeed.topic == topic, ChangeFeed.created_at >= since)
                .order_by(ChangeFeed.id))).scalars().all()
            return [Change.from_row(row) for row in rows]


Handler = Callable[[List[Change]], Awaitable[None]]


class ChangeFeedConsumer:
    """The one reader of the change feed in this process; hands batches to handlers.

    Starts from "now" when the first handler subscribes, polls every ``interval`` seconds
    (the smallest any handler asked for) and stops when the last one leaves. Handlers are
    awaited together per batch; one that fails is logged and does not stop the others.

    Args:
        url: The support database URL (the consumer owns its engine).
    """

    def __init__(self, url: str, interval: float = 1.0) -> None:
        self.url = url
        self.interval = interval
        self._handlers: Dict[Handler, float] = {}
        self._task: Optional[asyncio.Task] = None
        self._started: Optional[asyncio.Event] = None
        self._engine: Any = None
        self.reader: Optional[ChangeFeedReader] = None
        self.position: Optional[FeedPosition] = None

    def subscribe(self, handler: Handler, interval: Optional[float] = None) -> None:
        """Call ``await handler(changes)`` for every batch from now on (idempotent)."""
        self._handlers[handler] = float(interval or self.interval)
        self.interval = min(self._handlers.values())
        if self._task is None or self._task.done():
            self._started = asyncio.Event()
            self._task = asyncio.create_task(self._run(), name="change-feed")

    async def unsubscribe(self, handler: Handler) -> None:
        """Stop calling ``handler``; the last one out stops the consumer."""
        self._handlers.pop(handler, None)
        if not self._handlers:
            await self.stop()

    async def wait_started(self, timeout: float = 10.0) -> None:
        """Wait until the start position ("now") is taken."""
        if self._started is not None:
            await asyncio.wait_for(self._started.wait(), timeout)

    async def stop(self) -> None:
        """Stop polling and close the engine."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=5)
        if self._engine is not None:
            await self._engine.dispose()
        self._engine = self.reader = self.position = None

    async def _open(self) -> ChangeFeedReader:
        if self.reader is None:
            from bot import db

            self._engine = db.make_engine(self.url)
            self.reader = ChangeFeedReader(self._engine)
        return self.reader

    async def poll_once(self) -> int:
        """Read what committed since the last read and hand it out; returns how many."""
        reader = await self._open()
        if self.position is None:
            self.position = await reader.start()
            if self._started is not None:
                self._started.set()
            return 0
        total = 0
        while True:
            changes, self.position = await reader.read(self.position)
            if changes:
                total += len(changes)
                await self._dispatch(changes)
            if len(changes) < FEED_BATCH:
                return total

    async def _dispatch(self, changes: List[Change]) -> None:
        handlers = list(self._handlers)
        results = await asyncio.gather(*(h(changes) for h in handlers), return_exceptions=True)
        for handler, result in zip(handlers, results):
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                logger.error("Change feed handler %r failed", handler, exc_info=result)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        pruned_at = loop.time()
        while True:
            try:
                await self.poll_once()
                if loop.time() - pruned_at > PRUNE_EVERY and self.reader is not None:
                    pruned_at = loop.time()
                    await self.reader.prune()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep reading (the cursor did not move)
                logger.exception("Change feed read failed")
            await asyncio.sleep(self.interval)


_FEEDS: Dict[Tuple[str, int], ChangeFeedConsumer] = {}


def change_feed(url: str) -> ChangeFeedConsumer:
    """This process's consumer of the change feed of ``url`` (one per event loop)."""
    from bot import db

    key = (db.async_url(url), id(asyncio.get_running_loop()))
    consumer = _FEEDS.get(key)
    if consumer is None:
        for stale in [k for k, c in _FEEDS.items() if c._task is None or c._task.done()]:
            if stale[1] != key[1]:
                _FEEDS.pop(stale, None)
        consumer = _FEEDS[key] = ChangeFeedConsumer(url)
    return consumer


# ------------------------------------------------------------------ durable claims

PROCESS_ID = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


class FeedClaims:
    """Durable "this change is mine" records of one consumer (``change_feed_claims``).

    :meth:`claim` succeeds for one caller only (across processes): when the row is new, or
    when an unfinished claim was not refreshed for ``stale_after`` seconds (its process
    died). :meth:`finish` makes it final; :meth:`release` gives it back after a failure.

    Args:
        engine: An engine of the support database (not owned).
        consumer: The consumer's name (``"twilio.handoff"``).
        stale_after: Seconds after which an unfinished claim may be taken over.
    """

    def __init__(self, engine: Any, consumer: str, stale_after: float = 60.0,
                 owner: Optional[str] = None) -> None:
        from bot import db

        self._sessions = db.session_factory(engine)
        self._pg = engine.dialect.name == "postgresql"
        self.consumer = consumer
        self.stale_after = stale_after
        self.owner = owner or PROCESS_ID

    async def claim(self, change_id: int) -> bool:
        """Take ``change_id`` for this owner; False when done or held by a live claim."""
        from sqlalchemy import update

        from bot import db
        from bot.support.models import ChangeFeedClaim

        if self._pg:
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        now = db.utcnow()
        async with db.write_session(self._sessions) as session:
            inserted = await session.execute(insert(ChangeFeedClaim).values(
                consumer=self.consumer, change_id=change_id, owner=self.owner, attempts=1,
                claimed_at=now).on_conflict_do_nothing())
            if inserted.rowcount == 1:
                return True
            taken = await session.execute(update(ChangeFeedClaim).where(
                ChangeFeedClaim.consumer == self.consumer,
                ChangeFeedClaim.change_id == change_id, ChangeFeedClaim.done_at.is_(None),
                ChangeFeedClaim.claimed_at < now - timedelta(seconds=self.stale_after),
            ).values(owner=self.owner, claimed_at=now,
                     attempts=ChangeFeedClaim.attempts + 1))
            return taken.rowcount == 1

    async def _mine(self, change_id: int, **values: Any) -> bool:
        from sqlalchemy import update

        from bot import db
        from bot.support.models import ChangeFeedClaim

        async with db.write_session(self._sessions) as session:
            result = await session.execute(update(ChangeFeedClaim).where(
                ChangeFeedClaim.consumer == self.consumer,
                ChangeFeedClaim.change_id == change_id, ChangeFeedClaim.owner == self.owner,
                ChangeFeedClaim.done_at.is_(None)).values(**values))
            return result.rowcount == 1

    async def refresh(self, change_id: int) -> bool:
        """Keep an unfinished claim fresh (while working on it)."""
        from bot import db

        return await self._mine(change_id, claimed_at=db.utcnow())

    async def finish(self, change_id: int) -> bool:
        """The work is done: nobody takes the change again."""
        from bot import db

        return await self._mine(change_id, done_at=db.utcnow())

    async def release(self, change_id: int) -> None:
        """Give an unfinished claim back (the next sweep may take it at once)."""
        from sqlalchemy import delete

        from bot import db
        from bot.support.models import ChangeFeedClaim

        async with db.write_session(self._sessions) as session:
            await session.execute(delete(ChangeFeedClaim).where(
                ChangeFeedClaim.consumer == self.consumer,
                ChangeFeedClaim.change_id == change_id, ChangeFeedClaim.owner == self.owner,
                ChangeFeedClaim.done_at.is_(None)))

    async def open_ids(self, change_ids: Sequence[int]) -> List[int]:
        """Those of ``change_ids`` nobody finished or holds with a fresh claim."""
        from sqlalchemy import or_, select

        from bot import db
        from bot.support.models import ChangeFeedClaim

        if not change_ids:
            return []
        stale = db.utcnow() - timedelta(seconds=self.stale_after)
        async with db.read_session(self._sessions) as session:
            held = set((await session.execute(select(ChangeFeedClaim.change_id).where(
                ChangeFeedClaim.consumer == self.consumer,
                ChangeFeedClaim.change_id.in_(list(change_ids)),
                or_(ChangeFeedClaim.done_at.is_not(None),
                    ChangeFeedClaim.claimed_at >= stale)))).scalars().all())
        return [i for i in change_ids if i not in held]

