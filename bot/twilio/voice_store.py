"""The call-back side of Twilio Voice in the support database: ``callbacks.status`` and the
placed call in ``twilio_calls`` (migration 0005), and the capped booking of call-backs.

Every call-back may become a call the shop pays for, so customers book them through
:meth:`VoiceStore.do_book_callback` (``actions/callbacks.py``): verified customers only, a
number in ``CALLBACK_COUNTRIES`` that a person answers (no premium-rate or shared-cost
numbers), and at most ``CALLBACK_MAX_OPEN_PER_CUSTOMER`` open call-backs per customer,
``CALLBACK_MAX_PER_CUSTOMER_DAY`` bookings per customer and ``CALLBACK_MAX_PER_NUMBER_DAY``
per number in 24 hours, ``CALLBACK_MAX_PER_DAY`` in all (:class:`CallbackLimits`). The caps
are counted in the booking's own transaction, under a lock every booking takes (SQLite:
``BEGIN IMMEDIATE``; PostgreSQL: a transaction-scoped advisory lock), so two bookings at the
same moment cannot both pass. A refused booking stores nothing and raises
:class:`CallbackRefused`.

The scheduler claims a call-back only while fewer than ``TWILIO_CALLBACK_MAX_CONCURRENT``
calls are being placed or going on (counted in the claim's transaction, under the same kind
of lock), so a flood of due call-backs is placed a few at a time.

Every ``do_*`` coroutine runs in ONE new transaction and writes an audit row when it
changes a call-back's status. Claims are conditional UPDATEs (``status = 'scheduled'`` in
the WHERE clause), so two schedulers (two processes, or a restart racing the old process)
never place the same call twice, and a customer's cancel/move (which only works while the
call-back is ``scheduled``, see :meth:`bot.support.ops.SupportStore.do_cancel_callback`)
either wins before the claim or fails after it.

Status model (``CALLBACK_STATUSES``)::

    scheduled ──claim──▶ calling ──answered──▶ in_progress ──▶ completed
        │                   │                                 no_answer (busy, no-answer)
        └─too late─▶ missed └────────────────────────────────▶ failed / cancelled
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Dict, List, Optional, Tuple

from sqlalchemy import func, select, update
from sqlalchemy import text as sql_text

from bot import db
from bot.phone import is_personal_number, phone_region
from bot.settings import Settings
from bot.support.base import StoreBase
from bot.support.lifecycle import stage_audit
from bot.support.models import Callback
from bot.support.ops import CallbackView, clean_callback, insert_callback
from bot.twilio.models import TwilioCall

__all__ = ["ACTIVE_STATUSES", "CallbackCall", "CallbackLimits", "CallbackRefused",
           "OPEN_STATUSES", "TERMINAL_STATUSES", "VoiceStore", "status_for"]

logger = logging.getLogger(__name__)

ACTIVE_STATUSES: Tuple[str, ...] = ("calling", "in_progress")
"""A call is being placed or is going on (the widget shows "End call")."""
TERMINAL_STATUSES: Tuple[str, ...] = ("completed", "no_answer", "failed", "cancelled",
                                      "missed", "done")

_TWILIO_TO_OURS: Dict[str, str] = {
    "queued": "calling", "initiated": "calling", "ringing": "calling",
    "in-progress": "in_progress", "answered": "in_progress",
    "completed": "completed", "busy": "no_answer", "no-answer": "no_answer",
    "failed": "failed", "canceled": "cancelled",
}
_RANK: Dict[str, int] = {"scheduled": 0, "calling": 1, "in_progress": 2}
OPEN_STATUSES: Tuple[str, ...] = ("scheduled", *ACTIVE_STATUSES)
"""A call-back that is still to be called or being called (counts as "open" for the caps)."""

DAY = timedelta(hours=24)
# Keys of the PostgreSQL advisory locks (transaction-scoped) that serialise bookings and
# claims; any 64-bit numbers nobody else uses.
_BOOKING_LOCK = 0x4E57_4342_0001  # "NWCB" 1
_CLAIM_LOCK = 0x4E57_4342_0002


def status_for(call_status: str) -> Optional[str]:
    """Our call-back status for Twilio's ``CallStatus`` (None: unknown value)."""
    return _TWILIO_TO_OURS.get((call_status or "").strip().lower())


