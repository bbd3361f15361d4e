"""Live agents: accounts, console sessions, the ticket state machine, ratings, metrics.

State changes are ``do_*`` coroutines of :class:`AgentStore`; each runs in ONE new
transaction, writes an audit row, and notifies listeners only after the commit (as
:mod:`bot.support.ops`). Claim, transfer and resolve also get their ``change_feed`` row in
that transaction (the audit hook in :mod:`bot.support.models`), which consoles and the
Twilio bridge of every process read (:mod:`bot.live`). Views are frozen dataclasses; no
ORM object escapes.

Ticket and conversation states::

    bot --handoff--> queued --claim--> assigned --resolve--> resolved --(rating)--
                        ^                 |  transfer (to another agent)
                        +-----------------+

Ratings (:meth:`AgentStore.do_rate`): a customer rates a chat session only when a person
handled it (an agent, in the console or in Twilio, claimed its ticket, or wrote in it) and
it is finished (the agent resolved it, or the customer ended the session), once per session
and once per ticket; anything else is :class:`RatingRefused` (``not_ratable`` /
``already_rated``) and nothing is stored.

Roles: an ``agent`` sees queued tickets and the tickets assigned to them, claims
queued tickets and acts (reply, transfer, resolve) only on their own; an ``admin``
sees and acts on every ticket and manages agents. Two agents claiming the same
ticket: exactly one wins (a conditional UPDATE), the other gets :class:`StateError`
naming the winner.

Passwords are hashed with Argon2id (``argon2-cffi``); console sessions are random
bearer tokens of which only the SHA-256 is stored, valid for ``ttl_seconds``.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import db
from bot.support.chat import MessageView
from bot.support.metrics import support_metrics, totals
from bot.support.models import (
    AGENT_ROLES,
    PRIORITIES,
    Agent,
    AgentSession,
    AuditLog,
    ChatMessage,
    Conversation,
    Customer,
    Rating,
    Ticket,
)
from bot.support.base import StoreBase
from bot.support.lifecycle import (
    claim_queued_ticket, move_conversation, move_ticket, resolve_ticket,
    set_conversation_state, stage_audit, write_agent_reply,
)
from bot.support.ops import NotFound, StateError, TicketView

__all__ = [
    "AgentStore",
    "AgentView",
    "AuthFailed",
    "Forbidden",
    "InboxItem",
    "RatingRefused",
    "RatingView",
    "TicketDetail",
]

logger = logging.getLogger(__name__)

DEFAULT_SESSION_TTL = 8 * 3600
MAX_REPLY_CHARS = 4000
_USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,63}$")
_HASHER = PasswordHasher()
_DUMMY_HASH = _HASHER.hash("not-a-real-password")  # equalises timing for unknown users


class AuthFailed(Exception):
    """Login or session check failed (``code``: bad_credentials, expired, invalid)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Forbidden(Exception):
    """The agent's role or assignment does not allow this action."""


class RatingRefused(ValueError):
    """A rating that may not be stored (``code``: ``not_ratable``, ``already_rated``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class AgentView:
    """An agent account (never the password hash)."""

    id: int
    username: str
    display_name: str
    role: str
    active: bool
    created_at: datetime
    last_seen_at: Optional[datetime]

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @classmethod
    def from_row(cls, row: Agent) -> "AgentView":
        return cls(row.id, row.username, row.display_name, row.role, bool(row.active),
                   row.created_at, row.last_seen_at)

    def to_json(self) -> Dict[str, Any]:
        return {"id": self.id, "username": self.username, "display_name": self.display_name,
                "role": self.role, "active": self.active}


@dataclass(frozen=True)
class InboxItem:
    """One line of an agent's inbox."""

    ticket: TicketView
    conversation_id: str
    customer_id: Optional[str]
    customer_name: Optional[str]
    state: str
    assignee: Optional[AgentView]
    waiting_since: datetime
    last_message: Optional[str]
    last_message_at: Optional[datetime]
    unread: int


