"""Markdown to safe, structured "blocks" for the widget and the agent console.

FAQ articles are written in Markdown. Clients never get HTML from us: this module parses
the Markdown with markdown-it-py (CommonMark plus tables, raw HTML off) and turns it into
plain JSON data that a client draws with DOM APIs and ``textContent`` only.

Blocks (``type`` first)::

    {"type": "paragraph", "content": [Span, ...]}
    {"type": "heading", "level": 1-6, "content": [Span, ...]}
    {"type": "list", "ordered": bool, "start": int, "items": [[Block, ...], ...]}
    {"type": "table", "align": ["left" | "center" | "right" | None, ...],
     "header": [[Span, ...], ...], "rows": [[[Span, ...], ...], ...]}
    {"type": "quote", "blocks": [Block, ...]}
    {"type": "code", "text": str}
    {"type": "rule"}

Inline spans::

    {"type": "text", "text": str}
    {"type": "strong" | "em", "content": [Span, ...]}
    {"type": "code", "text": str}
    {"type": "link", "href": str, "content": [Span, ...]}
    {"type": "break"}

Only ``http``/``https`` links with a host and ``mailto`` links become ``link`` spans; any
other target (``javascript:``, ``data:``, relative paths, ...) keeps its text as plain
text. Raw HTML (``<script>``, ``<b>``) is text like any other. Images become their alt
text. The work is bounded: at most :data:`MAX_MARKDOWN_CHARS` characters are read,
containers nest at most :data:`MAX_DEPTH` deep (deeper ones are flattened into their
parent), tables have at most :data:`MAX_TABLE_COLUMNS` columns and at most
:data:`MAX_NODES` blocks and spans are produced; cut-off content ends with a paragraph
``"…"``.

Nothing happens at import time; the parser is built on first use.

Example::

    >>> markdown_to_blocks("Hi **there**")  # doctest: +NORMALIZE_WHITESPACE
    [{'type': 'paragraph', 'content': [{'type': 'text', 'text': 'Hi '},
      {'type': 'strong', 'content': [{'type': 'text', 'text': 'there'}]}]}]
"""
from __future__ import annotations

import functools
from typing import Any, Dict, List, Optional, Sequence
from urllib.parse import urlsplit

__all__ = [
    "ALLOWED_SCHEMES",
    "Block",
    "MAX_DEPTH",
    "MAX_MARKDOWN_CHARS",
    "MAX_NODES",
    "MAX_TABLE_COLUMNS",
    "Span",
    "blocks_to_text",
    "markdown_to_blocks",
    "safe_href",
]

#: A block or an inline span: a JSON object with a ``type`` (see the module docstring).
Block = Dict[str, Any]
Span = Dict[str, Any]

#: Link schemes that become clickable links.
ALLOWED_SCHEMES = frozenset({"http", "https", "mailto"})
#: Markdown beyond this many characters is cut off (at a line break) before parsing.
MAX_MARKDOWN_CHARS = 16_000
#: Lists and quotes nest at most this deep; deeper ones are flattened into their parent.
MAX_DEPTH = 6
#: Strong/em/link spans nest at most this deep; deeper ones become their text.
MAX_INLINE_DEPTH = 4
#: At most this many blocks and spans are produced; the rest is cut off.
MAX_NODES = 5_000
#: Table columns beyond this many are cut off.
MAX_TABLE_COLUMNS = 12
#: Longest ``href`` kept (longer links stay text).
MAX_HREF_CHARS = 2_000
ELLIPSIS = "\u2026"

_ALIGN = {"text-align:left": "left", "text-align:center": "center", "text-align:right": "right"}


def markdown_to_blocks(markdown: str) -> List[Block]:
    """Parse Markdown into blocks (see the module docstring).

    Args:
        markdown: CommonMark with GitHub-style tables. Raw HTML is shown as text.

    Returns:
        The blocks, in document order; empty for empty input. When something was cut
        off (input over :data:`MAX_MARKDOWN_CHARS` characters, more than
        :data:`MAX_NODES` nodes, or table columns), the last block is a paragraph
        ``"…"``.
    """
    from markdown_it.tree import SyntaxTreeNode

    source = markdown or ""
    truncated = len(source) > MAX_MARKDOWN_CHARS
    if truncated:
        source = source[:MAX_MARKDOWN_CHARS]
        cut = source.rfind("\n")
        if cut > MAX_MARKDOWN_CHARS // 2:
            source = source[:cut]
    tree = SyntaxTreeNode(_parser().parse(source))
    builder = _Builder()
    blocks = builder.blocks(tree.children, depth=0)
    if truncated or builder.exhausted or builder.cut:
        blocks.append(_paragraph([_text(ELLIPSIS)]))
    return blocks


