"""bot.action_client: Rasa's endpoint requests on one kept session, against a real server.

The server is a local aiohttp application that records what it received and on which
connection; Rasa's ``EndpointConfig.request`` is called as ``RemoteAction`` calls it.
"""
from __future__ import annotations

import base64
from typing import Any, AsyncIterator, Dict, List

import pytest
from aiohttp import web
from rasa.utils.endpoints import ClientResponseError, EndpointConfig

from bot import action_client


@pytest.fixture
async def server() -> AsyncIterator[Dict[str, Any]]:
    seen: List[Dict[str, Any]] = []

    async def webhook(request: web.Request) -> web.Response:
        seen.append({"peer": request.transport.get_extra_info("peername"),
                     "body": await request.json(), "query": dict(request.query),
                     "headers": dict(request.headers), "cookies": dict(request.cookies)})
        if request.query.get("fail"):
            return web.Response(status=400, text="bad request")
        if request.query.get("plain"):
            return web.Response(text="not json")
        response = web.json_response({"events": [], "responses": [{"text": "hi"}]})
        response.set_cookie("session", "abc")
        return response

    app = web.Application()
    app.router.add_post("/webhook", webhook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    action_client.install()
    try:
        yield {"url": f"http://127.0.0.1:{port}/webhook", "seen": seen}
    finally:
        await action_client.close()
        action_client.uninstall()
        await runner.cleanup()


async def test_requests_share_a_connection_and_send_what_rasa_sends(server: Any) -> None:
    endpoint = EndpointConfig(server["url"], headers={"X-Token": "t"}, token="secret",
                              basic_auth={"username": "rasa", "password": "pw"})
    for n in range(3):
        answer = await endpoint.request(json={"next_action": "action_track", "n": n},
                                        method="post", timeout=30, compress=False)
        assert answer == {"events": [], "responses": [{"text": "hi"}]}
    seen = server["seen"]
    assert [s["body"]["n"] for s in seen] == [0, 1, 2]
    assert len({s["peer"] for s in seen}) == 1  # one kept connection, not one per call
    for s in seen:
        assert s["query"] == {"token": "secret"}
        assert s["headers"]["X-Token"] == "t"
        assert s["headers"]["Content-Type"] == "application/json"
        assert s["headers"]["Authorization"] == "Basic " + base64.b64encode(b"rasa:pw").decode()
        assert s["cookies"] == {}  # nothing carried from one request to the next


async def test_errors_and_plain_bodies_are_rasas(server: Any) -> None:
    endpoint = EndpointConfig(server["url"])
    with pytest.raises(ClientResponseError) as failed:
        await endpoint.request(json={}, method="post", params={"fail": "1"})
    assert failed.value.status == 400 and failed.value.text == b"bad request"
    assert await endpoint.request(json={}, method="post", params={"plain": "1"}) is None
    assert await endpoint.request(json={}, method="post") is not None  # still usable


async def test_a_dead_server_is_a_connection_error(server: Any) -> None:
    import aiohttp

    endpoint = EndpointConfig("http://127.0.0.1:9/webhook")  # nothing listens on port 9
    with pytest.raises(aiohttp.ClientConnectionError):
        await endpoint.request(json={}, method="post")


async def test_close_ends_the_session_and_the_next_request_opens_one(server: Any) -> None:
    endpoint = EndpointConfig(server["url"])
    await endpoint.request(json={}, method="post")
    await action_client.close()
    await endpoint.request(json={}, method="post")
    peers = [s["peer"] for s in server["seen"]]
    assert len(peers) == 2 and peers[0] != peers[1]
