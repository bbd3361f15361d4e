"""What every store of the support database has: an engine, sessions, listeners, schema."""
from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Dict, List, Optional, Type, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from bot import db

__all__ = ["Listener", "StoreBase"]

logger = logging.getLogger(__name__)

Listener = Callable[[str, Dict[str, Any]], Awaitable[None]]
"""``async def listener(event: str, payload: dict) -> None``, run after commit."""
Publisher = Callable[[str, Dict[str, Any]], Awaitable[None]]
"""``async def publish(topic: str, event: dict) -> None``: where live events go."""

S = TypeVar("S", bound="StoreBase")


class StoreBase:
    """Base of the stores (:class:`~bot.support.ops.SupportStore`, chat, agents).

    Args:
        engine: The engine to use. A store made with :meth:`from_url` owns its engine
            (see :meth:`dispose`); stores may share one engine.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sessions = db.session_factory(engine)
        self._listeners: List[Listener] = []
        self._publish: Optional[Publisher] = None

    @classmethod
    def from_url(cls: Type[S], url: str) -> S:
        """Create a store for a database URL (sync- or async-style)."""
        return cls(db.make_engine(url))

    @property
    def engine(self) -> AsyncEngine:
        """The underlying engine (other stores may share it)."""
        return self._engine

    async def create_schema(self) -> None:
        """Bring the support database to the newest schema (Alembic; idempotent)."""
        from bot import migrate

        await migrate.upgrade(self._engine)

    async def dispose(self) -> None:
        """Close all pooled connections of the engine."""
        await self._engine.dispose()

    def add_listener(self, callback: Listener) -> None:
        """Register ``async def callback(event, payload)``, run after each commit.

        Listeners run in registration order; an exception in one is logged and
        swallowed, never raised to the ``do_*`` caller.
        """
        self._listeners.append(callback)

    def set_publisher(self, publish: Optional["Publisher"]) -> None:
        """Publish this store's live events with ``await publish(topic, event)`` instead of
        on the process's bus (:func:`bot.live.bus`); None: the bus again."""
        self._publish = publish

    def remove_listener(self, callback: Listener) -> None:
        """Unregister a listener added with :meth:`add_listener` (if present)."""
        if callback in self._listeners:
            self._listeners.remove(callback)

    async def _notify(self, event: str, payload: Dict[str, Any]) -> None:
        """After a commit: run the listeners, then publish the change's live event (the
        store is the one publisher of ticket, message, receipt and rating events:
        :func:`bot.support.lifecycle.publish_after_commit`)."""
        for listener in list(self._listeners):
            try:
                await listener(event, payload)
            except Exception:  # noqa: BLE001 - listeners must not break a state change
                logger.exception("Store listener %r failed for event %s", listener, event)
        from bot.support.lifecycle import publish_after_commit

        await publish_after_commit(event, payload, self._publish)
