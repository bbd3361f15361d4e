"""Load a trained Rasa model for offline parsing (batch triage, NLU scoring, benches)."""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

Parsed = Dict[str, Any]


def latest_model(path: str | Path = "models") -> Path:
    """The model file at ``path``, or the newest ``*.tar.gz`` inside the directory.

    Raises:
        FileNotFoundError: no model there (run ``make train``).
    """
    target = Path(path)
    if target.is_file():
        return target
    candidates = sorted(target.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise FileNotFoundError(f"no trained model in {target}/ - run `make train` first")
    return candidates[-1]


def load_interpreter(path: str | Path = "models") -> Callable[[str], Parsed]:
    """Return a function that parses one message with the model's NLU pipeline.

    The function runs on its own event loop; call it from synchronous code only.
    """
    from rasa.core.agent import Agent
    import structlog

    for name in ("rasa", "tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    loop = asyncio.new_event_loop()
    agent = Agent.load(str(latest_model(path)))

    def parse(text: str) -> Parsed:
        return loop.run_until_complete(agent.parse_message(text))

    return parse


def yaml_examples(path: str | Path) -> List[Tuple[str, str]]:
    """(text, intent) pairs of a Rasa NLU YAML file without entity annotations.

    Used for the held-out test sets in ``tests/nlu/`` (plain text, one ``- `` line each).
    """
    import yaml

    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    examples = []
    for block in data["nlu"]:
        for line in block["examples"].splitlines():
            text = line.strip()
            if text.startswith("- "):
                examples.append((text[2:].strip(), block["intent"]))
    return examples
