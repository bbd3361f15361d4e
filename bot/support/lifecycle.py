"""The one owner of ticket and conversation state, chat messages and audit rows.

Every store that changes a ticket or a conversation (the bot's :mod:`bot.support.ops`,
the console's :mod:`bot.support.agents`, Twilio's :mod:`bot.twilio.store`, the widget's
:mod:`bot.support.chat`) does it through the functions of this module, inside its own
transaction:

* :class:`TicketStatus` and :class:`ConversationState` with their transitions
  (:data:`TICKET_TRANSITIONS`, :data:`CONVERSATION_TRANSITIONS`); :func:`move_ticket` and
  :func:`move_conversation` refuse any other move with :class:`StateError`;
* :func:`stage_audit`, the one writer of :class:`~bot.support.models.AuditLog` rows;
* :func:`insert_message`, the one writer of :class:`~bot.support.models.ChatMessage` rows;
* the three steps a console agent and a Twilio agent share, written once:
  :func:`claim_queued_ticket`, :func:`write_agent_reply` and :func:`resolve_ticket`.

After the transaction committed, the store's listeners run (``StoreBase._notify``) and
then :func:`publish_after_commit` puts the live events of that change on the bus
(:mod:`bot.live`): ``ticket.claimed``, ``ticket.transferred``, ``ticket.resolved``,
``agent.message``, ``customer.message``, ``agent.read``, ``customer.read`` and
``rating.created``. Callers never publish these by hand, and nothing is published for a
transaction that rolled back.
"""
from __future__ import annotations

import copy
import enum
import functools
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Dict, FrozenSet, Mapping, Optional, Tuple

from sqlalchemy import bindparam, insert, select, update

from bot.support.models import AuditLog, ChatMessage, Conversation, Ticket

__all__ = [
    "AuditView",
    "CONVERSATION_TRANSITIONS",
    "ConversationState",
    "StateError",
    "TICKET_TRANSITIONS",
    "TicketStatus",
    "bus_event",
    "claim_queued_ticket",
    "insert_message",
    "move_conversation",
    "move_ticket",
    "publish_after_commit",
    "resolve_ticket",
    "stage_audit",
    "write_agent_reply",
]

logger = logging.getLogger(__name__)


class StateError(Exception):
    """The action is not allowed in the object's current state."""


class TicketStatus(str, enum.Enum):
    """Where a ticket is. ``open``: the bot opened it, nobody is asked yet; ``queued``:
    waiting for a person; ``assigned``: a console agent (``assignee_id``) or Twilio works
    it; ``resolved``: a person is done; ``closed``: done without a person (or archived)."""

    OPEN = "open"
    QUEUED = "queued"
    ASSIGNED = "assigned"
    RESOLVED = "resolved"
    CLOSED = "closed"


class ConversationState(str, enum.Enum):
    """Who answers a conversation. ``bot``: the assistant; ``queued``: waiting for a
    person; ``assigned``: a person; ``resolved``: the person is done (the bot asks for a
    rating); ``closed``: the customer ended the chat while waiting or with a person."""

    BOT = "bot"
    QUEUED = "queued"
    ASSIGNED = "assigned"
    RESOLVED = "resolved"
    CLOSED = "closed"


_T = TicketStatus
TICKET_TRANSITIONS: Mapping[TicketStatus, FrozenSet[TicketStatus]] = {
    # a handoff queues; the bot or an admin may resolve or close without a person
    _T.OPEN: frozenset({_T.QUEUED, _T.ASSIGNED, _T.RESOLVED, _T.CLOSED}),
    # claimed (console or Twilio), put back, or finished from the queue
    _T.QUEUED: frozenset({_T.OPEN, _T.ASSIGNED, _T.RESOLVED, _T.CLOSED}),
    # assigned → assigned is a transfer to another agent
    _T.ASSIGNED: frozenset({_T.ASSIGNED, _T.OPEN, _T.QUEUED, _T.RESOLVED, _T.CLOSED}),
    # a new handoff or an admin reopens; an archive closes
    _T.RESOLVED: frozenset({_T.OPEN, _T.QUEUED, _T.CLOSED}),
    _T.CLOSED: frozenset({_T.OPEN, _T.QUEUED}),
}
"""Every allowed status change of a ticket (a resolved or closed ticket is never claimed
again before it is queued)."""

