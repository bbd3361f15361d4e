"""The notification hook: an agent replies while the customer is not in the app."""
from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, List

import pytest
from aiohttp import web

from bot.channels.agent_bridge import AgentBridge
from bot.channels.hub import Hub
from bot.live import bus
from bot.settings import reset_settings_cache

EVENT = {"conversation_id": "widget:cust-anna",
         "message": {"id": 42, "sender": "agent", "sender_name": "Maria",
                     "text": "Your refund is on its way. " * 10}}


class Channel:
    def __init__(self) -> None:
        self.hub = Hub(5, 10, 60)


async def _hook(received: List[Any], statuses: List[int]) -> Any:
    async def handle(request: web.Request) -> web.Response:
        received.append((await request.read(), dict(request.headers)))
        return web.Response(status=statuses.pop(0) if statuses else 200)

    app = web.Application()
    app.router.add_post("/notify", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}/notify"


async def test_offline_customer_gets_a_signed_notification_after_a_retry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    received: List[Any] = []
    runner, url = await _hook(received, [503])
    monkeypatch.setenv("SUPPORT_NOTIFY_URL", url)
    monkeypatch.setenv("SUPPORT_NOTIFY_SECRET", "hook-secret")
    reset_settings_cache()
    try:
        bridge = AgentBridge(Channel())  # type: ignore[arg-type]
        assert await bridge.notify_offline(EVENT) is True
    finally:
        reset_settings_cache()
        await runner.cleanup()
    assert len(received) == 2  # 503, then accepted
    body, headers = received[-1]
    assert json.loads(body) == {
        "event": "agent_reply", "conversation_id": "widget:cust-anna",
        "customer_id": "cust-anna", "agent": "Maria",
        "preview": EVENT["message"]["text"][:140], "message_id": 42}
    expected = hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()
    assert headers["X-Support-Signature"] == f"sha256={expected}"


async def test_without_a_url_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUPPORT_NOTIFY_URL", raising=False)
    reset_settings_cache()
    try:
        assert await AgentBridge(Channel()).notify_offline(EVENT) is False  # type: ignore[arg-type]
    finally:
        reset_settings_cache()


async def test_only_an_offline_customer_triggers_the_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: List[Any] = []
    channel = Channel()
    bridge = AgentBridge(channel)  # type: ignore[arg-type]

    async def fake_notify(event: Any) -> bool:
        calls.append(event)
        return True

    monkeypatch.setattr(bridge, "notify_offline", fake_notify)
    await bridge._notify_if_offline(EVENT)  # nobody connected
    for task in list(channel.hub.tasks):
        await task
    assert calls == [EVENT]

    bus().set_online(EVENT["conversation_id"], True)  # a socket here (or on another process)
    try:
        await bridge._notify_if_offline(EVENT)
        for task in list(channel.hub.tasks):
            await task
        assert calls == [EVENT]
    finally:
        bus().set_online(EVENT["conversation_id"], False)


async def test_frames_from_other_processes_keep_up_with_a_busy_event_loop() -> None:
    """Another process's turns reach this process's sockets through the live bus
    (``widget.frames``). The subscriber must queue a whole burst at once: when it took one
    loop iteration per frame, a loop busy with 200 conversations put it 1,000 events behind
    (the bus's limit) and the newest frames, replies among them, were dropped (issue 14)."""
    import asyncio

    from bot.channels.hub import Connection
    from bot.channels.widget_wire import FRAMES_TOPIC

    class Socket:
        def __init__(self) -> None:
            self.sent: List[Any] = []

        async def send(self, data: str) -> None:
            self.sent.append(json.loads(data)["n"])

    channel = Channel()
    bridge = AgentBridge(channel)  # type: ignore[arg-type]
    socket = Socket()
    channel.hub.register(Connection(socket, "u1", "widget:u1", 0))
    bridge.subscribe()
    busy = True

    async def other_work() -> None:  # the turns, sockets and stores of a loaded process
        while busy:
            await asyncio.sleep(0)

    others = [asyncio.get_running_loop().create_task(other_work()) for _ in range(50)]
    total = 3000
    try:
        for n in range(total):  # the relay hands over an event per message it reads
            bus().deliver(FRAMES_TOPIC, {"conversation_id": "widget:u1",
                                         "frames": [{"type": "typing", "n": n}]})
            if n % 25 == 24:  # ...and reads the next ones from Redis
                await asyncio.sleep(0)
        for _ in range(200):
            if len(socket.sent) >= total:
                break
            await asyncio.sleep(0.01)
    finally:
        busy = False
        await asyncio.gather(*others)
    assert socket.sent == list(range(total))  # every frame, in order, none dropped
