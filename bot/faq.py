"""FAQ articles: loading, validation and search.

Conversation designers write one article per topic in ``data/faq/<id>.md``:
YAML front matter (``id``, ``title``, ``intents``, ``keywords``, ``summary``
and optional ``buttons``) followed by a Markdown body. ``data/faq/README.md``
documents the format and is not an article.

The chat answer for an intent is the article's ``summary`` plus its
``buttons`` (:meth:`FaqIndex.for_intent`), with the body attached as Markdown
for clients that draw it (:attr:`Article.blocks`, :mod:`bot.richtext`). FAQ search
(:meth:`FaqIndex.search`) ranks whole articles with BM25 over the title,
keywords, summary and body, implemented here in pure Python. Nothing is read
at import time: use :meth:`FaqIndex.load` or :func:`load_default_index`.
"""
from __future__ import annotations

import bisect
import functools
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, TypedDict

import yaml

from bot.richtext import Block, blocks_to_text, markdown_to_blocks
from bot.settings import get_settings

Button = TypedDict("Button", {"title": str, "payload": str})

MAX_SUMMARY_CHARS = 320
MAX_QUERY_CHARS = 500
MAX_SNIPPET_CHARS = 160

REQUIRED_FIELDS = ("id", "title", "intents", "keywords", "summary")
OPTIONAL_FIELDS = ("buttons", "answers_when")

# BM25 parameters and per-field weights (a term in the title counts 3 times).
FIELD_WEIGHTS: Mapping[str, float] = {"title": 3.0, "keywords": 2.0, "summary": 1.0, "body": 1.0}
BM25_K1 = 1.2
BM25_B = 0.75
# Minimum query-token length for typo tolerance and for prefix matching.
MIN_FUZZY_LENGTH = 5
MIN_PREFIX_LENGTH = 3
# Prefix and typo matches count a little less than exact matches.
EXPANSION_WEIGHT = 0.8

STOP_WORDS = frozenset(
    """
    a about after all also am an and any are as at be been being but by can
    could did do does for from had has have he hello her hi his how i if in
    into is it its just like me my need of on or our please she so than thanks
    that the their them then there these they this those to too us want was we
    were what when where which who why will with would you your
    """.split()
)

_README_NAME = "readme.md"
_ID_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_WORD_RE = re.compile(r"[^\W_]+")
_FRONT_MATTER_RE = re.compile(r"\A---[ \t]*\n(.*?\n)?---[ \t]*(?:\n|\Z)(.*)\Z", re.DOTALL)
_ES_ENDINGS = ("s", "x", "z", "ch", "sh")
_LINK_RE = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_INLINE_MARKUP_RE = re.compile(r"\*\*|__|\*|`|<[^>]+>")
_LIST_MARKER_RE = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_TABLE_RULE_RE = re.compile(r"^\s*\|?\s*:?-{3,}")
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9€])")


class FaqError(ValueError):
    """An FAQ article or directory is invalid; the message names the file."""


@dataclass(frozen=True)
class Article:
    """One FAQ article.

    Attributes:
        id: Unique slug, also the file name without ``.md``.
        title: Title shown in search results.
        intents: NLU intents answered by this article (may be empty).
        keywords: Search keywords and synonyms.
        summary: Plain-text chat answer (at most 320 characters).
        body: Full article in Markdown, shown by FAQ search.
        buttons: Buttons sent with the chat answer.
        answers_when: ``(intent, phrases)`` pairs: this article answers ``intent`` instead
            of the article that lists it when the customer's message contains one of the
            phrases ("how do I send something back" is the returns how-to, though the NLU
            reads it as the refund-policy question).
    """

    id: str
    title: str
    intents: tuple[str, ...]
    keywords: tuple[str, ...]
    summary: str
    body: str
    buttons: tuple[Button, ...] = ()
    answers_when: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def answers(self, intent: str, text: str) -> bool:
        """Whether ``answers_when`` makes this article the answer to ``intent`` for ``text``."""
        lowered = " ".join(text.lower().split())
        return any(
            name == intent and any(phrase in lowered for phrase in phrases)
            for name, phrases in self.answers_when
        )

    def __hash__(self) -> int:
        # Buttons are dicts, so the generated hash would fail; ids are unique.
        return hash(self.id)

    @functools.cached_property
    def blocks(self) -> list[Block]:
        """The body as rich-text blocks (:func:`bot.richtext.markdown_to_blocks`).

        Parsed on first use, then kept; treat the result as read-only.
        """
        return markdown_to_blocks(self.body)

    @functools.cached_property
    def body_text(self) -> str:
        """The body as plain text (:func:`bot.richtext.blocks_to_text`): no Markdown marks."""
        return blocks_to_text(self.blocks)


