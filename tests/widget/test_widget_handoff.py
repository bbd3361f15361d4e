"""The customer's side of a handoff over the widget channel (the agent side is tested
with the agent console in tests/agent_console/)."""
from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from tests.widget.conftest import WidgetClient, new_user, token_for
from tests.widget.test_widget_channel import rows

pytestmark = pytest.mark.model


def conversation_row(bot: Any, conversation_id: str) -> dict:
    with sqlite3.connect(bot.support_db_url.replace("sqlite:///", "")) as db:
        db.row_factory = sqlite3.Row
        conversation = dict(db.execute(
            "SELECT state, ticket_id, session FROM conversations WHERE conversation_id = ?",
            (conversation_id,)).fetchone())
        ticket = db.execute("SELECT reference, status, queued_at FROM tickets WHERE id = ?",
                            (conversation["ticket_id"],)).fetchone()
        conversation["ticket"] = dict(ticket) if ticket else None
        return conversation


async def test_handoff_queues_the_chat_and_the_bot_stays_silent(widget_bot: Any) -> None:
    user = new_user()
    conversation_id = f"widget:{user}"
    client = await WidgetClient.connect(widget_bot, token_for(user, name="Erik"))
    turn = await client.turn("I want to talk to a real person")
    assert any("passing you to a person" in m["text"] for m in turn["replies"]), turn["replies"]
    state = conversation_row(widget_bot, conversation_id)
    assert state["state"] == "queued"
    assert state["ticket"]["status"] == "queued" and state["ticket"]["queued_at"]
    assert widget_bot.tracker(conversation_id)["paused"] is True

    # while a person has the chat, messages are stored for the agent, the bot says nothing
    ack = await client.say("are you there?")
    receipt = await client.expect("receipt", lambda f: ack["message"]["id"] in f["ids"])
    assert receipt["status"] == "delivered"
    late = await client.nothing_for(2.0)
    assert [f for f in late if f["type"] in ("typing", "message", "error")] == []
    assert rows(widget_bot, conversation_id)[-1]["status"] == "delivered"

    # leaving the chat closes it; the next session is the bot's again
    await client.send({"type": "end"})
    ended = await client.expect("session_ended")
    assert conversation_row(widget_bot, conversation_id)["state"] == "closed"
    assert widget_bot.tracker(conversation_id)["paused"] is False
    hello = await client.turn("hi")
    assert hello["replies"], "the bot answers again in the new session"
    assert conversation_row(widget_bot, conversation_id)["state"] == "bot"

    # nobody from the team took part in the ended session: it cannot be rated (a rating
    # belongs to a finished chat with a person; the happy path: tests/security/test_ratings.py)
    await client.send({"type": "rate", "session": ended["session"] - 1, "score": 4,
                       "comment": "took a while"})
    refused = await client.expect("error")
    assert refused["code"] == "not_ratable", refused
    for bad in ({"session": 1, "score": 9}, {"session": 99, "score": 3},
                {"session": "one", "score": 3}):
        await client.send({"type": "rate", **bad})
        assert (await client.expect("error"))["code"] in ("bad_request", "not_ratable")
    with sqlite3.connect(widget_bot.support_db_url.replace("sqlite:///", "")) as db:
        assert db.execute(
            "SELECT COUNT(*) FROM ratings r JOIN tickets t ON t.id = r.ticket_id "
            "WHERE t.reference = ?", (state["ticket"]["reference"],)).fetchone() == (0,)
    await client.close()
