"""The in-process event bus between the widget channel and the agent console.

Both are Rasa input channels, so they live in the Rasa server process: the widget
channel publishes what customers do and delivers what agents do, the agent console
the other way round. Events are plain dicts; every subscriber of a topic is awaited in
subscription order, and a failing subscriber is logged, never raised to the publisher.
State that must survive a restart is in the support database, not here.

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
"""
from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Dict, List, Optional

__all__ = ["LiveBus", "bus", "reset_bus"]

logger = logging.getLogger(__name__)

Subscriber = Callable[[Dict[str, Any]], Awaitable[None]]


class LiveBus:
    """Topic → subscribers; :meth:`publish` awaits each subscriber."""

    def __init__(self) -> None:
        self._subscribers: Dict[str, List[Subscriber]] = {}

    def subscribe(self, topic: str, callback: Subscriber) -> None:
        """Call ``await callback(event)`` for every event published on ``topic``."""
        self._subscribers.setdefault(topic, []).append(callback)

    def unsubscribe(self, topic: str, callback: Subscriber) -> None:
        """Stop calling ``callback`` (idempotent)."""
        if callback in self._subscribers.get(topic, []):
            self._subscribers[topic].remove(callback)

    async def publish(self, topic: str, event: Dict[str, Any]) -> int:
        """Deliver ``event`` to the topic's subscribers; returns how many succeeded."""
        delivered = 0
        for callback in list(self._subscribers.get(topic, [])):
            try:
                await callback(event)
                delivered += 1
            except Exception:  # noqa: BLE001 - one broken subscriber must not stop others
                logger.exception("Live subscriber %r failed on %s", callback, topic)
        return delivered


_BUS: Optional[LiveBus] = None


def bus() -> LiveBus:
    """This process's bus (created on first use)."""
    global _BUS
    if _BUS is None:
        _BUS = LiveBus()
    return _BUS


def reset_bus() -> None:
    """Forget the process bus (tests)."""
    global _BUS
    _BUS = None
