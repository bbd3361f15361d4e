"""The chat widget in a real browser: the demo shop app, the widget and the real bot.

The widget lives in an open shadow root (``#support-widget``); Playwright's locators
pierce it, plain DOM calls in ``page.evaluate`` go through ``shadowRoot``.

Headless Chromium (Playwright, sync API) opens the demo app (``python -m bot.demo``),
logs in as a demo customer and uses the widget served by the Rasa server's widget
channel. Every assertion is about what the page shows. Each demo customer has one
conversation for the whole module (``widget:<customer id>``), so the tests look at the
newest messages only: Anna (desktop) chats and reloads, Ben (phone) tries XSS and the
FAQ search, Chloé ends her chat.
"""
from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.model

REPLY_MS = 90_000
"""How long to wait for the bot (generous: the machine is shared)."""
UI_MS = 15_000
XSS = "<img src=x onerror=window.__xss=1>"
IN_DIALOG = """() => {
  const active = document.querySelector('#support-widget').shadowRoot.activeElement;
  return document.activeElement.id === 'support-widget' && !!active
    && active.closest('[role=dialog]') !== null;
}"""


@pytest.fixture(autouse=True)
def _generous_timeouts() -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=UI_MS)


# ------------------------------------------------------------------ helpers


def login(context: Any, customer_id: str, screen: str = "home") -> Any:
    """Log in through the demo app's API (the cookie lands in the context); open a page."""
    response = context.request.post("/api/login", data={"customer_id": customer_id})
    assert response.ok, response.text()
    page = context.new_page()
    page.goto(f"/#/{screen}")
    return page


def open_chat(page: Any) -> Any:
    """Tap the chat button; return the dialog once the widget is connected."""
    from playwright.sync_api import expect

    page.locator(".sw-fab").click()
    dialog = page.get_by_role("dialog", name="Northwind Support")
    expect(dialog).to_be_visible()
    expect(dialog.locator(".sw-status")).to_have_text("Online", timeout=REPLY_MS)
    return dialog


def count(page: Any, selector: str) -> int:
    return page.locator(selector).count()


def send(page: Any, text: str) -> None:
    """Type a message and press Enter."""
    box = page.get_by_role("textbox", name="Type your message")
    box.fill(text)
    box.press("Enter")


def wait_for_bot_reply(page: Any, bot_messages_before: int) -> Any:
    """Wait for a new bot message; return the newest one."""
    page.wait_for_function(
        "n => document.querySelector('#support-widget').shadowRoot"
        ".querySelectorAll('.sw-msg[data-sender=bot]').length > n",
        arg=bot_messages_before,
        timeout=REPLY_MS,
    )
    return page.locator(".sw-msg[data-sender=bot]").last


def wait_until_answered(page: Any, text: str) -> Any:
    """Wait until the customer's message ``text`` shows the read ticks (the bot answered)."""
    from playwright.sync_api import expect

    mine = page.locator(".sw-msg[data-sender=customer]", has_text=text).last
    expect(mine.locator(".sw-ticks")).to_have_attribute("data-status", "read", timeout=REPLY_MS)
    return mine


def wait_until(page: Any, condition: Any, timeout_ms: int = UI_MS) -> None:
    """Wait (letting Playwright deliver its events) until ``condition()`` is true."""
    waited = 0
    while not condition():
        assert waited < timeout_ms, "condition not met in time"
        page.wait_for_timeout(100)
        waited += 100


def watch_typing(page: Any) -> None:
    """Record in window.__typingSeen whether the typing indicator became visible."""
    page.evaluate(
        """() => {
          window.__typingSeen = null;
          const box = document.querySelector('#support-widget').shadowRoot
            .querySelector('.sw-typing');
          new MutationObserver(() => {
            if (!box.hidden && box.offsetParent !== null) window.__typingSeen = box.textContent;
          }).observe(box, {attributes: true, attributeFilter: ['hidden'], subtree: true,
                           childList: true, characterData: true});
        }"""
    )


# ------------------------------------------------------------------ tests


