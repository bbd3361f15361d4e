"""Customer text is text (bot/channels/text.py)."""
from __future__ import annotations

import pytest
from rasa.shared.core.training_data.story_reader.yaml_story_reader import YAMLStoryReader
from rasa.shared.nlu.training_data.message import Message

from bot.channels.text import FREE_TEXT_GUARD, as_free_text, payload_allowed, payload_intent


@pytest.mark.parametrize("typed", ["/restart", "  /restart  ", '/inform{"order_number":"1"}',
                                   "/session_start", "/affirm@1.0"])
def test_typed_commands_are_not_unpacked_by_rasa(typed: str) -> None:
    text = as_free_text(typed)

    assert text == FREE_TEXT_GUARD + typed.strip()
    unpacked = YAMLStoryReader.unpack_regex_message(Message({"text": text}))
    assert unpacked.get("intent") is None and unpacked.get("entities") is None
    # the check itself: without the guard Rasa would read a command
    assert YAMLStoryReader.unpack_regex_message(Message({"text": typed})).get("intent")


@pytest.mark.parametrize("typed", ["where is my order", "a/b", "http://x/y", " hi "])
def test_other_text_is_unchanged(typed: str) -> None:
    assert as_free_text(typed) == typed


def test_payload_intent() -> None:
    assert payload_intent('/inform{"order_number":"1"}') == "inform"
    assert payload_intent("/affirm@0.9") == "affirm"
    assert payload_intent("affirm") == ""


def test_only_offered_payloads_pass_and_commands_never() -> None:
    offered = {"/cancel_order", '/inform{"order_number":"104301"}', "/restart"}

    assert payload_allowed("/cancel_order", offered)
    assert payload_allowed('/inform{"order_number":"104301"}', offered)
    assert not payload_allowed('/inform{"order_number":"104250"}', offered)
    assert not payload_allowed("/restart", offered)  # even when offered
    assert not payload_allowed("/cancel_order", set())
