"""The support store: every state change of the support database.

Modelled on Zulip's ``zerver/actions``: each state change is a ``do_*``
coroutine of :class:`SupportStore` that

1. validates its arguments (:class:`ValueError` on bad input),
2. opens a NEW session and runs everything in ONE transaction, including one
   :class:`~bot.support.models.AuditLog` row describing the change (audit rows of
   :data:`~bot.support.models.FEED_TOPICS`, e.g. ``handoff.recorded``, also write their
   ``change_feed`` row in this transaction: the outbox other processes read, bot/live.py),
3. only after the commit succeeded, awaits the registered listeners with
   ``(event, payload)``, where ``event`` equals the audit ``action``
   (``"ticket.created"``) and ``payload`` holds ``"actor"``, ``"audit"``
   (:class:`AuditView`) and the affected object views.

A ``do_*`` call that turns out to change nothing (same status, lower priority
with ``raise_only``…) writes no audit row, notifies nobody and returns the
current view. Results are frozen dataclasses (:class:`TicketView`,
:class:`CallbackView`, :class:`HandoffView`, :class:`AuditView`) so no ORM
object or session escapes this module. Unknown references raise
:class:`NotFound`; actions not allowed in the object's current state raise
:class:`StateError`.

Example::

    store = SupportStore.from_settings()
    await store.create_schema()
    ticket = await store.do_create_ticket("conv-1", "Parcel damaged", "delivery", "high")
    await store.do_record_handoff("conv-1", ticket.reference, "customer asked", "high")
    await store.dispose()
"""
from __future__ import annotations

import copy
import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Tuple
from uuid import uuid4
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot import db
from bot.support.base import Listener, StoreBase
from bot.support.lifecycle import AuditView, StateError, move_ticket, set_conversation_state
from bot.support.lifecycle import stage_audit as _audit
from bot.support.models import (
    CLOSED_TICKET_STATUSES,
    PRIORITIES,
    TICKET_STATUSES,
    AuditLog,
    Callback,
    Handoff,
    Ticket,
    callback_reference as _callback_reference,
    ticket_reference as _ticket_reference,
)

__all__ = [
    "AuditView",
    "CallbackView",
    "HandoffView",
    "Listener",
    "NotFound",
    "StateError",
    "SupportStore",
    "TicketView",
]

logger = logging.getLogger(__name__)


E164_PATTERN = re.compile(r"^\+[1-9]\d{6,14}$")
_EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class NotFound(LookupError):
    """No ticket/call-back with the given reference exists."""


# --------------------------------------------------------------------- views


@dataclass(frozen=True)
class TicketView:
    """A ticket as read from the database (detached, immutable)."""

    id: int
    reference: str
    conversation_id: str
    customer_id: Optional[str]
    contact_email: Optional[str]
    summary: str
    category: str
    priority: str
    status: str
    source: str
    details: Dict[str, Any]
    created_at: datetime
    updated_at: datetime
    resolved_at: Optional[datetime]
    assignee_id: Optional[int] = None
    queued_at: Optional[datetime] = None
    first_response_at: Optional[datetime] = None

    @property
    def is_open(self) -> bool:
        """True unless the ticket is resolved or closed."""
        return self.status not in CLOSED_TICKET_STATUSES

    @classmethod
    def from_row(cls, row: Ticket) -> "TicketView":
        return cls(
            id=row.id,
            reference=row.reference,
            conversation_id=row.conversation_id,
            customer_id=row.customer_id,
            contact_email=row.contact_email,
            summary=row.summary,
            category=row.category,
            priority=row.priority,
            status=row.status,
            source=row.source,
            details=copy.deepcopy(dict(row.details or {})),
            created_at=row.created_at,
            updated_at=row.updated_at,
            resolved_at=row.resolved_at,
            assignee_id=row.assignee_id,
            queued_at=row.queued_at,
            first_response_at=row.first_response_at,
        )


