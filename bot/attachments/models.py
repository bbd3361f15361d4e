"""The ``attachments`` table (migration 0011): one row per uploaded photo or PDF.

A row belongs to one conversation (``conversation_pk``); only that conversation's customer
and the agents may read it (:mod:`bot.attachments.widget_routes`,
:mod:`bot.attachments.console_routes`). ``public_id`` is what clients see and ask for:
random and unguessable, never the row id. The bytes are in the storage
(:mod:`bot.attachments.storage`) under ``storage_key`` (and ``thumb_key`` for an image's
thumbnail). ``twilio_media_sid`` is set once the file was uploaded to Twilio's Media
Content Service (so it is uploaded once); ``twilio_media_sid`` of an attachment that came
*from* Twilio (an agent's media) names its source, and is unique.
"""
from __future__ import annotations

from typing import Tuple

from sqlalchemy import CheckConstraint, Column, ForeignKey, Integer, String

from bot.db import UTCDateTime
from bot.support.models import Base

__all__ = ["ATTACHMENT_KINDS", "Attachment"]

ATTACHMENT_KINDS: Tuple[str, ...] = ("image", "pdf")


class Attachment(Base):
    """One uploaded file (see the module docstring)."""

    __tablename__ = "attachments"

    id = Column(Integer, primary_key=True)
    public_id = Column(String(40), nullable=False, unique=True)
    conversation_pk = Column(Integer, ForeignKey("conversations.id", ondelete="CASCADE"),
                             nullable=False, index=True)
    uploader = Column(String(96), nullable=False)  # customer:<id>, agent:<id>, twilio:<author>
    kind = Column(String(8), nullable=False)
    content_type = Column(String(64), nullable=False)
    name = Column(String(160), nullable=False)
    size = Column(Integer, nullable=False)
    sha256 = Column(String(64), nullable=False)
    width = Column(Integer, nullable=True)
    height = Column(Integer, nullable=True)
    storage_key = Column(String(128), nullable=False)
    thumb_key = Column(String(128), nullable=True)
    thumb_content_type = Column(String(64), nullable=True)
    thumb_width = Column(Integer, nullable=True)
    thumb_height = Column(Integer, nullable=True)
    twilio_media_sid = Column(String(64), nullable=True, unique=True)
    created_at = Column(UTCDateTime, nullable=False)

    __table_args__ = (
        CheckConstraint("kind IN ('image', 'pdf')", name="kind"),
    )
