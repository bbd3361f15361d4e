"""The live bus across processes: Redis pub/sub and presence (``REDIS_URL``).

:class:`RedisRelay` is the :class:`bot.live.Relay` that :func:`bot.live.bus` attaches when
``REDIS_URL`` is set. Every Rasa process publishes its bus events on one channel,
``<REDIS_KEY_PREFIX>:live``, and hands the other processes' events to its bus
(:meth:`bot.live.LiveBus.deliver`); its own come back from Redis and are skipped (each event
carries the publishing process's id).

* **Never waits on Redis**: :meth:`send` only queues (``queue_size`` events; beyond that the
  newest are dropped and logged). One task publishes them in order; one listens. Both
  reconnect with back-off (0.2 s doubling to 5 s) when Redis goes away; events published in
  the meantime that did not fit the queue are live frames lost, never stored data.
* **Presence**: a sorted set per conversation, ``<prefix>:live:online:<conversation id>``,
  member = process id, score = until when (``presence_ttl`` seconds, refreshed every third
  of it while the socket is open, removed when the last one closes). A process that dies
  stops refreshing, so its entries expire.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any, Dict, List, Optional, Set

logger = logging.getLogger(__name__)

__all__ = ["RedisRelay"]

RELAY_QUEUE = 10000
"""Events waiting for Redis before the newest are dropped."""
PRESENCE_TTL = 60.0
"""Seconds a process's "connected" mark lasts without a refresh."""
_BACKOFF_START, _BACKOFF_MAX = 0.2, 5.0