def test_login_is_required_before_the_chat_button_appears(desktop: Any) -> None:
    from playwright.sync_api import expect

    page = desktop.new_page()
    page.goto("/#/home")
    expect(page.locator("#who")).to_have_text("Not logged in")
    expect(page.get_by_role("link", name="Log in for chat")).to_be_visible()
    expect(page.locator(".sw-fab")).to_have_count(0)
    assert desktop.request.get("/api/token").status == 401

    page.get_by_role("link", name="Log in for chat").click()
    # Anonymous visitors may search the help articles (no token needed).
    page.get_by_label("Search help articles").press_sequentially("refund", delay=30)
    expect(page.locator(".help-results")).to_contain_text("Refund policy")
    page.get_by_role("button", name=re.compile("Anna Schmidt")).click()

    expect(page.locator(".sw-fab")).to_be_visible()
    expect(page.get_by_role("link", name="Log in for chat")).to_be_hidden()
    expect(page.locator("#who")).to_have_text("Anna Schmidt")


def test_fab_is_hidden_on_checkout_and_shown_elsewhere(phone: Any, screenshots: Path) -> None:
    from playwright.sync_api import expect

    page = login(phone, "cust-anna", "checkout")
    expect(page.get_by_role("heading", name="Checkout")).to_be_visible()
    expect(page.locator(".sw-fab")).to_be_hidden()

    for screen, heading in (("home", "Hello, Anna"), ("product/2", "Rain jacket"),
                            ("cart", "Cart"), ("orders", "Your orders")):
        page.goto(f"/#/{screen}")
        expect(page.get_by_role("heading", name=heading)).to_be_visible()
        expect(page.locator(".sw-fab")).to_be_visible()
    # The orders screen lists Anna's real orders from the order source.
    expect(page.get_by_text("Order #104233")).to_be_visible()
    expect(page.get_by_text("Order #104301")).to_be_visible()

    page.screenshot(path=str(screenshots / "phone-orders.png"))

    page.goto("/#/checkout")
    expect(page.locator(".sw-fab")).to_be_hidden()
    page.goto("/#/home")
    expect(page.locator(".sw-fab")).to_be_visible()


def test_send_a_message_see_typing_reply_and_read_ticks(desktop: Any, screenshots: Path) -> None:
    from playwright.sync_api import expect

    page = login(desktop, "cust-anna")
    dialog = open_chat(page)
    box = dialog.bounding_box()
    assert box["width"] <= 420 and box["height"] < 800, f"not a panel on desktop: {box}"
    watch_typing(page)
    bots = count(page, ".sw-msg[data-sender=bot]")

    send(page, "hi")

    mine = page.locator(".sw-msg[data-sender=customer]").last
    expect(mine.locator(".sw-text")).to_have_text("hi")
    reply = wait_for_bot_reply(page, bots)
    expect(reply.locator(".sw-text")).to_contain_text("Northwind Shop assistant")
    expect(reply.locator("time")).to_have_text(re.compile(r"\d{1,2}:\d{2}"))
    assert page.evaluate("window.__typingSeen") == "Assistant is typing"
    expect(page.locator(".sw-typing")).to_be_hidden(timeout=REPLY_MS)
    # The customer's message: delivered to the bot, then read (answered).
    expect(mine.locator(".sw-ticks")).to_have_attribute("data-status", "read", timeout=REPLY_MS)
    expect(mine.locator(".sw-meta")).to_contain_text("Read")
    expect(mine.locator(".sw-ticks")).to_have_text("\u2713\u2713")
    # Quick replies for the greeting's buttons.
    quick = page.get_by_role("group", name="Suggested replies")
    expect(quick.get_by_role("button", name="Track my order")).to_be_visible()
    page.screenshot(path=str(screenshots / "desktop.png"))


def test_quick_reply_sends_the_button_and_the_bot_answers(desktop: Any) -> None:
    from playwright.sync_api import expect

    page = login(desktop, "cust-anna", "orders")
    open_chat(page)
    quick = page.get_by_role("group", name="Suggested replies")
    if not quick.get_by_role("button", name="Track my order").is_visible():
        bots = count(page, ".sw-msg[data-sender=bot]")
        send(page, "hello")
        wait_for_bot_reply(page, bots)
    bots = count(page, ".sw-msg[data-sender=bot]")

    quick.get_by_role("button", name="Track my order").click()

    expect(page.locator(".sw-msg[data-sender=customer] .sw-text").last).to_have_text(
        "Track my order"
    )
    expect(quick).to_be_hidden()  # the buttons go once one was used
    reply = wait_for_bot_reply(page, bots)
    expect(reply.locator(".sw-text")).to_contain_text("Which order is it about?")
    # The bot offers Anna's recent orders as new quick replies; pick the one in transit.
    order_button = quick.get_by_role("button", name=re.compile(r"#104233"))
    expect(order_button).to_be_visible()
    bots = count(page, ".sw-msg[data-sender=bot]")
    order_button.click()
    reply = wait_for_bot_reply(page, bots)
    expect(reply.locator(".sw-text")).to_contain_text("104233")


