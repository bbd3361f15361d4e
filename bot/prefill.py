"""What the customer already said, taken as form answers (``data/forms.yml``).

A guided flow should not ask for what the customer just told it: "the jacket from order
104190 is too small, I want my money back" holds the order number and the reason for the
refund. :func:`detail` finds such a free-text detail in a message; :func:`is_digression`
tells an answer to the bot's question from a question about something else.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Tuple

import yaml

#: An order reference inside a sentence ("from order #104190", "for my order no. 104190").
_ORDER_REFERENCE = re.compile(
    r"(?:\b(?:on|for|of|in|from|with|about)\s+)?(?:\bmy\s+|\bthe\s+)?"
    r"(?:\b(?:order|purchase)\s*)?(?:\b(?:number|no\.?|nr\.?)\s*)?#?(?<!\d)\d{6}(?!\d)",
    re.IGNORECASE,
)
_WORD = re.compile(r"[a-z0-9\u00c0-\u024f]+(?:'[a-z]+)?", re.IGNORECASE)
_SEGMENT_KEEP = re.compile(r"([,;!?\n]+|\.(?:\s+|$))")
_LEAD_IN = re.compile(
    r"^(?:(?:hi|hello|hey|hi there|hallo|bonjour|salut|good morning|good evening|dear \w+)"
    r"\b[,!.\s]*)?"
    r"(?:(?:please|pls|so|ok|okay|well)\b[,\s]*)?"
    r"(?:(?:can|could|may) (?:i|you|we)(?: please)?|i (?:(?:just|only|really|also|actually)\s+)?"
    r"(?:want|wanted|need|would like|'d like|d like) to|i'd like to|i'm trying to|i am trying to"
    r"|please)?\s*",
    re.IGNORECASE,
)


class FormConfigError(ValueError):
    """``forms.yml`` is malformed (the message names the entry)."""


@dataclass(frozen=True)
class DetailRule:
    """How one free-text slot is recognised (``slots.<name>`` in ``forms.yml``)."""

    slot: str
    request_words: FrozenSet[str]
    min_words: int
    needs_one_of: Tuple[str, ...]
    split_after: Tuple[str, ...]
    questions_answer: bool
    max_chars: int


@dataclass(frozen=True)
class FormConfig:
    """The whole of ``forms.yml``."""

    recent_order_turns: int
    filler_words: FrozenSet[str]
    stop_intents: FrozenSet[str]
    question_words: Tuple[str, ...]
    question_confidence: float
    slots: Mapping[str, DetailRule]
    order_choices: Tuple[Tuple[int, str], ...] = ()
    #: ``(answer, phrases)``: a reply to a confirmation that the NLU was unsure about and
    #: that starts with one of the phrases is that answer (``confirm_answers``).
    confirm_answers: Tuple[Tuple[bool, Tuple[str, ...]], ...] = ()
    #: A question inside a flow that the NLU was less sure about than ``not_understood_below``
    #: is answered from its intent's article at least this sure, else from the FAQ search.
    unsure_question_confidence: float = 0.5

    def rule(self, slot: str) -> Optional[DetailRule]:
        """The rule for ``slot``, if it is a free-text detail."""
        return self.slots.get(slot)


def _words(value: Any, where: str) -> Tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FormConfigError(f"{where}: expected a list of words (quote yes, no, on and off)")
    return tuple(v.lower() for v in value)


def parse_config(raw: Any, source: str = "forms.yml") -> FormConfig:
    """Check and convert the loaded YAML of ``forms.yml``.

    Raises:
        FormConfigError: A key is missing or has the wrong type.
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("slots"), dict):
        raise FormConfigError(f"{source}: expected a mapping with a 'slots' section")
    rules: Dict[str, DetailRule] = {}
    for slot, spec in raw["slots"].items():
        where = f"{source}: slots.{slot}"
        if not isinstance(spec, dict):
            raise FormConfigError(f"{where}: expected a mapping")
        try:
            min_words = int(spec.get("min_words", 1))
            max_chars = int(spec.get("max_chars", 1000))
        except (TypeError, ValueError):
            raise FormConfigError(f"{where}: min_words and max_chars must be numbers") from None
        if min_words < 1 or max_chars < 10:
            raise FormConfigError(f"{where}: min_words must be >= 1 and max_chars >= 10")
        rules[slot] = DetailRule(
            slot=slot,
            request_words=frozenset(_words(spec.get("request_words"), where)),
            min_words=min_words,
            needs_one_of=_words(spec.get("needs_one_of"), where),
            split_after=_words(spec.get("split_after"), where),
            questions_answer=bool(spec.get("questions_answer", False)),
            max_chars=max_chars,
        )
    try:
        turns = int(raw.get("recent_order_turns", 3))
        confidence = float(raw.get("question_confidence", 0.85))
        unsure = float(raw.get("unsure_question_confidence", 0.5))
    except (TypeError, ValueError):
        raise FormConfigError(
            f"{source}: recent_order_turns, question_confidence and unsure_question_confidence "
            "must be numbers") from None
    return FormConfig(
        order_choices=_order_choices(raw.get("order_choices"), source),
        confirm_answers=_confirm_answers(raw.get("confirm_answers"), source),
        recent_order_turns=max(0, turns),
        filler_words=frozenset(_words(raw.get("filler_words"), f"{source}: filler_words")),
        stop_intents=frozenset(_words(raw.get("stop_intents"), f"{source}: stop_intents")),
        question_words=_words(raw.get("question_words"), f"{source}: question_words"),
        question_confidence=confidence,
        unsure_question_confidence=unsure,
        slots=rules,
    )


