"""The chat store on SQLite and PostgreSQL: messages stored once, status only moves forward."""
from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

import pytest
from sqlalchemy import select

from bot.support.chat import ChatStore, clean_buttons, clean_context
from bot.support.models import AuditLog, ChatMessage

CONV = "widget:cust-anna"


@pytest.fixture
async def chat(db_url: str) -> AsyncIterator[ChatStore]:
    store = ChatStore.from_url(db_url)
    await store.create_schema()
    try:
        yield store
    finally:
        await store.dispose()


async def _audit(chat: ChatStore) -> list:
    async with chat._sessions() as session:
        rows = (await session.execute(select(AuditLog).order_by(AuditLog.id))).scalars().all()
        return [(r.actor, r.action, r.object_id, r.data) for r in rows]


async def _statuses(chat: ChatStore) -> list:
    async with chat._sessions() as session:
        rows = (await session.execute(select(ChatMessage).order_by(ChatMessage.id))).scalars()
        return [(r.sender, r.text, r.status, r.delivered_at is not None, r.read_at is not None)
                for r in rows]


async def test_open_conversation_creates_once_with_audit_and_updates_profile(chat: ChatStore) -> None:
    events: list = []

    async def listener(event: str, payload: dict) -> None:
        events.append((event, payload["conversation"].conversation_id))

    chat.add_listener(listener)
    first = await chat.do_open_conversation(
        CONV, "cust-anna", "widget", profile={"name": "Anna"}, context={"screen": "home"}
    )
    again = await chat.do_open_conversation(
        CONV, "cust-anna", "widget", profile={"name": "Anna S."}, context=None
    )
    assert first.id == again.id and first.session == again.session == 1
    assert again.profile == {"name": "Anna S."} and again.context == {"screen": "home"}
    assert await _audit(chat) == [
        ("customer:cust-anna", "conversation.created", CONV,
         {"channel": "widget", "customer_id": "cust-anna"}),
    ]
    assert events == [("conversation.created", CONV)]


async def test_customer_message_is_stored_once_per_client_id(chat: ChatStore) -> None:
    await chat.do_open_conversation(CONV, "cust-anna", "widget")
    first = await chat.do_store_customer_message(CONV, "c-1", "where is my parcel?")
    resent = await chat.do_store_customer_message(CONV, "c-1", "where is my parcel?")
    assert not first.duplicate and resent.duplicate
    assert resent.message == first.message
    assert first.message.status == "received" and first.message.sender == "customer"
    assert await chat.count_messages(CONV) == 1
    assert (await chat.find_customer_message(CONV, "c-1")) == first.message
    assert await chat.find_customer_message(CONV, "c-2") is None


async def test_concurrent_resends_store_one_row(chat: ChatStore) -> None:
    await chat.do_open_conversation(CONV, "cust-anna", "widget")
    results = await asyncio.gather(
        *(chat.do_store_customer_message(CONV, "same", "hello") for _ in range(5))
    )
    assert sum(not r.duplicate for r in results) == 1
    assert len({r.message.id for r in results}) == 1
    assert await chat.count_messages(CONV) == 1


async def test_status_moves_forward_only(chat: ChatStore) -> None:
    await chat.do_open_conversation(CONV, "cust-anna", "widget")
    question = (await chat.do_store_customer_message(CONV, "c-1", "hi")).message
    reply = await chat.do_store_outgoing(
        CONV, "bot", "Hello!", buttons=[{"title": "Track", "payload": "/track_order"}]
    )
    assert reply.status == "sent" and reply.buttons == [{"title": "Track", "payload": "/track_order"}]
    assert await chat.do_mark(CONV, "read", ids=[question.id]) == [question.id]
    # read never goes back to delivered, nothing changes twice
    assert await chat.do_mark(CONV, "delivered", ids=[question.id]) == []
    assert await chat.do_mark(CONV, "read", ids=[question.id]) == []
    # outgoing only: the customer's own message is not touched by up_to
    assert await chat.do_mark(CONV, "delivered", up_to=reply.id, senders=("bot",)) == [reply.id]
    assert await _statuses(chat) == [
        ("customer", "hi", "read", True, True),
        ("bot", "Hello!", "delivered", True, False),
    ]
    with pytest.raises(ValueError):
        await chat.do_mark(CONV, "sent", ids=[reply.id])
    with pytest.raises(LookupError):
        await chat.do_mark("widget:nobody", "read", ids=[1])


