"""Order flows: track, cancel, change, refund status and refund request."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import actor, customer_id, customer_tz, say, services, text, yes_no_buttons
from actions.forms import RECENT_ORDER_SLOT, SupportForm
from bot.orders import OrderStateError, OrderView, normalize_order_number
from bot.prefill import has_detail, load_form_config, order_choice
from bot.timeparse import say_date

#: Statuses in which an order can still be cancelled or changed.
OPEN_STATUSES = ("processing", "packed")
#: How many of the customer's newest orders "Which order is it about?" offers as buttons.
RECENT_ORDERS_SHOWN = 3
#: Statuses in which a refund can be requested.
REFUNDABLE_STATUSES = ("shipped", "in_transit", "delivered")

def _date(value: Any) -> str:
    """A day in the customer's language ("Tuesday 1 December", "Dienstag, 1. Dezember")."""
    return say_date(value) if value else ""


def describe_order(order: OrderView) -> str:
    """One or two sentences on where an order is."""
    tracking = text("order_tracking_code", code=order.tracking_code) if order.tracking_code else ""
    status = text(
        f"order_status_{order.status}",
        number=order.number,
        carrier=order.carrier or "our carrier",
        tracking=tracking,
    )
    if order.expected_delivery and order.status not in ("delivered", "cancelled"):
        status += text("order_expected", date=_date(order.expected_delivery))
    return status


async def _find_order(tracker: Tracker, number: Optional[str]) -> Optional[OrderView]:
    """The order, if it exists and belongs to the verified customer (fails closed)."""
    owner = customer_id(tracker)
    if not number or owner is None:
        return None
    order = await (await services()).orders.get_order(number)
    if order is None or order.customer_id != owner:
        return None
    return order


async def _slot_order(dispatcher: CollectingDispatcher, tracker: Tracker) -> Optional[OrderView]:
    """The order in the ``order_number`` slot, else None after telling the customer why."""
    if customer_id(tracker) is None:
        say(dispatcher, "login_required")
        return None
    order = await _find_order(tracker, tracker.get_slot("order_number"))
    if order is None:
        say(dispatcher, "order_gone")
    return order


