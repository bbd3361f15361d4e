"""Rasa's RabbitMQ event broker without a deep copy of every event it publishes.

Rasa 3.6's ``PikaEventBroker._publish`` deep-copies each event (``remove_parse_data``)
before publishing it, only to put the copy in a debug log line, which is thrown away unless
the broker logs at DEBUG. With about eight events per turn that copy was 2.5 % of the Rasa
process's GIL time at 50 widget conversations (issue 14's profile).

:class:`PikaEventBroker` publishes the same message (Rasa's ``_message``: the event as JSON,
persistent, ``app_id`` = ``RASA_ENVIRONMENT``) and makes the copy only for a log line that is
written: the debug line when DEBUG is on, the error line when publishing fails (then the
event is kept for re-sending and the failure raised as Rasa does). :func:`install` makes
Rasa build it for ``event_broker: type: pika``.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Optional, Text

from rasa.core.brokers import pika as rasa_pika
from rasa.shared.core.events import remove_parse_data

__all__ = ["PikaEventBroker", "install"]

_RASA_LOGGER = "rasa.core.brokers.pika"  # the logger Rasa's structlog lines go to


class PikaEventBroker(rasa_pika.PikaEventBroker):
    """Rasa's Pika event broker; the reduced copy of an event only for a written log line."""

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
