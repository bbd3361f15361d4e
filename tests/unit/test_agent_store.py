"""The agent side on SQLite and PostgreSQL: accounts, sessions, the ticket state machine,
the claim race, ratings and metrics."""
from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, AsyncIterator, Tuple

import pytest
from sqlalchemy import select

from bot import db
from bot.support.agents import AgentStore, AuthFailed, Forbidden, RatingRefused
from bot.support.chat import ChatStore
from bot.support.models import AuditLog, Conversation, Rating, Ticket
from bot.support.ops import StateError, SupportStore

CONV = "widget:cust-anna"
PASSWORD = "correct horse battery"


@pytest.fixture
async def stores(db_url: str) -> AsyncIterator[Tuple[AgentStore, SupportStore, ChatStore]]:
    agents = AgentStore.from_url(db_url)
    await agents.create_schema()
    support, chat = SupportStore.from_url(db_url), ChatStore.from_url(db_url)
    try:
        yield agents, support, chat
    finally:
        for store in (agents, support, chat):
            await store.dispose()


async def _queued(support: SupportStore, chat: ChatStore, conversation: str = CONV) -> Any:
    await chat.do_open_conversation(conversation, "cust-anna", "widget", profile={"name": "Anna"})
    await chat.do_store_customer_message(conversation, "c1", "I want a person")
    ticket, _ = await support.do_handoff(
        conversation, summary="wants a person", category="CONTACT", priority="high",
        reason="human_requested", details={"triage": {"category": "CONTACT", "confidence": 0.97},
                                            "slots": {"order_number": "104233"},
                                            "context": {"screen": "orders"}},
        customer_id="cust-anna")
    return ticket


async def _rows(store: AgentStore, model: Any) -> list:
    async with db.read_session(store._sessions) as session:
        return (await session.execute(select(model).order_by(model.id))).scalars().all()


async def test_login_sessions_expire_and_are_revoked(stores: Any) -> None:
    agents, _, _ = stores
    maria = await agents.do_create_agent("maria", "Maria", PASSWORD)
    with pytest.raises(ValueError, match="taken"):
        await agents.do_create_agent("Maria", "Other", PASSWORD)
    with pytest.raises(ValueError, match="10 characters"):
        await agents.do_create_agent("bob", "Bob", "short")
    for username, password in (("maria", "wrong password!"), ("nobody", PASSWORD)):
        with pytest.raises(AuthFailed) as info:
            await agents.do_login(username, password)
        assert info.value.code == "bad_credentials"
    token, who, expires = await agents.do_login("MARIA", PASSWORD)
    assert who.id == maria.id and (await agents.authenticate(token)).username == "maria"
    stored = (await _rows(agents, __import__("bot.support.models", fromlist=["AgentSession"])
                          .AgentSession))[0]
    assert stored.token_hash != token and len(stored.token_hash) == 64
    await agents.do_logout(token)
    with pytest.raises(AuthFailed) as info:
        await agents.authenticate(token)
    assert info.value.code == "invalid"
    short, _, _ = await agents.do_login("maria", PASSWORD, ttl_seconds=-1)
    with pytest.raises(AuthFailed) as info:
        await agents.authenticate(short)
    assert info.value.code == "expired"
    with pytest.raises(AuthFailed):
        await agents.authenticate(None)