_C = ConversationState
CONVERSATION_TRANSITIONS: Mapping[ConversationState, FrozenSet[ConversationState]] = {
    # a handoff queues; an agent may claim a ticket of a chat that has moved on
    _C.BOT: frozenset({_C.QUEUED, _C.ASSIGNED}),
    _C.QUEUED: frozenset({_C.ASSIGNED, _C.RESOLVED, _C.CLOSED, _C.BOT}),
    # assigned → assigned: a transfer
    _C.ASSIGNED: frozenset({_C.ASSIGNED, _C.RESOLVED, _C.CLOSED, _C.BOT}),
    # rated (or the session ended) → bot; asked for a person again → queued
    _C.RESOLVED: frozenset({_C.BOT, _C.QUEUED, _C.ASSIGNED}),
    # the customer left: their next message is the bot's; the ticket may still be worked
    _C.CLOSED: frozenset({_C.BOT, _C.QUEUED, _C.ASSIGNED, _C.RESOLVED}),
}
"""Every allowed state change of a conversation. A conversation the bot answers is never
``resolved`` or ``closed`` directly: nobody was there to resolve or leave."""

CLOSED_STATUSES = (TicketStatus.RESOLVED.value, TicketStatus.CLOSED.value)


@dataclass(frozen=True)
class AuditView:
    """One audit-log row."""

    id: int
    at: datetime
    actor: str
    action: str
    object_type: str
    object_id: str
    data: Dict[str, Any]

    @classmethod
    def from_row(cls, row: AuditLog) -> "AuditView":
        return cls(
            id=row.id,
            at=row.at,
            actor=row.actor,
            action=row.action,
            object_type=row.object_type,
            object_id=row.object_id,
            data=copy.deepcopy(dict(row.data or {})),
        )


# ------------------------------------------------------------------ transitions


def check_ticket_move(current: str, to: str) -> bool:
    """Whether a ticket may go from ``current`` to ``to``.

    Returns:
        False when nothing changes (same status, not a transfer).

    Raises:
        StateError: The move is not in :data:`TICKET_TRANSITIONS` (or a status is unknown).
    """
    return _check_move(TicketStatus, TICKET_TRANSITIONS, "ticket", current, to)


def _check_move(states: Any, table: Mapping[Any, FrozenSet[Any]], noun: str, current: str,
                to: str) -> bool:
    """Look ``current`` → ``to`` up in ``table`` (``assigned`` → ``assigned`` is a move: a
    transfer; any other same-state move is no change)."""
    try:
        old, new = states(current), states(to)
    except ValueError:
        raise StateError(f"Unknown {noun} state {current!r} or {to!r}.") from None
    if old is new and new.value != "assigned":
        return False
    if new not in table[old]:
        raise StateError(f"A {noun} that is {old.value} cannot become {new.value}.")
    return True


def move_ticket(ticket: Ticket, to: str, now: datetime) -> bool:
    """Set a ticket's status (validated), its ``resolved_at`` and ``updated_at``.

    Returns:
        Whether the status changed.
    """
    if not check_ticket_move(ticket.status, to):
        return False
    ticket.status = TicketStatus(to).value
    if to in CLOSED_STATUSES:
        if ticket.resolved_at is None:
            ticket.resolved_at = now
    else:
        ticket.resolved_at = None
    ticket.updated_at = now
    return True


_KEEP: Any = object()


def check_conversation_move(current: str, to: str) -> bool:
    """Whether a conversation may go from ``current`` to ``to`` (False: no change).

    Raises:
        StateError: Not in :data:`CONVERSATION_TRANSITIONS`.
    """
    return _check_move(ConversationState, CONVERSATION_TRANSITIONS, "conversation", current, to)


