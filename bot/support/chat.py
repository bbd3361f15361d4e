"""The chat store: conversations and messages of the widget channel.

Every message (customer, bot, agent, system) is written here **before** it is
acknowledged to the customer or pushed to their devices, so a restart of the
app, of the server, or a second device shows the same conversation.

Like :mod:`bot.support.ops`, each state change is a ``do_*`` coroutine that runs
in one new transaction. Conversation-level changes (``conversation.created``,
``conversation.session_ended``) write an audit row and notify listeners after
the commit; individual messages and their delivery status do not get audit rows
(the message table is itself the record), but listeners still hear of stored
messages (``message.stored``) after the commit, which is how the agent console
will learn of them.

Example::

    chat = ChatStore.from_url("sqlite:///var/support.db")
    await chat.create_schema()
    conv = await chat.do_open_conversation("widget:cust-anna", "cust-anna", "widget")
    stored = await chat.do_store_customer_message(conv.conversation_id, "c-1", "hi")
    await chat.dispose()
"""
from __future__ import annotations

import copy
import functools
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from sqlalchemy import and_, bindparam, exists, func, literal, or_, select, update
from sqlalchemy.exc import IntegrityError

from bot import db
from bot.support.base import StoreBase
from bot.support.lifecycle import (
    check_conversation_move, insert_message, set_conversation_state, stage_audit,
)
from bot.support.models import MESSAGE_SENDERS, ChatMessage, Conversation

__all__ = [
    "ChatStore",
    "ConversationView",
    "MessageView",
    "StoredMessage",
    "TurnClaim",
    "MAX_CONTEXT_KEYS",
    "TURN_PENDING",
]

logger = logging.getLogger(__name__)

MAX_CONTEXT_KEYS = 20
MAX_CONTEXT_VALUE_CHARS = 200
MAX_BUTTONS = 12
OUTGOING_SENDERS: Tuple[str, ...] = ("bot", "agent", "system")
_RANK = {"received": 0, "processing": 0, "sent": 0, "delivered": 1, "read": 2}
TURN_PENDING: Tuple[str, ...] = ("received", "processing")
"""Customer message statuses whose bot turn has not finished (claimable when the lease,
``claimed_until``, is unset or past)."""
MAX_TURN_ERROR = 255


@dataclass(frozen=True)
class ConversationView:
    """A conversation as read from the database."""

    id: int
    conversation_id: str
    channel: str
    customer_id: str
    profile: Dict[str, Any]
    context: Dict[str, Any]
    session: int
    created_at: datetime
    updated_at: datetime
    last_message_at: Optional[datetime]
    ended_at: Optional[datetime]
    state: str = "bot"
    assignee_id: Optional[int] = None
    ticket_id: Optional[int] = None

    @property
    def with_person(self) -> bool:
        """True while a person has (or is about to take) the conversation."""
        return self.state in ("queued", "assigned")

    @classmethod
    def from_row(cls, row: Conversation) -> "ConversationView":
        return cls(
            id=row.id,
            conversation_id=row.conversation_id,
            channel=row.channel,
            customer_id=row.customer_id,
            profile=copy.deepcopy(dict(row.profile or {})),
            context=copy.deepcopy(dict(row.context or {})),
            session=row.session,
            created_at=row.created_at,
            updated_at=row.updated_at,
            last_message_at=row.last_message_at,
            ended_at=row.ended_at,
            state=row.state or "bot",
            assignee_id=row.assignee_id,
            ticket_id=row.ticket_id,
        )


