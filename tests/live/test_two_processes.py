"""A customer on one Rasa process, the agent on another: live both ways, side effects once.

Two real Rasa processes (tests/live/conftest.py) on the production configuration with
``REDIS_URL``: the customer's widget socket is on process A, the agent's console (HTTP API
and socket) on process B. What each side sees is asserted frame by frame, and what is stored
row by row (a notice stored twice would be shown twice).
"""
from __future__ import annotations

import asyncio
import json
import re
from typing import Any, Dict, List, Tuple

import websockets

from tests.agent_console.conftest import Console, create_agent
from tests.servers import BotServers
from tests.widget.conftest import WidgetClient, new_user, token_for

TIMEOUT = 30.0


class AgentSocket:
    """The agent console socket: frames collected in the background."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.frames: List[Dict[str, Any]] = []
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self.frames.append(json.loads(raw))
        except websockets.ConnectionClosed:
            pass

    async def wait_for(self, kind: str, where: Any = lambda f: True) -> Dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while asyncio.get_running_loop().time() < deadline:
            for frame in self.frames:
                if frame.get("type") == kind and where(frame):
                    return frame
            await asyncio.sleep(0.05)
        raise AssertionError(f"agent got no {kind!r} frame; got {self.frames[-15:]}")

    async def close(self) -> None:
        await self.ws.close()
        self._task.cancel()


def _rows(bot: BotServers, query: str, *args: Any) -> List[Tuple[Any, ...]]:
    import psycopg2

    connection = psycopg2.connect(bot.extra["pg_url"])
    try:
        with connection.cursor() as cursor:
            cursor.execute(query, args)
            return [tuple(r) for r in cursor.fetchall()]
    finally:
        connection.close()


async def _http(console: Console, method: str, path: str, token: str, **kwargs: Any) -> Any:
    return await asyncio.to_thread(console.call, method, path, token, **kwargs)


async def test_customer_and_agent_on_different_processes(
        two_processes: Tuple[BotServers, BotServers]) -> None:
    a, b = two_processes
    await asyncio.to_thread(create_agent, a.extra["pg_url"], "mia", "agent", "Mia")
    console = Console(f"{b.rasa_url}/webhooks/agent")  # the agent is on process B
    token = await asyncio.to_thread(console.login, "mia")

    user = new_user("live")
    conversation = f"widget:{user}"
    customer = await WidgetClient.connect(a, token_for(user))  # the customer on process A
    handoff = await customer.turn("I want to talk to a person please")
    said = " ".join(m["text"] for m in handoff["replies"])
    assert "I'm passing you to a person" in said, said
    reference = re.search(r"\bT-\d{6}\b", said).group(0)

    async with websockets.connect(console.ws_url, open_timeout=30) as raw:
        await raw.send(json.dumps({"type": "hello", "token": token}))
        agent = AgentSocket(raw)
        await agent.wait_for("welcome")

        claimed = await _http(console, "POST", f"/api/tickets/{reference}/claim", token)
        assert claimed.status_code == 200, claimed.text
        joined = await customer.expect("message", lambda f: "has joined" in f["message"]["text"])
        assert joined["message"]["text"] == "Mia from our support team has joined the chat."

        reply = await _http(console, "POST", f"/api/tickets/{reference}/reply", token,
                            json={"text": "Hi, I'm Mia. How can I help?"})
        assert reply.status_code == 200, reply.text
        got = await customer.expect("message", lambda f: f["message"]["sender"] == "agent")
        assert (got["message"]["text"], got["message"]["sender_name"]) == (
            "Hi, I'm Mia. How can I help?", "Mia")

        await raw.send(json.dumps({"type": "typing", "ticket": reference, "state": "start"}))
        typing = await customer.expect("typing", lambda f: f.get("sender") == "agent")
        assert (typing["state"], typing["name"]) == ("start", "Mia")

        await customer.send({"type": "typing", "state": "start"})
        seen = await agent.wait_for("customer.typing",
                                    lambda f: f.get("conversation_id") == conversation)
        assert seen["state"] == "start" and seen["ticket"] == reference

        ack = await customer.say("my parcel 104233 has not arrived")
        message_id = ack["message"]["id"]
        seen = await agent.wait_for("customer.message",
                                    lambda f: f["message"]["id"] == message_id)
        assert seen["message"]["text"] == "my parcel 104233 has not arrived"

        read = await _http(console, "POST", f"/api/tickets/{reference}/read", token,
                           json={"up_to": message_id})
        assert read.status_code == 200 and message_id in read.json()["ids"]
        receipt = await customer.expect(
            "receipt", lambda f: f["status"] == "read" and message_id in f["ids"])
        assert receipt["ids"] == [message_id]

        resolved = await _http(console, "POST", f"/api/tickets/{reference}/resolve", token,
                               json={"note": "found"})
        assert resolved.status_code == 200, resolved.text
        thanks = await customer.expect("message", lambda f: "is resolved" in f["message"]["text"])
        assert reference in thanks["message"]["text"]
        rating = await customer.expect("rating_request")
        assert rating["ticket"] == reference
        await agent.close()

    extra = await customer.nothing_for(3.0)  # a side effect run by both processes shows twice
    assert [f for f in extra if f.get("type") in ("message", "rating_request")] == []
    notices = _rows(a, "SELECT m.sender, m.text FROM chat_messages m JOIN conversations c "
                       "ON c.id = m.conversation_pk WHERE c.conversation_id = %s AND "
                       "(m.text LIKE %s OR m.text LIKE %s) ORDER BY m.id",
                    conversation, "%has joined%", "%is resolved%")
    assert [sender for sender, _ in notices] == ["system", "bot"]

    after = await customer.turn("thanks! where is my order 104233?")  # the bot is back
    assert after["replies"], "the bot answers again after the resolve"
    await customer.close()


async def test_presence_on_another_process_stops_the_offline_notification(
        two_processes: Tuple[BotServers, BotServers]) -> None:
    """An agent reply published on B while the customer's socket is on A: B must not
    treat the customer as away (presence is shared through Redis)."""
    import redis.asyncio as aioredis

    a, _b = two_processes
    user = new_user("pres")
    customer = await WidgetClient.connect(a, token_for(user))
    client = aioredis.from_url("redis://127.0.0.1:6379/15")
    try:
        key = f"{a.extra['redis_key_prefix']}:live:online:widget:{user}"
        deadline = asyncio.get_running_loop().time() + 10
        while not await client.zcard(key):
            assert asyncio.get_running_loop().time() < deadline, "no presence mark for A's socket"
            await asyncio.sleep(0.1)
        await customer.close()
        while await client.zcard(key):
            assert asyncio.get_running_loop().time() < deadline + 10, "presence not removed"
            await asyncio.sleep(0.1)
    finally:
        await client.close()


async def test_a_conversation_moving_between_processes_keeps_its_form(
        two_processes: Tuple[BotServers, BotServers]) -> None:
    """Each process keeps the conversations it served (bot/tracker_cache.py): A's copy is
    out of date once B ran a turn, and A must read the conversation again, not answer
    from its copy (which would ask for the phone number a second time)."""
    from datetime import datetime, timezone
    from zoneinfo import ZoneInfo

    from tests.conversations.runner import placeholders

    a, b = two_processes
    user = new_user("moving")
    conversation = f"widget:{user}"
    day = placeholders(datetime.now(timezone.utc), ZoneInfo("Europe/Berlin"))["open_day"]

    on_a = await WidgetClient.connect(a, token_for(user))
    await on_a.turn("hi")  # the first turn starts the session (read again after it)
    asked = await on_a.turn("can someone call me back?")  # this one A keeps
    assert "Which phone number should we call?" in " ".join(r["text"] for r in asked["replies"])
    await on_a.close()

    on_b = await WidgetClient.connect(b, token_for(user))
    when = await on_b.turn("+49 152 34567891")
    assert "When should we call you?" in " ".join(r["text"] for r in when["replies"])
    await on_b.close()

    on_a = await WidgetClient.connect(a, token_for(user))  # A served this conversation before
    confirm = " ".join(r["text"] for r in (await on_a.turn(f"{day} at 11"))["replies"])
    assert "Shall I book a call to +4915234567891" in confirm, confirm
    assert "Which phone number" not in confirm
    booked = " ".join(r["text"] for r in (await on_a.turn("yes"))["replies"])
    assert "Booked" in booked and "+4915234567891" in booked, booked
    await on_a.close()

    said = [json.loads(data)["text"] for (data,) in _rows(
        a, "SELECT data FROM events WHERE sender_id = %s AND type_name = 'user' ORDER BY id",
        conversation) if not json.loads(data)["text"].startswith("/")]
    assert said == ["hi", "can someone call me back?", "+49 152 34567891", f"{day} at 11",
                    "yes"]
    assert _rows(a, "SELECT phone, status FROM callbacks WHERE conversation_id = %s",
                 conversation) == [("+4915234567891", "scheduled")]
