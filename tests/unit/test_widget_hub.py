"""The widget hub: per-user limits and one bot turn per conversation at a time."""
from __future__ import annotations

import asyncio
from typing import Any, List

import pytest

from bot.channels.hub import (
    Connection,
    Hub,
    PreAuthGate,
    RateLimiter,
    TokenBucket,
    TooManyConnections,
)


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


def test_rate_limiter_keeps_at_most_max_keys() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2, 10.0, clock=clock, max_keys=3)
    for key in ("a", "b", "c"):
        assert limiter.check(key) == 0.0
    assert limiter.check("a") == 0.0  # "a" is now the most recently used
    assert limiter.check("a") == pytest.approx(10.0)  # and at its limit
    assert limiter.check("d") == 0.0  # a fourth key evicts the least recently used ("b")
    assert len(limiter) == 3 and set(limiter._events) == {"a", "c", "d"}
    assert limiter.check("a") == pytest.approx(10.0)  # the kept key keeps its count
    clock.now += 11  # all idle: a new key drops the idle ones first
    assert limiter.check("e") == 0.0
    assert set(limiter._events) == {"e"}
    for n in range(1000):  # many distinct keys (addresses, users): memory stays bounded
        limiter.check(f"k{n}")
    assert len(limiter) == 3


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=5.0, burst=30, clock=clock)
    assert [bucket.take() for _ in range(30)] == [True] * 30
    assert bucket.take() is False
    clock.now += 1.0  # five more
    assert [bucket.take() for _ in range(6)] == [True] * 5 + [False]
    clock.now += 3600  # never more than the burst
    assert sum(bucket.take() for _ in range(100)) == 30


def test_pre_auth_gate_caps_sockets_per_address_and_addresses() -> None:
    gate = PreAuthGate(per_key=2, max_keys=2)
    assert gate.enter("1.1.1.1") and gate.enter("1.1.1.1")
    assert gate.enter("1.1.1.1") is False  # the third waiting socket of one address
    assert gate.pending("1.1.1.1") == 2
    assert gate.enter("2.2.2.2")
    assert gate.enter("3.3.3.3") is False  # the table is full: a new address waits
    gate.leave("1.1.1.1")
    assert gate.enter("1.1.1.1")  # a slot is free again
    gate.leave("2.2.2.2")
    assert len(gate) == 1 and gate.enter("3.3.3.3")
    for _ in range(5):
        gate.leave("1.1.1.1")
    gate.leave("3.3.3.3")
    assert len(gate) == 0 and gate.pending("1.1.1.1") == 0


def test_hub_limiters_share_the_key_bound() -> None:
    hub = Hub(max_connections=1, rate_messages=1, rate_window=60, preauth_per_ip=1,
              max_keys=100)
    for n in range(500):
        hub.message_limiter.check(f"user-{n}")
    assert len(hub.message_limiter) == 100
    assert hub.preauth.enter("ip") and not hub.preauth.enter("ip")
