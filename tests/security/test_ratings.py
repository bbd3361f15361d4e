"""Ratings belong to one finished chat with a person, once (docs/agent-console.md, Ratings).

A verified widget customer (signed token, real WebSocket) against the real bot
(``embedded_bot``) tries to rate what must not be rated: a session only the bot handled,
a chat still queued when they left, a chat the agent is still on, the same chat twice.
Each refusal is an ``error`` frame with its code and no row in ``ratings``; the product's
path (agent claims, replies, resolves, the customer rates once) still works.
"""
from __future__ import annotations

import asyncio
import sqlite3
import uuid
from typing import Any, Dict, List, Tuple

import pytest

from tests.agent_console.conftest import Console, create_agent
from tests.widget.conftest import WidgetClient, new_user, token_for

pytestmark = pytest.mark.model

ASK_FOR_A_PERSON = "I want to talk to a real person"


def _db(bot: Any) -> sqlite3.Connection:
    return sqlite3.connect(bot.support_db_url.replace("sqlite:///", ""))


def ratings_of(bot: Any, conversation_id: str) -> List[Tuple[int, int, Any]]:
    """``(session, score, ticket_id)`` of the conversation's stored ratings."""
    with _db(bot) as db:
        return db.execute(
            "SELECT r.session, r.score, r.ticket_id FROM ratings r JOIN conversations c "
            "ON c.id = r.conversation_pk WHERE c.conversation_id = ? ORDER BY r.id",
            (conversation_id,)).fetchall()


def ticket_of(bot: Any, conversation_id: str) -> Tuple[int, str]:
    """``(id, reference)`` of the conversation's newest ticket."""
    with _db(bot) as db:
        return db.execute("SELECT id, reference FROM tickets WHERE conversation_id = ? "
                          "ORDER BY id DESC LIMIT 1", (conversation_id,)).fetchone()


async def rate(client: WidgetClient, session: int, score: int = 5) -> Dict[str, Any]:
    """Send a ``rate`` frame; the answer (``rated`` or ``error``)."""
    await client.send({"type": "rate", "session": session, "score": score})
    while True:
        frame = await client.recv()
        if frame.get("type") in ("rated", "error"):
            return frame


async def handed_off(bot: Any, name: str = "Rhea") -> Tuple[WidgetClient, str]:
    user = new_user("rt")
    client = await WidgetClient.connect(bot, token_for(user, name=name))
    turn = await client.turn(ASK_FOR_A_PERSON)
    assert any("person" in m["text"] for m in turn["replies"]), turn["replies"]
    return client, f"widget:{user}"


def _console(bot: Any) -> Tuple[Console, str]:
    username = f"rate-{uuid.uuid4().hex[:8]}"
    create_agent(bot.support_db_url, username, name="Rita")
    console = Console(f"{bot.rasa_url}/webhooks/agent")
    return console, console.login(username)


async def test_a_session_only_the_bot_handled_cannot_be_rated(embedded_bot: Any) -> None:
    user = new_user("rt")
    conversation_id = f"widget:{user}"
    client = await WidgetClient.connect(embedded_bot, token_for(user, name="Bo"))
    try:
        await client.turn("hi")
        session = client.welcome["session"]
        refused = await rate(client, session, 5)
        assert refused["code"] == "not_ratable", refused
        await client.send({"type": "end"})
        ended = await client.expect("session_ended")
        for attempt in (ended["session"] - 1, ended["session"]):  # ended, and the new one
            refused = await rate(client, attempt, 1)
            assert refused["code"] == "not_ratable", refused
        assert ratings_of(embedded_bot, conversation_id) == []
    finally:
        await client.close()


async def test_a_chat_still_queued_when_the_customer_left_cannot_be_rated(
        embedded_bot: Any) -> None:
    client, conversation_id = await handed_off(embedded_bot)
    try:
        assert (await rate(client, 1))["code"] == "not_ratable"  # nobody took it yet
        await client.send({"type": "end"})
        ended = await client.expect("session_ended")
        refused = await rate(client, ended["session"] - 1, 2)
        assert refused["code"] == "not_ratable", refused
        assert ratings_of(embedded_bot, conversation_id) == []
    finally:
        await client.close()


async def test_a_chat_with_a_person_is_rated_once_after_it_is_resolved(
        embedded_bot: Any) -> None:
    loop = asyncio.get_running_loop()
    client, conversation_id = await handed_off(embedded_bot)
    try:
        console, agent = await loop.run_in_executor(None, _console, embedded_bot)
        ticket_id, reference = ticket_of(embedded_bot, conversation_id)

        def post(action: str, body: Any = None) -> Any:
            response = console.call("POST", f"/api/tickets/{reference}/{action}", agent,
                                    json=body or {})
            assert response.status_code == 200, response.text
            return response.json()

        await loop.run_in_executor(None, post, "claim")
        await client.expect("message", lambda f: f["message"]["sender"] == "system")
        assert (await rate(client, 1))["code"] == "not_ratable"  # the agent is still on it
        await loop.run_in_executor(None, post, "reply", {"text": "Hi, I'm Rita. Sorted!"})
        await client.expect("message", lambda f: f["message"]["sender"] == "agent")
        assert ratings_of(embedded_bot, conversation_id) == []

        await loop.run_in_executor(None, post, "resolve")
        request = await client.expect("rating_request")
        rated = await rate(client, request["session"], 5)
        assert rated == {"type": "rated", "session": request["session"], "score": 5}
        again = await rate(client, request["session"], 1)
        assert (again["code"], again["message"]) == (
            "already_rated", "This chat session was already rated.")
        # nor can the same chat be rated again as "the ended session" after End chat
        await client.send({"type": "end"})
        ended = await client.expect("session_ended")
        later = await rate(client, ended["session"] - 1, 1)
        assert later["code"] == "already_rated", later
        assert ratings_of(embedded_bot, conversation_id) == [(request["session"], 5, ticket_id)]
    finally:
        await client.close()


async def test_two_rate_frames_at_once_store_one_rating(embedded_bot: Any) -> None:
    loop = asyncio.get_running_loop()
    client, conversation_id = await handed_off(embedded_bot)
    second = None
    try:
        console, agent = await loop.run_in_executor(None, _console, embedded_bot)
        _, reference = ticket_of(embedded_bot, conversation_id)
        for action in ("claim", "resolve"):
            response = await loop.run_in_executor(None, lambda a=action: console.call(
                "POST", f"/api/tickets/{reference}/{a}", agent, json={}))
            assert response.status_code == 200, response.text
        request = await client.expect("rating_request")
        user = conversation_id.split(":", 1)[1]
        second = await WidgetClient.connect(embedded_bot, token_for(user, name="Rhea"))
        answers = await asyncio.gather(rate(client, request["session"], 5),
                                       rate(second, request["session"], 1))
        kinds = sorted(a.get("code") or a["type"] for a in answers)
        assert kinds == ["already_rated", "rated"], answers
        assert len(ratings_of(embedded_bot, conversation_id)) == 1
    finally:
        await client.close()
        if second is not None:
            await second.close()