class RedisRelay:
    """Relays bus events between processes over Redis pub/sub, and tracks presence.

    Args:
        url: ``REDIS_URL``.
        prefix: ``REDIS_KEY_PREFIX``; processes relay to each other when it is the same.
        queue_size: Events waiting to be published before the newest are dropped.
        presence_ttl: How long a process's presence mark lasts without a refresh.
    """

    def __init__(self, url: str, prefix: str, queue_size: int = RELAY_QUEUE,
                 presence_ttl: float = PRESENCE_TTL) -> None:
        self.url = url
        self.origin = uuid.uuid4().hex
        self.channel = f"{prefix}:live"
        self._presence_prefix = f"{prefix}:live:online:"
        self._queue_size = queue_size
        self._ttl = float(presence_ttl)
        self._queue: Optional["asyncio.Queue[bytes]"] = None
        self._client: Any = None
        self._bus: Any = None
        self._online: Set[str] = set()
        self._tasks: List["asyncio.Task[None]"] = []
        self._dropped = 0
        #: Set while the listener is subscribed (tests wait for it).
        self.subscribed: Optional[asyncio.Event] = None

    # ------------------------------------------------------------ lifecycle

    def start(self, bus: Any) -> None:
        """Start the publisher, listener and presence tasks in the running loop."""
        import redis.asyncio as aioredis

        self._bus = bus
        self._client = aioredis.from_url(self.url, socket_connect_timeout=5, socket_timeout=10,
                                         health_check_interval=30)
        self._queue = asyncio.Queue(self._queue_size)
        self.subscribed = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._publish_loop(), name="live-redis-publish"),
                       loop.create_task(self._listen_loop(), name="live-redis-listen"),
                       loop.create_task(self._presence_loop(), name="live-redis-presence")]

    def close(self) -> None:
        """Stop the tasks (queued events are dropped) and the connection pool."""
        for task in self._tasks:
            if not task.get_loop().is_closed():
                task.cancel()
        self._tasks = []
        client, self._client = self._client, None
        if client is not None:
            try:
                asyncio.get_running_loop().create_task(_close_client(client))
            except RuntimeError:
                pass

    # --------------------------------------------------------------- events

    def send(self, topic: str, event: Dict[str, Any]) -> None:
        """Queue ``event`` for the other processes (never waits)."""
        if self._queue is None:
            return
        payload = json.dumps({"o": self.origin, "t": topic, "e": event},
                             separators=(",", ":"), default=str).encode()
        try:
            self._queue.put_nowait(payload)
        except asyncio.QueueFull:
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 100 == 0:
                logger.warning("Live relay: Redis is %d events behind; dropped %d (latest %s)",
                               self._queue.qsize(), self._dropped, topic)

    async def _publish_loop(self) -> None:
        assert self._queue is not None
        backoff = _BACKOFF_START
        while True:
            payload = await self._queue.get()
            while True:
                try:
                    await self._client.publish(self.channel, payload)
                    backoff = _BACKOFF_START
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # noqa: BLE001 - Redis away: retry, keep order
                    logger.warning("Live relay: cannot publish to Redis (%s); retrying in "
                                   "%.1f s", error, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(_BACKOFF_MAX, backoff * 2)

    async def _listen_loop(self) -> None:
        backoff = _BACKOFF_START
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                if backoff > _BACKOFF_START:
                    logger.info("Live relay: listening to Redis again")
                backoff = _BACKOFF_START
                assert self.subscribed is not None
                self.subscribed.set()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._handle(message.get("data"))
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - Redis away: reconnect
                if self.subscribed is not None:
                    self.subscribed.clear()
                logger.warning("Live relay: lost Redis (%s); reconnecting in %.1f s",
                               error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(_BACKOFF_MAX, backoff * 2)
            finally:
                try:
                    await asyncio.shield(pubsub.close())
                except Exception:  # noqa: BLE001 - the connection is gone anyway
                    pass

    def _handle(self, data: Any) -> None:
        try:
            envelope = json.loads(data)
            origin, topic, event = envelope["o"], envelope["t"], envelope["e"]
        except (TypeError, ValueError, KeyError):
            logger.warning("Live relay: ignored a malformed message on %s", self.channel)
            return
        if origin == self.origin or not isinstance(topic, str) or not isinstance(event, dict):
            return
        self._bus.deliver(topic, event)

    # ------------------------------------------------------------- presence

    def _key(self, conversation_id: str) -> str:
        return self._presence_prefix + conversation_id

    def set_online(self, conversation_id: str, online: bool) -> None:
        """Mark (or unmark) this process as holding a socket of the conversation."""
        if online:
            self._online.add(conversation_id)
        else:
            self._online.discard(conversation_id)
        if self._client is not None:
            asyncio.get_running_loop().create_task(self._write_presence(conversation_id, online))

    async def _write_presence(self, conversation_id: str, online: bool) -> None:
        key = self._key(conversation_id)
        try:
            if online:
                await self._mark(key)
            else:
                await self._client.zrem(key, self.origin)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - refreshed by the presence loop
            logger.warning("Live relay: cannot write presence of %s (%s)", conversation_id,
                           error)

    async def _mark(self, key: str) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {self.origin: time.time() + self._ttl})
            pipe.zremrangebyscore(key, "-inf", time.time())
            pipe.expire(key, int(self._ttl * 2) + 1)
            await pipe.execute()

    async def _presence_loop(self) -> None:
        while True:
            await asyncio.sleep(self._ttl / 3)
            for conversation_id in list(self._online):
                try:
                    await self._mark(self._key(conversation_id))
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # noqa: BLE001 - try again next round
                    logger.warning("Live relay: cannot refresh presence (%s)", error)
                    break

    async def online(self, conversation_id: str) -> bool:
        """Whether any process holds a socket of the conversation (False if Redis fails)."""
        if conversation_id in self._online:
            return True
        if self._client is None:
            return False
        try:
            return int(await self._client.zcount(self._key(conversation_id), time.time(),
                                                 "+inf")) > 0
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - unknown counts as offline
            logger.warning("Live relay: cannot read presence of %s (%s)", conversation_id, error)
            return False


async def _close_client(client: Any) -> None:
    try:
        await client.close()
        await client.connection_pool.disconnect()
    except Exception:  # noqa: BLE001 - closing a dead connection
        pass
