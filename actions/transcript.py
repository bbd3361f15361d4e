"""The chat transcript by email, on the customer's request ("email me this conversation")."""
from __future__ import annotations

from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher

from actions.common import actor, say, services, transcript, verified_customer
from bot.settings import get_settings


class ActionEmailTranscript(Action):
    """Queue the conversation's transcript for the verified customer's email address.

    Only for a verified customer (the address comes from the token, never from the
    message: nobody can have a conversation mailed to someone else), only while email is
    on (``SMTP_HOST``, docs/email.md). The email is sent even to an address that
    unsubscribed from notifications: the customer asked for it.
    """

    def name(self) -> Text:
        return "action_email_transcript"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]
    ) -> List[EventType]:
        customer = verified_customer(tracker)
        if customer is None:
            say(dispatcher, "login_required")
            return []
        mail = get_settings().mail
        if mail is None or not mail.enabled:
            say(dispatcher, "transcript_unavailable")
            return []
        address = str(customer.get("email") or "").strip()
        if not address:
            say(dispatcher, "transcript_no_email")
            return []
        from bot.mail.store import MailStore

        store = MailStore((await services()).store.engine)
        lines = [{"sender": line["author"], "text": line["text"]} for line in transcript(tracker)]
        queued = await store.do_request_transcript(
            tracker.sender_id, address, name=customer.get("name"), fallback_lines=lines,
            actor=actor(tracker))
        say(dispatcher, "transcript_no_email" if queued is None else "transcript_sent",
            email=address)
        return []
