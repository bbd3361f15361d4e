"""Triage every message and answer self-service questions.

``action_route`` applies ``data/triage.yml`` to the latest message and sets the slots
the dialogue rules follow (``route``, ``flow``). Self-service answers are sent here,
from the FAQ article mapped to the intent or from a domain response.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.common import customer_id, faq_index, say, text, triage_rules, typed_text
from actions.forms import STRUCTURED_SLOTS, triage_entities
from actions.session import context_update
from bot.prefill import load_form_config, looks_like_question
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
        intent_name = intent.get("name")
        meant = triage_rules().typed_quick_reply(intent_name, _offered_intents(tracker))
        if meant is not None and "order_number" not in entities:
            intent_name = meant  # "what's the status of it?" right after "Refund status"
        result = triage_rules().classify(
            message.get("text") or "",
            intent_name,
            float(intent.get("confidence") or 0.0),
            triage_entities(tracker),  # an order named a moment ago counts (forms.py)
            failed_before=failed_before,
        )
        in_form = bool((tracker.active_loop or {}).get("name"))
        parts = [] if in_form or result.route == "agent" and result.understood else (
            _requests(message))
        if parts and "angry_language" not in result.reasons and (
                not result.understood or result.intent != intent_name
                and all(part.intent != result.intent for part in parts)):
            # The message as a whole was not understood (or taken as another intent for an
            # order number or a phrase in it), its requests were one by one.
            result = _lead(parts)
        others = [part for part in parts if part.intent != result.intent]
        questions = [other for other in others if other.route == "self_service"]
        flows = [other for other in others if other.route == "guided" and other.flow]
        answered_first: List[TriageResult] = []
        if result.route == "self_service" and flows:
            # "do you take apple pay? and where is order 104233": answer, then track it.
            answered_first, result = [result, *questions], flows[0]
            questions = []
        if in_form and result.route == CLARIFY and looks_like_question(
                typed_text(message), load_form_config()):
            # A question in the middle of a flow that the NLU was unsure about: the best
            # answer the FAQ has, then the flow asks its question again (rules.yml), instead
            # of "not understood" and the question taken as the flow's answer.
            result = dataclasses.replace(result, route="self_service", flow=None)
        route, flow = result.route, result.flow
        answered: List[str] = []
        if route != "self_service":
            # Questions asked besides a flow are answered before it starts.
            answered_first, questions = [*answered_first, *questions], []
        for question in answered_first:
            self._answer(dispatcher, question, answered)
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
            self._answer(dispatcher, result, answered)
            for question in questions:
                self._answer(dispatcher, question, answered)
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
    def _answer(dispatcher: CollectingDispatcher, result: TriageResult,
                answered: Optional[List[str]] = None) -> None:
        """Send the FAQ answer for ``result``; an article already in ``answered`` (ids,
        appended to) is not sent twice for one message. For a message that was not
        understood (a question inside a flow) the article search decides."""
        article = faq_index().for_intent(result.intent or "", result.text) if (
            result.understood
            or result.confidence >= load_form_config().unsure_question_confidence) else None
        if article is None:
            hits = faq_index().search(result.text, limit=1)
            article = hits[0].article if hits else None
        if article is None:
            if answered is None or "" not in answered:
                say(dispatcher, "no_answer_found", buttons=[_person_button()])
            if answered is not None:
                answered.append("")
            return
        if answered is not None:
            if article.id in answered:
                return
            answered.append(article.id)
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


def _requests(message: Dict[str, Any]) -> List[TriageResult]:
    """The requests of a message that asks several things (``requests`` in the parse data,
    :mod:`bot.multi_request`), each triaged on its own: only understood ones, one per
    intent, no small talk (``multi_request.ignore_intents``), and a self-service intent only
    where the part is a question ("I already reset my password" in a description is none)."""
    rules = triage_rules()
    results: List[TriageResult] = []
    seen: set = set()
    for request in message.get("requests") or []:
        intent = request.get("intent") or {}
        name = intent.get("name")
        if not name or name in seen or name in rules.multi_request.ignore_intents:
            continue
        entities = [str(e.get("entity")) for e in request.get("entities") or []]
        part = rules.classify(str(request.get("text") or ""), name,
                              float(intent.get("confidence") or 0.0), entities, failed_before=0)
        if part.route == "self_service" and not looks_like_question(
                part.text, load_form_config()):
            continue
        if part.understood and part.route in ("self_service", "guided") and (
                "angry_language" not in part.reasons):
            seen.add(part.intent)
            results.append(part)
    return results


_PAYLOAD_INTENT = re.compile(r"^/([A-Za-z0-9_]+)")


def _offered_intents(tracker: Tracker) -> List[str]:
    """Intents of the quick replies the bot offered since the message before the latest."""
    offered: List[str] = []
    users = 0
    for event in reversed(tracker.events):
        kind = event.get("event")
        if kind == "user":
            users += 1
            if users == 2:
                break
        elif kind == "bot" and users == 1:
            for button in (event.get("data") or {}).get("buttons") or []:
                match = _PAYLOAD_INTENT.match(str(button.get("payload") or ""))
                if match:
                    offered.append(match.group(1))
    return offered


def _lead(parts: List[TriageResult]) -> TriageResult:
    """The request that leads when the message as a whole was not understood: the first
    that runs a flow, else the first."""
    return next((part for part in parts if part.route == "guided"), parts[0])


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

