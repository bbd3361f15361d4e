"""Profile metadata at session start and the transcript handed to people."""
from __future__ import annotations

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet

from actions.common import transcript
from actions.session import profile_events


def test_profile_locale_without_new_context_keeps_the_carried_context() -> None:
    carried = {"app_version": "5.2.0", "device": "Pixel 8"}
    events = profile_events({"customer": {"id": "cust-ben", "locale": " en-GB "}}, carried)
    assert events == [
        SlotSet("customer_id", "cust-ben"),
        SlotSet("customer_context", {"app_version": "5.2.0", "device": "Pixel 8", "locale": "en-GB"}),
        SlotSet("locale", "en"),  # the bot's language for en-GB
    ]


def test_blank_locale_and_unchanged_context_add_nothing() -> None:
    carried = {"app_version": "5.2.0"}
    assert profile_events({"customer": {"locale": "   "}}, carried) == []
    assert profile_events({"context": {"app_version": "5.2.0"}}, carried) == []


def test_payload_with_entities_shows_the_intent_only() -> None:
    tracker = Tracker(
        "c1", {}, {}, [
            {"event": "user", "text": '/inform{"order_number":"104233"}', "timestamp": 0,
             "parse_data": {"intent": None}},
            {"event": "user", "text": "/track_order@0.9", "timestamp": 1},
        ],
        False, None, None, "action_listen",
    )
    assert [line["text"] for line in transcript(tracker)] == [
        "[quick reply: inform]", "[quick reply: track order]",
    ]
