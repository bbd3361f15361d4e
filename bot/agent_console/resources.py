"""File-backed resources of the agent console: canned responses and FAQ suggestions.

Both are read from designer-editable files and reloaded (in a worker thread) when the
file changes, so the event loop never blocks on disk or parsing.
"""
from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from bot.faq import current_index

__all__ = ["CannedResponse", "load_canned", "canned_responses", "faq_suggestions"]

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_CANNED_TEXT = 4000
_CACHE: Dict[str, Any] = {}


@dataclass(frozen=True)
class CannedResponse:
    """One canned response."""

    id: str
    title: str
    text: str
    category: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        return {"id": self.id, "title": self.title, "text": self.text, "category": self.category}


def load_canned(path: Path) -> List[CannedResponse]:
    """Parse and validate a canned responses file.

    Args:
        path: The YAML file (``canned_responses:`` list of ``id``, ``title``, ``text``, ``category``).

    Returns:
        The responses in file order.

    Raises:
        ValueError: The file is missing, not YAML, or an entry is invalid (the message
            names the entry).
    """
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"{path}: cannot read: {error}") from None
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML: {error}") from None
    entries = (raw or {}).get("canned_responses") if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a top-level 'canned_responses:' list.")
    result: List[CannedResponse] = []
    seen = set()
    for number, entry in enumerate(entries, 1):
        where = f"{path.name}: response #{number}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: must be a mapping with id, title, text.")
        unknown = set(entry) - {"id", "title", "text", "category"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}.")
        ident, title, text = entry.get("id"), entry.get("title"), entry.get("text")
        if not isinstance(ident, str) or not _ID_RE.match(ident):
            raise ValueError(f"{where}: id must be 1-64 characters of a-z 0-9 _ -.")
        if ident in seen:
            raise ValueError(f"{where}: duplicate id {ident!r}.")
        seen.add(ident)
        if not isinstance(title, str) or not title.strip():
            raise ValueError(f"{where} ({ident}): title is required.")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_CANNED_TEXT:
            raise ValueError(f"{where} ({ident}): text needs 1-{MAX_CANNED_TEXT} characters.")
        category = entry.get("category")
        if category is not None and not isinstance(category, str):
            raise ValueError(f"{where} ({ident}): category must be a string.")
        result.append(CannedResponse(ident, title.strip(), text.strip(), category or None))
    return result


def _mtime(path: Path) -> Optional[int]:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


async def canned_responses(path: Path) -> List[CannedResponse]:
    """The canned responses of ``path``, re-read when the file changes.

    Raises:
        ValueError: As :func:`load_canned`.
    """
    stamp = await asyncio.to_thread(_mtime, path)
    key = f"canned:{path}"
    cached: Optional[Tuple[Optional[int], List[CannedResponse]]] = _CACHE.get(key)
    if cached is None or cached[0] != stamp:
        responses = await asyncio.to_thread(load_canned, path)
        _CACHE[key] = (stamp, responses)
        return responses
    return cached[1]


async def faq_suggestions(texts: Sequence[str], limit: int = 3) -> List[Dict[str, Any]]:
    """FAQ articles matching the customer's latest messages (best first, no duplicates).

    Args:
        texts: Customer messages, newest first (at most the first three are searched).
        limit: How many suggestions at most.
    """
    from bot.faq import plain_text

    queries = [t.strip()[:500] for t in texts if t and t.strip() and not t.startswith("[")][:3]
    if not queries:
        return []
    index = await current_index()

    def search() -> List[Dict[str, Any]]:
        best: Dict[str, Dict[str, Any]] = {}
        for query in [" ".join(queries)] + queries:
            for hit in index.search(query, limit=limit):
                item = best.get(hit.article.id)
                if item is None or hit.score > item["score"]:
                    best[hit.article.id] = {
                        "id": hit.article.id,
                        "title": hit.article.title,
                        "summary": hit.article.summary,
                        "snippet": hit.snippet,
                        "answer": plain_text(hit.article.body)[:1500],
                        "score": round(hit.score, 3),
                    }
        return sorted(best.values(), key=lambda i: -i["score"])[:limit]

    return await asyncio.to_thread(search)