def test_history_survives_a_reload(desktop: Any) -> None:
    from playwright.sync_api import expect

    page = login(desktop, "cust-anna")
    open_chat(page)
    marker = f"where is my order 104190 ({uuid.uuid4().hex[:6]})"
    send(page, marker)
    wait_until_answered(page, marker)
    before = page.locator(".sw-msg .sw-text").all_inner_texts()

    page.reload()
    open_chat(page)

    expect(page.locator(".sw-msg[data-sender=customer] .sw-text", has_text=marker)).to_have_count(1)
    after = page.locator(".sw-msg .sw-text").all_inner_texts()
    shown = min(len(before), len(after), 20)
    assert shown >= 2 and after[-shown:] == before[-shown:], (before, after)
    # Nothing was sent twice and nothing waits in the queue.
    assert page.evaluate("Object.keys(localStorage).filter(k => k.includes('outbox'))") == []


def test_messages_typed_offline_are_queued_and_sent_once_after_restart(desktop: Any) -> None:
    """No connection: the message waits in localStorage; after an app restart it goes out once."""
    from playwright.sync_api import expect

    online = {"on": False}

    def route(ws: Any) -> None:  # while "offline" the socket never reaches the server
        if online["on"]:
            ws.connect_to_server()

    desktop.route_web_socket(re.compile(r"/webhooks/widget/ws$"), route)
    page = login(desktop, "cust-anna")
    page.locator(".sw-fab").click()
    expect(page.locator(".sw-status")).not_to_have_text("Online")
    text = f"track order 104233 please ({uuid.uuid4().hex[:6]})"
    send(page, text)
    pending = page.locator(".sw-msg[data-sender=customer]", has_text=text)
    expect(pending.locator(".sw-ticks")).to_have_attribute("data-status", "pending")
    expect(pending.locator(".sw-meta")).to_contain_text("Sending")
    queued = page.evaluate(
        "JSON.parse(localStorage.getItem('supportwidget:v1:outbox:cust-anna') || '[]')"
    )
    assert [entry["text"] for entry in queued] == [text]

    online["on"] = True
    page.reload()  # the app restarts: the queue comes back from localStorage
    dialog = open_chat(page)
    mine = dialog.locator(".sw-msg[data-sender=customer]", has_text=text)
    expect(mine.locator(".sw-ticks")).to_have_attribute("data-status", "read", timeout=REPLY_MS)
    expect(mine).to_have_count(1)
    expect(page.locator(".sw-msg").last).to_have_attribute("data-sender", "bot")
    assert page.evaluate("localStorage.getItem('supportwidget:v1:outbox:cust-anna')") is None


def test_xss_payload_is_shown_as_text(phone: Any) -> None:
    from playwright.sync_api import expect

    page = login(phone, "cust-ben")
    open_chat(page)
    bots = count(page, ".sw-msg[data-sender=bot]")

    send(page, XSS)

    mine = page.locator(".sw-msg[data-sender=customer]").last
    expect(mine.locator(".sw-text")).to_have_text(XSS)
    wait_for_bot_reply(page, bots)
    expect(mine.locator(".sw-ticks")).to_have_attribute("data-status", "read", timeout=REPLY_MS)
    assert page.locator(".sw-log img").count() == 0
    assert page.evaluate("typeof window.__xss") == "undefined"
    # After a reload the stored message is still plain text.
    page.reload()
    open_chat(page)
    expect(page.locator(".sw-msg[data-sender=customer] .sw-text").last).to_have_text(XSS)
    assert page.locator(".sw-log img").count() == 0
    assert page.evaluate("typeof window.__xss") == "undefined"