def set_conversation_state(row: Conversation, to: str, now: datetime, *,
                           ticket_id: Any = _KEEP, assignee_id: Any = _KEEP) -> bool:
    """Move a loaded conversation row to ``to`` (validated); set its ticket/assignee.

    Returns:
        Whether the state changed.
    """
    changed = check_conversation_move(row.state, to)
    if changed:
        row.state = ConversationState(to).value
    if ticket_id is not _KEEP:
        row.ticket_id = ticket_id
    if assignee_id is not _KEEP:
        row.assignee_id = assignee_id
    row.updated_at = now
    return changed


async def move_conversation(session: Any, conversation_id: str, to: str, now: datetime, *,
                            ticket_id: Any = _KEEP, assignee_id: Any = _KEEP
                            ) -> Optional[Conversation]:
    """Load the conversation and :func:`set_conversation_state` it.

    Returns:
        The row, or None when the conversation does not exist (a ticket of the API channel).
    """
    row = (await session.execute(select(Conversation).where(
        Conversation.conversation_id == conversation_id))).scalar_one_or_none()
    if row is not None:
        set_conversation_state(row, to, now, ticket_id=ticket_id, assignee_id=assignee_id)
    return row


# ------------------------------------------------------------------------ audit


async def stage_audit(session: Any, *, at: datetime, actor: str, action: str,
                      object_type: str, object_id: str, data: Dict[str, Any]) -> AuditView:
    """Stage one audit row in the caller's transaction and return its view.

    The only writer of :class:`~bot.support.models.AuditLog` rows: ``actor`` and
    ``object_id`` are cut to their column sizes.
    """
    row = AuditLog(at=at, actor=_cut(actor, 255), action=action, object_type=object_type,
                   object_id=_cut(object_id, 64), data=data)
    session.add(row)
    await session.flush()
    return AuditView.from_row(row)


def _cut(value: Any, size: int) -> Any:
    return value[:size] if isinstance(value, str) else value


# --------------------------------------------------------------------- messages

_MESSAGES = ChatMessage.__table__
_CONVERSATIONS = Conversation.__table__


async def insert_message(session: Any, *, conversation_pk: int, session_no: int, sender: str,
                         text: str, now: datetime, status: str = "sent",
                         client_id: Optional[str] = None, sender_name: Optional[str] = None,
                         author_id: Optional[str] = None, payload: Optional[str] = None,
                         buttons: Any = None, extra: Any = None,
                         reply_to: Optional[int] = None,
                         conversation_values: Optional[Dict[str, Any]] = None) -> int:
    """Insert one chat message (Core: one INSERT, one UPDATE) and return its id.

    The only writer of :class:`~bot.support.models.ChatMessage` rows. The conversation's
    ``last_message_at`` becomes ``now`` (plus ``conversation_values``). A duplicate
    ``client_id`` raises the database's ``IntegrityError``: the caller answers with the
    stored message.
    """
    result = await session.execute(_insert_message_sql(), dict(
        conversation_pk=conversation_pk, session=session_no, client_id=client_id,
        sender=sender, sender_name=sender_name, author_id=author_id, text=text,
        payload=payload, buttons=buttons or None, extra=extra or None, status=status,
        created_at=now, reply_to=reply_to,
    ))
    values = {"last_message_at": now, **(conversation_values or {})}
    await session.execute(_touch_conversation_sql(tuple(sorted(values))),
                          {"conversation_pk_": conversation_pk, **values})
    return int(result.inserted_primary_key[0])


# The statements of a bot turn are built once and run with parameters: building one
# (and its cache key) per call cost as much CPU as executing it (issue 14).
@functools.lru_cache(maxsize=1)
def _insert_message_sql() -> Any:
    return insert(_MESSAGES)


@functools.lru_cache(maxsize=16)
def _touch_conversation_sql(columns: Tuple[str, ...]) -> Any:
    """``UPDATE conversations SET <columns> WHERE id = :conversation_pk_``."""
    return (update(_CONVERSATIONS)
            .where(_CONVERSATIONS.c.id == bindparam("conversation_pk_"))
            .values({name: bindparam(name, type_=_CONVERSATIONS.c[name].type)
                     for name in columns}))


