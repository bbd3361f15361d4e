"""Agent push end to end: the real bot (Rasa server with the console, action server) sends
to the local push service of :mod:`tests.push.conftest`, which verifies the VAPID JWT and
decrypts the payload with the device's own keys.

A handoff through the widget (the bot's real handoff) pushes every agent whose push is on,
not the others; a transfer pushes the agent it goes to; a 410 deletes the device; a 503 is
retried; bad subscriptions are refused with nothing stored.
"""
from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any, Dict, List, Tuple

import pytest

from tests.agent_console.conftest import Console
from tests.push.conftest import Device, PushService, agent
from tests.widget.conftest import WidgetClient, new_user, token_for

pytestmark = pytest.mark.model

SUBJECT = "mailto:support@northwind.example"  # VAPID_SUBJECT's default


@pytest.fixture(scope="module")
def console(embedded_bot: Any) -> Console:
    return Console(f"{embedded_bot.rasa_url}/webhooks/agent")


def subscribe(console: Console, who: Dict[str, Any], device: Device) -> Dict[str, Any]:
    response = console.call("POST", "/api/push/subscription", who["token"],
                            json={"subscription": device.subscription()},
                            headers={"User-Agent": "pytest-device"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["enabled"] is True and body["available"] is True
    return body


def outbox(bot: Any, where: str, *args: Any) -> List[Dict[str, Any]]:
    with sqlite3.connect(bot.support_db_url.replace("sqlite:///", "")) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute(
            f"SELECT * FROM push_outbox WHERE {where} ORDER BY id", args).fetchall()]


def wait_rows(bot: Any, where: str, *args: Any, status: str, timeout: float = 30.0
              ) -> List[Dict[str, Any]]:
    deadline = time.monotonic() + timeout
    rows: List[Dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = outbox(bot, where, *args)
        if rows and all(r["status"] == status for r in rows):
            return rows
        time.sleep(0.1)
    raise AssertionError(f"outbox rows {rows} not all {status}")


async def handoff(bot: Any, text: str = "I want to talk to a real person") -> Tuple[str, ...]:
    """The bot's real handoff: a customer asks for a person in the widget. Returns the
    ticket's reference, summary, priority and category."""
    user = new_user("push")
    client = await WidgetClient.connect(bot, token_for(user, name="Petra"))
    try:
        turn = await client.turn(text)
        assert any("passing you to a person" in m["text"] for m in turn["replies"])
    finally:
        await client.close()
    with sqlite3.connect(bot.support_db_url.replace("sqlite:///", "")) as db:
        return db.execute(
            "SELECT t.reference, t.summary, t.priority, t.category FROM tickets t JOIN "
            "conversations c ON c.ticket_id = t.id WHERE c.conversation_id = ?",
            (f"widget:{user}",)).fetchone()


async def test_a_handoff_pushes_agents_with_push_on_encrypted_and_signed(
        embedded_bot: Any, console: Console, push_service: PushService) -> None:
    on, off = agent(embedded_bot, console, "anna"), agent(embedded_bot, console, "bert")
    on_device, off_device = push_service.device(), push_service.device()
    state = subscribe(console, on, on_device)
    public_key = console.call("GET", "/api/push", on["token"]).json()["public_key"]
    assert [d["service"] for d in state["devices"]] == [push_service.origin]
    assert state["devices"][0]["user_agent"] == "pytest-device"
    subscribe(console, off, off_device)
    turned_off = console.call("POST", "/api/push/settings", off["token"], json={"enabled": False})
    assert turned_off.status_code == 200 and turned_off.json()["enabled"] is False

    reference, summary, priority, category = await handoff(embedded_bot)

    started = time.monotonic()
    [push] = await asyncio.to_thread(push_service.wait_for, on_device)
    latency = time.monotonic() - started
    assert on_device.decrypt(push.body) == {
        "type": "ticket.new", "ticket": reference, "subject": " ".join(summary.split())[:140],
        "priority": priority, "category": category}
    assert push.vapid_key == public_key  # signed with the server's VAPID key ...
    assert push.claims["aud"] == push_service.origin and push.claims["sub"] == SUBJECT
    headers = {k.lower(): v for k, v in push.headers.items()}
    assert headers["content-encoding"] == "aes128gcm"
    assert 3000 < int(headers["ttl"]) <= 3600  # PUSH_TTL's default, less the time queued
    assert headers["urgency"] == ("high" if priority in ("high", "urgent") else "normal")
    assert headers["topic"] == reference
    [row] = wait_rows(embedded_bot, "subscription_id = ? AND ticket = ?",
                      state["devices"][0]["id"], reference, status="sent")
    assert row["kind"] == "new_ticket" and row["response_status"] == 201
    assert row["attempts"] == 1

    # the agent who turned push off: nothing staged, nothing sent
    assert push_service.for_device(off_device) == []
    assert outbox(embedded_bot, "agent_id = ?", off["id"]) == []
    print(f"handoff to push at the service: {latency:.2f} s after the bot's answer")


async def test_a_transfer_pushes_the_agent_it_goes_to(
        embedded_bot: Any, console: Console, push_service: PushService) -> None:
    giver, taker = agent(embedded_bot, console, "carla"), agent(embedded_bot, console, "dora")
    taker_device = push_service.device()
    subscribe(console, taker, taker_device)
    ticket, summary, priority, category = await handoff(embedded_bot)
    [new] = await asyncio.to_thread(push_service.wait_for, taker_device)
    assert taker_device.decrypt(new.body)["type"] == "ticket.new"

    assert console.call("POST", f"/api/tickets/{ticket}/claim", giver["token"]).status_code == 200
    moved = console.call("POST", f"/api/tickets/{ticket}/transfer", giver["token"],
                         json={"agent_id": taker["id"]})
    assert moved.status_code == 200, moved.text
    _, transfer = await asyncio.to_thread(push_service.wait_for, taker_device, 2)
    assert taker_device.decrypt(transfer.body) == {
        "type": "ticket.transferred", "ticket": ticket, "subject": " ".join(summary.split()),
        "priority": priority, "category": category, "by": "Carla"}
    rows = outbox(embedded_bot, "ticket = ? AND agent_id = ?", ticket, taker["id"])
    assert [r["kind"] for r in rows] == ["new_ticket", "transfer"]


def test_an_expired_subscription_is_deleted(
        embedded_bot: Any, console: Console, push_service: PushService) -> None:
    who = agent(embedded_bot, console, "emil")
    gone, kept = push_service.device(410), push_service.device()
    subscribe(console, who, gone)
    state = subscribe(console, who, kept)
    assert len(state["devices"]) == 2
    queued = console.call("POST", "/api/push/test", who["token"])
    assert queued.status_code == 200 and queued.json() == {"queued": 2}
    push_service.wait_for(gone)
    [test] = push_service.wait_for(kept)
    assert kept.decrypt(test.body) == {"type": "test",
                                       "subject": "Notifications work on this device."}
    [row] = wait_rows(embedded_bot, "agent_id = ? AND response_status = 410", who["id"],
                      status="gone")
    assert row["last_error"] == "HTTP 410: subscription expired"
    devices = console.call("GET", "/api/push", who["token"]).json()["devices"]
    assert len(devices) == 1 and devices[0]["last_success_at"]


def test_a_push_service_error_is_retried(
        embedded_bot: Any, console: Console, push_service: PushService) -> None:
    who = agent(embedded_bot, console, "fritz")
    flaky = push_service.device(503)
    subscribe(console, who, flaky)
    assert console.call("POST", "/api/push/test", who["token"]).json() == {"queued": 1}
    first, second = push_service.wait_for(flaky, 2)
    assert (first.answered, second.answered) == (503, 201)
    assert flaky.decrypt(first.body) == flaky.decrypt(second.body)
    [row] = wait_rows(embedded_bot, "agent_id = ?", who["id"], status="sent")
    assert row["attempts"] == 2 and row["response_status"] == 201


@pytest.mark.parametrize("subscription, message", [
    ({"endpoint": "https://push.evil.example/x", "keys": "k"},
     "push.evil.example is not a known push service"),
    ({"endpoint": "http://10.0.0.7/push/x"}, "must be an https:// URL"),
    ({"endpoint": "https://fcm.googleapis.com/fcm/send/x"}, "keys must hold p256dh and auth"),
    ({"endpoint": "https://fcm.googleapis.com/fcm/send/x",
      "keys": {"p256dh": "AAAA", "auth": "AAAAAAAAAAAAAAAAAAAAAA"}}, "not a P-256 public key"),
    ("not an object", "subscription must be an object"),
])
def test_a_bad_subscription_is_refused_and_nothing_is_stored(
        embedded_bot: Any, console: Console, subscription: Any, message: str) -> None:
    who = agent(embedded_bot, console, "gina")
    response = console.call("POST", "/api/push/subscription", who["token"],
                            json={"subscription": subscription})
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]
    state = console.call("GET", "/api/push", who["token"]).json()
    assert state["devices"] == [] and state["enabled"] is False


def test_unsubscribe_deletes_the_device_and_needs_a_session(
        embedded_bot: Any, console: Console, push_service: PushService) -> None:
    who = agent(embedded_bot, console, "hans")
    device = push_service.device()
    subscribe(console, who, device)
    assert console.call("POST", "/api/push/unsubscribe", None,
                        json={"endpoint": device.endpoint}).status_code == 401
    other = agent(embedded_bot, console, "ida")  # only the agent's own devices
    assert console.call("POST", "/api/push/unsubscribe", other["token"],
                        json={"endpoint": device.endpoint}).json()["deleted"] is False
    answer = console.call("POST", "/api/push/unsubscribe", who["token"],
                          json={"endpoint": device.endpoint}).json()
    assert answer["deleted"] is True and answer["devices"] == []
    assert console.call("POST", "/api/push/test", who["token"]).json() == {"queued": 0}
    sw = console.call("GET", "/sw.js")
    assert sw.status_code == 200 and sw.headers["Content-Type"].startswith(
        "application/javascript") and "showNotification" in sw.text