def blocks_to_text(blocks: Sequence[Block]) -> str:
    """A plain-text rendering of blocks, for channels that show text only.

    Headings and paragraphs become lines, list items ``- item`` / ``1. item`` (nested
    ones indented), table rows ``cell | cell``, quotes ``> line``; a link whose text is
    not its address shows the address in brackets after the text.

    Args:
        blocks: Blocks from :func:`markdown_to_blocks`.

    Returns:
        The text, blocks separated by a blank line, without trailing whitespace.
    """
    return "\n\n".join(part for part in (_block_text(b) for b in blocks) if part).strip()


def safe_href(href: str) -> Optional[str]:
    """The link target if it may be clickable, else None.

    Args:
        href: A link target (as markdown-it normalised it).

    Returns:
        ``href`` for ``http``/``https`` URLs with a host and non-empty ``mailto:``
        addresses (at most :data:`MAX_HREF_CHARS` characters, no whitespace or control
        characters); None for everything else.
    """
    if not href or len(href) > MAX_HREF_CHARS or any(ch.isspace() or ord(ch) < 32 for ch in href):
        return None
    try:
        parts = urlsplit(href)
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        return None
    if scheme == "mailto":
        return href if parts.path else None
    return href if parts.netloc and parts.hostname else None


# --------------------------------------------------------------------- internals


@functools.lru_cache(maxsize=1)
def _parser() -> Any:
    """The shared markdown-it parser: CommonMark, tables, no raw HTML."""
    from markdown_it import MarkdownIt

    parser = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    parser.enable("table")
    # Every link is parsed as a link, so that one we refuse keeps only its text
    # ("label", not "[label](javascript:...)"); safe_href() decides what is clickable.
    parser.validateLink = lambda url: True
    return parser


def _text(value: str) -> Span:
    return {"type": "text", "text": value}


def _paragraph(content: List[Span]) -> Block:
    return {"type": "paragraph", "content": content}


class _Builder:
    """Walks markdown-it's syntax tree, counting nodes against :data:`MAX_NODES`."""

    def __init__(self) -> None:
        self.nodes = 0
        self.exhausted = False  # the node budget is spent
        self.cut = False  # something else was left out (table columns)

    def _take(self) -> bool:
        """Count one node; False once the budget is spent."""
        if self.nodes >= MAX_NODES:
            self.exhausted = True
            return False
        self.nodes += 1
        return True

    # ----------------------------------------------------------------- blocks

    def blocks(self, nodes: Sequence[Any], depth: int) -> List[Block]:
        out: List[Block] = []
        for node in nodes:
            if self.exhausted:
                break
            out.extend(self.block(node, depth))
        return out

    def block(self, node: Any, depth: int) -> List[Block]:
        kind = node.type
        if kind in ("bullet_list", "ordered_list", "blockquote") and depth >= MAX_DEPTH:
            # too deep: the content goes into the parent instead
            children = node.children if kind == "blockquote" else [
                grandchild for item in node.children for grandchild in item.children
            ]
            return self.blocks(children, depth)
        if not self._take():
            return []
        if kind == "paragraph":
            return [_paragraph(self.inline_of(node))]
        if kind == "heading":
            level = int(node.tag[1:]) if node.tag[1:].isdigit() else 1
            return [{"type": "heading", "level": level, "content": self.inline_of(node)}]
        if kind in ("bullet_list", "ordered_list"):
            ordered = kind == "ordered_list"
            start = node.attrs.get("start", 1) if ordered else 1
            items: List[List[Block]] = []
            for item in node.children:
                if self.exhausted or not self._take():
                    break
                items.append(self.blocks(item.children, depth + 1))
            return [{"type": "list", "ordered": ordered, "start": int(start), "items": items}]
        if kind == "blockquote":
            return [{"type": "quote", "blocks": self.blocks(node.children, depth + 1)}]
        if kind in ("fence", "code_block"):
            return [{"type": "code", "text": node.content.rstrip("\n")}]
        if kind == "hr":
            return [{"type": "rule"}]
        if kind == "table":
            return [self.table(node)]
        # anything else (e.g. html_block, were HTML ever switched on) is shown as text
        content = getattr(node, "content", "") or ""
        return [_paragraph([_text(content.strip())])] if content.strip() else []

    def table(self, node: Any) -> Block:
        header: List[List[Span]] = []
        align: List[Optional[str]] = []
        rows: List[List[List[Span]]] = []
        for section in node.children:
            for row in section.children:
                if self.exhausted or not self._take():
                    break
                columns = row.children[:MAX_TABLE_COLUMNS]
                self.cut = self.cut or len(row.children) > MAX_TABLE_COLUMNS
                cells = [self.inline_of(cell) for cell in columns]
                if section.type == "thead":
                    header = cells
                    align = [
                        _ALIGN.get(str(cell.attrs.get("style", "")).replace(" ", ""))
                        for cell in columns
                    ]
                else:
                    rows.append(cells)
        return {"type": "table", "align": align, "header": header, "rows": rows}

    # ----------------------------------------------------------------- inline

    def inline_of(self, node: Any) -> List[Span]:
        """The spans of a block's ``inline`` child (paragraph, heading, table cell)."""
        spans: List[Span] = []
        for child in node.children:
            if child.type == "inline":
                spans.extend(self.spans(child.children, 0))
        return _merge(spans)

    def spans(self, nodes: Sequence[Any], depth: int) -> List[Span]:
        out: List[Span] = []
        for node in nodes:
            if not self._take():
                break
            out.extend(self.span(node, depth))
        return out

    def span(self, node: Any, depth: int) -> List[Span]:
        kind = node.type
        if kind == "text":
            return [_text(node.content)] if node.content else []
        if kind in ("softbreak",):
            return [_text(" ")]
        if kind == "hardbreak":
            return [{"type": "break"}]
        if kind == "code_inline":
            return [{"type": "code", "text": node.content}]
        if kind == "image":  # never load images from articles: their alt text
            return [_text(_plain(node))] if _plain(node) else []
        if kind in ("strong", "em", "link"):
            content = _merge(self.spans(node.children, depth + 1))
            if depth >= MAX_INLINE_DEPTH:
                return content
            if kind == "link":
                href = safe_href(str(node.attrs.get("href", "")))
                if href is None:
                    return content
                return [{"type": "link", "href": href, "content": content or [_text(href)]}]
            return [{"type": kind, "content": content}] if content else []
        # html_inline and anything unknown: its source, as text
        content = getattr(node, "content", "") or ""
        return [_text(content)] if content else []


