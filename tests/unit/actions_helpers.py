"""Helpers for the custom-action tests (in the style of Rasa's financial-demo).

Not a conftest: test modules import what they need. It builds

* ``rasa_sdk`` trackers (:func:`make_tracker`, :func:`form_tracker`) with every
  domain slot present (``None`` unless given), a latest message, user/bot events
  with timestamps, and an active loop;
* a :class:`~rasa_sdk.executor.CollectingDispatcher` (:func:`dispatcher`);
* the domain as a dict (:func:`domain`, loaded once from ``domain.yml``);
* real services on a database URL (:func:`installed_services`): a
  :class:`~bot.support.ops.SupportStore` and a :class:`~bot.orders.SqlOrderSource`
  with their schemas, seeded with the demo orders at a fixed ``now``, installed with
  :func:`actions.common.use_services` and reset to ``None`` afterwards;
* a frozen clock (:func:`freeze_clock`) and pinned settings (:func:`pin_settings`).
"""
from __future__ import annotations

import copy
import functools
import importlib
import pkgutil
import warnings
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

PROJECT_ROOT = Path(__file__).resolve().parents[2]

#: The frozen "now": Monday 23 November 2026, 10:00 UTC = 11:00 in Berlin (team open).
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)
#: Sunday 29 November 2026, 10:00 UTC = 11:00 in Berlin (team closed).
SUNDAY = datetime(2026, 11, 29, 10, 0, tzinfo=timezone.utc)
#: Timestamp of the first event of a conversation built by :func:`make_tracker`.
T0 = NOW.timestamp() - 120

#: Slots Rasa adds to every tracker besides the domain's.
DEFAULT_SLOTS = ("requested_slot", "session_started_metadata")

#: The settings the expected texts are written for.
SETTINGS_ENV = {
    "BUSINESS_TZ": "Europe/Berlin",
    "BUSINESS_HOURS": "mon-fri 09:00-18:00, sat 10:00-14:00",
    "DEFAULT_CUSTOMER_TZ": "Europe/Berlin",
    "DEFAULT_PHONE_REGION": "DE",
}
SETTINGS_UNSET = ("SUPPORT_DATA_DIR", "TRIAGE_FILE", "FAQ_DIR", "SUPPORT_HOLIDAYS_COUNTRY",
                  "SUPPORT_HOLIDAYS_SUBDIV", "SUPPORT_CLOSED_DATES")

#: The demo customers' profiles as the channel puts them into slots.
CUSTOMERS: Dict[str, Dict[str, Any]] = {
    "cust-anna": {
        "customer_id": "cust-anna",
        "customer_name": "Anna Schmidt",
        "customer_email": "anna@example.com",
        "customer_tz": "Europe/Berlin",
        "customer_context": {"locale": "de-DE", "app_version": "5.2.0"},
    },
    "cust-ben": {
        "customer_id": "cust-ben",
        "customer_name": "Ben Carter",
        "customer_email": "ben@example.com",
        "customer_tz": "Europe/London",
        "customer_context": {"locale": "en-GB"},
    },
    "cust-chloe": {
        "customer_id": "cust-chloe",
        "customer_name": "Chloé Martin",
        "customer_email": "chloe@example.com",
        "customer_tz": "Europe/Paris",
        "customer_context": {"locale": "fr-FR"},
    },
}


# ------------------------------------------------------------------- domain


@functools.lru_cache(maxsize=1)
def _domain() -> Dict[str, Any]:
    from rasa.shared.core.domain import Domain

    with warnings.catch_warnings():  # "Slot auto-fill has been removed in 3.0" (always)
        warnings.simplefilter("ignore", UserWarning)
        return Domain.load(str(PROJECT_ROOT / "domain.yml")).as_dict()


def domain() -> Dict[str, Any]:
    """The domain as a dict (a fresh copy; loaded from ``domain.yml`` once)."""
    return copy.deepcopy(_domain())


def slot_names() -> List[str]:
    """Every slot of the domain plus Rasa's default slots."""
    return [*_domain()["slots"], *DEFAULT_SLOTS]


