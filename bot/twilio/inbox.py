"""The Twilio webhook inbox: "200 means stored", then processed from the table.

Every verified webhook (Conversations events, Voice status callbacks) is written to
``twilio_inbox`` together with its dedupe keys (``twilio_processed``) in ONE transaction
(:meth:`InboxStore.do_accept`) before Twilio gets its 200; a redelivery finds the key and
gets 200 without a second row. :class:`InboxProcessor` (one asyncio task per process,
started and stopped with the server by the Twilio channel) does the work:

* **Claim** (:meth:`InboxStore.do_claim`): a conditional ``UPDATE ... WHERE id = ? AND
  status = 'pending' AND next_attempt_at <= now AND <no earlier pending row of the same
  order key>`` in its own write transaction (SQLite ``BEGIN IMMEDIATE``, PostgreSQL row
  locks): exactly one process gets a row. The claim counts the try, sets ``claimed_by``
  and moves ``next_attempt_at`` to the end of a lease (``TWILIO_INBOX_LEASE``); a row whose
  process died is claimed again when its lease is over.
* **Order**: rows of one conversation (``order_key`` ``conversation:<ConversationSid>``,
  ``call:<CallSid>``) are processed one after another in arrival order; a row waiting for
  its retry holds the later ones of its conversation back (other conversations go on).
* **Retries**: a handler that raises (or takes longer than half the lease) is retried after
  ``min(TWILIO_INBOX_BACKOFF_MAX, TWILIO_INBOX_BACKOFF_BASE * 2^(try-1))`` s (jittered
  down by at most 25 %); after ``TWILIO_INBOX_MAX_ATTEMPTS`` tries the row is ``dead`` with
  its last error (a dead letter; it no longer holds its conversation back).
* **Replay**: :func:`replay` / ``python -m bot.twilio.inbox replay --id N | --dead`` puts
  dead rows back to ``pending`` with fresh tries; the running server processes them.
* **Start-up / shutdown**: on start the processor takes the pending rows left behind (a
  crash after the 200); on shutdown it takes no new row and lets the current one finish for
  up to ``TWILIO_INBOX_DRAIN_TIMEOUT`` s, else cancels it and releases the row for the next
  start.

Usage::

    python -m bot.twilio.inbox list [--status pending|done|dead|all] [--json]
    python -m bot.twilio.inbox show ID
    python -m bot.twilio.inbox replay (--id ID | --dead)

Exit status: 0 on success, 2 on bad input (unknown id, not dead, nothing to replay).
"""
from __future__ import annotations

import argparse
import asyncio
import copy
import hashlib
import json
import logging
import os
import random
import socket
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from sqlalchemy import and_, delete, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from bot import db
from bot.support.base import StoreBase
from bot.twilio.models import TwilioInbox, TwilioProcessed

__all__ = ["InboxConfig", "InboxItem", "InboxProcessor", "InboxStore", "main", "replay"]

logger = logging.getLogger(__name__)

Handler = Callable[[Dict[str, Any]], Awaitable[Any]]
"""``await handler(payload)``: returns what was done (stored as ``result``) or raises."""


@dataclass(frozen=True)
class InboxConfig:
    """How the inbox is processed (``TWILIO_INBOX_*``)."""

    max_attempts: int = 8
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    lease: float = 60.0
    poll: float = 1.0
    drain_timeout: float = 10.0

    @property
    def handler_timeout(self) -> float:
        """A try may take half the lease (the row must not be taken over while it runs)."""
        return max(0.5, self.lease / 2)

    def backoff(self, attempts: int) -> float:
        """Seconds before the next try after ``attempts`` failed tries."""
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** max(0, attempts - 1)))
        return ceiling * random.uniform(0.75, 1.0)

    @classmethod
    def from_settings(cls) -> "InboxConfig":
        """From :func:`bot.settings.get_settings`."""
        from bot.settings import get_settings

        s = get_settings()
        return cls(max_attempts=s.twilio_inbox_max_attempts,
                   backoff_base=s.twilio_inbox_backoff_base,
                   backoff_max=s.twilio_inbox_backoff_max, lease=s.twilio_inbox_lease,
                   poll=s.twilio_inbox_poll, drain_timeout=s.twilio_inbox_drain_timeout)


