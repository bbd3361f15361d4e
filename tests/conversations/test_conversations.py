"""Every conversation of ``tests/conversations/*.yml``, through the widget WebSocket.

``CONVERSATIONS_DIR=tests/conversations/heldout`` runs the ``*.yml`` of that directory
instead (the held-out measurement sets, which are not part of ``make test``). See :mod:`tests.conversations.runner` for the format and the global rule (no validation
or apology text unless the customer's input was wrong).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List

import pytest

from tests.conversations.runner import (
    HERE,
    Conversation,
    load_conversations,
    run_conversation,
    validation_fragments,
)

pytestmark = pytest.mark.model

CONVERSATIONS = load_conversations(Path(os.environ.get("CONVERSATIONS_DIR") or HERE))


@pytest.fixture(scope="module")
def fragments() -> Dict[str, List[str]]:
    return validation_fragments()


@pytest.mark.parametrize("conversation", CONVERSATIONS, ids=[c.id for c in CONVERSATIONS])
async def test_conversation(conversation: Conversation, conversation_bot: Any,
                            fragments: Dict[str, List[str]]) -> None:
    await run_conversation(conversation_bot, conversation, fragments)


def test_the_suite_covers_every_flow() -> None:
    """At least 80 conversations, and every guided flow and handoff among them."""
    suite = load_conversations(HERE)
    assert len(suite) >= 80
    tags = {tag for c in suite for tag in c.tags}
    for flow in ("track_order", "cancel_order", "change_order", "track_refund",
                 "request_refund", "create_ticket", "schedule_callback",
                 "reschedule_callback", "cancel_callback", "handoff", "faq",
                 "up_front", "step_by_step", "wrong_then_right", "change_of_mind",
                 "question_in_the_middle", "leaving", "foreign_order", "unknown_order"):
        assert flow in tags, f"no conversation tagged {flow}"