def default_slots() -> Dict[str, Any]:
    """Every slot, set to ``None``."""
    return {name: None for name in slot_names()}


# ------------------------------------------------------------------ events


def entity(name: str, value: Any, text: Optional[str] = None) -> Dict[str, Any]:
    """An entity as NLU puts it into ``latest_message``."""
    shown = str(value) if text is None else text
    return {
        "entity": name,
        "value": value,
        "start": 0,
        "end": len(shown),
        "extractor": "RegexEntityExtractor",
    }


def parse_data(
    text: str,
    intent: Optional[str] = None,
    confidence: float = 1.0,
    entities: Sequence[Mapping[str, Any]] = (),
) -> Dict[str, Any]:
    """A ``latest_message`` / user-event ``parse_data``."""
    return {
        "text": text,
        "intent": {"name": intent, "confidence": confidence} if intent else {},
        "entities": [dict(e) for e in entities],
        "intent_ranking": [{"name": intent, "confidence": confidence}] if intent else [],
    }


def user_event(
    text: str,
    intent: Optional[str] = None,
    confidence: float = 1.0,
    entities: Sequence[Mapping[str, Any]] = (),
    timestamp: Optional[float] = None,
) -> Dict[str, Any]:
    """A ``user`` event."""
    return {
        "event": "user",
        "timestamp": timestamp,
        "text": text,
        "parse_data": parse_data(text, intent, confidence, entities),
        "input_channel": "rest",
        "message_id": None,
        "metadata": {},
    }


def bot_event(text: str, timestamp: Optional[float] = None,
              buttons: Optional[Sequence[Mapping[str, str]]] = None) -> Dict[str, Any]:
    """A ``bot`` event (with its quick replies, if any)."""
    data: Dict[str, Any] = {"buttons": [dict(b) for b in buttons]} if buttons else {}
    return {"event": "bot", "timestamp": timestamp, "text": text, "data": data, "metadata": {}}


def action_event(name: str, timestamp: Optional[float] = None) -> Dict[str, Any]:
    """An ``action`` event."""
    return {
        "event": "action",
        "timestamp": timestamp,
        "name": name,
        "policy": None,
        "confidence": None,
    }


def slot_event(name: str, value: Any, timestamp: Optional[float] = None) -> Dict[str, Any]:
    """A ``slot`` event."""
    return {"event": "slot", "timestamp": timestamp, "name": name, "value": value}


def conversation(*turns: str, start: float = T0, step: float = 10.0) -> List[Dict[str, Any]]:
    """Alternating customer/bot messages (customer first), ``step`` seconds apart."""
    events: List[Dict[str, Any]] = []
    for index, text in enumerate(turns):
        at = start + index * step
        if index % 2 == 0:
            events += [action_event("action_listen", at), user_event(text, timestamp=at)]
        else:
            events.append(bot_event(text, timestamp=at))
    return events


def iso(timestamp: float) -> str:
    """How :func:`actions.common.transcript` writes an event timestamp."""
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat()


# ----------------------------------------------------------------- trackers


