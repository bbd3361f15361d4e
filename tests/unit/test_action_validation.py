"""bot/action_validation.py answers exactly as Rasa's own check of action responses."""
from __future__ import annotations

from typing import Any, List, Optional

import pytest
from jsonschema import ValidationError, validate
from rasa.core.actions.action import RemoteAction
from rasa.shared.core import events as rasa_events

from bot import action_validation
from bot.action_validation import ActionResponseValidator


def _every_event() -> List[dict]:
    """One serialised example of each event type Rasa's schema lists."""
    samples = [
        rasa_events.UserUttered("hi", {"name": "greet", "confidence": 1.0}),
        rasa_events.ActionExecuted("action_listen"),
        rasa_events.SlotSet("order_number", "104233"),
        rasa_events.EntitiesAdded([{"entity": "order_number", "value": "104233"}]),
        rasa_events.ReminderCancelled(name="r"),
        rasa_events.ReminderScheduled("EXTERNAL_x", trigger_date_time=__import__("datetime").datetime(2026, 12, 3)),
        rasa_events.ActionExecutionRejected("ticket_form"),
        rasa_events.LoopInterrupted(True),
        rasa_events.ActiveLoop("ticket_form"),
        rasa_events.ActiveLoop(None),
        rasa_events.AllSlotsReset(),
        rasa_events.ConversationResumed(),
        rasa_events.ConversationPaused(),
        rasa_events.FollowupAction("action_listen"),
        rasa_events.StoryExported(),
        rasa_events.Restarted(),
        rasa_events.ActionReverted(),
        rasa_events.UserUtteranceReverted(),
        rasa_events.BotUttered("hello", {"buttons": [{"title": "Yes", "payload": "/affirm"}]}),
        rasa_events.SessionStarted(),
        rasa_events.AgentUttered("hi"),
    ]
    return [event.as_dict() for event in samples]


VALID = [
    {},
    {"events": [], "responses": []},
    {"events": _every_event()},
    {"events": [{"event": "slot", "name": "a", "value": None}],
     "responses": [{"text": "Hi", "buttons": []}]},
    {"events": [{"event": "form_validation", "validate": True}]},
    {"events": [{"event": "form", "name": "ticket_form"}]},
]

INVALID = [
    [],
    "events",
    {"events": {"event": "slot"}},
    {"events": ["slot"]},
    {"events": [{"name": "a"}]},  # no event name
    {"events": [{"event": "no_such_event"}]},
    {"events": [{"event": 7}]},
    {"events": [{"event": ["slot"]}]},
    {"events": [{"event": "slot"}]},  # SlotSet needs a name
    {"events": [{"event": "slot", "name": 3, "value": 1}]},
    {"events": [{"event": "action", "name": "x", "timestamp": "now"}]},
    {"events": [{"event": "user", "text": "hi", "metadata": []}]},
    {"responses": ["hi"]},
    {"events": _every_event() + [{"event": "restart_everything"}]},
]


def _rasa_error(result: Any) -> Optional[str]:
    try:
        validate(result, RemoteAction.action_response_format_spec())
    except ValidationError as error:
        return error.message
    return None


@pytest.mark.parametrize("result", VALID + INVALID)
def test_the_same_answer_and_error_as_rasas_check(result: Any) -> None:
    error = ActionResponseValidator().error(result)
    assert (None if error is None else error.message) == _rasa_error(result)


def test_valid_examples_are_valid_and_invalid_ones_are_not() -> None:
    assert all(_rasa_error(r) is None for r in VALID)
    assert all(_rasa_error(r) is not None for r in INVALID)


def test_installed_check_keeps_rasas_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RemoteAction, "_validate_action_result",
                        RemoteAction._validate_action_result)
    action_validation.install()
    action = RemoteAction("action_x", None)

    assert action._validate_action_result({"events": _every_event()}) is True
    with pytest.raises(ValidationError, match="Failed to validate Action server response"):
        action._validate_action_result({"events": [{"event": "slot"}]})