@dataclass(frozen=True)
class AgentReply:
    """What :func:`write_agent_reply` did."""

    message: ChatMessage
    duplicate: bool
    first_response: bool


async def write_agent_reply(session: Any, *, conversation: Conversation,
                            ticket: Optional[Ticket], text: str, now: datetime,
                            client_id: Optional[str], sender_name: str, author_id: str,
                            actor: str, via: Optional[str] = None,
                            extra: Optional[Dict[str, Any]] = None) -> AgentReply:
    """A person's reply to the customer, from the console or from Twilio: written once.

    Stores the message once per ``client_id``, sets the ticket's first response time
    (audit ``ticket.first_response`` once) and stages the "you have a reply" email in the
    same transaction (sent only if the customer has not read the reply by then:
    :mod:`bot.mail.outbox`).
    """
    if client_id:
        existing = (await session.execute(select(ChatMessage).where(
            ChatMessage.conversation_pk == conversation.id,
            ChatMessage.client_id == client_id))).scalar_one_or_none()
        if existing is not None:
            return AgentReply(existing, True, False)
    message_id = await insert_message(
        session, conversation_pk=conversation.id, session_no=conversation.session,
        sender="agent", text=text, now=now, client_id=client_id,
        sender_name=sender_name[:200], author_id=author_id[:255], extra=extra)
    conversation.last_message_at = now
    first = ticket is not None and ticket.first_response_at is None
    if first:
        assert ticket is not None
        ticket.first_response_at = now
        ticket.updated_at = now
        data: Dict[str, Any] = {"seconds": _seconds_since_queued(ticket, now)}
        if via:
            data["via"] = via
        await stage_audit(session, at=now, actor=actor, action="ticket.first_response",
                          object_type="ticket", object_id=ticket.reference, data=data)
    row = await session.get(ChatMessage, message_id)
    if ticket is not None:
        from bot.mail.outbox import stage_agent_reply

        await stage_agent_reply(session, ticket=ticket, conversation=conversation,
                                message=row, agent_name=sender_name, now=now)
    return AgentReply(row, False, first)


# --------------------------------------------------------------------- tickets


async def claim_queued_ticket(session: Any, reference: str, *, assignee_id: Optional[int],
                              actor: str, now: datetime, data: Dict[str, Any]
                              ) -> Tuple[Optional[Ticket], Optional[AuditView]]:
    """Claim a queued ticket for a console agent (``assignee_id``) or Twilio (None).

    One conditional UPDATE decides between concurrent claims: the winner gets the ticket,
    its conversation becomes ``assigned`` and ``ticket.claimed`` is audited.

    Returns:
        ``(ticket, audit)``; ``(None, None)`` when the ticket was not queued any more.
    """
    check_ticket_move(TicketStatus.QUEUED.value, TicketStatus.ASSIGNED.value)
    result = await session.execute(
        update(Ticket).where(Ticket.reference == reference, Ticket.status == "queued")
        .values(status="assigned", assignee_id=assignee_id, updated_at=now)
        .execution_options(synchronize_session=False))
    if result.rowcount != 1:
        return None, None
    ticket = (await session.execute(select(Ticket).where(
        Ticket.reference == reference))).scalar_one()
    await session.refresh(ticket)
    await move_conversation(session, ticket.conversation_id, "assigned", now,
                            ticket_id=ticket.id, assignee_id=assignee_id)
    audit = await stage_audit(session, at=now, actor=actor, action="ticket.claimed",
                              object_type="ticket", object_id=reference, data=data)
    return ticket, audit


