"""Shared helpers for the custom actions: services, the customer, the transcript.

Services (the support store, the order source, triage rules, FAQ index) are created on
first use in the action server process, never at import time, and can be replaced in
tests with :func:`use_services`.
"""
from __future__ import annotations

import asyncio
import re
import functools
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, TypedDict
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rasa_sdk import Tracker

from rasa_sdk.executor import CollectingDispatcher

from bot.channels.text import FREE_TEXT_GUARD
from bot.faq import FaqIndex
from bot.messages import Button, load_messages
from bot.orders import OrderSource, SqlOrderSource
from bot.settings import get_settings
from bot.support.ops import SupportStore
from bot.triage import Triage, load_triage


class TranscriptLine(TypedDict):
    """One message of the conversation, as handed to a person."""

    author: str  # "customer" | "bot"
    text: str
    at: str  # ISO 8601, UTC


@dataclass
class Services:
    """What the actions talk to."""

    store: SupportStore
    orders: OrderSource


_services: Optional[Services] = None
_services_lock: Optional[asyncio.Lock] = None


async def services() -> Services:
    """The process's services, created (and their schemas ensured) on first use."""
    global _services, _services_lock
    if _services is not None:
        return _services
    if _services_lock is None:
        _services_lock = asyncio.Lock()
    async with _services_lock:
        if _services is None:
            store = SupportStore.from_settings()
            orders = SqlOrderSource.from_settings()
            await store.create_schema()
            await orders.create_schema()
            _services = Services(store=store, orders=orders)
    return _services


def use_services(value: Optional[Services]) -> None:
    """Replace the services (tests), or reset them with ``None``."""
    global _services
    _services = value


def triage_rules() -> Triage:
    """The triage rules (reloaded when ``triage.yml`` changes)."""
    return load_triage()


def faq_index() -> FaqIndex:
    """The FAQ articles (reloaded when an article file changes)."""
    directory = get_settings().faq_dir
    signature = tuple(sorted((p.name, p.stat().st_mtime_ns) for p in directory.glob("*.md")))
    return _load_faq(str(directory), signature)


@functools.lru_cache(maxsize=2)
def _load_faq(directory: str, signature: tuple) -> FaqIndex:
    return FaqIndex.load(Path(directory))


def now_utc() -> datetime:
    """The current time (patched in tests)."""
    return datetime.now(timezone.utc)


def customer_tz(tracker: Tracker) -> ZoneInfo:
    """The customer's time zone from their profile, else the default."""
    name = tracker.get_slot("customer_tz") or get_settings().default_customer_tz
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(get_settings().default_customer_tz)


def verified_customer(tracker: Tracker) -> Optional[Dict[str, Any]]:
    """The customer an authenticated channel vouched for with the latest message, if any.

    Only our channels put ``metadata.customer`` on a message: the widget from the verified
    token, the API channel for its authenticated caller (docs/security.md). It is read from
    the message every time, never from a slot, so neither ``/restart`` nor a forged slot
    event can clear or change who the bot acts for.
    """
    metadata = (tracker.latest_message or {}).get("metadata")
    customer = metadata.get("customer") if isinstance(metadata, dict) else None
    if not isinstance(customer, dict):
        return None
    value = customer.get("id")
    if not isinstance(value, str) or not value.strip():
        return None
    return customer


def customer_id(tracker: Tracker) -> Optional[str]:
    """The verified customer's id (see :func:`verified_customer`), else None."""
    customer = verified_customer(tracker)
    return str(customer["id"]).strip() if customer else None


def actor(tracker: Tracker) -> str:
    """Who acts, for the audit log: the customer, else the conversation."""
    owner = customer_id(tracker)
    return f"customer:{owner}" if owner else f"conversation:{tracker.sender_id}"


def typed_text(message: Optional[Dict[str, Any]]) -> str:
    """What the customer typed in ``message``, without the channel's free-text guard.

    The channels put an invisible U+2060 before typed text that starts with ``/`` (so it
    is never taken as an intent command, docs/security.md); the bot quotes and stores the
    text as typed.
    """
    value = str((message or {}).get("text") or "")
    return value[len(FREE_TEXT_GUARD):] if value.startswith(FREE_TEXT_GUARD) else value


def latest_entities(tracker: Tracker, name: str) -> List[Dict[str, Any]]:
    """Entities called ``name`` in the latest user message."""
    return [e for e in tracker.latest_message.get("entities") or [] if e.get("entity") == name]


def transcript(tracker: Tracker) -> List[TranscriptLine]:
    """Every customer and bot message of the conversation, oldest first."""
    lines: List[TranscriptLine] = []
    for event in tracker.events:
        kind = event.get("event")
        if kind not in ("user", "bot"):
            continue
        text = typed_text(event) if kind == "user" else event.get("text")
        if not text:
            continue
        if kind == "user" and str(event.get("text")).startswith("/"):
            parsed_intent = (event.get("parse_data") or {}).get("intent") or {}
            intent = parsed_intent.get("name") or re.split(r"[{@]", text[1:], maxsplit=1)[0]
            text = f"[quick reply: {intent.replace('_', ' ')}]"
        stamp = event.get("timestamp")
        at = (
            datetime.fromtimestamp(float(stamp), timezone.utc).isoformat()
            if stamp is not None
            else now_utc().isoformat()
        )
        lines.append({"author": "customer" if kind == "user" else "bot", "text": text, "at": at})
    return lines


def collected_slots(tracker: Tracker) -> Dict[str, Any]:
    """The slots the bot collected that a person may need (non-empty only)."""
    names = (
        "order_number", "change_request", "refund_reason", "ticket_summary", "contact_email",
        "phone", "callback_time", "customer_id", "customer_name", "customer_email",
        "customer_phone", "customer_tz", "customer_context",
    )
    return {name: tracker.get_slot(name) for name in names if tracker.get_slot(name) not in (None, "")}


def say(
    dispatcher: CollectingDispatcher, key: str, buttons: Optional[List[Button]] = None, **values: Any
) -> None:
    """Send the message ``key`` from ``data/messages.yml`` with its and extra quick replies."""
    message = load_messages().get(key)
    dispatcher.utter_message(
        text=message.render(**values), buttons=[*map(dict, message.buttons), *(buttons or [])]
    )


def text(key: str, **values: Any) -> str:
    """The rendered text of message ``key`` (to build a larger message)."""
    return load_messages().text(key, **values)


def yes_no_buttons() -> List[Dict[str, str]]:
    """Quick replies for a confirmation question."""
    return [{"title": text("button_yes"), "payload": "/affirm"},
            {"title": text("button_no"), "payload": "/deny"}]