@dataclass(frozen=True)
class SearchHit:
    """A search result.

    Attributes:
        article: The matching article.
        score: BM25 score, always > 0; higher is better.
        snippet: Best-matching sentence of the body (at most 160 characters).
    """

    article: Article
    score: float
    snippet: str


@dataclass(frozen=True)
class _Document:
    """Search data of one article: weighted term frequencies and sentences."""

    term_freqs: Mapping[str, float]
    length: float
    sentences: tuple[tuple[str, frozenset[str]], ...]


# A query token resolved to index terms, each with a weight (1.0 = exact).
_TermGroup = Mapping[str, float]


class FaqIndex:
    """All FAQ articles, looked up by id or intent, and searchable."""

    def __init__(self, articles: Iterable[Article]) -> None:
        """Build the lookup tables and the search index.

        Args:
            articles: The articles; ids and intents must be unique.

        Raises:
            FaqError: If an id or intent occurs twice.
        """
        self._articles = tuple(articles)
        self._by_id: dict[str, Article] = {}
        self._by_intent: dict[str, Article] = {}
        for article in self._articles:
            if article.id in self._by_id:
                raise FaqError(f"duplicate id '{article.id}'")
            self._by_id[article.id] = article
            for intent in article.intents:
                other = self._by_intent.get(intent)
                if other is not None:
                    raise FaqError(f"intent '{intent}' is mapped to both '{other.id}' and '{article.id}'")
                self._by_intent[intent] = article
        self._documents = tuple(_build_document(article) for article in self._articles)
        self._postings: dict[str, set[int]] = {}
        for position, document in enumerate(self._documents):
            for term in document.term_freqs:
                self._postings.setdefault(term, set()).add(position)
        self._idf = {term: self._bm25_idf(len(docs)) for term, docs in self._postings.items()}
        self._vocabulary = sorted(self._postings)
        total_length = sum(document.length for document in self._documents)
        self._average_length = total_length / len(self._documents) if total_length else 1.0

    @classmethod
    def load(cls, directory: Path) -> FaqIndex:
        """Load and validate every ``*.md`` article in ``directory``.

        ``README.md`` (any case) and hidden files are skipped.

        Args:
            directory: Folder with the article files.

        Returns:
            The index, with articles in file-name order.

        Raises:
            FaqError: If the folder is missing or has no articles, or an
                article is invalid: the message starts with the file name.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise FaqError(f"FAQ directory not found: {directory}")
        paths = sorted(
            path
            for path in directory.glob("*.md")
            if path.is_file() and path.name.lower() != _README_NAME and not path.name.startswith(".")
        )
        if not paths:
            raise FaqError(f"no FAQ articles (*.md) found in {directory}")
        articles: list[Article] = []
        file_by_id: dict[str, str] = {}
        owner_by_intent: dict[str, Article] = {}
        for path in paths:
            article = _parse_article(path)
            if article.id in file_by_id:
                raise FaqError(
                    f"{path.name}: duplicate id '{article.id}' (already used by {file_by_id[article.id]})"
                )
            for intent in article.intents:
                owner = owner_by_intent.get(intent)
                if owner is not None:
                    raise FaqError(
                        f"{path.name}: intent '{intent}' is already mapped to article "
                        f"'{owner.id}' ({file_by_id[owner.id]})"
                    )
                owner_by_intent[intent] = article
            file_by_id[article.id] = path.name
            articles.append(article)
        return cls(articles)

    @property
    def articles(self) -> tuple[Article, ...]:
        """All articles, in load order."""
        return self._articles

    def get(self, article_id: str) -> Article | None:
        """Return the article with this id, or None."""
        return self._by_id.get(article_id)

    def for_intent(self, intent: str, text: str = "") -> Article | None:
        """Return the article that answers this NLU intent, or None.

        An article whose ``answers_when`` phrases for the intent occur in ``text`` (the
        customer's message) wins over the article that lists the intent.
        """
        if text:
            for article in self._articles:
                if article.answers(intent, text):
                    return article
        return self._by_intent.get(intent)

    def search(self, query: str, limit: int = 5) -> list[SearchHit]:
        """Rank articles for a free-text query with BM25.

        The query is lowercased, tokenised, stop words are dropped and the
        rest is stemmed. A token not found in the index is matched to the
        closest index term within edit distance 1 if it has at least 5
        characters. The last token, if it is not an index term itself, also
        matches the index terms it is a prefix of (common ones weigh more),
        so partial input ("refu") already finds results.

        Args:
            query: What the customer typed; only the first 500 characters
                are used.
            limit: Maximum number of hits.

        Returns:
            Hits with a score > 0, best first (ties by article id); empty for
            an empty query or if nothing matches.
        """
        if limit < 1 or not query or not query.strip():
            return []
        groups = self._resolve_query(query[:MAX_QUERY_CHARS])
        if not groups:
            return []
        group_idfs = [self._group_idf(group) for group in groups]
        scored: list[tuple[float, int]] = []
        for position, document in enumerate(self._documents):
            score = sum(
                self._group_score(group, idf, document) for group, idf in zip(groups, group_idfs)
            )
            if score > 0:
                scored.append((score, position))
        scored.sort(key=lambda item: (-item[0], self._articles[item[1]].id))
        return [
            SearchHit(
                article=self._articles[position],
                score=score,
                snippet=self._snippet(groups, self._documents[position], self._articles[position]),
            )
            for score, position in scored[:limit]
        ]

    def _resolve_query(self, query: str) -> list[_TermGroup]:
        """Turn a query into term groups: exact, prefix or typo matches."""
        words = _words(query)
        groups: list[_TermGroup] = []
        seen: set[tuple[tuple[str, float], ...]] = set()
        for position, word in enumerate(words):
            if word in STOP_WORDS or _is_noise(word):
                continue
            term = _stem(word)
            group: dict[str, float] = {}
            if term in self._idf:
                group[term] = 1.0
            elif position == len(words) - 1 and len(word) >= MIN_PREFIX_LENGTH:
                group.update(self._completions(word, term))
            if not group and len(term) >= MIN_FUZZY_LENGTH:
                corrected = self._closest_term(term)
                if corrected is not None:
                    group[corrected] = EXPANSION_WEIGHT
            key = tuple(sorted(group.items()))
            if group and key not in seen:
                seen.add(key)
                groups.append(group)
        return groups

    def _completions(self, *prefixes: str) -> dict[str, float]:
        """Index terms a partly typed token may become, with weights.

        Like as-you-type suggestions, common completions weigh more: the
        weight is proportional to the number of articles using the term.
        """
        candidates = {term for prefix in prefixes for term in self._terms_with_prefix(prefix)}
        if not candidates:
            return {}
        most_common = max(len(self._postings[term]) for term in candidates)
        return {
            term: EXPANSION_WEIGHT * len(self._postings[term]) / most_common for term in candidates
        }

    def _terms_with_prefix(self, prefix: str) -> list[str]:
        """Index terms starting with ``prefix`` (the vocabulary is sorted)."""
        matches: list[str] = []
        position = bisect.bisect_left(self._vocabulary, prefix)
        while position < len(self._vocabulary) and self._vocabulary[position].startswith(prefix):
            matches.append(self._vocabulary[position])
            position += 1
        return matches

    def _closest_term(self, term: str) -> str | None:
        """The most common index term within edit distance 1, or None."""
        candidates = [candidate for candidate in self._vocabulary if _within_one_edit(term, candidate)]
        if not candidates:
            return None
        return min(candidates, key=lambda candidate: (-len(self._postings[candidate]), candidate))

    def _bm25_idf(self, doc_freq: int) -> float:
        """BM25 inverse document frequency; always > 0."""
        count = len(self._documents)
        return math.log(1.0 + (count - doc_freq + 0.5) / (doc_freq + 0.5))

    def _group_idf(self, group: _TermGroup) -> float:
        """IDF of a query token: documents containing any of its terms."""
        documents: set[int] = set()
        for term in group:
            documents |= self._postings[term]
        return self._bm25_idf(len(documents))

    def _group_score(self, group: _TermGroup, idf: float, document: _Document) -> float:
        """BM25 contribution of one query token.

        All terms of the token (exact, prefix or typo matches) count as one
        term whose frequency is their weighted sum.
        """
        freq = sum(weight * document.term_freqs.get(term, 0.0) for term, weight in group.items())
        if freq <= 0:
            return 0.0
        norm = BM25_K1 * (1.0 - BM25_B + BM25_B * document.length / self._average_length)
        return idf * freq * (BM25_K1 + 1.0) / (freq + norm)

    def _snippet(self, groups: list[_TermGroup], document: _Document, article: Article) -> str:
        """The body sentence matching the most (and rarest) query terms."""
        best_text = ""
        best_score = 0.0
        for text, terms in document.sentences:
            score = 0.0
            for group in groups:
                score += max(
                    (weight * self._idf[term] for term, weight in group.items() if term in terms),
                    default=0.0,
                )
            if score > best_score:
                best_text, best_score = text, score
        if not best_text:
            best_text = document.sentences[0][0] if document.sentences else article.summary
        return _truncate(best_text, MAX_SNIPPET_CHARS)


@functools.lru_cache(maxsize=1)
def load_default_index() -> FaqIndex:
    """Load the articles from ``get_settings().faq_dir`` (once per process).

    Returns:
        The shared index. Call ``load_default_index.cache_clear()`` to reload.

    Raises:
        FaqError: If the directory or an article is invalid.
    """
    return FaqIndex.load(get_settings().faq_dir)


_CURRENT: dict = {}


async def current_index() -> FaqIndex:
    """The articles of ``get_settings().faq_dir`` for async servers, reloaded on change.

    The directory is checked (file names and modification times) and, when it changed,
    reloaded in a worker thread, so the event loop never waits on the disk; the
    articles' :attr:`Article.blocks` are rendered in that thread too.
    """
    import asyncio

    directory = get_settings().faq_dir

    def signature() -> tuple:
        return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in directory.glob("*.md")))

    current = await asyncio.to_thread(signature)
    if _CURRENT.get("signature") != current:
        _CURRENT["index"] = await asyncio.to_thread(_load_rendered, directory)
        _CURRENT["signature"] = current
    return _CURRENT["index"]


def _load_rendered(directory: Path) -> FaqIndex:
    """:meth:`FaqIndex.load`, with every article's blocks and plain text rendered."""
    index = FaqIndex.load(directory)
    for article in index.articles:
        _ = article.body_text  # renders article.blocks as well
    return index


# --- parsing and validation -------------------------------------------------


def _parse_article(path: Path) -> Article:
    """Read and validate one article file."""
    name = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise FaqError(f"{name}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
    text = text.lstrip("\ufeff").replace("\r\n", "\n")
    if not re.match(r"---[ \t]*\n", text):
        raise FaqError(f"{name}: missing YAML front matter (the file must start with a '---' line)")
    match = _FRONT_MATTER_RE.match(text)
    if match is None:
        raise FaqError(f"{name}: front matter is not closed with a '---' line")
    raw_front_matter, body = match.group(1) or "", match.group(2).strip()
    try:
        fields = yaml.safe_load(raw_front_matter)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 2}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise FaqError(f"{name}: invalid YAML in front matter{where}: {problem}") from exc
    if fields is None:
        fields = {}
    if not isinstance(fields, dict):
        raise FaqError(f"{name}: front matter must be a mapping of fields")
    _check_fields(name, fields)
    summary = " ".join(_require_text(name, fields, "summary").split())
    if len(summary) > MAX_SUMMARY_CHARS:
        raise FaqError(
            f"{name}: summary is {len(summary)} characters long (maximum {MAX_SUMMARY_CHARS})"
        )
    if not body:
        raise FaqError(f"{name}: article body is empty")
    article_id = _require_text(name, fields, "id")
    if not _ID_RE.match(article_id):
        raise FaqError(
            f"{name}: id '{article_id}' must contain only lowercase letters, digits and hyphens"
        )
    intents = _require_string_list(name, fields, "intents")
    duplicates = sorted(intent for intent, count in Counter(intents).items() if count > 1)
    if duplicates:
        raise FaqError(f"{name}: intent '{duplicates[0]}' is listed twice")
    return Article(
        id=article_id,
        title=_require_text(name, fields, "title"),
        intents=intents,
        keywords=_require_string_list(name, fields, "keywords"),
        summary=summary,
        body=body,
        buttons=_parse_buttons(name, fields.get("buttons")),
        answers_when=_parse_answers_when(name, fields.get("answers_when")),
    )


def _parse_answers_when(name: str, value: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Validate the optional ``answers_when`` mapping: intent → list of phrases."""
    if value is None:
        return ()
    if not isinstance(value, dict) or not all(
        isinstance(intent, str) and isinstance(phrases, list) and phrases
        and all(isinstance(p, str) and p.strip() for p in phrases)
        for intent, phrases in value.items()
    ):
        raise FaqError(f"{name}: field 'answers_when' must map intents to lists of phrases")
    return tuple(
        (intent, tuple(" ".join(p.lower().split()) for p in phrases))
        for intent, phrases in value.items()
    )


def _check_fields(name: str, fields: Mapping[Any, Any]) -> None:
    """Reject missing required fields and unknown fields."""
    for field_name in REQUIRED_FIELDS:
        if fields.get(field_name) is None:
            raise FaqError(f"{name}: missing required field '{field_name}'")
    unknown = sorted(str(key) for key in fields if key not in REQUIRED_FIELDS + OPTIONAL_FIELDS)
    if unknown:
        raise FaqError(f"{name}: unknown field '{unknown[0]}'")


def _require_text(name: str, fields: Mapping[str, Any], field_name: str) -> str:
    """A required non-empty string field, stripped."""
    value = fields[field_name]
    if not isinstance(value, str) or not value.strip():
        raise FaqError(f"{name}: field '{field_name}' must be a non-empty string")
    return value.strip()


def _require_string_list(name: str, fields: Mapping[str, Any], field_name: str) -> tuple[str, ...]:
    """A required list of non-empty strings (the list itself may be empty)."""
    value = fields[field_name]
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise FaqError(f"{name}: field '{field_name}' must be a list of non-empty strings")
    return tuple(item.strip() for item in value)


def _parse_buttons(name: str, value: Any) -> tuple[Button, ...]:
    """Validate the optional ``buttons`` list."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise FaqError(f"{name}: field 'buttons' must be a list of buttons with 'title' and 'payload'")
    buttons: list[Button] = []
    for number, item in enumerate(value, start=1):
        if (
            not isinstance(item, dict)
            or set(item) != {"title", "payload"}
            or not all(isinstance(item[key], str) and item[key].strip() for key in item)
        ):
            raise FaqError(f"{name}: button {number} must have exactly a 'title' and a 'payload' string")
        payload = item["payload"].strip()
        if not payload.startswith("/"):
            raise FaqError(f"{name}: button {number} payload must start with '/', got '{payload}'")
        buttons.append(Button(title=item["title"].strip(), payload=payload))
    return tuple(buttons)


# --- text processing ---------------------------------------------------------


def _words(text: str) -> list[str]:
    """Lowercase words (letters and digits) of ``text``."""
    return _WORD_RE.findall(text.lower())


def _is_noise(word: str) -> bool:
    """Single letters carry no meaning ("e-mail", "don't"); digits do."""
    return len(word) < 2 and not word.isdigit()


def _stem(word: str) -> str:
    """Reduce an English word to a crude stem.

    Strips ``-ies``/``-ied`` (to ``y``), ``-es``, ``-s``, ``-ing`` and
    ``-ed``, then a final ``e`` and a doubled final consonant, so that
    "ship", "shipping" and "shipped" or "charge" and "charged" meet.
    """
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith(("ies", "ied")):
        stem = word[:-3] + "y"
    elif word.endswith("sses"):
        stem = word[:-2]
    elif word.endswith("es") and word[:-2].endswith(_ES_ENDINGS):
        stem = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        stem = word[:-1]
    elif word.endswith("ing") and len(word) >= 6:
        stem = word[:-3]
    elif word.endswith("ed") and not word.endswith("eed") and len(word) >= 5:
        stem = word[:-2]
    else:
        stem = word
    if len(stem) > 3 and stem.endswith("e"):
        stem = stem[:-1]
    if len(stem) > 3 and stem[-1] == stem[-2] and stem[-1] not in "aeious":
        stem = stem[:-1]
    return stem


def _terms(text: str) -> list[str]:
    """Index terms of ``text``: words without stop words and noise, stemmed."""
    return [_stem(word) for word in _words(text) if word not in STOP_WORDS and not _is_noise(word)]


def _within_one_edit(left: str, right: str) -> bool:
    """True if the strings differ by at most one insertion, deletion,
    substitution or swap of two adjacent characters."""
    if abs(len(left) - len(right)) > 1:
        return False
    if len(left) > len(right):
        left, right = right, left
    index = 0
    while index < len(left) and left[index] == right[index]:
        index += 1
    if len(left) < len(right):
        return left[index:] == right[index + 1 :]
    if left[index + 1 :] == right[index + 1 :]:
        return True
    return (
        index + 1 < len(left)
        and left[index] == right[index + 1]
        and left[index + 1] == right[index]
        and left[index + 2 :] == right[index + 2 :]
    )


def plain_text(markdown: str) -> str:
    """An article body without Markdown markup (links keep their text)."""
    return _plain_text(markdown)


def _plain_text(markdown: str) -> str:
    """Markdown inline text without links targets, emphasis and code marks."""
    text = _LINK_RE.sub(r"\1", markdown)
    return _INLINE_MARKUP_RE.sub("", text)


def _sentences(body: str) -> list[str]:
    """Plain-text sentences of a Markdown body, headings and rules excluded.

    Paragraph lines are joined; every list item and table row (except the
    header row) is a block.
    """
    blocks: list[list[str]] = []
    current: list[str] = []
    in_code = False

    def flush() -> None:
        if current:
            blocks.append(list(current))
            current.clear()

    lines = body.splitlines()
    for number, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("```"):
            flush()
            in_code = not in_code
            continue
        if in_code or not stripped or stripped.startswith("#") or _TABLE_RULE_RE.match(stripped):
            flush()
            continue
        if stripped.startswith("|"):
            flush()
            next_line = lines[number + 1] if number + 1 < len(lines) else ""
            if _TABLE_RULE_RE.match(next_line):
                continue  # a header row is no answer
            current.append(" ".join(cell.strip() for cell in stripped.strip("|").split("|")))
            flush()
            continue
        if _LIST_MARKER_RE.match(line) or stripped.startswith(">"):
            flush()
            stripped = _LIST_MARKER_RE.sub("", stripped.lstrip("> "))
        current.append(stripped)
    flush()
    sentences: list[str] = []
    for block in blocks:
        text = " ".join(_plain_text(" ".join(block)).split())
        sentences.extend(part for part in _SENTENCE_END_RE.split(text) if part)
    return sentences


def _truncate(text: str, limit: int) -> str:
    """Cut ``text`` at a word boundary to at most ``limit`` characters."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:-") + "…"


def _build_document(article: Article) -> _Document:
    """Weighted term frequencies and sentence terms of one article."""
    fields = {
        "title": _terms(article.title),
        "keywords": _terms(" ".join(article.keywords)),
        "summary": _terms(article.summary),
        "body": _terms(_plain_text(article.body)),
    }
    term_freqs: dict[str, float] = {}
    length = 0.0
    for field_name, terms in fields.items():
        weight = FIELD_WEIGHTS[field_name]
        length += weight * len(terms)
        for term in terms:
            term_freqs[term] = term_freqs.get(term, 0.0) + weight
    sentences = tuple(
        (sentence, frozenset(_terms(sentence))) for sentence in _sentences(article.body)
    )
    return _Document(term_freqs=term_freqs, length=length, sentences=sentences)
