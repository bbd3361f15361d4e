"""The rule policy's conversation states are computed once per event, not once per prediction.

Before each prediction Rasa 3.6's ``RulePolicy`` turns the whole conversation into states
(``Domain.states_for_tracker_history``): it replays every applied event of the session into
a fresh tracker and, before each action, builds the state (user intent and entities, the
previous action, every slot's features, the active loop). A turn predicts two or three
times, so a session of n events costs O(n) per prediction and O(n^2) over the session; at
50 widget conversations that was the largest part of Rasa's own work (9 % of the process,
issue 14), growing with the conversation.

:func:`install` keeps, per conversation (least recently used first out, :data:`KEPT`), the
applied events it replayed, the states it built before each of their actions, and the replay
tracker after them. When a tracker's applied events begin with the very same event objects
(``bot.tracker_cache`` hands every turn the same objects, and a turn's trackers share them),
only the new events are replayed; anything else (a rewind, a reverted action, a restart, a
new session, events read again from the database) replays from the start, as Rasa does. The
state after the last event is always built afresh, and so are all states of the ML-data mode
(``ignore_rule_only_turns``, which the project's policies do not use).

Why the kept states are the states Rasa would build: a state depends only on the replay
tracker at that point, which depends only on the events before it. The one event that changes
an earlier object is ``DefinePrevUserUtteredFeaturization``, which sets how the latest user
message is featurised; it comes right after that message, before the next action, so every
state kept (one before an action) was built after it, and only the last state, never kept,
can be built before it. Callers get copies of the kept states and of the last one (Rasa
edits the last state in place, and a state shares dicts with the kept replay tracker). ``tests/model/test_state_cache.py`` compares both on the model's own conversations.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Text, Tuple

__all__ = ["KEPT", "install", "uninstall"]

KEPT = 1000
"""Conversations whose states are kept."""

_installed: Dict[str, Any] = {}


@dataclass
class _Kept:
    events: List[Any] = field(default_factory=list)  # the applied events replayed, in order
    states: List[Dict[Text, Any]] = field(default_factory=list)  # before each ActionExecuted
    replay: Any = None  # the replay tracker after ``events``


class _Cache:
    def __init__(self) -> None:
        self.kept: "OrderedDict[Tuple[Any, ...], _Kept]" = OrderedDict()
        self.lock = threading.Lock()

    def take(self, key: Tuple[Any, ...]) -> Optional[_Kept]:
        with self.lock:
            return self.kept.pop(key, None)

    def put(self, key: Tuple[Any, ...], kept: _Kept) -> None:
        with self.lock:
            self.kept[key] = kept
            while len(self.kept) > KEPT:
                self.kept.popitem(last=False)


def _copy(state: Dict[Text, Any]) -> Dict[Text, Any]:
    return {kind: dict(sub_state) for kind, sub_state in state.items()}


def _continues(applied: List[Any], replayed: List[Any]) -> bool:
    if len(replayed) > len(applied):
        return False
    return all(a is b for a, b in zip(applied, replayed))


def install() -> None:
    """Replace ``Domain.states_for_tracker_history`` (idempotent)."""
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import ActionExecuted

    if "original" in _installed:
        return
    original = Domain.states_for_tracker_history

    def states_for_tracker_history(
        self: Any,
        tracker: Any,
        omit_unset_slots: bool = False,
        ignore_rule_only_turns: bool = False,
        rule_only_data: Optional[Dict[Text, Any]] = None,
    ) -> List[Dict[Text, Any]]:
        if ignore_rule_only_turns:
            return original(self, tracker, omit_unset_slots, ignore_rule_only_turns,
                            rule_only_data)
        cache: _Cache = self.__dict__.setdefault("_bot_state_cache", _Cache())
        key = (tracker.sender_id, bool(omit_unset_slots), bool(tracker.is_rule_tracker))
        applied = tracker.applied_events()
        kept = cache.take(key)  # out while it is extended: a failure leaves nothing half-done
        if kept is None or not _continues(applied, kept.events):
            kept = _Kept(replay=tracker.init_copy())
        for event in applied[len(kept.events):]:
            if isinstance(event, ActionExecuted):  # copied: a state shares the replay's dicts
                kept.states.append(_copy(self._clean_state(
                    self.get_active_state(kept.replay, omit_unset_slots=omit_unset_slots))))
            kept.replay.update(event)
        kept.events = list(applied)
        states = [_copy(state) for state in kept.states]
        states.append(_copy(self._clean_state(
            self.get_active_state(kept.replay, omit_unset_slots=omit_unset_slots))))
        cache.put(key, kept)
        return states

    _installed["original"] = original
    Domain.states_for_tracker_history = states_for_tracker_history


def uninstall() -> None:
    """Put Rasa's ``states_for_tracker_history`` back (tests)."""
    from rasa.shared.core.domain import Domain

    original = _installed.pop("original", None)
    if original is not None:
        Domain.states_for_tracker_history = original
