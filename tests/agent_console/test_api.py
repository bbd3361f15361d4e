"""The agent console API and live socket against a REAL Rasa server (bot_factory).

One bot for the module, with a short console session TTL so expiry is testable and a
Prometheus token. Accounts and handed-off tickets are written straight into the bot's
support database, exactly as the action server would write them.
"""
from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List

import pytest

from tests.agent_console.conftest import Console, create_agent, queue_ticket

pytestmark = pytest.mark.model

SESSION_TTL = 8
METRICS_TOKEN = "test-metrics-token-0123456789"


@pytest.fixture(scope="module")
def console_bot(bot_factory: Any) -> Any:
    bot = bot_factory.start("agent-console-api", env={
        "AGENT_SESSION_TTL": str(SESSION_TTL),
        "AGENT_METRICS_TOKEN": METRICS_TOKEN,
        "AGENT_AUDIT_POLL_INTERVAL": "0.5",
        "AGENT_LOGIN_RATE": "500",
    })
    url = bot.support_db_url
    bot.extra["agents"] = {
        "ana": create_agent(url, "ana", name="Ana"),
        "ben": create_agent(url, "ben", name="Ben"),
        "boss": create_agent(url, "boss", role="admin", name="Boss"),
    }
    return bot


@pytest.fixture
def console(console_bot: Any) -> Console:
    return Console(f"{console_bot.rasa_url}/webhooks/agent")


