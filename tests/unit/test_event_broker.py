"""bot/event_broker.py: the same RabbitMQ messages as Rasa's broker, no copy per event."""
from __future__ import annotations

import json
import logging
from typing import Any, List

import pytest

from bot import event_broker


class _Exchange:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.messages: List[Any] = []

    async def publish(self, message: Any, routing_key: str) -> None:
        if self.fail:
            raise ConnectionError("channel closed")
        self.messages.append((message, routing_key))


def _broker(exchange: _Exchange) -> event_broker.PikaEventBroker:
    broker = event_broker.PikaEventBroker("localhost", "guest", "guest", queues=["q"])
    broker._exchange = exchange
    return broker


EVENT = {"sender_id": "anna", "event": "user", "text": "where is 104233",
         "parse_data": {"intent": {"name": "track_order", "confidence": 0.9}}}


async def test_publishes_rasas_message_without_copying_the_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_copy(event: Any) -> Any:
        raise AssertionError("copied for a log line nobody writes")

    monkeypatch.setattr(event_broker, "remove_parse_data", no_copy)
    monkeypatch.setattr("rasa.shared.core.events.remove_parse_data", no_copy)
    exchange = _Exchange()
    broker = _broker(exchange)
    await broker._publish(EVENT)
    [(message, key)] = exchange.messages
    assert key == ""
    assert json.loads(message.body) == EVENT
    assert message.delivery_mode.value == 2  # persistent, as Rasa's


async def test_a_failed_publish_logs_the_reduced_event_and_keeps_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logged: List[Any] = []
    monkeypatch.setattr(event_broker.rasa_pika.structlogger, "error",
                        lambda name, **kw: logged.append((name, kw["rasa_event"])))
    broker = _broker(_Exchange(fail=True))
    broker.should_keep_unpublished_messages = True
    broker.raise_on_failure = False
    await broker._publish(EVENT)
    assert logged == [("pika.events.publish.failed",
                       {k: v for k, v in EVENT.items() if k != "parse_data"})]
    assert list(broker._unpublished_events) == [EVENT]
    assert "parse_data" in EVENT  # the reduced one is a copy


async def test_with_debug_logging_it_is_rasas_publish(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: List[Any] = []

    async def rasas(self: Any, event: Any, headers: Any = None) -> None:
        calls.append(event)

    rasa_class = event_broker.PikaEventBroker.__mro__[1]  # Rasa's own PikaEventBroker
    monkeypatch.setattr(rasa_class, "_publish", rasas)
    log = logging.getLogger("rasa.core.brokers.pika")
    level = log.level
    log.setLevel(logging.DEBUG)
    try:
        await _broker(_Exchange())._publish(EVENT)
    finally:
        log.setLevel(level)
    assert calls == [EVENT]


def test_rasa_builds_it_for_type_pika() -> None:
    from rasa.core.brokers import pika as rasa_pika

    original = rasa_pika.PikaEventBroker
    event_broker.install()
    try:
        assert rasa_pika.PikaEventBroker is event_broker.PikaEventBroker
    finally:
        rasa_pika.PikaEventBroker = original


class _SlowExchange(_Exchange):
    """Publishing takes a moment; records how many publishes overlapped."""

    def __init__(self, fail_on: Any = ()) -> None:
        super().__init__()
        self.fail_on = set(fail_on)
        self.running = 0
        self.most = 0

    async def publish(self, message: Any, routing_key: str) -> None:
        import asyncio

        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(0.001)
            number = json.loads(message.body)["n"]
            if number in self.fail_on:
                raise ConnectionError("channel closed")
            self.messages.append((message, routing_key))
        finally:
            self.running -= 1


async def test_events_are_published_one_at_a_time_in_order_and_close_waits() -> None:
    import asyncio

    exchange = _SlowExchange(fail_on={7})
    broker = event_broker.PikaEventBroker("localhost", "guest", "guest", queues=["q"],
                                          event_loop=asyncio.get_running_loop())
    broker._exchange = exchange
    broker.raise_on_failure = False
    for n in range(30):
        broker.publish({"event": "action", "n": n})
    assert len(broker._background_tasks) == 1  # one publisher, not a task per event
    await broker.close()  # publishes what is queued first
    assert [json.loads(m.body)["n"] for m, _ in exchange.messages] == [
        n for n in range(30) if n != 7]
    assert exchange.most == 1
    assert [e["n"] for e in broker._unpublished_events] == [7]  # kept to be sent again
