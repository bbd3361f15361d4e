"""Rasa's SQL tracker store without reading the whole conversation on every turn.

Rasa 3.6's ``SQLTrackerStore`` rebuilds a conversation from every event row of its current
session on each ``retrieve`` (one ORM query and an object per row), and its ``save`` reads
the conversation a second time (``stream_events`` retrieves it to find the new events for
the event broker) and a third (a ``count()`` of the stored events), all with blocking
database calls on the event loop. In the profile of issue 14 (50 widget conversations, one
Rasa process on PostgreSQL) that was 27 % of the Rasa main thread's time.

:class:`CachedSQLTrackerStore` keeps, per conversation, the stored ``data`` texts of its
current session's events and the highest event id of the conversation when they were
read. A ``retrieve`` asks the database only for that id (one indexed ``max(id)``): when it
is unchanged, the tracker is rebuilt from the kept texts as Rasa rebuilds it from the rows
(``json.loads`` + ``deserialise_events`` + ``DialogueStateTracker.from_events``; each text
is deserialised once and its event kept, a saved turn's events are kept as they are, and
every caller gets a tracker of its own, whose events are shared as in Rasa's own tracker
copies); when another process (or anything else) added events, the session is read again.
The usual turn's statements are built once and sent with parameters; a turn's new events
go in one multi-row ``INSERT``. ``save`` checks the same id in its transaction, appends
only the events after the kept ones (Rasa's own rule: the tracker's events past the number
stored), commits, then publishes those events to the event broker (after the commit, once;
Rasa published them before inserting) and keeps the new texts.

Correctness rests on what Rasa already relies on: events are only appended, and one turn of
a conversation runs at a time (Rasa's lock store: Redis across processes). A save that
starts a new session (``SessionStarted`` among the new events) or meets an id it did not
expect forgets the conversation, so the next ``retrieve`` reads it from the database.

The database work runs in worker threads (one for SQLite, whose writers queue anyway;
:data:`POSTGRES_THREADS` for PostgreSQL), so the event loop serves other conversations
while the database answers and commits. ``RASA_TRACKER_CACHE`` (``bot.settings``) is the
number of conversations kept (least recently used first out); 0 turns the cache off and
leaves Rasa's store as it is. :func:`install` (``bot/serve.py``, after
``bot.resilience.install``) makes Rasa build it for ``tracker_store: type: SQL``.
"""
from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Text, TypeVar

import sqlalchemy as sa
from rasa.shared.core.events import Event, SessionStarted, deserialise_events
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.nlu.constants import INTENT_NAME_KEY

from bot.resilience import PingingSQLTrackerStore

__all__ = ["CachedSQLTrackerStore", "POSTGRES_THREADS", "install"]

logger = logging.getLogger(__name__)

POSTGRES_THREADS = 4
"""Worker threads for the tracker store's PostgreSQL (or other server) queries."""

T = TypeVar("T")


@dataclass
class _Session:
    """What is stored of one conversation's current session."""

    rows: List[str] = field(default_factory=list)  # the events' ``data`` texts, in id order
    last_id: Optional[int] = None  # the conversation's highest event id when read
    # The events of ``rows[:parsed]``, kept for the next turns: rebuilding every event of the
    # session from its text on each turn was 6 % of the Rasa process. Rows read from the
    # database are deserialised once (Rasa's ``deserialise_events``); a turn's saved events
    # are kept as the turn made them (their texts are the rows). Trackers share these
    # objects as Rasa's own tracker copies share theirs, which lets ``bot.state_cache`` see
    # the same conversation continue.
    events: List[Event] = field(default_factory=list)
    parsed: int = 0


@dataclass
class _Written:
    new_events: List[Event]
    rows: List[str]
    last_id: Optional[int]
    continued: bool  # the kept session was still the stored one and goes on


