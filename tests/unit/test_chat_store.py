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