def _confirm_answers(raw: Any, source: str) -> Tuple[Tuple[bool, Tuple[str, ...]], ...]:
    """``confirm_answers`` as (answer, phrases) pairs: ``yes`` True, ``no`` False."""
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not set(raw) <= {"yes", "no", True, False}:
        raise FormConfigError(f"{source}: confirm_answers must map yes and no to phrases")
    # YAML 1.1 reads a bare yes/no key as a boolean
    return tuple((key in ("yes", True), _words(raw[key], f"{source}: confirm_answers"))
                 for key in raw)


def confirm_answer(text: str, config: FormConfig) -> Optional[bool]:
    """The yes/no that ``text`` starts with (``confirm_answers``), else None.

    "no dont send it, found the email" → False; "not sure" is no "no" (whole words only).
    """
    lowered = " ".join(text.lower().split())
    for answer, phrases in config.confirm_answers:
        for phrase in phrases:
            if re.match(re.escape(phrase) + r"(?![\w'])", lowered):
                return answer
    return None


def _order_choices(raw: Any, source: str) -> Tuple[Tuple[int, str], ...]:
    """``order_choices`` as (position, phrase) pairs, longest phrase first."""
    if raw is None:
        return ()
    where = f"{source}: order_choices"
    if not isinstance(raw, dict):
        raise FormConfigError(f"{where}: expected a mapping of position -> phrases")
    pairs: List[Tuple[int, str]] = []
    for position, phrases in raw.items():
        try:
            index = int(position)
        except (TypeError, ValueError):
            raise FormConfigError(f"{where}: {position!r} is not a position (1, 2, ... or -1)") from None
        if index == 0:
            raise FormConfigError(f"{where}: positions start at 1 (-1 is the last)")
        pairs.extend((index, phrase) for phrase in _words(phrases, f"{where}.{position}"))
    return tuple(sorted(pairs, key=lambda pair: -len(pair[1])))


#: Longest reply taken as a pick from a list ("the first one please" is; a sentence is not).
_MAX_CHOICE_WORDS = 6


def order_choice(text: str, config: FormConfig) -> Optional[int]:
    """The list position a short reply picks ("the first one" -> 1, "the last one" -> -1).

    None for a reply with digits in it (an order number is taken as typed), a long one, or
    one without a phrase of ``order_choices``.
    """
    if not isinstance(text, str) or any(c.isdigit() and c not in "123" for c in text):
        return None
    lowered = text.strip().lower()
    if re.search(r"\d{2,}", lowered) or len(_WORD.findall(lowered)) > _MAX_CHOICE_WORDS:
        return None
    for position, phrase in config.order_choices:
        if re.search(r"(?<![a-z0-9])" + re.escape(phrase) + r"(?![a-z0-9])", lowered):
            return position
    return None


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, mtime: float) -> FormConfig:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise FormConfigError(f"{path}: cannot read: {error}") from error
    return parse_config(raw, path)


def load_form_config(path: Optional[Path] = None) -> FormConfig:
    """``data/forms.yml`` from the settings (reloaded when the file changes)."""
    from bot.settings import get_settings

    target = Path(path) if path else get_settings().data_dir / "forms.yml"
    return _load_cached(str(target), target.stat().st_mtime)


#: A number the customer gave as an order number but that has not its six digits: "order
#: 10427", "#1042755", "nr. 10427" (4-9 digits after an order word or a #).
_MISTYPED_ORDER = re.compile(
    r"(?:\b(?:order|orders|bestellung|commande|number|nr|no)\b\.?\s*(?:number\s*|no\.?\s*)?#?|#)"
    r"\s*(\d{4,5}|\d{7,9})(?![\d:.,]\d)(?!\d)", re.IGNORECASE)


def mistyped_order_number(text: str) -> Optional[str]:
    """The order number the customer meant to give but mistyped ("cancel order 10427").

    None when the text has no such number, or has a proper six-digit one as well.
    """
    if not isinstance(text, str) or re.search(r"(?<!\d)\d{6}(?!\d)", text):
        return None
    match = _MISTYPED_ORDER.search(text)
    return match.group(1) if match else None


