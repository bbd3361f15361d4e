"""Hand the conversation to a person: ticket, handoff record, bot paused."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Text
from zoneinfo import ZoneInfo

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActiveLoop, ConversationPaused, EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.common import collected_slots, customer_id, customer_tz, now_utc, services, text, transcript
from bot.business_hours import CustomerClock
from bot.business_hours import from_settings as business_hours


def _summary(tracker: Tracker) -> str:
    texts = [e.get("text") for e in tracker.events if e.get("event") == "user" and e.get("text")]
    recent = [t for t in texts if not t.startswith("/")][-3:]
    summary = " / ".join(recent) or "Customer asked for a person"
    return summary[:500]


def _wait_phrase(seconds: Optional[float]) -> str:
    """How long replies usually take, in words (from the last 30 days' first responses)."""
    if seconds is None:
        return text("handoff_wait_unknown")
    minutes = max(1, round(seconds / 60))
    if minutes < 60:
        return text("handoff_wait_minutes", minutes=minutes)
    return text("handoff_wait_hours", hours=max(1, round(minutes / 60)))


class ActionHandoff(Action):
    """Create or update the ticket, record the handoff and pause the bot."""

    def name(self) -> Text:
        return "action_handoff"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        svc = await services()
        triage: Dict[str, Any] = tracker.get_slot("triage") or {}
        category = triage.get("category") or "OTHER"
        priority = triage.get("priority") or "normal"
        reasons = triage.get("reasons") or []
        reason = ",".join(reasons) or "agent_route"
        details = {
            "transcript": transcript(tracker),
            "slots": collected_slots(tracker),
            "triage": triage,
            "context": tracker.get_slot("customer_context") or {},
        }
        owner = customer_id(tracker)
        if owner:  # the agent sees the customer's latest orders without asking
            details["recent_orders"] = [
                {"number": o.number, "status": o.status, "placed_at": o.placed_at.isoformat(),
                 "total_eur": str(o.total_eur), "refund_status": o.refund_status}
                for o in await svc.orders.recent_orders(owner, limit=5)
            ]
        # One transaction: the ticket (new, or the open one updated), the handoff
        # record, and the conversation queued for a person.
        ticket, _ = await svc.store.do_handoff(
            tracker.sender_id,
            summary=_summary(tracker),
            category=category if category not in ("GENERAL", "OTHER") else "CONTACT",
            priority=priority,
            reason=reason,
            details=details,
            contact_email=tracker.get_slot("contact_email") or tracker.get_slot("customer_email"),
            customer_id=customer_id(tracker),
        )

        online = await svc.store.agents_online()
        wait = None if online else await svc.store.typical_first_response()
        tz = customer_tz(tracker)
        dispatcher.utter_message(
            text=self._next_steps(
                ticket.reference, "angry_language" in reasons, tz, online, wait,
                zone_known=tracker.get_slot("customer_tz") == tz.key,
            )
        )
        return [
            ActiveLoop(None),
            SlotSet("requested_slot", None),
            SlotSet("handoff_ticket", ticket.reference),
            ConversationPaused(),
        ]

    @staticmethod
    def _next_steps(
        reference: str,
        upset: bool,
        tz: ZoneInfo,
        online: int = 1,
        wait: Optional[float] = None,
        zone_known: bool = True,
    ) -> str:
        """What happens next. Outside business hours (a public holiday included: it is
        named) the opening and the hours are said in the customer's zone ``tz``, which is
        named when it is not the team's or ``zone_known`` is False (a default zone)."""
        hours = business_hours()
        now = now_utc()
        prefix = text("handoff_upset_prefix") if upset else ""
        if hours.is_open(now):
            if online:
                return text("handoff_queued", prefix=prefix, reference=reference)
            return text("handoff_queued_no_agent", prefix=prefix, reference=reference,
                        wait=_wait_phrase(wait))
        clock = CustomerClock.of(hours, tz, now, zone_known=zone_known)
        holiday = hours.closure(now)
        return text(
            "handoff_queued_holiday" if holiday else "handoff_queued_closed",
            prefix=prefix,
            reference=reference,
            opening=clock.when(hours.next_opening(now)),
            hours=clock.opening_hours(),
            holiday=holiday or "",
        )
