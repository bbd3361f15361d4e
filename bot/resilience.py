"""Rasa's PostgreSQL tracker store and Redis lock store survive short service outages.

``python -m bot.serve`` calls :func:`install` before Rasa reads the endpoints file. The
endpoints file keeps Rasa's own types (``tracker_store: type: SQL``, ``lock_store: type:
redis``); Rasa then builds these subclasses instead of its own classes:

* (:func:`bot.tracker_cache.install`, called after :func:`install`, replaces it with
  :class:`bot.tracker_cache.CachedSQLTrackerStore`, a :class:`PingingSQLTrackerStore` that
  keeps each conversation's current session: issue 14.)
* :class:`PingingSQLTrackerStore`: the tracker store's engine pings a pooled connection
  before using it (SQLAlchemy ``pool_pre_ping``), as the support database engines do
  (:func:`bot.db.make_engine`). Without it the first read after PostgreSQL restarted used a
  dead connection; Rasa's ``FailSafeTrackerStore`` then answered the message with an empty
  tracker (the customer's half-done form forgotten) and kept the turn's events in memory
  only (never stored in PostgreSQL).
* :class:`WaitingRedisLockStore`: while Redis does not answer, taking a conversation's lock
  waits (asynchronously, up to :data:`REDIS_OUTAGE_WAIT` seconds, retrying with back-off)
  instead of failing at once. A widget turn is tried 3 times within ~6 s
  (``WIDGET_TURN_ATTEMPTS``/``WIDGET_TURN_BACKOFF``), so a Redis restart of a few seconds
  made acknowledged messages fail with "Sorry, I couldn't answer that just now"; now they
  are answered once Redis is back.

docs/deployment.md ("Service outages") describes what happens when each service is down.
"""
from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncGenerator, Optional

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from rasa.core import lock_store as rasa_lock_store
from rasa.core import tracker_store as rasa_tracker_store
from rasa.core.lock import TicketLock
from rasa.core.lock_store import LOCK_LIFETIME, LockError, RedisLockStore
from rasa.core.tracker_store import SQLTrackerStore

__all__ = ["PingingSQLTrackerStore", "REDIS_OUTAGE_WAIT", "WaitingRedisLockStore", "install"]

logger = logging.getLogger(__name__)

REDIS_OUTAGE_WAIT = 20.0
"""Seconds one attempt to take a conversation lock waits for Redis to answer again."""
_BACKOFF_START, _BACKOFF_MAX = 0.25, 2.0


class PingingSQLTrackerStore(SQLTrackerStore):
    """Rasa's SQL tracker store whose pooled connections are checked before use."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.engine.dialect.name == "sqlite":
            return  # a file (or memory) on this host: no server to lose connections to
        # Rasa builds its engine without pool_pre_ping (and, with login_db, without any
        # pool settings): rebuild it the same way, plus the ping.
        url = self.engine.url
        self.engine.dispose()
        self.engine = sa.create_engine(
            url, pool_pre_ping=True, **rasa_tracker_store.create_engine_kwargs(url))
        self.sessionmaker = sessionmaker(bind=self.engine)


def _redis_unreachable(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) says Redis could not be reached."""
    import redis

    seen: Optional[BaseException] = error
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class WaitingRedisLockStore(RedisLockStore):
    """Rasa's Redis lock store; taking a lock waits for Redis during a short outage."""

    outage_wait = REDIS_OUTAGE_WAIT

    async def _issue_ticket_waiting(self, conversation_id: str, lock_lifetime: float) -> int:
        deadline = time.monotonic() + self.outage_wait
        delay, warned = _BACKOFF_START, False
        while True:
            try:
                ticket = self.issue_ticket(conversation_id, lock_lifetime)
            except LockError as error:
                if not _redis_unreachable(error) or time.monotonic() + delay > deadline:
                    raise
                if not warned:
                    logger.warning(
                        "Redis (lock store) is not answering; the turn of %s waits up to "
                        "%g s for it: %s", conversation_id, self.outage_wait, error)
                    warned = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX)
                continue
            if warned:
                logger.info("Redis (lock store) answers again; the turn of %s goes on.",
                            conversation_id)
            return ticket

    @asynccontextmanager
    async def lock(
        self,
        conversation_id: str,
        lock_lifetime: float = LOCK_LIFETIME,
        wait_time_in_seconds: float = 1,
    ) -> AsyncGenerator[TicketLock, None]:
        """:meth:`rasa.core.lock_store.LockStore.lock`, the ticket taken when Redis answers."""
        ticket = await self._issue_ticket_waiting(conversation_id, lock_lifetime)
        try:
            yield await self._acquire_lock(conversation_id, ticket, wait_time_in_seconds)
        finally:
            self.cleanup(conversation_id, ticket)


def install() -> None:
    """Make Rasa build the classes above for ``type: SQL`` and ``type: redis`` (idempotent).

    Call it before the endpoints' stores are created (``bot/serve.py`` does).
    """
    rasa_tracker_store.SQLTrackerStore = PingingSQLTrackerStore  # type: ignore[misc]
    rasa_lock_store.RedisLockStore = WaitingRedisLockStore  # type: ignore[misc]
