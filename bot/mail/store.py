"""Opt-outs, transcript requests and outbox queries (one transaction each, audited)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Dict, List, Optional, Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot import db
from bot.mail.models import MailOptOut, MailOutbox
from bot.mail.outbox import clean_address, stage
from bot.support.base import StoreBase
from bot.support.lifecycle import stage_audit
from bot.support.models import ChatMessage, Conversation

__all__ = ["MailStore", "OutboxView"]

MAX_TRANSCRIPT_LINES = 300


@dataclass(frozen=True)
class OutboxView:
    """One outbox row as read (detached)."""

    id: int
    kind: str
    to_address: str
    to_name: Optional[str]
    conversation_id: Optional[str]
    ticket: Optional[str]
    message_id: Optional[int]
    params: Dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: Optional[str]
    created_at: datetime
    sent_at: Optional[datetime]

    @classmethod
    def from_row(cls, row: Any) -> "OutboxView":
        return cls(row.id, row.kind, row.to_address, row.to_name, row.conversation_id,
                   row.ticket, row.message_id, dict(row.params or {}), row.status,
                   int(row.attempts or 0), row.next_attempt_at, row.last_error, row.created_at,
                   row.sent_at)


class MailStore(StoreBase):
    """Email state of the support database (the outbox itself is written by the stores'
    ``do_*`` transactions, :mod:`bot.mail.outbox`, and drained by :mod:`bot.mail.sender`)."""

    async def do_unsubscribe(self, address: str, source: str = "link",
                             actor: str = "customer") -> bool:
        """Record that ``address`` wants no more emails; audit ``mail.unsubscribed``.

        Queued emails to it are suppressed in the same transaction. Idempotent.

        Returns:
            True when the address was not unsubscribed before.
        """
        clean = clean_address(address)
        if clean is None:
            raise ValueError(f"not an email address: {address!r}")
        now = db.utcnow()
        try:
            async with db.write_session(self._sessions) as session:
                if await session.get(MailOptOut, clean) is not None:
                    return False
                session.add(MailOptOut(address=clean, created_at=now, source=source[:32]))
                queued = (await session.execute(select(MailOutbox).where(
                    MailOutbox.to_address == clean, MailOutbox.status == "queued",
                    MailOutbox.kind != "transcript"))).scalars().all()
                for row in queued:
                    row.status = "suppressed"
                    row.last_error = "unsubscribed"
                await stage_audit(session, at=now, actor=actor, action="mail.unsubscribed",
                                  object_type="mail_address", object_id=clean,
                                  data={"source": source[:32], "suppressed": len(queued)})
        except IntegrityError:  # unsubscribed concurrently
            return False
        await self._notify("mail.unsubscribed", {"actor": actor, "address": clean})
        return True

    async def is_unsubscribed(self, address: str) -> bool:
        clean = clean_address(address)
        if clean is None:
            return False
        async with db.read_session(self._sessions) as session:
            return await session.get(MailOptOut, clean) is not None

    async def do_request_transcript(
        self, conversation_id: str, address: str, name: Optional[str] = None,
        fallback_lines: Sequence[Dict[str, Any]] = (), actor: str = "customer",
    ) -> Optional[OutboxView]:
        """Queue the chat transcript the customer asked for; audit ``mail.transcript_requested``.

        The lines are the conversation's stored chat messages (current session) when it is a
        widget conversation, else ``fallback_lines`` (the Rasa tracker's transcript). Sent even
        to an unsubscribed address: the customer asked for it (docs/email.md).

        Returns:
            The queued email, or None for an unusable address.
        """
        now = db.utcnow()
        async with db.write_session(self._sessions) as session:
            lines = await _chat_lines(session, conversation_id) or [
                {"sender": str(line.get("sender") or "bot"), "name": line.get("name"),
                 "text": str(line.get("text") or "")[:4000]}
                for line in list(fallback_lines)[-MAX_TRANSCRIPT_LINES:]
            ]
            row = await stage(session, kind="transcript", to_address=address, to_name=name,
                              now=now, conversation_id=conversation_id, params={"lines": lines},
                              force=True)
            if row is None:
                return None
            await stage_audit(session, at=now, actor=actor, action="mail.transcript_requested",
                              object_type="conversation", object_id=conversation_id,
                              data={"outbox_id": row.id, "lines": len(lines)})
            view = OutboxView.from_row(row)
        await self._notify("mail.transcript_requested", {"actor": actor, "outbox": view})
        return view

    async def outbox(self, status: Optional[str] = None,
                     conversation_id: Optional[str] = None) -> List[OutboxView]:
        """Outbox rows, oldest first (for operators and tests)."""
        query = select(MailOutbox)
        if status is not None:
            query = query.where(MailOutbox.status == status)
        if conversation_id is not None:
            query = query.where(MailOutbox.conversation_id == conversation_id)
        async with db.read_session(self._sessions) as session:
            rows = (await session.execute(query.order_by(MailOutbox.id))).scalars().all()
            return [OutboxView.from_row(row) for row in rows]


async def _chat_lines(session: Any, conversation_id: str) -> List[Dict[str, Any]]:
    conversation = (await session.execute(select(Conversation).where(
        Conversation.conversation_id == conversation_id))).scalar_one_or_none()
    if conversation is None:
        return []
    rows = (await session.execute(
        select(ChatMessage).where(ChatMessage.conversation_pk == conversation.id,
                                  ChatMessage.session == conversation.session)
        .order_by(ChatMessage.id.desc()).limit(MAX_TRANSCRIPT_LINES))).scalars().all()
    return [{"sender": row.sender, "name": row.sender_name, "text": row.text[:4000]}
            for row in reversed(rows) if (row.text or "").strip()]