async def resolve_ticket(session: Any, ticket: Ticket, *, actor: str, now: datetime,
                         note: Optional[str] = None, via: Optional[str] = None,
                         touch_conversation: bool = True) -> AuditView:
    """A person is done with a ticket: ``resolved``; its conversation ``resolved`` (the
    bot asks for a rating) unless ``touch_conversation`` is False (the customer had left);
    audit ``ticket.resolved`` with the time since it was queued.

    Raises:
        StateError: The ticket is resolved or closed already.
    """
    move_ticket(ticket, TicketStatus.RESOLVED.value, now)
    ticket.resolved_at = now
    if note:
        ticket.details = {**dict(ticket.details or {}), "resolution_note": note[:2000]}
    if touch_conversation:
        await move_conversation(session, ticket.conversation_id, "resolved", now,
                                ticket_id=ticket.id, assignee_id=None)
    data: Dict[str, Any] = {"seconds": _seconds_since_queued(ticket, now)}
    if via:
        data["via"] = via
    return await stage_audit(session, at=now, actor=actor, action="ticket.resolved",
                             object_type="ticket", object_id=ticket.reference, data=data)


def _seconds_since_queued(ticket: Ticket, now: datetime) -> float:
    return round((now - (ticket.queued_at or ticket.created_at)).total_seconds(), 1)


# ------------------------------------------------------------------ live events

_TICKET_TOPICS = ("ticket.claimed", "ticket.transferred", "ticket.resolved")
_MESSAGE_TOPICS = {"agent": "agent.message", "customer": "customer.message"}


def bus_event(event: str, payload: Mapping[str, Any]) -> Optional[Tuple[str, Dict[str, Any]]]:
    """The live event (topic, data) a committed store event makes, if any.

    * ``ticket.claimed`` / ``ticket.transferred`` / ``ticket.resolved`` (payload
      ``ticket`` and ``agent_name``, or ``agent`` / ``to`` agent views) → the same topic
      with ``conversation_id``, ``ticket`` and ``agent_name``;
    * ``message.stored`` of an agent's message → ``agent.message``; of a customer's (and
      of the notice that replaced a failed bot turn: payload ``customer_side``) →
      ``customer.message``; bot and other system messages reach the customer through the
      widget's turn, not the bus;
    * ``messages.marked`` → ``agent.read`` (an agent read customer messages) or
      ``customer.read`` (the customer read the bot's and agents' messages);
    * ``rating.created`` → ``rating.created``.
    """
    if payload.get("live") is False:
        return None  # the store says nobody is to hear of it (e.g. the customer had left)
    if event in _TICKET_TOPICS:
        ticket = payload.get("ticket")
        if ticket is None:
            return None
        name = payload.get("agent_name")
        if name is None:
            agent = payload.get("to") if event == "ticket.transferred" else payload.get("agent")
            name = getattr(agent, "display_name", None)
        return event, {"conversation_id": ticket.conversation_id, "ticket": ticket.reference,
                       "agent_name": name}
    if event == "message.stored":
        message = payload.get("message")
        if message is None:
            return None
        topic = _MESSAGE_TOPICS.get(message.sender)
        if topic is None and payload.get("customer_side"):
            topic = "customer.message"
        if topic is None:
            return None
        return topic, {"conversation_id": message.conversation_id,
                       "message": message.to_wire()}
    if event == "messages.marked":
        if payload.get("status") != "read" or not payload.get("ids"):
            return None
        topic = "agent.read" if tuple(payload.get("senders") or ()) == ("customer",) \
            else "customer.read"
        return topic, {"conversation_id": payload["conversation_id"],
                       "ids": list(payload["ids"])}
    if event == "rating.created":
        rating = payload.get("rating")
        if rating is None:
            return None
        return "rating.created", {
            "conversation_id": rating.conversation_id, "score": rating.score,
            "comment": rating.comment, "ticket_id": rating.ticket_id,
            "session": rating.session}
    return None


async def publish_after_commit(event: str, payload: Mapping[str, Any],
                               publish: Optional[Any] = None) -> None:
    """Publish the live event of a committed store event (:func:`bus_event`) on the bus.

    Called by ``StoreBase._notify`` after the store's listeners; a failing bus is
    logged, never raised to the caller (the state change is committed; clients catch up
    from the store when they reconnect).
    """
    live = bus_event(event, payload)
    if live is None:
        return
    if publish is None:
        from bot.live import bus

        publish = bus().publish
    try:
        await publish(*live)
    except Exception:  # noqa: BLE001 - committed already; the bus is best effort
        logger.exception("Could not publish %s after commit", live[0])