@dataclass(frozen=True)
class CallbackView:
    """A call-back as read from the database; ``scheduled_for`` is aware UTC."""

    id: int
    reference: str
    conversation_id: str
    customer_id: Optional[str]
    phone: str
    scheduled_for: datetime
    customer_tz: str
    status: str
    topic: Optional[str]
    created_at: datetime
    updated_at: datetime

    @property
    def scheduled_local(self) -> datetime:
        """``scheduled_for`` in the customer's time zone."""
        return self.scheduled_for.astimezone(ZoneInfo(self.customer_tz))

    @classmethod
    def from_row(cls, row: Callback) -> "CallbackView":
        return cls(
            id=row.id,
            reference=row.reference,
            conversation_id=row.conversation_id,
            customer_id=row.customer_id,
            phone=row.phone,
            scheduled_for=row.scheduled_for,
            customer_tz=row.customer_tz,
            status=row.status,
            topic=row.topic,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


@dataclass(frozen=True)
class HandoffView:
    """A handoff to a human agent, with its ticket's reference."""

    id: int
    conversation_id: str
    ticket_id: int
    ticket_reference: str
    reason: str
    priority: str
    status: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: Handoff, reference: str) -> "HandoffView":
        return cls(
            id=row.id,
            conversation_id=row.conversation_id,
            ticket_id=row.ticket_id,
            ticket_reference=reference,
            reason=row.reason,
            priority=row.priority,
            status=row.status,
            created_at=row.created_at,
        )


# ---------------------------------------------------------------- validation


def _text(name: str, value: Any, *, max_len: Optional[int] = None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}.")
    value = value.strip()
    if max_len is not None and len(value) > max_len:
        raise ValueError(f"{name} must be at most {max_len} characters, got {len(value)}.")
    return value


def _optional_text(name: str, value: Any, *, max_len: Optional[int] = None) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string or None, got {value!r}.")
    if not value.strip():
        return None
    return _text(name, value, max_len=max_len)


def _choice(name: str, value: Any, allowed: Tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}.")
    return value


def _email(value: Any) -> Optional[str]:
    email = _optional_text("contact_email", value, max_len=320)
    if email is not None and not _EMAIL_PATTERN.match(email):
        raise ValueError(f"contact_email {email!r} is not a valid e-mail address.")
    return email


def _phone(value: Any) -> str:
    if not isinstance(value, str) or not E164_PATTERN.match(value):
        raise ValueError(
            f"phone must be in E.164 format like '+4915112345678' (a '+', the "
            f"country code and 7-15 digits, no spaces); got {value!r}."
        )
    return value


def _aware(name: str, value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise ValueError(f"{name} must be a datetime, got {type(value).__name__}.")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}.")
    return value


def _zone(value: Any) -> str:
    name = _text("customer_tz", value, max_len=64)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"customer_tz {name!r} is not a known IANA time zone.") from error
    return name


def _json_object(name: str, value: Any) -> Dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a dict, got {type(value).__name__}.")
    result = {str(key): item for key, item in value.items()}
    try:
        json.dumps(result)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be JSON-serialisable: {error}") from error
    return copy.deepcopy(result)


