"""The action server registers exactly the custom actions the domain names."""
from __future__ import annotations

from pathlib import Path

import yaml
from rasa_sdk.executor import ActionExecutor

ROOT = Path(__file__).resolve().parents[2]


def test_action_server_registers_every_domain_action() -> None:
    executor = ActionExecutor()
    executor.register_package("actions")
    domain = yaml.safe_load((ROOT / "domain.yml").read_text())
    forms = set(domain["forms"])
    expected = {a for a in domain["actions"]} | {f"validate_{f}" for f in forms}
    assert set(executor.actions) == expected