async def test_handoff_claim_reply_resolve_rate(stores: Any) -> None:
    agents, support, chat = stores
    maria = await agents.do_create_agent("maria", "Maria", PASSWORD)
    ticket = await _queued(support, chat)
    assert (ticket.status, ticket.queued_at is not None) == ("queued", True)
    assert (await chat.get_conversation(CONV)) is not None
    (conversation,) = await _rows(agents, Conversation)
    assert (conversation.state, conversation.ticket_id) == ("queued", ticket.id)

    inbox = await agents.inbox(maria)
    assert [(i.ticket.reference, i.state, i.customer_name, i.unread) for i in inbox] == [
        (ticket.reference, "queued", "Anna", 1)]
    claimed = await agents.do_claim(ticket.reference, maria)
    assert (claimed.status, claimed.assignee_id) == ("assigned", maria.id)
    detail = await agents.ticket_detail(maria, ticket.reference)
    assert detail.triage == {"category": "CONTACT", "confidence": 0.97}
    assert detail.slots == {"order_number": "104233"} and detail.context == {"screen": "orders"}
    assert [m.text for m in detail.messages] == ["I want a person"]

    reply = await agents.do_agent_message(ticket.reference, maria, "Hi Anna, I'm on it.", "a-1")
    assert (reply.sender, reply.sender_name, reply.status) == ("agent", "Maria", "sent")
    again = await agents.do_agent_message(ticket.reference, maria, "Hi Anna, I'm on it.", "a-1")
    assert again.id == reply.id  # resent: stored once
    resolved = await agents.do_resolve(ticket.reference, maria, note="refund issued")
    assert resolved.status == "resolved" and resolved.first_response_at is not None
    (conversation,) = await _rows(agents, Conversation)
    assert conversation.state == "resolved"
    rating = await agents.do_rate(CONV, conversation.session, 5, "  quick and kind ")
    assert (rating.score, rating.comment, rating.ticket_id) == (5, "quick and kind", ticket.id)
    with pytest.raises(ValueError, match="already rated"):
        await agents.do_rate(CONV, conversation.session, 4)
    with pytest.raises(ValueError):
        await agents.do_rate(CONV, conversation.session + 1, 6)
    (conversation,) = await _rows(agents, Conversation)
    assert conversation.state == "bot"
    actions = [a.action for a in await _rows(agents, AuditLog)]
    assert actions[-5:] == ["handoff.recorded", "ticket.claimed", "ticket.first_response",
                            "ticket.resolved", "rating.created"]
    assert {"ticket.claimed", "ticket.first_response", "ticket.resolved",
            "rating.created"} <= set(actions)

    now = db.utcnow()
    figures = await agents.metrics(now - timedelta(days=1), now + timedelta(minutes=1))
    assert figures["resolution"]["count"] == 1 and figures["first_response"]["count"] == 1
    assert figures["csat"] == {"count": 1, "average": 5.0,
                               "distribution": {"1": 0, "2": 0, "3": 0, "4": 0, "5": 1}}
    assert (figures["conversations"], figures["handoffs"], figures["self_service_rate"]) == (
        1, 1, 0.0)
    assert list(figures["by_category"]) == ["CONTACT"]


async def test_two_agents_claiming_one_ticket_one_wins(stores: Any) -> None:
    agents, support, chat = stores
    maria = await agents.do_create_agent("maria", "Maria", PASSWORD)
    tom = await agents.do_create_agent("tom", "Tom", PASSWORD)
    ticket = await _queued(support, chat)
    results = await asyncio.gather(agents.do_claim(ticket.reference, maria),
                                   agents.do_claim(ticket.reference, tom),
                                   return_exceptions=True)
    wins = [r for r in results if not isinstance(r, Exception)]
    losses = [r for r in results if isinstance(r, StateError)]
    assert len(wins) == 1 and len(losses) == 1
    winner = "Maria" if wins[0].assignee_id == maria.id else "Tom"
    assert f"already claimed by {winner}" in str(losses[0])
    (row,) = await _rows(agents, Ticket)
    assert row.assignee_id == wins[0].assignee_id
    claims = [a for a in await _rows(agents, AuditLog) if a.action == "ticket.claimed"]
    assert len(claims) == 1


async def test_roles_limit_what_an_agent_sees_and_does(stores: Any) -> None:
    agents, support, chat = stores
    maria = await agents.do_create_agent("maria", "Maria", PASSWORD)
    tom = await agents.do_create_agent("tom", "Tom", PASSWORD)
    boss = await agents.do_create_agent("boss", "Boss", PASSWORD, role="admin")
    ticket = await _queued(support, chat)
    await agents.do_claim(ticket.reference, maria)
    assert await agents.inbox(tom) == []  # assigned to Maria: not in Tom's inbox
    assert [i.ticket.reference for i in await agents.inbox(boss)] == [ticket.reference]
    with pytest.raises(Forbidden):
        await agents.ticket_detail(tom, ticket.reference)
    for action in (agents.do_agent_message(ticket.reference, tom, "hi"),
                   agents.do_resolve(ticket.reference, tom),
                   agents.do_transfer(ticket.reference, tom, tom.id)):
        with pytest.raises(Forbidden):
            await action
    moved = await agents.do_transfer(ticket.reference, maria, tom.id)
    assert moved.assignee_id == tom.id
    assert [i.ticket.reference for i in await agents.inbox(tom)] == [ticket.reference]
    await agents.do_resolve(ticket.reference, boss)  # admins may act on any ticket
    with pytest.raises(StateError):
        await agents.do_agent_message(ticket.reference, tom, "late")


# ------------------------------------------------------------------- ratings