def _rank(status: str) -> int:
    return _RANK.get(status, 3)


@dataclass(frozen=True)
class CallbackLimits:
    """What a customer may book (``CALLBACK_*`` settings, :meth:`from_settings`).

    Attributes:
        countries: ISO regions whose numbers may be called (upper case).
        max_open_per_customer: Open (scheduled or being called) call-backs per customer.
        max_per_customer_day: Bookings per customer in 24 hours (cancelled ones count).
        max_per_number_day: Bookings per phone number in 24 hours, over all customers.
        max_per_day: Bookings in 24 hours, over all customers.
    """

    countries: Tuple[str, ...] = Settings.callback_countries
    max_open_per_customer: int = Settings.callback_max_open_per_customer
    max_per_customer_day: int = Settings.callback_max_per_customer_day
    max_per_number_day: int = Settings.callback_max_per_number_day
    max_per_day: int = Settings.callback_max_per_day

    @classmethod
    def from_settings(cls) -> "CallbackLimits":
        """From :func:`bot.settings.get_settings`."""
        from bot.settings import get_settings

        s = get_settings()
        return cls(countries=tuple(c.upper() for c in s.callback_countries),
                   max_open_per_customer=s.callback_max_open_per_customer,
                   max_per_customer_day=s.callback_max_per_customer_day,
                   max_per_number_day=s.callback_max_per_number_day,
                   max_per_day=s.callback_max_per_day)

    def number_problem(self, phone: str) -> Optional[str]:
        """Why ``phone`` may not be called: ``country`` (outside :attr:`countries`, or no
        valid number), ``number_type`` (not a line a person answers), else None."""
        region = phone_region(phone)
        if region is None or region not in self.countries:
            return "country"
        if not is_personal_number(phone):
            return "number_type"
        return None


#: Every :attr:`CallbackRefused.kind` (the bot has a ``callback_limit_<kind>`` message each).
REFUSAL_KINDS = ("country", "number_type", "open", "customer_day", "number_day", "day")


class CallbackRefused(ValueError):
    """A booking the caps or the number rules do not allow; nothing was stored.

    Attributes:
        kind: ``country``, ``number_type`` (see :meth:`CallbackLimits.number_problem`),
            ``open`` (too many open call-backs), ``customer_day``, ``number_day`` or ``day``
            (too many bookings in 24 hours by the customer, to the number, in all).
        limit: The cap that was reached (0 for the number rules).
    """

    def __init__(self, kind: str, message: str, limit: int = 0) -> None:
        super().__init__(message)
        self.kind = kind
        self.limit = limit


async def _serialise(session: Any, key: int) -> None:
    """Take the transaction-scoped lock ``key`` (PostgreSQL); SQLite write transactions are
    serialised already (``BEGIN IMMEDIATE``)."""
    if session.bind.dialect.name == "postgresql":
        await session.execute(sql_text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


async def _count(session: Any, *conditions: Any) -> int:
    return int((await session.execute(
        select(func.count(Callback.id)).where(*conditions))).scalar_one())


async def _cap_reached(session: Any, limits: CallbackLimits, customer_id: str,
                       phone: Optional[str], now: datetime) -> Optional[CallbackRefused]:
    """The first cap a new booking would exceed (customer's open ones, then bookings in 24
    hours by the customer, to the number, in all), else None."""
    since = now - DAY
    open_ = await _count(session, Callback.customer_id == customer_id,
                         Callback.status.in_(OPEN_STATUSES))
    if open_ >= limits.max_open_per_customer:
        return CallbackRefused("open", f"The customer has {open_} open call-backs "
                               f"(at most {limits.max_open_per_customer}).",
                               limits.max_open_per_customer)
    mine = await _count(session, Callback.customer_id == customer_id,
                        Callback.created_at >= since)
    if mine >= limits.max_per_customer_day:
        return CallbackRefused("customer_day", f"The customer booked {mine} call-backs in 24 "
                               f"hours (at most {limits.max_per_customer_day}).",
                               limits.max_per_customer_day)
    if phone is not None:
        to_number = await _count(session, Callback.phone == phone, Callback.created_at >= since)
        if to_number >= limits.max_per_number_day:
            return CallbackRefused("number_day", f"{to_number} call-backs to this number in 24 "
                                   f"hours (at most {limits.max_per_number_day}).",
                                   limits.max_per_number_day)
    everyone = await _count(session, Callback.created_at >= since)
    if everyone >= limits.max_per_day:
        return CallbackRefused("day", f"{everyone} call-backs booked in 24 hours (at most "
                               f"{limits.max_per_day}).", limits.max_per_day)
    return None


def _required(name: str, value: Any, max_len: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}.")
    value = value.strip()
    if len(value) > max_len:
        raise ValueError(f"{name} must be at most {max_len} characters.")
    return value


@dataclass(frozen=True)
class CallbackCall:
    """A call-back with its call columns."""

    id: int
    reference: str
    conversation_id: str
    customer_id: Optional[str]
    phone: str
    scheduled_for: datetime
    customer_tz: str
    status: str
    topic: Optional[str]
    call_sid: Optional[str]
    call_status: Optional[str]
    call_started_at: Optional[datetime]
    call_ended_at: Optional[datetime]
    call_error: Optional[str]
    attempts: int
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Callback, call: Optional[TwilioCall] = None) -> "CallbackCall":
        """From a ``callbacks`` row and its ``twilio_calls`` row (if any).

        ``updated_at`` is the call row's (the last claim), else the call-back's."""
        return cls(row.id, row.reference, row.conversation_id, row.customer_id, row.phone,
                   row.scheduled_for, row.customer_tz, row.status, row.topic,
                   call.call_sid if call else None, call.call_status if call else None,
                   call.started_at if call else None, call.ended_at if call else None,
                   call.error if call else None, int(call.attempts or 0) if call else 0,
                   call.updated_at if call else row.updated_at)

    @property
    def active(self) -> bool:
        """A call is being placed or is going on."""
        return self.status in ACTIVE_STATUSES


