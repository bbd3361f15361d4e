"""The ``attachments`` rows: stored with an audit row, read for access checks.

Like :mod:`bot.support.ops`, the state change is a ``do_*`` coroutine in one transaction
with its audit row (``attachment.uploaded``); listeners hear ``attachment.stored`` after the
commit. The bytes are written to the storage *before* the row (a crash in between leaves an
unreferenced object, never a row without bytes); when the row cannot be written the bytes
are deleted again.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Dict, List, Optional, Sequence, TypedDict

from sqlalchemy import select, update

from bot import db
from bot.attachments.models import Attachment
from bot.support.base import StoreBase
from bot.support.lifecycle import stage_audit
from bot.support.models import ChatMessage, Conversation

__all__ = ["AttachmentRef", "AttachmentStore", "AttachmentView", "NewAttachment",
           "new_public_id"]

PUBLIC_ID_BYTES = 18  # 24 url-safe characters, 144 random bits


def new_public_id() -> str:
    """A random, unguessable attachment id (24 url-safe characters)."""
    return secrets.token_urlsafe(PUBLIC_ID_BYTES)


class AttachmentRef(TypedDict, total=False):
    """An attachment as messages carry it (``extra.attachments``; docs/widget-protocol.md)."""

    id: str
    kind: str  # image | pdf
    content_type: str
    name: str
    size: int
    width: Optional[int]
    height: Optional[int]
    thumb: bool  # an image thumbnail exists (``/attachments/<id>/thumb``)
    thumb_width: Optional[int]
    thumb_height: Optional[int]


@dataclass(frozen=True)
class NewAttachment:
    """What :meth:`AttachmentStore.do_store` writes (the bytes are stored already)."""

    kind: str
    content_type: str
    name: str
    size: int
    sha256: str
    width: Optional[int]
    height: Optional[int]
    storage_key: str
    thumb_key: Optional[str] = None
    thumb_content_type: Optional[str] = None
    thumb_width: Optional[int] = None
    thumb_height: Optional[int] = None
    twilio_media_sid: Optional[str] = None


@dataclass(frozen=True)
class AttachmentView:
    """A stored attachment with its conversation."""

    id: int
    public_id: str
    conversation_id: str
    customer_id: str
    uploader: str
    kind: str
    content_type: str
    name: str
    size: int
    sha256: str
    width: Optional[int]
    height: Optional[int]
    storage_key: str
    thumb_key: Optional[str]
    thumb_content_type: Optional[str]
    thumb_width: Optional[int]
    thumb_height: Optional[int]
    twilio_media_sid: Optional[str]
    created_at: datetime

    def ref(self) -> AttachmentRef:
        """What a message carries of it."""
        return AttachmentRef(
            id=self.public_id, kind=self.kind, content_type=self.content_type, name=self.name,
            size=self.size, width=self.width, height=self.height, thumb=bool(self.thumb_key),
            thumb_width=self.thumb_width, thumb_height=self.thumb_height)

    @classmethod
    def from_row(cls, row: Attachment, conversation: Any) -> "AttachmentView":
        return cls(
            id=row.id, public_id=row.public_id, conversation_id=conversation.conversation_id,
            customer_id=conversation.customer_id, uploader=row.uploader, kind=row.kind,
            content_type=row.content_type, name=row.name, size=row.size, sha256=row.sha256,
            width=row.width, height=row.height, storage_key=row.storage_key,
            thumb_key=row.thumb_key, thumb_content_type=row.thumb_content_type,
            thumb_width=row.thumb_width, thumb_height=row.thumb_height,
            twilio_media_sid=row.twilio_media_sid, created_at=row.created_at)


class AttachmentStore(StoreBase):
    """Attachment rows over the support database engine."""

    async def do_store(self, conversation_id: str, uploader: str,
                       new: NewAttachment) -> AttachmentView:
        """Record an uploaded file of a conversation; audit ``attachment.uploaded``.

        Raises:
            LookupError: No such conversation.
        """
        now = db.utcnow()
        async with db.write_session(self._sessions) as session:
            conversation = (await session.execute(select(Conversation).where(
                Conversation.conversation_id == conversation_id))).scalar_one_or_none()
            if conversation is None:
                raise LookupError(f"No conversation {conversation_id}.")
            row = Attachment(public_id=new_public_id(), conversation_pk=conversation.id,
                             uploader=uploader[:96], created_at=now, **new.__dict__)
            session.add(row)
            await session.flush()
            await stage_audit(
                session, at=now, actor=uploader[:96], action="attachment.uploaded",
                object_type="conversation", object_id=conversation_id[:64],
                data={"attachment": row.public_id, "kind": new.kind, "size": new.size,
                      "content_type": new.content_type})
            view = AttachmentView.from_row(row, conversation)
        await self._notify("attachment.stored", {"attachment": view})
        return view

    async def get(self, public_id: str) -> Optional[AttachmentView]:
        """The attachment with this public id (None when unknown or malformed)."""
        if not isinstance(public_id, str) or not 8 <= len(public_id) <= 40:
            return None
        async with db.read_session(self._sessions) as session:
            row = (await session.execute(
                select(Attachment, Conversation)
                .join(Conversation, Conversation.id == Attachment.conversation_pk)
                .where(Attachment.public_id == public_id))).first()
            return None if row is None else AttachmentView.from_row(row[0], row[1])

    async def by_twilio_sid(self, media_sid: str) -> Optional[AttachmentView]:
        """The attachment uploaded to (or received from) Twilio as ``media_sid``."""
        async with db.read_session(self._sessions) as session:
            row = (await session.execute(
                select(Attachment, Conversation)
                .join(Conversation, Conversation.id == Attachment.conversation_pk)
                .where(Attachment.twilio_media_sid == media_sid))).first()
            return None if row is None else AttachmentView.from_row(row[0], row[1])

    async def of_conversation(self, conversation_id: str, public_ids: Sequence[str],
                              uploader: Optional[str] = None) -> List[AttachmentView]:
        """These attachments, in the given order, if every one is the conversation's.

        Args:
            conversation_id: The conversation they must belong to.
            public_ids: The ids a message names.
            uploader: When given, each must have been uploaded by this uploader too.

        Raises:
            LookupError: One is unknown, another conversation's, or someone else's.
        """
        ids = list(dict.fromkeys(public_ids))
        async with db.read_session(self._sessions) as session:
            rows = (await session.execute(
                select(Attachment, Conversation)
                .join(Conversation, Conversation.id == Attachment.conversation_pk)
                .where(Attachment.public_id.in_(ids),
                       Conversation.conversation_id == conversation_id))).all()
        found: Dict[str, AttachmentView] = {
            r[0].public_id: AttachmentView.from_row(r[0], r[1]) for r in rows
            if uploader is None or r[0].uploader == uploader}
        missing = [i for i in ids if i not in found]
        if missing:
            raise LookupError("Unknown attachment.")
        return [found[i] for i in ids]

    async def session_customer_files(self, conversation_id: str,
                                     limit: int = 200) -> List[Dict[str, Any]]:
        """The customer's messages with attachments in the conversation's current session,
        oldest first: ``[{"message_id", "text", "at", "media": [ids]}]``."""
        async with db.read_session(self._sessions) as session:
            conversation = (await session.execute(select(Conversation).where(
                Conversation.conversation_id == conversation_id))).scalar_one_or_none()
            if conversation is None:
                return []
            rows = (await session.execute(
                select(ChatMessage).where(ChatMessage.conversation_pk == conversation.id,
                                          ChatMessage.session == conversation.session,
                                          ChatMessage.sender == "customer",
                                          ChatMessage.extra.isnot(None))
                .order_by(ChatMessage.id).limit(limit))).scalars().all()
        found = []
        for row in rows:
            refs = (row.extra or {}).get("attachments") or []
            ids = [r["id"] for r in refs if isinstance(r, dict) and isinstance(r.get("id"), str)]
            if ids:
                found.append({"message_id": row.id, "text": row.text or "",
                              "at": row.created_at.isoformat(), "media": ids})
        return found

    async def do_set_twilio_media(self, attachment_id: int, media_sid: str) -> None:
        """Remember the Twilio Media SID an attachment was uploaded as (no audit row:
        delivery bookkeeping, like a message's status)."""
        async with db.write_session(self._sessions) as session:
            await session.execute(update(Attachment).where(Attachment.id == attachment_id)
                                  .values(twilio_media_sid=media_sid[:64])
                                  .execution_options(synchronize_session=False))