def _reference(value: Any, prefix: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise NotFound(f"No {prefix} reference given ({value!r}).")
    return value.strip().upper()


def _iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat()


def _change(old: Any, new: Any) -> Dict[str, Any]:
    return {"from": old, "to": new}


# --------------------------------------------------------------------- store


class SupportStore(StoreBase):
    """Tickets, call-backs, handoffs and their audit log, over an async engine.

    Args:
        engine: The engine to use; the store owns it (see :meth:`dispose`).
    """

    @classmethod
    def from_settings(cls) -> "SupportStore":
        """Create a store for ``get_settings().support_db_url``."""
        from bot.settings import get_settings

        return cls.from_url(get_settings().support_db_url)

    # --------------------------------------------------------------- tickets

    async def do_create_ticket(
        self,
        conversation_id: str,
        summary: str,
        category: str,
        priority: str,
        contact_email: Optional[str] = None,
        customer_id: Optional[str] = None,
        source: str = "bot",
        details: Optional[Mapping[str, Any]] = None,
        status: str = "open",
        actor: str = "bot",
    ) -> TicketView:
        """Open a ticket; audit action ``ticket.created``.

        Args:
            conversation_id: The Rasa conversation (sender) id.
            summary: Non-empty one-line description.
            category: Triage category (e.g. ``"delivery"``).
            priority: One of ``low``, ``normal``, ``high``, ``urgent``.
            contact_email: Optional address to answer to.
            customer_id: Optional shop customer id.
            source: Where the ticket came from (``"bot"``, ``"handoff"``).
            details: JSON object (transcript, slots, triage, order_number …).
            status: Initial status (default ``open``).
            actor: Who is acting (``"bot"``, ``"customer:<id>"``).

        Returns:
            The new ticket, with its ``T-000123`` reference.

        Raises:
            ValueError: On invalid arguments.
        """
        conversation_id = _text("conversation_id", conversation_id, max_len=255)
        summary = _text("summary", summary)
        category = _text("category", category, max_len=64)
        priority = _choice("priority", priority, PRIORITIES)
        status = _choice("status", status, TICKET_STATUSES)
        contact_email = _email(contact_email)
        customer_id = _optional_text("customer_id", customer_id, max_len=255)
        source = _text("source", source, max_len=32)
        details_ = _json_object("details", details)
        actor = _text("actor", actor, max_len=255)

        now = db.utcnow()
        async with db.write_session(self._sessions) as session:
            row, audit = await _insert_ticket(
                session, now, actor, conversation_id=conversation_id, customer_id=customer_id,
                contact_email=contact_email, summary=summary, category=category,
                priority=priority, status=status, source=source, details=details_,
                resolved_at=now if status in CLOSED_TICKET_STATUSES else None,
            )
            view = TicketView.from_row(row)
        await self._notify(audit.action, {"actor": actor, "audit": audit, "ticket": view})
        return view

    async def do_update_ticket(
        self,
        reference: str,
        *,
        status: Optional[str] = None,
        priority: Optional[str] = None,
        details_update: Optional[Mapping[str, Any]] = None,
        raise_only: bool = False,
        actor: str = "bot",
    ) -> TicketView:
        """Change a ticket's status, priority and/or details; audit ``ticket.updated``.

        Args:
            reference: The ticket reference (``T-000123``).
            status: New status, if any.
            priority: New priority, if any.
            details_update: Keys to set in ``details`` (shallow merge).
            raise_only: If true, ``priority`` is applied only when it is higher
                than the current one (never lowers it).
            actor: Who is acting.

        Returns:
            The ticket after the change (unchanged if nothing differed; then no
            audit row is written and no listener runs).

        Raises:
            ValueError: On invalid arguments, or if nothing to change was given.
            NotFound: If the reference is unknown.
        """
        if status is None and priority is None and details_update is None:
            raise ValueError("do_update_ticket needs status, priority or details_update.")
        if status is not None:
            _choice("status", status, TICKET_STATUSES)
        if priority is not None:
            _choice("priority", priority, PRIORITIES)
        update = _json_object("details_update", details_update)
        actor = _text("actor", actor, max_len=255)
        reference = _reference(reference, "ticket")

        now = db.utcnow()
        audit: Optional[AuditView] = None
        async with db.write_session(self._sessions) as session:
            row = await _ticket_for_update(session, reference)
            changes: Dict[str, Any] = {}
            if status is not None and status != row.status:
                changes["status"] = _change(row.status, status)
                move_ticket(row, status, now)
            if priority is not None and priority != row.priority:
                lower = PRIORITIES.index(priority) < PRIORITIES.index(row.priority)
                if not (raise_only and lower):
                    changes["priority"] = _change(row.priority, priority)
                    row.priority = priority
            if update:
                merged = dict(row.details or {})
                changed_keys = sorted(k for k, v in update.items() if merged.get(k, _MISSING) != v)
                if changed_keys:
                    merged.update(update)
                    row.details = merged
                    changes["details_keys"] = changed_keys
            if changes:
                row.updated_at = now
                audit = await _audit(
                    session,
                    at=now,
                    actor=actor,
                    action="ticket.updated",
                    object_type="ticket",
                    object_id=row.reference,
                    data=changes,
                )
            view = TicketView.from_row(row)
        if audit is not None:
            await self._notify(audit.action, {"actor": actor, "audit": audit, "ticket": view})
        return view

    # ------------------------------------------------------------ call-backs

    async def do_schedule_callback(
        self,
        conversation_id: str,
        phone: str,
        scheduled_for: datetime,
        customer_tz: str,
        topic: Optional[str] = None,
        customer_id: Optional[str] = None,
        actor: str = "bot",
    ) -> CallbackView:
        """Book a phone call-back without any limit; audit ``callback.scheduled``.

        For operators and tests only: customers book through
        ``bot.twilio.voice_store.VoiceStore.do_book_callback``, which enforces the caps and
        the country allow-list in its transaction (docs/security.md). The scheduler still
        refuses to dial a number outside the allow-list, whoever booked it.

        Args:
            conversation_id: The Rasa conversation id.
            phone: E.164 number (``+4915112345678``).
            scheduled_for: Aware datetime of the call (stored as UTC).
            customer_tz: The customer's IANA zone (``Europe/Berlin``).
            topic: Optional short text of what the call is about.
            customer_id: Optional shop customer id.
            actor: Who is acting.

        Returns:
            The call-back, with its ``C-000045`` reference.

        Raises:
            ValueError: On invalid arguments.
        """
        fields = clean_callback(conversation_id, phone, scheduled_for, customer_tz, topic,
                                customer_id, actor)
        async with db.write_session(self._sessions) as session:
            view, audit = await insert_callback(session, db.utcnow(), **fields)
        await self._notify(audit.action, {"actor": fields["actor"], "audit": audit,
                                          "callback": view})
        return view

    async def do_reschedule_callback(
        self, reference: str, scheduled_for: datetime, actor: str = "bot"
    ) -> CallbackView:
        """Move a scheduled call-back; audit ``callback.rescheduled``.

        Raises:
            ValueError: If ``scheduled_for`` is not an aware datetime.
            NotFound: If the reference is unknown.
            StateError: If the call-back is not ``scheduled`` any more.
        """
        scheduled_for = _aware("scheduled_for", scheduled_for).astimezone(timezone.utc)
        actor = _text("actor", actor, max_len=255)
        reference = _reference(reference, "call-back")

        now = db.utcnow()
        audit: Optional[AuditView] = None
        async with db.write_session(self._sessions) as session:
            row = await _scheduled_callback_for_update(session, reference, "reschedule")
            if row.scheduled_for != scheduled_for:
                audit = await _audit(
                    session,
                    at=now,
                    actor=actor,
                    action="callback.rescheduled",
                    object_type="callback",
                    object_id=row.reference,
                    data={"scheduled_for": _change(_iso(row.scheduled_for), _iso(scheduled_for))},
                )
                row.scheduled_for = scheduled_for
                row.updated_at = now
            view = CallbackView.from_row(row)
        if audit is not None:
            await self._notify(audit.action, {"actor": actor, "audit": audit, "callback": view})
        return view

    async def do_cancel_callback(self, reference: str, actor: str = "bot") -> CallbackView:
        """Cancel a scheduled call-back; audit ``callback.cancelled``.

        Raises:
            NotFound: If the reference is unknown.
            StateError: If the call-back is not ``scheduled`` any more.
        """
        actor = _text("actor", actor, max_len=255)
        reference = _reference(reference, "call-back")

        now = db.utcnow()
        async with db.write_session(self._sessions) as session:
            row = await _scheduled_callback_for_update(session, reference, "cancel")
            row.status = "cancelled"
            row.updated_at = now
            audit = await _audit(
                session,
                at=now,
                actor=actor,
                action="callback.cancelled",
                object_type="callback",
                object_id=row.reference,
                data={"status": _change("scheduled", "cancelled")},
            )
            view = CallbackView.from_row(row)
        await self._notify(audit.action, {"actor": actor, "audit": audit, "callback": view})
        return view

    # -------------------------------------------------------------- handoffs

    async def do_record_handoff(
        self,
        conversation_id: str,
        ticket_reference: str,
        reason: str,
        priority: str,
        actor: str = "bot",
    ) -> HandoffView:
        """Queue a ticket for a human agent; audit ``handoff.recorded``.

        In the same transaction the ticket's status becomes ``queued``.

        Raises:
            ValueError: On invalid arguments.
            NotFound: If the ticket reference is unknown.
            StateError: If the ticket is already resolved or closed.
        """
        conversation_id = _text("conversation_id", conversation_id, max_len=255)
        reason = _text("reason", reason, max_len=255)
        priority = _choice("priority", priority, PRIORITIES)
        actor = _text("actor", actor, max_len=255)
        reference = _reference(ticket_reference, "ticket")

        now = db.utcnow()
        async with db.write_session(self._sessions) as session:
            ticket = await _ticket_for_update(session, reference)
            if ticket.status in CLOSED_TICKET_STATUSES:
                raise StateError(
                    f"Ticket {ticket.reference} is {ticket.status}; it cannot be handed off."
                )
            previous_status = ticket.status
            move_ticket(ticket, "queued", now)
            row = Handoff(
                conversation_id=conversation_id,
                ticket_id=ticket.id,
                reason=reason,
                priority=priority,
                status="queued",
                created_at=now,
            )
            session.add(row)
            await session.flush()
            audit = await _audit(
                session,
                at=now,
                actor=actor,
                action="handoff.recorded",
                object_type="handoff",
                object_id=str(row.id),
                data={
                    "conversation_id": conversation_id,
                    "ticket": ticket.reference,
                    "reason": reason,
                    "priority": priority,
                    "ticket_status": _change(previous_status, "queued"),
                },
            )
            view = HandoffView.from_row(row, ticket.reference)
            ticket_view = TicketView.from_row(ticket)
        await self._notify(
            audit.action,
            {"actor": actor, "audit": audit, "handoff": view, "ticket": ticket_view},
        )
        return view

    async def do_handoff(
        self,
        conversation_id: str,
        *,
        summary: str,
        category: str,
        priority: str,
        reason: str,
        details: Optional[Mapping[str, Any]] = None,
        contact_email: Optional[str] = None,
        customer_id: Optional[str] = None,
        actor: str = "bot",
    ) -> Tuple[TicketView, HandoffView]:
        """Hand a conversation to a person, all in ONE transaction.

        The conversation's open ticket gets the new ``details`` (transcript,
        slots, triage, context) and a raise-only priority, or a ticket is
        created (source ``handoff``); a handoff row is recorded; the ticket is
        ``queued`` (``queued_at`` set) unless an agent already owns it; the
        widget conversation (if any) moves to state ``queued`` and points at
        the ticket. Audit rows: ``ticket.created`` or ``ticket.updated``, and
        ``handoff.recorded``; listeners hear ``handoff.recorded`` after commit.

        Returns:
            The ticket and the handoff.

        Raises:
            ValueError: On invalid arguments.
        """
        from bot.support.models import Conversation

        conversation_id = _text("conversation_id", conversation_id, max_len=255)
        summary = _text("summary", summary)
        category = _text("category", category, max_len=64)
        priority = _choice("priority", priority, PRIORITIES)
        reason = _text("reason", reason, max_len=255)
        details_ = _json_object("details", details)
        contact_email = _email(contact_email)
        customer_id = _optional_text("customer_id", customer_id, max_len=255)
        actor = _text("actor", actor, max_len=255)

        now = db.utcnow()
        async with db.write_session(self._sessions) as session:
            ticket = (
                await session.execute(
                    select(Ticket)
                    .where(
                        Ticket.conversation_id == conversation_id,
                        Ticket.status.notin_(CLOSED_TICKET_STATUSES),
                    )
                    .order_by(Ticket.id.desc())
                    .limit(1)
                    .with_for_update()
                )
            ).scalar_one_or_none()
            if ticket is None:
                ticket, _ = await _insert_ticket(
                    session, now, actor, conversation_id=conversation_id,
                    customer_id=customer_id, contact_email=contact_email, summary=summary,
                    category=category, priority=priority, status="queued", source="handoff",
                    details=details_, queued_at=now,
                )
            else:
                changes: Dict[str, Any] = {}
                if PRIORITIES.index(priority) > PRIORITIES.index(ticket.priority):
                    changes["priority"] = _change(ticket.priority, priority)
                    ticket.priority = priority
                merged = dict(ticket.details or {})
                changed_keys = sorted(k for k, v in details_.items() if merged.get(k, _MISSING) != v)
                if changed_keys:
                    merged.update(details_)
                    ticket.details = merged
                    changes["details_keys"] = changed_keys
                if ticket.status not in ("queued", "assigned"):
                    changes["status"] = _change(ticket.status, "queued")
                    move_ticket(ticket, "queued", now)
                    ticket.queued_at = now
                if ticket.contact_email is None and contact_email:
                    ticket.contact_email = contact_email
                if changes:
                    ticket.updated_at = now
                    await _audit(
                        session, at=now, actor=actor, action="ticket.updated",
                        object_type="ticket", object_id=ticket.reference, data=changes,
                    )
            row = Handoff(
                conversation_id=conversation_id,
                ticket_id=ticket.id,
                reason=reason,
                priority=ticket.priority,
                status="queued",
                created_at=now,
            )
            session.add(row)
            conversation = (
                await session.execute(
                    select(Conversation).where(Conversation.conversation_id == conversation_id)
                )
            ).scalar_one_or_none()
            if conversation is not None:
                # a chat with a person stays theirs; any other waits for one
                set_conversation_state(
                    conversation, "assigned" if conversation.state == "assigned" else "queued",
                    now, ticket_id=ticket.id)
            await session.flush()
            audit = await _audit(
                session, at=now, actor=actor, action="handoff.recorded",
                object_type="handoff", object_id=str(row.id),
                data={"conversation_id": conversation_id, "ticket": ticket.reference,
                      "reason": reason, "priority": ticket.priority},
            )
            handoff = HandoffView.from_row(row, ticket.reference)
            ticket_view = TicketView.from_row(ticket)
        await self._notify(
            audit.action,
            {"actor": actor, "audit": audit, "handoff": handoff, "ticket": ticket_view},
        )
        return ticket_view, handoff

    # --------------------------------------------------------------- queries

    async def agents_online(self, within_seconds: float = 120.0) -> int:
        """How many active agents had the console open within the last ``within_seconds``."""
        from datetime import timedelta

        from sqlalchemy import func

        from bot.support.models import Agent

        since = db.utcnow() - timedelta(seconds=within_seconds)
        async with db.read_session(self._sessions) as session:
            return int((await session.execute(
                select(func.count(Agent.id)).where(Agent.active.is_(True),
                                                   Agent.last_seen_at >= since)
            )).scalar_one())

    async def typical_first_response(self, days: int = 30) -> Optional[float]:
        """Median seconds from queued to the agent's first reply over the last ``days``."""
        from datetime import timedelta

        since = db.utcnow() - timedelta(days=days)
        async with db.read_session(self._sessions) as session:
            rows = (await session.execute(
                select(Ticket.queued_at, Ticket.first_response_at).where(
                    Ticket.queued_at >= since, Ticket.first_response_at.is_not(None))
            )).all()
        waits = sorted((first - queued).total_seconds() for queued, first in rows)
        if not waits:
            return None
        middle = len(waits) // 2
        return waits[middle] if len(waits) % 2 else (waits[middle - 1] + waits[middle]) / 2


    async def get_ticket(self, reference: str) -> TicketView:
        """Return the ticket with this reference (case-insensitive).

        Raises:
            NotFound: If there is none.
        """
        reference = _reference(reference, "ticket")
        async with db.read_session(self._sessions) as session:
            row = (
                await session.execute(select(Ticket).where(Ticket.reference == reference))
            ).scalar_one_or_none()
            if row is None:
                raise NotFound(f"No ticket with reference {reference}.")
            return TicketView.from_row(row)

    async def open_ticket_for_conversation(self, conversation_id: str) -> Optional[TicketView]:
        """Return the newest ticket of a conversation that is not resolved/closed."""
        async with db.read_session(self._sessions) as session:
            row = (
                await session.execute(
                    select(Ticket)
                    .where(
                        Ticket.conversation_id == conversation_id,
                        Ticket.status.notin_(CLOSED_TICKET_STATUSES),
                    )
                    .order_by(Ticket.created_at.desc(), Ticket.id.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
            return None if row is None else TicketView.from_row(row)

    async def get_callback(self, reference: str) -> CallbackView:
        """Return the call-back with this reference (case-insensitive).

        Raises:
            NotFound: If there is none.
        """
        reference = _reference(reference, "call-back")
        async with db.read_session(self._sessions) as session:
            row = (
                await session.execute(select(Callback).where(Callback.reference == reference))
            ).scalar_one_or_none()
            if row is None:
                raise NotFound(f"No call-back with reference {reference}.")
            return CallbackView.from_row(row)

    async def active_callbacks(
        self, conversation_id: Optional[str] = None, customer_id: Optional[str] = None
    ) -> List[CallbackView]:
        """Return scheduled call-backs, soonest first.

        Args:
            conversation_id: Only those of this conversation, if given.
            customer_id: Only those of this customer, if given (both filters
                combine with AND).
        """
        query = select(Callback).where(Callback.status == "scheduled")
        if conversation_id is not None:
            query = query.where(Callback.conversation_id == conversation_id)
        if customer_id is not None:
            query = query.where(Callback.customer_id == customer_id)
        query = query.order_by(Callback.scheduled_for.asc(), Callback.id.asc())
        async with db.read_session(self._sessions) as session:
            rows = (await session.execute(query)).scalars().all()
            return [CallbackView.from_row(row) for row in rows]

    async def audit_log(
        self, object_type: Optional[str] = None, object_id: Optional[str] = None
    ) -> List[AuditView]:
        """Return audit rows, oldest first, optionally for one object (type/id)."""
        query = select(AuditLog)
        if object_type is not None:
            query = query.where(AuditLog.object_type == object_type)
        if object_id is not None:
            query = query.where(AuditLog.object_id == object_id)
        query = query.order_by(AuditLog.id.asc())
        async with db.read_session(self._sessions) as session:
            rows = (await session.execute(query)).scalars().all()
            return [AuditView.from_row(row) for row in rows]


# ------------------------------------------------------------------ helpers

_MISSING = object()


def clean_callback(
    conversation_id: Any, phone: Any, scheduled_for: Any, customer_tz: Any,
    topic: Any = None, customer_id: Any = None, actor: Any = "bot",
) -> Dict[str, Any]:
    """Validated fields of a new call-back (see :meth:`SupportStore.do_schedule_callback`).

    Raises:
        ValueError: On invalid arguments.
    """
    return {
        "conversation_id": _text("conversation_id", conversation_id, max_len=255),
        "phone": _phone(phone),
        "scheduled_for": _aware("scheduled_for", scheduled_for).astimezone(timezone.utc),
        "customer_tz": _zone(customer_tz),
        "topic": _optional_text("topic", topic),
        "customer_id": _optional_text("customer_id", customer_id, max_len=255),
        "actor": _text("actor", actor, max_len=255),
    }


async def insert_callback(
    session: AsyncSession, now: datetime, *, conversation_id: str, phone: str,
    scheduled_for: datetime, customer_tz: str, topic: Optional[str],
    customer_id: Optional[str], actor: str, audit_data: Optional[Dict[str, Any]] = None,
) -> Tuple["CallbackView", AuditView]:
    """Stage a ``scheduled`` call-back and its ``callback.scheduled`` audit row in the
    caller's transaction (fields from :func:`clean_callback`)."""
    row = Callback(
        reference=f"pending-{uuid4().hex}",
        conversation_id=conversation_id,
        customer_id=customer_id,
        phone=phone,
        scheduled_for=scheduled_for,
        customer_tz=customer_tz,
        status="scheduled",
        topic=topic,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    row.reference = _callback_reference(row.id)
    audit = await _audit(
        session,
        at=now,
        actor=actor,
        action="callback.scheduled",
        object_type="callback",
        object_id=row.reference,
        data={
            "conversation_id": conversation_id,
            "customer_id": customer_id,
            "scheduled_for": _iso(scheduled_for),
            "customer_tz": customer_tz,
            **(audit_data or {}),
        },
    )
    return CallbackView.from_row(row), audit


async def _insert_ticket(
    session: AsyncSession, now: datetime, actor: str, **fields: Any
) -> Tuple[Ticket, AuditView]:
    """Add a ticket, give it its ``T-000123`` reference and stage its ``ticket.created`` audit."""
    row = Ticket(reference=f"pending-{uuid4().hex}", created_at=now, updated_at=now, **fields)
    session.add(row)
    await session.flush()
    row.reference = _ticket_reference(row.id)
    audit = await _audit(
        session, at=now, actor=actor, action="ticket.created", object_type="ticket",
        object_id=row.reference,
        data={key: fields[key] for key in ("conversation_id", "customer_id", "category",
                                           "priority", "status", "source")},
    )
    # the confirmation email, queued in this transaction (bot/mail, docs/email.md); imported
    # here: bot.mail.models imports bot.support.models, whose package imports this module
    from bot.mail.outbox import stage_ticket_confirmation

    await stage_ticket_confirmation(session, row, now)
    return row, audit


async def _ticket_for_update(session: AsyncSession, reference: str) -> Ticket:
    row = (
        await session.execute(
            select(Ticket).where(Ticket.reference == reference).with_for_update()
        )
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"No ticket with reference {reference}.")
    return row


async def _scheduled_callback_for_update(
    session: AsyncSession, reference: str, verb: str
) -> Callback:
    row = (
        await session.execute(
            select(Callback).where(Callback.reference == reference).with_for_update()
        )
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"No call-back with reference {reference}.")
    if row.status != "scheduled":
        raise StateError(
            f"Call-back {row.reference} is {row.status}; only scheduled call-backs "
            f"can be {'rescheduled' if verb == 'reschedule' else 'cancelled'}."
        )
    return row
