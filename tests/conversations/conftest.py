"""The conversation suite's servers: its own bot, so resetting demo orders touches no
other test's data."""
from __future__ import annotations

from typing import Any

import pytest

#: Every conversation is a new customer, but the call-back limits per phone number and per
#: day count across customers: the suite's hundreds of conversations would reach them and
#: fail depending on their order. The limits have their own tests
#: (tests/unit/test_actions_tickets_callbacks.py).
SUITE_ENV = {"CALLBACK_MAX_PER_NUMBER_DAY": "100000", "CALLBACK_MAX_PER_DAY": "100000"}


@pytest.fixture(scope="session")
def conversation_bot(bot_factory: Any) -> Any:
    """Rasa + action server on SQLite, the widget channel with the test limits."""
    return bot_factory.start("conversations", env=SUITE_ENV)