class CachedSQLTrackerStore(PingingSQLTrackerStore):
    """Rasa's SQL tracker store (with pinged connections) that keeps current sessions."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from bot.settings import get_settings

        self.cache_size = get_settings().rasa_tracker_cache
        self._sessions: "OrderedDict[str, _Session]" = OrderedDict()
        self._last_id_sql: Any = None
        self._rows_after: Any = None
        sqlite = self.engine.dialect.name == "sqlite"
        self._executor = ThreadPoolExecutor(
            max_workers=1 if sqlite else POSTGRES_THREADS, thread_name_prefix="tracker-store")

    # ------------------------------------------------------------------ public

    async def retrieve(self, sender_id: Text) -> Optional[DialogueStateTracker]:
        """The tracker of the conversation's latest session (None: no events stored)."""
        if not self.cache_size:
            return await super().retrieve(sender_id)
        kept = self._sessions.get(sender_id)
        read = await self._in_thread(
            self._read_session, sender_id, kept.last_id if kept is not None else None,
            kept is not None)
        if read is None:  # unchanged since it was kept
            assert kept is not None
            session = kept
            self._sessions.move_to_end(sender_id)
        else:
            session = read
            self._keep(sender_id, session)
        if not self.domain or not session.rows:
            return None
        if session.parsed < len(session.rows):
            session.events.extend(deserialise_events(
                [json.loads(row) for row in session.rows[session.parsed:]]))
            session.parsed = len(session.rows)
        return DialogueStateTracker.from_events(sender_id, list(session.events),
                                                self.domain.slots)

    async def save(self, tracker: DialogueStateTracker) -> None:
        """Store the tracker's new events, then publish them to the event broker."""
        if not self.cache_size:
            await super().save(tracker)
            return
        sender_id = tracker.sender_id
        kept = self._sessions.get(sender_id)
        try:
            written = await self._in_thread(self._write_events, tracker, kept)
        except BaseException:
            self._sessions.pop(sender_id, None)
            raise
        if self.event_broker is not None:
            await self._stream_new_events(self.event_broker, written.new_events, sender_id)
        current = self._sessions.get(sender_id)
        if (written.continued and current is kept and kept is not None
                and not any(isinstance(event, SessionStarted) for event in written.new_events)):
            if kept.parsed == len(kept.rows):  # the turn's own events, not parsed back
                kept.events.extend(written.new_events)
                kept.parsed += len(written.rows)
            kept.rows.extend(written.rows)
            kept.last_id = written.last_id
            self._sessions.move_to_end(sender_id)
        elif current is kept:  # a new session, or the kept one was out of date: read again
            self._sessions.pop(sender_id, None)
        logger.debug(f"Tracker with sender_id '{sender_id}' stored to database")

    # ----------------------------------------------------------------- private

    async def _in_thread(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(function, *args))

    def _keep(self, sender_id: str, session: _Session) -> None:
        self._sessions[sender_id] = session
        self._sessions.move_to_end(sender_id)
        while len(self._sessions) > self.cache_size:
            self._sessions.popitem(last=False)

    def _last_id(self, session: Any, sender_id: str) -> Optional[int]:
        if self._last_id_sql is None:  # built once: building it per call cost like running it
            table = self.SQLEvent.__table__
            self._last_id_sql = (sa.select(sa.func.max(table.c.id))
                                 .where(table.c.sender_id == sa.bindparam("sender_id_")))
        return session.execute(self._last_id_sql, {"sender_id_": sender_id}).scalar()

    def _rows_after_sql(self) -> Any:
        if self._rows_after is None:
            table = self.SQLEvent.__table__
            self._rows_after = (
                sa.select(sa.func.count(table.c.id), sa.func.max(table.c.id))
                .where(table.c.sender_id == sa.bindparam("sender_id_"),
                       table.c.id > sa.bindparam("after_")))
        return self._rows_after

    def _read_session(
        self, sender_id: str, known_last_id: Optional[int], known: bool,
    ) -> Optional[_Session]:
        """In a worker thread: None when the kept session is current, else the stored one."""
        if known:  # the usual turn: one indexed max(id) on a plain connection
            with self.engine.connect() as connection:
                if self._last_id(connection, sender_id) == known_last_id:
                    return None
        with self.session_scope() as session:
            # The id first: an event added between the two queries makes the kept id older
            # than the rows, so the next read reads again (never the other way round).
            last_id = self._last_id(session, sender_id)
            rows = self._event_query(session, sender_id, fetch_events_from_all_sessions=False)
            texts = [data for (data,) in rows.with_entities(self.SQLEvent.data)]
            return _Session(rows=texts, last_id=last_id)

    def _write_events(self, tracker: DialogueStateTracker, kept: Optional[_Session]) -> _Written:
        """In a worker thread: insert the events past the stored ones and commit."""
        sender_id = tracker.sender_id
        with self.session_scope() as session:
            last_id = self._last_id(session, sender_id)
            continued = kept is not None and kept.last_id == last_id
            if continued:
                assert kept is not None
                stored = len(kept.rows)
            else:
                stored = self._event_query(
                    session, sender_id, fetch_events_from_all_sessions=False).count()
            new_events = list(itertools.islice(tracker.events, stored, len(tracker.events)))
            rows: List[str] = []
            records = []
            for event in new_events:
                data = event.as_dict()
                text = json.dumps(data)
                records.append({
                    "sender_id": sender_id,
                    "type_name": event.type_name,
                    "timestamp": data.get("timestamp"),
                    "intent_name":
                        data.get("parse_data", {}).get("intent", {}).get(INTENT_NAME_KEY),
                    "action_name": data.get("name"),
                    "data": text,
                })
                rows.append(text)
            if records:
                # One multi-row INSERT (Rasa's ORM objects were one INSERT ... RETURNING
                # each), then the rows past the id read before it: when they are just ours,
                # the highest is ours; a row someone else committed in between makes the
                # kept session stale (read again next time).
                session.execute(sa.insert(self.SQLEvent.__table__), records)
                count, highest = session.execute(
                    self._rows_after_sql(), {"sender_id_": sender_id,
                                              "after_": -1 if last_id is None else last_id},
                ).one()
                if count != len(records):
                    continued = False
                last_id = highest
            session.commit()
        return _Written(new_events=new_events, rows=rows, last_id=last_id, continued=continued)


def install() -> None:
    """Make Rasa build :class:`CachedSQLTrackerStore` for ``type: SQL`` (idempotent)."""
    from rasa.core import tracker_store as rasa_tracker_store

    rasa_tracker_store.SQLTrackerStore = CachedSQLTrackerStore  # type: ignore[misc]
