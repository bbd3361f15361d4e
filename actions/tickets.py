"""Ticket flow: the customer describes a problem, the bot opens a ticket."""
from __future__ import annotations

import re
from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import collected_slots, customer_id, say, services, text, transcript, yes_no_buttons
from actions.forms import PREFILLED_SLOT, SupportForm

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")


class ValidateTicketForm(SupportForm):
    """Summary of the problem and a contact email (prefilled from the profile), then a yes.

    The ticket is shown before it is sent, whether the bot took its text from an earlier
    message or the customer typed it in answer to the question: the customer sees the text
    and the address the team will reply to, and can still say no.
    """

    confirm_intents = ("open_ticket",)

    def name(self) -> Text:
        return "validate_ticket_form"

    async def extract_contact_email(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        if tracker.get_slot("contact_email") is None and tracker.get_slot("customer_email"):
            return {"contact_email": tracker.get_slot("customer_email")}
        return {}

    async def validate_ticket_summary(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        text = str(slot_value or "").strip()
        if len(text) < 10:
            say(dispatcher, "ticket_summary_too_short")
            return {"ticket_summary": None}
        return {"ticket_summary": text[:2000]}

    async def validate_contact_email(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        match = EMAIL.search(str(slot_value or ""))
        if not match:
            say(dispatcher, "email_invalid", value=str(slot_value)[:60])
            return {"contact_email": None}
        return {"contact_email": match.group(0).lower()}


class ActionCreateTicket(Action):
    """Open a ticket with the category and priority from triage."""

    def name(self) -> Text:
        return "action_create_ticket"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        done: List[EventType] = [SlotSet("ticket_summary", None), SlotSet("confirm", None),
                                 SlotSet(PREFILLED_SLOT, None)]
        if customer_id(tracker) is None:
            say(dispatcher, "login_required")
            return done
        if tracker.get_slot("confirm") is False:
            say(dispatcher, "ticket_declined")
            return done
        triage: Dict[str, Any] = tracker.get_slot("flow_triage") or {}
        priority = triage.get("priority") or "normal"
        email = tracker.get_slot("contact_email")
        ticket = await (await services()).store.do_create_ticket(
            conversation_id=tracker.sender_id,
            summary=str(tracker.get_slot("ticket_summary") or "")[:2000],
            category=triage.get("category") or "OTHER",
            priority=priority,
            contact_email=email,
            customer_id=customer_id(tracker),
            source="bot",
            details={
                "triage": triage,
                "slots": collected_slots(tracker),
                "transcript": transcript(tracker),
                "context": tracker.get_slot("customer_context") or {},
            },
        )
        say(
            dispatcher,
            "ticket_created",
            reference=ticket.reference,
            email=email,
            reply_within=text(f"reply_within_{ticket.priority}"),
        )
        return [*done, SlotSet("last_ticket", ticket.reference)]


class ActionAskTicketConfirm(Action):
    """Show the ticket text the bot took from the customer's message before sending it."""

    def name(self) -> Text:
        return "action_ask_ticket_form_confirm"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        say(
            dispatcher,
            "confirm_ticket",
            buttons=yes_no_buttons(),
            summary=str(tracker.get_slot("ticket_summary") or ""),
            email=str(tracker.get_slot("contact_email") or ""),
        )
        return []
