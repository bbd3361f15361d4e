"""The unsubscribe routes on a real Sanic server (GET: confirmation page, POST: one click,
RFC 8058), then nothing more is sent to the address."""
from __future__ import annotations

import uuid
from typing import Any, AsyncIterator, Tuple
from urllib.parse import quote

import aiohttp
import pytest

from bot.mail import tokens
from tests.mail.conftest import SmtpServer, free_port

ANNA = "anna@example.com"


@pytest.fixture
async def routes(stores: Any, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    from sanic import Sanic

    from bot.mail.channel import unsubscribe_blueprint

    # Sanic 21.12 rewrites its request handler once per app unless in test mode (a second
    # app in one process then fails with KeyError 'connection_task')
    monkeypatch.setattr(Sanic, "test_mode", True)

    mail = stores[3]

    async def store() -> Any:
        return mail

    app = Sanic(f"mail_test_{uuid.uuid4().hex[:8]}")
    app.blueprint(unsubscribe_blueprint(store), url_prefix="/webhooks/mail")
    port = free_port()
    server = await app.create_server(host="127.0.0.1", port=port, return_asyncio_server=True,
                                     access_log=False)
    await server.startup()
    try:
        yield f"http://127.0.0.1:{port}/webhooks/mail/unsubscribe"
    finally:
        await server.close()


async def _call(method: str, url: str, **kwargs: Any) -> Tuple[int, str]:
    async with aiohttp.ClientSession() as http:
        async with http.request(method, url, **kwargs) as response:
            return response.status, await response.text()


async def test_get_confirms_post_unsubscribes_then_nothing_is_sent(
        routes: str, stores: Any, sender: Any, smtp_server: SmtpServer) -> None:
    support, _, agents, mail = stores
    url = f"{routes}?token={quote(tokens.sign(ANNA))}"

    status, page = await _call("GET", url)
    assert status == 200 and "Unsubscribe from Northwind Support emails?" in page
    assert ANNA in page and '<form method="post"' in page
    assert not await mail.is_unsubscribed(ANNA)  # a GET (a mail scanner) changes nothing

    status, page = await _call("POST", url, data="List-Unsubscribe=One-Click",
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and "You are unsubscribed" in page
    assert await mail.is_unsubscribed(ANNA)
    status, page = await _call("GET", url)
    assert status == 200 and "You are unsubscribed" in page

    await agents.do_upsert_customer("cust-anna", {"name": "Anna", "email": ANNA})
    await support.do_create_ticket("api:anna", "The app crashes on start", "APP", "normal",
                                   contact_email=ANNA, customer_id="cust-anna")
    await sender.run_once()
    assert smtp_server.received == []


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_forged_or_altered_token_is_refused_with_a_clear_error(
        routes: str, stores: Any, method: str) -> None:
    forged = tokens.sign(ANNA, secret="not-our-secret")
    good = tokens.sign(ANNA)
    altered = tokens.sign("ben@example.com").split(".")[0] + "." + good.split(".")[1]
    for token in (forged, altered, "garbage", ""):
        status, page = await _call(method, f"{routes}?token={quote(token)}")
        assert status == 400, token
        assert "This unsubscribe link is not valid" in page and "invalid_token" in page
        assert "Nothing was changed" in page
    assert not await stores[3].is_unsubscribed(ANNA)
    assert not await stores[3].is_unsubscribed("ben@example.com")
