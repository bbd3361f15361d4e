"""Tests for bot.nlu.time_extractor."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import pytest
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.nlu.training_data.message import Message

from bot.nlu.time_extractor import TimeEntityExtractor
from bot.settings import reset_settings_cache


@pytest.fixture
def make_extractor(tmp_path: Path):
    def make(config: Optional[Dict[str, Any]] = None) -> TimeEntityExtractor:
        return TimeEntityExtractor.create(
            {**TimeEntityExtractor.get_default_config(), "default_phone_region": "DE", **(config or {})},
            LocalModelStorage(tmp_path),
            Resource("x"),
            ExecutionContext(GraphSchema({}), "1"),
        )

    return make


def run(extractor: TimeEntityExtractor, text: str, **data: Any) -> list[Dict[str, Any]]:
    message = Message(data={"text": text, **data})
    (processed,) = extractor.process([message])
    return processed.get("entities")


def test_time_entity(make_extractor) -> None:
    assert run(make_extractor(), "call me tomorrow at 10") == [
        {"entity": "time", "start": 8, "end": 22, "value": "tomorrow at 10", "extractor": "TimeEntityExtractor"}
    ]


def test_time_and_phone(make_extractor) -> None:
    text = "ring me on 0151 2345 6789 friday afternoon"
    assert run(make_extractor(), text) == [
        {"entity": "time", "start": 26, "end": 42, "value": "friday afternoon", "extractor": "TimeEntityExtractor"},
        {"entity": "phone", "start": 11, "end": 25, "value": "+4915123456789", "extractor": "TimeEntityExtractor"},
    ]


def test_international_phone(make_extractor) -> None:
    assert run(make_extractor(), "call +1 (415) 555-2671") == [
        {"entity": "phone", "start": 5, "end": 22, "value": "+14155552671", "extractor": "TimeEntityExtractor"}
    ]


def test_invalid_phone_is_skipped(make_extractor) -> None:
    assert run(make_extractor(), "my number is 0000 000000") == []


def test_nothing_found_sets_empty_entities(make_extractor) -> None:
    assert run(make_extractor(), "hello, where is my order 12345?") == []


def test_phone_region_from_config(make_extractor) -> None:
    text = "my number is (415) 555-2671"
    # No leading + or 0: not treated as a phone number in any region.
    assert run(make_extractor({"default_phone_region": "US"}), text) == []
    assert run(make_extractor({"default_phone_region": "GB"}), "ring 020 7946 0958") == [
        {"entity": "phone", "start": 5, "end": 18, "value": "+442079460958", "extractor": "TimeEntityExtractor"}
    ]
    # The same national number is not valid as a German number.
    assert run(make_extractor({"default_phone_region": "DE"}), "ring 020 7946 0958") == []


def test_switches(make_extractor) -> None:
    text = "ring me on 0151 2345 6789 friday afternoon"
    only_phone = run(make_extractor({"extract_time": False}), text)
    assert [e["entity"] for e in only_phone] == ["phone"]
    only_time = run(make_extractor({"extract_phone": False}), text)
    assert [e["entity"] for e in only_time] == ["time"]


def test_keeps_overlapping_entity_from_other_extractor(make_extractor) -> None:
    diet = {"entity": "time", "start": 8, "end": 16, "value": "tomorrow", "extractor": "DIETClassifier"}
    assert run(make_extractor(), "call me tomorrow at 10", entities=[dict(diet)]) == [diet]


def test_other_entity_types_do_not_block(make_extractor) -> None:
    other = {"entity": "product", "start": 8, "end": 16, "value": "tomorrow", "extractor": "DIETClassifier"}
    assert run(make_extractor(), "call me tomorrow at 10", entities=[dict(other)]) == [
        other,
        {"entity": "time", "start": 8, "end": 22, "value": "tomorrow at 10", "extractor": "TimeEntityExtractor"},
    ]


def test_non_overlapping_same_type_is_added(make_extractor) -> None:
    text = "0151 2345 6789 or call me tomorrow at 10"
    earlier = {"entity": "time", "start": 0, "end": 4, "value": "0151", "extractor": "RegexEntityExtractor"}
    entities = run(make_extractor(), text, entities=[dict(earlier)])
    assert entities == [
        earlier,
        {"entity": "time", "start": 26, "end": 40, "value": "tomorrow at 10", "extractor": "TimeEntityExtractor"},
        {"entity": "phone", "start": 0, "end": 14, "value": "+4915123456789", "extractor": "TimeEntityExtractor"},
    ]


def test_message_without_text_is_untouched(make_extractor) -> None:
    message = Message(data={"intent": "greet"})
    (processed,) = make_extractor().process([message])
    assert processed.get("entities") is None


def test_processes_several_messages(make_extractor) -> None:
    messages = [Message(data={"text": "at 3pm"}), Message(data={"text": "hi"})]
    first, second = make_extractor().process(messages)
    assert first.get("entities") == [
        {"entity": "time", "start": 0, "end": 6, "value": "at 3pm", "extractor": "TimeEntityExtractor"}
    ]
    assert second.get("entities") == []


def test_phone_region_defaults_to_settings(make_extractor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEFAULT_PHONE_REGION", "GB")
    reset_settings_cache()
    try:
        extractor = make_extractor({"default_phone_region": None})
        assert extractor.phone_region == "GB"
        assert run(extractor, "ring 020 7946 0958")[0]["value"] == "+442079460958"
    finally:
        monkeypatch.undo()
        reset_settings_cache()
