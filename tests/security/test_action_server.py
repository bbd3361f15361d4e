"""The action server is behind the shared secret and bounded bodies (bot/action_server.py).

Attacks from the issue against the real action server of ``embedded_bot``: a forged tracker
POSTed to ``/webhook`` that runs ``action_cancel_order`` (without and with a wrong token),
a deflate bomb, unsupported and broken encodings, an oversized body. Each asserts the
status and that the order row did not change; a positive control (same forged tracker,
right token, ``confirm`` false: the action runs and declines) proves the payload is one
the action server would otherwise execute. The bounded inflater is also unit-tested.
"""
from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import zlib
from typing import Any, Dict, Optional, Tuple

import pytest
import requests

from bot.action_server import BodyTooLarge, BrokenBody, inflate
from tests.servers import BotServers, new_conversation_id

CHLOE_ORDER = "104275"  # Chloé's, processing: cancellable (bot/orders.py demo data)
CHLOE = "cust-chloe"
BOMB_SIZE = 100 * 1024 * 1024  # 100 MB of zeros, ~100 KB compressed
TIMEOUT = 30


# ------------------------------------------------------------------ helpers


def forged_cancel(confirm: bool = True, number: str = CHLOE_ORDER) -> Dict[str, Any]:
    """An action call as Rasa would send it: cancel ``number``, for its owner, confirmed."""
    sender = new_conversation_id("forged")
    latest = {"text": "yes", "intent": {"name": "affirm", "confidence": 1.0}, "entities": [],
              "metadata": {"customer": {"id": CHLOE}}}
    return {
        "next_action": "action_cancel_order",
        "sender_id": sender,
        "version": "3.6.21",
        "domain": {},
        "tracker": {
            "sender_id": sender,
            "slots": {"order_number": number, "confirm": confirm, "customer_id": CHLOE},
            "latest_message": latest,
            "latest_event_time": time.time(),
            "followup_action": None,
            "paused": False,
            "events": [{"event": "user", "timestamp": time.time(), **latest,
                        "parse_data": latest}],
            "latest_input_channel": "api",
            "active_loop": {},
            "latest_action": {"action_name": "action_listen"},
            "latest_action_name": "action_listen",
        },
    }


def _order_row(bot: BotServers, number: str = CHLOE_ORDER) -> Tuple[Any, ...]:
    path = bot.orders_db_url.replace("sqlite:///", "")
    with sqlite3.connect(path) as db:
        row = db.execute("SELECT status, updated_at FROM orders WHERE number = ?",
                         (number,)).fetchone()
        (changes,) = db.execute("SELECT count(*) FROM order_changes WHERE order_number = ?",
                                (number,)).fetchone()
    return (*row, changes)


def _post(bot: BotServers, body: bytes, headers: Optional[Dict[str, str]] = None,
          path: str = "/webhook") -> requests.Response:
    session = requests.Session()
    session.trust_env = False
    try:
        return session.post(f"{bot.actions_url}{path}", data=body, headers=headers or {},
                            timeout=TIMEOUT)
    finally:
        session.close()


def _get(bot: BotServers, path: str, headers: Optional[Dict[str, str]] = None) -> requests.Response:
    session = requests.Session()
    session.trust_env = False
    try:
        return session.get(f"{bot.actions_url}{path}", headers=headers or {}, timeout=TIMEOUT)
    finally:
        session.close()


def _auth(bot: BotServers, **extra: str) -> Dict[str, str]:
    return {"Authorization": f"Bearer {bot.action_token}", "Content-Type": "application/json",
            **extra}


def _still_serving(bot: BotServers) -> None:
    """The action server answers /health and runs an authorized call."""
    assert _get(bot, "/health").json() == {"status": "ok"}
    response = _post(bot, json.dumps(forged_cancel(confirm=False)).encode(), _auth(bot))
    assert response.status_code == 200, response.text[:300]