async def test_history_pages_and_messages_after(chat: ChatStore) -> None:
    await chat.do_open_conversation(CONV, "cust-anna", "widget")
    ids = []
    for n in range(7):
        ids.append((await chat.do_store_customer_message(CONV, f"c-{n}", f"m{n}")).message.id)
    page, more = await chat.history(CONV, None, 3)
    assert [m.text for m in page] == ["m4", "m5", "m6"] and more
    page, more = await chat.history(CONV, page[0].id, 3)
    assert [m.text for m in page] == ["m1", "m2", "m3"] and more
    page, more = await chat.history(CONV, page[0].id, 3)
    assert [m.text for m in page] == ["m0"] and not more
    assert [m.text for m in await chat.messages_after(CONV, ids[4])] == ["m5", "m6"]
    assert await chat.history("widget:nobody") == ([], False)


async def test_end_session_adds_notice_next_session_and_audit(chat: ChatStore) -> None:
    await chat.do_open_conversation(CONV, "cust-anna", "widget")
    await chat.do_store_customer_message(CONV, "c-1", "thanks")
    conversation, notice = await chat.do_end_session(CONV, "customer:cust-anna", "Chat ended")
    assert conversation.session == 2 and conversation.ended_at is not None
    assert (notice.sender, notice.text, notice.session) == ("system", "Chat ended", 1)
    later = (await chat.do_store_customer_message(CONV, "c-2", "hi again")).message
    assert later.session == 2
    assert (await chat.get_conversation(CONV)).ended_at is None
    assert (await _audit(chat))[-1] == (
        "customer:cust-anna", "conversation.session_ended", CONV, {"session": 1}
    )


async def test_context_is_cleaned_and_stored(chat: ChatStore) -> None:
    await chat.do_open_conversation(CONV, "cust-anna", "widget")
    updated = await chat.do_update_context(
        CONV, {"screen": "orders", "app_version": "5.2.0", "nested": {"x": 1}, "n": 3}
    )
    assert updated.context == {"screen": "orders", "app_version": "5.2.0", "n": 3}
    with pytest.raises(LookupError):
        await chat.do_update_context("widget:nobody", {})


def test_clean_context_and_buttons() -> None:
    many = {f"k{i}": i for i in range(30)}
    assert len(clean_context(many)) == 20
    assert clean_context({"s": "x" * 500})["s"] == "x" * 200
    assert clean_context({"nan": float("nan"), "ok": True}) == {"ok": True}
    with pytest.raises(ValueError):
        clean_context(["screen"])
    assert clean_buttons([{"title": " Yes ", "payload": "/affirm"}, {"payload": "/x"}, "junk"]) == [
        {"title": "Yes", "payload": "/affirm"}
    ]


async def test_outgoing_sender_is_checked(chat: ChatStore) -> None:
    await chat.do_open_conversation(CONV, "cust-anna", "widget")
    with pytest.raises(ValueError):
        await chat.do_store_outgoing(CONV, "customer", "spoofed")
    with pytest.raises(LookupError):
        await chat.do_store_outgoing("widget:nobody", "bot", "hi")


# ------------------------------------------------------------ bot turn claims (issue 13)


async def _customer_message(chat: ChatStore, client_id: str = "c-1", text: str = "hi") -> Any:
    await chat.do_open_conversation(CONV, "cust-anna", "widget")
    return (await chat.do_store_customer_message(CONV, client_id, text)).message


async def test_a_turn_is_claimed_once_and_finished_once(chat: ChatStore) -> None:
    message = await _customer_message(chat)
    assert [m.id for m, _ in await chat.pending_turns()] == [message.id]
    claim = await chat.do_claim_turn(message.id, "p1", lease=30)
    assert claim is not None and claim.attempt == 1 and not claim.answered
    assert claim.message.status == "processing" and claim.conversation.conversation_id == CONV
    # held: nobody else (another process, a hello re-queue, the same process) gets it
    assert await chat.do_claim_turn(message.id, "p2", lease=30) is None
    assert await chat.do_claim_turn(message.id, "p1", lease=30) is None
    assert await chat.pending_turns() == []  # not claimable now
    assert len(await chat.pending_turns(claimable_only=False)) == 1
    assert await chat.do_renew_claim(message.id, "p1", lease=30)
    assert not await chat.do_renew_claim(message.id, "p2", lease=30)
    assert not await chat.do_finish_turn(message.id, "p2", "read")  # not p2's
    assert await chat.do_finish_turn(message.id, "p1", "read")
    assert await chat.do_claim_turn(message.id, "p2", lease=30) is None  # done: never again
    assert not await chat.do_finish_turn(message.id, "p1", "read")
    assert await _statuses(chat) == [("customer", "hi", "read", True, True)]
    assert await chat.pending_turns(claimable_only=False) == []