async def _refused(agents: AgentStore, code: str, session_no: int, score: int = 5) -> None:
    with pytest.raises(RatingRefused) as info:
        await agents.do_rate(CONV, session_no, score)
    assert info.value.code == code


async def test_a_bot_only_session_cannot_be_rated(stores: Any) -> None:
    agents, _, chat = stores
    await chat.do_open_conversation(CONV, "cust-anna", "widget", profile={"name": "Anna"})
    await chat.do_store_customer_message(CONV, "c1", "where is my order")
    await _refused(agents, "not_ratable", 1)
    await chat.do_end_session(CONV, "customer:cust-anna")  # ended, but the bot handled it
    await _refused(agents, "not_ratable", 1)
    await _refused(agents, "not_ratable", 2)
    assert await _rows(agents, Rating) == []
    with pytest.raises(LookupError):
        await agents.do_rate("widget:nobody", 1, 5)


async def test_an_unfinished_or_unclaimed_chat_cannot_be_rated(stores: Any) -> None:
    agents, support, chat = stores
    maria = await agents.do_create_agent("maria", "Maria", PASSWORD)
    ticket = await _queued(support, chat)
    await _refused(agents, "not_ratable", 1)  # queued: nobody has it yet
    await agents.do_claim(ticket.reference, maria)
    await _refused(agents, "not_ratable", 1)  # assigned: the person is still on it
    assert await _rows(agents, Rating) == []


async def test_a_queued_chat_the_customer_left_cannot_be_rated(stores: Any) -> None:
    agents, support, chat = stores
    await _queued(support, chat)
    await chat.do_end_session(CONV, "customer:cust-anna")
    await _refused(agents, "not_ratable", 1)
    assert await _rows(agents, Rating) == []


async def test_an_ended_session_a_person_handled_is_rated_once_per_ticket(stores: Any) -> None:
    agents, support, chat = stores
    maria = await agents.do_create_agent("maria", "Maria", PASSWORD)
    ticket = await _queued(support, chat)
    await agents.do_claim(ticket.reference, maria)
    await agents.do_agent_message(ticket.reference, maria, "Hi Anna")
    await chat.do_end_session(CONV, "customer:cust-anna")  # the customer leaves: session 2
    rating = await agents.do_rate(CONV, 1, 4, "took a while")
    assert (rating.session, rating.ticket_id) == (1, ticket.id)
    await _refused(agents, "already_rated", 1)
    # Maria resolves the ticket later: the conversation is "resolved" in session 2, but the
    # ticket was rated already
    await agents.do_resolve(ticket.reference, maria)
    await _refused(agents, "already_rated", 2)
    assert [(r.session, r.score) for r in await _rows(agents, Rating)] == [(1, 4)]
    actions = [a.action for a in await _rows(agents, AuditLog)]
    assert actions.count("rating.created") == 1


async def test_a_chat_resolved_in_twilio_can_be_rated(stores: Any) -> None:
    """Twilio agents have no console account: the ticket is claimed by actor twilio."""
    from bot.twilio.store import TwilioStore

    agents, support, chat = stores
    ticket = await _queued(support, chat)
    twilio = TwilioStore(agents.engine)
    sid = "CH" + "1" * 32
    link = await twilio.do_create_link(conversation_id=CONV, ticket_reference=ticket.reference,
                                       conversation_sid=sid, unique_name=CONV,
                                       customer_identity="cust-anna")
    assert await twilio.do_assign_to_twilio(ticket.reference, sid)
    await _refused(agents, "not_ratable", 1)  # the Twilio agent is still on it
    assert await twilio.do_resolve(link, "twilio:agent") is not None
    rating = await agents.do_rate(CONV, 1, 5)
    assert rating.ticket_id == ticket.id
    (conversation,) = await _rows(agents, Conversation)
    assert (conversation.state, conversation.ticket_id) == ("bot", None)


async def test_two_ratings_at_once_store_one(stores: Any) -> None:
    agents, support, chat = stores
    maria = await agents.do_create_agent("maria", "Maria", PASSWORD)
    ticket = await _queued(support, chat)
    await agents.do_claim(ticket.reference, maria)
    await agents.do_resolve(ticket.reference, maria)
    results = await asyncio.gather(*(agents.do_rate(CONV, 1, score) for score in (1, 5, 3)),
                                   return_exceptions=True)
    stored = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(stored) == 1 and len(refused) == 2
    assert all(isinstance(r, RatingRefused) and r.code == "already_rated" for r in refused)
    assert len(await _rows(agents, Rating)) == 1
