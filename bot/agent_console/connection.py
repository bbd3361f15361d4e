"""One agent's console WebSocket: a bounded send queue written by its own task.

:class:`AgentConnection` never lets a slow or stuck socket hold up the sender (the bus, the
change feed, another agent): a frame that does not fit its queue (``AGENT_SEND_QUEUE``,
:data:`SEND_QUEUE` by default), or one the socket does not take within the send timeout,
closes it. :func:`send_raw` and :func:`close_raw` are for a socket before ``hello``.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from bot.agent_console.wire import json_default
from bot.support.agents import AgentView

__all__ = ["AgentConnection", "SEND_QUEUE", "SEND_TIMEOUT", "close_raw", "send_raw"]

logger = logging.getLogger("bot.agent_console.channel")  # the console logs under one name

SEND_QUEUE = 256
"""Frames an agent socket may fall behind before it is closed."""
SEND_TIMEOUT = 5.0
"""Seconds a socket may take to accept one frame before it is closed."""


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
        return self._put(json.dumps(frame, default=json_default))

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


async def send_raw(ws: Any, frame: Dict[str, Any]) -> None:
    """Send one frame on a socket that has no connection yet (bounded by the send timeout)."""
    try:
        await asyncio.wait_for(ws.send(json.dumps(frame, default=json_default)), SEND_TIMEOUT)
    except Exception:  # noqa: BLE001 - the client is gone (or stuck)
        pass


async def close_raw(ws: Any, code: int, reason: str) -> None:
    """Close a socket that has no connection yet (bounded by the send timeout)."""
    try:
        await asyncio.wait_for(ws.close(code=code, reason=reason), SEND_TIMEOUT)
    except Exception:  # noqa: BLE001 - the client is gone (or stuck)
        pass
