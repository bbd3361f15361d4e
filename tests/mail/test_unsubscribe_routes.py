"""The unsubscribe routes on the real Rasa server (bot.mail.channel.MailInput) (GET: confirmation page, POST: one click,
RFC 8058), then nothing more is sent to the address."""
from __future__ import annotations

import uuid
from typing import Any, AsyncIterator, Tuple
from urllib.parse import quote

import aiohttp
import pytest

from bot.mail import tokens
from tests.mail.conftest import SmtpServer

ANNA = "anna@example.com"


#: MAIL_UNSUBSCRIBE_SECRET of the test process (tests/mail/conftest.py) and of the bot.
SECRET = "test-secret-0123456789"


@pytest.fixture(scope="module")
def mail_bot(bot_factory: Any) -> Any:
    """The real Rasa server, whose credentials.yml serves /webhooks/mail/ (MailInput)."""
    return bot_factory.start("mail-routes", env={"MAIL_UNSUBSCRIBE_SECRET": SECRET})


@pytest.fixture
def db_url(mail_bot: Any) -> str:
    """The stores of these tests are the bot's own support database."""
    return mail_bot.support_db_url


@pytest.fixture
def routes(mail_bot: Any) -> str:
    return f"{mail_bot.rasa_url}/webhooks/mail/unsubscribe"


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
    # addresses of their own: the bot's database is shared by this module's tests
    victim, other = (f"{name}-{uuid.uuid4().hex[:8]}@example.com" for name in ("anna", "ben"))
    forged = tokens.sign(victim, secret="not-our-secret")
    good = tokens.sign(victim)
    altered = tokens.sign(other).split(".")[0] + "." + good.split(".")[1]
    for token in (forged, altered, "garbage", ""):
        status, page = await _call(method, f"{routes}?token={quote(token)}")
        assert status == 400, token
        assert "This unsubscribe link is not valid" in page and "invalid_token" in page
        assert "Nothing was changed" in page
    assert not await stores[3].is_unsubscribed(victim)
    assert not await stores[3].is_unsubscribed(other)
