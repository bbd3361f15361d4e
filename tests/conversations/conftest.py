"""The conversation suite's servers: its own bot, so resetting demo orders touches no
other test's data."""
from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def conversation_bot(bot_factory: Any) -> Any:
    """Rasa + action server on SQLite, the widget channel with the test limits."""
    return bot_factory.start("conversations")
