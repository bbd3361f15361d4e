"""One owner of ticket and conversation state (bot/support/lifecycle.py, issue 14 item 2).

The transition tables refuse what no flow does; the console and Twilio write replies and
resolutions through the same functions (same rows, same audit, same email); the live
events are published by the stores after their commit, exactly once, and never for a
transaction that rolled back; nothing outside the owner writes audit or chat rows or
publishes these topics by hand.
"""
from __future__ import annotations

import ast
import itertools
import pathlib
from typing import Any, AsyncIterator, Dict, List, Tuple

import pytest
from sqlalchemy import select

from bot import db
from bot.support import lifecycle
from bot.support.agents import AgentStore
from bot.support.chat import ChatStore
from bot.support.lifecycle import (
    CONVERSATION_TRANSITIONS, TICKET_TRANSITIONS, ConversationState, StateError, TicketStatus,
    check_conversation_move, check_ticket_move,
)
from bot.support.models import AuditLog, ChatMessage, Conversation, Ticket
from bot.support.ops import SupportStore

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONV = "widget:cust-life"
PASSWORD = "correct horse battery"

Published = List[Tuple[str, Dict[str, Any]]]


# ----------------------------------------------------------------- the tables


def test_every_ticket_move_is_allowed_or_refused_as_the_table_says() -> None:
    for old, new in itertools.product(TicketStatus, TicketStatus):
        if old is new and new is not TicketStatus.ASSIGNED:
            assert check_ticket_move(old.value, new.value) is False  # nothing to do
        elif new in TICKET_TRANSITIONS[old]:
            assert check_ticket_move(old.value, new.value) is True
        else:
            with pytest.raises(StateError, match=f"{old.value} cannot become {new.value}"):
                check_ticket_move(old.value, new.value)


def test_the_moves_no_flow_makes_are_refused() -> None:
    # a finished ticket is queued again before anyone can own it
    for finished in ("resolved", "closed"):
        with pytest.raises(StateError):
            check_ticket_move(finished, "assigned")
    with pytest.raises(StateError):
        check_ticket_move("closed", "resolved")
    assert check_ticket_move("assigned", "assigned") is True  # a transfer
    # nobody resolves or leaves a chat only the bot had
    for state in ("resolved", "closed"):
        with pytest.raises(StateError, match=f"bot cannot become {state}"):
            check_conversation_move("bot", state)
    with pytest.raises(StateError, match="Unknown"):
        check_ticket_move("open", "done")
    with pytest.raises(StateError, match="Unknown"):
        check_conversation_move("limbo", "bot")


def test_every_conversation_move_is_allowed_or_refused_as_the_table_says() -> None:
    for old, new in itertools.product(ConversationState, ConversationState):
        if old is new and new is not ConversationState.ASSIGNED:
            assert check_conversation_move(old.value, new.value) is False
        elif new in CONVERSATION_TRANSITIONS[old]:
            assert check_conversation_move(old.value, new.value) is True
        else:
            with pytest.raises(StateError):
                check_conversation_move(old.value, new.value)


def test_the_enums_are_the_columns_allowed_values() -> None:
    from bot.support.models import CONVERSATION_STATES, TICKET_STATUSES

    assert tuple(s.value for s in TicketStatus) == TICKET_STATUSES
    assert tuple(s.value for s in ConversationState) == CONVERSATION_STATES


# --------------------------------------------------- published after commit


@pytest.fixture
async def stores(tmp_path: pathlib.Path) -> AsyncIterator[Tuple[Any, ...]]:
    url = f"sqlite:///{tmp_path / 'support.db'}"
    agents = AgentStore.from_url(url)
    await agents.create_schema()
    support, chat = SupportStore(agents.engine), ChatStore(agents.engine)
    published: Published = []

    async def publish(topic: str, event: Dict[str, Any]) -> None:
        published.append((topic, event))

    for store in (agents, support, chat):
        store.set_publisher(publish)
    try:
        yield agents, support, chat, published
    finally:
        await agents.dispose()