@dataclass(frozen=True)
class InboxItem:
    """A row of ``twilio_inbox``."""

    id: int
    kind: str
    dedupe_key: str
    order_key: str
    payload: Dict[str, Any]
    status: str
    attempts: int
    received_at: datetime
    next_attempt_at: datetime
    claimed_by: Optional[str]
    last_error: Optional[str]
    result: Optional[str]
    processed_at: Optional[datetime]

    @classmethod
    def from_row(cls, row: TwilioInbox) -> "InboxItem":
        return cls(row.id, row.kind, row.dedupe_key, row.order_key,
                   copy.deepcopy(dict(row.payload or {})), row.status, int(row.attempts or 0),
                   row.received_at, row.next_attempt_at, row.claimed_by, row.last_error,
                   row.result, row.processed_at)

    def to_json(self) -> Dict[str, Any]:
        """JSON-friendly dict (for the operator command)."""
        def iso(moment: Optional[datetime]) -> Optional[str]:
            return moment.isoformat() if moment else None

        return {"id": self.id, "kind": self.kind, "dedupe_key": self.dedupe_key,
                "order_key": self.order_key, "payload": self.payload, "status": self.status,
                "attempts": self.attempts, "received_at": iso(self.received_at),
                "next_attempt_at": iso(self.next_attempt_at), "claimed_by": self.claimed_by,
                "last_error": self.last_error, "result": self.result,
                "processed_at": iso(self.processed_at)}


def _payload_key(kind: str, payload: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode())
    return f"payload:{kind}:{digest.hexdigest()}"


