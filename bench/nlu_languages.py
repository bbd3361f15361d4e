"""Accuracy of a trained model on the realistic sets per language (docs/nlu.md, "Languages").

``PYTHONPATH=. .venv/bin/python bench/nlu_languages.py [--model models/support.tar.gz]
[--sets en de fr]`` prints, per set, the intent accuracy and the most common confusions.
"""
from __future__ import annotations

import argparse
import collections
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
SETS = {
    "en": ROOT / "tests" / "nlu" / "realistic.yml",
    "de": ROOT / "tests" / "nlu" / "realistic_de.yml",
    "fr": ROOT / "tests" / "nlu" / "realistic_fr.yml",
}


def score(parse, examples: Sequence[Tuple[str, str]]) -> Dict[str, object]:
    """Intent accuracy of ``parse`` on ``examples``, with the commonest confusions."""
    wrong: collections.Counter = collections.Counter()
    correct = 0
    for text, intent in examples:
        parsed = parse(text)
        predicted = parsed["intent"]
        correct += predicted["name"] == intent
        if predicted["name"] != intent:
            wrong[(intent, predicted["name"])] += 1
    return {"n": len(examples), "correct": correct, "accuracy": correct / len(examples),
            "wrong": wrong.most_common(10)}


def main(argv: List[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=str(ROOT / "models" / "support.tar.gz"))
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    args = parser.parse_args(argv)
    from bot.nlu_runtime import load_interpreter, yaml_examples

    parse = load_interpreter(Path(args.model))
    for name in args.sets:
        if not SETS[name].exists():
            print(f"{name}: {SETS[name]} missing")
            continue
        started = time.monotonic()
        result = score(parse, yaml_examples(SETS[name]))
        print(f"{name}: intent accuracy {result['accuracy']:.4f} ({result['correct']}/{result['n']}), "
              f"{time.monotonic() - started:.0f} s; "
              f"wrong {result['wrong']}")


if __name__ == "__main__":
    main()
