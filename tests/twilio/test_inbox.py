"""The Twilio webhook inbox on SQLite and PostgreSQL: accept + dedupe in one transaction,
atomic claims (two processes never take one row), order per conversation, back-off, dead
letters, replay, leases taken over after a crash, release on shutdown; Retry-After parsing.
"""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any, AsyncIterator, Dict, List

import pytest

from bot import db
from bot.twilio.client import parse_retry_after
from bot.twilio.inbox import InboxConfig, InboxProcessor, InboxStore

FAST = InboxConfig(max_attempts=3, backoff_base=10.0, backoff_max=25.0, lease=5.0, poll=0.05,
                   drain_timeout=1.0)


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[InboxStore]:
    store = InboxStore.from_url(db_url)
    await store.create_schema()
    try:
        yield store
    finally:
        await store.dispose()


async def _add(store: InboxStore, key: str, conversation: str = "CH1", **payload: Any) -> int:
    row_id, fresh = await store.do_accept("conversations", [key], f"conversation:{conversation}",
                                          {"key": key, **payload})
    assert fresh and row_id is not None
    return row_id


async def test_accept_stores_once_per_key(store: InboxStore) -> None:
    first, fresh = await store.do_accept(
        "conversations", ["sid:onMessageAdded:IM1", "webhook:tok-1"], "conversation:CH1",
        {"EventType": "onMessageAdded", "MessageSid": "IM1", "Body": "Hello"})
    assert fresh and first
    # Twilio's retry (same token), another token for the same message: no second row
    assert await store.do_accept("conversations", ["webhook:tok-1"], "conversation:CH1",
                                 {"x": 1}) == (None, False)
    assert await store.do_accept("conversations", ["sid:onMessageAdded:IM1", "webhook:tok-2"],
                                 "conversation:CH1", {"x": 2}) == (None, False)
    # no key at all: the payload is the key
    assert (await store.do_accept("voice", [], "call:CA1", {"CallSid": "CA1"}))[1]
    assert not (await store.do_accept("voice", [], "call:CA1", {"CallSid": "CA1"}))[1]
    items = await store.items()
    assert [(i.kind, i.dedupe_key, i.status, i.attempts) for i in items] == [
        ("conversations", "sid:onMessageAdded:IM1", "pending", 0),
        ("voice", items[1].dedupe_key, "pending", 0)]
    assert items[0].payload["Body"] == "Hello"
    assert await store.counts() == {"pending": 2, "done": 0, "dead": 0}


async def test_claims_keep_the_order_of_a_conversation(store: InboxStore) -> None:
    a1 = await _add(store, "a1", "CHa")
    a2 = await _add(store, "a2", "CHa")
    b1 = await _add(store, "b1", "CHb")
    first = await store.do_claim("w1", 30)
    assert first is not None and first.id == a1 and first.attempts == 1
    second = await store.do_claim("w1", 30)
    assert second is not None and second.id == b1, "a2 waits for a1; CHb goes on"
    assert await store.do_claim("w1", 30) is None
    assert await store.do_done(first, "w1", "delivered")
    third = await store.do_claim("w1", 30)
    assert third is not None and third.id == a2
    assert await store.do_claim("w1", 30, kinds=["voice"]) is None
    assert await store.do_claim("w1", 30, kinds=[]) is None


async def test_two_processes_never_claim_one_row_twice(db_url: str, store: InboxStore) -> None:
    ids = [await _add(store, f"k{i}", f"CH{i}") for i in range(12)]
    other = InboxStore.from_url(db_url)
    try:
        async def claim_all(s: InboxStore, worker: str) -> List[int]:
            taken = []
            while True:
                item = await s.do_claim(worker, 30)
                if item is None:
                    return taken
                taken.append(item.id)

        one, two = await asyncio.gather(claim_all(store, "p1"), claim_all(other, "p2"))
    finally:
        await other.dispose()
    assert sorted(one + two) == ids, (one, two)
    assert not set(one) & set(two)


