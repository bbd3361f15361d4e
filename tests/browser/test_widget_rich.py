"""FAQ answers read well: the widget and the agent console draw an article's Markdown as
real headings, lists, tables and links (bot/richtext.py "blocks"), on a 360 px phone too.

One bot and demo app for the module (tests/browser/conftest.py). Anna (360 px phone) asks
about cancellation fees and delivery options in the chat; Ben (phone) opens an article from
the FAQ suggestions and gets a crafted message with hostile blocks; Chloé asks a FAQ question,
then for a person, and the agent sees the article in the ticket's conversation.
Screenshots: test-output/screenshots/rich-*.png.
"""
from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.browser.conftest import ENGLISH_CHAT, PHONE, WidgetStack

pytestmark = pytest.mark.model

REPLY_MS = 90_000
UI_MS = 15_000
NARROW = {**PHONE, "viewport": {"width": 360, "height": 740}}
IN_SHADOW = "document.querySelector('#support-widget').shadowRoot"


@pytest.fixture(autouse=True)
def _timeouts() -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=UI_MS)


@pytest.fixture
def narrow_phone(browser: Any, widget_stack: WidgetStack) -> Iterator[Any]:
    """A 360 px wide phone (the narrowest common Android width)."""
    context = browser.new_context(base_url=widget_stack.demo_url, **NARROW)
    context.add_init_script(ENGLISH_CHAT)
    try:
        yield context
    finally:
        context.close()


# ------------------------------------------------------------------ helpers


def login(context: Any, customer_id: str) -> Any:
    response = context.request.post("/api/login", data={"customer_id": customer_id})
    assert response.ok, response.text()
    page = context.new_page()
    page.goto("/#/home")
    return page


def open_chat(page: Any) -> Any:
    from playwright.sync_api import expect

    page.locator(".sw-fab").click()
    dialog = page.get_by_role("dialog", name="Northwind Support")
    expect(dialog.locator(".sw-status")).to_have_text("Online", timeout=REPLY_MS)
    return dialog


def ask(page: Any, text: str) -> Any:
    """Send ``text``; return the bot's answer once it is shown."""
    before = page.locator(".sw-msg[data-sender=bot]").count()
    box = page.get_by_role("textbox", name="Type your message")
    box.fill(text)
    box.press("Enter")
    page.wait_for_function(
        f"n => {IN_SHADOW}.querySelectorAll('.sw-msg[data-sender=bot]').length > n",
        arg=before, timeout=REPLY_MS)
    return page.locator(".sw-msg[data-sender=bot]").last


