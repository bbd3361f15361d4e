"""The base of every form's validation action: what the customer said is never asked again.

Three rules, the same in every guided flow (``data/forms.yml`` tunes them):

1. A slot is validated only when the customer gave a value for it. Starting a flow resets
   its slots (``action_route``); those empty values are not "answers", so starting or
   restarting a flow never produces a validation message.
2. When a flow starts, every slot it can fill from what the customer already said is
   filled: the order number (from the message, or an order used a few turns ago), the
   reason, the change, the ticket text (from the message that started the flow, or a
   message just before it that the bot did not understand), a call time and an email
   address from the message. The flow then confirms instead of asking.
3. A question the bot asked is answered by any plain reply, unless the reply is a
   question about something else, a request to stop or for a person, or (for an order
   number, phone, time or email) clearly another request: then the form lets the dialogue
   rules answer it and asks again afterwards.
"""
from __future__ import annotations

import re
from abc import ABC, abstractmethod
from typing import Any, Dict, List, Mapping, Optional, Text, Tuple

from rasa_sdk import FormValidationAction, Tracker, utils
from rasa_sdk.events import ActionExecutionRejected, EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import triage_rules, typed_text
from bot.prefill import (
    FormConfig,
    confirm_answer,
    detail,
    is_digression,
    load_form_config,
    looks_like_question,
    mistyped_order_number,
)

#: Slots whose answer has a recognisable shape: a reply that the NLU confidently
#: understood as another request is not taken as the answer.
STRUCTURED_SLOTS = ("order_number", "phone", "callback_time", "contact_email")
#: Intents that are no other request (an answer may be classified as one of them).
ANSWER_INTENTS = ("inform", "nlu_fallback", "out_of_scope", "affirm")
#: The flow (``data/triage.yml``) each form serves.
FORM_FLOWS: Mapping[str, str] = {
    "order_status_form": "track_order",
    "cancel_order_form": "cancel_order",
    "change_order_form": "change_order",
    "refund_status_form": "track_refund",
    "refund_request_form": "request_refund",
    "ticket_form": "create_ticket",
    "callback_form": "schedule_callback",
    "reschedule_callback_form": "reschedule_callback",
}
#: Flows a free-text reply (a refund reason, a change) may look like without being a new
#: request: a problem description often reads like a complaint (the ticket flow) or a
#: delivery status ("it never arrived, the tracking is stuck").
DESCRIPTION_FLOWS = ("create_ticket", "track_order", "track_refund")
#: Flows whose request has its own words (the ``request_words`` of this slot in
#: ``data/forms.yml``): a free-text reply read as that flow without one of them describes
#: something ("I got the 20 L backpack, not the 30 L" is a refund reason, not a change).
FLOW_REQUEST_SLOTS: Mapping[str, str] = {
    "change_order": "change_request",
    "request_refund": "refund_reason",
}
#: Slot names the bot filled from earlier messages when the flow started.
PREFILLED_SLOT = "prefilled"
#: The last order the customer's messages named and the bot found in their account.
RECENT_ORDER_SLOT = "recent_order"


def flow_starting(tracker: Tracker, form: str) -> bool:
    """Whether ``form`` runs for the message that started it (it has asked nothing yet).

    True when it asked nothing (``requested_slot`` empty), when another form is still the
    active one (Rasa validates before switching), and when the form was activated after the
    latest customer message (Rasa activates it on a copy of the tracker, where the
    ``requested_slot`` of a form the customer left is still set).
    """
    if tracker.get_slot("requested_slot") is None:
        return True
    if (tracker.active_loop or {}).get("name") != form:
        return True
    for event in reversed(tracker.events):
        kind = event.get("event")
        if kind == "user":
            return False
        if kind == "active_loop" and event.get("name") == form:
            return True
    return False


def _user_turns_since(tracker: Tracker, slot: str) -> Optional[int]:
    """How many customer messages came after ``slot`` was last set (None: never set).

    Counting stops at a session start: a new session never reuses an older one's order.
    """
    count = 0
    for event in reversed(tracker.events):
        kind = event.get("event")
        if kind == "user":
            count += 1
        elif kind == "session_started":
            return None
        elif kind == "slot" and event.get("name") == slot:
            return count if event.get("value") else None
    return None


