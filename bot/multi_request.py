"""Several requests in one message: "where is order 104233 and also, do you accept apple pay?"

Rasa understands a message as one intent. A message that asks two things is cut into its
requests (:func:`split_requests`, at a question mark followed by more text, at a sentence
end, and at the words of ``multi_request.separators`` in ``data/triage.yml``), and each
request is understood on its own by the same NLU pipeline: :func:`install` makes Rasa's
message processor add them to the parse data of such a message as ``requests``
(:class:`Request` each). ``action_route`` (``actions/triage.py``) answers a confident
self-service question among them besides the message's main request, or runs the flow a
second request asks for after answering a question.

Only messages with a cut are parsed again (one more pipeline run per request, at most
:data:`MAX_REQUESTS`); a payload (``/intent``) never is.
"""
from __future__ import annotations

import functools
import re
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, TypedDict

__all__ = ["MAX_REQUESTS", "Request", "install", "split_requests"]

#: At most this many requests are understood separately; a message cut into more parts is
#: a description or a story, not a list of requests, and is left whole.
MAX_REQUESTS = 3

#: Parts shorter than this many words are not a request of their own ("Hi!", "thanks").
_MIN_WORDS = 2
#: A message longer than this is a description (a ticket text), not a list of requests.
_MAX_CHARS = 400

_QUESTION_CUT = re.compile(r"(?<=\?)\s*(?=[^\s?])")
_SENTENCE_CUT = re.compile(r"(?<=[a-z\u00c0-\u024f)\"'])[.!]+\s+(?=[A-Za-z\u00c0-\u024f])")
_EDGE = re.compile(r"^[\s,;:.!\-–—]+|[\s,;:\-–—]+$")
_LEADING_AND = re.compile(r"^(?:and|&|but)\b[\s,]*", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z0-9\u00c0-\u024f]+")


class Request(TypedDict):
    """One request of a message, understood on its own (``parse_data["requests"]``)."""

    text: str
    intent: Dict[str, Any]
    entities: List[Dict[str, Any]]


@functools.lru_cache(maxsize=8)
def _separator_pattern(separators: Tuple[str, ...]) -> Optional[re.Pattern]:
    words = [s.strip() for s in separators if s and s.strip()]
    if not words:
        return None
    alternatives = "|".join(
        re.escape(word).replace(r"\ ", r"\s+") for word in sorted(words, key=len, reverse=True)
    )
    return re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])", re.IGNORECASE)


def _cut(text: str, pattern: Optional[re.Pattern]) -> List[str]:
    parts = [text]
    for cutter in (_QUESTION_CUT, _SENTENCE_CUT, pattern):
        if cutter is None:
            continue
        pieces: List[str] = []
        for part in parts:
            pieces.extend(cutter.split(part))  # a question keeps its question mark
        parts = pieces
    cleaned = []
    for part in parts:
        part = _LEADING_AND.sub("", _EDGE.sub("", part)).strip()
        part = _EDGE.sub("", part).strip()
        if part:
            cleaned.append(part)
    return cleaned


def split_requests(text: str, separators: Sequence[str] = ()) -> List[str]:
    """The requests of a message that asks more than one thing, else ``[]``.

    Args:
        text: The customer's message.
        separators: Words that start another request ("and also", "btw"), as in
            ``multi_request.separators`` of ``data/triage.yml``.

    Returns:
        Two to :data:`MAX_REQUESTS` parts of at least two words each, in the order the
        customer wrote them; ``[]`` for a payload, a message with one request, or one cut
        into more parts than that (a description is not a list of requests). Parts too
        short to be a request ("Hi!") are dropped first.
    """
    stripped = " ".join((text or "").split())
    if not stripped or stripped.startswith("/") or len(stripped) > _MAX_CHARS:
        return []
    parts = [p for p in _cut(stripped, _separator_pattern(tuple(separators)))
             if len(_WORD.findall(p)) >= _MIN_WORDS]
    if len(parts) < 2 or len(parts) > MAX_REQUESTS:
        return []
    return parts


def _requests_from(parse_part: Callable[[str], Dict[str, Any]], parts: Sequence[str]
                   ) -> List[Request]:
    requests: List[Request] = []
    for part in parts:
        parsed = parse_part(part)
        intent = parsed.get("intent") or {}
        requests.append(Request(
            text=part,
            intent={"name": intent.get("name"),
                    "confidence": float(intent.get("confidence") or 0.0)},
            entities=[{k: e.get(k) for k in ("entity", "value", "start", "end")}
                      for e in parsed.get("entities") or []],
        ))
    return requests


_installed: Dict[str, Any] = {}


def install(separators: Optional[Callable[[], Tuple[str, ...]]] = None) -> None:
    """Make Rasa's message processor add ``requests`` to the parse data of a message
    that asks several things (idempotent).

    Args:
        separators: Returns the separator words; default: ``multi_request.separators`` of
            the triage file from settings (re-read when the file changes).
    """
    from rasa.core.channels.channel import UserMessage
    from rasa.core.processor import MessageProcessor

    if "original" in _installed:
        return
    original = MessageProcessor._parse_message_with_graph
    words = separators or _triage_separators

    def _parse_message_with_graph(self: Any, message: Any, tracker: Any,
                                  only_output_properties: bool = True) -> Dict[str, Any]:
        parse_data = original(self, message, tracker, only_output_properties)
        parts = split_requests(message.text or "", words())
        if parts:
            def parse_part(part: str) -> Dict[str, Any]:
                return original(self, UserMessage(
                    text=part, sender_id=message.sender_id, input_channel=message.input_channel,
                    metadata=message.metadata), tracker, only_output_properties)

            parse_data["requests"] = _requests_from(parse_part, parts)
        return parse_data

    _installed["original"] = original
    MessageProcessor._parse_message_with_graph = _parse_message_with_graph


def _triage_separators() -> Tuple[str, ...]:
    from bot.triage import load_triage

    return load_triage().multi_request.separators
