"""Tables of the support database: tickets, call-backs, handoffs, audit log,
and the chat conversations and messages of the widget channel.

The models have their own declarative :data:`Base` (and a naming convention
for constraints) so that Alembic migrations can target ``Base.metadata``
later. Timestamps use :class:`bot.db.UTCDateTime`: stored as naive UTC,
returned as aware UTC. Allowed values of the string "enum" columns live in the
constants below and are enforced by CHECK constraints as well as by
:mod:`bot.support.ops`.

Write to these tables only through the ``do_*`` methods of
:class:`bot.support.ops.SupportStore`.
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    cast,
    event,
    func,
)
from sqlalchemy.orm import declarative_base

from bot.db import UTCDateTime

__all__ = [
    "AGENT_ROLES",
    "Agent",
    "AgentSession",
    "AuditLog",
    "ChangeFeed",
    "ChangeFeedClaim",
    "FEED_TOPICS",
    "stage_change",
    "CONVERSATION_STATES",
    "Customer",
    "Rating",
    "ChatMessage",
    "Conversation",
    "MESSAGE_SENDERS",
    "MESSAGE_STATUSES",
    "Base",
    "CALLBACK_STATUSES",
    "CLOSED_TICKET_STATUSES",
    "Callback",
    "Handoff",
    "HANDOFF_STATUSES",
    "PRIORITIES",
    "TICKET_STATUSES",
    "Ticket",
    "callback_reference",
    "ticket_reference",
]

PRIORITIES: Tuple[str, ...] = ("low", "normal", "high", "urgent")
"""Ticket/handoff priorities, lowest first (the order matters for raise-only)."""

TICKET_STATUSES: Tuple[str, ...] = ("open", "queued", "assigned", "resolved", "closed")
CLOSED_TICKET_STATUSES: Tuple[str, ...] = ("resolved", "closed")
CALLBACK_STATUSES: Tuple[str, ...] = (
    "scheduled", "cancelled", "done",
    # Twilio Voice (bot/twilio/voice.py, docs/twilio.md): the scheduler claimed it
    # (calling), the customer answered (in_progress), and how the call ended
    "calling", "in_progress", "completed", "no_answer", "failed", "missed",
)
"""scheduled → calling → in_progress → completed (or no_answer/failed/cancelled); missed:
found too late to call. Only ``scheduled`` call-backs can be moved or cancelled. The placed
call itself is in ``twilio_calls`` (:class:`bot.twilio.models.TwilioCall`)."""
HANDOFF_STATUSES: Tuple[str, ...] = ("queued",)
CONVERSATION_STATES: Tuple[str, ...] = ("bot", "queued", "assigned", "resolved", "closed")
"""bot: the assistant answers; queued: waiting for a person; assigned: an agent owns it;
resolved: the agent is done (the bot asks for a rating); closed: the customer ended the chat."""
AGENT_ROLES: Tuple[str, ...] = ("agent", "admin")
MESSAGE_SENDERS: Tuple[str, ...] = ("customer", "bot", "agent", "system")
MESSAGE_STATUSES: Tuple[str, ...] = (
    "received", "processing", "sent", "delivered", "read", "failed",
)
"""Customer messages go received → processing (a process claimed its bot turn) → delivered →
read, or end ``failed`` (the turn failed every attempt; a system notice says so); outgoing
ones sent → delivered → read. A ``processing`` message whose claim lease ran out (its process
died) is claimable again, like a ``received`` one (``docs/widget-protocol.md``)."""

NAMING_CONVENTION: Dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Base: Any = declarative_base(metadata=MetaData(naming_convention=NAMING_CONVENTION))


def _in(column: str, values: Tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"


def ticket_reference(ticket_id: int) -> str:
    """Return the public reference of a ticket id (``123`` → ``"T-000123"``)."""
    return f"T-{ticket_id:06d}"


def callback_reference(callback_id: int) -> str:
    """Return the public reference of a call-back id (``45`` → ``"C-000045"``)."""
    return f"C-{callback_id:06d}"


class Ticket(Base):
    """A support ticket opened by the bot or by a handoff.

    ``reference`` is derived from ``id`` after the insert (a unique placeholder
    is stored for the instant between the INSERT and the UPDATE in the same
    transaction). ``details`` is a JSON object (transcript, slots, triage,
    order_number, …).
    """

    __tablename__ = "tickets"

    id = Column(Integer, primary_key=True)
    reference = Column(String(48), nullable=False, unique=True)
    conversation_id = Column(String(255), nullable=False, index=True)
    customer_id = Column(String(255), nullable=True, index=True)
    contact_email = Column(String(320), nullable=True)
    summary = Column(Text, nullable=False)
    category = Column(String(64), nullable=False)
    priority = Column(String(16), nullable=False)
    status = Column(String(16), nullable=False)
    source = Column(String(32), nullable=False)
    details = Column(JSON, nullable=False)
    assignee_id = Column(
        Integer, ForeignKey("agents.id", ondelete="SET NULL"), nullable=True, index=True
    )
    created_at = Column(UTCDateTime, nullable=False)
    updated_at = Column(UTCDateTime, nullable=False)
    # indexed for the dashboard's aggregates over a period (bot/support/metrics.py)
    queued_at = Column(UTCDateTime, nullable=True, index=True)
    first_response_at = Column(UTCDateTime, nullable=True, index=True)
    resolved_at = Column(UTCDateTime, nullable=True, index=True)

    __table_args__ = (
        CheckConstraint(_in("priority", PRIORITIES), name="priority"),
        CheckConstraint(_in("status", TICKET_STATUSES), name="status"),
    )


class Callback(Base):
    """A phone call-back the customer asked for.

    ``scheduled_for`` is the agreed instant (UTC); ``customer_tz`` is the IANA
    zone the customer thinks in, used to phrase the time back to them.
    """

    __tablename__ = "callbacks"

    id = Column(Integer, primary_key=True)
    reference = Column(String(48), nullable=False, unique=True)
    conversation_id = Column(String(255), nullable=False, index=True)
    customer_id = Column(String(255), nullable=True, index=True)
    phone = Column(String(16), nullable=False)
    scheduled_for = Column(UTCDateTime, nullable=False)
    customer_tz = Column(String(64), nullable=False)
    status = Column(String(16), nullable=False)
    topic = Column(Text, nullable=True)
    created_at = Column(UTCDateTime, nullable=False)
    updated_at = Column(UTCDateTime, nullable=False)

    __table_args__ = (
        CheckConstraint(_in("status", CALLBACK_STATUSES), name="status"),
        Index("ix_callbacks_status_scheduled_for", "status", "scheduled_for"),
    )


class Handoff(Base):
    """A request to move a conversation (and its ticket) to a human agent."""

    __tablename__ = "handoffs"

    id = Column(Integer, primary_key=True)
    conversation_id = Column(String(255), nullable=False, index=True)
    ticket_id = Column(
        Integer, ForeignKey("tickets.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    reason = Column(String(255), nullable=False)
    priority = Column(String(16), nullable=False)
    status = Column(String(16), nullable=False, default="queued")
    created_at = Column(UTCDateTime, nullable=False, index=True)

    __table_args__ = (
        CheckConstraint(_in("priority", PRIORITIES), name="priority"),
        CheckConstraint(_in("status", HANDOFF_STATUSES), name="status"),
    )


class AuditLog(Base):
    """One row per state change made by a ``do_*`` action.

    ``actor`` is who caused it (``"bot"``, ``"customer:<id>"``, ``"agent:<id>"``),
    ``action`` what happened (``"ticket.created"``), ``object_type`` /
    ``object_id`` what it happened to (``"ticket"`` / ``"T-000123"``) and
    ``data`` a small JSON object with the relevant values (no transcripts).
    """

    __tablename__ = "audit_log"

    id = Column(Integer, primary_key=True)
    at = Column(UTCDateTime, nullable=False, index=True)
    actor = Column(String(255), nullable=False)
    action = Column(String(64), nullable=False)
    object_type = Column(String(32), nullable=False)
    object_id = Column(String(64), nullable=False)
    data = Column(JSON, nullable=False)

    __table_args__ = (Index("ix_audit_log_object", "object_type", "object_id"),)


class Conversation(Base):
    """One customer's chat on a channel (the widget: one per user, over all devices).

    ``conversation_id`` is the Rasa sender id (``"widget:<user id>"``); ``session``
    counts chat sessions (``End chat`` starts the next one). ``profile`` holds the
    verified token's profile fields, ``context`` what the app SDK last reported
    (screen, app version, device, locale).
    """

    __tablename__ = "conversations"

    id = Column(Integer, primary_key=True)
    conversation_id = Column(String(255), nullable=False, unique=True)
    channel = Column(String(32), nullable=False)
    customer_id = Column(String(255), nullable=False, index=True)
    profile = Column(JSON, nullable=False)
    context = Column(JSON, nullable=False)
    session = Column(Integer, nullable=False, default=1)
    state = Column(String(16), nullable=False, default="bot", server_default="bot", index=True)
    assignee_id = Column(
        Integer, ForeignKey("agents.id", ondelete="SET NULL"), nullable=True, index=True
    )
    ticket_id = Column(Integer, ForeignKey("tickets.id", ondelete="SET NULL"), nullable=True)
    created_at = Column(UTCDateTime, nullable=False)
    updated_at = Column(UTCDateTime, nullable=False)
    last_message_at = Column(UTCDateTime, nullable=True)
    ended_at = Column(UTCDateTime, nullable=True)

    __table_args__ = (CheckConstraint(_in("state", CONVERSATION_STATES), name="state"),)


class ChatMessage(Base):
    """One message of a conversation, stored before it is acknowledged or pushed.

    ``client_id`` is the id the customer's device gave the message (unique per
    conversation: a resent message is stored once). ``payload`` is what the bot
    received instead of ``text`` (a quick reply's ``/intent``). ``buttons`` and
    ``extra`` (image, attachment, custom) come from bot responses.

    The bot turn of a customer message is claimed in the database
    (:meth:`bot.support.chat.ChatStore.do_claim_turn`): ``status`` ``processing``,
    ``claimed_by`` (the process), ``claimed_until`` (the lease, renewed while the turn
    runs; for a ``received`` message waiting for a retry: not before then), ``attempts``
    (turns started) and ``turn_error`` (why the last attempt failed). ``reply_to`` on a bot
    or system message is the customer message whose turn stored it.
    """

    __tablename__ = "chat_messages"

    id = Column(Integer, primary_key=True)
    conversation_pk = Column(
        Integer, ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False
    )
    session = Column(Integer, nullable=False)
    client_id = Column(String(64), nullable=True)
    sender = Column(String(16), nullable=False)
    sender_name = Column(String(200), nullable=True)
    author_id = Column(String(255), nullable=True)
    text = Column(Text, nullable=False)
    payload = Column(Text, nullable=True)
    buttons = Column(JSON, nullable=True)
    extra = Column(JSON, nullable=True)
    status = Column(String(16), nullable=False)
    created_at = Column(UTCDateTime, nullable=False)
    delivered_at = Column(UTCDateTime, nullable=True)
    read_at = Column(UTCDateTime, nullable=True)
    # bot turn claims (revision 0007)
    attempts = Column(Integer, nullable=False, default=0, server_default="0")
    claimed_by = Column(String(64), nullable=True)
    claimed_until = Column(UTCDateTime, nullable=True)
    turn_error = Column(String(255), nullable=True)
    reply_to = Column(Integer, nullable=True)

    __table_args__ = (
        CheckConstraint(_in("sender", MESSAGE_SENDERS), name="sender"),
        CheckConstraint(_in("status", MESSAGE_STATUSES), name="status"),
        UniqueConstraint("conversation_pk", "client_id", name="uq_chat_messages_client_id"),
        Index("ix_chat_messages_conversation_id", "conversation_pk", "id"),
        # questions per period (bot/support/metrics.py): customer messages by time
        Index("ix_chat_messages_sender_created_at", "sender", "created_at"),
        # turns still to run (start-up and hello re-queue), replies of a turn
        Index("ix_chat_messages_status_id", "status", "id"),
        Index("ix_chat_messages_reply_to", "reply_to"),
    )


class Customer(Base):
    """A shop customer as the verified token last described them."""

    __tablename__ = "customers"

    id = Column(String(255), primary_key=True)
    name = Column(String(200), nullable=True)
    email = Column(String(320), nullable=True)
    phone = Column(String(32), nullable=True)
    locale = Column(String(35), nullable=True)
    timezone = Column(String(64), nullable=True)
    created_at = Column(UTCDateTime, nullable=False)
    updated_at = Column(UTCDateTime, nullable=False)


class Agent(Base):
    """A support agent (or admin) who logs into the agent console."""

    __tablename__ = "agents"

    id = Column(Integer, primary_key=True)
    username = Column(String(64), nullable=False, unique=True)
    display_name = Column(String(200), nullable=False)
    password_hash = Column(String(255), nullable=False)
    role = Column(String(16), nullable=False)
    active = Column(Boolean, nullable=False, default=True)
    created_at = Column(UTCDateTime, nullable=False)
    last_seen_at = Column(UTCDateTime, nullable=True)

    __table_args__ = (CheckConstraint(_in("role", AGENT_ROLES), name="role"),)


class AgentSession(Base):
    """A console login: only the SHA-256 of the bearer token is stored."""

    __tablename__ = "agent_sessions"

    id = Column(Integer, primary_key=True)
    agent_id = Column(Integer, ForeignKey("agents.id", ondelete="CASCADE"), nullable=False, index=True)
    token_hash = Column(String(64), nullable=False, unique=True)
    created_at = Column(UTCDateTime, nullable=False)
    expires_at = Column(UTCDateTime, nullable=False)
    revoked_at = Column(UTCDateTime, nullable=True)


class Rating(Base):
    """The customer's 1-5 rating (and optional comment) of the help they got."""

    __tablename__ = "ratings"

    id = Column(Integer, primary_key=True)
    conversation_pk = Column(
        Integer, ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False, index=True
    )
    session = Column(Integer, nullable=False)
    ticket_id = Column(Integer, ForeignKey("tickets.id", ondelete="SET NULL"), nullable=True,
                       index=True)
    score = Column(Integer, nullable=False)
    comment = Column(Text, nullable=True)
    created_at = Column(UTCDateTime, nullable=False, index=True)

    __table_args__ = (
        CheckConstraint("score BETWEEN 1 AND 5", name="score"),
        UniqueConstraint("conversation_pk", "session", name="uq_ratings_conversation_session"),
    )


# ------------------------------------------------------------------ change feed
# (migration 0009; read by bot.live.ChangeFeedConsumer, docs/agent-console.md "Live updates")

FEED_TOPICS: Tuple[str, ...] = (
    "handoff.recorded", "ticket.claimed", "ticket.transferred", "ticket.resolved",
)
"""Audit actions that also go to the change feed (what consoles and the Twilio bridge follow)."""


class ChangeFeed(Base):
    """The transactional outbox: one row per change other processes follow.

    Written in the SAME transaction as the state change (every :class:`AuditLog` row whose
    action is in :data:`FEED_TOPICS` gets one, see :func:`stage_change`), so a change is in
    the feed if and only if it committed. ``txid`` is the writing transaction's id on
    PostgreSQL (``pg_current_xact_id()``): readers only take rows of transactions older than
    every running one, in ``(txid, id)`` order, so rows that commit out of id order are never
    skipped (bot/live.py). NULL on SQLite (one writer at a time: id order is commit order).
    """

    __tablename__ = "change_feed"

    id = Column(Integer, primary_key=True)
    txid = Column(BigInteger, nullable=True)
    topic = Column(String(64), nullable=False)
    object_type = Column(String(32), nullable=False)
    object_id = Column(String(64), nullable=False)
    ticket = Column(String(48), nullable=True)
    conversation_id = Column(String(255), nullable=True)
    payload = Column(JSON, nullable=False)
    created_at = Column(UTCDateTime, nullable=False, index=True)

    __table_args__ = (Index("ix_change_feed_txid_id", "txid", "id"),
                      Index("ix_change_feed_topic_created_at", "topic", "created_at"))


class ChangeFeedClaim(Base):
    """A consumer's durable claim of one feed row (e.g. the Twilio bridge's handoffs).

    ``done_at`` NULL: being handled by ``owner`` (a process), taken over when ``claimed_at``
    (refreshed while it works) is older than the consumer's stale limit.
    """

    __tablename__ = "change_feed_claims"

    consumer = Column(String(64), primary_key=True)
    change_id = Column(Integer, ForeignKey("change_feed.id", ondelete="CASCADE"),
                       primary_key=True, index=True)
    owner = Column(String(64), nullable=False)
    attempts = Column(Integer, nullable=False, default=1)
    claimed_at = Column(UTCDateTime, nullable=False)
    done_at = Column(UTCDateTime, nullable=True)


def stage_change(connection: Any, *, topic: str, object_type: str, object_id: str,
                 payload: Dict[str, Any], at: Any, ticket: Any = None,
                 conversation_id: Any = None) -> None:
    """Insert a feed row on ``connection``, inside the caller's (open) transaction."""
    values: Dict[str, Any] = {
        "topic": topic[:64], "object_type": object_type[:32], "object_id": str(object_id)[:64],
        "ticket": str(ticket)[:48] if ticket else None,
        "conversation_id": str(conversation_id)[:255] if conversation_id else None,
        "payload": payload, "created_at": at,
    }
    if connection.dialect.name == "postgresql":
        # the top-level transaction id (xid8, epoch-extended, fits a bigint)
        values["txid"] = cast(cast(func.pg_current_xact_id(), Text), BigInteger)
    connection.execute(ChangeFeed.__table__.insert().values(**values))


@event.listens_for(AuditLog, "after_insert")
def _audit_to_feed(_mapper: Any, connection: Any, row: AuditLog) -> None:
    """Every feed-worthy audit row gets its feed row in the same transaction (all writers:
    SupportStore, AgentStore, the Twilio store)."""
    if row.action not in FEED_TOPICS:
        return
    data = dict(row.data or {})
    ticket = data.get("ticket") if row.object_type != "ticket" else row.object_id
    stage_change(
        connection, topic=row.action, object_type=row.object_type, object_id=row.object_id,
        ticket=ticket, conversation_id=data.get("conversation_id"), at=row.at,
        payload={"audit_id": row.id, "actor": row.actor, "data": data})


@event.listens_for(AuditLog, "after_insert")
def _audit_to_push(_mapper: Any, connection: Any, row: AuditLog) -> None:
    """Handoffs and transfers queue their agent pushes in the same transaction (every
    writer; bot/push/outbox.py, which imports no model)."""
    from bot.push.outbox import stage_for_audit

    stage_for_audit(connection, row)