def test_page_and_assets_are_served(console: Console) -> None:
    page = console.call("GET", "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert 'src="static/console.js"' in page.text
    for name, kind in (("console.js", "javascript"), ("console.css", "css")):
        asset = console.call("GET", f"/static/{name}")
        assert asset.status_code == 200 and kind in asset.headers["content-type"]
    assert console.call("GET", "/static/../channel.py").status_code == 404


def test_authorisation(console: Console) -> None:
    assert console.call("GET", "/api/me").json()["error"]["code"] == "invalid"
    forged = console.call("GET", "/api/inbox", token="forged-token")
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "invalid"
    wrong = console.call("POST", "/api/login", json={"username": "ana", "password": "nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "bad_credentials"
    assert "password" not in wrong.text.lower() or "wrong username" in wrong.text.lower()
    bad = console.call("POST", "/api/login", data="not json")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_request"

    token = console.login("ana")
    me = console.call("GET", "/api/me", token=token)
    assert me.status_code == 200 and me.json()["agent"]["username"] == "ana"
    assert "password" not in json.dumps(me.json())
    bad_state = console.call("GET", "/api/inbox", token=token, params={"state": "nonsense"})
    assert bad_state.status_code == 400
    assert console.call("POST", "/api/logout", token=token).status_code == 200
    assert console.call("GET", "/api/me", token=token).json()["error"]["code"] == "invalid"

    expiring = console.login("ana")
    time.sleep(SESSION_TTL + 1)
    expired = console.call("GET", "/api/me", token=expiring)
    assert expired.status_code == 401 and expired.json()["error"]["code"] == "expired"


def test_agents_only_see_their_own_tickets(console_bot: Any, console: Console) -> None:
    ticket = queue_ticket(console_bot.support_db_url)["reference"]
    ana, ben, boss = console.login("ana"), console.login("ben"), console.login("boss")
    assert ticket in [t["ticket"]["reference"]
                      for t in console.call("GET", "/api/inbox", token=ben).json()["tickets"]]
    assert console.call("POST", f"/api/tickets/{ticket}/claim", token=ana).status_code == 200
    refused = console.call("GET", f"/api/tickets/{ticket}", token=ben)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert ticket not in [t["ticket"]["reference"]
                          for t in console.call("GET", "/api/inbox", token=ben).json()["tickets"]]
    reply = console.call("POST", f"/api/tickets/{ticket}/reply", token=ben, json={"text": "hi"})
    assert reply.status_code == 403
    assert console.call("GET", f"/api/tickets/{ticket}", token=boss).status_code == 200
    assert console.call("GET", "/api/tickets/TKT-NOPE", token=ana).status_code == 404

    # transfer to Ben: now Ben may open it and Ana may not
    bad = console.call("POST", f"/api/tickets/{ticket}/transfer", token=ana,
                       json={"agent_id": "x"})
    assert bad.status_code == 400
    moved = console.call("POST", f"/api/tickets/{ticket}/transfer", token=ana,
                         json={"agent_id": console_bot.extra["agents"]["ben"]})
    assert moved.status_code == 200, moved.text
    assert console.call("GET", f"/api/tickets/{ticket}", token=ben).status_code == 200
    assert console.call("GET", f"/api/tickets/{ticket}", token=ana).status_code == 403


def test_claim_race_over_http(console_bot: Any, console: Console) -> None:
    ticket = queue_ticket(console_bot.support_db_url)["reference"]
    tokens = [console.login("ana"), console.login("ben")]
    with ThreadPoolExecutor(2) as pool:
        responses = list(pool.map(
            lambda t: console.call("POST", f"/api/tickets/{ticket}/claim", token=t), tokens))
    assert sorted(r.status_code for r in responses) == [200, 409], [r.text for r in responses]
    lost = next(r for r in responses if r.status_code == 409).json()["error"]
    winner = next(r for r in responses if r.status_code == 200).json()["ticket"]["assignee_id"]
    name = "Ana" if winner == console_bot.extra["agents"]["ana"] else "Ben"
    assert lost["code"] == "conflict" and f"already claimed by {name}" in lost["message"]


def _ws_session(console: Console, token: str, actions: Any, until: Any,
                timeout: float = 30.0) -> List[Dict[str, Any]]:
    """Open the console socket, say hello, run ``actions()`` (in a thread), collect frames
    until ``until(frames)`` is true."""
    import websockets

    async def run() -> List[Dict[str, Any]]:
        frames: List[Dict[str, Any]] = []
        async with websockets.connect(console.ws_url, open_timeout=30) as ws:
            await ws.send(json.dumps({"type": "hello", "token": token}))
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
            job = asyncio.get_running_loop().run_in_executor(None, actions)
            deadline = time.monotonic() + timeout
            while not until(frames) and time.monotonic() < deadline:
                try:
                    frames.append(json.loads(await asyncio.wait_for(ws.recv(), 1.0)))
                except asyncio.TimeoutError:
                    continue
            await job
        return frames

    return asyncio.run(run())


def test_live_reply_read_resolve_metrics(console_bot: Any, console: Console) -> None:
    ana, boss = console.login("ana"), console.login("boss")
    made: Dict[str, Any] = {}

    def hand_off() -> None:
        time.sleep(1.5)  # the socket's audit tail has started
        made.update(queue_ticket(console_bot.support_db_url, category="SHIPPING"))

    frames = _ws_session(console, ana, hand_off, lambda fs: any(
        f.get("type") == "ticket" and f["ticket"]["reference"] == made.get("reference")
        for f in fs))
    assert frames[0]["type"] == "welcome" and frames[0]["agent"]["username"] == "ana"
    reference = made["reference"]
    # (an earlier test's claim read from the change feed just after this socket opened may
    # come first: the live tail delivers what committed before it read, not before it opened)
    event = next(f for f in frames
                 if f.get("type") == "ticket" and f["ticket"]["reference"] == reference)
    assert event["action"] == "handoff.recorded" and event["ticket"]["status"] == "queued"

    detail = console.call("GET", f"/api/tickets/{reference}", token=ana).json()
    assert detail["triage"] == {"category": "SHIPPING", "confidence": 0.93}
    assert detail["slots"] == {"order_number": "104233"}
    assert detail["context"]["screen"] == "orders" and detail["context"]["device"] == "Pixel 8"
    assert detail["customer"]["name"] == "Test Customer"
    assert [m["sender"] for m in detail["messages"]] == ["customer"]
    assert detail["transcript"][1]["author"] == "bot"
    assert detail["suggestions"], "FAQ suggestions for a parcel question"
    assert detail["can_act"] is False

    not_yet = console.call("POST", f"/api/tickets/{reference}/reply", token=ana,
                           json={"text": "hello"})
    assert not_yet.status_code == 409
    assert console.call("POST", f"/api/tickets/{reference}/claim", token=ana).status_code == 200
    empty = console.call("POST", f"/api/tickets/{reference}/reply", token=ana, json={"text": " "})
    assert empty.status_code == 400
    reply = console.call("POST", f"/api/tickets/{reference}/reply", token=ana,
                         json={"text": "Hi, I'm <b>Ana</b>", "client_id": "c-1"})
    assert reply.status_code == 200, reply.text
    message = reply.json()["message"]
    assert message["sender"] == "agent" and message["sender_name"] == "Ana"
    again = console.call("POST", f"/api/tickets/{reference}/reply", token=ana,
                         json={"text": "Hi, I'm <b>Ana</b>", "client_id": "c-1"})
    assert again.json()["message"]["id"] == message["id"]

    read = console.call("POST", f"/api/tickets/{reference}/read", token=ana,
                        json={"up_to": made["message_id"]})
    assert read.status_code == 200 and read.json()["ids"] == [made["message_id"]]
    inbox = console.call("GET", "/api/inbox", token=ana, params={"category": "SHIPPING"}).json()
    line = next(t for t in inbox["tickets"] if t["ticket"]["reference"] == reference)
    assert line["unread"] == 0 and line["state"] == "assigned"

    canned = console.call("GET", "/api/canned", token=ana).json()["responses"]
    assert any(c["id"] == "greeting" for c in canned)
    agents = console.call("GET", "/api/agents", token=ana).json()["agents"]
    assert {"ana", "ben", "boss"} <= {a["username"] for a in agents}

    resolved = console.call("POST", f"/api/tickets/{reference}/resolve", token=ana,
                            json={"note": "parcel found"})
    assert resolved.status_code == 200 and resolved.json()["ticket"]["status"] == "resolved"
    again = console.call("POST", f"/api/tickets/{reference}/resolve", token=ana, json={})
    assert again.status_code == 409

    metrics = console.call("GET", "/api/metrics", token=ana, params={"days": 7}).json()
    assert metrics["resolution"]["count"] >= 1 and metrics["first_response"]["count"] >= 1
    assert "SHIPPING" in metrics["by_category"] and metrics["by_day"]
    # the days and the categories add up to the overall counts (bot/support/metrics.py)
    for count in (lambda b: b["resolution"]["count"], lambda b: b["tickets"],
                  lambda b: b["handoffs"], lambda b: b["csat"]["count"]):
        assert sum(count(b) for b in metrics["by_day"].values()) == count(metrics)
        assert sum(count(b) for b in metrics["by_category"].values()) == count(metrics)
    assert sum(b["conversations"] for b in metrics["by_day"].values()) == metrics["conversations"]
    assert set(metrics["targets"]) == {"resolution", "csat", "self_service"}
    assert console.call("GET", "/api/metrics", token=ana,
                        params={"days": "x"}).status_code == 400

    assert console.call("GET", "/prometheus").status_code == 401
    assert console.call("GET", "/prometheus", token=ana).status_code == 403
    for token in (METRICS_TOKEN, boss):
        text = console.call("GET", "/prometheus", token=token)
        assert text.status_code == 200 and "version=0.0.4" in text.headers["content-type"]
        assert 'support_tickets{state="resolved"}' in text.text
        assert "# TYPE support_ratings_total counter" in text.text
        assert "support_resolution_seconds_average " in text.text
        assert "# TYPE support_questions_total counter" in text.text

    def dead_letters_gauge() -> float:
        body = console.call("GET", "/prometheus", token=METRICS_TOKEN).text
        return float(next(line.split()[1] for line in body.splitlines()
                          if line.startswith("support_twilio_dead_letters ")))

    before = dead_letters_gauge()
    _store_dead_letter(console_bot.support_db_url, f"test-{time.time_ns()}")
    assert dead_letters_gauge() == before + 1


def _store_dead_letter(db_url: str, key: str) -> None:
    """A Twilio delivery that failed every retry, as the bridge stores it."""
    from bot.twilio.store import TwilioStore

    async def run() -> None:
        store = TwilioStore.from_url(db_url)
        try:
            await store.do_dead_letter(key=key, kind="message", conversation_id=None,
                                       payload={"body": "hello"}, error="HTTP 503", attempts=5)
        finally:
            await store.dispose()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(lambda: asyncio.run(run())).result()


def test_socket_refuses_bad_hello(console: Console) -> None:
    import websockets

    async def run() -> Any:
        async with websockets.connect(console.ws_url, open_timeout=30) as ws:
            await ws.send(json.dumps({"type": "hello", "token": "forged"}))
            frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
            try:
                await asyncio.wait_for(ws.recv(), 10)
            except websockets.ConnectionClosed as closed:
                return frame, closed.code
        return frame, None

    frame, code = asyncio.run(run())
    assert frame["code"] == "invalid" and code == 4001
