"""The call-back side of Twilio Voice in the support database: ``callbacks.status`` and the
placed call in ``twilio_calls`` (migration 0005).

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

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Dict, List, Optional, Tuple

from sqlalchemy import select, update

from bot import db
from bot.support.base import StoreBase
from bot.support.models import AuditLog, Callback
from bot.twilio.models import TwilioCall

__all__ = ["ACTIVE_STATUSES", "CallbackCall", "TERMINAL_STATUSES", "VoiceStore", "status_for"]

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


def status_for(call_status: str) -> Optional[str]:
    """Our call-back status for Twilio's ``CallStatus`` (None: unknown value)."""
    return _TWILIO_TO_OURS.get((call_status or "").strip().lower())


def _rank(status: str) -> int:
    return _RANK.get(status, 3)


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

    async def _one(self, condition: Any) -> Optional[CallbackCall]:
        async with db.read_session(self._sessions) as session:
            found = (await session.execute(_joined().where(condition))).first()
            return CallbackCall.from_row(*found) if found is not None else None

    # ----------------------------------------------------------------- claims

    async def do_claim(self, callback_id: int, now: datetime, max_late: Optional[timedelta]
                       ) -> Optional[CallbackCall]:
        """Claim one due call-back: ``scheduled`` → ``calling`` (attempts + 1), or → ``missed``
        when it is more than ``max_late`` overdue. Audit ``callback.calling`` /
        ``callback.missed``.

        Returns:
            The claimed call-back (check its status), or None when someone else claimed,
            cancelled or moved it first.
        """
        async with db.write_session(self._sessions) as session:
            row = (await session.execute(select(Callback).where(
                Callback.id == callback_id))).scalar_one_or_none()
            if row is None or row.status != "scheduled" or row.scheduled_for > now:
                return None
            missed = max_late is not None and row.scheduled_for < now - max_late
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
            session.add(AuditLog(at=now, actor="twilio", action=f"callback.{target}",
                                 object_type="callback", object_id=row.reference,
                                 data={"status": {"old": "scheduled", "new": target},
                                       "late_seconds": late}))
            return CallbackCall.from_row(row, call)

    async def do_claim_due_callbacks(self, now: Optional[datetime] = None,
                                     max_late: Optional[timedelta] = None,
                                     limit: int = 50) -> List[CallbackCall]:
        """Claim every due ``scheduled`` call-back (see :meth:`do_claim`); returns the ones
        this caller claimed (status ``calling`` to call, ``missed`` to tell the customer)."""
        now = now or db.utcnow()
        claimed = []
        for callback_id in await self.due_ids(now, limit):
            view = await self.do_claim(callback_id, now, max_late)
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
            session.add(AuditLog(at=now, actor="twilio",
                                 action="callback.retried" if retry else "callback.failed",
                                 object_type="callback", object_id=row.reference,
                                 data={"attempts": int(call.attempts or 0),
                                       "reason": "stale_claim"}))
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
            session.add(AuditLog(at=now, actor="twilio", action="callback.failed",
                                 object_type="callback", object_id=row.reference,
                                 data={"status": {"old": "calling", "new": "failed"},
                                       "error": error[:500]}))
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
                session.add(AuditLog(at=now, actor="twilio", action=f"callback.{ours}",
                                     object_type="callback", object_id=row.reference,
                                     data=data))
            await session.flush()
            return CallbackCall.from_row(row, call), changed


def _joined() -> Any:
    """``SELECT callbacks, twilio_calls`` (the call row may be missing)."""
    return select(Callback, TwilioCall).outerjoin(TwilioCall,
                                                 TwilioCall.callback_id == Callback.id)


async def _call_row(session: Any, callback_id: int) -> Optional[TwilioCall]:
    return (await session.execute(select(TwilioCall).where(
        TwilioCall.callback_id == callback_id))).scalar_one_or_none()
