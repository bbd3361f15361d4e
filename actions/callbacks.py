"""Call-back flows: book a call, move it, cancel it.

Every call-back is a phone call the shop pays for, so only a customer an authenticated
channel verified (:func:`actions.common.customer_id`) books, moves or cancels one; anyone
else is asked to log in (``login_required``) and nothing is stored. The number must be in
``CALLBACK_COUNTRIES`` and be a line a person answers (else the customer is asked for
another one), and the caps of :class:`bot.twilio.voice_store.CallbackLimits` apply: they are
checked when the flow starts (so the customer is not asked for details in vain) and
enforced in the booking's transaction (:meth:`VoiceStore.do_book_callback`).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import actor, customer_id, customer_tz, now_utc, say, services, yes_no_buttons
from actions.forms import SupportForm
from bot.business_hours import BusinessHours, CustomerClock
from bot.business_hours import from_settings as business_hours
from bot.business_hours import validate_callback_time
from bot.i18n import current_locale
from bot.phone import country_names, normalize_phone
from bot.settings import get_settings
from bot.support.ops import CallbackView, StateError
from bot.timeparse import parse_when
from bot.twilio.voice_store import CallbackLimits, CallbackRefused, VoiceStore


def _region(tracker: Tracker) -> str:
    context = tracker.get_slot("customer_context") or {}
    locale = str(context.get("locale") or "") if isinstance(context, dict) else ""
    if "-" in locale or "_" in locale:
        return locale.replace("_", "-").split("-")[-1].upper()
    return get_settings().default_phone_region


def _clock(tracker: Tracker, hours: Optional[BusinessHours] = None) -> CustomerClock:
    """How times are said to this customer: their zone, named when it is not the team's
    or is only the default (no ``customer_tz`` from the profile)."""
    tz = customer_tz(tracker)
    return CustomerClock.of(hours or business_hours(), tz, now_utc(),
                            zone_known=tracker.get_slot("customer_tz") == tz.key)


def _when(tracker: Tracker, iso: str) -> str:
    """``iso`` as the customer reads it: "tomorrow at 08:00 London time" (:func:`_clock`)."""
    return _clock(tracker).when(datetime.fromisoformat(iso))


async def _voice_store() -> VoiceStore:
    """The call-back store on the support database's engine (shared, not owned)."""
    return VoiceStore((await services()).store.engine)


def _say_refused(dispatcher: CollectingDispatcher, refused: CallbackRefused,
                limits: CallbackLimits, phone: Optional[str] = None) -> None:
    """Tell the customer, kindly, why no call-back can be booked."""
    say(dispatcher, f"callback_limit_{refused.kind}", limit=refused.limit, phone=phone or "",
        countries=country_names(limits.countries, current_locale()))


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
    if problem == "closed":  # outside the hours, or a public holiday (named)
        clock = _clock(tracker, hours)
        holiday = hours.closure(parsed.start)
        say(
            dispatcher,
            "time_closed_holiday" if holiday else "time_closed",
            when=clock.when(parsed.start),
            hours=clock.opening_hours(),
            suggestion=clock.when(hours.next_opening(parsed.start)),
            holiday=holiday or "",
        )
        return {"callback_time": None}
    return {"callback_time": parsed.start.isoformat()}


class ValidateCallbackForm(SupportForm):
    """Phone number (E.164, callable) and a time for the call.

    Asks nothing when no verified customer talks or a cap is already reached:
    ``action_schedule_callback`` then says why.
    """

    confirm_intents = ("request_callback",)

    def name(self) -> Text:
        return "validate_callback_form"

    async def required_slots(
        self,
        domain_slots: List[Text],
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: DomainDict,
    ) -> List[Text]:
        owner = customer_id(tracker)
        if owner is None:
            return []
        if await (await _voice_store()).booking_refusal(owner, CallbackLimits.from_settings()):
            return []
        return domain_slots

    async def validate_phone(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        number = normalize_phone(str(slot_value or ""), _region(tracker))
        if number is None:
            say(dispatcher, "phone_invalid")
            return {"phone": None}
        limits = CallbackLimits.from_settings()
        problem = limits.number_problem(number)
        owner = customer_id(tracker)
        refused: Optional[CallbackRefused] = None
        if problem is not None:
            refused = CallbackRefused(problem, f"{number} may not be called.")
        elif owner is not None:
            found = await (await _voice_store()).booking_refusal(owner, limits, phone=number)
            refused = found if found is not None and found.kind == "number_day" else None
        if refused is not None:
            _say_refused(dispatcher, refused, limits, phone=number)
            return {"phone": None}
        return {"phone": number}

    async def validate_callback_time(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        return await validate_time(slot_value, dispatcher, tracker)


class ValidateRescheduleCallbackForm(SupportForm):
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
    """The verified customer's next scheduled call-back (None without a verified customer)."""
    owner = customer_id(tracker)
    if owner is None:
        return None
    booked = await (await services()).store.active_callbacks(customer_id=owner)
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
        owner = customer_id(tracker)
        if owner is None:
            say(dispatcher, "login_required")
            return events
        limits = CallbackLimits.from_settings()
        store = await _voice_store()
        confirmed = tracker.get_slot("confirm")
        if confirmed is None:  # the form asked nothing: a cap was reached when it started
            refused = await store.booking_refusal(owner, limits)
            if refused is not None:
                _say_refused(dispatcher, refused, limits)
                return events
        if not confirmed or not tracker.get_slot("callback_time") or not tracker.get_slot("phone"):
            say(dispatcher, "callback_declined")
            return events
        when = datetime.fromisoformat(tracker.get_slot("callback_time"))
        triage = tracker.get_slot("flow_triage") or {}
        phone = tracker.get_slot("phone")
        try:
            booked = await store.do_book_callback(
                conversation_id=tracker.sender_id,
                customer_id=owner,
                phone=phone,
                scheduled_for=when,
                customer_tz=customer_tz(tracker).key,
                limits=limits,
                topic=(triage.get("intent") if isinstance(triage, dict) else None),
                actor=actor(tracker),
            )
        except CallbackRefused as refused:
            _say_refused(dispatcher, refused, limits, phone=phone)
            return [*events, SlotSet("phone", None)]
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
        if customer_id(tracker) is None:
            say(dispatcher, "login_required")
            return events
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
        if customer_id(tracker) is None:
            say(dispatcher, "login_required")
            return []
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
