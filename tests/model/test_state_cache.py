"""bot.state_cache against Rasa's own states, on conversations with the trained model.

Conversations are driven by the model (each message parsed, the policies' prediction events
and predicted actions applied, slots set, forms started, messages reverted, sessions
restarted). Before every prediction the states built by Rasa's
``Domain.states_for_tracker_history`` and by the cached one must be equal, and so must the
predictions made with each.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, List

import pytest
from rasa.core.agent import Agent
from rasa.core.channels.channel import UserMessage
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (
    ActionExecuted, ActiveLoop, Restarted, SessionStarted, SlotSet, UserUttered,
    UserUtteranceReverted,
)
from rasa.shared.core.trackers import DialogueStateTracker

from bot import state_cache

SCRIPT = ["hi", "where is my order 104233", "how long does delivery take?",
          "call me back tomorrow at 10am", "I want to talk to a person", "thanks", "bye"]


@pytest.fixture(scope="module")
def agent(model_path: Path) -> Iterator[Agent]:
    yield Agent.load(str(model_path))
    state_cache.uninstall()


def _rasas(domain: Domain, tracker: DialogueStateTracker) -> List[Any]:
    state_cache.uninstall()
    try:
        return domain.states_for_tracker_history(tracker)
    finally:
        state_cache.install()


def _prediction(agent: Agent, tracker: DialogueStateTracker) -> Any:
    prediction = agent.processor._predict_next_with_tracker(tracker)
    return (prediction.policy_name, prediction.max_confidence_index, prediction.probabilities)


def _check(agent: Agent, tracker: DialogueStateTracker) -> Any:
    """States equal both ways; the prediction with cached states equals Rasa's."""
    domain = agent.domain
    ours = domain.states_for_tracker_history(tracker)
    assert ours == _rasas(domain, tracker)
    ours_prediction = _prediction(agent, tracker)
    state_cache.uninstall()
    try:
        rasas_prediction = _prediction(agent, tracker)
    finally:
        state_cache.install()
    assert ours_prediction == rasas_prediction
    return agent.processor._predict_next_with_tracker(tracker)


async def _say(agent: Agent, tracker: DialogueStateTracker, text: str) -> None:
    parsed = await agent.processor.parse_message(UserMessage(text, sender_id=tracker.sender_id),
                                                 tracker)
    tracker.update(UserUttered(text, parsed["intent"], parsed["entities"], parsed))
    for _ in range(4):  # the bot's actions until it listens
        prediction = _check(agent, tracker)
        tracker.update_with_events(prediction.events, agent.domain)
        action = agent.domain.action_names_or_texts[prediction.max_confidence_index]
        tracker.update(ActionExecuted(action))
        if action.endswith("_form"):
            tracker.update(ActiveLoop(action))
        if action == "action_listen":
            return


def _new(agent: Agent, sender: str) -> DialogueStateTracker:
    return DialogueStateTracker.from_events(
        sender, [ActionExecuted("action_session_start"), SessionStarted(),
                 ActionExecuted("action_listen")], agent.domain.slots)


async def test_states_and_predictions_are_rasas_through_conversations(agent: Agent) -> None:
    state_cache.install()
    anna, ben = _new(agent, "anna"), _new(agent, "ben")
    for text in SCRIPT:  # two conversations interleaved
        await _say(agent, anna, text)
        await _say(agent, ben, text)
    anna.update(SlotSet("order_number", "104233"))
    await _say(agent, anna, "and when will it arrive?")
    anna.update(ActiveLoop(None))
    await _say(agent, anna, "ok")
    anna.update(UserUtteranceReverted())  # the applied events shrink: replayed from the start
    _check(agent, anna)
    await _say(agent, anna, "can I pay with paypal")
    anna.update(Restarted())
    anna.update(ActionExecuted("action_listen"))
    await _say(agent, anna, "hello again")
    # the next prediction builds the states of the new events only (the cache is used)
    domain, built = agent.domain, []
    real = domain.get_active_state
    domain.get_active_state = lambda *a, **k: built.append(1) or real(*a, **k)  # type: ignore
    try:
        anna.update(ActionExecuted("utter_greet"))
        anna.update(ActionExecuted("action_listen"))
        states = domain.states_for_tracker_history(anna)
    finally:
        del domain.get_active_state
    # the listen after the last prediction, the two new actions, the last state
    assert len(built) == 4 and len(states) == 6  # since the restart: 2 of 6 were kept
    assert states == _rasas(domain, anna)
    # a tracker rebuilt from copies of the events (a database read) gives the same states
    copy = DialogueStateTracker.from_dict("anna", [e.as_dict() for e in anna.events],
                                          agent.domain.slots)
    assert agent.domain.states_for_tracker_history(copy) == _rasas(agent.domain, anna)


async def test_callers_editing_the_states_do_not_change_the_kept_ones(agent: Agent) -> None:
    state_cache.install()
    tracker = _new(agent, "chloe")
    await _say(agent, tracker, "where is my order 104233")
    first = agent.domain.states_for_tracker_history(tracker)
    for state in first:  # Rasa's featurizer edits the last state in place
        for sub_state in state.values():
            sub_state.clear()
    assert agent.domain.states_for_tracker_history(tracker) == _rasas(agent.domain, tracker)