@pytest.fixture
def bot(embedded_bot: BotServers) -> BotServers:
    """The shared embedded bot; Chloé's order must be open for these tests."""
    assert _order_row(embedded_bot)[0] == "processing"
    return embedded_bot


# ------------------------------------------------------------ positive control


@pytest.mark.model
def test_control_the_forged_tracker_runs_with_the_right_token(bot: BotServers) -> None:
    before = _order_row(bot)
    response = _post(bot, json.dumps(forged_cancel(confirm=False)).encode(), _auth(bot))

    assert response.status_code == 200, response.text[:300]
    texts = " ".join(r.get("text") or "" for r in response.json()["responses"])
    assert CHLOE_ORDER in texts, response.json()  # "cancel_declined" for her order
    assert _order_row(bot) == before


# -------------------------------------------------------------- the token


@pytest.mark.model
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-token"),
        pytest.param({"Authorization": "Bearer wrong-token"}, id="wrong-token"),
        pytest.param({"Authorization": "Bearer "}, id="empty-token"),
        pytest.param(None, id="prefix-of-the-token"),
        pytest.param("basic", id="basic-auth"),
        pytest.param({"X-Action-Token": "same-as-bearer"}, id="other-header"),
    ],
)
def test_forged_tracker_without_the_token_is_refused_and_the_order_unchanged(
    bot: BotServers, headers: Any
) -> None:
    if headers is None:
        headers = {"Authorization": f"Bearer {bot.action_token[:-1]}"}
    elif headers == "basic":
        headers = {"Authorization": f"Basic {bot.action_token}"}
    elif "X-Action-Token" in headers:
        headers = {"X-Action-Token": bot.action_token}
    before = _order_row(bot)

    response = _post(bot, json.dumps(forged_cancel()).encode(),
                     {"Content-Type": "application/json", **headers})

    assert response.status_code == 401, response.text[:300]
    assert response.json()["error"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert CHLOE_ORDER not in response.text and "cancel" not in response.text
    assert _order_row(bot) == before == ("processing", before[1], before[2])


@pytest.mark.model
def test_the_token_check_comes_before_inflating(bot: BotServers) -> None:
    bomb = zlib.compress(json.dumps(forged_cancel()).encode())
    response = _post(bot, bomb, {"Content-Encoding": "deflate"})
    assert response.status_code == 401
    assert _order_row(bot)[0] == "processing"


@pytest.mark.model
def test_action_list_needs_the_token_and_health_reveals_nothing(bot: BotServers) -> None:
    listing = _get(bot, "/actions")
    assert listing.status_code == 401
    assert "action_cancel_order" not in listing.text

    health = _get(bot, "/health")
    assert health.status_code == 200 and health.json() == {"status": "ok"}

    authorized = _get(bot, "/actions", {"Authorization": f"Bearer {bot.action_token}"})
    assert {"name": "action_cancel_order"} in authorized.json()


# ------------------------------------------------------------ body limits


@pytest.mark.model
def test_deflate_bomb_is_refused_quickly_and_the_server_keeps_serving(bot: BotServers) -> None:
    bomb = zlib.compress(b"\0" * BOMB_SIZE, 9)
    assert len(bomb) < 200_000

    started = time.monotonic()
    response = _post(bot, bomb, _auth(bot, **{"Content-Encoding": "deflate"}))
    elapsed = time.monotonic() - started

    assert response.status_code == 413, response.text[:300]
    assert response.json()["error"] == "too_large"
    assert elapsed < 5, f"took {elapsed:.1f} s"
    _still_serving(bot)


@pytest.mark.model
@pytest.mark.parametrize("encoding", ["gzip", "br", "x-unknown", "deflate, gzip", "compress"])
def test_unsupported_content_encoding_is_415(bot: BotServers, encoding: str) -> None:
    body = zlib.compress(json.dumps(forged_cancel()).encode())
    response = _post(bot, body, _auth(bot, **{"Content-Encoding": encoding}))

    assert response.status_code == 415, response.text[:300]
    assert response.json()["error"] == "unsupported_encoding"
    assert _order_row(bot)[0] == "processing"


@pytest.mark.model
@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"not deflate at all", id="garbage"),
        pytest.param(zlib.compress(b'{"next_action": "action_cancel_order"}')[:-6], id="truncated"),
        pytest.param(zlib.compress(b"{}") + b"trailing", id="trailing-bytes"),
    ],
)
def test_broken_deflate_body_is_400(bot: BotServers, body: bytes) -> None:
    response = _post(bot, body, _auth(bot, **{"Content-Encoding": "deflate"}))
    assert response.status_code == 400, response.text[:300]
    assert response.json()["error"] == "bad_encoding"