def make_tracker(
    slots: Optional[Mapping[str, Any]] = None,
    text: str = "",
    intent: Optional[str] = None,
    confidence: float = 1.0,
    entities: Sequence[Mapping[str, Any]] = (),
    events: Optional[List[Dict[str, Any]]] = None,
    active_loop: Optional[str] = None,
    sender_id: str = "conv-1",
    customer: Optional[str] = None,
    latest_action_name: str = "action_listen",
    requests: Optional[Sequence[Mapping[str, Any]]] = None,
) -> Tracker:
    """A tracker as the action server receives it.

    Args:
        slots: Slot values; every other domain slot is ``None``.
        text, intent, confidence, entities: The latest message.
        events: The events; by default the history ends with the latest message as a
            user event (timestamped) after ``action_listen``.
        active_loop: The name of the active form, if any.
        sender_id: The conversation id.
        customer: A demo customer id whose profile slots are set (``cust-anna``) and who
            is the verified customer of the latest message (its ``metadata.customer``).
        latest_action_name: The last action run.
        requests: The message's requests understood one by one (``parse_data["requests"]``,
            :mod:`bot.multi_request`), as ``(text, intent, confidence, entities)`` mappings.
    """
    values = default_slots()
    if customer is not None:
        values.update(copy.deepcopy(CUSTOMERS[customer]))
    values.update(slots or {})
    unknown = set(values) - set(slot_names())
    if unknown:
        raise ValueError(f"unknown slot(s) {sorted(unknown)}")
    latest = parse_data(text, intent, confidence, entities)
    if requests is not None:
        latest["requests"] = [
            {"text": r["text"], "intent": {"name": r["intent"], "confidence": r.get("confidence", 1.0)},
             "entities": [dict(e) for e in r.get("entities", ())]}
            for r in requests]
    if customer is not None:  # the channel verified the customer: metadata on the message
        profile = CUSTOMERS[customer]
        latest["metadata"] = {"customer": {
            key: profile[slot] for slot, key in (
                ("customer_id", "id"), ("customer_name", "name"),
                ("customer_email", "email"), ("customer_tz", "timezone"))
            if slot in profile}}
    if events is None:
        events = [
            action_event("action_listen", T0),
            user_event(text, intent, confidence, entities, timestamp=T0 + 1),
        ]
    return Tracker(
        sender_id=sender_id,
        slots=values,
        latest_message=latest,
        events=events,
        paused=False,
        followup_action=None,
        active_loop={"name": active_loop} if active_loop else {},
        latest_action_name=latest_action_name,
    )


def form_tracker(
    form: str,
    candidates: Mapping[str, Any],
    slots: Optional[Mapping[str, Any]] = None,
    requested_slot: Optional[str] = None,
    text: Optional[str] = None,
    intent: str = "inform",
    entities: Sequence[Mapping[str, Any]] = (),
    **kwargs: Any,
) -> Tracker:
    """The tracker a form hands its validation action.

    The form has extracted ``candidates`` from the latest message: they are set on
    the tracker and are the trailing ``slot`` events (what ``slots_to_validate`` sees).
    """
    if text is None:
        text = " ".join(str(v) for v in candidates.values())
    if requested_slot is None and candidates:
        requested_slot = next(iter(candidates))
    values = {"requested_slot": requested_slot, **(slots or {}), **candidates}
    events = [
        action_event(form, T0),
        slot_event("requested_slot", requested_slot, T0),
        action_event("action_listen", T0),
        user_event(text, intent, 1.0, entities, timestamp=T0 + 1),
        *(slot_event(name, value, T0 + 1) for name, value in candidates.items()),
    ]
    return make_tracker(
        slots=values,
        text=text,
        intent=intent,
        entities=entities,
        events=events,
        active_loop=form,
        latest_action_name="action_listen",
        **kwargs,
    )


def dispatcher() -> CollectingDispatcher:
    """A fresh dispatcher."""
    return CollectingDispatcher()


def texts(collector: CollectingDispatcher) -> List[Optional[str]]:
    """The texts the bot sent."""
    return [m.get("text") for m in collector.messages]


def bot_message(
    text: str, buttons: Iterable[Mapping[str, str]] = (), custom: Optional[Mapping[str, Any]] = None
) -> Dict[str, Any]:
    """A message exactly as :class:`CollectingDispatcher` records it."""
    return {
        "text": text,
        "buttons": [dict(b) for b in buttons],
        "elements": [],
        "custom": dict(custom or {}),
        "template": None,
        "response": None,
        "image": None,
        "attachment": None,
    }


# ----------------------------------------------------------- clock, settings


def pin_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings with the default hours/zones and the project's data directory."""
    from bot.settings import reset_settings_cache

    for name, value in SETTINGS_ENV.items():
        monkeypatch.setenv(name, value)
    for name in SETTINGS_UNSET:
        monkeypatch.delenv(name, raising=False)
    reset_settings_cache()


_ORIGINAL_NOW_UTC: Any = None


