"""bot/prefill.py: details found in a customer's message, with the project's forms.yml."""
from __future__ import annotations

from pathlib import Path

import pytest

from bot.prefill import (
    FormConfigError,
    detail,
    is_digression,
    load_form_config,
    mistyped_order_number,
    order_choice,
    parse_config,
)

CONFIG = load_form_config(Path(__file__).resolve().parents[2] / "data" / "forms.yml")


@pytest.mark.parametrize(
    ("slot", "text", "expected"),
    [
        ("refund_reason", "the jacket from order 104190 is too small, I want my money back",
         "The jacket is too small"),
        ("refund_reason", "I'd like a refund", None),
        ("refund_reason", "I want a refund for order 104190", None),
        ("refund_reason", "I want my money back because the zip broke", "The zip broke"),
        ("refund_reason", "refund please, the item arrived damaged", "The item arrived damaged"),
        ("refund_reason", "I want my money back. It arrived broken.", "It arrived broken."),
        ("change_request", "can I change the colour on order 104275 to blue?",
         "Change the colour to blue"),
        ("change_request", "I need to change my delivery address for order 104301", None),
        ("change_request", "change my delivery address to Hauptstr. 5, 10115 Berlin",
         "Change my delivery address to Hauptstr. 5, 10115 Berlin"),
        ("change_request", "i want to change order 104301", None),
        # "just" between "I" and "want to": the request only, no change said (round 6)
        ("change_request", "I just want to change the delivery address", None),
        ("change_request", "I just want to change it to 2 mats", "Change it to 2 mats"),
        ("ticket_summary", "I want to open a ticket: the app crashes when I open my cart",
         "The app crashes when I open my cart"),
        ("ticket_summary", "I want to report a problem", None),
        ("ticket_summary", "something is wrong with my payment", None),
        ("ticket_summary", "Hi, I want to report a problem. The app crashes when I open my cart!",
         "The app crashes when I open my cart!"),
        ("ticket_summary", "open a ticket", None),
        ("ticket_summary", "", None),
    ],
)
def test_detail(slot: str, text: str, expected: str) -> None:
    assert detail(text, CONFIG.rule(slot), CONFIG) == expected


def test_a_detail_is_cut_at_max_chars() -> None:
    rule = CONFIG.rule("refund_reason")
    assert len(detail("it broke " * 400, rule, CONFIG)) == rule.max_chars


@pytest.mark.parametrize(
    ("text", "intent", "confidence", "slot", "expected"),
    [
        ("how long does delivery take?", "delivery_period", 0.97, "order_number", True),
        ("what is your refund policy", "check_refund_policy", 0.95, "refund_reason", True),
        ("what is your refund policy", "check_refund_policy", 0.5, "refund_reason", False),
        ("why does the app crash when I pay?", "payment_issue", 0.95, "ticket_summary", False),
        ("no", "deny", 0.99, "ticket_summary", True),
        ("talk to a person", "contact_human_agent", 0.99, "refund_reason", True),
        ("it arrived damaged", "complaint", 0.97, "refund_reason", False),
        ("104233?", "inform", 0.99, "order_number", False),
    ],
)
def test_is_digression(text: str, intent: str, confidence: float, slot: str,
                       expected: bool) -> None:
    message = {"text": text, "intent": {"name": intent, "confidence": confidence}}
    assert is_digression(message, slot, CONFIG) is expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "expected a mapping with a 'slots' section"),
        ({"slots": {"x": []}}, "slots.x: expected a mapping"),
        ({"slots": {"x": {"min_words": 0}}}, "min_words must be >= 1"),
        ({"slots": {"x": {"request_words": [True]}}}, "quote yes, no, on and off"),
        ({"slots": {}, "recent_order_turns": "three"}, "must be numbers"),
        ({"slots": {}, "order_choices": ["first"]}, "order_choices: expected a mapping"),
        ({"slots": {}, "order_choices": {"one": ["first"]}}, "'one' is not a position"),
        ({"slots": {}, "order_choices": {0: ["first"]}}, "positions start at 1"),
    ],
)
def test_config_errors_name_the_entry(raw: object, message: str) -> None:
    with pytest.raises(FormConfigError, match=message):
        parse_config(raw, "forms.yml")


def test_an_item_alone_is_no_refund_reason() -> None:
    rule = CONFIG.rule("refund_reason")
    assert detail("i want to return the rain jacket from 104190 for a refund", rule, CONFIG) is None
    assert detail("I changed my mind", rule, CONFIG) == "I changed my mind"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("the first one", 1),
        ("First.", 1),
        ("my latest order please", 1),
        ("the 2nd", 2),
        ("the third one", 3),
        ("the last one", -1),
        ("104301", None),  # a number is taken as the order number it is
        ("the first one, 104233", None),
        ("the first one arrived broken and the second one never came at all", None),
        ("the blue one", None),
        ("", None),
    ],
)
def test_order_choice(text: str, expected: object) -> None:
    assert order_choice(text, CONFIG) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cancel order 10427", "10427"),
        ("order #1042755 please", "1042755"),
        ("my order nr. 10427", "10427"),
        ("#10427", "10427"),
        ("cancel 104275", None),  # six digits: a real order number
        ("order 104275 and 10427", None),  # one proper number is enough to go on
        ("call me at 10:30", None),
        ("I ordered 2 items", None),
        ("+49 151 23456789", None),
        ("cancel the order from 2024", None),
    ],
)
def test_mistyped_order_number(text: str, expected: object) -> None:
    assert mistyped_order_number(text) == expected


def test_a_smashed_item_is_a_refund_reason() -> None:
    rule = CONFIG.rule("refund_reason")
    assert detail("104160, one of the bulbs was smashed in the box", rule, CONFIG) == \
        "One of the bulbs was smashed in the box"


def test_a_reason_after_because_needs_no_marker_word() -> None:
    rule = CONFIG.rule("refund_reason")
    assert detail("refund for 104160 because the bulbs are flickering all the time", rule,
                  CONFIG) == "The bulbs are flickering all the time"
    assert detail("refund for 104160, the bulbs are yellow", rule, CONFIG) is None


def test_a_change_with_only_or_not_is_a_change() -> None:
    rule = CONFIG.rule("change_request")
    assert detail("Hallo, in order 104301 I have ordered 2 water bottles but I need only 1",
                  rule, CONFIG) == "I have ordered 2 water bottles but I need only 1"
    assert detail("modify 104275: the linen shirt in white, not blue", rule, CONFIG) == \
        "The linen shirt in white, not blue"
    assert detail("change the size", rule, CONFIG) is None


@pytest.mark.parametrize(("text", "answer"), [
    ("no dont send it, found the email, it was used already", False),
    ("nope", False),
    ("Don't, I'll call instead", False),
    ("yes please", True),
    ("sure, go ahead", True),
    ("not sure", None),  # "not" is no "no"
    ("nothing else", None),
    ("yesterday it arrived", None),  # whole words only
    ("the blue one", None),
])
def test_an_unsure_reply_to_a_confirmation_starts_with_its_answer(text: str, answer: Any) -> None:
    from bot.prefill import confirm_answer

    assert confirm_answer(text, CONFIG) is answer