class VoiceStore(StoreBase):
    """Call-back rows for the Voice scheduler and status webhooks.

    Args:
        engine: The support database engine (NOT owned: the caller disposes it).
    """

    # ------------------------------------------------------------------ reads

    async def get(self, reference: str) -> Optional[CallbackCall]:
        """The call-back with this reference, if any."""
        return await self._one(Callback.reference == (reference or "").strip().upper())

    async def by_call_sid(self, call_sid: str) -> Optional[CallbackCall]:
        """The call-back whose call has this SID, if any."""
        if not call_sid:
            return None
        return await self._one(TwilioCall.call_sid == call_sid)

    async def active_call(self, conversation_id: str) -> Optional[CallbackCall]:
        """The newest call-back of the conversation whose call is being placed or going on."""
        async with db.read_session(self._sessions) as session:
            found = (await session.execute(_joined().where(
                Callback.conversation_id == conversation_id,
                Callback.status.in_(ACTIVE_STATUSES)).order_by(Callback.id.desc()).limit(1))
            ).first()
            return CallbackCall.from_row(*found) if found is not None else None

    async def due_ids(self, now: datetime, limit: int = 50) -> List[int]:
        """Ids of ``scheduled`` call-backs due at ``now``, oldest first."""
        async with db.read_session(self._sessions) as session:
            return list((await session.execute(select(Callback.id).where(
                Callback.status == "scheduled", Callback.scheduled_for <= now)
                .order_by(Callback.scheduled_for, Callback.id).limit(limit))).scalars().all())

    async def stale_calling(self, older_than: datetime) -> List[CallbackCall]:
        """Call-backs left ``calling`` without a call SID since a claim before ``older_than``
        (the process placing the call died)."""
        async with db.read_session(self._sessions) as session:
            found = (await session.execute(
                select(Callback, TwilioCall).join(TwilioCall,
                                                  TwilioCall.callback_id == Callback.id)
                .where(Callback.status == "calling", TwilioCall.call_sid.is_(None),
                       TwilioCall.updated_at < older_than)
                .order_by(Callback.id).limit(50))).all()
            return [CallbackCall.from_row(*pair) for pair in found]

    async def active_calls(self, older_than: Optional[datetime] = None,
                           limit: int = 50) -> List[CallbackCall]:
        """Call-backs whose call is being placed or going on and has a call SID, optionally
        only those whose call row did not change since ``older_than`` (their status
        callbacks may have been lost)."""
        query = (select(Callback, TwilioCall)
                 .join(TwilioCall, TwilioCall.callback_id == Callback.id)
                 .where(Callback.status.in_(ACTIVE_STATUSES), TwilioCall.call_sid.is_not(None)))
        if older_than is not None:
            query = query.where(TwilioCall.updated_at < older_than)
        async with db.read_session(self._sessions) as session:
            found = (await session.execute(query.order_by(Callback.id).limit(limit))).all()
            return [CallbackCall.from_row(*pair) for pair in found]

    async def count_active(self) -> int:
        """How many call-backs are being called right now (``calling``/``in_progress``)."""
        async with db.read_session(self._sessions) as session:
            return await _count(session, Callback.status.in_(ACTIVE_STATUSES))

    async def booking_refusal(self, customer_id: str, limits: CallbackLimits,
                              phone: Optional[str] = None,
                              now: Optional[datetime] = None) -> Optional[CallbackRefused]:
        """The cap a booking by ``customer_id`` (to ``phone``, if known) would hit now, else
        None: for telling the customer early. :meth:`do_book_callback` checks again."""
        async with db.read_session(self._sessions) as session:
            return await _cap_reached(session, limits, customer_id, phone, now or db.utcnow())

    async def _one(self, condition: Any) -> Optional[CallbackCall]:
        async with db.read_session(self._sessions) as session:
            found = (await session.execute(_joined().where(condition))).first()
            return CallbackCall.from_row(*found) if found is not None else None

    # ---------------------------------------------------------------- booking

    async def do_book_callback(
        self,
        conversation_id: str,
        customer_id: str,
        phone: str,
        scheduled_for: datetime,
        customer_tz: str,
        limits: CallbackLimits,
        topic: Optional[str] = None,
        actor: Optional[str] = None,
    ) -> CallbackView:
        """Book a call-back for a verified customer within the caps; audit
        ``callback.scheduled``.

        Args:
            conversation_id: The Rasa conversation id.
            customer_id: The VERIFIED customer (``actions.common.customer_id``).
            phone: E.164 number; must pass :meth:`CallbackLimits.number_problem`.
            scheduled_for: Aware datetime of the call (stored as UTC).
            customer_tz: The customer's IANA zone.
            limits: The caps.
            topic: What the call is about (optional).
            actor: Who acts, for the audit row (default ``customer:<id>``).

        Returns:
            The call-back (``C-000045``).

        Raises:
            CallbackRefused: A number rule or a cap says no; nothing is stored.
            ValueError: Invalid arguments.
        """
        customer_id = _required("customer_id", customer_id, 255)
        problem = limits.number_problem(phone)
        if problem is not None:
            raise CallbackRefused(problem, f"{phone} may not be called ({problem}).")
        fields = clean_callback(conversation_id, phone, scheduled_for, customer_tz, topic,
                                customer_id, actor or f"customer:{customer_id}")
        now = db.utcnow()
        async with db.write_session(self._sessions) as session:
            await _serialise(session, _BOOKING_LOCK)
            refused = await _cap_reached(session, limits, customer_id, fields["phone"], now)
            if refused is not None:
                logger.warning("Call-back for customer %s refused: %s", customer_id, refused)
                raise refused
            view, audit = await insert_callback(
                session, now, **fields, audit_data={"region": phone_region(fields["phone"])})
        await self._notify(audit.action, {"actor": fields["actor"], "audit": audit,
                                          "callback": view})
        return view

    # ----------------------------------------------------------------- claims

    async def do_claim(self, callback_id: int, now: datetime, max_late: Optional[timedelta],
                       max_active: Optional[int] = None) -> Optional[CallbackCall]:
        """Claim one due call-back: ``scheduled`` → ``calling`` (attempts + 1), or → ``missed``
        when it is more than ``max_late`` overdue. Audit ``callback.calling`` /
        ``callback.missed``.

        Args:
            callback_id: The call-back.
            now: The current time.
            max_late: How late a call-back may still be called (None: any).
            max_active: At most this many call-backs may be ``calling``/``in_progress``
                (counted in this transaction, under a lock): when that many are, the
                call-back stays ``scheduled`` for a later run. None: no cap.

        Returns:
            The claimed call-back (check its status), or None when someone else claimed,
            cancelled or moved it first, or there is no capacity.
        """
        async with db.write_session(self._sessions) as session:
            await _serialise(session, _CLAIM_LOCK)
            row = (await session.execute(select(Callback).where(
                Callback.id == callback_id))).scalar_one_or_none()
            if row is None or row.status != "scheduled" or row.scheduled_for > now:
                return None
            missed = max_late is not None and row.scheduled_for < now - max_late
            if not missed and max_active is not None and await _count(
                    session, Callback.status.in_(ACTIVE_STATUSES)) >= max_active:
                return None
            target = "missed" if missed else "calling"
            result = await session.execute(
                update(Callback).where(Callback.id == callback_id,
                                       Callback.status == "scheduled",
                                       Callback.scheduled_for <= now)
                .values(status=target, updated_at=now)
                .execution_options(synchronize_session=False))
            if result.rowcount != 1:
                return None
            await session.refresh(row)
            call = await _call_row(session, row.id)
            if not missed:
                if call is None:
                    call = TwilioCall(callback_id=row.id, attempts=0, created_at=now,
                                      updated_at=now)
                    session.add(call)
                call.attempts = int(call.attempts or 0) + 1
                call.updated_at = now
                await session.flush()
            late = round((now - row.scheduled_for).total_seconds(), 1)
            await stage_audit(session, at=now, actor="twilio", action=f"callback.{target}",
                                       object_type="callback", object_id=row.reference,
                                       data={"status": {"old": "scheduled", "new": target},
                                             "late_seconds": late})
            return CallbackCall.from_row(row, call)

    async def do_claim_due_callbacks(self, now: Optional[datetime] = None,
                                     max_late: Optional[timedelta] = None,
                                     limit: int = 50,
                                     max_active: Optional[int] = None) -> List[CallbackCall]:
        """Claim due ``scheduled`` call-backs, oldest first (see :meth:`do_claim`): every one
        found too late (``missed``), and to call only while fewer than ``max_active`` calls
        are going on; returns the ones this caller claimed (status ``calling`` to call,
        ``missed`` to tell the customer). The others wait for the next run."""
        now = now or db.utcnow()
        claimed = []
        for callback_id in await self.due_ids(now, limit):
            view = await self.do_claim(callback_id, now, max_late, max_active)
            if view is not None:
                claimed.append(view)
        return claimed

    async def do_reclaim_stale(self, callback: CallbackCall, now: Optional[datetime] = None,
                               max_attempts: int = 2) -> Optional[CallbackCall]:
        """Take over a call-back stuck in ``calling`` without a call SID: once more (attempts
        + 1) while ``attempts < max_attempts``, else it becomes ``failed``.

        Returns:
            The call-back (``calling``: place it again; ``failed``: give up), or None when
            it changed meanwhile (another process took it or a status webhook arrived).
        """
        now = now or db.utcnow()
        retry = callback.attempts < max_attempts
        async with db.write_session(self._sessions) as session:
            row = (await session.execute(select(Callback).where(
                Callback.id == callback.id))).scalar_one_or_none()
            if row is None or row.status != "calling":
                return None
            values: Dict[str, Any] = {"updated_at": now}
            if retry:
                values["attempts"] = TwilioCall.attempts + 1
            else:
                values.update(ended_at=now,
                              error="the call could not be placed (the process stopped)")
            result = await session.execute(
                update(TwilioCall).where(TwilioCall.callback_id == callback.id,
                                         TwilioCall.call_sid.is_(None),
                                         TwilioCall.updated_at == callback.updated_at)
                .values(**values).execution_options(synchronize_session=False))
            if result.rowcount != 1:
                return None
            if not retry:
                row.status = "failed"
                row.updated_at = now
            call = await _call_row(session, row.id)
            assert call is not None
            await session.refresh(call)
            await stage_audit(session, at=now, actor="twilio",
                                       action="callback.retried" if retry else "callback.failed",
                                       object_type="callback", object_id=row.reference,
                                       data={"attempts": int(call.attempts or 0),
                                             "reason": "stale_claim"})
            await session.flush()
            return CallbackCall.from_row(row, call)

    # ------------------------------------------------------------ call results

    async def do_record_call_sid(self, callback_id: int, call_sid: str,
                                 call_status: Optional[str] = None) -> CallbackCall:
        """Remember the placed call's SID (and Twilio's first status)."""
        now = db.utcnow()
        async with db.write_session(self._sessions) as session:
            row = (await session.execute(select(Callback).where(
                Callback.id == callback_id))).scalar_one()
            call = await _call_row(session, callback_id)
            if call is None:
                call = TwilioCall(callback_id=callback_id, attempts=1, created_at=now,
                                  updated_at=now)
                session.add(call)
            if call.call_sid is None:
                call.call_sid = call_sid
            if call.call_status is None and call_status:
                call.call_status = call_status[:16]
            call.updated_at = now
            await session.flush()
            return CallbackCall.from_row(row, call)

    async def do_call_failed(self, callback_id: int, error: str) -> Optional[CallbackCall]:
        """Placing the call failed for good: ``calling`` → ``failed`` (audit
        ``callback.failed``). None when it is no longer ``calling``."""
        now = db.utcnow()
        async with db.write_session(self._sessions) as session:
            row = (await session.execute(select(Callback).where(
                Callback.id == callback_id))).scalar_one_or_none()
            if row is None or row.status != "calling":
                return None
            row.status = "failed"
            row.updated_at = now
            call = await _call_row(session, callback_id)
            if call is not None:
                call.error = error[:2000]
                call.ended_at = now
                call.updated_at = now
            await stage_audit(session, at=now, actor="twilio", action="callback.failed",
                                       object_type="callback", object_id=row.reference,
                                       data={"status": {"old": "calling", "new": "failed"},
                                             "error": error[:500]})
            await session.flush()
            return CallbackCall.from_row(row, call)

    async def do_record_call_status(self, call_sid: str, call_status: str, *,
                                    reference: Optional[str] = None,
                                    duration: Optional[str] = None
                                    ) -> Tuple[Optional[CallbackCall], bool]:
        """Apply a Twilio ``CallStatus`` to the call-back of ``call_sid`` (or, before its SID
        is recorded, of ``reference``: the status callback URL carries it).

        Statuses only move forward (callbacks may arrive out of order); a terminal status
        sets ``call_ended_at``, ``in-progress`` sets ``call_started_at``. Audit
        ``callback.<status>`` when our status changes.

        Returns:
            ``(call-back or None when unknown, whether OUR status changed)``.
        """
        ours = status_for(call_status)
        now = db.utcnow()
        async with db.write_session(self._sessions) as session:
            call: Optional[TwilioCall] = None
            row: Optional[Callback] = None
            if call_sid:
                call = (await session.execute(select(TwilioCall).where(
                    TwilioCall.call_sid == call_sid))).scalar_one_or_none()
            if call is not None:
                row = (await session.execute(select(Callback).where(
                    Callback.id == call.callback_id))).scalar_one()
            elif reference:
                row = (await session.execute(select(Callback).where(
                    Callback.reference == reference.strip().upper()))).scalar_one_or_none()
                call = await _call_row(session, row.id) if row is not None else None
                if call is None or call.call_sid not in (None, call_sid):
                    return None, False  # not placed by us, or a status of another call
                call.call_sid = call_sid or None
            if row is None or call is None:
                return None, False
            old = row.status
            if ours is None or old == "scheduled" or _rank(old) == 3 or _rank(ours) < _rank(old):
                await session.flush()
                return CallbackCall.from_row(row, call), False
            call.call_status = call_status[:16]
            call.updated_at = now
            if ours == "in_progress" and call.started_at is None:
                call.started_at = now
            if _rank(ours) == 3 and call.ended_at is None:
                call.ended_at = now
            changed = ours != old
            if changed:
                row.status = ours
                row.updated_at = now
                data: Dict[str, Any] = {"status": {"old": old, "new": ours},
                                        "call_sid": call.call_sid, "call_status": call_status}
                if duration:
                    data["duration"] = duration
                await stage_audit(session, at=now, actor="twilio", action=f"callback.{ours}",
                                           object_type="callback", object_id=row.reference,
                                           data=data)
            await session.flush()
            return CallbackCall.from_row(row, call), changed


def _joined() -> Any:
    """``SELECT callbacks, twilio_calls`` (the call row may be missing)."""
    return select(Callback, TwilioCall).outerjoin(TwilioCall,
                                                 TwilioCall.callback_id == Callback.id)


async def _call_row(session: Any, callback_id: int) -> Optional[TwilioCall]:
    return (await session.execute(select(TwilioCall).where(
        TwilioCall.callback_id == callback_id))).scalar_one_or_none()