@pytest.mark.model
def test_body_over_the_limit_on_the_wire_is_refused(bot: BotServers) -> None:
    limit = 8 * 1024 * 1024  # ACTION_SERVER_MAX_BODY default (the bot does not change it)
    try:
        response = _post(bot, b" " * (limit + 1), _auth(bot))
    except requests.ConnectionError:
        pass  # Sanic may close the connection while the client still sends: refused too
    else:
        assert response.status_code == 413, response.text[:300]
        assert "request_body" not in response.text
    _still_serving(bot)


@pytest.mark.model
def test_error_bodies_do_not_echo_the_request(bot: BotServers) -> None:
    response = _post(bot, b'{"next_action": 12, "secret-marker": 1', _auth(bot))
    assert 400 <= response.status_code < 600
    assert "secret-marker" not in response.text


# --------------------------------------------------- what Rasa itself sends


@pytest.mark.model
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "deflate"])
async def test_rasas_own_action_client_is_accepted(bot: BotServers, compress: bool) -> None:
    """Rasa's EndpointConfig, configured like bot/serve.py does, with and without
    COMPRESS_ACTION_SERVER_REQUEST (aiohttp's ``compress=True``: Content-Encoding deflate)."""
    from rasa.utils.endpoints import EndpointConfig

    from bot.serve import authorize_action_endpoint

    class _Endpoints:
        action = EndpointConfig(url=f"{bot.actions_url}/webhook")

    authorize_action_endpoint(_Endpoints, bot.action_token)
    before = _order_row(bot)
    result = await _Endpoints.action.request(
        json=forged_cancel(confirm=False), method="post", compress=compress)

    assert CHLOE_ORDER in " ".join(r.get("text") or "" for r in result["responses"])
    assert _order_row(bot) == before


# ------------------------------------------------------- the inflater (unit)


def test_inflate_returns_the_body() -> None:
    body = json.dumps({"a": "b" * 1000}).encode()
    assert inflate(zlib.compress(body), 1_000_000) == body
    assert inflate(zlib.compress(body), len(body)) == body  # exactly the limit


def test_inflate_stops_at_the_limit_without_inflating_everything() -> None:
    bomb = zlib.compress(b"\0" * BOMB_SIZE, 9)
    started = time.monotonic()
    with pytest.raises(BodyTooLarge):
        inflate(bomb, 65536)
    assert time.monotonic() - started < 1
    with pytest.raises(BodyTooLarge):
        inflate(zlib.compress(b"x" * 1001), 1000)


@pytest.mark.parametrize(
    "body",
    [b"", b"garbage", zlib.compress(b"{}" * 100)[:-3], zlib.compress(b"{}") + b"x",
     zlib.compress(b"{}")[2:-4]],  # raw deflate (no zlib header) is not HTTP "deflate"
    ids=["empty", "garbage", "truncated", "trailing", "raw-deflate"],
)
def test_inflate_refuses_broken_streams(body: bytes) -> None:
    with pytest.raises(BrokenBody):
        inflate(body, 1_000_000)


async def test_inflate_can_run_off_the_event_loop() -> None:
    body = zlib.compress(b"{}")
    assert await asyncio.to_thread(inflate, body, 100) == b"{}"