class InboxStore(StoreBase):
    """The ``twilio_inbox`` table (shares the support database engine)."""

    async def do_accept(self, kind: str, keys: Sequence[str], order_key: str,
                        payload: Mapping[str, Any]) -> Tuple[Optional[int], bool]:
        """Store a webhook and its dedupe keys in one transaction.

        Args:
            kind: Which handler processes it (``conversations``, ``voice``).
            keys: Its dedupe keys (idempotency token, message SID, ...): the first is the
                row's ``dedupe_key``; all are recorded in ``twilio_processed``. Empty: a
                hash of the payload.
            order_key: Rows with the same key are processed in order.
            payload: The webhook (JSON).

        Returns:
            ``(row id, True)`` when stored now; ``(None, False)`` for a duplicate (any key
            seen before): nothing is written.
        """
        keys = [k[:255] for k in dict.fromkeys(keys) if k] or [_payload_key(kind, payload)]
        now = db.utcnow()
        try:
            async with db.write_session(self._sessions) as session:
                seen = (await session.execute(select(TwilioProcessed.id).where(
                    TwilioProcessed.key.in_(keys)))).first()
                if seen is None:
                    seen = (await session.execute(select(TwilioInbox.id).where(
                        TwilioInbox.dedupe_key == keys[0]))).first()
                if seen is not None:
                    return None, False
                for key in sorted(keys):
                    session.add(TwilioProcessed(key=key, created_at=now))
                row = TwilioInbox(kind=kind, dedupe_key=keys[0], order_key=order_key[:255],
                                  payload=json.loads(json.dumps(dict(payload), default=str)),
                                  status="pending", attempts=0, received_at=now,
                                  next_attempt_at=now)
                session.add(row)
                await session.flush()
                return int(row.id), True
        except IntegrityError:  # the same key raced in on another connection
            return None, False

    async def do_claim(self, worker: str, lease: float, kinds: Optional[Sequence[str]] = None,
                       now: Optional[datetime] = None) -> Optional[InboxItem]:
        """Claim the oldest due pending row whose conversation has no earlier pending row.

        Args:
            worker: Who claims (``claimed_by``; :meth:`do_done` etc. check it).
            lease: Seconds the row is ours (``next_attempt_at`` = now + lease).
            kinds: Only rows of these kinds (the handlers this process has); None: all.

        Returns:
            The claimed row (``attempts`` counts this try), or None when nothing is due.
        """
        if kinds is not None and not kinds:
            return None
        for _ in range(5):
            now_ = now or db.utcnow()
            earlier = aliased(TwilioInbox)
            blocked = exists().where(and_(earlier.order_key == TwilioInbox.order_key,
                                          earlier.status == "pending",
                                          earlier.id < TwilioInbox.id))
            due = [TwilioInbox.status == "pending", TwilioInbox.next_attempt_at <= now_]
            if kinds is not None:
                due.append(TwilioInbox.kind.in_(list(kinds)))
            async with db.read_session(self._sessions) as session:
                ids = (await session.execute(select(TwilioInbox.id).where(*due, ~blocked)
                                             .order_by(TwilioInbox.id).limit(5))).scalars().all()
            if not ids:
                return None
            for row_id in ids:
                async with db.write_session(self._sessions) as session:
                    result = await session.execute(
                        update(TwilioInbox).where(TwilioInbox.id == row_id, *due, ~blocked)
                        .values(attempts=TwilioInbox.attempts + 1, claimed_by=worker[:64],
                                next_attempt_at=now_ + timedelta(seconds=lease))
                        .execution_options(synchronize_session=False))
                    if result.rowcount == 1:
                        row = await session.get(TwilioInbox, row_id)
                        assert row is not None
                        await session.refresh(row)
                        return InboxItem.from_row(row)
        return None

    async def do_done(self, item: InboxItem, worker: str, result: Optional[str]) -> bool:
        """Mark a claimed row processed; False if it was no longer ours (lease lost)."""
        now = db.utcnow()
        async with db.write_session(self._sessions) as session:
            done = await session.execute(
                update(TwilioInbox).where(TwilioInbox.id == item.id,
                                          TwilioInbox.status == "pending",
                                          TwilioInbox.claimed_by == worker[:64])
                .values(status="done", processed_at=now, claimed_by=None,
                        result=(result or "")[:64] or None, next_attempt_at=now)
                .execution_options(synchronize_session=False))
            return done.rowcount == 1

    async def do_fail(self, item: InboxItem, worker: str, error: str,
                      config: InboxConfig) -> Optional[str]:
        """A try failed: back to ``pending`` after the back-off, or ``dead`` after the last
        try. Returns the new status (None: the row was no longer ours)."""
        now = db.utcnow()
        dead = item.attempts >= config.max_attempts
        values: Dict[str, Any] = {"claimed_by": None, "last_error": error[:4000]}
        if dead:
            values.update(status="dead", next_attempt_at=now)
        else:
            values.update(next_attempt_at=now + timedelta(seconds=config.backoff(item.attempts)))
        async with db.write_session(self._sessions) as session:
            changed = await session.execute(
                update(TwilioInbox).where(TwilioInbox.id == item.id,
                                          TwilioInbox.status == "pending",
                                          TwilioInbox.claimed_by == worker[:64])
                .values(**values).execution_options(synchronize_session=False))
            if changed.rowcount != 1:
                return None
        return "dead" if dead else "pending"

    async def do_release(self, item: InboxItem, worker: str) -> bool:
        """Give a claimed row back unprocessed (shutdown): due now, the try not counted."""
        async with db.write_session(self._sessions) as session:
            changed = await session.execute(
                update(TwilioInbox).where(TwilioInbox.id == item.id,
                                          TwilioInbox.status == "pending",
                                          TwilioInbox.claimed_by == worker[:64])
                .values(claimed_by=None, next_attempt_at=db.utcnow(),
                        attempts=func.max(TwilioInbox.attempts - 1, 0)
                        if self.engine.dialect.name == "sqlite"
                        else func.greatest(TwilioInbox.attempts - 1, 0))
                .execution_options(synchronize_session=False))
            return changed.rowcount == 1

    async def do_replay(self, item_id: Optional[int] = None, dead: bool = False) -> List[int]:
        """Re-queue dead rows (one by id, or all with ``dead``): ``pending``, due now, fresh
        tries. Returns the ids re-queued.

        Raises:
            LookupError: No row ``item_id``.
            ValueError: Row ``item_id`` is not dead, or neither argument was given.
        """
        if item_id is None and not dead:
            raise ValueError("Name a row (--id) or replay every dead one (--dead).")
        now = db.utcnow()
        async with db.write_session(self._sessions) as session:
            if item_id is not None:
                row = await session.get(TwilioInbox, int(item_id))
                if row is None:
                    raise LookupError(f"No inbox row {item_id}.")
                if row.status != "dead":
                    raise ValueError(f"Inbox row {item_id} is {row.status}, not dead.")
                ids = [row.id]
            else:
                ids = list((await session.execute(select(TwilioInbox.id).where(
                    TwilioInbox.status == "dead").order_by(TwilioInbox.id))).scalars().all())
            if ids:
                await session.execute(
                    update(TwilioInbox).where(TwilioInbox.id.in_(ids),
                                              TwilioInbox.status == "dead")
                    .values(status="pending", attempts=0, next_attempt_at=now, claimed_by=None)
                    .execution_options(synchronize_session=False))
            return ids

    async def get(self, item_id: int) -> InboxItem:
        """One row.

        Raises:
            LookupError: No such row.
        """
        async with db.read_session(self._sessions) as session:
            row = await session.get(TwilioInbox, int(item_id))
            if row is None:
                raise LookupError(f"No inbox row {item_id}.")
            return InboxItem.from_row(row)

    async def items(self, status: Optional[str] = None, limit: int = 100) -> List[InboxItem]:
        """Rows (``status=None``: all), oldest first."""
        query = select(TwilioInbox)
        if status is not None:
            query = query.where(TwilioInbox.status == status)
        async with db.read_session(self._sessions) as session:
            rows = (await session.execute(query.order_by(TwilioInbox.id)
                                          .limit(max(1, min(limit, 10000))))).scalars().all()
            return [InboxItem.from_row(r) for r in rows]

    async def counts(self) -> Dict[str, int]:
        """Rows per status."""
        async with db.read_session(self._sessions) as session:
            rows = (await session.execute(select(TwilioInbox.status, func.count(TwilioInbox.id))
                                          .group_by(TwilioInbox.status))).all()
        found = {"pending": 0, "done": 0, "dead": 0}
        found.update({status: int(count) for status, count in rows})
        return found

    async def do_prune(self, older_than: timedelta) -> int:
        """Delete ``done`` rows processed before ``older_than`` ago (dead rows stay)."""
        async with db.write_session(self._sessions) as session:
            result = await session.execute(delete(TwilioInbox).where(
                TwilioInbox.status == "done",
                TwilioInbox.processed_at < db.utcnow() - older_than)
                .execution_options(synchronize_session=False))
            return int(result.rowcount or 0)