def test_faq_suggestions_appear_while_typing(phone: Any, screenshots: Path) -> None:
    from playwright.sync_api import expect

    page = login(phone, "cust-ben")
    dialog = open_chat(page)
    box = dialog.bounding_box()
    assert (box["x"], box["y"], box["width"], box["height"]) == (0, 0, 390, 844), box
    customers = count(page, ".sw-msg[data-sender=customer]")

    page.get_by_role("textbox", name="Type your message").press_sequentially("refund", delay=40)

    suggestion = page.locator(".sw-suggestion", has_text="Refund policy")
    expect(suggestion).to_be_visible()
    page.screenshot(path=str(screenshots / "phone.png"))
    assert count(page, ".sw-msg[data-sender=customer]") == customers  # nothing was sent
    suggestion.click()
    article = page.get_by_role("region", name="Help article")
    expect(article.get_by_role("heading", name="Refund policy")).to_be_visible()
    expect(article.locator(".sw-article-body")).to_contain_text(re.compile("refund", re.I))
    page.get_by_role("button", name="Back to chat").click()
    expect(page.get_by_role("textbox", name="Type your message")).to_have_value("refund")


def test_end_chat_ends_the_session(phone: Any) -> None:
    from playwright.sync_api import expect

    page = login(phone, "cust-chloe")
    open_chat(page)
    bots = count(page, ".sw-msg[data-sender=bot]")
    send(page, "hi")
    wait_for_bot_reply(page, bots)
    ended = count(page, ".sw-msg[data-sender=system]")

    page.get_by_role("button", name="End chat").click()
    page.get_by_role("group", name="End chat?").get_by_role("button", name="End chat").click()

    notice = page.locator(".sw-msg[data-sender=system]")
    expect(notice).to_have_count(ended + 1)
    expect(notice.last).to_have_text(re.compile("Chat ended"))
    expect(page.get_by_role("group", name="Suggested replies")).to_be_hidden()
    # The chat goes on in a new session.
    bots = count(page, ".sw-msg[data-sender=bot]")
    send(page, "hello")
    expect(wait_for_bot_reply(page, bots).locator(".sw-text")).not_to_be_empty()


def test_keyboard_focus_stays_in_the_open_dialog(desktop: Any) -> None:
    from playwright.sync_api import expect

    page = login(desktop, "cust-anna")
    fab = page.get_by_role("button", name=re.compile("^Open support chat"))
    expect(fab).to_be_visible()
    fab.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Northwind Support")
    expect(dialog).to_have_attribute("aria-modal", "true")
    expect(page.get_by_role("textbox", name="Type your message")).to_be_focused()
    expect(page.get_by_role("log", name="Messages")).to_have_attribute("aria-live", "polite")
    for _ in range(12):
        page.keyboard.press("Tab")
        assert page.evaluate(IN_DIALOG)
    for _ in range(4):
        page.keyboard.press("Shift+Tab")
        assert page.evaluate(IN_DIALOG)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(fab).to_be_focused()


def test_unread_badge_and_messages_from_another_device(desktop: Any) -> None:
    """Anna chats on a second device; the first shows her message, the reply and a badge."""
    from playwright.sync_api import expect

    first = login(desktop, "cust-anna", "orders")
    fab = first.get_by_role("button", name=re.compile("^Open support chat"))
    expect(fab).to_be_visible()
    expect(first.locator(".sw-badge")).to_be_hidden()
    second = desktop.new_page()
    second.goto("/#/home")
    open_chat(second)
    text = f"what are your delivery times? ({uuid.uuid4().hex[:6]})"

    send(second, text)
    wait_until_answered(second, text)

    expect(first.locator(".sw-badge")).to_be_visible()
    expect(first.locator(".sw-badge")).to_have_text(re.compile(r"^[1-9]"))
    expect(fab).to_have_attribute("aria-label", re.compile(r"Open support chat, \d+ unread"))
    open_chat(first)
    expect(first.locator(".sw-msg[data-sender=customer]", has_text=text)).to_have_count(1)
    expect(first.locator(".sw-msg").last).to_have_attribute("data-sender", "bot")
    first.keyboard.press("Escape")
    expect(fab).to_be_visible()
    expect(first.locator(".sw-badge")).to_be_hidden()  # read while the chat was open


