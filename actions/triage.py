"""Triage every message and answer self-service questions.

``action_route`` applies ``data/triage.yml`` to the latest message and sets the slots
the dialogue rules follow (``route``, ``flow``). Self-service answers are sent here,
from the FAQ article mapped to the intent or from a domain response.
"""
from __future__ import annotations

from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.common import customer_id, faq_index, say, text, triage_rules
from actions.forms import STRUCTURED_SLOTS, triage_entities
from actions.session import context_update
from bot.triage import CLARIFY, TriageResult

#: Slots a guided flow collects afresh each time it starts.
FLOW_SLOTS = (
    "confirm", "change_request", "refund_reason", "ticket_summary", "callback_time", "prefilled",
)


def triage_summary(result: TriageResult) -> Dict[str, Any]:
    """What is stored in the ``triage`` slot and on tickets."""
    return {
        "intent": result.intent,
        "confidence": round(result.confidence, 4),
        "category": result.category,
        "route": result.route,
        "priority": result.priority,
        "reasons": list(result.reasons),
    }


class ActionRoute(Action):
    """Decide self-service, guided flow, or a person for the latest message."""

    def name(self) -> Text:
        return "action_route"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        message = tracker.latest_message or {}
        intent = message.get("intent") or {}
        entities = [e.get("entity") for e in message.get("entities") or []]
        failed_before = int(tracker.get_slot("failed_turns") or 0)
        result = triage_rules().classify(
            message.get("text") or "",
            intent.get("name"),
            float(intent.get("confidence") or 0.0),
            triage_entities(tracker),  # an order named a moment ago counts (forms.py)
            failed_before=failed_before,
        )
        route, flow = result.route, result.flow
        if route == "guided" and customer_id(tracker) is None:
            # Every guided flow reads or changes the customer's orders, tickets or
            # call-backs: without a verified customer the bot discloses nothing.
            say(dispatcher, "login_required")
            route, flow = "self_service", None
        summary = triage_summary(result)
        events: List[EventType] = [
            *context_update(tracker),
            SlotSet("route", route),
            SlotSet("flow", flow),
            SlotSet("triage", summary),
            SlotSet("failed_turns", 0 if result.understood else failed_before + 1),
        ]
        if route != result.route:
            return events  # the customer was asked to log in (above)
        if route == "self_service":
            self._answer(dispatcher, result)
            if (tracker.active_loop or {}).get("name"):
                events.extend(_undo_extracted_slots(tracker))
        elif route == CLARIFY:
            self._clarify(dispatcher, message.get("text") or "")
        elif route == "guided":
            events.append(SlotSet("flow_triage", summary))
            events.extend(SlotSet(name, None) for name in FLOW_SLOTS if name != "callback_time")
            if "time" not in entities:
                events.append(SlotSet("callback_time", None))
            if "order_number" not in entities:
                # A new flow asks which order it is about instead of reusing an earlier one.
                events.extend([SlotSet("order_number", None), SlotSet("order_eligible", None)])
            events.append(SlotSet("order_attempts", 0))
        return events

    @staticmethod
    def _answer(dispatcher: CollectingDispatcher, result: TriageResult) -> None:
        article = faq_index().for_intent(result.intent or "", result.text)
        if article is None:
            hits = faq_index().search(result.text, limit=1)
            article = hits[0].article if hits else None
        if article is None:
            say(dispatcher, "no_answer_found", buttons=[_person_button()])
            return
        # The summary is the plain-text answer every channel shows; the article body comes
        # along as Markdown, which the widget channel turns into rich-text blocks.
        dispatcher.utter_message(
            text=article.summary,
            buttons=[dict(b) for b in article.buttons],
            json_message={"format": "markdown", "markdown": article.body},
        )

    @staticmethod
    def _clarify(dispatcher: CollectingDispatcher, text: str) -> None:
        hits = [h for h in faq_index().search(text, limit=3) if h.article.intents]
        buttons = [
            {"title": h.article.title, "payload": f"/{h.article.intents[0]}"} for h in hits
        ]
        buttons.append(_person_button())
        say(dispatcher, "clarify_with_suggestions" if hits else "clarify_no_suggestions", buttons=buttons)


def _undo_extracted_slots(tracker: Tracker) -> List[EventType]:
    """Slots Rasa filled from a question asked in the middle of a form, set back.

    Rasa fills entity-mapped slots from every message while a form is active ("are you
    also open on saturday?" fills ``callback_time``); the form does not validate a message
    it rejected, so such a value would stay as if the customer had answered with it.
    """
    before: Dict[str, Any] = {}
    after: Dict[str, Any] = {}
    seen_user = False
    for event in tracker.events:
        kind = event.get("event")
        if kind == "user":
            before.update(after)
            after, seen_user = {}, True
        elif kind == "slot" and event.get("name") in STRUCTURED_SLOTS:
            (after if seen_user else before)[event["name"]] = event.get("value")
    return [SlotSet(name, before.get(name)) for name, value in after.items()
            if value != before.get(name)]


def _person_button() -> Dict[str, str]:
    return {"title": text("talk_to_person_button"), "payload": "/contact_human_agent"}

