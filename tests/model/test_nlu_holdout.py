"""The trained model on the Bitext hold-out set (never seen in training)."""
from __future__ import annotations

import collections
from pathlib import Path
from typing import Callable, Dict, List, Tuple

from bot.nlu_runtime import yaml_examples

HOLDOUT = Path(__file__).resolve().parents[1] / "nlu" / "bitext_holdout.yml"
FLOOR = 0.95


def holdout_examples() -> List[Tuple[str, str]]:
    return yaml_examples(HOLDOUT)


def test_holdout_accuracy_is_at_least_the_floor(parse: Callable[[str], Dict]) -> None:
    examples = holdout_examples()
    assert len(examples) == 819
    wrong = collections.Counter()
    correct = 0
    for text, intent in examples:
        predicted = parse(text)["intent"]["name"]
        if predicted == intent:
            correct += 1
        else:
            wrong[(intent, predicted)] += 1
    accuracy = correct / len(examples)
    print(f"hold-out accuracy {accuracy:.4f} ({correct}/{len(examples)}); confusions: {wrong.most_common(5)}")
    assert accuracy >= FLOOR, f"hold-out accuracy {accuracy:.4f} < {FLOOR}; confusions: {wrong.most_common(10)}"


def test_every_intent_is_recognised_on_its_holdout(parse: Callable[[str], Dict]) -> None:
    per_intent: Dict[str, List[bool]] = collections.defaultdict(list)
    for text, intent in holdout_examples():
        per_intent[intent].append(parse(text)["intent"]["name"] == intent)
    weakest = min(per_intent, key=lambda i: sum(per_intent[i]) / len(per_intent[i]))
    rate = sum(per_intent[weakest]) / len(per_intent[weakest])
    assert len(per_intent) == 27
    assert rate >= 0.85, f"intent {weakest} only {rate:.2f} on its hold-out examples"