def test_reconnects_and_refreshes_the_token(desktop: Any) -> None:
    """Close codes 4001 (new token, reconnect) and 1001 (reconnect); token_expiring (auth)."""
    from playwright.sync_api import expect

    sockets: list = []
    sent: list = []
    received: list = []

    def route(ws: Any) -> None:  # a transparent proxy that records the frames
        server = ws.connect_to_server()
        ws.on_message(lambda frame: (sent.append(json.loads(frame)), server.send(frame)))
        server.on_message(lambda frame: (received.append(json.loads(frame)), ws.send(frame)))
        sockets.append(ws)

    desktop.route_web_socket(re.compile(r"/webhooks/widget/ws$"), route)
    page = login(desktop, "cust-chloe")
    dialog = open_chat(page)
    status = dialog.locator(".sw-status")
    tokens = []
    page.on("request", lambda r: tokens.append(r.url) if r.url.endswith("/api/token") else None)

    sockets[-1].close(code=4001, reason="invalid_token")  # as if the token were refused
    expect(status).not_to_have_text("Online")
    wait_until(page, lambda: len(sockets) == 2 and len(tokens) == 1)
    expect(status).to_have_text("Online", timeout=REPLY_MS)

    sockets[-1].close(code=1001, reason="going away")
    expect(status).not_to_have_text("Online")
    wait_until(page, lambda: len(sockets) == 3)
    expect(status).to_have_text("Online", timeout=REPLY_MS)

    sockets[-1].send(json.dumps({"type": "token_expiring", "expires_at": 0}))
    wait_until(page, lambda: any(f.get("type") == "auth_ok" for f in received))
    auths = [f for f in sent if f.get("type") == "auth"]
    assert len(auths) == 1 and auths[0]["token"], sent
    assert len(tokens) == 2, tokens  # the widget asked the host app for a fresh token
    expect(status).to_have_text("Online")

    text = f"hello again ({uuid.uuid4().hex[:6]})"
    send(page, text)
    wait_until_answered(page, text)


def test_rest_routes_answer_the_apps_origin_with_a_token(desktop: Any, widget_stack: Any) -> None:
    """What the widget's REST fallback needs: CORS preflight with Authorization passes."""
    page = login(desktop, "cust-ben")
    result = page.evaluate(
        """async (server) => {
          const {token} = await (await fetch('/api/token')).json();
          const res = await fetch(server + '/webhooks/widget/history?limit=5',
                                  {headers: {Authorization: 'Bearer ' + token}});
          return {status: res.status, body: await res.json()};
        }""",
        widget_stack.bot.rasa_url,
    )
    assert result["status"] == 200, result
    assert isinstance(result["body"]["messages"], list), result

# ------------------------------------------------------------------ scripted server
# Agents do not exist yet and the real server never refuses an allowed origin, so these
# tests answer the widget's WebSocket themselves (Playwright's WebSocket routing).


def _scripted_server(context: Any, on_hello: Any) -> list:
    """Route the widget's socket to a fake server; return the frames the page sends."""
    frames: list = []

    def route(ws: Any) -> None:
        def on_message(raw: str) -> None:
            frame = json.loads(raw)
            frames.append(frame)
            for reply in on_hello(frame):
                if isinstance(reply, int):
                    ws.close(code=reply)
                else:
                    ws.send(json.dumps(reply))

        ws.on_message(on_message)

    context.route_web_socket(re.compile(r"/webhooks/widget/ws$"), route)
    return frames


def _wire(message_id: int, sender: str, text: str, name: Any = None) -> dict:
    return {"type": "message", "message": {
        "id": message_id, "client_id": None, "sender": sender, "sender_name": name,
        "text": text, "buttons": [], "status": "sent", "session": 1,
        "created_at": "2026-11-23T09:00:00Z"}}


WELCOME = {"type": "welcome", "conversation_id": "widget:cust-anna",
           "user": {"id": "cust-anna", "name": "Anna Schmidt"}, "expires_at": 4102444800,
           "session": 1, "limits": {"max_message_chars": 2000, "rate_messages": 20,
                                    "rate_window": 60, "typing_interval": 2,
                                    "max_connections": 5}}


