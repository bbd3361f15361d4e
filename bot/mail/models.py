"""Tables of email to customers: the outbox and the opt-outs (migration 0010).

``mail_outbox`` is a transactional outbox: a row is inserted in the SAME transaction as the
state change it announces (a ticket created, an agent reply stored, a transcript asked for;
:mod:`bot.mail.outbox`), so an email is queued if and only if the change committed. The
sender (:mod:`bot.mail.sender`) claims due rows with a conditional UPDATE (one process wins),
sends them and marks them ``sent``.
"""
from __future__ import annotations

from typing import Tuple

from sqlalchemy import JSON, CheckConstraint, Column, Index, Integer, String, Text

from bot.db import UTCDateTime
from bot.support.models import Base

__all__ = ["MAIL_KINDS", "MAIL_STATUSES", "MailOptOut", "MailOutbox"]

MAIL_KINDS: Tuple[str, ...] = ("ticket_confirmation", "agent_reply", "transcript")
MAIL_STATUSES: Tuple[str, ...] = ("queued", "sending", "sent", "failed", "skipped",
                                  "suppressed")
"""queued → sending (claimed by a process until ``claimed_until``) → sent; back to queued
with a later ``next_attempt_at`` after a temporary failure; failed after the last attempt or a
permanent refusal; skipped (the customer saw the reply in the app, or a newer email covers
it); suppressed (the address unsubscribed)."""


def _in(column: str, values: Tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class MailOutbox(Base):
    """One email to send. ``params`` holds what the message is made of (reference, summary,
    reply text, transcript lines); it is rendered when sent. ``dedupe_key`` makes staging the
    same email twice impossible (``ticket:T-000123``, ``reply:<message id>``)."""

    __tablename__ = "mail_outbox"

    id = Column(Integer, primary_key=True)
    kind = Column(String(32), nullable=False)
    dedupe_key = Column(String(128), nullable=True, unique=True)
    to_address = Column(String(320), nullable=False)
    to_name = Column(String(200), nullable=True)
    conversation_id = Column(String(255), nullable=True, index=True)
    ticket = Column(String(48), nullable=True)
    message_id = Column(Integer, nullable=True)
    params = Column(JSON, nullable=False)
    status = Column(String(16), nullable=False)
    attempts = Column(Integer, nullable=False, default=0, server_default="0")
    next_attempt_at = Column(UTCDateTime, nullable=False)
    claimed_by = Column(String(64), nullable=True)
    claimed_until = Column(UTCDateTime, nullable=True)
    last_error = Column(String(255), nullable=True)
    smtp_message_id = Column(String(255), nullable=True)
    created_at = Column(UTCDateTime, nullable=False)
    sent_at = Column(UTCDateTime, nullable=True)

    __table_args__ = (
        CheckConstraint(_in("kind", MAIL_KINDS), name="kind"),
        CheckConstraint(_in("status", MAIL_STATUSES), name="status"),
        Index("ix_mail_outbox_status_next_attempt_at", "status", "next_attempt_at"),
    )


class MailOptOut(Base):
    """An address that unsubscribed (lower-cased). Nothing but a transcript the customer
    explicitly asks for is sent to it."""

    __tablename__ = "mail_optouts"

    address = Column(String(320), primary_key=True)
    created_at = Column(UTCDateTime, nullable=False)
    source = Column(String(32), nullable=False)
    detail = Column(Text, nullable=True)
