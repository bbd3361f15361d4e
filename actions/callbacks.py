"""Call-back flows: book a call, move it, cancel it."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import actor, customer_id, customer_tz, now_utc, say, services, yes_no_buttons
from bot.business_hours import from_settings as business_hours
from bot.business_hours import validate_callback_time
from bot.phone import normalize_phone
from bot.settings import get_settings
from bot.support.ops import CallbackView, StateError
from bot.timeparse import humanize, parse_when


def _region(tracker: Tracker) -> str:
    context = tracker.get_slot("customer_context") or {}
    locale = str(context.get("locale") or "") if isinstance(context, dict) else ""
    if "-" in locale or "_" in locale:
        return locale.replace("_", "-").split("-")[-1].upper()
    return get_settings().default_phone_region


def _when(tracker: Tracker, iso: str) -> str:
    return humanize(datetime.fromisoformat(iso).astimezone(customer_tz(tracker)))


async def validate_time(
    slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker
) -> Dict[Text, Any]:
    """Understand a call-back time in the customer's zone, in business hours, in the future."""
    tz = customer_tz(tracker)
    now = now_utc().astimezone(tz)
    parsed = parse_when(str(slot_value or ""), now, tz)
    if parsed is None:
        say(dispatcher, "time_not_understood")
        return {"callback_time": None}
    hours = business_hours()
    problem = validate_callback_time(parsed.start, now, hours)
    if problem == "past":
        say(dispatcher, "time_past")
        return {"callback_time": None}
    if problem == "too_far":
        say(dispatcher, "time_too_far")
        return {"callback_time": None}
    if problem == "closed":
        suggestion = hours.next_opening(parsed.start).astimezone(tz)
        say(
            dispatcher,
            "time_closed",
            when=humanize(parsed.start),
            hours=hours.describe(),
            suggestion=humanize(suggestion),
        )
        return {"callback_time": None}
    return {"callback_time": parsed.start.isoformat()}


class ValidateCallbackForm(FormValidationAction):
    """Phone number (E.164) and a time for the call."""

    def name(self) -> Text:
        return "validate_callback_form"

    async def validate_phone(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        number = normalize_phone(str(slot_value or ""), _region(tracker))
        if number is None:
            say(dispatcher, "phone_invalid")
            return {"phone": None}
        return {"phone": number}

    async def validate_callback_time(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        return await validate_time(slot_value, dispatcher, tracker)


class ValidateRescheduleCallbackForm(FormValidationAction):
    """A new time for the customer's booked call-back (skipped when there is none)."""

    def name(self) -> Text:
        return "validate_reschedule_callback_form"

    async def required_slots(
        self,
        domain_slots: List[Text],
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: DomainDict,
    ) -> List[Text]:
        if await _next_callback(tracker) is None:
            return []
        return domain_slots

    async def validate_callback_time(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        return await validate_time(slot_value, dispatcher, tracker)


async def _next_callback(tracker: Tracker) -> Optional[CallbackView]:
    store = (await services()).store
    owner = customer_id(tracker)
    if owner:
        booked = await store.active_callbacks(customer_id=owner)
    else:
        booked = await store.active_callbacks(conversation_id=tracker.sender_id)
    return booked[0] if booked else None


class ActionAskCallbackConfirm(Action):
    def name(self) -> Text:
        return "action_ask_callback_form_confirm"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        say(
            dispatcher,
            "confirm_callback",
            buttons=yes_no_buttons(),
            phone=tracker.get_slot("phone"),
            when=_when(tracker, tracker.get_slot("callback_time")),
            tz=customer_tz(tracker).key,
        )
        return []


class ActionAskRescheduleTime(Action):
    def name(self) -> Text:
        return "action_ask_reschedule_callback_form_callback_time"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        booked = await _next_callback(tracker)
        if booked is None:  # the form skips this question when nothing is booked
            return []
        say(dispatcher, "ask_reschedule_time", when=_when(tracker, booked.scheduled_for.isoformat()))
        return []


class ActionScheduleCallback(Action):
    def name(self) -> Text:
        return "action_schedule_callback"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        events: List[EventType] = [SlotSet("confirm", None), SlotSet("callback_time", None)]
        if not tracker.get_slot("confirm"):
            say(dispatcher, "callback_declined")
            return events
        when = datetime.fromisoformat(tracker.get_slot("callback_time"))
        triage = tracker.get_slot("flow_triage") or {}
        booked = await (await services()).store.do_schedule_callback(
            conversation_id=tracker.sender_id,
            phone=tracker.get_slot("phone"),
            scheduled_for=when,
            customer_tz=customer_tz(tracker).key,
            topic=(triage.get("intent") if isinstance(triage, dict) else None),
            customer_id=customer_id(tracker),
        )
        say(
            dispatcher,
            "callback_booked",
            reference=booked.reference,
            phone=booked.phone,
            when=_when(tracker, when.isoformat()),
        )
        return events


class ActionRescheduleCallback(Action):
    def name(self) -> Text:
        return "action_reschedule_callback"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        events: List[EventType] = [SlotSet("callback_time", None)]
        booked = await _next_callback(tracker)
        if booked is None:
            say(dispatcher, "no_callback_to_move")
            return events
        when = datetime.fromisoformat(tracker.get_slot("callback_time"))
        try:
            moved = await (await services()).store.do_reschedule_callback(
                booked.reference, when, actor=actor(tracker)
            )
        except StateError as error:
            say(dispatcher, "callback_locked", reason=str(error))
            return events
        say(
            dispatcher,
            "callback_moved",
            phone=moved.phone,
            when=_when(tracker, when.isoformat()),
            reference=moved.reference,
        )
        return events


class ActionCancelCallback(Action):
    def name(self) -> Text:
        return "action_cancel_callback"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        booked = await _next_callback(tracker)
        if booked is None:
            say(dispatcher, "no_callback_to_cancel")
            return []
        try:
            await (await services()).store.do_cancel_callback(booked.reference, actor=actor(tracker))
        except StateError as error:
            say(dispatcher, "callback_locked", reason=str(error))
            return []
        say(
            dispatcher,
            "callback_cancelled",
            when=_when(tracker, booked.scheduled_for.isoformat()),
            reference=booked.reference,
        )
        return []
