"""The change feed cannot skip or repeat a change; slow consumers are isolated.

* PostgreSQL commits ids out of order (two transactions, the higher id commits first):
  the consumer sees both, exactly once, in commit-safe order.
* A burst of more than 200 changes between two reads: none skipped.
* A restarted consumer (and two processes at once) bridge a handoff to Twilio once.
* A stuck agent socket (a client that stops reading) does not delay a customer's turn or
  other agents' notifications beyond a bound, and is closed.
* A slow bus subscriber does not delay publish.
"""
from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from typing import Any, AsyncIterator, Dict, List, Tuple

import pytest

from bot import db
from bot.live import ChangeFeedConsumer, ChangeFeedReader, FeedClaims, LiveBus
from bot.support.models import stage_change


async def _engine(url: str) -> Any:
    engine = db.make_engine(url)
    from bot import migrate

    await migrate.upgrade(engine)
    return engine


def _stage(connection: Any, name: str) -> None:
    stage_change(connection, topic="handoff.recorded", object_type="handoff", object_id=name,
                 ticket=None, conversation_id=f"widget:{name}", at=db.utcnow(),
                 payload={"name": name})


async def _insert(engine: Any, name: str) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(_stage, name)


async def _names(reader: ChangeFeedReader, position: Any) -> Tuple[List[str], Any]:
    changes, position = await reader.read(position)
    return [c.payload["name"] for c in changes], position


# ------------------------------------------------------------ gap-free cursor

@pytest.mark.postgres
async def test_ids_committed_out_of_order_are_seen_once_each(postgres_url: str) -> None:
    engine = await _engine(postgres_url)
    try:
        reader = ChangeFeedReader(engine)
        position = await reader.start()
        first, second = await engine.connect(), await engine.connect()
        try:
            low = await first.begin()
            await first.run_sync(_stage, "low")  # takes the lower id, stays open
            high = await second.begin()
            await second.run_sync(_stage, "high")
            ids = {}
            for name, conn in (("low", first), ("high", second)):
                ids[name] = (await conn.exec_driver_sql(
                    f"SELECT id FROM change_feed WHERE payload->>'name' = '{name}'")).scalar()
            assert ids["low"] < ids["high"]
            await high.commit()  # the higher id commits first

            seen, position = await _names(reader, position)
            assert seen == []  # "high" waits: an older transaction is still running
            await low.commit()
            seen, position = await _names(reader, position)
            assert seen == ["low", "high"]
            again, position = await _names(reader, position)
            assert again == []
        finally:
            await first.close()
            await second.close()

        # the old tail's way (newest id after a read) would have lost "low":
        async with engine.connect() as conn:
            count = (await conn.exec_driver_sql("SELECT count(*) FROM change_feed")).scalar()
        assert count == 2
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_a_started_reader_skips_what_committed_before_it(postgres_url: str) -> None:
    """Start-up "now" on PostgreSQL: rows already committed above the horizon are not new."""
    engine = await _engine(postgres_url)
    try:
        holder = await engine.connect()
        try:
            held = await holder.begin()
            await holder.run_sync(_stage, "running")  # holds the horizon back
            await _insert(engine, "before")  # committed before the reader starts
            reader = ChangeFeedReader(engine)
            position = await reader.start()
            await _insert(engine, "after")
            await held.commit()
            seen, position = await _names(reader, position)
            assert seen == ["running", "after"]
        finally:
            await holder.close()
    finally:
        await engine.dispose()


async def test_a_burst_between_two_reads_is_read_whole(db_url: str) -> None:
    engine = await _engine(db_url)
    consumer = ChangeFeedConsumer(db_url, interval=60)  # polled by hand
    got: List[str] = []

    async def handler(changes: List[Any]) -> None:
        got.extend(c.payload["name"] for c in changes)

    try:
        consumer._handlers[handler] = 60
        await consumer.poll_once()  # start position: "now"
        await _insert(engine, "old-but-after-start")
        names = [f"burst-{i}" for i in range(1234)]
        async with engine.begin() as connection:  # one big transaction
            for name in names[:1200]:
                await connection.run_sync(_stage, name)
        for name in names[1200:]:  # and many small ones
            await _insert(engine, name)
        assert await consumer.poll_once() == 1235
        assert got == ["old-but-after-start"] + names
        assert await consumer.poll_once() == 0
    finally:
        await consumer.stop()
        await engine.dispose()


