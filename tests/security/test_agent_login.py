"""Agent console logins: per-account back-off, per-IP limit, and whose X-Forwarded-For counts.

A real bot (its own, so the limits start empty) with ``AGENT_TRUSTED_PROXIES=127.0.0.1``:
requests from 127.0.0.1 play a reverse proxy that appends the client's address to
``X-Forwarded-For``; requests from other loopback addresses (127.0.0.2, ...: a socket bound
to that source address) are clients talking to the server directly, whose
``X-Forwarded-For`` must be ignored. Outcomes are asserted exactly: 401 / 429 with
``Retry-After`` and one generic message, 200 for the accounts that must keep working.
"""
from __future__ import annotations

import http.client
import json
import re
import uuid
from typing import Any, Dict, Iterator, Optional, Tuple

import pytest

from tests.agent_console.conftest import PASSWORD, create_agent

pytestmark = pytest.mark.model

WRONG = "not the password at all"
GENERIC = re.compile(r"^Too many login attempts; try again in \d+ s\.$")


@pytest.fixture(scope="module")
def login_bot(bot_factory: Any) -> Iterator[Any]:
    bot = bot_factory.start("agent-login", env={
        "AGENT_TRUSTED_PROXIES": "127.0.0.1",
        "AGENT_LOGIN_RATE": "10",
        "AGENT_LOGIN_ACCOUNT_FAILURES": "5",
        "AGENT_LOGIN_BACKOFF_MAX": "900",
    })
    yield bot


def account(bot: Any) -> str:
    username = f"agent-{uuid.uuid4().hex[:8]}"
    create_agent(bot.support_db_url, username)
    return username


def login(bot: Any, username: str, password: str, *, peer: str = "127.0.0.1",
          forwarded_for: Optional[str] = None) -> Tuple[int, Dict[str, str], Dict[str, Any]]:
    """POST /api/login from the source address ``peer``; ``(status, headers, body)``."""
    host, port = bot.rasa_url.replace("http://", "").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60,
                                            source_address=(peer, 0))
    headers = {"Content-Type": "application/json"}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    try:
        connection.request("POST", "/webhooks/agent/api/login",
                           body=json.dumps({"username": username, "password": password}),
                           headers=headers)
        response = connection.getresponse()
        body = json.loads(response.read() or b"{}")
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        connection.close()


def assert_throttled(answer: Tuple[int, Dict[str, str], Dict[str, Any]],
                     at_most: int = 900) -> int:
    status, headers, body = answer
    assert status == 429, answer
    assert body["error"]["code"] == "rate_limited"
    assert GENERIC.match(body["error"]["message"]), body
    retry = int(headers["retry-after"])
    assert 1 <= retry <= at_most and body["error"]["retry_after"] == retry
    return retry


def test_an_account_backs_off_whatever_the_ips_another_account_does_not(login_bot: Any) -> None:
    victim, bystander = account(login_bot), account(login_bot)
    ips = [f"203.0.113.{n}" for n in range(10, 17)]
    for ip in ips[:5]:  # a spread-out guesser: one attempt per IP
        status, _, body = login(login_bot, victim, WRONG, forwarded_for=ip)
        assert (status, body["error"]["code"]) == (401, "bad_credentials")
    assert_throttled(login(login_bot, victim, WRONG, forwarded_for=ips[5]), at_most=30)
    # during the back-off even the right password is refused, whatever the spelling or IP
    assert_throttled(login(login_bot, victim, PASSWORD, forwarded_for=ips[6]), at_most=30)
    assert_throttled(login(login_bot, victim.upper(), PASSWORD, forwarded_for=ips[0]),
                     at_most=30)
    # the other agent, from the very same IPs, is not affected
    for ip in ips[:6]:
        status, _, body = login(login_bot, bystander, PASSWORD, forwarded_for=ip)
        assert status == 200 and body["token"], body


def test_an_unknown_account_backs_off_exactly_like_a_real_one(login_bot: Any) -> None:
    real, ghost = account(login_bot), f"ghost-{uuid.uuid4().hex[:8]}"
    answers = {}
    for name, net in ((real, "198.51.100"), (ghost, "192.0.2")):
        for n in range(5):
            status, _, body = login(login_bot, name, WRONG, forwarded_for=f"{net}.{n + 20}")
            assert (status, body) == (401, {"error": {
                "code": "bad_credentials", "message": "Wrong username or password."}})
        answers[name] = login(login_bot, name, WRONG, forwarded_for=f"{net}.99")
        assert_throttled(answers[name], at_most=30)
    assert answers[real][2]["error"].keys() == answers[ghost][2]["error"].keys()


def test_direct_clients_on_different_addresses_still_back_the_account_off(
        login_bot: Any) -> None:
    victim = account(login_bot)
    for n in range(2, 7):  # 127.0.0.2 ... 127.0.0.6: five different peers, no proxy
        status, _, _ = login(login_bot, victim, WRONG, peer=f"127.0.0.{n}")
        assert status == 401
    assert_throttled(login(login_bot, victim, WRONG, peer="127.0.0.7"), at_most=30)


def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(login_bot: Any) -> None:
    peer = "127.0.0.20"  # not a trusted proxy: its header is the client's own words
    for n in range(10):  # AGENT_LOGIN_RATE=10 per minute, each "from" another address
        status, _, _ = login(login_bot, f"nobody-{uuid.uuid4().hex[:6]}", WRONG, peer=peer,
                             forwarded_for=f"198.18.0.{n}")
        assert status == 401
    for forged in ("198.18.1.1", "127.0.0.1", "198.18.2.2, 198.18.3.3"):
        assert_throttled(login(login_bot, f"nobody-{uuid.uuid4().hex[:6]}", WRONG,
                               peer=peer, forwarded_for=forged), at_most=60)
    status, _, _ = login(login_bot, f"nobody-{uuid.uuid4().hex[:6]}", WRONG, peer="127.0.0.21")
    assert status == 401  # another client is not limited


def test_behind_the_trusted_proxy_the_right_most_client_address_counts(
        login_bot: Any) -> None:
    # agents behind one proxy do not share one limit: 12 attempts from 12 clients pass
    for n in range(12):
        status, _, _ = login(login_bot, f"nobody-{uuid.uuid4().hex[:6]}", WRONG,
                             forwarded_for=f"198.19.0.{n}")
        assert status == 401
    # a client cannot escape its limit by writing addresses in front of its own
    for n in range(10):
        status, _, _ = login(login_bot, f"nobody-{uuid.uuid4().hex[:6]}", WRONG,
                             forwarded_for=f"10.0.0.{n}, 198.19.9.9")
        assert status == 401
    assert_throttled(login(login_bot, f"nobody-{uuid.uuid4().hex[:6]}", WRONG,
                           forwarded_for="10.0.0.99, 198.19.9.9"), at_most=60)