@dataclass(frozen=True)
class TicketDetail:
    """What the conversation view shows: ticket, transcript, context, triage, slots."""

    ticket: TicketView
    conversation_id: str
    state: str
    assignee: Optional[AgentView]
    customer: Dict[str, Any]
    context: Dict[str, Any]
    triage: Dict[str, Any]
    slots: Dict[str, Any]
    bot_transcript: List[Dict[str, Any]]
    messages: List[MessageView]
    recent_orders: List[Dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class RatingView:
    """A stored rating."""

    id: int
    conversation_id: str
    session: int
    ticket_id: Optional[int]
    score: int
    comment: Optional[str]
    created_at: datetime


def _verify(stored: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class AgentStore(StoreBase):
    """Agents, sessions, tickets' life with a person, ratings and metrics.

    Args:
        engine: The support database engine; the store owns it (see :meth:`dispose`).
    """

    # ----------------------------------------------------------------- agents

    async def do_create_agent(
        self, username: str, display_name: str, password: str, role: str = "agent",
        actor: str = "admin",
    ) -> AgentView:
        """Create an agent account; audit ``agent.created``.

        Raises:
            ValueError: Bad username (2-64 of a-z0-9_.- ), short password (< 10), bad role,
                or the username is taken.
        """
        username = (username or "").strip().lower()
        if not _USERNAME_RE.match(username):
            raise ValueError("username must be 2-64 characters: a-z, 0-9, _ . -")
        if not isinstance(password, str) or len(password) < 10:
            raise ValueError("password must have at least 10 characters")
        if role not in AGENT_ROLES:
            raise ValueError(f"role must be one of {AGENT_ROLES}")
        display_name = (display_name or "").strip()[:200] or username
        # Argon2 is deliberately slow (~50-100 ms of CPU): off the event loop.
        password_hash = await asyncio.to_thread(_HASHER.hash, password)
        now = db.utcnow()
        try:
            async with db.write_session(self._sessions) as session:
                row = Agent(username=username, display_name=display_name,
                            password_hash=password_hash, role=role, active=True, created_at=now)
                session.add(row)
                await session.flush()
                await stage_audit(session, at=now, actor=actor, action="agent.created",
                                  object_type="agent", object_id=str(row.id),
                                  data={"username": username, "role": role})
                view = AgentView.from_row(row)
        except IntegrityError:
            raise ValueError(f"username {username!r} is taken") from None
        await self._notify("agent.created", {"actor": actor, "agent": view})
        return view

    async def list_agents(self) -> List[AgentView]:
        async with db.read_session(self._sessions) as session:
            rows = (await session.execute(select(Agent).order_by(Agent.id))).scalars().all()
            return [AgentView.from_row(r) for r in rows]

    async def get_agent(self, agent_id: int) -> AgentView:
        async with db.read_session(self._sessions) as session:
            row = await session.get(Agent, agent_id)
            if row is None:
                raise NotFound(f"No agent {agent_id}.")
            return AgentView.from_row(row)

    async def do_login(
        self, username: str, password: str, ttl_seconds: int = DEFAULT_SESSION_TTL
    ) -> Tuple[str, AgentView, datetime]:
        """Check the password and open a console session; audit ``agent.login``.

        Returns:
            ``(token, agent, expires_at)``; only the token's hash is stored.

        Raises:
            AuthFailed: ``bad_credentials`` (unknown user, wrong password, inactive).
        """
        username = (username or "").strip().lower()
        async with db.read_session(self._sessions) as session:
            row = (await session.execute(select(Agent).where(Agent.username == username))
                   ).scalar_one_or_none()
            stored = row.password_hash if row is not None else _DUMMY_HASH
        ok = await asyncio.to_thread(_verify, stored, password or "")
        if row is None or not ok or not row.active:
            raise AuthFailed("bad_credentials", "Wrong username or password.")
        token = secrets.token_urlsafe(32)
        now = db.utcnow()
        expires = now + timedelta(seconds=ttl_seconds)
        async with db.write_session(self._sessions) as session:
            agent = await session.get(Agent, row.id)
            agent.last_seen_at = now
            session.add(AgentSession(agent_id=row.id, token_hash=_token_hash(token),
                                     created_at=now, expires_at=expires))
            await stage_audit(session, at=now, actor=f"agent:{row.id}", action="agent.login",
                              object_type="agent", object_id=str(row.id), data={})
            view = AgentView.from_row(agent)
        return token, view, expires

    async def authenticate(self, token: Optional[str]) -> AgentView:
        """The agent owning a live console session.

        Raises:
            AuthFailed: ``invalid`` (unknown, revoked, inactive agent) or ``expired``.
        """
        if not token:
            raise AuthFailed("invalid", "Log in first.")
        async with db.read_session(self._sessions) as session:
            found = (await session.execute(
                select(AgentSession, Agent).join(Agent, Agent.id == AgentSession.agent_id)
                .where(AgentSession.token_hash == _token_hash(token))
            )).first()
            if found is None or found[0].revoked_at is not None or not found[1].active:
                raise AuthFailed("invalid", "This session is not valid; log in again.")
            if found[0].expires_at <= db.utcnow():
                raise AuthFailed("expired", "Your session has expired; log in again.")
            return AgentView.from_row(found[1])

    async def do_touch(self, agent_id: int) -> None:
        """Mark the agent as present (the console is open); no audit row: presence data."""
        async with db.write_session(self._sessions) as session:
            await session.execute(
                update(Agent).where(Agent.id == agent_id).values(last_seen_at=db.utcnow())
            )

    async def do_logout(self, token: str) -> None:
        """Revoke a console session (idempotent)."""
        now = db.utcnow()
        async with db.write_session(self._sessions) as session:
            await session.execute(
                update(AgentSession)
                .where(AgentSession.token_hash == _token_hash(token),
                       AgentSession.revoked_at.is_(None))
                .values(revoked_at=now)
            )

    # ------------------------------------------------------------------ inbox

    async def inbox(
        self, agent: AgentView, states: Sequence[str] = ("queued", "assigned"),
        category: Optional[str] = None,
    ) -> List[InboxItem]:
        """Queued tickets and the agent's own (every ticket for admins).

        Sorted by priority (urgent first), then by waiting time (longest first).
        """
        states = [s for s in states if s in ("queued", "assigned", "resolved")]
        async with db.read_session(self._sessions) as session:
            query = (
                select(Ticket, Conversation, Agent)
                .outerjoin(Conversation, Conversation.conversation_id == Ticket.conversation_id)
                .outerjoin(Agent, Agent.id == Ticket.assignee_id)
                .where(Ticket.status.in_(states))
            )
            if not agent.is_admin:
                query = query.where(or_(Ticket.status == "queued",
                                        Ticket.assignee_id == agent.id))
            if category:
                query = query.where(Ticket.category == category)
            rows = (await session.execute(query)).all()
            items = []
            for ticket, conversation, assignee in rows:
                last = unread = None
                if conversation is not None:
                    last = (await session.execute(
                        select(ChatMessage).where(ChatMessage.conversation_pk == conversation.id)
                        .order_by(ChatMessage.id.desc()).limit(1))).scalar_one_or_none()
                    unread = (await session.execute(
                        select(func.count(ChatMessage.id)).where(
                            ChatMessage.conversation_pk == conversation.id,
                            ChatMessage.sender == "customer",
                            ChatMessage.status != "read"))).scalar_one()
                profile = dict(conversation.profile or {}) if conversation is not None else {}
                items.append(InboxItem(
                    ticket=TicketView.from_row(ticket),
                    conversation_id=ticket.conversation_id,
                    customer_id=ticket.customer_id,
                    customer_name=profile.get("name"),
                    state=ticket.status,
                    assignee=AgentView.from_row(assignee) if assignee is not None else None,
                    waiting_since=ticket.queued_at or ticket.created_at,
                    last_message=last.text if last is not None else None,
                    last_message_at=last.created_at if last is not None else None,
                    unread=int(unread or 0),
                ))
        items.sort(key=lambda i: (-PRIORITIES.index(i.ticket.priority), i.waiting_since))
        return items

    async def ticket_detail(self, agent: AgentView, reference: str) -> TicketDetail:
        """The conversation view of a ticket.

        Raises:
            NotFound: Unknown ticket.
            Forbidden: An agent opening another agent's ticket.
        """
        async with db.read_session(self._sessions) as session:
            ticket = await _ticket(session, reference)
            _may_view(agent, ticket)
            conversation = (await session.execute(select(Conversation).where(
                Conversation.conversation_id == ticket.conversation_id))).scalar_one_or_none()
            assignee = await session.get(Agent, ticket.assignee_id) if ticket.assignee_id else None
            messages: List[MessageView] = []
            customer: Dict[str, Any] = {"id": ticket.customer_id}
            context: Dict[str, Any] = {}
            if conversation is not None:
                rows = (await session.execute(
                    select(ChatMessage).where(ChatMessage.conversation_pk == conversation.id)
                    .order_by(ChatMessage.id.desc()).limit(200))).scalars().all()
                messages = [MessageView.from_row(r, conversation.conversation_id)
                            for r in reversed(rows)]
                customer.update(conversation.profile or {})
                context = dict(conversation.context or {})
            if ticket.customer_id:
                row = await session.get(Customer, ticket.customer_id)
                if row is not None:
                    customer.update({k: v for k, v in (
                        ("name", row.name), ("email", row.email), ("phone", row.phone),
                        ("locale", row.locale), ("timezone", row.timezone)) if v})
            details = dict(ticket.details or {})
            return TicketDetail(
                ticket=TicketView.from_row(ticket),
                conversation_id=ticket.conversation_id,
                state=ticket.status,
                assignee=AgentView.from_row(assignee) if assignee is not None else None,
                customer=customer,
                context={**dict(details.get("context") or {}), **context},
                triage=dict(details.get("triage") or {}),
                slots=dict(details.get("slots") or {}),
                bot_transcript=list(details.get("transcript") or []),
                messages=messages,
                recent_orders=list(details.get("recent_orders") or []),
            )

    # ---------------------------------------------------------- state machine

    async def do_claim(self, reference: str, agent: AgentView) -> TicketView:
        """Take a queued ticket; audit ``ticket.claimed``. One of two racing claims wins.

        Raises:
            NotFound: Unknown ticket.
            StateError: Already claimed (the message names by whom) or not queued.
        """
        now = db.utcnow()
        async with db.write_session(self._sessions) as session:
            claimed, audit = await claim_queued_ticket(
                session, reference.upper(), assignee_id=agent.id, actor=f"agent:{agent.id}",
                now=now, data={"assignee": agent.id})
            if claimed is None or audit is None:
                ticket = await _ticket(session, reference)
                owner = await session.get(Agent, ticket.assignee_id) if ticket.assignee_id else None
                if owner is not None:
                    raise StateError(f"{ticket.reference} was already claimed by "
                                     f"{owner.display_name}.")
                raise StateError(f"{ticket.reference} is {ticket.status}; only queued tickets "
                                 "can be claimed.")
            view = TicketView.from_row(claimed)
        await self._notify(audit.action, {"actor": audit.actor, "ticket": view, "agent": agent})
        return view

    async def do_transfer(self, reference: str, agent: AgentView, to_agent_id: int) -> TicketView:
        """Give an assigned ticket to another agent; audit ``ticket.transferred``.

        Raises:
            Forbidden: Not the assignee (nor an admin).
            NotFound: Unknown ticket or target agent.
            StateError: The ticket is not assigned, or the target is inactive.
        """
        now = db.utcnow()
        async with db.write_session(self._sessions) as session:
            ticket = await _ticket(session, reference, for_update=True)
            _may_act(agent, ticket)
            target = await session.get(Agent, to_agent_id)
            if target is None:
                raise NotFound(f"No agent {to_agent_id}.")
            if not target.active:
                raise StateError(f"{target.display_name} is not active.")
            previous = ticket.assignee_id
            move_ticket(ticket, "assigned", now)  # assigned → assigned: a transfer
            ticket.assignee_id = target.id
            await move_conversation(session, ticket.conversation_id, "assigned", now,
                                    ticket_id=ticket.id, assignee_id=target.id)
            audit = await stage_audit(
                session, at=now, actor=f"agent:{agent.id}", action="ticket.transferred",
                object_type="ticket", object_id=ticket.reference,
                data={"from": previous, "to": target.id})
            view = TicketView.from_row(ticket)
            target_view = AgentView.from_row(target)
        await self._notify(audit.action, {"actor": audit.actor, "ticket": view,
                                          "agent": agent, "to": target_view})
        return view

    async def do_agent_message(
        self, reference: str, agent: AgentView, text: str, client_id: Optional[str] = None,
        extra: Optional[Dict[str, Any]] = None,
    ) -> MessageView:
        """Store an agent's reply to the customer; sets the ticket's first response time.

        Audit ``ticket.first_response`` once; listeners hear ``message.stored``.

        Raises:
            ValueError: Empty or too long text.
            Forbidden: Not the assignee (nor an admin).
            StateError: The ticket is not assigned.
        """
        text = (text or "").strip()
        if (not text and not extra) or len(text) > MAX_REPLY_CHARS:  # extra: attachments
            raise ValueError(f"A reply needs 1-{MAX_REPLY_CHARS} characters.")
        now = db.utcnow()
        async with db.write_session(self._sessions) as session:
            ticket = await _ticket(session, reference, for_update=True)
            _may_act(agent, ticket)
            conversation = await _conversation_of(session, ticket)
            reply = await write_agent_reply(
                session, conversation=conversation, ticket=ticket, text=text, now=now,
                client_id=client_id, sender_name=agent.display_name, author_id=str(agent.id),
                actor=f"agent:{agent.id}", extra=extra)
            view = MessageView.from_row(reply.message, conversation.conversation_id)
            if reply.duplicate:
                return view
        await self._notify("message.stored", {"message": view, "agent": agent})
        return view

    async def do_resolve(self, reference: str, agent: AgentView, note: Optional[str] = None
                         ) -> TicketView:
        """Resolve an assigned ticket; the conversation goes back to the bot (state
        ``resolved`` until the rating); audit ``ticket.resolved``.

        Raises:
            Forbidden: Not the assignee (nor an admin).
            StateError: The ticket is not assigned.
        """
        now = db.utcnow()
        async with db.write_session(self._sessions) as session:
            ticket = await _ticket(session, reference, for_update=True)
            _may_act(agent, ticket)
            audit = await resolve_ticket(session, ticket, actor=f"agent:{agent.id}", now=now,
                                         note=note)
            view = TicketView.from_row(ticket)
        await self._notify(audit.action, {"actor": audit.actor, "ticket": view, "agent": agent})
        return view

    async def do_rate(
        self, conversation_id: str, session_no: int, score: int, comment: Optional[str] = None,
        actor: str = "customer",
    ) -> RatingView:
        """Store the customer's 1-5 rating of a chat session with a person; audit
        ``rating.created``.

        Only a finished session that a person handled may be rated, once: the current
        session after an agent resolved its ticket (conversation ``resolved``), or an ended
        session in which an agent claimed a ticket of the conversation or wrote. The rating
        is linked to that ticket (if any); a ticket is rated once too.

        Raises:
            ValueError: Score outside 1-5 or a bad session number.
            RatingRefused: ``not_ratable`` (a bot-only, unfinished or unknown session) or
                ``already_rated``.
            LookupError: Unknown conversation.
        """
        if not isinstance(score, int) or isinstance(score, bool) or not 1 <= score <= 5:
            raise ValueError("score must be an integer from 1 to 5")
        if not isinstance(session_no, int) or isinstance(session_no, bool) or session_no < 1:
            raise ValueError("session must be a chat session number")
        comment = (comment or "").strip()[:2000] or None
        now = db.utcnow()
        try:
            async with db.write_session(self._sessions) as session:
                conversation = (await session.execute(
                    select(Conversation).where(Conversation.conversation_id == conversation_id)
                    .with_for_update())).scalar_one_or_none()
                if conversation is None:
                    raise LookupError(f"No conversation {conversation_id}.")
                ticket = await _rated_ticket(session, conversation, session_no)
                row = Rating(conversation_pk=conversation.id, session=session_no,
                             ticket_id=ticket.id if ticket is not None else None, score=score,
                             comment=comment, created_at=now)
                session.add(row)
                if conversation.state == "resolved" and (
                        session_no == conversation.session
                        or (ticket is not None and ticket.id == conversation.ticket_id)):
                    set_conversation_state(conversation, "bot", now, ticket_id=None)
                await session.flush()
                await stage_audit(session, at=now, actor=actor, action="rating.created",
                                  object_type="conversation", object_id=conversation_id,
                                  data={"score": score, "session": session_no,
                                        "ticket_id": row.ticket_id})
                view = RatingView(row.id, conversation_id, row.session, row.ticket_id, score,
                                  comment, now)
        except IntegrityError:
            raise RatingRefused("already_rated", ALREADY_RATED) from None
        await self._notify("rating.created", {"actor": actor, "rating": view})
        return view

    async def do_upsert_customer(self, customer_id: str, profile: Mapping[str, Any]) -> None:
        """Record the customer as the verified token describes them (no audit: profile data)."""
        now = db.utcnow()
        fields = {k: (str(profile[k])[:320] if profile.get(k) else None)
                  for k in ("name", "email", "phone", "locale", "timezone")}
        async with db.write_session(self._sessions) as session:
            row = await session.get(Customer, customer_id)
            if row is None:
                session.add(Customer(id=customer_id, created_at=now, updated_at=now, **fields))
            elif any(getattr(row, k) != v for k, v in fields.items()):
                for key, value in fields.items():
                    setattr(row, key, value)
                row.updated_at = now

    # ----------------------------------------------------------------- metrics

    async def metrics(self, since: datetime, until: datetime) -> Dict[str, Any]:
        """Support figures for ``[since, until)``, computed by the database (GROUP BY
        aggregates; :mod:`bot.support.metrics`, definitions in docs/agent-console.md).

        Returns:
            ``resolution`` and ``first_response`` (count, average/median seconds),
            ``csat`` (average, count, distribution 1-5), ``tickets``, ``conversations``
            (questions: chat sessions with customer messages), ``self_served``,
            ``handoffs``, ``self_service_rate``, ``handoff_rate``; the same blocks
            ``by_category`` and ``by_day`` (UTC dates); ``targets``. None where there is
            no data.
        """
        async with db.read_session(self._sessions) as session:
            return await support_metrics(session, self._engine.dialect.name, since, until)

    async def metric_totals(self) -> Dict[str, Any]:
        """All-time aggregates for the Prometheus scrape (:func:`bot.support.metrics.totals`)."""
        async with db.read_session(self._sessions) as session:
            return await totals(session, self._engine.dialect.name)


# ------------------------------------------------------------------ helpers

ALREADY_RATED = "This chat session was already rated."
NOT_RATABLE = ("Only a finished chat with a person from our team can be rated "
               "(this one was not, or is not finished yet).")


async def _rated_ticket(session: Any, conversation: Conversation,
                        session_no: int) -> Optional[Ticket]:
    """The ticket a rating of ``session_no`` belongs to (None: a person wrote in that ended
    session but no ticket of it was claimed).

    Raises:
        RatingRefused: Not a finished session a person handled, or already rated.
    """
    rated = (await session.execute(select(Rating.id).where(
        Rating.conversation_pk == conversation.id, Rating.session == session_no))).first()
    if rated is not None:
        raise RatingRefused("already_rated", ALREADY_RATED)
    ticket: Optional[Ticket] = None
    if session_no > conversation.session:
        raise RatingRefused("not_ratable", NOT_RATABLE)
    if session_no == conversation.session:
        # the session goes on: only after the agent resolved it (``resolved`` until rated)
        if conversation.state != "resolved" or conversation.ticket_id is None:
            raise RatingRefused("not_ratable", NOT_RATABLE)
        ticket = await session.get(Ticket, conversation.ticket_id)
        if ticket is None or ticket.status not in ("resolved", "closed") \
                or not await _claimed(session, ticket):
            raise RatingRefused("not_ratable", NOT_RATABLE)
    else:
        start, end = await _session_window(session, conversation, session_no)
        ticket = await _ticket_claimed_between(session, conversation.conversation_id,
                                               start, end)
        if ticket is None:
            wrote = (await session.execute(select(ChatMessage.id).where(
                ChatMessage.conversation_pk == conversation.id,
                ChatMessage.session == session_no,
                ChatMessage.sender == "agent").limit(1))).first()
            if wrote is None:
                raise RatingRefused("not_ratable", NOT_RATABLE)
    if ticket is not None and (await session.execute(select(Rating.id).where(
            Rating.ticket_id == ticket.id).limit(1))).first() is not None:
        raise RatingRefused("already_rated", ALREADY_RATED)
    return ticket


async def _claimed(session: Any, ticket: Ticket) -> bool:
    """Whether a person took the ticket (a console agent, or Twilio: audit ``ticket.claimed``)."""
    if ticket.assignee_id is not None:
        return True
    return (await session.execute(select(AuditLog.id).where(
        AuditLog.object_type == "ticket", AuditLog.object_id == ticket.reference,
        AuditLog.action == "ticket.claimed").limit(1))).first() is not None


async def _session_window(session: Any, conversation: Conversation,
                          session_no: int) -> Tuple[Optional[datetime], Optional[datetime]]:
    """When chat session ``session_no`` began and ended (audit
    ``conversation.session_ended``); None for an open side."""
    rows = (await session.execute(select(AuditLog.at, AuditLog.data).where(
        AuditLog.object_type == "conversation",
        AuditLog.object_id == conversation.conversation_id,
        AuditLog.action == "conversation.session_ended"))).all()
    ended = {int((data or {}).get("session") or 0): at for at, data in rows}
    return ended.get(session_no - 1), ended.get(session_no)


async def _ticket_claimed_between(session: Any, conversation_id: str,
                                  start: Optional[datetime],
                                  end: Optional[datetime]) -> Optional[Ticket]:
    """The conversation's ticket last claimed by a person between ``start`` and ``end``."""
    references = (await session.execute(select(Ticket.reference).where(
        Ticket.conversation_id == conversation_id))).scalars().all()
    if not references:
        return None
    query = select(AuditLog.object_id).where(
        AuditLog.object_type == "ticket", AuditLog.action == "ticket.claimed",
        AuditLog.object_id.in_(list(references)))
    if start is not None:
        query = query.where(AuditLog.at >= start)
    if end is not None:
        query = query.where(AuditLog.at <= end)
    reference = (await session.execute(
        query.order_by(AuditLog.id.desc()).limit(1))).scalar_one_or_none()
    if reference is None:
        return None
    return (await session.execute(select(Ticket).where(
        Ticket.reference == reference))).scalar_one_or_none()


async def _ticket(session: Any, reference: str, for_update: bool = False) -> Ticket:
    query = select(Ticket).where(Ticket.reference == (reference or "").strip().upper())
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"No ticket {reference}.")
    return row


def _may_view(agent: AgentView, ticket: Ticket) -> None:
    if agent.is_admin or ticket.status == "queued" or ticket.assignee_id == agent.id:
        return
    raise Forbidden(f"{ticket.reference} belongs to another agent.")


def _may_act(agent: AgentView, ticket: Ticket) -> None:
    if ticket.status != "assigned":
        raise StateError(f"{ticket.reference} is {ticket.status}; claim it first.")
    if not agent.is_admin and ticket.assignee_id != agent.id:
        raise Forbidden(f"{ticket.reference} belongs to another agent.")


async def _conversation_of(session: Any, ticket: Ticket) -> Conversation:
    row = (await session.execute(select(Conversation).where(
        Conversation.conversation_id == ticket.conversation_id))).scalar_one_or_none()
    if row is None:
        raise StateError(f"{ticket.reference} has no chat to reply in.")
    return row


