"""Background work of the Twilio services (bridge, voice): kept, logged, awaitable."""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Set

__all__ = ["BackgroundWork"]

logger = logging.getLogger(__name__)


class BackgroundWork:
    """Mixin: ``spawn`` background coroutines, keep them until done, log failures.

    The class using it sets ``self._tasks = set()`` in its ``__init__``.
    """

    _tasks: Set[asyncio.Task]

    def spawn(self, coro: Awaitable[Any], name: str = "twilio-work") -> asyncio.Task:
        """Run ``coro`` in the background (kept until done; failures logged)."""

        async def guarded() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - background work must not die silently
                logger.exception("Twilio background work %s failed", name)

        task = asyncio.create_task(guarded(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def idle(self, timeout: float = 30.0) -> None:
        """Wait until no background work is running (tests)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._tasks and asyncio.get_running_loop().time() < deadline:
            await asyncio.wait(set(self._tasks), timeout=0.5)
