"""Entities the trained pipeline extracts: order numbers, emails, phones, times."""
from __future__ import annotations

from typing import Callable, Dict, List, Tuple

import pytest

CASES: List[Tuple[str, List[Tuple[str, str]]]] = [
    ("where is my order 104233", [("order_number", "104233")]),
    ("cancel order #104301 pls", [("order_number", "104301")]),
    ("104250", [("order_number", "104250")]),
    ("my email is Mia.W@example.net", [("email", "Mia.W@example.net")]),
    ("call me on +44 7700 900123", [("phone", "+44 7700 900123")]),
    ("can someone call me back tomorrow at 10", [("time", "tomorrow at 10")]),
    ("friday afternoon works", [("time", "friday afternoon")]),
    ("my order is 12345", []),
]


@pytest.mark.parametrize("text,expected", CASES)
def test_entities(parse: Callable[[str], Dict], text: str, expected: List[Tuple[str, str]]) -> None:
    found = [(e["entity"], e["value"]) for e in parse(text)["entities"]]
    assert found == expected
