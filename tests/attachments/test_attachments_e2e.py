"""Attachments through the REAL servers (``embedded_bot``: trained model, action server):
a customer sends a photo over the widget's REST route and WebSocket, the agent sees and
downloads it in the console API and answers with a PDF; nobody else gets either, and
forged, disguised and oversized uploads are refused with nothing stored."""
from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List

import pytest
import requests

from bot.support.ops import SupportStore
from tests.agent_console.conftest import Console, _run, create_agent
from tests.attachments.conftest import HTML_AS_JPEG, PDF, jpeg_with_gps, png_bytes
from tests.servers import WIDGET_TEST_ORIGIN
from tests.widget.conftest import WidgetClient, new_user, rest, token_for

pytestmark = pytest.mark.model

LIMIT = 1048576  # ATTACHMENT_MAX_BYTES of the test bots (tests/servers.py)


def upload(bot: Any, token: str, data: Any, name: str = "photo.jpg",
           content_type: str = "image/jpeg",
           origin: str = WIDGET_TEST_ORIGIN) -> requests.Response:
    return rest(bot, "POST", f"/attachments?name={name}", token, origin=origin,
                data=data, headers={"Content-Type": content_type})


def rows(bot: Any, conversation_id: str) -> List[Dict[str, Any]]:
    async def read() -> List[Dict[str, Any]]:
        from sqlalchemy import text

        from bot import db

        engine = db.make_engine(bot.support_db_url)
        try:
            async with engine.connect() as connection:
                result = await connection.execute(text(
                    "SELECT a.public_id, a.uploader, a.storage_key, a.thumb_key FROM attachments a"
                    " JOIN conversations c ON c.id = a.conversation_pk"
                    " WHERE c.conversation_id = :c ORDER BY a.id"), {"c": conversation_id})
                return [dict(r._mapping) for r in result]
        finally:
            await engine.dispose()

    return _run(read)


def stored_files(bot: Any) -> set:
    root = Path(bot.var_dir) / "attachments"
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} if root.exists() \
        else set()


def hand_off(bot: Any, conversation_id: str, customer: str) -> str:
    async def run() -> str:
        support = SupportStore.from_url(bot.support_db_url)
        try:
            ticket, _ = await support.do_handoff(
                conversation_id, summary="My mug arrived broken", category="REFUND",
                priority="high", reason="human_requested", customer_id=customer,
                details={"transcript": []})
            return ticket.reference
        finally:
            await support.dispose()

    return _run(run)


