"""The live bus across processes over the local Redis (bot/live_redis.py).

Two buses with their own relays stand for two Rasa processes (same ``REDIS_KEY_PREFIX``);
the two-process test with real Rasa servers is in tests/live/test_two_processes.py.
Needs Redis on 127.0.0.1:6379 (required when CI=true).
"""
from __future__ import annotations

import asyncio
import uuid
from typing import Any, AsyncIterator, Dict, List, Tuple

import pytest

from bot.live import EVERYWHERE, ORIGIN, REMOTE, LiveBus
from bot.live_redis import RedisRelay
from tests.servers import unavailable

REDIS_URL = "redis://127.0.0.1:6379/15"


async def _redis_answers() -> bool:
    import redis.asyncio as aioredis

    client = aioredis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        return bool(await client.ping())
    except Exception:  # noqa: BLE001 - any failure means "not here"
        return False
    finally:
        await client.close()


@pytest.fixture
async def two_buses() -> AsyncIterator[Tuple[LiveBus, LiveBus]]:
    if not await _redis_answers():
        unavailable(f"Redis does not answer at {REDIS_URL}")
    prefix = f"livetest{uuid.uuid4().hex[:8]}"
    buses = (LiveBus(relay=RedisRelay(REDIS_URL, prefix, presence_ttl=3.0)),
             LiveBus(relay=RedisRelay(REDIS_URL, prefix, presence_ttl=3.0)))
    for live in buses:
        live.start()
    for live in buses:
        await asyncio.wait_for(live._relay.subscribed.wait(), 10)  # type: ignore[union-attr]
    yield buses
    for live in buses:
        live.close()
    await asyncio.sleep(0.1)


class Recorder:
    def __init__(self) -> None:
        self.seen: List[Tuple[str, Dict[str, Any]]] = []

    def callback(self, name: str) -> Any:
        async def record(event: Dict[str, Any]) -> None:
            self.seen.append((name, event))
        return record


async def _until(condition: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


async def test_events_reach_the_other_process_once_by_scope(
        two_buses: Tuple[LiveBus, LiveBus]) -> None:
    a, b = two_buses
    seen_a, seen_b = Recorder(), Recorder()
    for live, rec in ((a, seen_a), (b, seen_b)):
        live.subscribe("agent.message", rec.callback("everywhere"), group=rec, scope=EVERYWHERE)
        live.subscribe("agent.message", rec.callback("origin"), group=rec, scope=ORIGIN)
        live.subscribe("agent.message", rec.callback("remote"), group=rec, scope=REMOTE)
    event = {"conversation_id": "widget:cust-anna", "message": {"id": 7, "text": "Hi"}}

    await a.publish("agent.message", event)
    await _until(lambda: len(seen_b.seen) >= 2)
    await asyncio.sleep(0.3)  # anything extra (an echo of A's own event) would arrive by now

    assert seen_a.seen == [("everywhere", event), ("origin", event)]
    assert seen_b.seen == [("everywhere", event), ("remote", event)]


async def test_order_is_kept_between_processes(two_buses: Tuple[LiveBus, LiveBus]) -> None:
    a, b = two_buses
    rec = Recorder()
    b.subscribe("customer.typing", rec.callback("b"))
    for n in range(200):
        await a.publish("customer.typing", {"conversation_id": "c", "n": n})
    await _until(lambda: len(rec.seen) == 200)
    assert [e["n"] for _, e in rec.seen] == list(range(200))


async def test_presence_is_seen_by_the_other_process_and_expires(
        two_buses: Tuple[LiveBus, LiveBus]) -> None:
    a, b = two_buses
    conversation = f"widget:cust-{uuid.uuid4().hex[:6]}"
    assert await b.online(conversation) is False

    a.set_online(conversation, True)
    await _until_async(lambda: b.online(conversation))
    a.set_online(conversation, False)
    await _until_async(lambda: _not(b.online(conversation)))

    a.set_online(conversation, True)
    await _until_async(lambda: b.online(conversation))
    a.close()  # the process dies: it stops refreshing; its mark lasts presence_ttl (3 s)
    await _until_async(lambda: _not(b.online(conversation)), timeout=8.0)


async def _not(awaitable: Any) -> bool:
    return not await awaitable


async def _until_async(condition: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


async def test_publishing_never_waits_for_a_dead_redis() -> None:
    relay = RedisRelay("redis://127.0.0.1:1/0", "deadredis", queue_size=50)
    live = LiveBus(relay=relay)
    rec = Recorder()
    live.subscribe("agent.typing", rec.callback("local"))
    live.start()
    try:
        started = asyncio.get_running_loop().time()
        for n in range(100):  # the queue holds 50: the rest are dropped, never waited for
            await live.publish("agent.typing", {"conversation_id": "c", "n": n})
        assert asyncio.get_running_loop().time() - started < 0.5
        await _until(lambda: len(rec.seen) == 100)  # this process's subscribers get all
        assert relay._dropped >= 49
        assert await live.online("c") is False  # Redis cannot be asked: offline
    finally:
        live.close()


class _RecordingHub:
    """The hub of a process: the frames pushed to its sockets of each conversation."""

    def __init__(self) -> None:
        self.pushed: List[Tuple[str, Dict[str, Any]]] = []

    async def push(self, conversation_id: str, frame: Dict[str, Any],
                   settle: bool = True) -> int:
        self.pushed.append((conversation_id, frame))
        return 1


async def test_a_turn_run_on_another_process_reaches_the_customers_socket(
        two_buses: Tuple[LiveBus, LiveBus], monkeypatch: pytest.MonkeyPatch) -> None:
    """Behind the balancer, process A may run a turn (its sweep took it) while the
    customer's socket is on process B: A's frames reach B's socket once, in order, and
    A's own hub gets them too (a second device of the customer on A)."""
    import bot.live
    from bot.channels.agent_bridge import FRAMES_TOPIC, AgentBridge
    from bot.channels.widget_wire import push_everywhere

    a, b = two_buses
    hub_a, hub_b = _RecordingHub(), _RecordingHub()

    class _Channel:
        hub = hub_b

    bridge_b = AgentBridge(_Channel())  # type: ignore[arg-type]
    b.subscribe(FRAMES_TOPIC, bridge_b._on_frames, scope=REMOTE)
    a.subscribe(FRAMES_TOPIC, AgentBridge(type("C", (), {"hub": hub_a})())._on_frames,
                scope=REMOTE)  # type: ignore[arg-type]
    monkeypatch.setattr(bot.live, "bus", lambda: a)
    frames = [{"type": "receipt", "ids": [5], "status": "delivered"},
              {"type": "typing", "sender": "bot", "state": "start"},
              {"type": "message", "message": {"id": 6, "text": "Order #104233 is on its way"}},
              {"type": "typing", "sender": "bot", "state": "stop"}]

    for frame in frames:
        await push_everywhere(hub_a, "widget:cust-anna", frame)
    await _until(lambda: len(hub_b.pushed) >= 4)
    await asyncio.sleep(0.3)

    assert hub_b.pushed == [("widget:cust-anna", f) for f in frames]
    assert hub_a.pushed == [("widget:cust-anna", f) for f in frames]  # not twice