def run_async(make: Callable[[], Any]) -> Any:
    """Run a coroutine on a fresh loop in a worker thread (Playwright's loop is running)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def layout(page: Any) -> dict:
    """Widths (px) of the page, the chat panel and the newest table, and who scrolls."""
    return page.evaluate(f"""() => {{
      const root = {IN_SHADOW};
      const scroller = root.querySelector('.sw-scroll');
      const wraps = root.querySelectorAll('.sw-msg .sw-table');
      const wrap = wraps[wraps.length - 1];
      const bubble = wrap.closest('.sw-bubble');
      const box = (el) => el.getBoundingClientRect();
      return {{
        page: document.documentElement.scrollWidth,
        viewport: window.innerWidth,
        modal: box(root.querySelector('.sw-modal')).width,
        scroller: {{scroll: scroller.scrollWidth, client: scroller.clientWidth,
                    right: box(scroller).right, left: scroller.scrollLeft}},
        bubbleRight: box(bubble).right,
        wrap: {{left: box(wrap).left, right: box(wrap).right, scroll: wrap.scrollWidth,
                client: wrap.clientWidth, overflowX: getComputedStyle(wrap).overflowX}},
        table: box(wrap.querySelector('table')).width,
      }};
    }}""")


# ------------------------------------------------------------------ tests


def test_faq_answer_shows_table_list_and_headings_at_360_px(
    narrow_phone: Any, screenshots: Path
) -> None:
    from playwright.sync_api import expect

    page = login(narrow_phone, "cust-anna")
    open_chat(page)
    answer = ask(page, "what are the cancellation fees?")

    # the summary answers at once; the article is folded under it
    expect(answer.locator(".sw-text")).to_contain_text("Cancelling is free as long as your order")
    more = answer.locator("details.sw-rich-more")
    expect(more.locator("summary")).to_have_text("Read more")
    expect(more.locator("table")).to_be_hidden()
    more.locator("summary").click()

    rich = more.locator(".sw-rich")
    expect(rich.get_by_role("heading", name="Cancellation fees", exact=True)).to_be_visible()
    assert rich.locator("h3").first.inner_text() == "Cancellation fees"
    expect(rich.get_by_role("heading", name="How to cancel")).to_be_visible()
    table = rich.get_by_role("table")
    expect(table).to_be_visible()
    expect(table.get_by_role("columnheader")).to_have_text(["Situation", "Can I cancel?", "Cost"])
    expect(table.locator("tbody tr")).to_have_count(4)
    expect(table.locator("tbody tr").first.locator("td").first).to_have_text(
        "Status Processing or Packed (not shipped yet)")
    expect(table.locator("tbody tr").first.locator("td strong")).to_have_text(
        ["Processing", "Packed"])
    expect(rich.locator("ol > li")).to_have_count(3)
    expect(rich.locator("ul > li").first).to_contain_text("Already paid")
    shown = answer.inner_text()
    for markdown in ("|---", "| Situation", "# ", "**", "1. Tell"):
        assert markdown not in shown, markdown

    # 360 px: the panel fills the screen and never scrolls sideways; the table stays inside
    # the bubble, in its own scroll box
    more.locator(".sw-table").scroll_into_view_if_needed()
    page.screenshot(path=str(screenshots / "rich-phone-360.png"))
    before = layout(page)
    assert before["viewport"] == 360 and before["modal"] == 360, before
    assert before["page"] <= 360, before
    assert before["scroller"]["scroll"] <= before["scroller"]["client"], before
    assert before["wrap"]["right"] <= before["bubbleRight"] <= before["scroller"]["right"], before
    assert before["wrap"]["overflowX"] == "auto", before
    # the table scrolls inside its box; the chat panel does not move
    page.evaluate(f"() => {{ const w = {IN_SHADOW}.querySelectorAll('.sw-table');"
                  " w[w.length - 1].scrollLeft = 10000; }")
    after = layout(page)
    assert after["scroller"]["left"] == 0 and after["page"] <= 360, after
    assert after["wrap"]["right"] == before["wrap"]["right"], after

    # a link in an answer is a real link that opens in a new tab
    delivery = ask(page, "what delivery options do you offer?")
    expect(delivery.locator(".sw-text")).to_contain_text("Standard delivery costs")
    delivery.locator("details.sw-rich-more summary").click()
    link = delivery.get_by_role("link", name="DHL account")
    expect(link).to_be_visible()
    expect(link).to_have_attribute("href", "https://www.dhl.de/en/privatkunden.html")
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    assert "](https://" not in delivery.inner_text()
    assert layout(page)["page"] <= 360
    page.screenshot(path=str(screenshots / "rich-phone-360-delivery.png"))


def test_article_from_the_faq_suggestions_is_drawn_the_same_way(
    narrow_phone: Any, screenshots: Path
) -> None:
    from playwright.sync_api import expect

    page = login(narrow_phone, "cust-ben")
    open_chat(page)
    page.get_by_role("textbox", name="Type your message").press_sequentially(
        "tracking number", delay=30)
    suggestion = page.locator(".sw-suggestion", has_text="Where to find tracking in the app")
    expect(suggestion).to_be_visible()
    suggestion.click()

    article = page.get_by_role("region", name="Help article")
    body = article.locator(".sw-article-body")
    # the title is shown once (the body's own "# title" is not repeated)
    expect(article.get_by_role("heading", name="Where to find tracking in the app")).to_have_count(1)
    expect(body.get_by_role("heading", name="Track with the carrier")).to_be_visible()
    expect(body.locator("ol").first.locator("> li")).to_have_count(3)
    for name, href in (("DHL", "https://www.dhl.de/en/privatkunden.html"),
                       ("DPD", "https://www.dpd.com/"), ("UPS", "https://www.ups.com/track")):
        link = body.get_by_role("link", name=name, exact=True)
        expect(link).to_have_attribute("href", href)
        expect(link).to_have_attribute("target", "_blank")
        expect(link).to_have_attribute("rel", "noopener noreferrer")
    text = body.inner_text()
    assert "##" not in text and "**" not in text and "](" not in text
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    page.screenshot(path=str(screenshots / "rich-article-360.png"))


def test_hostile_blocks_never_become_markup(
    narrow_phone: Any, widget_stack: WidgetStack
) -> None:
    """Blocks are data: even a crafted stored message cannot make a script, a javascript: or
    data: link, or an element out of text (the widget checks link schemes itself too)."""
    from playwright.sync_api import expect

    from bot.support.chat import ChatStore

    page = login(narrow_phone, "cust-ben")
    open_chat(page)  # the conversation exists now
    hostile = [
        {"type": "heading", "level": 9, "content": [{"type": "text", "text": "<img src=x onerror=window.__xss=1>"}]},
        {"type": "paragraph", "content": [
            {"type": "link", "href": "javascript:window.__xss=2", "content": [{"type": "text", "text": "js link"}]},
            {"type": "text", "text": " "},
            {"type": "link", "href": "data:text/html,<script>window.__xss=3</script>", "content": [{"type": "text", "text": "data link"}]},
            {"type": "text", "text": " "},
            {"type": "link", "href": "/relative", "content": [{"type": "text", "text": "relative link"}]},
            {"type": "text", "text": " "},
            {"type": "link", "href": "https://shop.example/ok", "content": [{"type": "text", "text": "good link"}]},
            {"type": "script", "text": "window.__xss=4"},
        ]},
        {"type": "table", "align": ["x\" onclick=\"window.__xss=5"], "header": [[{"type": "text", "text": "<script>window.__xss=6</script>"}]], "rows": []},
        {"type": "html", "html": "<script>window.__xss=7</script>"},
    ]

    async def store() -> None:
        chat = ChatStore.from_url(widget_stack.bot.support_db_url)
        try:
            await chat.do_store_outgoing("widget:cust-ben", "bot", "Crafted message",
                                         extra={"blocks": hostile})
        finally:
            await chat.dispose()

    run_async(store)
    page.reload()
    open_chat(page)
    crafted = page.locator(".sw-msg[data-sender=bot]", has_text="Crafted message").last
    crafted.locator("details.sw-rich-more summary").click()
    rich = crafted.locator(".sw-rich")
    expect(rich.get_by_role("heading", name="<img src=x onerror=window.__xss=1>")).to_be_visible()
    expect(rich.locator("a")).to_have_count(1)
    expect(rich.get_by_role("link", name="good link")).to_have_attribute(
        "href", "https://shop.example/ok")
    expect(rich).to_contain_text("js link data link relative link good link")
    expect(rich.get_by_role("columnheader")).to_have_text("<script>window.__xss=6</script>")
    assert rich.locator("img, script, iframe").count() == 0
    assert rich.locator("[onclick], [onerror]").count() == 0
    rich.locator("th").click()
    assert page.evaluate("typeof window.__xss") == "undefined"


def test_agent_console_draws_the_article_of_a_bot_faq_message(
    browser: Any, widget_stack: WidgetStack, screenshots: Path
) -> None:
    from playwright.sync_api import expect

    from tests.agent_console.conftest import PASSWORD, create_agent

    customer_context = browser.new_context(base_url=widget_stack.demo_url, **PHONE)
    customer_context.add_init_script(ENGLISH_CHAT)
    agent_context = browser.new_context(base_url=widget_stack.bot.rasa_url, **PHONE)
    try:
        customer = login(customer_context, "cust-chloe")
        open_chat(customer)
        answer = ask(customer, "what are the cancellation fees?")
        expect(answer.locator("details.sw-rich-more")).to_have_count(1)
        handoff = ask(customer, "I want to talk to a person")
        expect(handoff).to_contain_text("person")

        create_agent(widget_stack.bot.support_db_url, "rich-agent", name="Rita")
        agent = agent_context.new_page()
        errors: list = []
        agent.on("pageerror", lambda error: errors.append(str(error)))
        agent.goto("/webhooks/agent/")
        agent.get_by_label("Username").fill("rich-agent")
        agent.get_by_label("Password").fill(PASSWORD)
        agent.get_by_role("button", name="Log in").click()
        item = agent.locator(".ac-item[data-state=queued]", has_text="Chloé Martin").first
        expect(item).to_be_visible(timeout=REPLY_MS)
        item.click()

        message = agent.locator("#ac-log .ac-msg[data-sender=bot][data-id]",
                                has_text="Cancelling is free as long as your order").last
        expect(message).to_be_visible()
        more = message.locator("details.ac-rich-more")
        expect(more.locator("table")).to_be_hidden()
        more.locator("summary", has_text="Read more").click()
        expect(more.get_by_role("heading", name="Cancellation fees", exact=True)).to_be_visible()
        table = more.get_by_role("table")
        expect(table.get_by_role("columnheader")).to_have_text(
            ["Situation", "Can I cancel?", "Cost"])
        expect(table.locator("tbody tr")).to_have_count(4)
        expect(more.locator("ol > li")).to_have_count(3)
        assert not re.search(r"\|---|\*\*|^#", message.inner_text(), re.MULTILINE)
        assert agent.evaluate("document.documentElement.scrollWidth") <= PHONE["viewport"]["width"]
        message.screenshot(path=str(screenshots / "rich-agent-message.png"))
        agent.screenshot(path=str(screenshots / "rich-agent-console.png"), full_page=True)
        assert not errors, errors
    finally:
        customer_context.close()
        agent_context.close()
