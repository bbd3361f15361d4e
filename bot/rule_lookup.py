"""Rasa's rule policy matches its rules against a conversation with less repeated work.

On every prediction Rasa 3.6's ``RulePolicy._get_possible_keys`` filters all rule keys
(150 in this project's model) against the conversation's states from the newest back to the
first, and for each key and state it decodes the key (``json.loads`` behind an
``lru_cache`` of 1,000 keys), reverses it into a new list and compares. The filtering goes
on over the whole conversation even after no key is left, and after the longest rule, where
every key left is applicable by Rasa's own rule ("got further in the conversation history
than the rule's length"). That was 4 % of the Rasa process at 50 widget conversations
(issue 14).

:func:`install` replaces ``_get_possible_keys`` with the same filter that decodes and
reverses each key once per lookup (kept on the policy) and stops as soon as the answer can no
longer change: no key left, or every key left shorter than the states looked at. Each
comparison is still Rasa's ``_is_rule_applicable`` logic (the same checks in the same order,
on the same reversed rule states); ``tests/model/test_rule_lookup.py`` compares both on the
rules of the trained model.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Set, Text, Tuple

__all__ = ["install"]

_installed: Dict[str, Any] = {}

#: Per rule key: its states, newest first.
_Decoded = Dict[Text, List[Dict[Text, Any]]]


def _decoded(policy: Any, lookup: Dict[Text, Text]) -> Tuple[_Decoded, int]:
    """The lookup's keys decoded and reversed, and the longest rule's length (kept)."""
    kept: Dict[int, Tuple[Dict[Text, Text], _Decoded, int]] = policy.__dict__.setdefault(
        "_bot_decoded_rules", {})
    entry = kept.get(id(lookup))
    if entry is None or entry[0] is not lookup or len(entry[1]) != len(lookup):
        decoded = {key: list(reversed(json.loads(key))) for key in lookup}
        longest = max((len(states) for states in decoded.values()), default=0)
        entry = kept[id(lookup)] = (lookup, decoded, longest)
    return entry[1], entry[2]


def install() -> None:
    """Replace ``RulePolicy._get_possible_keys`` (idempotent)."""
    from rasa.core.policies.rule_policy import RulePolicy
    from rasa.shared.core.constants import PREVIOUS_ACTION

    if "original" in _installed:
        return
    matches = RulePolicy._does_rule_match_state

    def _get_possible_keys(
        self: Any, lookup: Dict[Text, Text], states: List[Dict[Text, Any]]
    ) -> Set[Text]:
        decoded, longest = _decoded(self, lookup)
        possible = set(lookup.keys())
        for turn_index, state in enumerate(reversed(states)):
            if not possible or turn_index >= longest:
                break  # nothing left to drop: every later filter keeps what is left
            current_previous_action = state.get(PREVIOUS_ACTION)
            kept: Set[Text] = set()
            for key in possible:
                rule_states = decoded[key]
                if turn_index >= len(rule_states):
                    kept.add(key)
                    continue
                rule_state = rule_states[turn_index]
                rule_previous_action: Optional[Any] = rule_state.get(PREVIOUS_ACTION)
                if not rule_previous_action and not current_previous_action:
                    kept.add(key)
                elif not rule_previous_action or not current_previous_action:
                    continue
                elif matches(rule_state, state):
                    kept.add(key)
            possible = kept
        return possible

    _installed["original"] = RulePolicy._get_possible_keys
    RulePolicy._get_possible_keys = _get_possible_keys


def uninstall() -> None:
    """Put Rasa's ``_get_possible_keys`` back (tests)."""
    from rasa.core.policies.rule_policy import RulePolicy

    original = _installed.pop("original", None)
    if original is not None:
        RulePolicy._get_possible_keys = original