def _entity(message: Mapping[str, Any], name: str) -> Optional[str]:
    for entity in message.get("entities") or []:
        if entity.get("entity") == name and entity.get("value") not in (None, ""):
            return str(entity["value"])
    return None


def triage_entities(tracker: Tracker) -> List[str]:
    """The latest message's entity names, plus ``order_number`` when the customer named an
    order in the last ``recent_order_turns`` messages and the intent's triage rule turns
    into a flow with one (``with_entity``): "I just want to change the delivery address"
    right after tracking or cancelling an order is about that order. (Not for the entity
    fallback: a message not understood is not about the last order.)"""
    message = tracker.latest_message or {}
    names = [str(e.get("entity")) for e in message.get("entities") or []]
    rule = triage_rules().rules.get(str((message.get("intent") or {}).get("name") or ""))
    wants_order = rule is not None and any(e == "order_number" for e, _ in rule.with_entity)
    if wants_order and "order_number" not in names and tracker.get_slot(RECENT_ORDER_SLOT):
        turns = _user_turns_since(tracker, RECENT_ORDER_SLOT)
        if turns is not None and turns <= load_form_config().recent_order_turns:
            names.append("order_number")
    return names


def _says_any(text: str, words: Any) -> bool:
    """Whether ``text`` contains one of ``words`` (whole words, any case)."""
    lowered = text.lower()
    return any(re.search(r"\b" + re.escape(word) + r"\b", lowered) for word in words)


def _rejected_since_message(tracker: Tracker, form: str) -> bool:
    """Whether ``form`` already rejected the customer's latest message (the rules answered
    it; the form now runs again for the same message and must ask its question)."""
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            return False
        if event.get("event") == "action_execution_rejected" and event.get("name") == form:
            return True
    return False


def _previous_not_understood(tracker: Tracker) -> Optional[str]:
    """The customer's message before the latest one, if the bot did not understand it."""
    seen_latest = False
    routed_clarify = False
    for event in reversed(tracker.events):
        kind = event.get("event")
        if kind == "session_started":
            return None
        if kind == "slot" and event.get("name") == "route" and seen_latest:
            routed_clarify = routed_clarify or event.get("value") == "clarify"
        if kind == "user":
            if not seen_latest:
                seen_latest = True
                continue
            return typed_text(event) if routed_clarify else None
    return None


