"""Triage: category, route and priority for a customer message.

The mapping lives in ``data/triage.yml`` (edited by conversation designers). This
module loads and validates it and applies the escalation rules on top:

* an explicit request for a person routes to an agent with raised priority;
* angry or offensive language routes to an agent with raised priority;
* a message that is not understood (fallback intent, out of scope, or a shop intent
  below the confidence threshold) asks the customer to rephrase; the
  ``failed_in_row``-th such message in a row routes to an agent with raised priority.

Batch triage (``python -m bot.triage``) sees single messages with no conversation, so a
message that is not understood cannot be clarified and goes to a person.
"""
from __future__ import annotations

import functools
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml

ROUTES = ("self_service", "guided", "agent")
PRIORITIES = ("low", "normal", "high", "urgent")
FLOWS = (
    "track_order",
    "cancel_order",
    "change_order",
    "track_refund",
    "request_refund",
    "create_ticket",
    "schedule_callback",
    "reschedule_callback",
    "cancel_callback",
)
#: Route used inside a conversation when the bot asks the customer to rephrase.
CLARIFY = "clarify"


class TriageConfigError(ValueError):
    """``triage.yml`` is malformed; the message names the entry and the problem."""


@dataclass(frozen=True)
class IntentRule:
    """How one intent is handled."""

    intent: str
    category: str
    route: str
    priority: str
    flow: Optional[str] = None
    requires_entity: Optional[str] = None
    #: entity → flow: a message with that entity runs the flow instead ("change the
    #: delivery address of order 104301" is a change to that order, not the FAQ answer).
    with_entity: Tuple[Tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Escalation:
    """Escalation settings from the ``escalation`` section."""

    not_understood_below: float
    not_understood_intents: Tuple[str, ...]
    failed_in_row: int
    human_request_intents: Tuple[str, ...]
    raise_priority_by: int
    angry_patterns: Tuple[re.Pattern, ...]
    exclamations: int
    shouting_min_letters: int
    entity_fallback: Optional["EntityFallback"] = None
    #: (intent, phrase patterns): a message the NLU was unsure about that says one of the
    #: phrases is taken as that intent (``escalation.phrase_intents``).
    phrase_intents: Tuple[Tuple[str, Tuple[re.Pattern, ...]], ...] = ()


@dataclass(frozen=True)
class EntityFallback:
    """``escalation.entity_fallback``: a message not understood that names ``entity``.

    It is taken as its predicted intent when that is one of ``keep_intents`` with at least
    ``min_confidence``, else as ``intent`` ("wher is my oder 104218" → track that order).
    """

    entity: str
    intent: str
    keep_intents: Tuple[str, ...]
    min_confidence: float


@dataclass(frozen=True)
class MultiRequest:
    """``multi_request``: several requests in one message (:mod:`bot.multi_request`).

    ``separators`` start another request ("and also", "btw"); a second request is acted on
    only when it is understood (as any message: ``not_understood_below``) and its intent is
    not one of ``ignore_intents`` (a "thanks" at the end is no request).
    """

    separators: Tuple[str, ...] = ()
    ignore_intents: Tuple[str, ...] = ()


@dataclass(frozen=True)
class TriageResult:
    """The outcome of triaging one message.

    ``route`` is one of :data:`ROUTES`, or :data:`CLARIFY` inside a conversation when
    the bot should ask again before involving a person.
    """

    text: str
    intent: Optional[str]
    confidence: float
    category: str
    route: str
    priority: str
    flow: Optional[str] = None
    reasons: Tuple[str, ...] = field(default_factory=tuple)
    understood: bool = True

    def as_json(self) -> Dict[str, Any]:
        """The batch-triage output object."""
        return {
            "text": self.text,
            "intent": self.intent,
            "confidence": round(self.confidence, 4),
            "category": self.category,
            "route": self.route,
            "priority": self.priority,
            "reasons": list(self.reasons),
        }


def _word_pattern(word: str) -> re.Pattern:
    word = word.strip().lower()
    if not word:
        raise TriageConfigError("escalation.angry_words: empty entry")
    wildcard = word.endswith("*")
    core = re.escape(word.rstrip("*")).replace(r"\ ", r"\s+")
    suffix = r"\w*" if wildcard else ""
    return re.compile(rf"(?<![\w-]){core}{suffix}(?![\w-])", re.IGNORECASE)


def _raise(priority: str, steps: int) -> str:
    index = min(PRIORITIES.index(priority) + steps, len(PRIORITIES) - 1)
    return PRIORITIES[index]


class Triage:
    """Triage rules loaded from ``triage.yml``."""

    def __init__(self, rules: Mapping[str, IntentRule], escalation: Escalation,
                 multi_request: MultiRequest = MultiRequest(),
                 typed_quick_replies: Optional[Mapping[str, Tuple[str, ...]]] = None) -> None:
        self.rules = dict(rules)
        self.escalation = escalation
        self.multi_request = multi_request
        #: quick-reply intent → intents that mean it when typed right after it was offered
        self.typed_quick_replies: Dict[str, Tuple[str, ...]] = dict(typed_quick_replies or {})

    def typed_quick_reply(self, intent: Optional[str], offered: Sequence[str]) -> Optional[str]:
        """The offered quick reply (its intent) that a typed ``intent`` means, if any.

        Args:
            intent: The intent of the customer's message.
            offered: Intents of the quick replies the bot offered right before it.
        """
        for candidate in offered:
            if intent and intent in self.typed_quick_replies.get(candidate, ()):
                return candidate
        return None

    @classmethod
    def load(cls, path: Path) -> "Triage":
        """Load and validate a triage file.

        Raises:
            TriageConfigError: the file is missing, not YAML, or an entry is invalid.
        """
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as error:
            raise TriageConfigError(f"{path}: cannot read triage file: {error}") from error
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: Any, source: str = "triage.yml") -> "Triage":
        """Build from the parsed YAML mapping (see ``data/triage.yml``)."""
        if not isinstance(raw, dict) or not isinstance(raw.get("intents"), dict):
            raise TriageConfigError(f"{source}: expected a mapping with an 'intents' section")
        rules: Dict[str, IntentRule] = {}
        for intent, entry in raw["intents"].items():
            rules[intent] = cls._parse_rule(source, intent, entry)
        esc = raw.get("escalation") or {}
        if not isinstance(esc, dict):
            raise TriageConfigError(f"{source}: 'escalation' must be a mapping")
        try:
            threshold = float(esc.get("not_understood_below", 0.45))
            failed = int(esc.get("failed_in_row", 2))
            raise_by = int(esc.get("raise_priority_by", 1))
            exclamations = int(esc.get("exclamations", 3))
            shouting = int(esc.get("shouting_min_letters", 12))
        except (TypeError, ValueError) as error:
            raise TriageConfigError(f"{source}: escalation: {error}") from error
        if not 0.0 <= threshold <= 1.0:
            raise TriageConfigError(f"{source}: escalation.not_understood_below must be in [0, 1]")
        if failed < 1:
            raise TriageConfigError(f"{source}: escalation.failed_in_row must be at least 1")
        escalation = Escalation(
            not_understood_below=threshold,
            not_understood_intents=tuple(esc.get("not_understood_intents") or ()),
            failed_in_row=failed,
            human_request_intents=tuple(esc.get("human_request_intents") or ()),
            raise_priority_by=raise_by,
            angry_patterns=tuple(_word_pattern(w) for w in esc.get("angry_words") or ()),
            exclamations=exclamations,
            shouting_min_letters=shouting,
            entity_fallback=cls._parse_entity_fallback(source, esc.get("entity_fallback"), rules),
            phrase_intents=cls._parse_phrase_intents(source, esc.get("phrase_intents"), rules),
        )
        return cls(rules, escalation,
                   cls._parse_multi_request(source, raw.get("multi_request"), rules),
                   cls._parse_typed_quick_replies(source, raw.get("typed_quick_replies"), rules))

    @staticmethod
    def _parse_typed_quick_replies(source: str, raw: Any, rules: Mapping[str, IntentRule]
                                   ) -> Dict[str, Tuple[str, ...]]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise TriageConfigError(f"{source}: 'typed_quick_replies' must be a mapping")
        parsed: Dict[str, Tuple[str, ...]] = {}
        for offered, typed in raw.items():
            if offered not in rules:
                raise TriageConfigError(f"{source}: typed_quick_replies: unknown intent '{offered}'")
            if not isinstance(typed, list) or not all(t in rules for t in typed):
                raise TriageConfigError(
                    f"{source}: typed_quick_replies.{offered}: expected a list of known intents")
            parsed[offered] = tuple(typed)
        return parsed

    @staticmethod
    def _parse_multi_request(source: str, raw: Any, rules: Mapping[str, IntentRule]
                             ) -> MultiRequest:
        if raw is None:
            return MultiRequest()
        if not isinstance(raw, dict):
            raise TriageConfigError(f"{source}: 'multi_request' must be a mapping")
        unknown = set(raw) - {"separators", "ignore_intents"}
        if unknown:
            raise TriageConfigError(f"{source}: multi_request: unknown key(s) {sorted(unknown)}")
        separators = raw.get("separators") or []
        ignore = raw.get("ignore_intents") or []
        if not isinstance(separators, list) or not all(
                isinstance(s, str) and s.strip() for s in separators):
            raise TriageConfigError(f"{source}: multi_request.separators must be a list of words")
        if not isinstance(ignore, list) or not all(isinstance(i, str) for i in ignore):
            raise TriageConfigError(f"{source}: multi_request.ignore_intents must be a list")
        for intent in ignore:
            if intent not in rules:
                raise TriageConfigError(
                    f"{source}: multi_request.ignore_intents: unknown intent '{intent}'")
        return MultiRequest(tuple(s.strip() for s in separators), tuple(ignore))

    @staticmethod
    def _parse_phrase_intents(source: str, raw: Any, rules: Mapping[str, IntentRule]
                              ) -> Tuple[Tuple[str, Tuple[re.Pattern, ...]], ...]:
        if raw is None:
            return ()
        where = f"{source}: escalation.phrase_intents"
        if not isinstance(raw, dict):
            raise TriageConfigError(f"{where}: expected intent: [phrases]")
        parsed = []
        for intent, phrases in raw.items():
            if intent not in rules:
                raise TriageConfigError(f"{where}: unknown intent {intent!r}")
            if not isinstance(phrases, list) or not all(isinstance(p, str) for p in phrases):
                raise TriageConfigError(f"{where}.{intent}: expected a list of phrases")
            parsed.append((str(intent), tuple(_word_pattern(p) for p in phrases)))
        return tuple(parsed)

    @staticmethod
    def _parse_entity_fallback(source: str, raw: Any,
                               rules: Mapping[str, IntentRule]) -> Optional[EntityFallback]:
        if raw is None:
            return None
        where = f"{source}: escalation.entity_fallback"
        if not isinstance(raw, dict) or not raw.get("entity") or not raw.get("intent"):
            raise TriageConfigError(f"{where}: needs 'entity' and 'intent'")
        keep = tuple(raw.get("keep_intents") or ())
        for name in (raw["intent"], *keep):
            if name not in rules:
                raise TriageConfigError(f"{where}: unknown intent {name!r}")
        try:
            minimum = float(raw.get("min_confidence", 0.3))
        except (TypeError, ValueError):
            raise TriageConfigError(f"{where}: min_confidence must be a number") from None
        return EntityFallback(entity=str(raw["entity"]), intent=str(raw["intent"]),
                              keep_intents=keep, min_confidence=minimum)

    @staticmethod
    def _parse_rule(source: str, intent: str, entry: Any) -> IntentRule:
        where = f"{source}: intents.{intent}"
        if not isinstance(entry, dict):
            raise TriageConfigError(f"{where}: expected a mapping")
        unknown = set(entry) - {"category", "route", "priority", "flow", "requires_entity",
                                "with_entity"}
        if unknown:
            raise TriageConfigError(f"{where}: unknown field(s) {sorted(unknown)}")
        route = entry.get("route")
        priority = entry.get("priority", "normal")
        flow = entry.get("flow")
        if route not in ROUTES:
            raise TriageConfigError(f"{where}: route must be one of {list(ROUTES)}, got {route!r}")
        if priority not in PRIORITIES:
            raise TriageConfigError(
                f"{where}: priority must be one of {list(PRIORITIES)}, got {priority!r}"
            )
        if route == "guided" and flow not in FLOWS:
            raise TriageConfigError(f"{where}: guided routes need a flow from {list(FLOWS)}, got {flow!r}")
        if route != "guided" and flow is not None:
            raise TriageConfigError(f"{where}: only guided routes take a flow")
        if not entry.get("category"):
            raise TriageConfigError(f"{where}: category is required")
        with_entity = entry.get("with_entity") or {}
        if not isinstance(with_entity, dict) or any(f not in FLOWS for f in with_entity.values()):
            raise TriageConfigError(f"{where}: with_entity maps entities to flows of {list(FLOWS)}")
        return IntentRule(
            intent=intent,
            category=str(entry["category"]),
            route=route,
            priority=priority,
            flow=flow,
            requires_entity=entry.get("requires_entity"),
            with_entity=tuple((str(k), str(v)) for k, v in with_entity.items()),
        )

    # ------------------------------------------------------------------ analysis
    def is_angry(self, text: str) -> bool:
        """Whether the text contains angry or offensive language."""
        if any(p.search(text) for p in self.escalation.angry_patterns):
            return True
        if text.count("!") >= self.escalation.exclamations:
            return True
        letters = [c for c in text if c.isalpha()]
        if len(letters) >= self.escalation.shouting_min_letters:
            upper = sum(1 for c in letters if c.isupper())
            if upper / len(letters) >= 0.8:
                return True
        return False

    def _phrase_intent(self, text: str) -> Optional[str]:
        """The first ``phrase_intents`` intent one of whose phrases ``text`` says."""
        for phrase_intent, patterns in self.escalation.phrase_intents:
            if any(p.search(text) for p in patterns):
                return phrase_intent
        return None

    def classify(
        self,
        text: str,
        intent: Optional[str],
        confidence: float,
        entities: Sequence[str] = (),
        failed_before: Optional[int] = None,
    ) -> TriageResult:
        """Triage one message.

        Args:
            text: The customer's message.
            intent: The predicted intent name (``None`` when NLU found none).
            confidence: The intent's confidence.
            entities: Names of the entities found in the message.
            failed_before: Not-understood messages directly before this one in the
                conversation; ``None`` for batch triage (no conversation).

        Returns:
            The triage result; ``understood`` is False when the message was not
            understood, and ``route`` then is ``clarify`` or ``agent``.
        """
        esc = self.escalation
        rule = self.rules.get(intent or "")
        understood = (
            rule is not None
            and intent not in esc.not_understood_intents
            and confidence >= esc.not_understood_below
            and (rule.requires_entity is None or rule.requires_entity in entities)
        )
        reasons: List[str] = []
        fallback = esc.entity_fallback
        phrase_intent = None if understood else self._phrase_intent(text)
        if not understood and fallback is not None and fallback.entity in entities:
            # An order number in a message the NLU was unsure about: it is about that order.
            keep = intent in fallback.keep_intents and confidence >= fallback.min_confidence
            if keep or phrase_intent is None:  # "money back for 104190, ...": a refund
                intent = intent if keep else fallback.intent
                rule = self.rules[intent or ""]
                understood = rule.requires_entity is None or rule.requires_entity in entities
                if understood:
                    reasons.append(f"{fallback.entity}_named")
        angry = self.is_angry(text)
        if not understood and phrase_intent is not None:
            # "..., I want to speak to someone" after some context; "I want to report a
            # problem: ..." with words the NLU has not seen
            intent, rule, understood = phrase_intent, self.rules[phrase_intent], True
            reasons.append("phrase")
        if understood:
            assert rule is not None
            category, route, priority = rule.category, rule.route, rule.priority
            flow = rule.flow
            for entity, entity_flow in rule.with_entity:
                if entity in entities:
                    route, flow = "guided", entity_flow
                    break
            if intent in esc.human_request_intents:
                reasons.append("human_requested")
        else:
            category, route, priority, flow = "OTHER", CLARIFY, "normal", None
            reasons.append("low_confidence" if rule and intent not in esc.not_understood_intents
                           else "not_understood")
            failed = (failed_before or 0) + 1
            if failed_before is None or failed >= esc.failed_in_row:
                route = "agent"
                if failed_before is not None:
                    reasons.append("repeated_misunderstanding")
        if angry:
            reasons.append("angry_language")
            route, flow = "agent", None
        if route == "agent" and (angry or "human_requested" in reasons
                                 or "repeated_misunderstanding" in reasons):
            priority = _raise(priority, esc.raise_priority_by)
        return TriageResult(
            text=text,
            intent=intent,
            confidence=float(confidence),
            category=category,
            route=route,
            priority=priority,
            flow=flow,
            reasons=tuple(reasons),
            understood=understood,
        )


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, mtime: float) -> Triage:
    return Triage.load(Path(path))


def load_triage(path: Optional[Path] = None) -> Triage:
    """The triage rules from settings (reloaded when the file changes)."""
    from bot.settings import get_settings

    target = Path(path) if path else get_settings().triage_file
    return _load_cached(str(target), target.stat().st_mtime)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Batch triage: one message per line on stdin, one JSON object per line out."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--model", default="models", help="model file or directory (latest)")
    parser.add_argument("--triage", default=None, help="triage file (default: settings)")
    args = parser.parse_args(argv)

    from bot.nlu_runtime import load_interpreter

    triage = load_triage(Path(args.triage) if args.triage else None)
    parse = load_interpreter(args.model)
    for line in sys.stdin:
        text = line.strip()
        if not text:
            continue
        parsed = parse(text[:2000])
        intent = parsed.get("intent") or {}
        entities = [e.get("entity") for e in parsed.get("entities") or []]
        result = triage.classify(text, intent.get("name"), intent.get("confidence") or 0.0, entities)
        sys.stdout.write(json.dumps(result.as_json(), ensure_ascii=False) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