async def test_photo_from_the_widget_to_the_agent_and_a_pdf_back(embedded_bot: Any) -> None:
    bot = embedded_bot
    user, other = new_user("att"), new_user("att-other")
    token, other_token = token_for(user), token_for(other)
    conversation_id = f"widget:{user}"
    client = await WidgetClient.connect(bot, token)
    try:
        # --- the customer uploads a photo (the declared type and name are not believed)
        photo = jpeg_with_gps()
        answer = await asyncio.to_thread(upload, bot, token, photo, "../IMG_1.JPG",
                                         "text/html")
        assert answer.status_code == 201, answer.text
        assert answer.headers["Access-Control-Allow-Origin"] == WIDGET_TEST_ORIGIN
        ref = answer.json()["attachment"]
        assert {k: ref[k] for k in ("kind", "content_type", "name", "width", "height",
                                    "thumb", "thumb_width", "thumb_height")} == {
            "kind": "image", "content_type": "image/jpeg", "name": "IMG_1.jpg",
            "width": 640, "height": 480, "thumb": True, "thumb_width": 320,
            "thumb_height": 240}

        # --- the message naming it: stored, acknowledged, answered by the channel
        await client.send({"type": "message", "client_id": "photo-1", "attachments": [ref["id"]]})
        ack = await client.expect("ack", lambda f: f.get("client_id") == "photo-1")
        assert ack["duplicate"] is False
        assert ack["message"]["attachments"] == [ref] and ack["message"]["text"] == ""
        reply = await client.expect("message", lambda f: f["message"]["sender"] == "bot")
        assert "kept your file" in reply["message"]["text"]
        await client.expect("receipt", lambda f: f["status"] == "read"
                            and ack["message"]["id"] in f["ids"])
        # a resend is the same message
        await client.send({"type": "message", "client_id": "photo-1", "attachments": [ref["id"]]})
        again = await client.expect("ack", lambda f: f.get("client_id") == "photo-1")
        assert again["duplicate"] is True and again["message"]["id"] == ack["message"]["id"]
    finally:
        await client.close()

    # --- replayed on reconnect and in the history
    replay = await WidgetClient.connect(bot, token)
    try:
        shown = await replay.expect("message", lambda f: f["message"]["id"] == ack["message"]["id"])
        assert shown["message"]["attachments"] == [ref]
    finally:
        await replay.close()
    history = await asyncio.to_thread(rest, bot, "GET", "/history", token)
    assert [m["attachments"] for m in history.json()["messages"] if m.get("attachments")] == [[ref]]

    # --- the customer downloads it: clean bytes, safe headers
    got = await asyncio.to_thread(rest, bot, "GET", f"/attachments/{ref['id']}", token)
    assert got.status_code == 200
    assert got.headers["Content-Type"] == "image/jpeg"
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    assert got.headers["Content-Disposition"].startswith('inline; filename="IMG_1.jpg"')
    assert "sandbox" in got.headers["Content-Security-Policy"]
    assert got.content[:3] == b"\xff\xd8\xff" and b"SERIAL-12345" not in got.content
    assert len(got.content) == ref["size"]
    thumb = await asyncio.to_thread(rest, bot, "GET", f"/attachments/{ref['id']}/thumb", token)
    assert thumb.status_code == 200 and thumb.headers["Content-Type"] == "image/jpeg"

    # --- nobody else: another customer, no token, a forged token, a made-up id
    for who, path in ((other_token, f"/attachments/{ref['id']}"),
                      (other_token, f"/attachments/{ref['id']}/thumb"),
                      (token, "/attachments/" + "A" * 24)):
        refused = await asyncio.to_thread(rest, bot, "GET", path, who)
        assert refused.status_code == 404
        assert refused.json() == {"error": {"code": "not_found",
                                            "message": "No such attachment."}}
    assert (await asyncio.to_thread(rest, bot, "GET", f"/attachments/{ref['id']}",
                                    None)).status_code == 401
    forged = token_for(user, secret="another-secret-0123456789abcdefghijklmnopqrstuvwxyz")
    assert (await asyncio.to_thread(rest, bot, "GET", f"/attachments/{ref['id']}",
                                    forged)).status_code == 401
    # ... and another customer cannot send it as theirs
    thief = await WidgetClient.connect(bot, other_token)
    try:
        await thief.send({"type": "message", "client_id": "steal", "attachments": [ref["id"]]})
        error = await thief.expect("error", lambda f: f.get("client_id") == "steal")
        assert error["code"] == "bad_request" and "Unknown attachment" in error["message"]
    finally:
        await thief.close()

    # --- the agent sees it in the console and downloads it
    reference = hand_off(bot, conversation_id, user)
    console = Console(f"{bot.rasa_url}/webhooks/agent")
    name = f"att{uuid.uuid4().hex[:6]}"
    create_agent(bot.support_db_url, name)
    create_agent(bot.support_db_url, name + "b")
    agent = await asyncio.to_thread(console.login, name)
    bystander = await asyncio.to_thread(console.login, name + "b")
    claim = await asyncio.to_thread(console.call, "POST", f"/api/tickets/{reference}/claim",
                                    agent)
    assert claim.status_code == 200, claim.text
    detail = (await asyncio.to_thread(console.call, "GET", f"/api/tickets/{reference}",
                                      agent)).json()
    assert [m["attachments"] for m in detail["messages"] if m.get("attachments")] == [[ref]]
    download = await asyncio.to_thread(console.call, "GET", f"/api/attachments/{ref['id']}",
                                       agent)
    assert download.status_code == 200 and download.content == got.content
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    assert (await asyncio.to_thread(console.call, "GET", f"/api/attachments/{ref['id']}",
                                    None)).status_code == 401

    # --- the agent answers with a PDF; only the assignee may upload to the ticket
    def agent_upload(who: str, data: bytes, name: str) -> requests.Response:
        return console.call("POST", f"/api/tickets/{reference}/attachments?name={name}", who,
                            data=data, headers={"Content-Type": "image/png"})

    assert (await asyncio.to_thread(agent_upload, bystander, PDF, "x.pdf")).status_code == 403
    refused = await asyncio.to_thread(agent_upload, agent, HTML_AS_JPEG, "x.pdf")
    assert refused.status_code == 415 and refused.json()["error"]["code"] == "unsupported_type"
    made = await asyncio.to_thread(agent_upload, agent, PDF, "returns label.pdf")
    assert made.status_code == 201, made.text
    pdf = made.json()["attachment"]
    assert (pdf["kind"], pdf["name"], pdf["thumb"]) == ("pdf", "returns label.pdf", False)
    customer = await WidgetClient.connect(bot, token)
    try:
        sent = await asyncio.to_thread(console.call, "POST", f"/api/tickets/{reference}/reply",
                                       agent, json={"attachments": [pdf["id"]],
                                                    "client_id": "pdf-1"})
        assert sent.status_code == 200, sent.text
        assert sent.json()["message"]["attachments"] == [pdf]
        shown = await customer.expect("message", lambda f: f["message"]["sender"] == "agent")
        assert shown["message"]["attachments"] == [pdf]
        bad = await asyncio.to_thread(console.call, "POST", f"/api/tickets/{reference}/reply",
                                      agent, json={"attachments": [ref["id"]]})
        assert bad.status_code == 400  # the customer's upload is not the agent's to send
    finally:
        await customer.close()
    file = await asyncio.to_thread(rest, bot, "GET", f"/attachments/{pdf['id']}", token)
    assert file.status_code == 200 and file.content == PDF
    assert file.headers["Content-Type"] == "application/pdf"
    assert file.headers["Content-Disposition"].startswith('attachment; filename="returns label.pdf"')
    assert (await asyncio.to_thread(rest, bot, "GET", f"/attachments/{pdf['id']}",
                                    other_token)).status_code == 404