async def test_handoffs_and_ticket_changes_are_written_with_the_change(db_url: str) -> None:
    """The outbox row is in the state change's transaction: every store's writes appear."""
    from bot.support.agents import AgentStore
    from bot.support.chat import ChatStore
    from bot.support.ops import SupportStore

    engine = await _engine(db_url)
    support, agents, chat = SupportStore(engine), AgentStore(engine), ChatStore(engine)
    reader = ChangeFeedReader(engine)
    try:
        position = await reader.start()
        await chat.do_open_conversation("widget:cust-x", "cust-x", "widget", profile={})
        ticket, _ = await support.do_handoff("widget:cust-x", summary="Help", category="SHIPPING",
                                             priority="high", reason="human_requested")
        maria = await agents.do_create_agent("maria", "Maria", "long enough password")
        ben = await agents.do_create_agent("ben", "Ben", "long enough password")
        await agents.do_claim(ticket.reference, maria)
        await agents.do_transfer(ticket.reference, maria, ben.id)
        await agents.do_resolve(ticket.reference, ben)
        changes, position = await reader.read(position)
        assert [(c.topic, c.ticket) for c in changes] == [
            ("handoff.recorded", ticket.reference), ("ticket.claimed", ticket.reference),
            ("ticket.transferred", ticket.reference), ("ticket.resolved", ticket.reference)]
        assert changes[0].conversation_id == "widget:cust-x"
        assert all(isinstance(c.audit_id, int) for c in changes)
        assert changes[1].actor == f"agent:{maria.id}"

        # a change that rolls back leaves no feed row
        with pytest.raises(Exception):
            await agents.do_claim(ticket.reference, maria)  # resolved: refused
        assert (await reader.read(position))[0] == []
    finally:
        await engine.dispose()


# ------------------------------------------------------------ durable claims

async def test_claims_are_taken_once_and_stale_ones_taken_over(db_url: str) -> None:
    engine = await _engine(db_url)
    try:
        await _insert(engine, "h")
        reader = ChangeFeedReader(engine)
        change = (await reader.recent("handoff.recorded", db.utcnow().replace(year=2000)))[0]
        a = FeedClaims(engine, "twilio.handoff", stale_after=0.5, owner="process-a")
        b = FeedClaims(engine, "twilio.handoff", stale_after=0.5, owner="process-b")
        results = await asyncio.gather(a.claim(change.id), b.claim(change.id))
        assert sorted(results) == [False, True]
        winner, loser = (a, b) if results[0] else (b, a)
        assert await loser.open_ids([change.id]) == []
        await asyncio.sleep(0.6)  # the winner died without finishing
        assert await loser.open_ids([change.id]) == [change.id]
        assert await loser.claim(change.id) is True
        assert await winner.finish(change.id) is False  # no longer its claim
        assert await loser.finish(change.id) is True
        await asyncio.sleep(0.6)
        assert await winner.claim(change.id) is False  # done is final
        assert await winner.open_ids([change.id]) == []
    finally:
        await engine.dispose()


# ------------------------------------------------------------ the bus

async def test_a_slow_subscriber_does_not_delay_publish() -> None:
    live = LiveBus(queue_size=10)
    fast: List[int] = []
    release = asyncio.Event()
    stuck_got: List[int] = []

    async def stuck(event: Dict[str, Any]) -> None:
        stuck_got.append(event["n"])
        await release.wait()

    async def quick(event: Dict[str, Any]) -> None:
        fast.append(event["n"])

    live.subscribe("t", stuck)
    live.subscribe("t", quick)
    try:
        slowest = 0.0
        for n in range(100):
            started = time.monotonic()
            await live.publish("t", {"n": n})
            slowest = max(slowest, time.monotonic() - started)
            await asyncio.sleep(0)  # the publisher's turn goes on
        assert slowest < 0.01
        await asyncio.sleep(0.05)
        assert fast == list(range(100))  # in order, none lost
        assert stuck_got == [0]
        # the stuck one holds 1 running + 10 queued; the rest were dropped for it only
        assert await live.publish("t", {"n": 100}) == 1
        release.set()
        await live.drain()
        assert stuck_got == list(range(11))
    finally:
        live.close()


async def test_one_objects_callbacks_keep_their_order() -> None:
    live = LiveBus()
    seen: List[str] = []

    class Owner:
        async def slow(self, event: Dict[str, Any]) -> None:
            await asyncio.sleep(0.05)
            seen.append("claimed")

        async def fast(self, event: Dict[str, Any]) -> None:
            seen.append("message")

    owner = Owner()
    live.subscribe("ticket.claimed", owner.slow)
    live.subscribe("agent.message", owner.fast)
    try:
        await live.publish("ticket.claimed", {})
        await live.publish("agent.message", {})
        await live.drain()
        assert seen == ["claimed", "message"]
    finally:
        live.close()