def _plain(node: Any) -> str:
    """All text below a syntax-tree node."""
    if node.type in ("text", "code_inline"):
        return node.content
    if node.type in ("softbreak", "hardbreak"):
        return " "
    return "".join(_plain(child) for child in node.children)


def _merge(spans: List[Span]) -> List[Span]:
    """Join neighbouring text spans; drop empty ones."""
    out: List[Span] = []
    for span in spans:
        if span["type"] == "text":
            if not span["text"]:
                continue
            if out and out[-1]["type"] == "text":
                out[-1] = _text(out[-1]["text"] + span["text"])
                continue
        out.append(span)
    return out


# --------------------------------------------------------------------- plain text


def _spans_text(spans: Sequence[Span]) -> str:
    parts: List[str] = []
    for span in spans:
        kind = span.get("type")
        if kind in ("text", "code"):
            parts.append(str(span.get("text", "")))
        elif kind == "break":
            parts.append("\n")
        elif kind == "link":
            label = _spans_text(span.get("content") or [])
            href = str(span.get("href", ""))
            shown = href[7:] if href.lower().startswith("mailto:") else href
            parts.append(label if label in (href, shown) else f"{label} ({shown})")
        else:
            parts.append(_spans_text(span.get("content") or []))
    return "".join(parts)


def _block_text(block: Block) -> str:
    kind = block.get("type")
    if kind in ("paragraph", "heading"):
        return _spans_text(block.get("content") or []).strip()
    if kind == "code":
        return str(block.get("text", ""))
    if kind == "rule":
        return "----"
    if kind == "quote":
        inner = blocks_to_text(block.get("blocks") or [])
        return "\n".join(("> " + line).rstrip() for line in inner.splitlines())
    if kind == "table":
        rows = [block.get("header") or []] + list(block.get("rows") or [])
        return "\n".join(
            " | ".join(_spans_text(cell).strip() for cell in row) for row in rows if row
        )
    if kind == "list":
        lines: List[str] = []
        number = int(block.get("start", 1))
        for item in block.get("items") or []:
            marker = f"{number}. " if block.get("ordered") else "- "
            number += 1
            body = "\n".join(_block_text(b) for b in item if _block_text(b)).splitlines() or [""]
            lines.append(marker + body[0])
            lines.extend(" " * len(marker) + line if line else "" for line in body[1:])
        return "\n".join(lines)
    return ""
