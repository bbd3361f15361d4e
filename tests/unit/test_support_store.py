"""Tests of bot.db and the support store (bot.support), on SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, List, Tuple
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from bot import db
from bot.support import (
    AuditView,
    CallbackView,
    HandoffView,
    NotFound,
    StateError,
    SupportStore,
    TicketView,
)
from bot.support import ops
from bot.support.models import AuditLog, Callback, Handoff, Ticket

T0 = datetime(2025, 3, 10, 12, 0, 0, tzinfo=timezone.utc)
BERLIN = ZoneInfo("Europe/Berlin")


class Clock:
    """A manual clock installed as ``bot.db.utcnow``."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def tick(self, **delta: float) -> datetime:
        self.now = self.now + timedelta(**delta)
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock(T0)
    monkeypatch.setattr(db, "utcnow", fake)
    return fake


class Recorder:
    """A listener that records ``(event, payload)`` calls."""

    def __init__(self) -> None:
        self.calls: List[Tuple[str, Dict[str, Any]]] = []

    async def __call__(self, event: str, payload: Dict[str, Any]) -> None:
        self.calls.append((event, payload))

    @property
    def events(self) -> List[str]:
        return [event for event, _ in self.calls]


@pytest.fixture
def recorder(support_store: SupportStore) -> Recorder:
    listener = Recorder()
    support_store.add_listener(listener)
    return listener


async def rows(store: SupportStore, model: Any) -> List[Dict[str, Any]]:
    """All rows of a table, by primary key, as plain dicts."""
    table = model.__table__
    async with store.engine.connect() as connection:
        result = await connection.execute(select(table).order_by(*table.primary_key.columns))
        return [dict(row._mapping) for row in result]


async def audit_rows(store: SupportStore) -> List[Dict[str, Any]]:
    return [
        {key: row[key] for key in ("at", "actor", "action", "object_type", "object_id", "data")}
        for row in await rows(store, AuditLog)
    ]


async def make_ticket(store: SupportStore, conversation_id: str = "conv-1", **kw: Any) -> TicketView:
    kw.setdefault("summary", "Parcel arrived damaged")
    kw.setdefault("category", "delivery")
    kw.setdefault("priority", "normal")
    return await store.do_create_ticket(conversation_id, **kw)


# ------------------------------------------------------------------- bot.db


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:////abs/path.db", "sqlite+aiosqlite:////abs/path.db"),
        ("sqlite:///relative.db", "sqlite+aiosqlite:///relative.db"),
        ("sqlite+aiosqlite:////abs/path.db", "sqlite+aiosqlite:////abs/path.db"),
        ("postgresql://user@127.0.0.1:5432/test", "postgresql+asyncpg://user@127.0.0.1:5432/test"),
        ("postgres://u:p%40ss@host/db", "postgresql+asyncpg://u:p%40ss@host/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
    ],
)
def test_async_url_maps_to_async_drivers(url: str, expected: str) -> None:
    assert db.async_url(url) == expected


@pytest.mark.parametrize(
    "url",
    ["mysql://u@h/db", "postgresql+psycopg2://u@h/db", "sqlite+pysqlite:///x.db", "nonsense", ""],
)
def test_async_url_rejects_other_urls(url: str) -> None:
    with pytest.raises(ValueError, match="URL"):
        db.async_url(url)


async def test_make_engine_sqlite_creates_directory_and_sets_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "x.db"
    engine = db.make_engine(f"sqlite:///{path}")
    try:
        assert path.parent.is_dir()
        assert not path.exists()  # nothing connects until first use
        async with engine.connect() as connection:
            assert (await connection.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await connection.execute(text("PRAGMA foreign_keys"))).scalar() == 1
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_make_engine_postgres_options_become_server_settings(postgres_url: str) -> None:
    engine = db.make_engine(postgres_url)
    try:
        async with engine.connect() as connection:
            schema = (await connection.execute(text("SELECT current_schema()"))).scalar()
        assert postgres_url.endswith(schema)
    finally:
        await engine.dispose()


def test_make_engine_rejects_unknown_pg_options() -> None:
    with pytest.raises(ValueError, match="options"):
        db.make_engine("postgresql://u@127.0.0.1/db?options=--bogus")


async def test_utc_datetime_rejects_naive(support_store: SupportStore, clock: Clock) -> None:
    ticket = await make_ticket(support_store)
    async with db.write_session(db.session_factory(support_store.engine)) as session:
        row = (await session.execute(select(Ticket))).scalar_one()
        assert row.created_at == T0 and row.created_at.tzinfo is not None
        row.updated_at = datetime(2025, 1, 1)
        with pytest.raises(Exception, match="[Nn]aive"):
            await session.flush()
    assert (await support_store.get_ticket(ticket.reference)).updated_at == T0


