"""bot.rule_lookup against Rasa's own rule matching, on the trained model's rules.

Conversations are made of the rules' own states (each rule alone, every pair of rules one
after the other, and their tails), so that many rules match, some partly and some not at all;
for each, the keys Rasa's ``_get_possible_keys`` keeps must be exactly the ones ours keeps.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any, List

import pytest
from rasa.core.agent import Agent
from rasa.core.policies.rule_policy import RULES, RULES_FOR_LOOP_UNHAPPY_PATH, RulePolicy

from bot import rule_lookup


@pytest.fixture(scope="module")
def policy(model_path: Path) -> Any:
    agent = Agent.load(str(model_path))
    schema = agent.processor.graph_runner._graph_schema
    [name] = [n for n, node in schema.nodes.items() if node.uses is RulePolicy]
    node = agent.processor.graph_runner._instantiated_nodes[name]
    return node._component


def _as_conversation_state(state: Any) -> Any:
    """A rule's state as a conversation has it: feature values are tuples, not JSON lists."""
    return {kind: {key: tuple(value) if isinstance(value, list) else value
                   for key, value in sub_state.items()}
            for kind, sub_state in state.items()}


def _conversations(lookup: Any) -> List[List[Any]]:
    rules = [[_as_conversation_state(state) for state in json.loads(key)] for key in lookup]
    stranger = {"prev_action": {"action_name": "action_nobody_wrote"},
                "user": {"intent": "no_such_intent"}}
    conversations = [list(states) for states in rules]
    conversations += [list(states) + [stranger] for states in rules]  # matches no rule
    for first, second in itertools.product(rules[:40], rules[:40]):
        joined = first + second
        conversations += [joined, joined[1:], joined[len(joined) // 2:]]
    return conversations


@pytest.mark.parametrize("table", [RULES, RULES_FOR_LOOP_UNHAPPY_PATH])
def test_the_kept_rules_are_rasas(policy: Any, table: str) -> None:
    lookup = policy.lookup[table]
    assert len(lookup) > 10
    rule_lookup.uninstall()
    conversations = _conversations(lookup)
    rasas = [RulePolicy._get_possible_keys(policy, lookup, states) for states in conversations]
    rule_lookup.install()
    try:
        ours = [RulePolicy._get_possible_keys(policy, lookup, states) for states in conversations]
    finally:
        rule_lookup.uninstall()
    assert ours == rasas
    assert sum(1 for keys in rasas if keys) > len(lookup) // 2  # the test matches rules
    assert sum(1 for keys in rasas if not keys) >= len(lookup)  # ...and misses them