async def _queued(support: SupportStore, chat: ChatStore) -> Any:
    await chat.do_open_conversation(CONV, "cust-life", "widget", profile={"name": "Lea"})
    ticket, _ = await support.do_handoff(
        CONV, summary="wants a person", category="CONTACT", priority="high",
        reason="human_requested", details={}, customer_id="cust-life")
    return ticket


async def test_the_console_flow_publishes_each_live_event_once_after_commit(stores: Any) -> None:
    agents, support, chat, published = stores
    await chat.do_open_conversation(CONV, "cust-life", "widget", profile={"name": "Lea"})
    stored = await chat.do_store_customer_message(CONV, "c1", "I want a person")
    assert published == [("customer.message",
                          {"conversation_id": CONV, "message": stored.message.to_wire()})]
    again = await chat.do_store_customer_message(CONV, "c1", "I want a person")
    assert again.duplicate and len(published) == 1  # a resend is not news

    ticket = await _queued(support, chat)
    assert len(published) == 1  # the handoff reaches consoles through the change feed
    maria = await agents.do_create_agent("maria", "Maria", PASSWORD)
    tom = await agents.do_create_agent("tom", "Tom", PASSWORD)
    del published[:]
    await agents.do_claim(ticket.reference, maria)
    reply = await agents.do_agent_message(ticket.reference, maria, "Hello, I'm Maria",
                                          client_id="a1")
    await agents.do_agent_message(ticket.reference, maria, "Hello, I'm Maria", client_id="a1")
    read = await chat.do_mark(CONV, "read", up_to=reply.id, senders=("customer",))
    seen = await chat.do_mark(CONV, "read", up_to=reply.id, senders=("bot", "agent", "system"))
    await chat.do_mark(CONV, "delivered", up_to=reply.id)  # nothing left to deliver
    await agents.do_transfer(ticket.reference, maria, tom.id)
    await agents.do_resolve(ticket.reference, tom)
    rating = await agents.do_rate(CONV, 1, 5, "quick", actor="customer:cust-life")
    ref = ticket.reference
    assert published == [
        ("ticket.claimed", {"conversation_id": CONV, "ticket": ref, "agent_name": "Maria"}),
        ("agent.message", {"conversation_id": CONV, "message": reply.to_wire()}),
        ("agent.read", {"conversation_id": CONV, "ids": read}),
        ("customer.read", {"conversation_id": CONV, "ids": seen}),
        ("ticket.transferred", {"conversation_id": CONV, "ticket": ref, "agent_name": "Tom"}),
        ("ticket.resolved", {"conversation_id": CONV, "ticket": ref, "agent_name": "Tom"}),
        ("rating.created", {"conversation_id": CONV, "score": 5, "comment": "quick",
                            "ticket_id": rating.ticket_id, "session": 1}),
    ]
    assert read == [stored.message.id] and seen == [reply.id]


