"""Session start: carry the customer's verified profile into slots."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActionExecuted, EventType, SessionStarted, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from bot.i18n import locale_of_metadata

PROFILE_SLOTS = {
    "customer_id": "id",
    "customer_name": "name",
    "customer_email": "email",
    "customer_phone": "phone",
    "customer_tz": "timezone",
}

#: Slots a new session keeps; dialogue state (route, flow, form slots) starts afresh.
CARRIED_SLOTS = (*PROFILE_SLOTS, "customer_context", "locale", "order_number", "phone",
                 "contact_email")


def profile_events(
    metadata: Optional[Dict[str, Any]], carried_context: Optional[Dict[str, Any]] = None
) -> List[EventType]:
    """Slot events for the profile and app context a channel put into the metadata.

    Channels send ``{"customer": {"id", "name", "email", "phone", "timezone", "locale"},
    "context": {"app_version", "device", "screen", "locale"}}``. Unknown or malformed
    metadata is ignored; without a new ``context`` the carried one is kept.
    """
    if not isinstance(metadata, dict):
        return []
    events: List[EventType] = []
    customer = metadata.get("customer")
    if isinstance(customer, dict):
        for slot, key in PROFILE_SLOTS.items():
            value = customer.get(key)
            if isinstance(value, (str, int)) and str(value).strip():
                events.append(SlotSet(slot, str(value).strip()[:200]))
    context = metadata.get("context")
    if isinstance(context, dict):
        clean: Dict[str, Any] = {
            k: v for k, v in context.items() if isinstance(v, (str, int, float, bool))
        }
    else:  # no new app context: keep the carried one, maybe adding the profile's locale
        clean = dict(carried_context or {})
    locale = customer.get("locale") if isinstance(customer, dict) else None
    if isinstance(locale, str) and locale.strip():
        clean.setdefault("locale", locale.strip()[:35])
    if clean and clean != (carried_context or {}):
        events.append(SlotSet("customer_context", clean))
    language = locale_of_metadata({"context": clean, "customer": customer})
    if language is not None:
        events.append(SlotSet("locale", language))
    return events


def context_update(tracker: Tracker) -> List[EventType]:
    """Keep ``customer_context`` current when the app sends a new context mid-session.

    The widget channel sends the app context (screen, app version, ...) with every
    message; when it differs from the slot, the slot follows, so a later ticket or
    handoff carries where the customer is now. The ``locale`` slot (the language of the
    replies and of domain.yml's responses) follows the app's locale the same way.
    """
    metadata = (tracker.latest_message or {}).get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("context"), dict):
        return []
    current = tracker.get_slot("customer_context")
    current = current if isinstance(current, dict) else {}
    events = [
        event for event in profile_events({"context": metadata["context"]}, current)
        if event.get("name") == "customer_context"
    ]
    language = locale_of_metadata(metadata)
    if language is not None and language != tracker.get_slot("locale"):
        events.append(SlotSet("locale", language))
    return events


class ActionSessionStart(Action):
    """Start a session, keep earlier slots, and load the customer's profile."""

    def name(self) -> Text:
        return "action_session_start"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        events: List[EventType] = [SessionStarted()]
        carried = {
            name: tracker.slots.get(name)
            for name in CARRIED_SLOTS
            if tracker.slots.get(name) is not None
        }
        events.extend(SlotSet(name, value) for name, value in carried.items())
        carried_context = carried.get("customer_context")
        # Rasa fills session_started_metadata when a session expires; a session the channel
        # starts itself ("/session_start" after the customer ended the chat) brings its
        # metadata with that message: the app's language then wins over the carried one
        metadata = tracker.get_slot("session_started_metadata")
        if not metadata:
            metadata = (tracker.latest_message or {}).get("metadata")
        events.extend(
            profile_events(
                metadata,
                carried_context if isinstance(carried_context, dict) else None,
            )
        )
        events.append(ActionExecuted("action_listen"))
        return events