class SupportForm(FormValidationAction, ABC):
    """Validation for one form with the three rules of this module."""

    #: Intents that, as the reply to this form's confirmation question, mean "yes": the
    #: request itself again ("yes cancel it", "please cancel it" when asked to confirm a
    #: cancellation). A "yes"/"no" comes from the intent mappings of ``domain.yml``.
    confirm_intents: Tuple[str, ...] = ()

    @abstractmethod
    def name(self) -> Text:
        """The validation action's name, ``validate_<form>``."""

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[EventType]:
        """Reject the turn when the customer asked for another flow, else validate."""
        if not flow_starting(tracker, self.form_name()) and (
                self.other_request(tracker) or self.question_instead(tracker)):
            # the rules run action_route, which starts the flow asked for or answers
            return [ActionExecutionRejected(self.form_name())]
        return await super().run(dispatcher, tracker, domain)

    def question_instead(self, tracker: Tracker) -> bool:
        """Whether the customer asked a question instead of giving the phone number, time,
        email or order number asked for ("are you also open on saturday?" when asked for the
        phone): the rules answer it (or ask to rephrase) and the form asks again, instead of
        "that doesn't look like a phone number". Without this, a time or another entity in
        the question would also be taken for a slot the bot did not ask."""
        requested = tracker.get_slot("requested_slot")
        message = tracker.latest_message or {}
        if requested not in STRUCTURED_SLOTS or self.looks_like(str(requested), message) \
                or _rejected_since_message(tracker, self.form_name()):
            return False
        return looks_like_question(typed_text(message), load_form_config())

    def other_request(self, tracker: Tracker) -> bool:
        """Whether the latest message confidently asks for another guided flow.

        "wait, I want to cancel 104301 instead" while tracking is a new request, not an
        order number for the tracking; "it arrived damaged" while asked for a refund
        reason is the reason (it reads like a complaint, but descriptions do), and so is "I
        got the 20 L, not the 30 L" (read as a change, but without a word that asks for
        one, ``FLOW_REQUEST_SLOTS``). A ticket's text is never taken for another request.
        """
        message = tracker.latest_message or {}
        intent = message.get("intent") or {}
        name = str(intent.get("name") or "")
        requested = tracker.get_slot("requested_slot")
        if name in ANSWER_INTENTS or name in ("deny", "") or requested == "ticket_summary":
            return False
        if requested == "confirm" and name in self.confirm_intents:
            return False
        if requested in ("phone", "callback_time", "contact_email") and \
                self.looks_like(str(requested), message):
            return False  # "friday at 3" is the time asked for, whatever the intent
        result = triage_rules().classify(
            typed_text(message), name, float(intent.get("confidence") or 0.0),
            triage_entities(tracker), failed_before=0)
        if not result.understood or result.route != "guided" or result.flow is None:
            return False
        if result.flow == FORM_FLOWS.get(self.form_name()):
            return False
        free_text = requested not in STRUCTURED_SLOTS and requested != "confirm"
        if not free_text:
            return True
        if result.flow in DESCRIPTION_FLOWS:
            return False
        rule = load_form_config().rule(FLOW_REQUEST_SLOTS.get(result.flow, ""))
        return rule is None or _says_any(typed_text(message), rule.request_words)

    async def get_extraction_events(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[EventType]:
        """The ``extract_<slot>`` methods' values plus prefilled slots or a plain answer."""
        events = await super().get_extraction_events(dispatcher, tracker, domain)
        found: Dict[str, Any] = {e["name"]: e["value"] for e in events if e.get("event") == "slot"}
        given = {k for k, v in tracker.slots_to_validate().items() if v is not None}
        required = await self.required_slots(self.domain_slots(domain), dispatcher, tracker, domain)
        config = load_form_config()
        if flow_starting(tracker, self.form_name()):
            prefilled: List[str] = []
            for slot in required:
                if slot in found or slot in given or tracker.get_slot(slot) is not None:
                    continue
                value = self.prefill(slot, tracker, config)
                if value is not None:
                    found[slot] = value
                    prefilled.append(slot)
            if prefilled:
                found[PREFILLED_SLOT] = prefilled
        else:
            requested = tracker.get_slot("requested_slot")
            if requested in required and requested not in found and requested not in given \
                    and not _rejected_since_message(tracker, self.form_name()):
                # (a message the form rejected was answered by the rules: it is no answer)
                value = self.answer(requested, tracker, config)
                if value is not None:
                    found[requested] = value
            if requested in STRUCTURED_SLOTS and (requested in found or requested in given):
                found.update(self.more_than_asked(required, found, given, tracker, config))
        return [SlotSet(name, value) for name, value in found.items()]

    def more_than_asked(self, required: List[Text], found: Mapping[str, Any], given: Any,
                        tracker: Tracker, config: FormConfig) -> Dict[str, Any]:
        """Details the answer carries beyond the order number (or phone, ...) asked for:
        "104160, one of the bulbs was smashed in the box" is the order and the refund
        reason, so the reason is not asked for again."""
        text = typed_text(tracker.latest_message or {})
        extra: Dict[str, Any] = {}
        for slot in required:
            rule = config.rule(slot)
            if rule is None or slot in found or slot in given or tracker.get_slot(slot):
                continue
            value = detail(text, rule, config)
            if value is not None:
                extra[slot] = value
        return extra

    def prefill(self, slot: str, tracker: Tracker, config: FormConfig) -> Optional[Any]:
        """A value for ``slot`` from what the customer said before the flow asked anything."""
        message = tracker.latest_message or {}
        if slot == "order_number":
            mistyped = mistyped_order_number(typed_text(message))
            if mistyped is not None:  # "cancel order 10427": say what is wrong with it
                return mistyped
            turns = _user_turns_since(tracker, RECENT_ORDER_SLOT)
            recent = tracker.get_slot(RECENT_ORDER_SLOT)
            if turns is not None and turns <= config.recent_order_turns and recent:
                return str(recent)
            return None
        if slot == "callback_time":
            return _entity(message, "time")
        if slot == "contact_email":
            return _entity(message, "email")
        if slot == "phone":
            return _entity(message, "phone")
        rule = config.rule(slot)
        if rule is None:
            return None
        found = detail(typed_text(message), rule, config)
        if found is None:
            earlier = _previous_not_understood(tracker)
            found = detail(earlier, rule, config) if earlier else None
        return found

    def answer(self, slot: str, tracker: Tracker, config: FormConfig) -> Optional[Any]:
        """The customer's reply to the question for ``slot``, unless it is about something else."""
        message = tracker.latest_message or {}
        if str(message.get("text") or "").startswith("/"):
            return None  # a quick reply's payload: its entities fill the slots
        text = typed_text(message).strip()
        if not text or is_digression(message, slot, config):
            return None
        rule = config.rule(slot)
        if rule is not None and rule.questions_answer and self.faq_question(message, config):
            return None  # "wait, how do I reset my password?" is not the ticket's text
        if slot == "confirm":
            intent = message.get("intent") or {}
            name, confidence = str(intent.get("name") or ""), float(intent.get("confidence") or 0.0)
            # ...without new details ("call me at 11 instead" is not a yes)
            again = name in self.confirm_intents and not message.get("entities")
            if again and confidence >= 0.5:
                return True
            if name in ("affirm", "deny") or confidence >= config.question_confidence:
                return None  # the slot mapping has it, or it is another request
            return confirm_answer(text, config)  # unsure: "no dont send it, found the email"
        if slot in STRUCTURED_SLOTS:
            intent = message.get("intent") or {}
            other = str(intent.get("name") or "") not in ANSWER_INTENTS
            if other and float(intent.get("confidence") or 0.0) >= config.question_confidence \
                    and not self.looks_like(slot, message):
                return None
        return text

    @staticmethod
    def faq_question(message: Mapping[str, Any], config: FormConfig) -> bool:
        """Whether ``message`` is a question the FAQ answers, confidently understood."""
        intent = message.get("intent") or {}
        confidence = float(intent.get("confidence") or 0.0)
        text = typed_text(dict(message))
        if confidence < config.question_confidence or not looks_like_question(text, config):
            return False
        result = triage_rules().classify(text, str(intent.get("name") or ""), confidence, [],
                                         failed_before=0)
        return result.understood and result.route == "self_service"

    @staticmethod
    def looks_like(slot: str, message: Mapping[str, Any]) -> bool:
        """Whether ``message`` has the shape of an answer for a structured ``slot``."""
        text = str(message.get("text") or "")
        if slot == "contact_email":
            return "@" in text
        if slot == "phone":
            return sum(c.isdigit() for c in text) >= 6
        if slot == "callback_time":
            return _entity(message, "time") is not None
        return any(c.isdigit() for c in text)

    async def get_validation_events(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[EventType]:
        """Validate the slots the customer gave a value for; an empty value is not validated."""
        required = await self.required_slots(self.domain_slots(domain), dispatcher, tracker, domain)
        candidates = tracker.slots_to_validate()
        result: Dict[Text, Any] = {}
        for name, value in candidates.items():
            if name not in required:
                if name == PREFILLED_SLOT:
                    result[name] = value
                continue
            method = getattr(self, f"validate_{name.replace('-', '_')}", None)
            if value is None or method is None:
                result[name] = value
                continue
            output = await utils.call_potential_coroutine(method(value, dispatcher, tracker, domain))
            if isinstance(output, dict):
                result.update(output)
                tracker.slots.update(output)
        return [SlotSet(name, value) for name, value in result.items()]