def strip_order_references(text: str) -> str:
    """``text`` without order numbers and the words that introduce them."""
    return re.sub(r"\s{2,}", " ", _ORDER_REFERENCE.sub(" ", text)).strip()


def content_words(text: str, rule: DetailRule, config: FormConfig) -> List[str]:
    """The words of ``text`` that are neither filler nor the request itself."""
    ignored = config.filler_words | rule.request_words
    return [w for w in (m.group(0).lower() for m in _WORD.finditer(text)) if w not in ignored]


def has_detail(text: str, rule: DetailRule, config: FormConfig) -> bool:
    """Whether a typed answer says anything beyond filler, the request and its markers.

    "because" or "it" is no refund reason; "it's too big" is.
    """
    markers = {m.strip().lower() for m in rule.split_after if m.strip().isalpha()}
    return any(word not in markers for word in content_words(text, rule, config))


def _split(text: str, markers: Tuple[str, ...]) -> str:
    lowered = text.lower()
    best: Optional[Tuple[int, int]] = None
    for marker in markers:
        pattern = re.escape(marker) if not marker.strip().isalpha() else (
            r"\b" + re.escape(marker.strip()) + r"\b")
        match = re.search(pattern, lowered)
        if match and (best is None or match.start() < best[0]):
            best = (match.start(), match.end())
    if best is None:
        return text
    rest = text[best[1]:].strip(" ,:;-")
    return rest if len(_WORD.findall(rest)) >= 2 else text


def _tidy(text: str) -> str:
    text = _LEAD_IN.sub("", text.strip(), count=1).strip(" ,;:-")
    text = re.sub(r"\s+([,.!?])", r"\1", re.sub(r"\s{2,}", " ", text))
    text = text.rstrip(" ?,;:-")
    return text[:1].upper() + text[1:] if text else text


def detail(text: str, rule: DetailRule, config: FormConfig) -> Optional[str]:
    """The detail for ``rule.slot`` that ``text`` already gives, else None.

    The order reference is removed, a detail after a marker (``"ticket: the app
    crashes"``, ``"because it's broken"``) is preferred, and sentence parts that only
    repeat the request ("I want my money back") are dropped.

    Examples:
        >>> config = load_form_config()
        >>> detail("the jacket from order 104190 is too small, I want my money back",
        ...        config.rule("refund_reason"), config)
        'The jacket is too small'
    """
    if not isinstance(text, str) or not text.strip():
        return None
    split = _split(text, rule.split_after)
    explicit = split != text  # "... because <reason>", "ticket: <text>": said outright
    body = strip_order_references(split)
    pieces = _SEGMENT_KEEP.split(body)  # text, separator, text, separator, ...
    kept: List[str] = []
    for index in range(0, len(pieces), 2):
        if content_words(pieces[index], rule, config):
            kept.append(pieces[index] + (pieces[index + 1] if index + 1 < len(pieces) else ""))
    joined = "".join(kept)
    if len(content_words(joined, rule, config)) < rule.min_words:
        return None
    result = _tidy(joined)
    lowered = f" {result.lower()} "
    if rule.needs_one_of and not explicit and not any(
        re.search(r"\b" + re.escape(word) + r"\b", lowered) for word in rule.needs_one_of
    ):
        return None
    return result[: rule.max_chars] if result else None


def looks_like_question(text: str, config: FormConfig) -> bool:
    """Whether ``text`` asks something (a question mark, or a question word first)."""
    stripped = text.strip().lower()
    if stripped.endswith("?"):
        return True
    return any(re.match(re.escape(word) + r"\b", stripped) for word in config.question_words)


def is_digression(message: Mapping[str, Any], slot: str, config: FormConfig) -> bool:
    """Whether the customer's ``message`` is not an answer to the question for ``slot``.

    A request to stop or for a person (``stop_intents``) never is an answer; a question
    that the NLU confidently understood as another intent is not either, nor any question
    in reply to a free-text question (a refund reason, a change), except for slots whose
    answer may be a question (``questions_answer``, a ticket's text).
    """
    intent = message.get("intent") or {}
    name = str(intent.get("name") or "")
    if name in config.stop_intents:
        return True
    rule = config.rule(slot)
    if rule is not None and rule.questions_answer:
        return False
    text = str(message.get("text") or "").strip()
    if rule is not None and text.endswith("?"):
        return True  # a reason or a change is not asked as a question
    confident = float(intent.get("confidence") or 0.0) >= config.question_confidence
    understood = name not in ("", "inform", "nlu_fallback", "out_of_scope")
    return understood and confident and looks_like_question(text, config)
