"""Tables of the Twilio Conversations bridge (migration ``0004``).

They are declared on :data:`bot.support.models.Base`, so Alembic's model comparison
sees them as soon as this module is imported (the ``0004`` migration imports it).

* :class:`TwilioLink`: our conversation (and ticket) ↔ a Twilio Conversation SID, and how
  far its set-up got (participant, imported transcript lines, scoped webhook); in Flex mode
  also the Interaction, Interaction channel and current TaskRouter task SIDs (``0013``).
* :class:`TwilioDeadLetter`: an outbound operation that failed after every retry.
* :class:`TwilioProcessed`: idempotency keys: webhooks already handled (idempotency
  token, message SID) and outbound operations already delivered.
* :class:`TwilioCall` (migration ``0005``): the Voice call placed for a call-back.
* :class:`TwilioInbox` (migration ``0008``): every verified webhook (Conversations events,
  Voice status callbacks), stored with its dedupe key before Twilio gets its 200 and
  processed from the table (:mod:`bot.twilio.inbox`).
"""
from __future__ import annotations

from typing import Tuple

from sqlalchemy import JSON, CheckConstraint, Column, ForeignKey, Index, Integer, String, Text

from bot.db import UTCDateTime
from bot.support.models import Base

__all__ = ["DEAD_LETTER_STATUSES", "INBOX_STATUSES", "LINK_STATES", "TwilioCall",
           "TwilioDeadLetter", "TwilioInbox", "TwilioLink", "TwilioProcessed"]

LINK_STATES: Tuple[str, ...] = ("setup", "active", "closed")
"""setup: the Conversation exists but is not fully prepared; active: agents may answer;
closed: closed in Twilio (the ticket is resolved) or left by the customer."""
DEAD_LETTER_STATUSES: Tuple[str, ...] = ("dead", "replayed")
INBOX_STATUSES: Tuple[str, ...] = ("pending", "done", "dead")
"""pending: to be processed (or being processed: claimed until ``next_attempt_at``);
done: processed; dead: failed ``TWILIO_INBOX_MAX_ATTEMPTS`` times (replay re-queues it)."""


def _in(column: str, values: Tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class TwilioLink(Base):
    """One Twilio Conversation made for one handoff (ticket) of one of our conversations."""

    __tablename__ = "twilio_links"

    id = Column(Integer, primary_key=True)
    conversation_id = Column(String(255), nullable=False, index=True)
    ticket_reference = Column(String(48), nullable=False, unique=True)
    conversation_sid = Column(String(34), nullable=False, unique=True)
    unique_name = Column(String(255), nullable=False)
    customer_identity = Column(String(255), nullable=False)
    participant_sid = Column(String(34), nullable=True)
    webhook_sid = Column(String(34), nullable=True)
    imported = Column(Integer, nullable=False, default=0)
    state = Column(String(16), nullable=False)
    last_agent = Column(String(255), nullable=True)
    created_at = Column(UTCDateTime, nullable=False)
    updated_at = Column(UTCDateTime, nullable=False)
    closed_at = Column(UTCDateTime, nullable=True)
    # Flex mode (migration 0013): the Interaction (KD), its channel (UO) and the TaskRouter
    # task (WT) now working the chat (a transfer moves it to the new task)
    flex_interaction_sid = Column(String(34), nullable=True)
    flex_channel_sid = Column(String(34), nullable=True)
    flex_task_sid = Column(String(34), nullable=True, index=True)

    __table_args__ = (CheckConstraint(_in("state", LINK_STATES), name="state"),)


class TwilioDeadLetter(Base):
    """An outbound Twilio operation that failed after the last retry (see the CLI)."""

    __tablename__ = "twilio_dead_letters"

    id = Column(Integer, primary_key=True)
    key = Column(String(255), nullable=False, unique=True)
    kind = Column(String(32), nullable=False)
    conversation_id = Column(String(255), nullable=True, index=True)
    payload = Column(JSON, nullable=False)
    error = Column(Text, nullable=False)
    attempts = Column(Integer, nullable=False)
    status = Column(String(16), nullable=False)
    created_at = Column(UTCDateTime, nullable=False)
    updated_at = Column(UTCDateTime, nullable=False)
    replayed_at = Column(UTCDateTime, nullable=True)

    __table_args__ = (
        CheckConstraint(_in("status", DEAD_LETTER_STATUSES), name="status"),
        Index("ix_twilio_dead_letters_status", "status"),
    )


class TwilioProcessed(Base):
    """A key that was handled once: ``webhook:<token>``, ``sid:<MessageSid>``, ``out:<key>``."""

    __tablename__ = "twilio_processed"

    id = Column(Integer, primary_key=True)
    key = Column(String(255), nullable=False, unique=True)
    created_at = Column(UTCDateTime, nullable=False, index=True)


class TwilioCall(Base):
    """The Voice call of a call-back (one row per call-back; a retry after a crash reuses
    it). ``updated_at`` is the time of the last claim or change: a row without a call SID
    whose claim is older than ``TWILIO_CALLBACK_STALE`` was left by a dead process."""

    __tablename__ = "twilio_calls"

    id = Column(Integer, primary_key=True)
    callback_id = Column(Integer, ForeignKey("callbacks.id", ondelete="CASCADE"),
                         nullable=False, unique=True)
    call_sid = Column(String(34), nullable=True, unique=True)
    call_status = Column(String(16), nullable=True)
    """Twilio's last CallStatus (queued, initiated, ringing, in-progress, completed, ...)."""
    attempts = Column(Integer, nullable=False, default=0)
    """How often a scheduler claimed the call-back to place this call."""
    error = Column(Text, nullable=True)
    started_at = Column(UTCDateTime, nullable=True)
    ended_at = Column(UTCDateTime, nullable=True)
    created_at = Column(UTCDateTime, nullable=False)
    updated_at = Column(UTCDateTime, nullable=False)


class TwilioInbox(Base):
    """A verified Twilio webhook, stored before it is acknowledged (migration ``0008``).

    ``dedupe_key`` is unique (a redelivery adds no row); ``order_key`` groups the rows
    processed in order (``conversation:<ConversationSid>``, ``call:<CallSid>``). A claim
    sets ``claimed_by`` and moves ``next_attempt_at`` to the end of its lease: a row whose
    lease ran out (its process died) is claimed again.
    """

    __tablename__ = "twilio_inbox"

    id = Column(Integer, primary_key=True)
    kind = Column(String(32), nullable=False)
    dedupe_key = Column(String(255), nullable=False, unique=True)
    order_key = Column(String(255), nullable=False)
    payload = Column(JSON, nullable=False)
    status = Column(String(16), nullable=False)
    attempts = Column(Integer, nullable=False, default=0)
    received_at = Column(UTCDateTime, nullable=False)
    next_attempt_at = Column(UTCDateTime, nullable=False)
    claimed_by = Column(String(64), nullable=True)
    last_error = Column(Text, nullable=True)
    result = Column(String(64), nullable=True)
    processed_at = Column(UTCDateTime, nullable=True)

    __table_args__ = (
        CheckConstraint(_in("status", INBOX_STATUSES), name="status"),
        Index("ix_twilio_inbox_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_twilio_inbox_order_key_status", "order_key", "status"),
    )
