"""End to end in two phone-sized browser contexts: a customer in the demo shop app's widget
and an agent in the console, against the real bot (one bot + demo app for the module).

customer asks for a person → the agent is notified and sees ticket, transcript and context
→ claims → types (the customer sees the agent typing) → replies (the customer sees it; the
agent sees the read receipt) → the customer answers (the agent sees it live; the customer
sees it read) → the agent resolves → the customer rates 5 → the dashboard shows it.
Screenshots: test-output/screenshots/agent-*.png.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.agent_console.conftest import PASSWORD, create_agent
from tests.browser.conftest import (  # noqa: F401 - fixtures used by name
    PHONE,
    WidgetStack,
    browser,
    chromium,
    screenshots,
    widget_stack,
)

pytestmark = pytest.mark.model

REPLY_MS = 90_000
UI_MS = 20_000
CUSTOMER = "cust-ben"


@pytest.fixture(autouse=True)
def _timeouts() -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=UI_MS)


@pytest.fixture
def customer_page(browser: Any, widget_stack: WidgetStack) -> Iterator[Any]:  # noqa: F811
    context = browser.new_context(base_url=widget_stack.demo_url, **PHONE)
    try:
        response = context.request.post("/api/login", data={"customer_id": CUSTOMER})
        assert response.ok, response.text()
        page = context.new_page()
        page.goto("/#/home")
        yield page
    finally:
        context.close()


@pytest.fixture
def agent_page(browser: Any, widget_stack: WidgetStack) -> Iterator[Any]:  # noqa: F811
    create_agent(widget_stack.bot.support_db_url, "maria", name="Maria")
    context = browser.new_context(base_url=widget_stack.bot.rasa_url, **PHONE)
    context.grant_permissions(["notifications"], origin=widget_stack.bot.rasa_url)
    try:
        page = context.new_page()
        page.goto("/webhooks/agent/")
        yield page
    finally:
        context.close()


def test_customer_to_agent_and_back(customer_page: Any, agent_page: Any,
                                    widget_stack: WidgetStack,
                                    screenshots: Path) -> None:  # noqa: F811
    from playwright.sync_api import expect

    customer, agent = customer_page, agent_page
    errors: list = []
    agent.on("pageerror", lambda error: errors.append(str(error)))

    # the agent logs in (bad password first: a clear message, no crash)
    agent.get_by_label("Username").fill("maria")
    agent.get_by_label("Password").fill("wrong password")
    agent.get_by_role("button", name="Log in").click()
    expect(agent.get_by_role("alert").filter(has_text="Wrong username or password")).to_be_visible()
    agent.get_by_label("Password").fill(PASSWORD)
    agent.get_by_role("button", name="Log in").click()
    expect(agent.locator("#ac-inbox")).to_contain_text("No tickets")

    # the customer asks for a person
    customer.locator(".sw-fab").click()
    dialog = customer.get_by_role("dialog", name="Northwind Support")
    expect(dialog.locator(".sw-status")).to_have_text("Online", timeout=REPLY_MS)
    box = customer.get_by_role("textbox", name="Type your message")
    box.fill("I want to talk to a person")
    box.press("Enter")
    expect(customer.locator(".sw-msg[data-sender=bot]").last).to_contain_text(
        "person", timeout=REPLY_MS)

    # the agent is notified (push + sound/toast + badge) and sees the ticket
    item = agent.locator(".ac-item[data-state=queued]").first
    expect(item).to_be_visible(timeout=REPLY_MS)
    expect(item).to_contain_text("Ben Carter")
    expect(agent.locator("#ac-badge")).to_be_visible()
    assert agent.evaluate("window.__acNotified") >= 1
    expect(agent.locator("#ac-toast")).to_contain_text("New ticket")
    agent.screenshot(path=str(screenshots / "agent-inbox.png"), full_page=True)

    item.click()
    expect(agent.locator("#ac-log")).to_contain_text("I want to talk to a person")
    expect(agent.get_by_role("region", name="Customer", exact=True)).to_contain_text("Ben Carter")
    expect(agent.get_by_role("region", name="Triage")).to_contain_text("Confidence")
    expect(agent.get_by_role("region", name="Customer", exact=True)).to_contain_text("App context")
    # Ben's latest orders came with the handoff (bot/orders.py demo data)
    expect(agent.get_by_role("region", name="Customer", exact=True)).to_contain_text("#104250")
    expect(agent.locator("#ac-canned button").first).to_be_visible()

    # claim
    agent.locator("#ac-claim").click()
    expect(agent.locator("#ac-ticket-state")).to_have_text("assigned")
    reply = agent.get_by_label("Reply to the customer")
    expect(reply).to_be_enabled()

    # typing is shown to the customer, then the reply arrives
    reply.press_sequentially("Hi Ben, this is Maria", delay=40)
    typing = customer.locator(".sw-typing")
    expect(typing).to_be_visible(timeout=UI_MS)
    expect(typing).to_contain_text("Maria")
    reply.press("Enter")
    answer = customer.locator(".sw-msg[data-sender=agent]").last
    expect(answer).to_contain_text("Hi Ben, this is Maria", timeout=UI_MS)
    # the customer's widget is open: the agent sees the message read
    expect(agent.locator("#ac-log .ac-msg[data-sender=agent] .ac-ticks").last).to_have_attribute(
        "data-status", "read", timeout=UI_MS)

    # the customer answers; the agent (conversation open) sees it and reads it
    box.press_sequentially("Thanks! My parcel is late", delay=30)
    expect(agent.locator("#ac-typing")).to_contain_text("typing", timeout=UI_MS)
    box.press("Enter")
    expect(agent.locator("#ac-log .ac-msg[data-sender=customer]").last).to_contain_text(
        "My parcel is late", timeout=UI_MS)
    mine = customer.locator(".sw-msg[data-sender=customer]", has_text="My parcel is late").last
    expect(mine.locator(".sw-ticks")).to_have_attribute("data-status", "read", timeout=UI_MS)
    agent.screenshot(path=str(screenshots / "agent-conversation.png"), full_page=True)

    # a photo from the customer shows in the console as its thumbnail; the agent's PDF
    # reaches the widget as a file chip (bot/attachments)
    from tests.attachments.conftest import PDF, jpeg_with_gps

    customer.locator(".sw-file").set_input_files(
        files=[{"name": "parcel.jpg", "mimeType": "image/jpeg", "buffer": jpeg_with_gps()}])
    thumb = agent.locator("#ac-log .ac-msg[data-sender=customer] img.ac-att-thumb").last
    expect(thumb).to_have_attribute("src", re.compile(r"^blob:"), timeout=UI_MS)
    expect(thumb).to_have_attribute("alt", "parcel.jpg")
    agent.locator(".ac-file").set_input_files(
        files=[{"name": "returns label.pdf", "mimeType": "application/pdf", "buffer": PDF}])
    chip = customer.locator(".sw-msg[data-sender=agent] .sw-att-file").last
    expect(chip.locator(".sw-att-name")).to_have_text("returns label.pdf", timeout=UI_MS)
    expect(agent.locator("#ac-log .ac-msg[data-sender=agent] .ac-att-file").last).to_contain_text(
        "returns label.pdf")

    # resolve → the customer is asked for a rating and rates 5
    agent.locator("#ac-resolve-note").fill("parcel late, carrier asked")
    agent.locator("#ac-resolve").click()
    expect(agent.locator("#ac-ticket-state")).to_have_text("resolved")
    rating = customer.get_by_role("group", name="Rate this chat")
    expect(rating).to_be_visible(timeout=REPLY_MS)
    rating.get_by_role("button", name="5 stars").click()
    rating.get_by_role("button", name="Send rating").click()
    expect(customer.locator(".sw-rating")).to_contain_text("Thank you", timeout=UI_MS)
    customer.screenshot(path=str(screenshots / "agent-customer.png"), full_page=True)

    # the dashboard shows the resolution time, the rating and the rates
    agent.goto("/webhooks/agent/#/dashboard")
    expect(agent.locator("[data-kpi=csat]")).to_contain_text("5.00 / 5")
    expect(agent.locator("[data-kpi=resolution-avg] b")).not_to_have_text("–")
    expect(agent.locator("[data-kpi=first-response-avg] b")).not_to_have_text("–")
    expect(agent.locator("[data-kpi=handoff] b")).to_contain_text("%")
    expect(agent.locator("[data-kpi=self-service] b")).to_contain_text("%")
    expect(agent.locator("#ac-dashboard svg").first).to_be_visible()
    agent.screenshot(path=str(screenshots / "agent-dashboard.png"), full_page=True)
    assert not errors, errors