def _worker_id() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class InboxProcessor:
    """Processes ``twilio_inbox`` rows with the registered handlers (one per process).

    Args:
        store: The inbox table.
        config: Tries, back-off, lease, poll, drain timeout.
    """

    def __init__(self, store: InboxStore, config: Optional[InboxConfig] = None) -> None:
        self.store = store
        self.config = config or InboxConfig()
        self.worker = _worker_id()
        self.handlers: Dict[str, Handler] = {}
        self._task: Optional[asyncio.Task] = None
        self._wake: Optional[asyncio.Event] = None
        self._stopping = False
        self._current: Optional[asyncio.Task] = None

    def register(self, kind: str, handler: Handler) -> None:
        """Process rows of ``kind`` with ``handler`` (rows of other kinds are left alone)."""
        self.handlers[kind] = handler
        self.wake()

    def unregister(self, kind: str) -> None:
        self.handlers.pop(kind, None)

    async def accept(self, kind: str, keys: Sequence[str], order_key: str,
                     payload: Mapping[str, Any]) -> bool:
        """Store a verified webhook (then Twilio may get its 200). False: a duplicate."""
        _id, fresh = await self.store.do_accept(kind, keys, order_key, payload)
        if fresh:
            self.wake()
        return fresh

    def wake(self) -> None:
        """Look for due rows now (a webhook was stored in this process)."""
        if self._wake is not None:
            self._wake.set()

    # -------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the processing task (idempotent)."""
        self._stopping = False
        if self._wake is None:
            self._wake = asyncio.Event()
        if not self.running:
            self._task = asyncio.create_task(self._run(), name="twilio-inbox")

    async def stop(self, timeout: Optional[float] = None) -> None:
        """Take no new row; let the current one finish for up to ``timeout`` s
        (``TWILIO_INBOX_DRAIN_TIMEOUT``), then cancel it (the row is released)."""
        self._stopping = True
        self.wake()
        task, self._task = self._task, None
        if task is None:
            return
        wait = self.config.drain_timeout if timeout is None else timeout
        done, _ = await asyncio.wait({task}, timeout=wait)
        if not done:
            logger.warning("Twilio inbox: the row being processed did not finish within "
                           "%.1f s; released for the next start", wait)
            task.cancel()
            await asyncio.wait({task}, timeout=5)

    async def _run(self) -> None:
        try:
            counts = await self.store.counts()
            if counts["pending"]:
                logger.info("Twilio inbox: %d pending webhook(s) from before the start",
                            counts["pending"])
        except Exception:  # noqa: BLE001 - the loop reports database trouble below
            pass
        assert self._wake is not None
        while not self._stopping:
            try:
                item = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep processing (the database may be back)
                logger.exception("Twilio inbox: claiming a row failed")
                item = None
            if item is not None or self._stopping:
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.config.poll)
            except asyncio.TimeoutError:
                pass

    # ------------------------------------------------------------- processing

    async def run_once(self, now: Optional[datetime] = None) -> Optional[InboxItem]:
        """Claim one due row and process it. Returns the row as claimed (None: none due)."""
        if not self.handlers:
            return None
        item = await self.store.do_claim(self.worker, self.config.lease,
                                         kinds=sorted(self.handlers), now=now)
        if item is None:
            return None
        await self.process(item)
        return item

    async def process(self, item: InboxItem) -> str:
        """Run the handler of a claimed row; record done / retry / dead. Returns the status."""
        handler = self.handlers.get(item.kind)
        try:
            if handler is None:
                raise LookupError(f"No handler for inbox rows of kind {item.kind!r}.")
            result = await asyncio.wait_for(handler(dict(item.payload)),
                                            self.config.handler_timeout)
        except asyncio.CancelledError:
            await asyncio.shield(self._release(item))
            raise
        except Exception as error:  # noqa: BLE001 - retried, then a dead letter
            text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            if isinstance(error, asyncio.TimeoutError):
                text = f"timeout after {self.config.handler_timeout:.1f} s"
            status = await self.store.do_fail(item, self.worker, text, self.config)
            if status == "dead":
                logger.error("Twilio inbox row %d (%s %s) failed %d times, dead letter: %s",
                             item.id, item.kind, item.dedupe_key, item.attempts, text)
            else:
                logger.warning("Twilio inbox row %d (%s) failed (try %d/%d): %s; retried",
                               item.id, item.kind, item.attempts, self.config.max_attempts,
                               text)
            return status or "lost"
        if not await self.store.do_done(item, self.worker, str(result) if result else None):
            logger.warning("Twilio inbox row %d was taken over by another process while it "
                           "ran (lease %.0f s)", item.id, self.config.lease)
            return "lost"
        return "done"

    async def _release(self, item: InboxItem) -> None:
        try:
            await self.store.do_release(item, self.worker)
        except Exception:  # noqa: BLE001 - then the lease runs out
            logger.exception("Twilio inbox: could not release row %d", item.id)

    async def drain(self, limit: int = 10000) -> int:
        """Process due rows until none is left (tests, tools). Returns how many ran."""
        ran = 0
        while ran < limit and await self.run_once() is not None:
            ran += 1
        return ran