def test_end_chat_after_an_agent_asks_for_a_rating(desktop: Any) -> None:
    from playwright.sync_api import expect

    def server(frame: dict) -> list:
        if frame["type"] == "hello":
            return [WELCOME, _wire(7, "bot", "Let me get a colleague."),
                    _wire(8, "agent", "Hi, I'm Maria. How can I help?", "Maria (Support)")]
        if frame["type"] == "end":
            return [_wire(9, "system", "Chat ended"), {"type": "session_ended", "session": 2}]
        if frame["type"] == "rate":
            return [{"type": "rated", "session": frame["session"], "score": frame["score"]}]
        return []

    sent = _scripted_server(desktop, server)
    page = login(desktop, "cust-anna")
    page.evaluate("""() => document.addEventListener('supportwidget:rating',
                                                    e => { window.__rating = e.detail; })""")
    dialog = open_chat(page)
    agent = dialog.locator(".sw-msg[data-sender=agent]")
    expect(agent.locator(".sw-sender")).to_have_text("Maria (Support)")
    expect(agent.locator(".sw-text")).to_have_text("Hi, I'm Maria. How can I help?")

    dialog.get_by_role("button", name="End chat").click()
    dialog.get_by_role("group", name="End chat?").get_by_role("button", name="End chat").click()

    expect(dialog.locator(".sw-msg[data-sender=system]")).to_have_text(re.compile("Chat ended"))
    rating = dialog.get_by_role("group", name="Rate this chat")
    expect(rating).to_contain_text("How was your chat with Maria (Support)?")
    send_rating = rating.get_by_role("button", name="Send rating")
    expect(send_rating).to_be_disabled()  # choose a score first
    rating.get_by_role("button", name="4 stars").click()
    expect(rating.get_by_role("button", name="4 stars")).to_have_attribute("aria-pressed", "true")
    expect(rating.get_by_role("button", name="5 stars")).to_have_attribute("aria-pressed", "false")
    rating.get_by_role("textbox", name="Comment (optional)").fill("Quick & <b>kind</b>")
    send_rating.click()
    expect(rating).to_have_text("Thank you for your feedback.")
    assert [f for f in sent if f["type"] == "rate"] == [
        {"type": "rate", "session": 1, "score": 4, "comment": "Quick & <b>kind</b>"}]
    assert page.evaluate("window.__rating") == {
        "session": 1, "rating": 4, "agent": "Maria (Support)"}


def test_a_refused_origin_shows_chat_unavailable(desktop: Any) -> None:
    from playwright.sync_api import expect

    frames = _scripted_server(desktop, lambda frame: [4003] if frame["type"] == "hello" else [])
    page = login(desktop, "cust-anna")
    page.locator(".sw-fab").click()
    dialog = page.get_by_role("dialog", name="Northwind Support")
    expect(dialog.locator(".sw-status")).to_have_text("Chat unavailable")
    page.wait_for_timeout(2500)  # longer than the first reconnect delay: none happens
    assert [f["type"] for f in frames] == ["hello"]


def test_a_photo_and_a_pdf_are_sent_and_shown(phone: Any, screenshots: Path) -> None:
    """The paper clip uploads over HTTP; the photo shows as its thumbnail (fetched with the
    token into a blob: URL), the PDF as a file chip; a disguised file is refused."""
    from playwright.sync_api import expect

    from tests.attachments.conftest import HTML_AS_JPEG, PDF, jpeg_with_gps

    page = login(phone, "cust-ben")
    dialog = open_chat(page)
    clip = dialog.get_by_role("button", name="Send a photo or PDF")
    expect(clip).to_be_visible()
    size = clip.bounding_box()
    assert size["width"] >= 44 and size["height"] >= 44, size  # a thumb can hit it
    bots = count(page, ".sw-msg[data-sender=bot]")

    page.locator(".sw-file").set_input_files(
        files=[{"name": "broken mug.jpg", "mimeType": "image/jpeg", "buffer": jpeg_with_gps()}])
    mine = page.locator(".sw-msg[data-sender=customer]").last
    thumb = mine.locator("img.sw-att-thumb")
    expect(thumb).to_have_attribute("alt", "broken mug.jpg")
    expect(thumb).to_have_attribute("src", re.compile(r"^blob:"))
    page.wait_for_function(
        "() => { const i = [...document.querySelector('#support-widget').shadowRoot"
        ".querySelectorAll('img.sw-att-thumb')].pop(); return i && i.complete"
        " && i.naturalWidth === 320 && i.naturalHeight === 240; }", timeout=UI_MS)
    expect(mine.locator(".sw-ticks")).to_have_attribute("data-status", "read", timeout=REPLY_MS)
    reply = wait_for_bot_reply(page, bots)
    expect(reply.locator(".sw-text")).to_contain_text("kept your file")

    page.locator(".sw-file").set_input_files(
        files=[{"name": "receipt.pdf", "mimeType": "application/pdf", "buffer": PDF}])
    chip = page.locator(".sw-msg[data-sender=customer] .sw-att-file").last
    expect(chip.locator(".sw-att-name")).to_have_text("receipt.pdf")
    expect(chip.locator(".sw-att-kind")).to_have_text("PDF")
    page.screenshot(path=str(screenshots / "phone-attachments.png"))

    shown = count(page, ".sw-msg[data-sender=customer]")
    page.locator(".sw-file").set_input_files(
        files=[{"name": "cute.jpg", "mimeType": "image/jpeg", "buffer": HTML_AS_JPEG}])
    expect(dialog.locator(".sw-notice")).to_have_text(
        "Only photos (JPEG, PNG, WebP, GIF) and PDF files can be sent.")
    assert count(page, ".sw-msg[data-sender=customer]") == shown  # nothing was sent

    # after a reload the photo comes back from the history, thumbnail and all
    page.reload()
    open_chat(page)
    expect(page.locator("img.sw-att-thumb[alt='broken mug.jpg']").last).to_have_attribute(
        "src", re.compile(r"^blob:"))


