"""Rasa's RabbitMQ event broker: one publisher in order, no deep copy of every event.

Rasa 3.6's ``PikaEventBroker.publish`` starts a task per event, and every task queues on
the channel's ``asyncio.Lock``; Python 3.10's ``Lock.acquire`` scans all waiters, so with
eight events per turn and 50 conversations the waiting cost 4.4 % of the Rasa process's GIL
time (issue 14's profile), and events of one turn could reach RabbitMQ out of order. Its
``_publish`` deep-copies each event (``remove_parse_data``) only for a debug log line that is
thrown away unless the broker logs at DEBUG (2.5 %).

Here :meth:`PikaEventBroker.publish` puts the event on an in-memory queue that one task
publishes from, in the order the events came (Rasa's own buffering when RabbitMQ is away is
unchanged: a failed event goes to ``_unpublished_events`` and is sent again on reconnect);
``close`` first lets that task finish what is queued (up to :data:`CLOSE_DRAIN_SECONDS`).

The message is Rasa's (``_message``: the event as JSON, persistent, ``app_id`` =
``RASA_ENVIRONMENT``); the reduced copy is made only for a line that is written (the debug
line when DEBUG is on, the error line when publishing fails). :func:`install` makes Rasa
build this class for ``event_broker: type: pika``.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Dict, Optional, Text, Tuple

from rasa.core.brokers import pika as rasa_pika
from rasa.shared.core.events import remove_parse_data

__all__ = ["PikaEventBroker", "install"]

_RASA_LOGGER = "rasa.core.brokers.pika"  # the logger Rasa's structlog lines go to
logger = logging.getLogger(__name__)

CLOSE_DRAIN_SECONDS = 5.0
"""How long ``close`` waits for queued events to be published."""


class PikaEventBroker(rasa_pika.PikaEventBroker):
    """Rasa's Pika event broker: one publishing task; the reduced copy only when logged."""

    _outbox: "Optional[asyncio.Queue[Tuple[Dict[Text, Any], Optional[Dict[Text, Text]]]]]" = None
    _publisher: "Optional[asyncio.Task]" = None

    def publish(
        self, event: Dict[Text, Any], headers: Optional[Dict[Text, Text]] = None
    ) -> None:
        """Queue ``event`` for the publishing task (started on first use)."""
        if self._outbox is None:
            self._outbox = asyncio.Queue()
        self._outbox.put_nowait((event, headers))
        if self._publisher is None or self._publisher.done():
            self._publisher = self._loop.create_task(self._publish_queued())
            self._background_tasks.add(self._publisher)
            self._publisher.add_done_callback(self._background_tasks.discard)

    async def _publish_queued(self) -> None:
        assert self._outbox is not None
        while True:
            event, headers = await self._outbox.get()
            try:
                await self._publish(event, headers)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - raise_on_failure: logged, the next goes on
                logger.exception("Publishing an event to RabbitMQ failed.")
            finally:
                self._outbox.task_done()

    async def close(self) -> None:
        """Publish what is queued (up to :data:`CLOSE_DRAIN_SECONDS`), then close."""
        if self._outbox is not None and self._publisher is not None:
            try:
                await asyncio.wait_for(self._outbox.join(), CLOSE_DRAIN_SECONDS)
            except asyncio.TimeoutError:
                logger.warning("Closing the event broker with %d event(s) not published.",
                               self._outbox.qsize())
            self._publisher.cancel()
        await super().close()

    async def _publish(
        self, event: Dict[Text, Any], headers: Optional[Dict[Text, Text]] = None
    ) -> None:
        if logging.getLogger(_RASA_LOGGER).isEnabledFor(logging.DEBUG):
            await super()._publish(event, headers)  # Rasa's, with its debug line
            return
        if self._exchange is None:
            return
        try:
            await self._exchange.publish(self._message(event, headers), "")
        except Exception as error:
            rasa_pika.structlogger.error(
                "pika.events.publish.failed",
                event_info="Logging a reduced version of the failed Pika event",
                host=self.host,
                rasa_event=remove_parse_data(event),
            )
            if self.should_keep_unpublished_messages:
                self._unpublished_events.append(event)
            if self.raise_on_failure:
                self.close()  # type: ignore[unused-coroutine]
                raise error


def install() -> None:
    """Make Rasa build :class:`PikaEventBroker` for ``type: pika`` (idempotent)."""
    rasa_pika.PikaEventBroker = PikaEventBroker  # type: ignore[misc]