# ------------------------------------------------------------------ operator

async def replay(url: str, item_id: Optional[int] = None, dead: bool = False) -> List[int]:
    """Re-queue dead inbox rows of the database at ``url`` (see :meth:`InboxStore.do_replay`);
    the running server's processor takes them within ``TWILIO_INBOX_POLL`` s."""
    store = InboxStore.from_url(url)
    try:
        await store.create_schema()
        return await store.do_replay(item_id, dead)
    finally:
        await store.dispose()


async def _run(args: argparse.Namespace) -> int:
    from bot.settings import get_settings

    url = args.url or get_settings().support_db_url
    if args.action == "replay":
        try:
            ids = await replay(url, args.id, args.dead)
        except (LookupError, ValueError) as error:
            print(str(error).strip("'\""), file=sys.stderr)
            return 2
        if not ids:
            print("No dead inbox rows.", file=sys.stderr)
            return 2
        print(f"Re-queued {len(ids)} inbox row(s): {', '.join(map(str, ids))}.")
        return 0
    store = InboxStore.from_url(url)
    try:
        await store.create_schema()
        if args.action == "show":
            try:
                item = await store.get(args.id)
            except LookupError as error:
                print(str(error).strip("'\""), file=sys.stderr)
                return 2
            print(json.dumps(item.to_json(), indent=2, ensure_ascii=False))
            return 0
        items = await store.items(None if args.status == "all" else args.status, limit=1000)
        if args.json:
            print(json.dumps([item.to_json() for item in items], indent=2))
            return 0
        if not items:
            print(f"No {'' if args.status == 'all' else args.status + ' '}inbox rows.")
            return 0
        print(f"{'ID':>6}  {'STATUS':8}  {'KIND':13}  {'TRIES':>5}  {'RECEIVED':19}  KEY / ERROR")
        for item in items:
            print(f"{item.id:>6}  {item.status:8}  {item.kind:13}  {item.attempts:>5}  "
                  f"{item.received_at:%Y-%m-%d %H:%M:%S}  {item.dedupe_key}")
            if item.last_error:
                print(f"{'':>62}{item.last_error[:100]}")
        return 0
    finally:
        await store.dispose()


def main(argv: Optional[List[str]] = None) -> int:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m bot.twilio.inbox",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=None, help="database URL (default: SUPPORT_DB_URL)")
    sub = parser.add_subparsers(dest="action", required=True)
    listing = sub.add_parser("list", help="inbox rows (default: dead letters)")
    listing.add_argument("--status", default="dead",
                         choices=("pending", "done", "dead", "all"))
    listing.add_argument("--json", action="store_true", help="JSON output")
    show = sub.add_parser("show", help="one row in full")
    show.add_argument("id", type=int)
    again = sub.add_parser("replay", help="re-queue dead rows")
    which = again.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", type=int, default=None, help="one dead row")
    which.add_argument("--dead", action="store_true", help="every dead row")
    return asyncio.run(_run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