def test_a_german_customer_reads_the_widget_and_the_bot_in_german(
    browser: Any, widget_stack: Any, screenshots: Path
) -> None:
    """Anna in German (the demo login's "Chat language", sent as the app context's locale:
    the other tests of this module chatted with her in English, and the app's locale wins
    over her token's de-DE): every widget string, the lang attribute, the time format and
    the bot's replies are German."""
    from playwright.sync_api import expect

    from tests.browser.conftest import DESKTOP

    context = browser.new_context(base_url=widget_stack.demo_url, **DESKTOP)
    context.add_init_script("localStorage.setItem('demo:chat-language', 'de');")
    try:
        page = login(context, "cust-anna")
        page.locator(".sw-fab").click()
        dialog = page.get_by_role("dialog", name="Northwind Support")
        expect(dialog).to_be_visible()
        expect(dialog.locator(".sw-status")).to_have_text("Online", timeout=REPLY_MS)
        assert page.evaluate(
            "() => document.querySelector('#support-widget').shadowRoot"
            ".querySelector('.sw-root').getAttribute('lang')") == "de"
        box = page.get_by_role("textbox", name="Nachricht eingeben")
        expect(box).to_have_attribute("placeholder", "Nachricht eingeben")
        expect(page.get_by_role("button", name="Nachricht senden")).to_be_visible()
        expect(page.get_by_role("button", name="Chat schließen")).to_be_visible()
        expect(dialog.locator(".sw-end")).to_have_text("Chat beenden")
        # a fresh session (earlier tests leave Anna's chat in any state), asked in German
        dialog.locator(".sw-end").click()
        expect(page.get_by_role("group", name="Chat beenden?")).to_be_visible()
        expect(page.get_by_text("Diesen Chat beenden?")).to_be_visible()
        page.locator(".sw-confirm .sw-danger").click()
        expect(page.locator(".sw-msg[data-sender=system]", has_text="Chat beendet").last
               ).to_be_visible(timeout=REPLY_MS)
        before = count(page, ".sw-msg[data-sender=bot]")
        box.fill("Hallo")
        box.press("Enter")
        reply = wait_for_bot_reply(page, before)
        expect(reply).to_contain_text("Was kann ich für Sie tun?", timeout=REPLY_MS)
        expect(page.get_by_role("button", name="Meine Bestellung verfolgen")).to_be_visible()
        mine = page.locator(".sw-msg[data-sender=customer]", has_text="Hallo").last
        expect(mine.locator(".sw-ticks")).to_have_attribute("data-status", "read", timeout=REPLY_MS)
        expect(mine).to_contain_text("Gelesen")
        stamp = mine.locator("time").first.get_attribute("datetime")
        shown = mine.locator("time").first.inner_text()
        expected = page.evaluate(
            "iso => new Date(iso).toLocaleString('de-DE', {hour: '2-digit', minute: '2-digit'})",
            stamp)
        assert shown == expected
        dialog.locator(".sw-end").click()
        page.get_by_role("button", name="Abbrechen").click()
        expect(page.get_by_role("group", name="Chat beenden?")).to_be_hidden()
        page.screenshot(path=str(screenshots / "widget-german.png"))
    finally:
        context.close()