class OrderFormValidation(SupportForm):
    """Validates the order number; subclasses add the rest of their form."""

    #: The ``OrderView`` flag that must hold for the rest of the form to make sense
    #: (``cancellable``, ``changeable``, ``refundable``); None: every order proceeds.
    eligible_if: Optional[str] = None

    @abstractmethod
    def name(self) -> Text:
        """The validation action's name, ``validate_<form>``."""

    async def validate_order_number(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        attempts = int(tracker.get_slot("order_attempts") or 0) + 1
        number = normalize_order_number(str(slot_value or ""))
        if number is None:
            number = await _picked_order(tracker, str(slot_value or ""))
        if number is None:
            say(dispatcher, "order_number_malformed", value=str(slot_value)[:40])
            return {"order_number": None, "order_attempts": attempts, "order_status": None,
                    "order_eligible": None}
        if customer_id(tracker) is None:
            say(dispatcher, "login_required")
            return {"order_number": None, "order_attempts": attempts, "order_status": None,
                    "order_eligible": None}
        order = await _find_order(tracker, number)
        if order is None:
            say(dispatcher, "order_not_found_in_account", number=number)
            return {"order_number": None, "order_attempts": attempts, "order_status": None,
                    "order_eligible": None}
        eligible = True if self.eligible_if is None else bool(getattr(order, self.eligible_if))
        return {"order_number": number, "order_attempts": 0, "order_status": order.status,
                "order_eligible": eligible, RECENT_ORDER_SLOT: number}

    async def required_slots(
        self,
        domain_slots: List[Text],
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: DomainDict,
    ) -> List[Text]:
        if tracker.get_slot("order_number") and tracker.get_slot("order_eligible") is False:
            return ["order_number"]  # the submit action explains why nothing more is asked
        return domain_slots


class ValidateOrderStatusForm(OrderFormValidation):
    def name(self) -> Text:
        return "validate_order_status_form"


class ValidateRefundStatusForm(OrderFormValidation):
    def name(self) -> Text:
        return "validate_refund_status_form"


class ValidateCancelOrderForm(OrderFormValidation):
    eligible_if = "cancellable"
    confirm_intents = ("cancel_order",)

    def name(self) -> Text:
        return "validate_cancel_order_form"


class ValidateChangeOrderForm(OrderFormValidation):
    eligible_if = "changeable"

    def name(self) -> Text:
        return "validate_change_order_form"

    async def validate_change_request(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        text = str(slot_value or "").strip()
        config = load_form_config()
        if len(text) < 3 or not has_detail(text, config.slots["change_request"], config):
            say(dispatcher, "change_request_too_short")
            return {"change_request": None}
        return {"change_request": text[:1000]}


class ValidateRefundRequestForm(OrderFormValidation):
    eligible_if = "refundable"
    confirm_intents = ("get_refund",)

    def name(self) -> Text:
        return "validate_refund_request_form"

    async def validate_refund_reason(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        text = str(slot_value or "").strip()
        config = load_form_config()
        if len(text) < 3 or not has_detail(text, config.slots["refund_reason"], config):
            say(dispatcher, "refund_reason_too_short")
            return {"refund_reason": None}
        return {"refund_reason": text[:1000]}


async def _picked_order(tracker: Tracker, reply: str) -> Optional[str]:
    """The order a reply like "the first one" picks from the list the bot showed.

    The list is the customer's newest orders, as :class:`ActionAskOrderNumber` shows them.
    """
    position = order_choice(reply, load_form_config())
    owner = customer_id(tracker)
    if position is None or owner is None:
        return None
    recent = await (await services()).orders.recent_orders(owner, limit=RECENT_ORDERS_SHOWN)
    index = position - 1 if position > 0 else len(recent) + position
    return recent[index].number if 0 <= index < len(recent) else None


class ActionAskOrderNumber(Action):
    """Ask for the order number, offering the customer's recent orders."""

    def name(self) -> Text:
        return "action_ask_order_number"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        owner = customer_id(tracker)
        recent: List[OrderView] = []
        if owner:
            recent = await (await services()).orders.recent_orders(owner, limit=RECENT_ORDERS_SHOWN)
        tz = customer_tz(tracker)
        attempts = int(tracker.get_slot("order_attempts") or 0)
        hint = text("ask_order_number_hint") if attempts >= 2 else ""
        if recent:
            buttons = [
                {
                    "title": f"#{o.number} · {_date(o.placed_at.astimezone(tz))} · "
                             f"{text(f'order_label_{o.status}')}",
                    "payload": f'/inform{{"order_number":"{o.number}"}}',
                }
                for o in recent
            ]
            say(dispatcher, "ask_order_number_recent", buttons=buttons, hint=hint)
        else:
            say(dispatcher, "ask_order_number", hint=hint)
        return []


class _AskConfirm(Action, ABC):
    """Ask to confirm an action on an order with the message ``question``."""

    question = ""

    @abstractmethod
    def name(self) -> Text:
        """``action_ask_<form>_confirm``."""

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        say(
            dispatcher,
            self.question,
            buttons=yes_no_buttons(),
            number=tracker.get_slot("order_number"),
            change=tracker.get_slot("change_request"),
            reason=tracker.get_slot("refund_reason"),
        )
        return []


class ActionAskCancelConfirm(_AskConfirm):
    question = "confirm_cancel"

    def name(self) -> Text:
        return "action_ask_cancel_order_form_confirm"


class ActionAskChangeConfirm(_AskConfirm):
    question = "confirm_change"

    def name(self) -> Text:
        return "action_ask_change_order_form_confirm"


class ActionAskRefundConfirm(_AskConfirm):
    question = "confirm_refund"

    def name(self) -> Text:
        return "action_ask_refund_request_form_confirm"


class ActionTrackOrder(Action):
    """Tell the customer where their order is."""

    def name(self) -> Text:
        return "action_track_order"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        order = await _slot_order(dispatcher, tracker)
        if order is None:
            return [SlotSet("order_number", None)]
        if order.status in OPEN_STATUSES:
            say(dispatcher, "track_order_buttons", status=describe_order(order))
        elif order.status in ("shipped", "in_transit"):
            say(dispatcher, "track_order_shipped", status=describe_order(order))
        else:
            dispatcher.utter_message(text=describe_order(order))
        return []


class ActionCancelOrder(Action):
    """Cancel the order if it is confirmed and still open."""

    def name(self) -> Text:
        return "action_cancel_order"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        events: List[EventType] = [SlotSet("confirm", None)]
        order = await _slot_order(dispatcher, tracker)
        if order is None:
            return events
        if order.status == "cancelled":
            say(dispatcher, "already_cancelled", number=order.number)
            return events
        if order.status not in OPEN_STATUSES:
            say(dispatcher, "cannot_cancel_shipped", status=describe_order(order))
            return events
        if not tracker.get_slot("confirm"):
            say(dispatcher, "cancel_declined", number=order.number)
            return events
        try:
            await (await services()).orders.cancel_order(order.number, actor=actor(tracker))
        except OrderStateError as error:
            dispatcher.utter_message(text=str(error))
            return events
        say(dispatcher, "order_cancelled", number=order.number)
        return events + [SlotSet("order_status", "cancelled"), SlotSet("order_eligible", False)]


async def _order_ticket(
    tracker: Tracker, order: OrderView, summary: str, category: str, priority: str = "normal"
) -> str:
    triage = tracker.get_slot("flow_triage") or {}
    ticket = await (await services()).store.do_create_ticket(
        conversation_id=tracker.sender_id,
        summary=summary,
        category=category,
        priority=triage.get("priority") or priority,
        contact_email=tracker.get_slot("customer_email"),
        customer_id=customer_id(tracker),
        source="bot",
        details={"order_number": order.number, "triage": triage},
    )
    return ticket.reference


class ActionChangeOrder(Action):
    """Pass a confirmed change request for an open order to the warehouse."""

    def name(self) -> Text:
        return "action_change_order"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        events: List[EventType] = [SlotSet("confirm", None), SlotSet("change_request", None)]
        order = await _slot_order(dispatcher, tracker)
        if order is None:
            return events
        if order.status not in OPEN_STATUSES:
            say(dispatcher, "cannot_change_shipped", status=describe_order(order))
            return events
        if not tracker.get_slot("confirm"):
            say(dispatcher, "change_declined", number=order.number)
            return events
        change = str(tracker.get_slot("change_request") or "")
        try:
            await (await services()).orders.request_change(order.number, change, actor=actor(tracker))
        except OrderStateError as error:
            dispatcher.utter_message(text=str(error))
            return events
        reference = await _order_ticket(
            tracker, order, f"Change request for order #{order.number}: {change}", "ORDER"
        )
        say(dispatcher, "change_requested", number=order.number, reference=reference)
        return events


class ActionTrackRefund(Action):
    """Tell the customer the state of the refund for an order."""

    def name(self) -> Text:
        return "action_track_refund"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        order = await _slot_order(dispatcher, tracker)
        if order is None:
            return []
        amount = text("refund_amount", amount=order.refund_amount_eur) if order.refund_amount_eur else ""
        say(dispatcher, f"refund_status_{order.refund_status}", number=order.number, amount=amount)
        return []


class ActionRequestRefund(Action):
    """Request a refund for a delivered or shipped order; opens a ticket."""

    def name(self) -> Text:
        return "action_request_refund"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        events: List[EventType] = [SlotSet("confirm", None), SlotSet("refund_reason", None)]
        order = await _slot_order(dispatcher, tracker)
        if order is None:
            return events
        if order.status in OPEN_STATUSES:
            say(dispatcher, "refund_not_shipped", number=order.number)
            return events
        if order.status not in REFUNDABLE_STATUSES:
            say(dispatcher, "refund_nothing", status=describe_order(order))
            return events
        if not order.paid:
            say(dispatcher, "refund_unpaid", number=order.number)
            return events
        if order.refund_status != "none":
            say(dispatcher, "refund_exists", number=order.number, refund_status=order.refund_status)
            return events
        if not tracker.get_slot("confirm"):
            say(dispatcher, "refund_declined_by_customer")
            return events
        reason = str(tracker.get_slot("refund_reason") or "")
        try:
            await (await services()).orders.request_refund(order.number, reason, actor=actor(tracker))
        except OrderStateError as error:
            dispatcher.utter_message(text=str(error))
            return events
        reference = await _order_ticket(
            tracker, order, f"Refund request for order #{order.number}: {reason}", "REFUND"
        )
        say(dispatcher, "refund_requested", number=order.number, reference=reference)
        return events
