"""The Twilio bridge's store: links, idempotency keys, dead letters, and its ``do_*`` writes
to the support tables (agent messages, the ticket handed to / resolved in Twilio).

As in :mod:`bot.support`, every ``do_*`` coroutine runs in ONE new transaction and writes
an audit row when it changes a ticket. Views are frozen dataclasses.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Dict, List, Optional, Sequence, Tuple

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from bot import db
from bot.support.base import StoreBase
from bot.support.chat import MessageView
from bot.support.lifecycle import (
    claim_queued_ticket, resolve_ticket, stage_audit, write_agent_reply,
)
from bot.support.models import ChatMessage, Conversation, Ticket
from bot.support.ops import TicketView
from bot.twilio.models import TwilioDeadLetter, TwilioLink, TwilioProcessed
from bot.twilio.timestamps import parse_time

__all__ = ["DeadLetterView", "HandoffMaterial", "LinkView", "TwilioStore"]

logger = logging.getLogger(__name__)

MAX_BODY_CHARS = 1600  # Twilio's limit for a Conversations message body


@dataclass(frozen=True)
class LinkView:
    """A row of ``twilio_links``."""

    id: int
    conversation_id: str
    ticket_reference: str
    conversation_sid: str
    unique_name: str
    customer_identity: str
    participant_sid: Optional[str]
    webhook_sid: Optional[str]
    imported: int
    state: str
    last_agent: Optional[str]
    created_at: datetime
    closed_at: Optional[datetime]
    flex_interaction_sid: Optional[str] = None
    flex_channel_sid: Optional[str] = None
    flex_task_sid: Optional[str] = None

    @classmethod
    def from_row(cls, row: TwilioLink) -> "LinkView":
        return cls(row.id, row.conversation_id, row.ticket_reference, row.conversation_sid,
                   row.unique_name, row.customer_identity, row.participant_sid,
                   row.webhook_sid, int(row.imported or 0), row.state, row.last_agent,
                   row.created_at, row.closed_at, row.flex_interaction_sid,
                   row.flex_channel_sid, row.flex_task_sid)

    def to_json(self) -> Dict[str, Any]:
        """JSON-friendly dict (for the operator command ``python -m bot.twilio.links``)."""
        return {"id": self.id, "conversation_id": self.conversation_id,
                "ticket": self.ticket_reference, "conversation_sid": self.conversation_sid,
                "unique_name": self.unique_name, "customer_identity": self.customer_identity,
                "participant_sid": self.participant_sid, "webhook_sid": self.webhook_sid,
                "imported": self.imported, "state": self.state, "last_agent": self.last_agent,
                "flex_interaction_sid": self.flex_interaction_sid,
                "flex_channel_sid": self.flex_channel_sid, "flex_task_sid": self.flex_task_sid,
                "created_at": self.created_at.isoformat(),
                "closed_at": self.closed_at.isoformat() if self.closed_at else None}


@dataclass(frozen=True)
class DeadLetterView:
    """A row of ``twilio_dead_letters``."""

    id: int
    key: str
    kind: str
    conversation_id: Optional[str]
    payload: Dict[str, Any]
    error: str
    attempts: int
    status: str
    created_at: datetime
    updated_at: datetime
    replayed_at: Optional[datetime]

    @classmethod
    def from_row(cls, row: TwilioDeadLetter) -> "DeadLetterView":
        return cls(row.id, row.key, row.kind, row.conversation_id,
                   copy.deepcopy(dict(row.payload or {})), row.error, row.attempts, row.status,
                   row.created_at, row.updated_at, row.replayed_at)

    def to_json(self) -> Dict[str, Any]:
        """JSON-friendly dict (for the operator command)."""
        return {"id": self.id, "key": self.key, "kind": self.kind,
                "conversation_id": self.conversation_id, "payload": self.payload,
                "error": self.error, "attempts": self.attempts, "status": self.status,
                "created_at": self.created_at.isoformat(),
                "updated_at": self.updated_at.isoformat(),
                "replayed_at": self.replayed_at.isoformat() if self.replayed_at else None}


@dataclass(frozen=True)
class HandoffMaterial:
    """What a new Twilio Conversation is made of."""

    ticket: TicketView
    customer_id: str
    profile: Dict[str, Any]
    context: Dict[str, Any]
    details: Dict[str, Any]
    messages: List[MessageView]  # chat messages stored after the bot's transcript ends
    last_message_id: int = 0  # the newest chat message id when this was read


class TwilioStore(StoreBase):
    """Tables of the bridge over the support database engine.

    Args:
        engine: The engine; a store made with :meth:`from_url` owns it (see :meth:`dispose`).
    """

    # ------------------------------------------------------------------ links

    async def link_for_ticket(self, reference: str) -> Optional[LinkView]:
        """The link made for this ticket, if any."""
        return await self._link(TwilioLink.ticket_reference == reference)

    async def link_for_sid(self, conversation_sid: str) -> Optional[LinkView]:
        """The link of this Twilio Conversation SID, if any."""
        return await self._link(TwilioLink.conversation_sid == conversation_sid)

    async def link_for_task(self, task_sid: str) -> Optional[LinkView]:
        """The link whose current Flex task is ``task_sid`` (WT...), if any."""
        if not task_sid:
            return None
        async with db.read_session(self._sessions) as session:
            row = (await session.execute(select(TwilioLink).where(
                TwilioLink.flex_task_sid == task_sid).order_by(TwilioLink.id.desc()).limit(1)))\
                .scalar_one_or_none()
            return LinkView.from_row(row) if row is not None else None

    async def find_links(self, key: str) -> List[LinkView]:
        """Links by ticket reference, our conversation id or any SID stored with them
        (Conversation CH, Interaction KD, Interaction channel UO, task WT), newest first."""
        from sqlalchemy import or_

        columns = (TwilioLink.ticket_reference, TwilioLink.conversation_id,
                   TwilioLink.conversation_sid, TwilioLink.flex_interaction_sid,
                   TwilioLink.flex_channel_sid, TwilioLink.flex_task_sid)
        async with db.read_session(self._sessions) as session:
            rows = (await session.execute(select(TwilioLink).where(
                or_(*(column == key for column in columns)))
                .order_by(TwilioLink.id.desc()).limit(100))).scalars().all()
            return [LinkView.from_row(row) for row in rows]

    async def open_link(self, conversation_id: str) -> Optional[LinkView]:
        """The newest link of our conversation that is not closed."""
        async with db.read_session(self._sessions) as session:
            row = (await session.execute(
                select(TwilioLink).where(TwilioLink.conversation_id == conversation_id,
                                         TwilioLink.state != "closed")
                .order_by(TwilioLink.id.desc()).limit(1))).scalar_one_or_none()
            return LinkView.from_row(row) if row is not None else None

    async def count_links(self, conversation_id: str) -> int:
        """How many links our conversation has had."""
        async with db.read_session(self._sessions) as session:
            return int((await session.execute(select(func.count(TwilioLink.id)).where(
                TwilioLink.conversation_id == conversation_id))).scalar_one())

    async def _link(self, condition: Any) -> Optional[LinkView]:
        async with db.read_session(self._sessions) as session:
            row = (await session.execute(select(TwilioLink).where(condition)))\
                .scalar_one_or_none()
            return LinkView.from_row(row) if row is not None else None

    async def do_create_link(self, *, conversation_id: str, ticket_reference: str,
                             conversation_sid: str, unique_name: str,
                             customer_identity: str) -> LinkView:
        """Record a new Conversation (state ``setup``); returns the existing one on a race."""
        now = db.utcnow()
        try:
            async with db.write_session(self._sessions) as session:
                row = TwilioLink(conversation_id=conversation_id,
                                 ticket_reference=ticket_reference,
                                 conversation_sid=conversation_sid, unique_name=unique_name,
                                 customer_identity=customer_identity, imported=0,
                                 state="setup", created_at=now, updated_at=now)
                session.add(row)
                await session.flush()
                return LinkView.from_row(row)
        except IntegrityError:
            existing = await self.link_for_ticket(ticket_reference)
            if existing is None:
                raise
            return existing

    async def do_set_agent(self, link: LinkView, name: str, *, via: str = "flex"
                           ) -> Optional[LinkView]:
        """A Flex worker accepted the chat's task: they are the link's agent now (audit
        ``ticket.agent_changed``). After the commit the customer hears who joined
        (``ticket.claimed``) or, when someone had the chat before, who takes over
        (``ticket.transferred``).

        Returns:
            The link, or None when nothing changed (the link is closed, or it is that
            agent already).
        """
        name = (name or "").strip()[:255]
        now = db.utcnow()
        async with db.write_session(self._sessions) as session:
            row = await session.get(TwilioLink, link.id)
            if row is None or row.state == "closed" or not name or row.last_agent == name:
                return None
            previous, row.last_agent, row.updated_at = row.last_agent, name, now
            ticket = (await session.execute(select(Ticket).where(
                Ticket.reference == row.ticket_reference))).scalar_one_or_none()
            audit = await stage_audit(
                session, at=now, actor=f"twilio:{name}", action="ticket.agent_changed",
                object_type="ticket", object_id=row.ticket_reference,
                data={"from": previous, "to": name, "via": via})
            view = LinkView.from_row(row)
            ticket_view = TicketView.from_row(ticket) if ticket is not None else None
        if ticket_view is not None:
            await self._notify("ticket.transferred" if previous else "ticket.claimed",
                               {"actor": audit.actor, "audit": audit, "ticket": ticket_view,
                                "agent_name": name})
        return view

    async def do_update_link(self, link_id: int, **values: Any) -> LinkView:
        """Change columns of a link (``participant_sid``, ``webhook_sid``, ``imported``,
        ``state``, ``last_agent``, ``flex_interaction_sid``, ``flex_channel_sid``,
        ``flex_task_sid``).

        Raises:
            ValueError: An unknown column.
            LookupError: No such link.
        """
        allowed = {"participant_sid", "webhook_sid", "imported", "state", "last_agent",
                   "flex_interaction_sid", "flex_channel_sid", "flex_task_sid"}
        unknown = set(values) - allowed
        if unknown:
            raise ValueError(f"Cannot change {sorted(unknown)} of a Twilio link.")
        now = db.utcnow()
        async with db.write_session(self._sessions) as session:
            row = await session.get(TwilioLink, link_id)
            if row is None:
                raise LookupError(f"No Twilio link {link_id}.")
            for name, value in values.items():
                setattr(row, name, value)
            if values.get("state") == "closed" and row.closed_at is None:
                row.closed_at = now
            row.updated_at = now
            await session.flush()
            return LinkView.from_row(row)

    # ------------------------------------------------------- idempotency keys

    async def is_processed(self, key: str) -> bool:
        """Whether ``key`` was recorded."""
        async with db.read_session(self._sessions) as session:
            return (await session.execute(select(TwilioProcessed.id).where(
                TwilioProcessed.key == key))).first() is not None

    async def do_claim_keys(self, keys: Sequence[str]) -> bool:
        """Record all ``keys`` at once; False (and nothing recorded) if any was already there."""
        keys = sorted({k[:255] for k in keys if k})
        if not keys:
            return True
        now = db.utcnow()
        try:
            async with db.write_session(self._sessions) as session:
                seen = (await session.execute(select(TwilioProcessed.id).where(
                    TwilioProcessed.key.in_(keys)))).first()
                if seen is not None:
                    return False
                for key in keys:
                    session.add(TwilioProcessed(key=key, created_at=now))
                await session.flush()
            return True
        except IntegrityError:  # the same key raced in on another connection
            return False

    async def do_forget_key(self, key: str) -> None:
        """Remove a key (its work failed and may be tried again)."""
        async with db.write_session(self._sessions) as session:
            row = (await session.execute(select(TwilioProcessed).where(
                TwilioProcessed.key == key))).scalar_one_or_none()
            if row is not None:
                await session.delete(row)

    async def do_prune_keys(self, older_than: timedelta) -> int:
        """Delete webhook keys (``webhook:``/``sid:``) older than ``older_than``; keys of
        delivered operations (``out:``) stay, so a replay never sends twice. Returns how
        many were deleted."""
        from sqlalchemy import delete, or_

        async with db.write_session(self._sessions) as session:
            result = await session.execute(delete(TwilioProcessed).where(
                TwilioProcessed.created_at < db.utcnow() - older_than,
                or_(TwilioProcessed.key.like("webhook:%"), TwilioProcessed.key.like("sid:%")))
                .execution_options(synchronize_session=False))
            return int(result.rowcount or 0)

    # ----------------------------------------------------------- dead letters

    async def do_dead_letter(self, *, key: str, kind: str, conversation_id: Optional[str],
                             payload: Dict[str, Any], error: str, attempts: int
                             ) -> DeadLetterView:
        """Store (or refresh) the dead letter of ``key`` with status ``dead``."""
        now = db.utcnow()
        for _ in range(2):
            try:
                async with db.write_session(self._sessions) as session:
                    row = (await session.execute(select(TwilioDeadLetter).where(
                        TwilioDeadLetter.key == key))).scalar_one_or_none()
                    if row is None:
                        row = TwilioDeadLetter(key=key, kind=kind,
                                               conversation_id=conversation_id,
                                               payload=dict(payload), error=error[:4000],
                                               attempts=attempts, status="dead",
                                               created_at=now, updated_at=now)
                        session.add(row)
                    else:
                        row.payload = dict(payload)
                        row.error = error[:4000]
                        row.attempts = int(row.attempts or 0) + attempts
                        row.status = "dead"
                        row.updated_at = now
                    await session.flush()
                    return DeadLetterView.from_row(row)
            except IntegrityError:
                continue
        raise RuntimeError(f"Could not store the dead letter {key}.")

    async def dead_letters(self, status: Optional[str] = "dead", limit: int = 100
                           ) -> List[DeadLetterView]:
        """Dead letters, newest first (``status=None``: all)."""
        query = select(TwilioDeadLetter)
        if status is not None:
            query = query.where(TwilioDeadLetter.status == status)
        async with db.read_session(self._sessions) as session:
            rows = (await session.execute(query.order_by(TwilioDeadLetter.id.desc())
                                          .limit(max(1, min(limit, 1000))))).scalars().all()
            return [DeadLetterView.from_row(r) for r in rows]

    async def dead_letter(self, dead_letter_id: int) -> DeadLetterView:
        """One dead letter.

        Raises:
            LookupError: No such dead letter.
        """
        async with db.read_session(self._sessions) as session:
            row = await session.get(TwilioDeadLetter, int(dead_letter_id))
            if row is None:
                raise LookupError(f"No dead letter {dead_letter_id}.")
            return DeadLetterView.from_row(row)

    async def count_dead_letters(self) -> int:
        """How many dead letters wait for an operator."""
        async with db.read_session(self._sessions) as session:
            return int((await session.execute(select(func.count(TwilioDeadLetter.id)).where(
                TwilioDeadLetter.status == "dead"))).scalar_one())

    async def do_mark_replayed(self, key: str) -> None:
        """Mark the dead letter of ``key`` (if any) as replayed."""
        now = db.utcnow()
        async with db.write_session(self._sessions) as session:
            await session.execute(update(TwilioDeadLetter).where(
                TwilioDeadLetter.key == key, TwilioDeadLetter.status == "dead")
                .values(status="replayed", replayed_at=now, updated_at=now)
                .execution_options(synchronize_session=False))

    # ------------------------------------------------------------ support data

    async def handoff_material(self, reference: str) -> Optional[HandoffMaterial]:
        """The ticket, the widget conversation and the chat messages after the bot's
        transcript; None when the conversation is not a widget chat."""
        async with db.read_session(self._sessions) as session:
            ticket = (await session.execute(select(Ticket).where(
                Ticket.reference == reference))).scalar_one_or_none()
            if ticket is None:
                return None
            conversation = (await session.execute(select(Conversation).where(
                Conversation.conversation_id == ticket.conversation_id))).scalar_one_or_none()
            if conversation is None:
                return None
            details = copy.deepcopy(dict(ticket.details or {}))
            since = _last_transcript_time(details.get("transcript") or [])
            query = select(ChatMessage).where(ChatMessage.conversation_pk == conversation.id,
                                              ChatMessage.session == conversation.session)
            if since is not None:
                query = query.where(ChatMessage.created_at > since)
            rows = (await session.execute(query.order_by(ChatMessage.id).limit(200)))\
                .scalars().all()
            last_id = int((await session.execute(select(func.max(ChatMessage.id)).where(
                ChatMessage.conversation_pk == conversation.id))).scalar_one() or 0)
            return HandoffMaterial(
                ticket=TicketView.from_row(ticket),
                customer_id=conversation.customer_id,
                profile=copy.deepcopy(dict(conversation.profile or {})),
                context=copy.deepcopy(dict(conversation.context or {})),
                details=details,
                messages=[MessageView.from_row(r, conversation.conversation_id) for r in rows],
                last_message_id=last_id,
            )

    async def messages_after(self, conversation_id: str, after_id: int,
                             senders: Sequence[str] = ("customer", "bot")) -> List[MessageView]:
        """Chat messages of the current session with an id above ``after_id``, oldest first."""
        async with db.read_session(self._sessions) as session:
            conversation = (await session.execute(select(Conversation).where(
                Conversation.conversation_id == conversation_id))).scalar_one_or_none()
            if conversation is None:
                return []
            rows = (await session.execute(select(ChatMessage).where(
                ChatMessage.conversation_pk == conversation.id,
                ChatMessage.session == conversation.session,
                ChatMessage.id > int(after_id), ChatMessage.sender.in_(list(senders)))
                .order_by(ChatMessage.id).limit(200))).scalars().all()
            return [MessageView.from_row(r, conversation_id) for r in rows]

    async def do_assign_to_twilio(self, reference: str, conversation_sid: str,
                                  link_id: Optional[int] = None) -> bool:
        """A queued ticket is now worked in Twilio: ``assigned`` with no console agent, the
        conversation ``assigned``; audit ``ticket.claimed`` (actor ``twilio``) so consoles
        drop it from their queue. With ``link_id`` the link becomes ``active`` in the same
        transaction (nobody sees an active link whose ticket is still queued). Returns False
        if the ticket was no longer queued (the link is activated all the same)."""
        now = db.utcnow()
        async with db.write_session(self._sessions) as session:
            if link_id is not None:
                link = await session.get(TwilioLink, link_id)
                if link is None:
                    raise LookupError(f"No Twilio link {link_id}.")
                link.state, link.updated_at = "active", now
            ticket, audit = await claim_queued_ticket(
                session, reference, assignee_id=None, actor="twilio", now=now,
                data={"assignee": None, "via": "twilio", "conversation_sid": conversation_sid})
            if ticket is None or audit is None:
                return False
            view = TicketView.from_row(ticket)
        # consoles drop it from their queue (change feed); the customer hears who joined
        # with the agent's first message (do_agent_message)
        await self._notify("ticket.claimed", {"actor": "twilio", "audit": audit,
                                              "ticket": view, "live": False})
        return True

    async def do_agent_message(self, link: LinkView, message_sid: str, author: str,
                               text: str, extra: Optional[Dict[str, Any]] = None, *,
                               announce: bool = False) -> Tuple[MessageView, bool, bool]:
        """Store a Twilio agent's message for the customer once per message SID.

        The same reply as a console agent's (:func:`bot.support.lifecycle.write_agent_reply`):
        the ticket's first response time (audit ``ticket.first_response``) on the first one
        and the "you have a reply" email staged in the same transaction. After the commit,
        the live ``agent.message`` (and, with ``announce`` on the first reply,
        ``ticket.claimed`` naming ``author`` first). Returns
        ``(message, duplicate, first_response)``.

        Raises:
            ValueError: An empty message or no SID.
            LookupError: The conversation is gone.
        """
        text = (text or "").strip()[:4000]
        if (not text and not extra) or not message_sid:  # extra: attachments
            raise ValueError("An agent message needs a SID and text.")
        client_id = f"tw:{message_sid}"[:64]
        now = db.utcnow()
        async with db.write_session(self._sessions) as session:
            conversation = (await session.execute(select(Conversation).where(
                Conversation.conversation_id == link.conversation_id))).scalar_one_or_none()
            if conversation is None:
                raise LookupError(f"No conversation {link.conversation_id}.")
            ticket = (await session.execute(select(Ticket).where(
                Ticket.reference == link.ticket_reference))).scalar_one_or_none()
            reply = await write_agent_reply(
                session, conversation=conversation, ticket=ticket, text=text, now=now,
                client_id=client_id, sender_name=author, author_id=f"twilio:{author}",
                actor=f"twilio:{author}", via="twilio", extra=extra)
            view = MessageView.from_row(reply.message, link.conversation_id)
            if reply.duplicate:
                return view, True, False
            link_row = await session.get(TwilioLink, link.id)
            if link_row is not None:
                link_row.last_agent = author[:255]
                link_row.updated_at = now
            ticket_view = TicketView.from_row(ticket) if ticket is not None else None
        if reply.first_response and announce and ticket_view is not None:
            await self._notify("ticket.claimed", {"actor": f"twilio:{author}",
                                                  "ticket": ticket_view, "agent_name": author})
        await self._notify("message.stored", {"message": view, "agent_name": author})
        return view, False, reply.first_response

    async def do_resolve(self, link: LinkView, actor: str, *, touch_conversation: bool = True,
                         agent_name: Optional[str] = None) -> Optional[TicketView]:
        """The Conversation was closed in Twilio: close the link, resolve the open ticket
        (:func:`bot.support.lifecycle.resolve_ticket`, as a console agent's resolve:
        conversation ``resolved`` until the rating; audit ``ticket.resolved``).

        Args:
            link: The link.
            actor: Who closed it, for the audit row.
            touch_conversation: False when the customer ended the chat (the widget already
                moved the conversation on).
            agent_name: Who resolved it, for the customer's notice (live
                ``ticket.resolved`` after the commit); None: the customer is not told
                (they ended the chat themselves).

        Returns the resolved ticket, or None if the link was already closed.
        """
        now = db.utcnow()
        async with db.write_session(self._sessions) as session:
            link_row = await session.get(TwilioLink, link.id)
            if link_row is None or link_row.state == "closed":
                return None
            link_row.state = "closed"
            link_row.closed_at = now
            link_row.updated_at = now
            ticket = (await session.execute(select(Ticket).where(
                Ticket.reference == link.ticket_reference))).scalar_one_or_none()
            if ticket is None or ticket.status in ("resolved", "closed"):
                return None
            audit = await resolve_ticket(session, ticket, actor=actor, now=now, via="twilio",
                                         touch_conversation=touch_conversation)
            view = TicketView.from_row(ticket)
        await self._notify("ticket.resolved", {"actor": actor, "audit": audit, "ticket": view,
                                               "agent_name": agent_name,
                                               "live": agent_name is not None})
        return view

    async def ticket_status(self, reference: str) -> Optional[str]:
        """The ticket's status (None when unknown)."""
        async with db.read_session(self._sessions) as session:
            return (await session.execute(select(Ticket.status).where(
                Ticket.reference == reference))).scalar_one_or_none()


def _last_transcript_time(lines: List[Any]) -> Optional[datetime]:
    times = [parse_time(line.get("at")) for line in lines if isinstance(line, dict)]
    times = [t for t in times if t is not None]
    return max(times) if times else None
