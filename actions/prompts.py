"""Form questions whose text lives in ``data/messages.yml``.

Each ``action_ask_<slot>`` asks for one slot with the message ``ask_<slot>``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher

from actions.common import say
from bot.phone import normalize_phone
from bot.settings import get_settings


class _Ask(Action, ABC):
    @property
    @abstractmethod
    def slot(self) -> str:
        """The slot this action asks for."""

    def name(self) -> Text:
        return f"action_ask_{self.slot}"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        say(dispatcher, f"ask_{self.slot}")
        return []


class AskChangeRequest(_Ask):
    slot = "change_request"


class AskRefundReason(_Ask):
    slot = "refund_reason"


class AskTicketSummary(_Ask):
    slot = "ticket_summary"


class AskContactEmail(_Ask):
    slot = "contact_email"


class AskPhone(_Ask):
    """Ask for the number to call, offering the one in the customer's profile."""

    slot = "phone"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        profile = normalize_phone(str(tracker.get_slot("customer_phone") or ""),
                                  get_settings().default_phone_region)
        buttons = [{"title": profile, "payload": f'/inform{{"phone":"{profile}"}}'}] if profile else []
        say(dispatcher, "ask_phone", buttons=buttons)
        return []


class AskCallbackTime(_Ask):
    slot = "callback_time"