# ----------------------------------------------------------------- tickets


async def test_create_ticket_stores_row_and_audit(
    support_store: SupportStore, recorder: Recorder, clock: Clock
) -> None:
    ticket = await support_store.do_create_ticket(
        "conv-1",
        "  Parcel arrived damaged  ",
        "delivery",
        "high",
        contact_email="anna@example.com",
        customer_id="cust-anna",
        details={"order_number": "104233", "slots": {"order": "104233"}},
        actor="customer:cust-anna",
    )

    assert ticket == TicketView(
        id=1,
        reference="T-000001",
        conversation_id="conv-1",
        customer_id="cust-anna",
        contact_email="anna@example.com",
        summary="Parcel arrived damaged",
        category="delivery",
        priority="high",
        status="open",
        source="bot",
        details={"order_number": "104233", "slots": {"order": "104233"}},
        created_at=T0,
        updated_at=T0,
        resolved_at=None,
    )
    assert await rows(support_store, Ticket) == [
        {
            "id": 1,
            "reference": "T-000001",
            "conversation_id": "conv-1",
            "customer_id": "cust-anna",
            "contact_email": "anna@example.com",
            "summary": "Parcel arrived damaged",
            "category": "delivery",
            "priority": "high",
            "status": "open",
            "source": "bot",
            "details": {"order_number": "104233", "slots": {"order": "104233"}},
            "created_at": T0,
            "updated_at": T0,
            "assignee_id": None,
            "queued_at": None,
            "first_response_at": None,
            "resolved_at": None,
        }
    ]
    assert await audit_rows(support_store) == [
        {
            "at": T0,
            "actor": "customer:cust-anna",
            "action": "ticket.created",
            "object_type": "ticket",
            "object_id": "T-000001",
            "data": {
                "conversation_id": "conv-1",
                "customer_id": "cust-anna",
                "category": "delivery",
                "priority": "high",
                "status": "open",
                "source": "bot",
            },
        }
    ]
    assert recorder.events == ["ticket.created"]
    payload = recorder.calls[0][1]
    assert payload["ticket"] == ticket
    assert payload["actor"] == "customer:cust-anna"
    assert isinstance(payload["audit"], AuditView)
    assert payload["audit"].object_id == "T-000001"
    assert ticket.is_open


