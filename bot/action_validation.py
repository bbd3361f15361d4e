"""Rasa's check of every action-server response, without rebuilding the validator per call.

Rasa 3.6 (``RemoteAction._validate_action_result`` in ``rasa/core/actions/action.py``)
calls ``jsonschema.validate`` on each response: that checks the schema against its
meta-schema and builds a new validator every time, then tries each event against all 23
``oneOf`` branches of ``EVENT_SCHEMA``. Under load this was a third of the Rasa process's CPU
(issue 14's profile); ``bench/bench_throughput.py`` prints the per-call figures.

:func:`install` replaces that method with one that gives the same answer: the schema is
checked once; each event is validated against the one branch its ``event`` name selects
(every branch pins ``event`` to its own constant, so exactly that branch can match, which is
what ``oneOf`` asks), with the common part of ``EVENT_SCHEMA``. A response that fails the
fast path is validated again with the full, cached validator, so the error raised is the
one Rasa would raise, with Rasa's own hint appended.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

__all__ = ["ActionResponseValidator", "install"]


class ActionResponseValidator:
    """Validates action-server responses like Rasa's schema does, built once."""

    def __init__(self) -> None:
        from jsonschema.validators import validator_for
        from rasa.core.actions.action import RemoteAction
        from rasa.shared.utils.schemas.events import EVENT_SCHEMA

        schema = RemoteAction.action_response_format_spec()
        cls = validator_for(schema)
        cls.check_schema(schema)
        self._full = cls(schema)
        common = {key: value for key, value in EVENT_SCHEMA.items() if key != "oneOf"}
        self._events: Dict[str, Any] = {}
        for branch in EVENT_SCHEMA["oneOf"]:
            name = branch["properties"]["event"]["const"]
            self._events[name] = cls({"allOf": [common, branch]})
        self._outer = cls({"type": "object", "properties": {
            "events": {"type": "array"},
            "responses": schema["properties"]["responses"]}})

    def _fast_ok(self, result: Any) -> bool:
        if not self._outer.is_valid(result):
            return False
        for event in result.get("events") or ():
            if not isinstance(event, dict):
                return False
            name = event.get("event")
            validator = self._events.get(name) if isinstance(name, str) else None
            if validator is None or not validator.is_valid(event):
                return False
        return True

    def error(self, result: Any) -> Optional[Any]:
        """The ``jsonschema.ValidationError`` Rasa's check raises for ``result``, or None."""
        if self._fast_ok(result):
            return None
        from jsonschema.exceptions import best_match

        return best_match(self._full.iter_errors(result))


_VALIDATOR: Optional[ActionResponseValidator] = None


def _validate_action_result(self: Any, result: Dict[str, Any]) -> bool:
    """Drop-in for ``RemoteAction._validate_action_result`` (same errors, same hint)."""
    global _VALIDATOR
    if _VALIDATOR is None:
        _VALIDATOR = ActionResponseValidator()
    error = _VALIDATOR.error(result)
    if error is None:
        return True
    from rasa.shared.constants import DOCS_BASE_URL

    error.message += (
        f". Failed to validate Action server response from API, "
        f"make sure your response from the Action endpoint is valid. "
        f"For more information about the format visit "
        f"{DOCS_BASE_URL}/custom-actions"
    )
    raise error


def install() -> None:
    """Make Rasa's remote actions use the cached validator (idempotent; at server start)."""
    from rasa.core.actions.action import RemoteAction

    RemoteAction._validate_action_result = _validate_action_result  # type: ignore[assignment]
