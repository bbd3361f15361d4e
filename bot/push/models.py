"""Tables of agent push: devices, the per-agent setting, the outbox (migration 0013).

``push_outbox`` is a transactional outbox like ``mail_outbox``: one row per notification and
device, inserted in the SAME transaction as the handoff or transfer it announces
(:mod:`bot.push.outbox`), so a push is queued if and only if the change committed. The
sender (:mod:`bot.push.sender`) claims due rows with a conditional UPDATE (one process
wins) and POSTs each to its device's push service once.
"""
from __future__ import annotations

from typing import Tuple

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)

from bot.db import UTCDateTime
from bot.support.models import Base

__all__ = ["PUSH_KINDS", "PUSH_STATUSES", "PushOutbox", "PushPreference", "PushSubscription"]

PUSH_KINDS: Tuple[str, ...] = ("new_ticket", "transfer", "test")
PUSH_STATUSES: Tuple[str, ...] = ("queued", "sending", "sent", "failed", "gone", "skipped")
"""queued → sending (claimed until ``claimed_until``) → sent (the push service accepted it);
back to queued with a later ``next_attempt_at`` after a temporary failure (network, 429,
5xx); failed after the last attempt, a permanent refusal (400, 401, 403, 413) or when its
TTL passed; gone (the service answered 404/410: the subscription expired and was deleted);
skipped (the device was removed or the agent turned push off before it was sent)."""


def _in(column: str, values: Tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class PushSubscription(Base):
    """One device (browser) of an agent: its ``PushSubscription`` (endpoint and keys).

    ``endpoint_hash`` (SHA-256 of the endpoint) is unique: a device subscribed again, by the
    same or another agent logged in on it, updates its row.
    """

    __tablename__ = "push_subscriptions"

    id = Column(Integer, primary_key=True)
    agent_id = Column(Integer, ForeignKey("agents.id", ondelete="CASCADE"), nullable=False,
                      index=True)
    endpoint = Column(Text, nullable=False)
    endpoint_hash = Column(String(64), nullable=False, unique=True)
    p256dh = Column(String(128), nullable=False)
    auth = Column(String(64), nullable=False)
    user_agent = Column(String(255), nullable=True)
    created_at = Column(UTCDateTime, nullable=False)
    updated_at = Column(UTCDateTime, nullable=False)
    last_success_at = Column(UTCDateTime, nullable=True)


class PushPreference(Base):
    """The agent's setting: push on or off (no row: off)."""

    __tablename__ = "push_preferences"

    agent_id = Column(Integer, ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True)
    enabled = Column(Boolean, nullable=False)
    updated_at = Column(UTCDateTime, nullable=False)


class PushOutbox(Base):
    """One notification to one device. ``payload`` is the JSON the service worker gets
    (encrypted when sent); ``dedupe_key`` (``<audit id>:<subscription id>``) makes staging
    the same notification twice impossible."""

    __tablename__ = "push_outbox"

    id = Column(Integer, primary_key=True)
    kind = Column(String(32), nullable=False)
    dedupe_key = Column(String(128), nullable=True, unique=True)
    agent_id = Column(Integer, nullable=False, index=True)
    subscription_id = Column(Integer, nullable=True)
    ticket = Column(String(48), nullable=True)
    payload = Column(JSON, nullable=False)
    urgency = Column(String(16), nullable=False)
    status = Column(String(16), nullable=False)
    attempts = Column(Integer, nullable=False, default=0, server_default="0")
    next_attempt_at = Column(UTCDateTime, nullable=False)
    claimed_by = Column(String(64), nullable=True)
    claimed_until = Column(UTCDateTime, nullable=True)
    last_error = Column(String(255), nullable=True)
    response_status = Column(Integer, nullable=True)
    created_at = Column(UTCDateTime, nullable=False)
    sent_at = Column(UTCDateTime, nullable=True)

    __table_args__ = (
        CheckConstraint(_in("kind", PUSH_KINDS), name="kind"),
        CheckConstraint(_in("status", PUSH_STATUSES), name="status"),
        CheckConstraint(_in("urgency", ("very-low", "low", "normal", "high")), name="urgency"),
        Index("ix_push_outbox_status_next_attempt_at", "status", "next_attempt_at"),
    )
