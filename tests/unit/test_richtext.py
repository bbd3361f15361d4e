"""bot.richtext: Markdown becomes plain JSON blocks; nothing in them is ever markup."""
from __future__ import annotations

import json
import time

import pytest

from bot.richtext import (
    ALLOWED_SCHEMES,
    MAX_DEPTH,
    MAX_MARKDOWN_CHARS,
    MAX_NODES,
    MAX_TABLE_COLUMNS,
    blocks_to_text,
    markdown_to_blocks,
    safe_href,
)


def text(value: str) -> dict:
    return {"type": "text", "text": value}


def para(*spans: dict) -> dict:
    return {"type": "paragraph", "content": list(spans)}


def walk(node: object):
    """Every dict in a block tree."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


# ------------------------------------------------------------------ blocks


def test_empty_input_has_no_blocks() -> None:
    assert markdown_to_blocks("") == []
    assert markdown_to_blocks("   \n\n ") == []


def test_headings_keep_their_level() -> None:
    assert markdown_to_blocks("# Cancellation fees\n\n## How to cancel\n\n### Note") == [
        {"type": "heading", "level": 1, "content": [text("Cancellation fees")]},
        {"type": "heading", "level": 2, "content": [text("How to cancel")]},
        {"type": "heading", "level": 3, "content": [text("Note")]},
    ]


def test_paragraph_lines_are_joined_and_a_hard_break_is_kept() -> None:
    assert markdown_to_blocks("one\ntwo  \nthree") == [
        para(text("one two"), {"type": "break"}, text("three"))
    ]


def test_emphasis_strong_and_code() -> None:
    assert markdown_to_blocks("Go to **Account > *Orders*** and type `cancel`.") == [
        para(
            text("Go to "),
            {"type": "strong", "content": [
                text("Account > "), {"type": "em", "content": [text("Orders")]},
            ]},
            text(" and type "),
            {"type": "code", "text": "cancel"},
            text("."),
        )
    ]


def test_bullet_list_with_a_nested_list() -> None:
    assert markdown_to_blocks("- PayPal\n- Cards\n  - Visa\n  - Mastercard") == [
        {"type": "list", "ordered": False, "start": 1, "items": [
            [para(text("PayPal"))],
            [para(text("Cards")), {"type": "list", "ordered": False, "start": 1, "items": [
                [para(text("Visa"))], [para(text("Mastercard"))],
            ]}],
        ]}
    ]


def test_ordered_list_keeps_its_start_number() -> None:
    assert markdown_to_blocks("3. Pack\n4. Drop off") == [
        {"type": "list", "ordered": True, "start": 3, "items": [
            [para(text("Pack"))], [para(text("Drop off"))],
        ]}
    ]


def test_table_with_header_rows_alignment_and_inline_markup() -> None:
    source = (
        "| Status | Cost |\n"
        "|:---|---:|\n"
        "| **Processing** | Free |\n"
        "| Shipped | [returns](https://shop.example/returns) |\n"
    )
    assert markdown_to_blocks(source) == [
        {
            "type": "table",
            "align": ["left", "right"],
            "header": [[text("Status")], [text("Cost")]],
            "rows": [
                [[{"type": "strong", "content": [text("Processing")]}], [text("Free")]],
                [[text("Shipped")], [{"type": "link", "href": "https://shop.example/returns",
                                      "content": [text("returns")]}]],
            ],
        }
    ]


def test_table_rows_get_the_header_width() -> None:
    blocks = markdown_to_blocks("| a | b |\n|---|---|\n| 1 |\n| 1 | 2 | 3 |")
    assert blocks[0]["rows"] == [[[text("1")], []], [[text("1")], [text("2")]]]
    assert blocks[0]["align"] == [None, None]


def test_quote_code_block_and_rule() -> None:
    assert markdown_to_blocks("> Keep the **receipt**.\n\n```\nline 1\n<b>2</b>\n```\n\n---") == [
        {"type": "quote", "blocks": [
            para(text("Keep the "), {"type": "strong", "content": [text("receipt")]},
                 text(".")),
        ]},
        {"type": "code", "text": "line 1\n<b>2</b>"},
        {"type": "rule"},
    ]


def test_entities_are_decoded_into_text() -> None:
    assert markdown_to_blocks("Fish &amp; chips &lt;3 &copy;") == [para(text("Fish & chips <3 ©"))]


# ------------------------------------------------------------------ links


@pytest.mark.parametrize("href", [
    "https://www.dhl.de/en/privatkunden.html",
    "http://example.com/a?b=1#c",
    "HTTPS://EXAMPLE.COM/",
    "mailto:help@shop.example",
])
def test_http_https_and_mailto_links_become_links(href: str) -> None:
    assert markdown_to_blocks(f"See [this page]({href}).") == [
        para(text("See "), {"type": "link", "href": href, "content": [text("this page")]},
             text("."))
    ]


@pytest.mark.parametrize("href", [
    "javascript:alert(1)",
    "JavaScript:alert(document.cookie)",
    "java%09script:alert(1)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "vbscript:msgbox(1)",
    "file:///etc/passwd",
    "/account/orders",
    "orders.html",
    "//evil.example/x",
    "#top",
    "https:///no-host",
    "mailto:",
    "ftp://files.example/a",
])
def test_other_link_targets_keep_only_their_text(href: str) -> None:
    blocks = markdown_to_blocks(f"See [this page]({href}).")
    assert blocks == [para(text("See this page."))]
    assert not any(node.get("type") == "link" for node in walk(blocks))


def test_an_autolink_shows_its_address_and_a_refused_one_is_text() -> None:
    assert markdown_to_blocks("<https://shop.example> or <javascript:alert(1)>") == [
        para(
            {"type": "link", "href": "https://shop.example",
             "content": [text("https://shop.example")]},
            text(" or javascript:alert(1)"),
        )
    ]


def test_a_link_without_text_shows_its_address() -> None:
    assert markdown_to_blocks("[](https://shop.example/x)") == [
        para({"type": "link", "href": "https://shop.example/x",
              "content": [text("https://shop.example/x")]})
    ]


def test_images_become_their_alt_text_and_are_never_loaded() -> None:
    blocks = markdown_to_blocks("![A *parcel* label](https://tracker.example/pixel.gif)")
    assert blocks == [para(text("A parcel label"))]


def test_link_targets_are_percent_encoded() -> None:
    blocks = markdown_to_blocks('[x](https://shop.example/a"b<c>ä)')
    assert blocks[0]["content"][0]["href"] == "https://shop.example/a%22b%3Cc%3E%C3%A4"


def test_safe_href() -> None:
    assert ALLOWED_SCHEMES == {"http", "https", "mailto"}
    assert safe_href("https://shop.example") == "https://shop.example"
    assert safe_href("mailto:a@b.example") == "mailto:a@b.example"
    assert safe_href("https://shop.example/a b") is None
    assert safe_href("https://shop.example/\x00") is None
    assert safe_href("javascript:alert(1)") is None
    assert safe_href("https://" + "a" * 3000 + ".example") is None
    assert safe_href("") is None


# ------------------------------------------------------------------ raw HTML


@pytest.mark.parametrize("source", [
    "<script>alert(1)</script>",
    "Hi <script>alert(1)</script> there",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">click</a>',
    "<div>\n\n*block*\n\n</div>",
    "<!-- comment --> <b>bold</b>",
])
def test_raw_html_is_text_and_never_markup(source: str) -> None:
    blocks = markdown_to_blocks(source)
    types = {node["type"] for node in walk(blocks)}
    assert types <= {"paragraph", "text", "em"}, blocks
    assert "link" not in types
    shown = blocks_to_text(blocks)
    for tag in ("<script>", "<img", "<a href", "<div>", "<b>"):
        if tag in source:
            assert tag in shown  # the customer sees the characters, not an element


def test_script_inside_inline_markup_and_tables_is_text() -> None:
    blocks = markdown_to_blocks(
        "| a |\n|---|\n| <script>x</script> |\n\n**<script>y</script>** `<script>z</script>`"
    )
    assert blocks == [
        {"type": "table", "align": [None], "header": [[text("a")]],
         "rows": [[[text("<script>x</script>")]]]},
        para({"type": "strong", "content": [text("<script>y</script>")]}, text(" "),
             {"type": "code", "text": "<script>z</script>"}),
    ]


def test_blocks_are_plain_json_with_known_types_only() -> None:
    source = "# T\n\n> - [a](https://x.example) **b** *c* `d`\n\n| x |\n|---|\n| y |\n\n```\nz\n```\n\n***"
    blocks = markdown_to_blocks(source)
    assert json.loads(json.dumps(blocks)) == blocks
    assert {node["type"] for node in walk(blocks)} == {
        "heading", "text", "quote", "list", "paragraph", "link", "strong", "em", "code",
        "table", "rule",
    }


# ------------------------------------------------------------------ bounds


def depth_of(blocks: list) -> int:
    """The deepest nesting of quotes and lists."""
    def depth(block: dict) -> int:
        children = block.get("blocks") or [b for item in block.get("items") or [] for b in item]
        inner = max((depth(child) for child in children), default=0)
        return inner + (1 if block["type"] in ("quote", "list") else 0)
    return max((depth(block) for block in blocks), default=0)


def test_deeply_nested_quotes_are_bounded() -> None:
    blocks = markdown_to_blocks("> " * 5000 + "deep")
    assert depth_of(blocks) <= MAX_DEPTH


def test_deeply_nested_lists_are_flattened_below_the_limit() -> None:
    levels = MAX_DEPTH + 2  # within markdown-it's own nesting limit, beyond ours
    source = "".join("  " * level + "- level " + str(level) + "\n" for level in range(levels))
    blocks = markdown_to_blocks(source)
    assert depth_of(blocks) == MAX_DEPTH
    shown = blocks_to_text(blocks)
    for level in range(levels):  # nothing is lost: deeper items are drawn at the last level
        assert f"level {level}" in shown


def test_deeply_nested_emphasis_is_bounded() -> None:
    blocks = markdown_to_blocks("*_" * 200 + "x" + "_*" * 200)
    def inline_depth(span: dict) -> int:
        return 1 + max((inline_depth(s) for s in span.get("content") or []), default=0)
    assert max(inline_depth(span) for span in blocks[0]["content"]) <= 6
    assert "x" in blocks_to_text(blocks)


def test_huge_input_is_cut_and_marked() -> None:
    source = "A line of help text.\n\n" * 100_000  # 2.2 MB
    started = time.monotonic()
    blocks = markdown_to_blocks(source)
    assert time.monotonic() - started < 10
    assert len(blocks_to_text(blocks)) <= MAX_MARKDOWN_CHARS
    assert blocks[-1] == para(text("\u2026"))
    assert blocks[0] == para(text("A line of help text."))


PATHOLOGICAL = {
    "brackets": "[" * 50_000,
    "emphasis": "*a " * 50_000,
    "angles": "<" * 50_000,
    "wide table": "|a" * 5000 + "|\n" + "|-" * 5000 + "|\n" + ("|b" * 5000 + "|\n") * 50,
    "long list": "- x\n" * 50_000,
    "backticks": "`" * 50_000,
    "links": "[a](https://x.example) " * 10_000,
}


@pytest.mark.parametrize("source", list(PATHOLOGICAL.values()), ids=list(PATHOLOGICAL))
def test_pathological_input_is_bounded(source: str) -> None:
    started = time.monotonic()
    blocks = markdown_to_blocks(source)
    assert time.monotonic() - started < 10
    nodes = [node for node in walk(blocks) if "type" in node]
    assert len(nodes) <= MAX_NODES + 2  # + the closing "…" paragraph and its text
    # each node is a small JSON object; all text together is at most the input read
    assert len(json.dumps(blocks)) < 80 * MAX_NODES + 2 * MAX_MARKDOWN_CHARS


def test_wide_tables_are_cut_to_the_column_limit() -> None:
    columns = MAX_TABLE_COLUMNS + 5
    source = "|" + "|".join(f"h{i}" for i in range(columns)) + "|\n" + "|---" * columns + "|\n"
    source += "|" + "|".join(f"c{i}" for i in range(columns)) + "|\n"
    blocks = markdown_to_blocks(source)
    assert len(blocks[0]["header"]) == MAX_TABLE_COLUMNS
    assert len(blocks[0]["rows"][0]) == MAX_TABLE_COLUMNS
    assert blocks[-1] == para(text("\u2026"))


# ------------------------------------------------------------------ plain text


def test_plain_text_rendering() -> None:
    source = (
        "# Returns\n\n"
        "Free of **charge**; see [DHL](https://www.dhl.de/) or <https://ups.example>.\n\n"
        "1. Register\n2. Pack\n   - tape\n\n"
        "| Where | Cost |\n|---|---|\n| Germany | Free |\n\n"
        "> Keep the receipt.\n\n"
        "Write to [us](mailto:help@shop.example)."
    )
    assert blocks_to_text(markdown_to_blocks(source)) == (
        "Returns\n\n"
        "Free of charge; see DHL (https://www.dhl.de/) or https://ups.example.\n\n"
        "1. Register\n2. Pack\n   - tape\n\n"
        "Where | Cost\nGermany | Free\n\n"
        "> Keep the receipt.\n\n"
        "Write to us (help@shop.example)."
    )


def test_plain_text_of_real_articles_has_no_markdown_marks() -> None:
    from bot.faq import FaqIndex
    from bot.settings import PROJECT_ROOT

    index = FaqIndex.load(PROJECT_ROOT / "data" / "faq")
    for article in index.articles:
        shown = article.body_text
        assert "**" not in shown and "|---" not in shown, article.id
        assert not any(line.startswith("#") for line in shown.splitlines()), article.id
        assert shown.startswith(article.title + "\n"), article.id


# ------------------------------------------------------------------ the widget channel


class _Hub:
    def __init__(self) -> None:
        self.frames: list = []

    async def push(self, recipient_id: str, frame: dict) -> None:
        self.frames.append((recipient_id, frame))


class _Channel:
    """What WidgetOutput needs of the widget channel: its chat store and its hub."""

    def __init__(self, chat: object) -> None:
        self._chat = chat
        self.hub = _Hub()

    async def chat(self) -> object:
        return self._chat


@pytest.fixture
async def widget_output(sqlite_url: str):
    from bot.channels.widget import WidgetOutput
    from bot.support.chat import ChatStore

    chat = ChatStore.from_url(sqlite_url)
    await chat.create_schema()
    await chat.do_open_conversation("widget:cust-anna", "cust-anna", "widget")
    channel = _Channel(chat)
    try:
        yield WidgetOutput(channel), channel, chat
    finally:
        await chat.dispose()


async def test_marked_markdown_reaches_the_widget_as_blocks(widget_output) -> None:
    output, channel, chat = widget_output
    source = "# Fees\n\n| When | Cost |\n|---|---|\n| **Packed** | Free |\n\n- [Help](https://shop.example/help)"
    await output.send_response("widget:cust-anna", {
        "text": "Cancelling is free.",
        "buttons": [{"title": "Cancel an order", "payload": "/cancel_order"}],
        "custom": {"format": "markdown", "markdown": source, "article": "cancellation-fees"},
    })

    (recipient, frame), = channel.hub.frames
    wire = frame["message"]
    assert recipient == "widget:cust-anna" and frame["type"] == "message"
    assert wire["text"] == "Cancelling is free."  # the plain-text answer stays as it was
    assert wire["buttons"] == [{"title": "Cancel an order", "payload": "/cancel_order"}]
    assert wire["blocks"] == [
        {"type": "heading", "level": 1, "content": [text("Fees")]},
        {"type": "table", "align": [None, None], "header": [[text("When")], [text("Cost")]],
         "rows": [[[{"type": "strong", "content": [text("Packed")]}], [text("Free")]]]},
        {"type": "list", "ordered": False, "start": 1, "items": [[para(
            {"type": "link", "href": "https://shop.example/help", "content": [text("Help")]})]]},
    ]
    assert wire["extra"] == {"custom": {"article": "cancellation-fees"}}  # no Markdown source
    # stored with the message: history and the agent console get the same blocks
    (stored,), _ = await chat.history("widget:cust-anna", limit=10)
    assert stored.to_wire() == wire
    assert stored.extra["markdown"] == source
    assert stored.text == "Cancelling is free."


async def test_unmarked_texts_are_never_read_as_markdown(widget_output) -> None:
    output, channel, _ = widget_output
    await output.send_response("widget:cust-anna", {"text": "# Order #104233 is **packed**"})
    await output.send_response("widget:cust-anna", {
        "text": "Image", "custom": {"format": "html", "markdown": "# not this"}})

    first, second = (frame["message"] for _, frame in channel.hub.frames)
    assert first["text"] == "# Order #104233 is **packed**"
    assert "blocks" not in first and "extra" not in first
    assert "blocks" not in second
    assert second["extra"] == {"custom": {"format": "html", "markdown": "# not this"}}
