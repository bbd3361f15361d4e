"""The cached SQL tracker store (bot/tracker_cache.py) on SQLite and PostgreSQL.

Every test compares with what Rasa's own ``SQLTrackerStore`` reads from the same database,
so "the same trackers as Rasa" is checked, not assumed; the statements a turn sends are
counted with an SQLAlchemy cursor hook.
"""
from __future__ import annotations

import json
from typing import Any, Dict, Iterator, List
from urllib.parse import parse_qs, urlparse

import pytest
import sqlalchemy as sa
from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (
    ActionExecuted, BotUttered, Event, SessionStarted, SlotSet, UserUttered,
)
from rasa.shared.core.trackers import DialogueStateTracker

from bot.tracker_cache import CachedSQLTrackerStore

DOMAIN = Domain.from_yaml("""
version: "3.1"
intents: [greet, track_order]
slots:
  order_number:
    type: text
    influence_conversation: false
    mappings: [{type: custom}]
responses:
  utter_greet: [{text: "Hello"}]
""")


class _Broker:
    """An event broker that records what it is given (Rasa calls ``publish(dict)``)."""

    def __init__(self) -> None:
        self.published: List[Dict[str, Any]] = []

    def publish(self, event: Dict[str, Any]) -> None:
        self.published.append(event)


def _kwargs(url: str) -> Dict[str, Any]:
    if url.startswith("sqlite"):
        return {"dialect": "sqlite", "db": url.split("sqlite:///", 1)[1]}
    parsed = urlparse(url)
    options = parse_qs(parsed.query)["options"][0]
    return {"dialect": "postgresql", "host": parsed.hostname, "port": parsed.port,
            "db": parsed.path.lstrip("/"), "username": parsed.username,
            "query": {"options": options}}


