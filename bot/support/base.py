"""What every store of the support database has: an engine, sessions, listeners, schema."""
from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Dict, List, Type, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from bot import db

__all__ = ["Listener", "StoreBase"]

logger = logging.getLogger(__name__)

Listener = Callable[[str, Dict[str, Any]], Awaitable[None]]
"""``async def listener(event: str, payload: dict) -> None``, run after commit."""

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

    def remove_listener(self, callback: Listener) -> None:
        """Unregister a listener added with :meth:`add_listener` (if present)."""
        if callback in self._listeners:
            self._listeners.remove(callback)

    async def _notify(self, event: str, payload: Dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                await listener(event, payload)
            except Exception:  # noqa: BLE001 - listeners must not break a state change
                logger.exception("Store listener %r failed for event %s", listener, event)
