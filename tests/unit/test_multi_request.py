"""bot.multi_request: cutting a message into its requests, and the parse-data hook."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import pytest

from bot import multi_request
from bot.multi_request import MAX_REQUESTS, split_requests
from bot.triage import Triage, TriageConfigError

ROOT = Path(__file__).resolve().parents[2]
SEPARATORS = Triage.load(ROOT / "data" / "triage.yml").multi_request.separators


@pytest.mark.parametrize("text, parts", [
    ("Hi! where is order 104233 and also, do you accept apple pay?",
     ["where is order 104233", "do you accept apple pay?"]),
    ("do you accept apple pay? and where is my order 104233",
     ["do you accept apple pay?", "where is my order 104233"]),
    ("can I pay with paypal? also how long does delivery take?",
     ["can I pay with paypal?", "how long does delivery take?"]),
    ("my order 104190 arrived damaged, I want my money back. btw do you ship to austria?",
     ["my order 104190 arrived damaged, I want my money back", "do you ship to austria?"]),
    ("Hi there. Where is my order 104233?", ["Hi there", "Where is my order 104233?"]),
    ("cancel 104250 please. By the way, is express shipping available??",
     ["cancel 104250 please", "is express shipping available??"]),
])
def test_a_message_with_several_requests_is_cut_into_them(text: str, parts: List[str]) -> None:
    assert split_requests(text, SEPARATORS) == parts


@pytest.mark.parametrize("text", [
    "where is my order?",
    "I also want a refund",  # "also" inside one request
    "cancel order 104233 please",
    "I'd like a refund for order 104190, the shoes are too small.",
    "Thanks! Bye",  # parts of one word are no requests
    "plus size jackets?",
    "/track_order",  # a payload
    "/inform{\"order_number\": \"104233\"}? also where",
    "",
    "   ",
    # a description is not a list of requests: more than MAX_REQUESTS parts
    "The app crashes when I open my cart. I tried reinstalling it. It still crashes. Help me.",
    "is it 104.50 euros or 104.90? the app says both",  # no cut inside a number...
])
def test_a_message_with_one_request_is_not_cut(text: str) -> None:
    parts = split_requests(text, SEPARATORS)
    if text.startswith("is it 104"):
        assert parts == ["is it 104.50 euros or 104.90?", "the app says both"]
    else:
        assert parts == []


def test_a_very_long_message_is_left_whole() -> None:
    assert split_requests("where is my order? " + "a " * 400 + " and also a refund?", SEPARATORS) == []


def test_at_most_max_requests_parts() -> None:
    assert MAX_REQUESTS == 3
    three = "where is order 104233? do you take paypal? how long is delivery?"
    assert len(split_requests(three, SEPARATORS)) == 3
    assert split_requests(three + " can I pay later?", SEPARATORS) == []


def test_separators_are_whole_words_from_the_triage_file() -> None:
    assert split_requests("where is order 104233 btw do you take paypal", ()) == []
    assert split_requests("where is order 104233 btw do you take paypal", ("btw",)) == [
        "where is order 104233", "do you take paypal"]
    assert split_requests("where is order 104233 btwx do you take paypal", ("btw",)) == []


def test_triage_file_multi_request_section_is_checked() -> None:
    base: Dict[str, Any] = {"intents": {"greet": {"category": "GENERAL", "route": "self_service",
                                                  "priority": "low"}}}
    with pytest.raises(TriageConfigError, match="multi_request: unknown key"):
        Triage.from_dict({**base, "multi_request": {"separator": ["also"]}})
    with pytest.raises(TriageConfigError, match="separators must be a list"):
        Triage.from_dict({**base, "multi_request": {"separators": "also"}})
    with pytest.raises(TriageConfigError, match="unknown intent 'hello'"):
        Triage.from_dict({**base, "multi_request": {"ignore_intents": ["hello"]}})
    with pytest.raises(TriageConfigError, match="typed_quick_replies: unknown intent"):
        Triage.from_dict({**base, "typed_quick_replies": {"track_refund": ["greet"]}})
    with pytest.raises(TriageConfigError, match="expected a list of known intents"):
        Triage.from_dict({**base, "typed_quick_replies": {"greet": ["hello"]}})
    triage = Triage.from_dict({**base, "multi_request": {"separators": [" also "],
                                                         "ignore_intents": ["greet"]},
                               "typed_quick_replies": {"greet": ["greet"]}})
    assert triage.multi_request.separators == ("also",)
    assert triage.multi_request.ignore_intents == ("greet",)
    assert triage.typed_quick_reply("greet", ["track_order", "greet"]) == "greet"
    assert triage.typed_quick_reply("greet", ["track_order"]) is None


def test_install_adds_each_request_to_the_parse_data(monkeypatch: pytest.MonkeyPatch) -> None:
    from rasa.core.channels.channel import UserMessage
    from rasa.core.processor import MessageProcessor

    parsed: List[str] = []

    def fake_parse(self: Any, message: Any, tracker: Any, only_output_properties: bool = True
                   ) -> Dict[str, Any]:
        parsed.append(message.text)
        intent = "check_payment_methods" if "pay" in message.text else "track_order"
        entities = [{"entity": "order_number", "value": "104233", "start": 9, "end": 15,
                     "extractor": "RegexEntityExtractor"}] if "104233" in message.text else []
        return {"text": message.text, "intent": {"name": intent, "confidence": 0.9},
                "entities": entities}

    monkeypatch.setattr(MessageProcessor, "_parse_message_with_graph", fake_parse)
    monkeypatch.setattr(multi_request, "_installed", {})
    multi_request.install(separators=lambda: ("and also",))
    patched = MessageProcessor._parse_message_with_graph

    whole = patched(object(), UserMessage("where is 104233 and also, do you take apple pay?",
                                          sender_id="c1"), None)
    assert parsed == ["where is 104233 and also, do you take apple pay?",
                      "where is 104233", "do you take apple pay?"]
    assert whole["requests"] == [
        {"text": "where is 104233", "intent": {"name": "track_order", "confidence": 0.9},
         "entities": [{"entity": "order_number", "value": "104233", "start": 9, "end": 15}]},
        {"text": "do you take apple pay?",
         "intent": {"name": "check_payment_methods", "confidence": 0.9}, "entities": []},
    ]

    parsed.clear()
    single = patched(object(), UserMessage("where is 104233", sender_id="c1"), None)
    assert parsed == ["where is 104233"]
    assert "requests" not in single

    multi_request.install()  # idempotent: the wrapper is not wrapped again
    assert MessageProcessor._parse_message_with_graph is patched