@pytest.fixture
def store_url(db_url: str) -> str:
    if db_url.startswith("sqlite"):
        from pathlib import Path

        Path(db_url.split("sqlite:///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
    return db_url


def _store(url: str, cls: type = CachedSQLTrackerStore, **extra: Any) -> Any:
    return cls(domain=DOMAIN, **_kwargs(url), **extra)


@pytest.fixture
def statements() -> Iterator[List[str]]:
    """The SQL statements sent while the test runs (all engines)."""
    sent: List[str] = []

    def hook(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(" ".join(statement.split()))

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", hook)
    try:
        yield sent
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", hook)


def _turn(tracker: DialogueStateTracker, text: str, number: str) -> List[Event]:
    events: List[Event] = [
        UserUttered(text, {"name": "track_order", "confidence": 0.9},
                    parse_data={"intent": {"name": "track_order", "confidence": 0.9},
                                "entities": [], "text": text}),
        ActionExecuted("action_track"),
        SlotSet("order_number", number),
        BotUttered(f"Order #{number} is on its way"),
        ActionExecuted("action_listen"),
    ]
    for event in events:
        tracker.update(event)
    return events


def _as_dicts(tracker: Any) -> List[Dict[str, Any]]:
    return [event.as_dict() for event in tracker.events] if tracker is not None else []


async def _new_conversation(store: Any, sender: str) -> DialogueStateTracker:
    tracker = DialogueStateTracker.from_events(sender, [
        ActionExecuted("action_session_start"), SessionStarted(),
        ActionExecuted("action_listen")], DOMAIN.slots)
    await store.save(tracker)
    return tracker


async def test_turns_read_what_rasa_reads_with_one_small_query(
    store_url: str, statements: List[str],
) -> None:
    store, rasa = _store(store_url), _store(store_url, SQLTrackerStore)
    assert await store.retrieve("anna") is None
    await _new_conversation(store, "anna")
    for n, number in enumerate(["104233", "104190", "104205"]):
        tracker = await store.retrieve("anna")
        assert tracker is not None
        statements.clear()
        _turn(tracker, f"where is {number}", number)
        await store.save(tracker)
        # one max(id) check, one INSERT of the turn's five events, the rows after the id
        # checked (ours only?); no re-read of the session, no count() of it
        assert [s.split(" (")[0].split(" FROM")[0] for s in statements] == [
            "SELECT max(events.id) AS max_1", "INSERT INTO events",
            "SELECT count(events.id) AS count_1, max(events.id) AS max_1"], statements
        assert "events.id >" in statements[2]
        statements.clear()
        again = await store.retrieve("anna")
        assert [s.split(" FROM")[0] for s in statements] == ["SELECT max(events.id) AS max_1"]
        assert _as_dicts(again) == _as_dicts(await rasa.retrieve("anna"))
        assert again is not tracker  # every caller gets a tracker of its own
        # ...with the saved turn's own event objects (not parsed back from their rows)
        assert all(a is b for a, b in zip(again.events, tracker.events))
        assert again.get_slot("order_number") == number
        # Rasa's session starts at SessionStarted (action_session_start is older)
        assert len(again.events) == 2 + 5 * (n + 1)


async def test_events_written_elsewhere_are_read_again(store_url: str) -> None:
    """Another process (here: another store on the same database) adds events."""
    a, b = _store(store_url), _store(store_url)
    await _new_conversation(a, "ben")
    tracker = await a.retrieve("ben")
    _turn(tracker, "where is 104205", "104205")
    await a.save(tracker)
    on_b = await b.retrieve("ben")
    _turn(on_b, "and 104160?", "104160")
    await b.save(on_b)
    on_a = await a.retrieve("ben")  # a's kept session is out of date
    assert on_a.get_slot("order_number") == "104160"
    assert _as_dicts(on_a) == _as_dicts(await _store(store_url, SQLTrackerStore).retrieve("ben"))
    # a saves a turn on the tracker it read: stored once, after b's events
    _turn(on_a, "thanks", "104160")
    await a.save(on_a)
    fresh = await _store(store_url, SQLTrackerStore).retrieve("ben")
    assert _as_dicts(fresh) == _as_dicts(on_a)


@pytest.mark.postgres
async def test_a_row_committed_by_someone_else_during_a_save_is_read_again(
    postgres_url: str,
) -> None:
    """The save inserts its rows in one statement and takes the highest id after it: a row
    another writer committed in between must not be taken for one of ours."""
    store = _store(postgres_url)
    await _new_conversation(store, "dora")
    tracker = await store.retrieve("dora")
    real = store._rows_after_sql
    foreign = SlotSet("order_number", "104160").as_dict()

    def with_a_foreign_row() -> Any:
        with store.engine.begin() as connection:  # another writer, committed first
            connection.execute(sa.insert(store.SQLEvent.__table__), {
                "sender_id": "dora", "type_name": "slot", "timestamp": foreign["timestamp"],
                "data": json.dumps(foreign)})
        return real()

    store._rows_after_sql = with_a_foreign_row
    _turn(tracker, "where is 104205", "104205")
    await store.save(tracker)
    assert "dora" not in store._sessions  # not kept as if the foreign row were ours
    again = await store.retrieve("dora")
    rasa = await _store(postgres_url, SQLTrackerStore).retrieve("dora")
    assert _as_dicts(again) == _as_dicts(rasa)
    assert [e["event"] for e in _as_dicts(again)].count("slot") == 2  # ours and theirs


async def test_an_out_of_date_tracker_is_saved_by_rasas_count_rule(store_url: str) -> None:
    """A save whose kept session is stale counts the stored events, as Rasa does."""
    a, b = _store(store_url), _store(store_url)
    await _new_conversation(a, "chloe")
    first = await a.retrieve("chloe")
    other = await b.retrieve("chloe")
    _turn(other, "where is 104218", "104218")
    await b.save(other)
    _turn(first, "where is 104275", "104275")  # a never saw b's turn
    await a.save(first)
    rasa = await _store(store_url, SQLTrackerStore).retrieve("chloe")
    # Rasa's rule: the tracker's events past the number stored (b's 5): none of a's first
    # five are stored twice, and the stored rows are the ones Rasa reads
    assert len(rasa.events) == len(first.events)
    assert _as_dicts(await a.retrieve("chloe")) == _as_dicts(rasa)


async def test_a_new_session_is_read_from_the_database(store_url: str) -> None:
    store, rasa = _store(store_url), _store(store_url, SQLTrackerStore)
    await _new_conversation(store, "anna")
    tracker = await store.retrieve("anna")
    _turn(tracker, "where is 104233", "104233")
    await store.save(tracker)
    tracker = await store.retrieve("anna")
    tracker.update(ActionExecuted("action_session_start"))
    tracker.update(SessionStarted())
    tracker.update(ActionExecuted("action_listen"))
    await store.save(tracker)
    assert "anna" not in store._sessions  # forgotten: the stored session changed
    again = await store.retrieve("anna")
    assert [e["event"] for e in _as_dicts(again)] == ["session_started", "action"]
    assert _as_dicts(again) == _as_dicts(await rasa.retrieve("anna"))


async def test_the_broker_gets_each_new_event_once_after_the_commit(store_url: str) -> None:
    broker = _Broker()
    store = _store(store_url, event_broker=broker)
    await _new_conversation(store, "anna")
    assert [e["event"] for e in broker.published] == ["action", "session_started", "action"]
    broker.published.clear()
    tracker = await store.retrieve("anna")
    _turn(tracker, "where is 104233", "104233")
    await store.save(tracker)
    await store.save(tracker)  # nothing new: nothing published, nothing stored
    assert [(e["sender_id"], e["event"]) for e in broker.published] == [
        ("anna", "user"), ("anna", "action"), ("anna", "slot"), ("anna", "bot"),
        ("anna", "action")]
    assert len((await store.retrieve("anna")).events) == 7


async def test_a_failed_commit_publishes_nothing_and_forgets(
    store_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker = _Broker()
    store = _store(store_url, event_broker=broker)
    await _new_conversation(store, "anna")
    tracker = await store.retrieve("anna")
    broker.published.clear()
    _turn(tracker, "where is 104233", "104233")

    def fail(*args: Any, **kwargs: Any) -> None:
        raise sa.exc.OperationalError("COMMIT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(sa.orm.Session, "commit", fail)
    with pytest.raises(sa.exc.OperationalError):
        await store.save(tracker)
    monkeypatch.undo()
    assert broker.published == []
    assert "anna" not in store._sessions
    assert len((await store.retrieve("anna")).events) == 2  # nothing of the turn stored
    await store.save(tracker)  # the retry stores the turn once
    assert len((await store.retrieve("anna")).events) == 7
    assert len(broker.published) == 5


async def test_the_cache_keeps_at_most_its_size(store_url: str, monkeypatch: pytest.MonkeyPatch
                                                ) -> None:
    store = _store(store_url)
    store.cache_size = 2
    for sender in ("a", "b", "c"):
        await _new_conversation(store, sender)
        await store.retrieve(sender)
    assert list(store._sessions) == ["b", "c"]
    await store.retrieve("b")
    await _new_conversation(store, "d")
    await store.retrieve("d")
    assert list(store._sessions) == ["b", "d"]
    assert len((await store.retrieve("a")).events) == 2  # read from the database


async def test_size_zero_is_rasas_store(store_url: str, statements: List[str]) -> None:
    store = _store(store_url)
    store.cache_size = 0
    await _new_conversation(store, "anna")
    statements.clear()
    tracker = await store.retrieve("anna")
    assert any("events.data" in s for s in statements)
    assert store._sessions == {}
    assert json.dumps(_as_dicts(tracker)) == json.dumps(
        _as_dicts(await _store(store_url, SQLTrackerStore).retrieve("anna")))


def test_rasa_builds_the_cached_store_for_type_sql(tmp_path: Any) -> None:
    from rasa.core import tracker_store as rasa_tracker_store
    from rasa.utils.endpoints import EndpointConfig

    from bot.tracker_cache import install

    install()
    store = rasa_tracker_store.TrackerStore.create(
        EndpointConfig(type="SQL", dialect="sqlite", db=str(tmp_path / "t.db")), domain=DOMAIN)
    inner = getattr(store, "_tracker_store", store)
    inner = getattr(inner, "_tracker_store", inner)
    assert isinstance(inner, CachedSQLTrackerStore)