async def test_forged_disguised_and_oversized_uploads_store_nothing(embedded_bot: Any) -> None:
    bot = embedded_bot
    user = new_user("att-bad")
    token = token_for(user)
    before = stored_files(bot)

    def big_chunks() -> Any:  # no Content-Length: refused while it is read
        for _ in range(40):
            yield b"\xff\xd8\xff" + b"\x00" * 65536

    cases = [
        (HTML_AS_JPEG, "photo.jpg", 415, "unsupported_type"),
        (b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>", "a.svg", 415,
         "unsupported_type"),
        (b"\xff\xd8\xff" + b"\x00" * 5000, "broken.jpg", 422, "bad_file"),
        (b"", "empty.jpg", 400, "empty"),
        (b"\xff\xd8\xff" + b"\x00" * LIMIT, "big.jpg", 413, "too_large"),
    ]
    for data, name, status, code in cases:
        answer = await asyncio.to_thread(upload, bot, token, data, name)
        assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), name
    streamed = await asyncio.to_thread(upload, bot, token, big_chunks(), "stream.jpg")
    assert streamed.status_code == 413
    assert streamed.json()["error"] == {"code": "too_large",
                                        "message": "Files can be at most 1 MB."}
    assert rows(bot, f"widget:{user}") == []
    assert stored_files(bot) == before
    # unknown ids in a message are refused; nothing is stored
    client = await WidgetClient.connect(bot, token)
    try:
        await client.send({"type": "message", "client_id": "m1", "attachments": ["B" * 24]})
        error = await client.expect("error", lambda f: f.get("client_id") == "m1")
        assert error["code"] == "bad_request"
        await client.send({"type": "message", "client_id": "m2", "attachments": "x"})
        assert (await client.expect("error", lambda f: f.get("client_id") == "m2"))["code"] \
            == "bad_request"
    finally:
        await client.close()
    history = await asyncio.to_thread(rest, bot, "GET", "/history", token)
    assert [m for m in history.json()["messages"] if m["sender"] == "customer"] == []
    # no token, a forged token, an expired token, an unknown origin
    assert (await asyncio.to_thread(upload, bot, None, png_bytes())).status_code == 401
    forged = token_for(user, secret="another-secret-0123456789abcdefghijklmnopqrstuvwxyz")
    refused = await asyncio.to_thread(upload, bot, forged, png_bytes())
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_token"
    expired = token_for(user, ttl=60, now=time.time() - 3600)
    refused = await asyncio.to_thread(upload, bot, expired, png_bytes())
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "token_expired"
    foreign = await asyncio.to_thread(upload, bot, token, png_bytes(), "a.png", "image/png",
                                      origin="https://evil.test")
    assert foreign.status_code == 403
    assert rows(bot, f"widget:{user}") == []