async def test_nothing_is_published_for_a_transaction_that_rolled_back(
    stores: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    agents, support, chat, published = stores
    ticket = await _queued(support, chat)
    maria = await agents.do_create_agent("maria", "Maria", PASSWORD)
    await agents.do_claim(ticket.reference, maria)
    del published[:]

    async def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("the database went away mid-transaction")

    monkeypatch.setattr(lifecycle, "stage_audit", broken)
    with pytest.raises(RuntimeError):
        await agents.do_resolve(ticket.reference, maria)
    assert published == []
    async with db.read_session(agents._sessions) as session:
        row = (await session.execute(select(Ticket))).scalar_one()
        conversation = (await session.execute(select(Conversation))).scalar_one()
    assert (row.status, conversation.state) == ("assigned", "assigned")  # rolled back


async def test_an_illegal_move_leaves_the_rows_and_publishes_nothing(stores: Any) -> None:
    agents, support, chat, published = stores
    ticket = await _queued(support, chat)
    await support.do_update_ticket(ticket.reference, status="closed")
    del published[:]
    with pytest.raises(StateError, match="closed cannot become resolved"):
        await support.do_update_ticket(ticket.reference, status="resolved")
    async with db.read_session(agents._sessions) as session:
        assert (await session.execute(select(Ticket.status))).scalar_one() == "closed"
    assert published == []


# ------------------------------------------ console and Twilio: written once


async def test_a_twilio_reply_and_a_console_reply_write_the_same_rows(stores: Any) -> None:
    from bot.twilio.store import TwilioStore

    agents, support, chat, published = stores
    twilio = TwilioStore(agents.engine)
    twilio.set_publisher(chat._publish)
    ticket = await _queued(support, chat)
    link = await twilio.do_create_link(
        conversation_id=CONV, ticket_reference=ticket.reference,
        conversation_sid="CH" + "0" * 32, unique_name="u1", customer_identity="cust")
    assert await twilio.do_assign_to_twilio(ticket.reference, link.conversation_sid)
    del published[:]
    message, duplicate, first = await twilio.do_agent_message(link, "IM1", "Ana", "Hi there",
                                                              announce=True)
    again = await twilio.do_agent_message(link, "IM1", "Ana", "Hi there", announce=True)
    assert (duplicate, first, again[1]) == (False, True, True)
    ref = ticket.reference
    assert published == [
        ("ticket.claimed", {"conversation_id": CONV, "ticket": ref, "agent_name": "Ana"}),
        ("agent.message", {"conversation_id": CONV, "message": message.to_wire()}),
    ]
    resolved = await twilio.do_resolve(link, "twilio:Ana", agent_name="Ana")
    assert resolved is not None and resolved.status == "resolved"
    assert published[-1] == ("ticket.resolved",
                             {"conversation_id": CONV, "ticket": ref, "agent_name": "Ana"})
    async with db.read_session(agents._sessions) as session:
        audits = [(a.actor, a.action, a.data.get("via"))
                  for a in (await session.execute(select(AuditLog).where(
                      AuditLog.object_type == "ticket").order_by(AuditLog.id))).scalars()]
        row = (await session.execute(select(ChatMessage).where(
            ChatMessage.client_id == "tw:IM1"))).scalar_one()
        conversation = (await session.execute(select(Conversation))).scalar_one()
    assert audits[-3:] == [("twilio", "ticket.claimed", "twilio"),
                           ("twilio:Ana", "ticket.first_response", "twilio"),
                           ("twilio:Ana", "ticket.resolved", "twilio")]
    assert (row.sender, row.sender_name, row.author_id) == ("agent", "Ana", "twilio:Ana")
    assert conversation.state == "resolved"


# ------------------------------------------------------------ one owner, by code


def _calls(path: pathlib.Path) -> List[Tuple[str, int, str]]:
    """(file, line, what) for every AuditLog(...)/ChatMessage(...) construction, insert of
    a chat row, and bus publish of an owned topic in a module."""
    owned = {"ticket.claimed", "ticket.transferred", "ticket.resolved", "agent.message",
             "agent.read", "customer.message", "customer.read", "rating.created"}
    found = []
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        if name in ("AuditLog", "ChatMessage"):
            found.append((str(path.relative_to(ROOT)), node.lineno, name))
        if name == "publish" or name == "_publish":
            topic = node.args[0] if node.args else None
            if isinstance(topic, ast.Constant) and topic.value in owned:
                found.append((str(path.relative_to(ROOT)), node.lineno, topic.value))
        if name == "insert" and node.args and "MESSAGES" in ast.unparse(node.args[0]):
            found.append((str(path.relative_to(ROOT)), node.lineno, "insert chat_messages"))
    return found


def test_only_the_owner_writes_audit_and_chat_rows_and_publishes_their_events() -> None:
    offenders = [call for path in sorted((ROOT / "bot").rglob("*.py"))
                 if path.name != "lifecycle.py" and "migrations" not in path.parts
                 for call in _calls(path)]
    assert offenders == []
