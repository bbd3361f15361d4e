"""The push sender in this process, on a fresh database: two senders (two Rasa processes)
draining the same outbox send every push exactly once; a handoff that rolls back stages
nothing."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, List

import pytest
from sqlalchemy import select

from bot import db
from bot.push.keys import generate_pair
from bot.push.models import PushOutbox
from bot.push.outbox import stage_push
from bot.push.sender import PushSender
from bot.push.store import PushStore, clean_subscription
from bot.support.agents import AgentStore
from bot.support.ops import SupportStore
from tests.push.conftest import PushService

PASSWORD = "correct horse battery staple"


def settings() -> Any:
    private, public = generate_pair()
    return SimpleNamespace(
        enabled=True, stage=True, vapid_private_key=private, vapid_public_key=public,
        vapid_subject="mailto:ops@shop.example", ttl=60, timeout=5.0, max_attempts=3,
        backoff_base=0.05, backoff_max=0.2, poll_interval=0.05, lease=30.0,
        allowed_hosts=())


async def test_two_senders_send_each_push_once(tmp_path: Any, push_service: PushService) -> None:
    url = f"sqlite:///{tmp_path / 'support.db'}"
    agents = AgentStore.from_url(url)
    await agents.create_schema()
    push = PushStore(agents.engine)
    devices = [push_service.device() for _ in range(3)]
    agent = await agents.do_create_agent("kim", "Kim", PASSWORD)
    for device in devices:
        await push.do_subscribe(agent.id, clean_subscription(device.subscription(), (), True))
    async with db.write_session(db.session_factory(agents.engine)) as session:
        connection = await session.connection()
        for n in range(10):
            staged = await connection.run_sync(lambda sync, n=n: stage_push(
                sync, kind="test", agent_ids=None, payload={"type": "test", "subject": str(n)},
                urgency="normal", now=db.utcnow(), dedupe=f"t{n}"))
            assert staged == 3
    config = settings()
    senders = [PushSender(db.make_engine(url), config, owner=f"process-{i}") for i in range(2)]
    try:
        for _ in range(20):
            done = await asyncio.gather(*(s.run_once() for s in senders))
            if not any(done):
                break
    finally:
        for sender in senders:
            await sender.stop()
            await sender._engine.dispose()
    for device in devices:
        got = sorted(device.decrypt(r.body)["subject"] for r in push_service.for_device(device))
        assert got == sorted(str(n) for n in range(10))  # each once, none lost
    async with db.read_session(db.session_factory(agents.engine)) as session:
        rows: List[Any] = (await session.execute(select(PushOutbox))).scalars().all()
    assert {r.status for r in rows} == {"sent"} and len(rows) == 30
    assert {r.attempts for r in rows} == {1}
    await agents.dispose()


async def test_pushes_are_staged_with_the_change_or_not_at_all(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch, push_service: PushService) -> None:
    from bot.settings import reset_settings_cache
    from bot.support.models import AuditLog

    monkeypatch.delenv("PUSH_ENABLED", raising=False)  # no VAPID keys here: still staged
    reset_settings_cache()
    url = f"sqlite:///{tmp_path / 'support.db'}"
    agents, support = AgentStore.from_url(url), SupportStore.from_url(url)
    await agents.create_schema()
    push = PushStore(agents.engine)
    agent = await agents.do_create_agent("lea", "Lea", PASSWORD)
    await push.do_subscribe(agent.id, clean_subscription(
        push_service.device().subscription(), (), True))
    ticket, _ = await support.do_handoff("widget:x", summary="Parcel  lost\nagain",
                                         category="ORDER", priority="urgent",
                                         reason="human_requested")
    [row] = await push.outbox()
    assert (row["kind"], row["ticket"], row["urgency"], row["status"]) == (
        "new_ticket", ticket.reference, "high", "queued")
    assert row["payload"] == {"type": "ticket.new", "ticket": ticket.reference,
                              "subject": "Parcel lost again", "priority": "urgent",
                              "category": "ORDER"}

    # a change that fails after its audit row: its push goes with it
    with pytest.raises(RuntimeError):
        async with db.write_session(db.session_factory(agents.engine)) as session:
            session.add(AuditLog(at=db.utcnow(), actor="bot", action="handoff.recorded",
                                 object_type="handoff", object_id="99",
                                 data={"ticket": ticket.reference}))
            await session.flush()
            staged = (await session.execute(select(PushOutbox.id))).scalars().all()
            assert len(staged) == 2  # in this transaction
            raise RuntimeError("the change fails after its audit row")
    assert len(await push.outbox()) == 1

    monkeypatch.setenv("PUSH_ENABLED", "false")
    reset_settings_cache()
    await support.do_handoff("widget:y", summary="more", category="ORDER", priority="low",
                             reason="human_requested")
    assert len(await push.outbox()) == 1  # PUSH_ENABLED=false: nothing staged
    reset_settings_cache()
    await support.dispose()
    await agents.dispose()