@dataclass(frozen=True)
class MessageView:
    """A stored message; :meth:`to_wire` is its shape in the widget protocol."""

    id: int
    conversation_id: str
    session: int
    client_id: Optional[str]
    sender: str
    sender_name: Optional[str]
    text: str
    payload: Optional[str]
    buttons: List[Dict[str, str]]
    extra: Dict[str, Any]
    status: str
    created_at: datetime
    delivered_at: Optional[datetime]
    read_at: Optional[datetime]

    @classmethod
    def from_row(cls, row: ChatMessage, conversation_id: str) -> "MessageView":
        return cls(
            id=row.id,
            conversation_id=conversation_id,
            session=row.session,
            client_id=row.client_id,
            sender=row.sender,
            sender_name=row.sender_name,
            text=row.text,
            payload=row.payload,
            buttons=copy.deepcopy(list(row.buttons or [])),
            extra=copy.deepcopy(dict(row.extra or {})),
            status=row.status,
            created_at=row.created_at,
            delivered_at=row.delivered_at,
            read_at=row.read_at,
        )

    def to_wire(self) -> Dict[str, Any]:
        """The message object of ``docs/widget-protocol.md``.

        Rich text stored in ``extra`` (``blocks``, see :mod:`bot.richtext`) goes out as the
        top-level ``blocks``; its Markdown source (``extra["markdown"]``) stays on the server.
        """
        wire: Dict[str, Any] = {
            "id": self.id,
            "client_id": self.client_id,
            "sender": self.sender,
            "sender_name": self.sender_name,
            "text": self.text,
            "buttons": self.buttons,
            "status": self.status,
            "session": self.session,
            "created_at": _iso(self.created_at),
        }
        extra = {k: v for k, v in self.extra.items()
                 if k not in ("blocks", "markdown", "attachments")}
        if self.extra.get("blocks"):
            wire["blocks"] = self.extra["blocks"]
        if self.extra.get("attachments"):  # photos and files (bot.attachments)
            wire["attachments"] = self.extra["attachments"]
        if extra:
            wire["extra"] = extra
        return wire


@dataclass(frozen=True)
class TurnClaim:
    """A customer message whose bot turn this process now owns (:meth:`ChatStore.do_claim_turn`).

    Attributes:
        message: The customer message (status ``processing``).
        conversation: Its conversation.
        attempt: Which attempt this is (1 for the first).
        answered: Bot/system messages of this turn are stored already (``reply_to``): an
            earlier attempt ran and its process died before it marked the message. The
            turn must not run again; finish it.
    """

    message: MessageView
    conversation: ConversationView
    attempt: int
    answered: bool


@dataclass(frozen=True)
class StoredMessage:
    """Result of :meth:`ChatStore.do_store_customer_message`."""

    message: MessageView
    duplicate: bool


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def clean_context(context: Any) -> Dict[str, Any]:
    """Keep at most 20 scalar entries of an app-context object, strings cut to 200 chars.

    Raises:
        ValueError: If ``context`` is not an object.
    """
    if context is None:
        return {}
    if not isinstance(context, Mapping):
        raise ValueError("context must be an object.")
    clean: Dict[str, Any] = {}
    for key, value in context.items():
        if len(clean) >= MAX_CONTEXT_KEYS:
            break
        if not isinstance(key, str) or not key.strip() or len(key) > 64:
            continue
        if isinstance(value, str):
            clean[key] = value[:MAX_CONTEXT_VALUE_CHARS]
        elif isinstance(value, (bool, int, float)) and value == value:  # not NaN
            clean[key] = value
    return clean


def clean_buttons(buttons: Any) -> List[Dict[str, str]]:
    """Keep the ``title``/``payload`` of well-formed buttons (at most 12)."""
    clean: List[Dict[str, str]] = []
    for button in buttons or []:
        if not isinstance(button, Mapping):
            continue
        title, payload = button.get("title"), button.get("payload")
        if isinstance(title, str) and title.strip():
            clean.append(
                {"title": title.strip()[:200], "payload": str(payload or title)[:500]}
            )
        if len(clean) >= MAX_BUTTONS:
            break
    return clean


