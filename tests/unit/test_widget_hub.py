"""The widget hub: per-user limits and one bot turn per conversation at a time."""
from __future__ import annotations

import asyncio
from typing import Any, List

import pytest

from bot.channels.hub import Connection, Hub, RateLimiter, TooManyConnections


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeSocket:
    def __init__(self, fail: bool = False) -> None:
        self.sent: List[str] = []
        self.closed_with: Any = None
        self.fail = fail

    async def send(self, data: str) -> None:
        if self.fail:
            raise ConnectionError("gone")
        self.sent.append(data)

    async def close(self, code: int, reason: str) -> None:
        self.closed_with = (code, reason)


def test_rate_limiter_sliding_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter(3, 10.0, clock=clock)
    assert [limiter.check("u") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.check("u") == pytest.approx(10.0)
    assert limiter.check("other") == 0.0  # per key
    clock.now += 4
    assert limiter.check("u") == pytest.approx(6.0)
    clock.now += 6  # the first three leave the window
    assert limiter.check("u") == 0.0
    clock.now += 100
    limiter.forget_idle()
    assert limiter._events == {}


async def test_connection_limit_per_user_counts_only_open_connections() -> None:
    hub = Hub(max_connections=2, rate_messages=10, rate_window=60)
    first = Connection(FakeSocket(), "u1", "widget:u1", 0)
    second = Connection(FakeSocket(), "u1", "widget:u1", 0)
    hub.register(first)
    hub.register(second)
    with pytest.raises(TooManyConnections):
        hub.register(Connection(FakeSocket(), "u1", "widget:u1", 0))
    hub.register(Connection(FakeSocket(), "u2", "widget:u2", 0))  # another user
    hub.unregister(first)
    hub.register(Connection(FakeSocket(), "u1", "widget:u1", 0))
    assert len(hub.connections("widget:u1")) == 2


async def test_push_reaches_every_device_except_excluded_and_survives_dead_sockets() -> None:
    hub = Hub(max_connections=5, rate_messages=10, rate_window=60)
    phone, tablet, dead = FakeSocket(), FakeSocket(), FakeSocket(fail=True)
    connections = [Connection(s, "u1", "widget:u1", 0) for s in (phone, tablet, dead)]
    for connection in connections:
        hub.register(connection)
    delivered = await hub.push("widget:u1", {"type": "pong"}, exclude=connections[1])
    assert delivered == 1
    assert phone.sent == ['{"type":"pong"}'] and tablet.sent == []
    assert connections[2].closed
    assert set(hub.connections("widget:u1")) == set(connections[:2])


async def test_turns_of_one_conversation_run_one_at_a_time_in_order() -> None:
    hub = Hub(max_connections=5, rate_messages=10, rate_window=60)
    log: List[str] = []

    async def turn(name: str, conversation: str, delay: float) -> None:
        async with hub.turn_lock(conversation):
            log.append(f"start {name}")
            await asyncio.sleep(delay)
            log.append(f"end {name}")

    await asyncio.gather(
        turn("a1", "A", 0.05), turn("a2", "A", 0.0), turn("a3", "A", 0.0), turn("b1", "B", 0.01)
    )
    a_events = [e for e in log if " a" in e]
    assert a_events == ["start a1", "end a1", "start a2", "end a2", "start a3", "end a3"]
    assert log.index("end b1") < log.index("end a1")  # other conversations do not wait
    assert hub._turn_locks == {} and not hub._turn_waiters  # nothing kept