async def test_concurrent_claims_have_exactly_one_winner(db_url: str) -> None:
    """Two processes (two engines) and several tasks race for the same turns."""
    stores = [ChatStore.from_url(db_url) for _ in range(2)]
    await stores[0].create_schema()
    try:
        messages = [await _customer_message(stores[0], f"c-{i}", f"m{i}") for i in range(5)]
        attempts = [
            store.do_claim_turn(message.id, f"p{n}-{k}", lease=30)
            for message in messages for n, store in enumerate(stores) for k in range(3)
        ]
        claims = [c for c in await asyncio.gather(*attempts) if c is not None]
        assert sorted(c.message.id for c in claims) == [m.id for m in messages]
        assert all(c.attempt == 1 for c in claims)
    finally:
        for store in stores:
            await store.dispose()


async def test_an_expired_lease_is_claimed_again_and_its_replies_count(chat: ChatStore) -> None:
    message = await _customer_message(chat)
    first = await chat.do_claim_turn(message.id, "dead-process", lease=0.05)
    assert first is not None
    await asyncio.sleep(0.1)  # the process died: its lease runs out
    assert [m.id for m, _ in await chat.pending_turns(CONV)] == [message.id]
    again = await chat.do_claim_turn(message.id, "p2", lease=30)
    assert again is not None and again.attempt == 2 and not again.answered
    # the dead process's late finish changes nothing
    assert not await chat.do_finish_turn(message.id, "dead-process", "read")
    # p2 dies after the bot's reply was stored: the next claim knows the turn ran
    await chat.do_store_outgoing(CONV, "bot", "Hello!", reply_to=message.id)
    await chat.do_release_claims("p2")  # (or its lease ends)
    third = await chat.do_claim_turn(message.id, "p3", lease=30)
    assert third is not None and third.answered and third.attempt == 3
    assert await chat.has_replies(message.id)


async def test_release_waits_for_the_back_off_then_fail_stores_a_notice(chat: ChatStore) -> None:
    from bot import db
    from datetime import timedelta

    events: list = []

    async def listener(event: str, payload: dict) -> None:
        events.append((event, payload["message"].sender))

    message = await _customer_message(chat)
    chat.add_listener(listener)
    claim = await chat.do_claim_turn(message.id, "p1", lease=30)
    assert claim is not None
    assert await chat.do_release_turn(message.id, "p1", retry_at=db.utcnow() + timedelta(
        seconds=0.2), error="RuntimeError: action server down")
    assert await chat.do_claim_turn(message.id, "p1", lease=30) is None  # backing off
    assert await chat.next_claimable_at() is not None
    await asyncio.sleep(0.25)
    claim = await chat.do_claim_turn(message.id, "p1", lease=30)
    assert claim is not None and claim.attempt == 2
    assert await chat.do_fail_turn(message.id, "p2", "x", "notice") is None  # not p2's
    notice = await chat.do_fail_turn(message.id, "p1", "RuntimeError: still down", "Sorry!")
    assert notice is not None and notice.sender == "system" and notice.text == "Sorry!"
    assert await chat.do_claim_turn(message.id, "p1", lease=30) is None  # failed: final
    assert await chat.pending_turns(claimable_only=False) == []
    assert [(s, t, st) for s, t, st, _, _ in await _statuses(chat)] == [
        ("customer", "hi", "failed"), ("system", "Sorry!", "sent")]
    async with chat._sessions() as session:
        row = (await session.execute(
            select(ChatMessage).where(ChatMessage.id == message.id))).scalar_one()
        assert row.turn_error == "RuntimeError: still down" and row.attempts == 2
        assert row.claimed_by is None and row.claimed_until is None
    audit = await _audit(chat)
    assert audit[-1][1] == "message.turn_failed" and audit[-1][3]["message_id"] == message.id
    assert events == [("message.stored", "system")]
    # delivery marks never touch a failed message
    assert await chat.do_mark(CONV, "read", ids=[message.id]) == []


async def test_release_claims_hands_back_only_the_owners_turns(chat: ChatStore) -> None:
    mine = await _customer_message(chat, "c-1")
    theirs = await _customer_message(chat, "c-2")
    assert await chat.do_claim_turn(mine.id, "me", lease=300)
    assert await chat.do_claim_turn(theirs.id, "them", lease=300)
    assert await chat.do_release_claims("me") == 1
    assert [m.id for m, _ in await chat.pending_turns()] == [mine.id]
    assert await chat.do_claim_turn(mine.id, "next-start", lease=30) is not None


async def test_only_customer_messages_are_claimed(chat: ChatStore) -> None:
    await chat.do_open_conversation(CONV, "cust-anna", "widget")
    bot = await chat.do_store_outgoing(CONV, "bot", "Hello")
    assert await chat.do_claim_turn(bot.id, "p1", lease=30) is None
    assert await chat.do_claim_turn(999999, "p1", lease=30) is None