class ChatStore(StoreBase):
    """Conversations and messages over an async engine.

    Args:
        engine: The engine to use; the store owns it (see :meth:`dispose`).
    """

    # ---------------------------------------------------------- conversations

    async def do_open_conversation(
        self,
        conversation_id: str,
        customer_id: str,
        channel: str,
        profile: Optional[Mapping[str, Any]] = None,
        context: Optional[Mapping[str, Any]] = None,
    ) -> ConversationView:
        """Return the conversation, creating it (audit ``conversation.created``) if new.

        The profile is replaced by the given one (the token is the source of
        truth); a non-empty ``context`` replaces the stored context.
        """
        profile_ = dict(profile or {})
        context_ = clean_context(context)
        now = db.utcnow()
        created = False
        try:
            async with db.write_session(self._sessions) as session:
                row = await _conversation(session, conversation_id)
                if row is None:
                    created = True
                    row = Conversation(
                        conversation_id=conversation_id,
                        channel=channel,
                        customer_id=customer_id,
                        profile=profile_,
                        context=context_,
                        session=1,
                        state="bot",
                        created_at=now,
                        updated_at=now,
                    )
                    session.add(row)
                    await session.flush()
                    await stage_audit(
                        session, at=now, actor=f"customer:{customer_id}",
                        action="conversation.created", object_type="conversation",
                        object_id=conversation_id,
                        data={"channel": channel, "customer_id": customer_id})
                else:
                    if row.profile != profile_ or (context_ and row.context != context_):
                        row.profile = profile_
                        if context_:
                            row.context = context_
                        row.updated_at = now
                view = ConversationView.from_row(row)
        except IntegrityError:  # created concurrently by another connection
            return await self.get_conversation(conversation_id)
        if created:
            await self._notify(
                "conversation.created", {"actor": f"customer:{customer_id}", "conversation": view}
            )
        return view

    async def get_conversation(self, conversation_id: str) -> ConversationView:
        """The conversation with this id.

        Raises:
            LookupError: If there is none.
        """
        async with db.read_session(self._sessions) as session:
            row = (await session.execute(
                select(_CONVERSATIONS).where(_CONVERSATIONS.c.conversation_id == conversation_id)
            )).first()
            if row is None:
                raise LookupError(f"No conversation {conversation_id}.")
            return ConversationView.from_row(row)  # a Core row has the same attributes

    async def do_update_context(
        self, conversation_id: str, context: Mapping[str, Any]
    ) -> ConversationView:
        """Replace the conversation's app context (no audit row: descriptive data)."""
        context_ = clean_context(context)
        async with db.write_session(self._sessions) as session:
            row = await _require_conversation(session, conversation_id)
            if row.context != context_:
                row.context = context_
                row.updated_at = db.utcnow()
            return ConversationView.from_row(row)

    async def do_end_session(
        self, conversation_id: str, actor: str, notice: str = "Chat ended"
    ) -> Tuple[ConversationView, MessageView]:
        """End the current chat session: a system notice, then the next session number.

        Audit action ``conversation.session_ended``.
        """
        now = db.utcnow()
        async with db.write_session(self._sessions) as session:
            row = await _require_conversation(session, conversation_id)
            ended = row.session
            notice_id = await insert_message(
                session, conversation_pk=row.id, session_no=ended, sender="system",
                text=notice, now=now)
            row.session = ended + 1
            row.ended_at = now
            # waiting for or with a person: closed (the ticket stays); otherwise the bot's
            if row.state in ("queued", "assigned"):
                set_conversation_state(row, "closed", now)
            elif row.state in ("resolved", "closed"):
                set_conversation_state(row, "bot", now)
            row.updated_at = now
            row.last_message_at = now
            await session.flush()
            await stage_audit(
                session, at=now, actor=actor, action="conversation.session_ended",
                object_type="conversation", object_id=conversation_id,
                data={"session": ended})
            view = ConversationView.from_row(row)
            message_view = MessageView.from_row(
                await session.get(ChatMessage, notice_id), conversation_id)
        await self._notify(
            "conversation.session_ended",
            {"actor": actor, "conversation": view, "message": message_view},
        )
        return view, message_view

    # --------------------------------------------------------------- messages

    async def do_store_customer_message(
        self,
        conversation_id: str,
        client_id: str,
        text: str,
        payload: Optional[str] = None,
        extra: Optional[Mapping[str, Any]] = None,
    ) -> StoredMessage:
        """Store a customer message once per ``client_id`` (status ``received``).

        A second call with the same ``client_id`` stores nothing and returns the
        first message with ``duplicate=True``. ``extra``: ``{"attachments": [...]}`` of a
        message with photos or files (:mod:`bot.attachments`).
        """
        now = db.utcnow()
        try:
            async with db.write_connection(self._engine) as session:
                pk, number, state = await _conversation_key(session, conversation_id)
                values: Dict[str, Any] = {"ended_at": None}
                # a new session after leaving a person is the bot's again
                if state == "closed" and check_conversation_move(state, "bot"):
                    values["state"] = "bot"
                message_id = await insert_message(
                    session, conversation_pk=pk, session_no=number, sender="customer",
                    text=text, now=now, status="received", client_id=client_id,
                    payload=payload, extra=dict(extra) if extra else None,
                    conversation_values=values)
                view = MessageView(
                    id=message_id, conversation_id=conversation_id,
                    session=number, client_id=client_id, sender="customer", sender_name=None,
                    text=text, payload=payload, buttons=[], extra=dict(extra or {}),
                    status="received",
                    created_at=now, delivered_at=None, read_at=None,
                )
        except IntegrityError:  # this client_id is stored already (a resend): answer once
            existing = await self.find_customer_message(conversation_id, client_id)
            if existing is None:
                raise
            return StoredMessage(existing, True)
        await self._notify("message.stored", {"message": view})
        return StoredMessage(view, False)

    async def find_customer_message(
        self, conversation_id: str, client_id: str
    ) -> Optional[MessageView]:
        """The customer message stored with this ``client_id``, if any."""
        async with db.read_session(self._sessions) as session:
            conversation = await _conversation(session, conversation_id)
            if conversation is None:
                return None
            row = await _by_client_id(session, conversation.id, client_id)
            return None if row is None else MessageView.from_row(row, conversation_id)

    async def do_store_outgoing(
        self,
        conversation_id: str,
        sender: str,
        text: str,
        *,
        sender_name: Optional[str] = None,
        buttons: Any = None,
        extra: Optional[Mapping[str, Any]] = None,
        reply_to: Optional[int] = None,
    ) -> MessageView:
        """Store a bot, agent or system message (status ``sent``).

        ``reply_to``: the customer message whose bot turn sends it (see :meth:`do_claim_turn`).
        """
        if sender not in OUTGOING_SENDERS:
            raise ValueError(f"sender must be one of {OUTGOING_SENDERS}, got {sender!r}.")
        now = db.utcnow()
        clean = clean_buttons(buttons)
        extra_ = dict(extra) if extra else {}
        async with db.write_connection(self._engine) as session:
            pk, number, _ = await _conversation_key(session, conversation_id)
            message_id = await insert_message(
                session, conversation_pk=pk, session_no=number, sender=sender, text=text or "",
                now=now, sender_name=sender_name, buttons=clean, extra=extra_,
                reply_to=reply_to)
            view = MessageView(
                id=message_id, conversation_id=conversation_id,
                session=number, client_id=None, sender=sender, sender_name=sender_name,
                text=text or "", payload=None, buttons=clean, extra=extra_, status="sent",
                created_at=now, delivered_at=None, read_at=None,
            )
        await self._notify("message.stored", {"message": view})
        return view

    async def do_mark(
        self,
        conversation_id: str,
        status: str,
        *,
        ids: Optional[Sequence[int]] = None,
        up_to: Optional[int] = None,
        senders: Sequence[str] = MESSAGE_SENDERS,
    ) -> List[int]:
        """Move messages forward to ``delivered`` or ``read`` (never backwards).

        Args:
            conversation_id: The conversation.
            status: ``"delivered"`` or ``"read"`` (read implies delivered).
            ids: These message ids, and/or
            up_to: every message with an id up to this one.
            senders: Only messages from these senders.

        Returns:
            The ids whose status changed, ascending.
        """
        if status not in ("delivered", "read"):
            raise ValueError(f"status must be delivered or read, got {status!r}.")
        if ids is None and up_to is None:
            return []
        lower = [name for name, rank in _RANK.items() if rank < _RANK[status]]
        now = db.utcnow()
        async with db.write_session(self._sessions) as session:
            pk, _, _ = await _conversation_key(session, conversation_id)
            conditions = [
                ChatMessage.conversation_pk == pk,
                ChatMessage.status.in_(lower),
                ChatMessage.sender.in_(list(senders)),
            ]
            if ids is not None:
                conditions.append(ChatMessage.id.in_([int(i) for i in ids][:500]))
            if up_to is not None:
                conditions.append(ChatMessage.id <= int(up_to))
            changed = (
                await session.execute(select(ChatMessage.id).where(*conditions))
            ).scalars().all()
            if not changed:
                return []
            values: Dict[str, Any] = {
                "status": status,
                # set once: the first time the message reached the other side
                "delivered_at": func.coalesce(
                    ChatMessage.delivered_at, literal(now, type_=db.UTCDateTime())
                ),
            }
            if status == "read":
                values["read_at"] = now
            await session.execute(
                update(ChatMessage)
                .where(ChatMessage.id.in_(changed))
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        marked = sorted(changed)
        await self._notify("messages.marked", {
            "conversation_id": conversation_id, "status": status, "ids": marked,
            "senders": tuple(senders)})
        return marked

    # ------------------------------------------------------------ bot turns

    async def do_claim_turn(
        self, message_id: int, owner: str, lease: float
    ) -> Optional[TurnClaim]:
        """Claim the bot turn of a customer message for ``owner`` (atomic, one winner).

        One ``UPDATE``: a customer message that is ``received`` or ``processing``, whose
        ``claimed_until`` is unset or past (no live claim, no retry back-off pending),
        becomes ``processing`` for ``owner`` until ``now + lease`` and counts one more
        attempt. Two processes (or a ``hello`` racing the start-up re-queue) claiming the
        same message: exactly one gets it (SQLite: the write lock; PostgreSQL: the row lock,
        and the second ``UPDATE`` re-checks its condition on the committed row).

        Returns:
            The claim, or None when the message is not claimable (done, failed, owned by a
            live claim, waiting for its back-off, not a customer message, or unknown).
        """
        now = db.utcnow()
        until = now + timedelta(seconds=float(lease))
        async with db.write_connection(self._engine) as connection:
            result = await connection.execute(_claim_sql(), {
                "message_id_": int(message_id), "now_": now, "owner_": owner[:64],
                "until_": until})
            if result.rowcount != 1:
                return None
            # one read (Core, no ORM objects) of the updated row, its conversation and
            # whether an earlier attempt stored replies already
            row = (await connection.execute(_claimed_sql(),
                                            {"message_id_": int(message_id)})).one()
            message, conversation = _split_claimed(row)
            return TurnClaim(
                message=MessageView.from_row(message, conversation.conversation_id),
                conversation=ConversationView.from_row(conversation),
                attempt=int(message.attempts),
                answered=bool(row.answered),
            )

    async def do_renew_claim(self, message_id: int, owner: str, lease: float) -> bool:
        """Extend ``owner``'s claim to ``now + lease`` (the turn is still running).

        Returns:
            False when ``owner`` no longer holds the claim.
        """
        until = db.utcnow() + timedelta(seconds=float(lease))
        return await self._update_claimed(message_id, owner, {"claimed_until": until})

    async def do_finish_turn(self, message_id: int, owner: str, status: str) -> bool:
        """End ``owner``'s claimed turn: ``read`` (the bot answered) or ``delivered``.

        Returns:
            False when ``owner`` did not hold the claim (nothing changed).
        """
        if status not in ("delivered", "read"):
            raise ValueError(f"status must be delivered or read, got {status!r}.")
        now = db.utcnow()
        values: Dict[str, Any] = {
            "status": status, "claimed_by": None, "claimed_until": None, "turn_error": None,
            "delivered_at": now,  # kept when set: see _update_claimed_sql
        }
        if status == "read":
            values["read_at"] = now
        return await self._update_claimed(message_id, owner, values)

    async def do_release_turn(
        self, message_id: int, owner: str, retry_at: Optional[datetime] = None,
        error: Optional[str] = None,
    ) -> bool:
        """Give a claimed turn back: ``received`` again, claimable from ``retry_at`` on
        (None: at once), with the last attempt's ``error``.

        Returns:
            False when ``owner`` did not hold the claim.
        """
        values: Dict[str, Any] = {"status": "received", "claimed_by": None,
                                  "claimed_until": retry_at}
        if error is not None:
            values["turn_error"] = error[:MAX_TURN_ERROR]
        return await self._update_claimed(message_id, owner, values)

    async def _update_claimed(self, message_id: int, owner: str, values: Dict[str, Any]) -> bool:
        """Set ``values`` on a turn ``owner`` still holds (``processing``); False otherwise."""
        statement = _update_claimed_sql(tuple(sorted(values)))
        async with db.write_connection(self._engine) as connection:
            result = await connection.execute(statement, {
                "message_id_": int(message_id), "owner_": owner[:64],
                **{f"{name}_": value for name, value in values.items()}})
            return result.rowcount == 1

    async def do_release_claims(self, owner: str) -> int:
        """Give back every turn ``owner`` still holds (a process shutting down).

        Returns:
            How many were released (claimable at once by the next process).
        """
        m = _MESSAGES.c
        async with db.write_session(self._sessions) as session:
            result = await session.execute(
                update(_MESSAGES)
                .where(m.claimed_by == owner[:64], m.status == "processing")
                .values(status="received", claimed_by=None, claimed_until=None)
                .execution_options(synchronize_session=False)
            )
            return int(result.rowcount or 0)

    async def do_fail_turn(
        self, message_id: int, owner: str, error: str, notice: str
    ) -> Optional[MessageView]:
        """Mark ``owner``'s claimed turn ``failed`` and store the system ``notice`` for it.

        One transaction: the message's status and ``turn_error``, a system message
        (``reply_to`` the customer message) that the customer and agents see in the
        conversation, and an audit row ``message.turn_failed``.

        Returns:
            The stored notice, or None when ``owner`` did not hold the claim.
        """
        now = db.utcnow()
        m = _MESSAGES.c
        async with db.write_session(self._sessions) as session:
            result = await session.execute(
                update(_MESSAGES)
                .where(m.id == int(message_id), m.claimed_by == owner[:64],
                       m.status == "processing")
                .values(status="failed", claimed_by=None, claimed_until=None,
                        turn_error=(error or "failed")[:MAX_TURN_ERROR])
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:
                return None
            row = (await session.execute(
                select(_MESSAGES.c.conversation_pk, _MESSAGES.c.attempts)
                .where(m.id == int(message_id))
            )).first()
            conversation = (await session.execute(
                select(_CONVERSATIONS.c.conversation_id, _CONVERSATIONS.c.session)
                .where(_CONVERSATIONS.c.id == row[0])
            )).first()
            notice_id = await insert_message(
                session, conversation_pk=row[0], session_no=conversation[1], sender="system",
                text=notice, now=now, reply_to=int(message_id))
            await stage_audit(
                session, at=now, actor="bot", action="message.turn_failed",
                object_type="conversation", object_id=conversation[0],
                data={"message_id": int(message_id), "attempts": int(row[1]),
                      "error": (error or "failed")[:MAX_TURN_ERROR]})
            view = MessageView(
                id=notice_id, conversation_id=conversation[0],
                session=conversation[1], client_id=None, sender="system", sender_name=None,
                text=notice, payload=None, buttons=[], extra={}, status="sent",
                created_at=now, delivered_at=None, read_at=None,
            )
        # agents see the notice in the conversation, like a customer message
        await self._notify("message.stored", {"message": view, "customer_side": True})
        return view

    async def pending_turns(
        self, conversation_id: Optional[str] = None, limit: int = 100,
        claimable_only: bool = True,
    ) -> List[Tuple[MessageView, ConversationView]]:
        """Customer messages whose bot turn has not finished, oldest first.

        Args:
            conversation_id: Only this conversation's (None: every conversation's).
            limit: At most this many.
            claimable_only: Only those :meth:`do_claim_turn` would claim now.

        Returns:
            ``(message, conversation)`` pairs.
        """
        now = db.utcnow()
        conditions = [ChatMessage.sender == "customer", ChatMessage.status.in_(TURN_PENDING)]
        if claimable_only:
            conditions.append(or_(ChatMessage.claimed_until.is_(None),
                                  ChatMessage.claimed_until <= now))
        async with db.read_session(self._sessions) as session:
            query = (
                select(ChatMessage, Conversation)
                .join(Conversation, Conversation.id == ChatMessage.conversation_pk)
                .where(and_(*conditions))
            )
            if conversation_id is not None:
                query = query.where(Conversation.conversation_id == conversation_id)
            rows = (await session.execute(
                query.order_by(ChatMessage.id.asc()).limit(max(1, int(limit)))
            )).all()
            return [
                (MessageView.from_row(message, conversation.conversation_id),
                 ConversationView.from_row(conversation))
                for message, conversation in rows
            ]

    async def next_claimable_at(self) -> Optional[datetime]:
        """When the earliest unfinished turn that is not claimable now becomes claimable."""
        now = db.utcnow()
        async with db.read_session(self._sessions) as session:
            return (await session.execute(
                select(func.min(ChatMessage.claimed_until)).where(
                    ChatMessage.sender == "customer",
                    ChatMessage.status.in_(TURN_PENDING),
                    ChatMessage.claimed_until > now,
                )
            )).scalar()

    async def has_replies(self, message_id: int) -> bool:
        """Whether bot/system messages of this customer message's turn are stored."""
        async with db.read_session(self._sessions) as session:
            return bool((await session.execute(
                select(exists().where(_MESSAGES.c.reply_to == int(message_id)))
            )).scalar())

    async def history(
        self, conversation_id: str, before: Optional[int] = None, limit: int = 50
    ) -> Tuple[List[MessageView], bool]:
        """A page of messages older than ``before`` (all when None), oldest first.

        Returns:
            ``(messages, has_more)``; an unknown conversation has no messages.
        """
        limit = max(1, min(int(limit), 100))
        async with db.read_session(self._sessions) as session:
            conversation = await _conversation(session, conversation_id)
            if conversation is None:
                return [], False
            query = select(ChatMessage).where(ChatMessage.conversation_pk == conversation.id)
            if before is not None:
                query = query.where(ChatMessage.id < int(before))
            rows = (
                await session.execute(query.order_by(ChatMessage.id.desc()).limit(limit + 1))
            ).scalars().all()
            has_more = len(rows) > limit
            rows = list(reversed(rows[:limit]))
            return [MessageView.from_row(row, conversation_id) for row in rows], has_more

    async def messages_after(
        self, conversation_id: str, after: int, limit: int = 500
    ) -> List[MessageView]:
        """Messages with an id greater than ``after``, oldest first (at most ``limit``)."""
        async with db.read_session(self._sessions) as session:
            conversation = await _conversation(session, conversation_id)
            if conversation is None:
                return []
            rows = (
                await session.execute(
                    select(ChatMessage)
                    .where(ChatMessage.conversation_pk == conversation.id)
                    .where(ChatMessage.id > int(after))
                    .order_by(ChatMessage.id.asc())
                    .limit(limit)
                )
            ).scalars().all()
            return [MessageView.from_row(row, conversation_id) for row in rows]

    async def offered_payloads(self, conversation_id: str) -> List[str]:
        """The quick-reply payloads of the bot's latest message in the conversation.

        The widget channel accepts a customer's ``payload`` only if it is one of these
        (the buttons the bot offered last; an older message's buttons no longer count).

        Returns:
            The payloads, in button order; empty when the bot's latest message has no
            buttons, or the conversation has no bot message (or is unknown).
        """
        async with db.read_session(self._sessions) as session:
            row = (
                await session.execute(
                    select(_MESSAGES.c.buttons)
                    .select_from(
                        _MESSAGES.join(
                            _CONVERSATIONS, _CONVERSATIONS.c.id == _MESSAGES.c.conversation_pk
                        )
                    )
                    .where(_CONVERSATIONS.c.conversation_id == conversation_id)
                    .where(_MESSAGES.c.sender == "bot")
                    .order_by(_MESSAGES.c.id.desc())
                    .limit(1)
                )
            ).first()
        buttons = (row[0] if row is not None else None) or []
        return [
            button["payload"]
            for button in buttons
            if isinstance(button, Mapping) and isinstance(button.get("payload"), str)
        ]

    async def count_messages(self, conversation_id: str) -> int:
        """How many messages the conversation has (0 when unknown)."""
        async with db.read_session(self._sessions) as session:
            conversation = await _conversation(session, conversation_id)
            if conversation is None:
                return 0
            return int(
                (
                    await session.execute(
                        select(func.count(ChatMessage.id)).where(
                            ChatMessage.conversation_pk == conversation.id
                        )
                    )
                ).scalar_one()
            )


_MESSAGES = ChatMessage.__table__
_CONVERSATIONS = Conversation.__table__


# The statements of a bot turn are built once and run with parameters: building one
# (and its cache key) per call cost as much CPU as executing it (issue 14).
@functools.lru_cache(maxsize=1)
def _claim_sql() -> Any:
    """Claim a pending customer message (see :meth:`ChatStore.do_claim_turn`)."""
    m = _MESSAGES.c
    return (
        update(_MESSAGES)
        .where(
            m.id == bindparam("message_id_"),
            m.sender == "customer",
            m.status.in_(TURN_PENDING),
            or_(m.claimed_until.is_(None),
                m.claimed_until <= bindparam("now_", type_=m.claimed_until.type)),
        )
        .values(status="processing", attempts=m.attempts + 1,
                claimed_by=bindparam("owner_", type_=m.claimed_by.type),
                claimed_until=bindparam("until_", type_=m.claimed_until.type))
    )


@functools.lru_cache(maxsize=16)
def _update_claimed_sql(columns: Tuple[str, ...]) -> Any:
    """Set ``columns`` (parameters ``<name>_``) on a message ``:owner_`` holds.

    ``delivered_at`` keeps an earlier value (``COALESCE``).
    """
    m = _MESSAGES.c
    values: Dict[str, Any] = {}
    for name in columns:
        param = bindparam(f"{name}_", type_=m[name].type)
        values[name] = func.coalesce(m.delivered_at, param) if name == "delivered_at" else param
    return (
        update(_MESSAGES)
        .where(m.id == bindparam("message_id_"), m.claimed_by == bindparam("owner_"),
               m.status == "processing")
        .values(values)
    )


@functools.lru_cache(maxsize=1)
def _claimed_sql() -> Any:
    """The claimed message's columns (``m_*``), its conversation's (``c_*``), ``answered``."""
    m, c = _MESSAGES.c, _CONVERSATIONS.c
    message_id = bindparam("message_id_")
    reply = _MESSAGES.alias("reply")  # not correlated with the claimed row's table
    replies = select(reply.c.id).where(reply.c.reply_to == message_id)
    return (
        select(*[column.label(f"m_{column.name}") for column in _MESSAGES.c],
               *[column.label(f"c_{column.name}") for column in _CONVERSATIONS.c],
               exists(replies).label("answered"))
        .select_from(_MESSAGES.join(_CONVERSATIONS, c.id == m.conversation_pk))
        .where(m.id == message_id)
    )


def _split_claimed(row: Any) -> Tuple[SimpleNamespace, SimpleNamespace]:
    """The message and the conversation of a :func:`_claimed_sql` row, as attribute bags."""
    values = row._mapping
    message = SimpleNamespace(**{c.name: values[f"m_{c.name}"] for c in _MESSAGES.c})
    conversation = SimpleNamespace(**{c.name: values[f"c_{c.name}"] for c in _CONVERSATIONS.c})
    return message, conversation


@functools.lru_cache(maxsize=1)
def _conversation_key_sql() -> Any:
    c = _CONVERSATIONS.c
    return (select(c.id, c.session, c.state)
            .where(c.conversation_id == bindparam("conversation_id_")))


async def _conversation_key(session: Any, conversation_id: str) -> Tuple[int, int, str]:
    """``(primary key, current session number, state)`` of a conversation (Core, cheap)."""
    row = (await session.execute(_conversation_key_sql(),
                                 {"conversation_id_": conversation_id})).first()
    if row is None:
        raise LookupError(f"No conversation {conversation_id}.")
    return row[0], row[1], row[2]


async def _conversation(session: Any, conversation_id: str) -> Optional[Conversation]:
    return (
        await session.execute(
            select(Conversation).where(Conversation.conversation_id == conversation_id)
        )
    ).scalar_one_or_none()


async def _require_conversation(session: Any, conversation_id: str) -> Conversation:
    row = await _conversation(session, conversation_id)
    if row is None:
        raise LookupError(f"No conversation {conversation_id}.")
    return row


async def _by_client_id(session: Any, conversation_pk: int, client_id: str) -> Optional[ChatMessage]:
    return (
        await session.execute(
            select(ChatMessage).where(
                ChatMessage.conversation_pk == conversation_pk,
                ChatMessage.client_id == client_id,
            )
        )
    ).scalar_one_or_none()