def clock_modules() -> List[Any]:
    """Every ``actions.*`` module that reads the clock through its own ``now_utc`` name.

    A module counts when its ``now_utc`` is :func:`actions.common.now_utc` or a clock
    frozen by :func:`freeze_clock` (so a test may freeze the clock again).
    """
    import actions
    import actions.common as common

    global _ORIGINAL_NOW_UTC
    if _ORIGINAL_NOW_UTC is None:
        _ORIGINAL_NOW_UTC = common.now_utc
    modules = []
    for info in pkgutil.iter_modules(actions.__path__):
        module = importlib.import_module(f"actions.{info.name}")
        clock = getattr(module, "now_utc", None)
        if clock is _ORIGINAL_NOW_UTC or getattr(clock, "frozen_clock", False):
            modules.append(module)
    return modules


def freeze_clock(monkeypatch: pytest.MonkeyPatch, now: datetime = NOW) -> datetime:
    """Make the actions (and the stores' timestamps) see ``now``; may be called again."""
    from bot import db

    def frozen() -> datetime:
        return now

    frozen.frozen_clock = True  # type: ignore[attr-defined]
    for module in clock_modules():
        monkeypatch.setattr(module, "now_utc", frozen)
    monkeypatch.setattr(db, "utcnow", frozen)
    return now


@contextmanager
def action_env(monkeypatch: pytest.MonkeyPatch, now: datetime = NOW) -> Iterator[datetime]:
    """Pinned settings and a frozen clock; the settings cache is reset afterwards."""
    from bot.settings import reset_settings_cache

    pin_settings(monkeypatch)
    freeze_clock(monkeypatch, now)
    try:
        yield now
    finally:
        reset_settings_cache()


# ----------------------------------------------------------------- services


async def start_services(url: str, now: datetime = NOW) -> Any:
    """Real services on ``url`` (schemas created, demo orders seeded), installed."""
    from actions.common import Services, use_services
    from bot.orders import SqlOrderSource, seed_demo_orders
    from bot.support.ops import SupportStore

    store = SupportStore.from_url(url)
    orders = SqlOrderSource.from_url(url)
    await store.create_schema()
    await orders.create_schema()
    await seed_demo_orders(orders, now)
    services = Services(store=store, orders=orders)
    use_services(services)
    return services


async def stop_services(services: Any) -> None:
    """Uninstall the services and close their connections."""
    from actions.common import use_services

    use_services(None)
    await services.store.dispose()
    await services.orders.dispose()


@asynccontextmanager
async def installed_services(url: str, now: datetime = NOW) -> AsyncIterator[Any]:
    """``async with installed_services(url) as svc:`` (for fixtures)."""
    services = await start_services(url, now)
    try:
        yield services
    finally:
        await stop_services(services)


# --------------------------------------------------------------- DB reading


async def table_rows(engine: Any, model: Any, **where: Any) -> List[Dict[str, Any]]:
    """Rows of a model's table (ordered by primary key), optionally filtered."""
    from sqlalchemy import select

    table = model.__table__
    query = select(table).order_by(*table.primary_key.columns)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    async with engine.connect() as connection:
        return [dict(row._mapping) for row in await connection.execute(query)]


# ------------------------------------------------------------ action_route


def triage(
    intent: Any, confidence: float, category: str, route: str, priority: str, reasons: List[str]
) -> Dict[str, Any]:
    """The ``triage`` slot value action_route sets."""
    return {
        "intent": intent,
        "confidence": confidence,
        "category": category,
        "route": route,
        "priority": priority,
        "reasons": reasons,
    }


def guided_resets(time: bool = False, order_number: bool = False) -> List[Dict[str, Any]]:
    """The slots a guided flow resets; ``time``/``order_number``: the message names one."""
    from rasa_sdk.events import SlotSet

    return [
        SlotSet("confirm", None),
        SlotSet("change_request", None),
        SlotSet("refund_reason", None),
        SlotSet("ticket_summary", None),
        SlotSet("prefilled", None),
        *([] if time else [SlotSet("callback_time", None)]),
        *([] if order_number else [SlotSet("order_number", None), SlotSet("order_eligible", None)]),
        SlotSet("order_attempts", 0),
    ]