async def test_backoff_dead_letter_and_replay(store: InboxStore) -> None:
    row = await _add(store, "x", "CHx")
    later = await _add(store, "y", "CHx")
    now = db.utcnow()
    item = await store.do_claim("w", 5, now=now)
    assert item is not None and item.id == row
    assert await store.do_fail(item, "w", "OperationalError: database is locked", FAST) == \
        "pending"
    after = await store.get(row)
    wait = (after.next_attempt_at - db.utcnow()).total_seconds()
    assert 7.0 <= wait <= 10.5, wait  # 10 s × 2^0, jittered down by at most 25 %
    assert after.last_error.startswith("OperationalError") and after.claimed_by is None
    assert await store.do_claim("w", 5) is None, "not due; the conversation waits"
    item = await store.do_claim("w", 5, now=now + timedelta(seconds=11))
    assert item is not None and item.attempts == 2
    assert await store.do_fail(item, "w", "boom", FAST) == "pending"
    wait = ((await store.get(row)).next_attempt_at - db.utcnow()).total_seconds()
    assert 14.0 <= wait <= 20.5, wait  # 10 × 2^1
    item = await store.do_claim("w", 5, now=now + timedelta(seconds=60))
    assert item is not None and item.attempts == 3
    assert await store.do_fail(item, "w", "boom 3", FAST) == "dead"
    dead = await store.get(row)
    assert (dead.status, dead.attempts, dead.last_error) == ("dead", 3, "boom 3")
    # a dead letter no longer holds its conversation back
    nxt = await store.do_claim("w", 5)
    assert nxt is not None and nxt.id == later
    assert await store.do_done(nxt, "w", None)

    with pytest.raises(ValueError, match="not dead"):
        await store.do_replay(later)
    with pytest.raises(LookupError):
        await store.do_replay(99999)
    with pytest.raises(ValueError):
        await store.do_replay()
    assert await store.do_replay(row) == [row]
    again = await store.get(row)
    assert (again.status, again.attempts) == ("pending", 0)
    assert await store.do_replay(dead=True) == []
    item = await store.do_claim("w", 5)
    assert item is not None and item.id == row and item.attempts == 1
    assert await store.do_done(item, "w", "delivered")
    assert await store.counts() == {"pending": 0, "done": 2, "dead": 0}
    assert await store.do_prune(timedelta(seconds=-1)) == 2


async def test_a_lease_that_ran_out_is_taken_over(store: InboxStore) -> None:
    row = await _add(store, "lease")
    now = db.utcnow()
    first = await store.do_claim("dead-process", 5, now=now)
    assert first is not None
    assert await store.do_claim("new-process", 5, now=now + timedelta(seconds=1)) is None
    second = await store.do_claim("new-process", 5, now=now + timedelta(seconds=6))
    assert second is not None and second.id == row and second.attempts == 2
    assert not await store.do_done(first, "dead-process", "late"), "no longer its row"
    assert await store.do_fail(first, "dead-process", "late", FAST) is None
    assert await store.do_done(second, "new-process", "delivered")
    assert (await store.get(row)).result == "delivered"


async def test_processor_processes_rows_left_before_it_started(store: InboxStore) -> None:
    for i in range(3):
        await _add(store, f"left-{i}", "CHleft", n=i)
    seen: List[int] = []

    async def handler(payload: Dict[str, Any]) -> str:
        seen.append(payload["n"])
        return "ok"

    processor = InboxProcessor(store, FAST)
    processor.register("conversations", handler)
    processor.start()
    try:
        for _ in range(100):
            if len(seen) == 3:
                break
            await asyncio.sleep(0.05)
        assert seen == [0, 1, 2]
        assert await processor.accept("conversations", ["new"], "conversation:CHleft", {"n": 3})
        for _ in range(100):
            if len(seen) == 4:
                break
            await asyncio.sleep(0.02)
        assert seen == [0, 1, 2, 3], "woken at once by a webhook of this process"
    finally:
        await processor.stop()
    assert await store.counts() == {"pending": 0, "done": 4, "dead": 0}


async def test_shutdown_lets_the_current_row_finish_or_releases_it(store: InboxStore) -> None:
    started, finish = asyncio.Event(), asyncio.Event()

    async def slow(payload: Dict[str, Any]) -> str:
        started.set()
        await finish.wait()
        return "finished"

    processor = InboxProcessor(store, FAST)
    processor.register("conversations", slow)
    processor.start()
    row = await _add(store, "slow-1")
    await asyncio.wait_for(started.wait(), 5)
    asyncio.get_running_loop().call_later(0.2, finish.set)
    await processor.stop(timeout=3)  # finishes within the drain time
    assert (await store.get(row)).status == "done"

    started.clear()
    finish.clear()
    processor.start()
    row = await _add(store, "slow-2")
    await asyncio.wait_for(started.wait(), 5)
    await processor.stop(timeout=0.1)  # does not finish: cancelled, released
    released = await store.get(row)
    assert (released.status, released.claimed_by, released.attempts) == ("pending", None, 0)
    assert released.next_attempt_at <= db.utcnow()
    assert await store.do_claim("next-start", 5) is not None


async def test_handler_failures_are_retried_then_dead(store: InboxStore) -> None:
    calls: List[int] = []

    async def broken(payload: Dict[str, Any]) -> None:
        calls.append(1)
        raise RuntimeError("handler broke")

    config = InboxConfig(max_attempts=2, backoff_base=0.01, backoff_max=0.01, lease=5)
    processor = InboxProcessor(store, config)
    processor.register("conversations", broken)
    row = await _add(store, "broken")
    ran = 0
    for _ in range(100):
        ran += await processor.drain()
        if (await store.get(row)).status == "dead":
            break
        await asyncio.sleep(0.02)
    assert ran == 2
    item = await store.get(row)
    assert (item.status, item.attempts, item.last_error) == ("dead", 2,
                                                             "RuntimeError: handler broke")
    assert len(calls) == 2 and await processor.drain() == 0


def test_retry_after_values() -> None:
    now = datetime(2026, 12, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True),
                             now=now) == 30.0
    assert parse_retry_after("Tue, 01 Dec 2026 11:00:00 GMT", now=now) == 0.0  # past
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("soon") is None
