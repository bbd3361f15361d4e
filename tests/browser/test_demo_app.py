"""The demo shop app's backend (``bot.demo``) without a browser or a bot: login, tokens, orders."""
from __future__ import annotations

import dataclasses
import time
from datetime import datetime, timezone
from typing import Any, AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.channels.auth import TokenVerifier
from bot.demo.app import COOKIE_NAME, create_app, read_session, sign_session
from bot.orders import ORDER_ANNA_IN_TRANSIT, SqlOrderSource, seed_demo_orders

SECRET = "demo-app-test-secret-0123456789abcdef0123456789"


@pytest.fixture
async def client(isolated_settings: Any) -> AsyncIterator[TestClient]:
    """A test client of the demo app on seeded demo orders, with a widget secret."""
    settings = dataclasses.replace(
        isolated_settings, widget_jwt_secret=SECRET, widget_public_url="http://bot.test:5005"
    )
    source = SqlOrderSource.from_url(settings.orders_db_url)
    await source.create_schema()
    await seed_demo_orders(source, datetime.now(timezone.utc))
    await source.dispose()
    async with TestClient(TestServer(create_app(settings))) as test_client:
        yield test_client


async def test_the_page_loads_the_widget_from_the_bot(client: TestClient) -> None:
    response = await client.get("/")
    page = await response.text()
    assert response.status == 200
    assert '<script src="http://bot.test:5005/webhooks/widget/widget.js" defer>' in page
    assert '"widgetUrl": "http://bot.test:5005"' in page


async def test_token_needs_a_login(client: TestClient) -> None:
    response = await client.get("/api/token")
    assert response.status == 401
    assert (await client.get("/api/orders")).status == 401
    me = await (await client.get("/api/me")).json()
    assert me["customer"] is None
    assert [c["id"] for c in me["customers"]] == ["cust-anna", "cust-ben", "cust-chloe"]


async def test_login_issues_widget_tokens_and_logout_ends_it(client: TestClient) -> None:
    response = await client.post("/api/login", json={"customer_id": "cust-anna"})
    assert response.status == 200
    cookie = response.cookies[COOKIE_NAME]
    assert cookie["httponly"] is True

    data = await (await client.get("/api/token")).json()
    customer = TokenVerifier("HS256", SECRET).verify(data["token"])
    assert customer.user_id == "cust-anna"
    assert customer.profile["name"] == "Anna Schmidt"
    assert abs(data["expires_at"] - (time.time() + 900)) < 5  # DEMO_TOKEN_TTL default

    orders = await (await client.get("/api/orders")).json()
    assert orders["source"] == "order_source"
    assert ORDER_ANNA_IN_TRANSIT in [o["number"] for o in orders["orders"]]

    assert (await client.post("/api/logout", json={})).status == 200
    assert (await client.get("/api/token")).status == 401


async def test_unknown_customers_cannot_log_in(client: TestClient) -> None:
    response = await client.post("/api/login", json={"customer_id": "cust-mallory"})
    assert response.status == 400
    assert (await client.get("/api/token")).status == 401


def test_session_cookies_are_signed_and_expire() -> None:
    key = b"k" * 32
    value = sign_session("cust-ben", key)
    assert read_session(value, key) == "cust-ben"
    payload, signature = value.split(".")
    forged = sign_session("cust-anna", b"x" * 32).split(".")[0] + "." + signature
    assert read_session(forged, key) is None
    assert read_session(value, b"other key" * 4) is None
    assert read_session(value, key, now=time.time() + 13 * 3600) is None
    assert read_session("garbage", key) is None
