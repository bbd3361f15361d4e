"""bot.graph_runner against Rasa's dask runner, on the trained model.

The same messages are parsed and the same conversations predicted by an agent that loads the
model with Rasa's ``DaskGraphRunner`` and one that loads it with ``SequentialGraphRunner``:
every parse result and every prediction (action, policy, confidences, events) must be equal.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, List

import pytest
from rasa.core.agent import Agent
from rasa.core.channels.channel import UserMessage
from rasa.engine.exceptions import GraphRunError
from rasa.engine.runner.dask import DaskGraphRunner
from rasa.shared.core.events import ActionExecuted, SessionStarted, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from bot import graph_runner

MESSAGES = [
    "hi there",
    "where is my order 104233",
    "I want to talk to a person",
    "how do I get a refund for a damaged item",
    "can you call me back tomorrow at 10am",
    "asdf qwer",
    "/greet",
]


@pytest.fixture(scope="module")
def agents(model_path: Path) -> Iterator[List[Agent]]:
    import rasa.core.processor

    dask_agent = Agent.load(str(model_path))
    graph_runner.install()
    try:
        ours = Agent.load(str(model_path))
    finally:
        rasa.core.processor.DaskGraphRunner = DaskGraphRunner  # type: ignore[misc]
    assert type(dask_agent.processor.graph_runner) is DaskGraphRunner
    assert type(ours.processor.graph_runner) is graph_runner.SequentialGraphRunner
    yield [dask_agent, ours]


def _untimed(events: List[Any]) -> List[Any]:
    """The events' dicts without their timestamps (made when the prediction ran)."""
    return [{k: v for k, v in e.as_dict().items() if k != "timestamp"} for e in events]


def _prediction(agent: Agent, tracker: DialogueStateTracker) -> Any:
    prediction = agent.processor._predict_next_with_tracker(tracker.copy())
    return (prediction.policy_name, prediction.max_confidence_index, prediction.probabilities,
            _untimed(prediction.events), _untimed(prediction.optional_events),
            prediction.is_end_to_end_prediction,
            prediction.is_no_user_prediction, prediction.action_metadata)


async def test_parses_and_predictions_are_dasks(agents: List[Agent]) -> None:
    dask_agent, ours = agents
    tracker = DialogueStateTracker.from_events(
        "runner", [ActionExecuted("action_session_start"), SessionStarted(),
                   ActionExecuted("action_listen")], ours.domain.slots)
    for text in MESSAGES:
        message = UserMessage(text, sender_id="runner")
        parsed = await ours.processor.parse_message(message, tracker)
        assert parsed == await dask_agent.processor.parse_message(message, tracker), text
        tracker.update(UserUttered(text, parsed["intent"], parsed["entities"], parsed))
        prediction = _prediction(ours, tracker)
        assert prediction == _prediction(dask_agent, tracker), text
        assert prediction[0]  # a policy predicted something
        action = ours.domain.action_names_or_texts[prediction[1]]
        tracker.update(ActionExecuted(action))
        if action != "action_listen":
            assert _prediction(ours, tracker) == _prediction(dask_agent, tracker), text
            tracker.update(ActionExecuted("action_listen"))


async def test_plans_are_kept_per_target_set_and_inputs_checked(agents: List[Agent]) -> None:
    runner = agents[1].processor.graph_runner
    target = agents[1].processor.model_metadata.core_target
    tracker = DialogueStateTracker.from_events("runner-2", [ActionExecuted("action_listen")])
    runner.run(inputs={"__tracker__": tracker}, targets=[target])
    plan = runner._plans[(target,)]
    runner.run(inputs={"__tracker__": tracker}, targets=[target])
    assert runner._plans[(target,)] is plan  # ordered once
    steps, keys = plan
    order = [name for name, _ in steps]
    assert order[-1] == target and set(order) <= keys
    for position, (name, needs) in enumerate(steps):  # each node after what it needs
        assert all(order.index(need) < position for need in needs if need in order)
    with pytest.raises(GraphRunError, match="clashes with a node name"):
        runner.run(inputs={"__tracker__": target}, targets=[target])