async def test_create_ticket_defaults_and_closed_status(
    support_store: SupportStore, clock: Clock
) -> None:
    first = await make_ticket(support_store, summary="s", category="faq", priority="low")
    second = await make_ticket(
        support_store, status="resolved", source="handoff", details=None, contact_email=""
    )
    assert (first.reference, second.reference) == ("T-000001", "T-000002")
    assert first.details == {} and first.contact_email is None and first.customer_id is None
    assert first.resolved_at is None
    assert second.status == "resolved" and second.resolved_at == T0 and not second.is_open
    assert second.source == "handoff"
    assert second.contact_email is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"summary": "   "}, "summary"),
        ({"summary": None}, "summary"),
        ({"priority": "critical"}, "priority must be one of low, normal, high, urgent"),
        ({"status": "pending"}, "status must be one of"),
        ({"category": ""}, "category"),
        ({"contact_email": "not-an-email"}, "contact_email"),
        ({"details": ["not", "a", "dict"]}, "details must be a dict"),
        ({"details": {"when": datetime(2025, 1, 1)}}, "JSON"),
        ({"conversation_id": ""}, "conversation_id"),
        ({"actor": ""}, "actor"),
    ],
)
async def test_create_ticket_validation(
    support_store: SupportStore, recorder: Recorder, kwargs: Dict[str, Any], message: str
) -> None:
    args: Dict[str, Any] = {
        "conversation_id": "conv-1",
        "summary": "Where is my parcel?",
        "category": "delivery",
        "priority": "normal",
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        await support_store.do_create_ticket(**args)
    assert await rows(support_store, Ticket) == []
    assert await rows(support_store, AuditLog) == []
    assert recorder.calls == []


async def test_update_ticket_status_priority_details(
    support_store: SupportStore, recorder: Recorder, clock: Clock
) -> None:
    ticket = await make_ticket(support_store, details={"order_number": "104233", "triage": "a"})
    t1 = clock.tick(minutes=5)
    updated = await support_store.do_update_ticket(
        ticket.reference,
        status="resolved",
        priority="urgent",
        details_update={"triage": "b", "note": "refund issued"},
        actor="agent:7",
    )
    assert updated == dataclasses.replace(
        ticket,
        status="resolved",
        priority="urgent",
        details={"order_number": "104233", "triage": "b", "note": "refund issued"},
        updated_at=t1,
        resolved_at=t1,
    )
    [row] = await rows(support_store, Ticket)
    assert (row["status"], row["priority"], row["updated_at"], row["resolved_at"]) == (
        "resolved",
        "urgent",
        t1,
        t1,
    )
    assert row["details"] == {"order_number": "104233", "triage": "b", "note": "refund issued"}
    audits = await audit_rows(support_store)
    assert audits[1:] == [
        {
            "at": t1,
            "actor": "agent:7",
            "action": "ticket.updated",
            "object_type": "ticket",
            "object_id": "T-000001",
            "data": {
                "status": {"from": "open", "to": "resolved"},
                "priority": {"from": "normal", "to": "urgent"},
                "details_keys": ["note", "triage"],
            },
        }
    ]
    assert recorder.events == ["ticket.created", "ticket.updated"]
    assert recorder.calls[1][1]["ticket"] == updated

    # Re-opening clears resolved_at.
    t2 = clock.tick(minutes=1)
    reopened = await support_store.do_update_ticket(ticket.reference, status="open")
    assert (reopened.status, reopened.resolved_at, reopened.updated_at) == ("open", None, t2)


async def test_update_ticket_raise_only_never_lowers(
    support_store: SupportStore, recorder: Recorder, clock: Clock
) -> None:
    ticket = await make_ticket(support_store, priority="high")
    clock.tick(minutes=1)

    same = await support_store.do_update_ticket(ticket.reference, priority="low", raise_only=True)
    assert same == ticket  # nothing changed: no audit row, no event
    assert len(await rows(support_store, AuditLog)) == 1
    assert recorder.events == ["ticket.created"]

    raised = await support_store.do_update_ticket(
        ticket.reference, priority="urgent", raise_only=True
    )
    assert raised.priority == "urgent"

    lowered = await support_store.do_update_ticket(ticket.reference, priority="low")
    assert lowered.priority == "low"

    assert [a["data"] for a in await audit_rows(support_store)][1:] == [
        {"priority": {"from": "high", "to": "urgent"}},
        {"priority": {"from": "urgent", "to": "low"}},
    ]
    assert recorder.events == ["ticket.created", "ticket.updated", "ticket.updated"]


async def test_update_ticket_without_effect_writes_nothing(
    support_store: SupportStore, recorder: Recorder, clock: Clock
) -> None:
    ticket = await make_ticket(support_store, details={"a": 1})
    clock.tick(minutes=1)
    result = await support_store.do_update_ticket(
        ticket.reference, status="open", priority="normal", details_update={"a": 1}
    )
    assert result == ticket
    assert len(await rows(support_store, AuditLog)) == 1
    assert recorder.events == ["ticket.created"]


async def test_update_ticket_errors(support_store: SupportStore, recorder: Recorder) -> None:
    ticket = await make_ticket(support_store)
    with pytest.raises(ValueError, match="needs status, priority or details_update"):
        await support_store.do_update_ticket(ticket.reference)
    with pytest.raises(ValueError, match="status must be one of"):
        await support_store.do_update_ticket(ticket.reference, status="done")
    with pytest.raises(ValueError, match="priority must be one of"):
        await support_store.do_update_ticket(ticket.reference, priority="asap")
    with pytest.raises(ValueError, match="details_update must be a dict"):
        await support_store.do_update_ticket(ticket.reference, details_update="x")  # type: ignore[arg-type]
    with pytest.raises(NotFound, match="T-999999"):
        await support_store.do_update_ticket("T-999999", status="closed")
    assert recorder.events == ["ticket.created"]
    assert len(await rows(support_store, AuditLog)) == 1


async def test_get_ticket_and_not_found(support_store: SupportStore) -> None:
    ticket = await make_ticket(support_store)
    assert await support_store.get_ticket("T-000001") == ticket
    assert await support_store.get_ticket(" t-000001 ") == ticket
    for reference in ("T-000002", "", "nonsense"):
        with pytest.raises(NotFound):
            await support_store.get_ticket(reference)
    assert issubclass(NotFound, LookupError)


async def test_open_ticket_for_conversation(support_store: SupportStore, clock: Clock) -> None:
    assert await support_store.open_ticket_for_conversation("conv-1") is None
    first = await make_ticket(support_store, "conv-1")
    clock.tick(minutes=1)
    second = await make_ticket(support_store, "conv-1")
    clock.tick(minutes=1)
    await make_ticket(support_store, "conv-2")
    assert await support_store.open_ticket_for_conversation("conv-1") == second

    await support_store.do_update_ticket(second.reference, status="resolved")
    found = await support_store.open_ticket_for_conversation("conv-1")
    assert found is not None and found.reference == first.reference

    await support_store.do_update_ticket(first.reference, status="closed")
    assert await support_store.open_ticket_for_conversation("conv-1") is None


async def test_concurrent_create_ticket_gives_distinct_references(
    support_store: SupportStore, recorder: Recorder
) -> None:
    tickets = await asyncio.gather(
        *(make_ticket(support_store, f"conv-{i}", summary=f"Issue {i}") for i in range(20))
    )
    references = {ticket.reference for ticket in tickets}
    assert len(references) == 20
    assert references == {f"T-{i:06d}" for i in range(1, 21)}
    assert all(t.reference == f"T-{t.id:06d}" for t in tickets)
    assert len(await rows(support_store, Ticket)) == 20
    assert sorted(a["object_id"] for a in await audit_rows(support_store)) == sorted(references)
    assert len(recorder.calls) == 20


# -------------------------------------------------------------- listeners


async def test_listener_runs_after_commit(support_store: SupportStore) -> None:
    seen: List[Any] = []

    async def listener(event: str, payload: Dict[str, Any]) -> None:
        # A brand-new session must already see the row: the commit happened.
        seen.append(await support_store.get_ticket(payload["ticket"].reference))
        seen.append(await support_store.audit_log("ticket", payload["ticket"].reference))

    support_store.add_listener(listener)
    ticket = await make_ticket(support_store)
    assert seen[0] == ticket
    assert [a.action for a in seen[1]] == ["ticket.created"]


async def test_listener_not_called_when_transaction_fails(
    support_store: SupportStore, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_audit = ops._audit

    async def broken_audit(session: Any, **kwargs: Any) -> AuditView:
        kwargs["actor"] = None  # NOT NULL violation: the database rejects the flush
        return await real_audit(session, **kwargs)

    monkeypatch.setattr(ops, "_audit", broken_audit)
    with pytest.raises(IntegrityError):
        await make_ticket(support_store)
    monkeypatch.undo()

    assert recorder.calls == []
    assert await rows(support_store, Ticket) == []  # the ticket INSERT was rolled back
    assert await rows(support_store, AuditLog) == []
    # The store is still usable afterwards.
    assert (await make_ticket(support_store)).reference.startswith("T-")


async def test_listener_not_called_when_action_raises_mid_transaction(
    support_store: SupportStore, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticket = await make_ticket(support_store)

    async def failing_audit(session: Any, **kwargs: Any) -> AuditView:
        await session.flush()  # the ticket changes reached the database ...
        raise RuntimeError("boom")  # ... and must be rolled back

    monkeypatch.setattr(ops, "_audit", failing_audit)
    with pytest.raises(RuntimeError, match="boom"):
        await support_store.do_update_ticket(ticket.reference, status="closed")
    with pytest.raises(RuntimeError, match="boom"):
        await support_store.do_record_handoff("conv-1", ticket.reference, "asked", "high")
    monkeypatch.undo()

    assert recorder.events == ["ticket.created"]
    assert await support_store.get_ticket(ticket.reference) == ticket
    assert await rows(support_store, Handoff) == []


async def test_listener_errors_are_logged_not_raised(
    support_store: SupportStore, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(event: str, payload: Dict[str, Any]) -> None:
        raise RuntimeError("listener exploded")

    support_store.remove_listener(recorder)
    support_store.add_listener(broken)
    support_store.add_listener(recorder)
    with caplog.at_level(logging.ERROR, logger="bot.support.ops"):
        ticket = await make_ticket(support_store)
    assert ticket.reference == "T-000001"
    assert recorder.events == ["ticket.created"]  # later listeners still run
    assert "listener exploded" in caplog.text
    assert "ticket.created" in caplog.text


# -------------------------------------------------------------- call-backs


async def test_schedule_callback_stores_utc_and_audits(
    support_store: SupportStore, recorder: Recorder, clock: Clock
) -> None:
    local = datetime(2025, 3, 11, 15, 30, tzinfo=BERLIN)  # 14:30 UTC
    callback = await support_store.do_schedule_callback(
        "conv-1",
        "+4915112345678",
        local,
        "Europe/Berlin",
        topic="  Damaged parcel  ",
        customer_id="cust-anna",
        actor="customer:cust-anna",
    )
    utc = datetime(2025, 3, 11, 14, 30, tzinfo=timezone.utc)
    assert callback == CallbackView(
        id=1,
        reference="C-000001",
        conversation_id="conv-1",
        customer_id="cust-anna",
        phone="+4915112345678",
        scheduled_for=utc,
        customer_tz="Europe/Berlin",
        status="scheduled",
        topic="Damaged parcel",
        created_at=T0,
        updated_at=T0,
    )
    assert callback.scheduled_for.tzinfo == timezone.utc
    assert callback.scheduled_local == local
    assert callback.scheduled_local.hour == 15

    assert await rows(support_store, Callback) == [
        {
            "id": 1,
            "reference": "C-000001",
            "conversation_id": "conv-1",
            "customer_id": "cust-anna",
            "phone": "+4915112345678",
            "scheduled_for": utc,
            "customer_tz": "Europe/Berlin",
            "status": "scheduled",
            "topic": "Damaged parcel",
            "created_at": T0,
            "updated_at": T0,
        }
    ]
    # Stored as naive UTC on every backend.
    async with support_store.engine.connect() as connection:
        raw = (await connection.execute(text("SELECT scheduled_for FROM callbacks"))).scalar()
    if isinstance(raw, str):
        assert raw.startswith("2025-03-11 14:30:00")
    else:
        assert raw == datetime(2025, 3, 11, 14, 30)

    assert await audit_rows(support_store) == [
        {
            "at": T0,
            "actor": "customer:cust-anna",
            "action": "callback.scheduled",
            "object_type": "callback",
            "object_id": "C-000001",
            "data": {
                "conversation_id": "conv-1",
                "customer_id": "cust-anna",
                "scheduled_for": "2025-03-11T14:30:00+00:00",
                "customer_tz": "Europe/Berlin",
            },
        }
    ]
    assert recorder.events == ["callback.scheduled"]
    assert recorder.calls[0][1]["callback"] == callback
    assert await support_store.get_callback("c-000001") == callback


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"phone": "015112345678"}, "E.164"),
        ({"phone": "+49 151 12345678"}, "E.164"),
        ({"phone": "+0151123456"}, "E.164"),
        ({"phone": "+12345"}, "E.164"),
        ({"phone": "+1234567890123456"}, "E.164"),
        ({"scheduled_for": datetime(2025, 3, 11, 15, 30)}, "timezone-aware"),
        ({"scheduled_for": "2025-03-11T15:30:00+01:00"}, "must be a datetime"),
        ({"customer_tz": "Mars/Olympus"}, "IANA"),
        ({"customer_tz": ""}, "customer_tz"),
        ({"conversation_id": " "}, "conversation_id"),
    ],
)
async def test_schedule_callback_validation(
    support_store: SupportStore, recorder: Recorder, kwargs: Dict[str, Any], message: str
) -> None:
    args: Dict[str, Any] = {
        "conversation_id": "conv-1",
        "phone": "+4915112345678",
        "scheduled_for": datetime(2025, 3, 11, 15, 30, tzinfo=BERLIN),
        "customer_tz": "Europe/Berlin",
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        await support_store.do_schedule_callback(**args)
    assert await rows(support_store, Callback) == []
    assert await rows(support_store, AuditLog) == []
    assert recorder.calls == []


async def test_reschedule_callback(
    support_store: SupportStore, recorder: Recorder, clock: Clock
) -> None:
    callback = await support_store.do_schedule_callback(
        "conv-1", "+4915112345678", datetime(2025, 3, 11, 14, 30, tzinfo=timezone.utc),
        "Europe/Berlin",
    )
    t1 = clock.tick(minutes=3)
    new_time = datetime(2025, 3, 12, 9, 0, tzinfo=BERLIN)  # 08:00 UTC
    moved = await support_store.do_reschedule_callback(
        callback.reference, new_time, actor="customer:cust-anna"
    )
    assert moved == dataclasses.replace(
        callback,
        scheduled_for=datetime(2025, 3, 12, 8, 0, tzinfo=timezone.utc),
        updated_at=t1,
    )
    [row] = await rows(support_store, Callback)
    assert (row["scheduled_for"], row["updated_at"], row["status"]) == (
        datetime(2025, 3, 12, 8, 0, tzinfo=timezone.utc),
        t1,
        "scheduled",
    )
    assert (await audit_rows(support_store))[1:] == [
        {
            "at": t1,
            "actor": "customer:cust-anna",
            "action": "callback.rescheduled",
            "object_type": "callback",
            "object_id": "C-000001",
            "data": {
                "scheduled_for": {
                    "from": "2025-03-11T14:30:00+00:00",
                    "to": "2025-03-12T08:00:00+00:00",
                }
            },
        }
    ]
    assert recorder.events == ["callback.scheduled", "callback.rescheduled"]

    # Same time again: nothing to do.
    assert await support_store.do_reschedule_callback(callback.reference, new_time, "bot") == moved
    assert recorder.events == ["callback.scheduled", "callback.rescheduled"]

    with pytest.raises(ValueError, match="timezone-aware"):
        await support_store.do_reschedule_callback(
            callback.reference, datetime(2025, 3, 12, 9, 0), "bot"
        )
    with pytest.raises(NotFound):
        await support_store.do_reschedule_callback("C-000099", new_time, "bot")


async def test_cancel_callback_and_state_errors(
    support_store: SupportStore, recorder: Recorder, clock: Clock
) -> None:
    callback = await support_store.do_schedule_callback(
        "conv-1", "+447700900123", datetime(2025, 3, 11, 10, 0, tzinfo=timezone.utc),
        "Europe/London",
    )
    t1 = clock.tick(minutes=2)
    cancelled = await support_store.do_cancel_callback(callback.reference, actor="customer:cust-ben")
    assert cancelled == dataclasses.replace(callback, status="cancelled", updated_at=t1)
    [row] = await rows(support_store, Callback)
    assert (row["status"], row["updated_at"]) == ("cancelled", t1)
    assert (await audit_rows(support_store))[1:] == [
        {
            "at": t1,
            "actor": "customer:cust-ben",
            "action": "callback.cancelled",
            "object_type": "callback",
            "object_id": "C-000001",
            "data": {"status": {"from": "scheduled", "to": "cancelled"}},
        }
    ]

    with pytest.raises(StateError, match="C-000001 is cancelled"):
        await support_store.do_cancel_callback(callback.reference, "bot")
    with pytest.raises(StateError, match="only scheduled call-backs can be rescheduled"):
        await support_store.do_reschedule_callback(
            callback.reference, datetime(2025, 3, 12, 10, 0, tzinfo=timezone.utc), "bot"
        )
    with pytest.raises(NotFound):
        await support_store.do_cancel_callback("C-000002", "bot")
    assert recorder.events == ["callback.scheduled", "callback.cancelled"]
    assert len(await rows(support_store, AuditLog)) == 2


async def test_active_callbacks_soonest_first_and_filters(support_store: SupportStore) -> None:
    base = datetime(2025, 3, 11, 9, 0, tzinfo=timezone.utc)

    async def book(conversation: str, customer: Any, hours: int) -> CallbackView:
        return await support_store.do_schedule_callback(
            conversation, "+4915112345678", base + timedelta(hours=hours), "Europe/Berlin",
            customer_id=customer,
        )

    late = await book("conv-1", "cust-anna", 5)
    early = await book("conv-1", "cust-anna", 1)
    other = await book("conv-2", "cust-ben", 3)
    gone = await book("conv-1", "cust-anna", 2)
    await support_store.do_cancel_callback(gone.reference, "bot")

    assert [c.reference for c in await support_store.active_callbacks()] == [
        early.reference,
        other.reference,
        late.reference,
    ]
    assert await support_store.active_callbacks(conversation_id="conv-1") == [early, late]
    assert await support_store.active_callbacks(customer_id="cust-ben") == [other]
    assert await support_store.active_callbacks("conv-2", "cust-anna") == []


# ---------------------------------------------------------------- handoffs


async def test_record_handoff_queues_ticket(
    support_store: SupportStore, recorder: Recorder, clock: Clock
) -> None:
    ticket = await make_ticket(support_store)
    t1 = clock.tick(minutes=1)
    handoff = await support_store.do_record_handoff(
        "conv-1", ticket.reference, "customer asked for a human", "high", actor="customer:cust-anna"
    )
    assert handoff == HandoffView(
        id=1,
        conversation_id="conv-1",
        ticket_id=ticket.id,
        ticket_reference="T-000001",
        reason="customer asked for a human",
        priority="high",
        status="queued",
        created_at=t1,
    )
    assert await rows(support_store, Handoff) == [
        {
            "id": 1,
            "conversation_id": "conv-1",
            "ticket_id": ticket.id,
            "reason": "customer asked for a human",
            "priority": "high",
            "status": "queued",
            "created_at": t1,
        }
    ]
    queued = await support_store.get_ticket(ticket.reference)
    assert queued == dataclasses.replace(ticket, status="queued", updated_at=t1)
    assert (await audit_rows(support_store))[1:] == [
        {
            "at": t1,
            "actor": "customer:cust-anna",
            "action": "handoff.recorded",
            "object_type": "handoff",
            "object_id": "1",
            "data": {
                "conversation_id": "conv-1",
                "ticket": "T-000001",
                "reason": "customer asked for a human",
                "priority": "high",
                "ticket_status": {"from": "open", "to": "queued"},
            },
        }
    ]
    assert recorder.events == ["ticket.created", "handoff.recorded"]
    payload = recorder.calls[1][1]
    assert payload["handoff"] == handoff and payload["ticket"] == queued
    # Still "open" in the sense of open_ticket_for_conversation.
    assert await support_store.open_ticket_for_conversation("conv-1") == queued


async def test_record_handoff_errors(support_store: SupportStore, recorder: Recorder) -> None:
    with pytest.raises(NotFound, match="T-000042"):
        await support_store.do_record_handoff("conv-1", "T-000042", "asked", "high")
    ticket = await make_ticket(support_store, status="closed")
    with pytest.raises(StateError, match="T-000001 is closed"):
        await support_store.do_record_handoff("conv-1", ticket.reference, "asked", "high")
    with pytest.raises(ValueError, match="priority"):
        await support_store.do_record_handoff("conv-1", ticket.reference, "asked", "p1")
    with pytest.raises(ValueError, match="reason"):
        await support_store.do_record_handoff("conv-1", ticket.reference, "", "high")
    assert await rows(support_store, Handoff) == []
    assert (await support_store.get_ticket(ticket.reference)).status == "closed"
    assert recorder.events == ["ticket.created"]


# ------------------------------------------------------------ misc/queries


async def test_audit_log_query_filters(support_store: SupportStore, clock: Clock) -> None:
    first = await make_ticket(support_store)
    second = await make_ticket(support_store)
    await support_store.do_update_ticket(first.reference, status="assigned", actor="agent:1")
    callback = await support_store.do_schedule_callback(
        "conv-1", "+4915112345678", T0 + timedelta(days=1), "Europe/Berlin"
    )

    everything = await support_store.audit_log()
    assert [(a.action, a.object_id) for a in everything] == [
        ("ticket.created", first.reference),
        ("ticket.created", second.reference),
        ("ticket.updated", first.reference),
        ("callback.scheduled", callback.reference),
    ]
    assert [a.id for a in everything] == sorted(a.id for a in everything)
    assert [a.action for a in await support_store.audit_log("ticket", first.reference)] == [
        "ticket.created",
        "ticket.updated",
    ]
    assert len(await support_store.audit_log(object_type="ticket")) == 3
    assert len(await support_store.audit_log(object_id=callback.reference)) == 1
    assert everything[2].actor == "agent:1" and everything[2].at == T0


async def test_views_are_frozen_and_detached(support_store: SupportStore) -> None:
    ticket = await make_ticket(support_store, details={"slots": {"a": 1}})
    with pytest.raises(dataclasses.FrozenInstanceError):
        ticket.status = "closed"  # type: ignore[misc]
    ticket.details["slots"]["a"] = 2  # a copy: the database is unaffected
    assert (await support_store.get_ticket(ticket.reference)).details == {"slots": {"a": 1}}


async def test_from_settings_uses_support_db_url(
    db_url: str, isolated_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.settings import reset_settings_cache

    monkeypatch.setenv("SUPPORT_DB_URL", db_url)
    reset_settings_cache()
    store = SupportStore.from_settings()
    try:
        await store.create_schema()
        await store.create_schema()  # idempotent
        ticket = await make_ticket(store)
        assert ticket.reference == "T-000001"
    finally:
        await store.dispose()
    again = SupportStore.from_url(db_url)
    try:
        assert await again.get_ticket("T-000001") == ticket
    finally:
        await again.dispose()


# ------------------------------------------------- capped call-back bookings


def _limits(**overrides: Any) -> Any:
    from bot.twilio.voice_store import CallbackLimits

    return dataclasses.replace(CallbackLimits(), **overrides)


async def _book(store: Any, customer: str = "cust-anna", phone: str = "+4915112345678",
                **kwargs: Any) -> CallbackView:
    options: Dict[str, Any] = {"limits": _limits()}
    options.update(kwargs)
    return await store.do_book_callback(
        f"widget:{customer}", customer, phone, T0 + timedelta(days=1), "Europe/Berlin",
        **options)


async def _callback_rows(store: Any) -> List[Any]:
    async with db.read_session(store._sessions) as session:
        return (await session.execute(select(Callback).order_by(Callback.id))).scalars().all()


@pytest.fixture
def voice_store(support_store: SupportStore) -> Any:
    from bot.twilio.voice_store import VoiceStore

    return VoiceStore(support_store.engine)


async def test_booking_writes_the_callback_and_its_audit_row(
    voice_store: Any, support_store: SupportStore
) -> None:
    booked = await _book(voice_store, topic="refund")
    assert (booked.reference, booked.status, booked.customer_id) == (
        "C-000001", "scheduled", "cust-anna")
    [audit] = await support_store.audit_log("callback", "C-000001")
    assert (audit.actor, audit.action, audit.data["region"]) == (
        "customer:cust-anna", "callback.scheduled", "DE")


@pytest.mark.parametrize(
    ("phone", "kind"),
    [("+19002345678", "country"), ("+12025550123", "country"), ("+499001234567", "number_type"),
     ("+4918012345", "number_type"), ("+447911123456", "country"), ("+4915", "country")],
    ids=["us-premium", "us", "de-premium", "de-shared-cost", "guernsey", "invalid"])
async def test_numbers_we_do_not_call_are_refused(voice_store: Any, phone: str,
                                                  kind: str) -> None:
    from bot.twilio.voice_store import CallbackRefused

    with pytest.raises(CallbackRefused) as info:
        await _book(voice_store, phone=phone)
    assert info.value.kind == kind
    assert await _callback_rows(voice_store) == []


async def test_caps_per_customer_number_and_day(voice_store: Any, support_store: SupportStore,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.twilio.voice_store import CallbackRefused

    clock = Clock(T0)
    monkeypatch.setattr(db, "utcnow", clock)

    async def refused(kind: str, **kwargs: Any) -> None:
        before = len(await _callback_rows(voice_store))
        with pytest.raises(CallbackRefused) as info:
            await _book(voice_store, **kwargs)
        assert info.value.kind == kind
        assert len(await _callback_rows(voice_store)) == before  # nothing stored

    first = await _book(voice_store)
    await _book(voice_store, phone="+4915112345679")
    await refused("open")  # two open ones
    await support_store.do_cancel_callback(first.reference)
    await _book(voice_store, phone="+4915112345670")
    await support_store.do_cancel_callback("C-000003")
    await refused("customer_day", phone="+4915112345671")  # 3 bookings today, cancelled count
    await _book(voice_store, customer="cust-ben")  # the 2nd to +4915112345678 today
    await support_store.do_cancel_callback("C-000004")
    await _book(voice_store, customer="cust-chloe")
    await refused("number_day", customer="cust-dora")  # 3 to this number today
    await refused("day", customer="cust-dora", phone="+4915112345672",
                  limits=_limits(max_per_day=5))
    clock.now = T0 + timedelta(hours=24, seconds=1)  # a day later the daily caps are free
    await support_store.do_cancel_callback("C-000002")
    booked = await _book(voice_store, phone="+4915112345673")
    assert booked.reference == "C-000006"


async def test_concurrent_bookings_cannot_both_pass_a_cap(db_url: str) -> None:
    """Eight bookings of one customer at the same moment (eight connections): two open
    call-backs at most, exactly."""
    from bot.twilio.voice_store import CallbackRefused, VoiceStore

    stores = [VoiceStore.from_url(db_url) for _ in range(4)]
    try:
        await stores[0].create_schema()
        results = await asyncio.gather(*(
            _book(stores[n % 4], phone=f"+49151123456{n:02d}",
                  limits=_limits(max_per_customer_day=10))
            for n in range(8)), return_exceptions=True)
        booked = [r for r in results if isinstance(r, CallbackView)]
        refused = [r for r in results if isinstance(r, CallbackRefused)]
        assert (len(booked), len(refused)) == (2, 6), results
        assert {r.kind for r in refused} == {"open"}
        assert len(await _callback_rows(stores[0])) == 2
    finally:
        for store in stores:
            await store.dispose()


async def test_booking_validates_its_arguments(voice_store: Any) -> None:
    for bad in ({"customer": ""}, {"phone": ""}):
        with pytest.raises(ValueError):
            await _book(voice_store, **bad)
    with pytest.raises(ValueError, match="timezone-aware"):
        await voice_store.do_book_callback("c", "cust", "+4915112345678", datetime(2026, 1, 1),
                                           "Europe/Berlin", limits=_limits())
    with pytest.raises(ValueError, match="time zone"):
        await voice_store.do_book_callback("c", "cust", "+4915112345678", T0, "Mars/Base",
                                           limits=_limits())