# ------------------------------------------------------------ Twilio: bridged once

@pytest.fixture(scope="module")
def fake_twilio() -> Any:
    from tests.twilio.conftest import ACCOUNT_SID, AUTH_TOKEN
    from tests.twilio.fake_twilio import FakeTwilio

    with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as fake:
        yield fake


def _twilio_config(fake: Any, url: str) -> Any:
    from bot.twilio.bridge import TwilioConfig
    from bot.twilio.client import RetryPolicy
    from tests.twilio.conftest import ACCOUNT_SID, AUTH_TOKEN, PUBLIC_URL

    fake.route(PUBLIC_URL, "http://127.0.0.1:9")
    return TwilioConfig(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, public_url=PUBLIC_URL,
                        api_base=fake.base_url, timeout=1.0,
                        policy=RetryPolicy(attempts=3, base=0.01, cap=0.04), poll_interval=0.05,
                        support_db_url=url, handoff_delay=0.0)


class _Process:
    """One "process" running the bridge (its own store, claims owner and feed reader)."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.bridge: Any = None

    async def start(self) -> Any:
        from bot.twilio.bridge import TwilioBridge
        from bot.twilio.store import TwilioStore

        store = TwilioStore.from_url(self.config.support_db_url)
        await store.create_schema()
        self.bridge = TwilioBridge(self.config, store)
        self.bridge.start()
        await self.bridge._feed.wait_started()
        return self

    async def stop(self) -> None:
        await self.bridge.idle(10)
        await self.bridge.close()
        await self.bridge.store.dispose()


async def _until(probe: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await probe():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def _created(fake: Any, conversation_id: str) -> int:
    return sum(1 for c in fake.conversations() if c.get("unique_name") == conversation_id)


async def test_a_restarted_bridge_neither_skips_nor_repeats_a_handoff(
        fake_twilio: Any, db_url: str) -> None:
    from tests.twilio.conftest import hand_off

    config = _twilio_config(fake_twilio, db_url)
    first = await _Process(config).start()
    handed = await hand_off(db_url)  # live: through the feed
    await _until(lambda: first.bridge.store.open_link(handed["conversation_id"]))
    await first.stop()

    missed = await hand_off(db_url)  # recorded while no bridge runs
    # a process that died in the middle of a set-up: its claim is never finished
    died = await hand_off(db_url)
    engine = await _engine(db_url)
    try:
        reader = ChangeFeedReader(engine)
        changes = {c.ticket: c for c in await reader.recent(
            "handoff.recorded", db.utcnow().replace(year=2000))}
        dead = FeedClaims(engine, "twilio.handoff", owner="dead-process")
        assert await dead.claim(changes[died["reference"]].id)
        async with engine.begin() as conn:  # ... long enough ago to be stale
            await conn.exec_driver_sql(
                "UPDATE change_feed_claims SET claimed_at = '2000-01-01 00:00:00' "
                "WHERE owner = 'dead-process'")

        # two processes start at once (a restart while the old one still runs)
        second, third = await asyncio.gather(_Process(config).start(), _Process(config).start())
        for item in (missed, died):
            await _until(lambda: second.bridge.store.open_link(item["conversation_id"]))
        live = await hand_off(db_url)  # both follow the feed: one bridges it
        await _until(lambda: second.bridge.store.open_link(live["conversation_id"]))
        await second.bridge.sweep()
        await third.bridge.sweep()
        await asyncio.gather(second.stop(), third.stop())

        for item in (handed, missed, died, live):
            assert _created(fake_twilio, item["conversation_id"]) == 1, item
        async with engine.connect() as conn:
            rows = (await conn.exec_driver_sql(
                "SELECT count(*), count(done_at) FROM change_feed_claims")).one()
        assert tuple(rows) == (4, 4)
    finally:
        await engine.dispose()


# ------------------------------------------------------------ a stuck agent socket

class _StuckClient:
    """A WebSocket client that says hello, then never reads again (tiny receive buffer)."""

    def __init__(self, port: int, token: str) -> None:
        self.port, self.token = port, token
        self.sock: Any = None

    def open(self) -> None:
        import base64
        import os
        import struct

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", self.port))
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall((f"GET /webhooks/agent/ws HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                      "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(1)
        assert b" 101 " in answer.split(b"\r\n")[0], answer
        payload = json.dumps({"type": "hello", "token": self.token}).encode()
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked
                     if len(payload) < 126 else
                     bytes([0x81, 0x80 | 126]) + struct.pack("!H", len(payload)) + mask + masked)
        self.sock = sock  # and from now on: never read

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


@pytest.fixture
async def console_app(sqlite_url: str) -> AsyncIterator[Tuple[Any, int]]:
    """The agent console channel alone in a Sanic server (no Rasa), on a free port."""
    from pathlib import Path

    from sanic import Sanic

    from bot.agent_console.channel import AgentConsoleInput, ConsoleConfig
    from tests.servers import free_port

    console = AgentConsoleInput(ConsoleConfig(
        support_db_url=sqlite_url, session_ttl=3600, metrics_token=None, poll_interval=0.05,
        canned_file=Path(__file__).resolve().parents[2] / "data" / "canned_responses.yml",
        login_rate=100, send_queue=64, send_timeout=1.0))

    async def on_new_message(_message: Any) -> None:
        return None

    app = Sanic(f"console_{uuid.uuid4().hex[:8]}")
    app.blueprint(console.blueprint(on_new_message), url_prefix="/webhooks/agent")
    port = free_port()
    server = await app.create_server(host="127.0.0.1", port=port, return_asyncio_server=True)
    await server.startup()
    await server.start_serving()
    try:
        yield console, port
    finally:
        await console.close()
        server.close()
        await server.wait_closed()


async def test_a_stuck_agent_socket_is_closed_and_delays_nobody(
        console_app: Any, caplog: pytest.LogCaptureFixture) -> None:
    import websockets

    from bot.live import bus
    from bot.support.agents import AgentStore
    from bot.support.chat import ChatStore
    from bot.support.ops import SupportStore

    console, port = console_app
    agents_store, _ = await console.stores()
    support, chat = SupportStore(agents_store.engine), ChatStore(agents_store.engine)
    password = "correct horse battery staple"
    await agents_store.do_create_agent("ana", "Ana", password)
    await agents_store.do_create_agent("stuck", "Stuck", password)
    tokens = {}
    for name in ("ana", "stuck"):
        token, _agent, _expires = await agents_store.do_login(name, password)
        tokens[name] = token

    async def hand_off(customer: str) -> str:
        conversation = f"widget:{customer}"
        await chat.do_open_conversation(conversation, customer, "widget", profile={})
        ticket, _ = await support.do_handoff(conversation, summary="Help", category="SHIPPING",
                                             priority="high", reason="human_requested")
        return ticket.reference

    conversation = "widget:cust-flood"
    await hand_off("cust-flood")  # queued: every agent sees it

    stuck = _StuckClient(port, tokens["stuck"])
    await asyncio.get_running_loop().run_in_executor(None, stuck.open)
    try:
        async with websockets.connect(f"ws://127.0.0.1:{port}/webhooks/agent/ws",
                                      max_size=None) as ana:
            await ana.send(json.dumps({"type": "hello", "token": tokens["ana"]}))
            assert json.loads(await ana.recv())["type"] == "welcome"
            await _until(lambda: _async(len(console._connections) == 2))
            slow = next(c for c in console._connections if c.agent.username == "stuck")
            transport = slow.ws.io_proto.transport
            transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF,
                                                          4096)
            transport.set_write_buffer_limits(high=8192)

            # a customer types a lot: every turn publishes on the bus
            text = "x" * 20000
            slowest = 0.0
            for n in range(40):
                started = time.monotonic()
                await bus().publish("customer.message", {
                    "conversation_id": conversation,
                    "message": {"id": n, "sender": "customer", "text": text}})
                slowest = max(slowest, time.monotonic() - started)
                await asyncio.sleep(0.01)
            assert slowest < 0.05, f"publish waited {slowest:.3f} s"
            got = []
            while len(got) < 40:
                frame = json.loads(await asyncio.wait_for(ana.recv(), 5))
                if frame["type"] == "customer.message":
                    got.append(frame["message"]["id"])
            assert got == list(range(40))

            # the stuck socket is closed within the send timeout (+ slack) ...
            await _until(lambda: _async(slow not in console._connections), timeout=5)
            assert slow.closed
            assert any("Stuck" not in r.getMessage() and "stuck's console socket" in
                       r.getMessage() for r in caplog.records), caplog.text
            # ... and the other agent's notifications keep their latency
            started = time.monotonic()
            reference = await hand_off("cust-next")
            while True:
                frame = json.loads(await asyncio.wait_for(ana.recv(), 5))
                if frame["type"] == "ticket" and frame["ticket"]["reference"] == reference:
                    break
            assert frame["action"] == "handoff.recorded" and isinstance(frame["feed_id"], int)
            assert time.monotonic() - started < 2.0
    finally:
        stuck.close()


async def _async(value: Any) -> Any:
    return value
