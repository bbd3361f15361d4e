"""Runs the YAML conversations of this folder against the real servers.

Every conversation is a customer of the demo shop (``cust-anna``, ``cust-ben``,
``cust-chloe``: their orders are in :mod:`bot.orders`) talking to the bot through the
widget WebSocket with a signed token, turn by turn, exactly as the app's chat does. Each
conversation gets a fresh copy of its customer (a new id that owns that customer's demo
orders, reset to their seeded state), so conversations never see each other's
cancellations, tickets or call-backs.

The file format (see ``README.md`` in this folder)::

    conversations:
      - name: cancel an open order, number up front
        customer: cust-anna
        turns:
          - say: "please cancel order 104301"
            expect: ["Shall I cancel order #104301"]
          - click: "Yes"
            expect: ["order #104301 is cancelled"]
        effects:
          orders: {"104301": cancelled}

A turn sends ``say`` (typed text) or ``click`` (the title, or the start of the title, of a
quick reply the bot offered in its previous turn: the widget sends the title with the
button's payload). ``expect``:
texts that must all appear in the bot's replies of that turn; ``expect_any``: at least one
of these must; ``not_expect``: texts that must not; ``buttons``: quick-reply titles that must be offered; ``wrong: true`` marks a turn
whose input is wrong on purpose (only then may validation or apology texts appear).
Texts are compared case-insensitively with whitespace collapsed.

Placeholders in ``say``: ``{open_day}`` is the English name of the next weekday on which
the support team is open all day (at least one day ahead, so "{open_day} at 10" is always
a valid call-back time), ``{closed_day}`` the next Sunday.

``effects`` are checked in the databases after the last turn: ``orders`` (number → status),
``tickets`` (exactly these, in order: ``category``, ``priority``, ``summary`` substring,
``source``), ``callbacks`` (exactly these: ``status``, ``phone``, ``topic``), and
``handoff: true/false`` (a ticket queued for a person).
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence
from zoneinfo import ZoneInfo

import yaml
from sqlalchemy import text as sql

from bot.db import make_engine
from bot.i18n import normalise_locale
from bot.messages import load_messages
from bot.orders import DEMO_CUSTOMERS, SqlOrderSource, seed_demo_orders
from tests.widget.conftest import WidgetClient, token_for

HERE = Path(__file__).resolve().parent

#: Messages the bot sends only when the customer's input was wrong (or not understood).
#: A turn not marked ``wrong`` must show none of them: "no validation or apology text
#: appears unless the customer's input was wrong".
VALIDATION_KEYS = (
    "order_number_malformed",
    "order_not_found_in_account",
    "order_gone",
    "change_request_too_short",
    "refund_reason_too_short",
    "ticket_summary_too_short",
    "email_invalid",
    "phone_invalid",
    "time_not_understood",
    "time_past",
    "time_too_far",
    "time_closed",
    "clarify_with_suggestions",
    "clarify_no_suggestions",
    "no_answer_found",
    "callback_limit_country",
    "callback_limit_number_type",
    "widget_bot_unavailable",
    "login_required",
)

TURN_KEYS = {"say", "click", "expect", "expect_any", "not_expect", "buttons", "wrong", "note"}
CONVERSATION_KEYS = {"name", "customer", "turns", "effects", "profile", "context", "tags", "locale"}
EFFECT_KEYS = {"orders", "tickets", "callbacks", "handoff"}


def normalize(value: str) -> str:
    """Lower case, typographic quotes made plain, whitespace collapsed."""
    value = value.replace("\u2019", "'").replace("\u201c", '"').replace("\u201d", '"')
    return re.sub(r"\s+", " ", value).strip().lower()


@dataclass
class Turn:
    """One customer turn and what the bot must (not) say to it."""

    say: Optional[str] = None
    click: Optional[str] = None
    expect: List[str] = field(default_factory=list)
    expect_any: List[str] = field(default_factory=list)
    not_expect: List[str] = field(default_factory=list)
    buttons: List[str] = field(default_factory=list)
    wrong: bool = False


@dataclass
class Conversation:
    """One conversation of a YAML file."""

    name: str
    source: str
    customer: str
    turns: List[Turn]
    effects: Dict[str, Any] = field(default_factory=dict)
    profile: Dict[str, str] = field(default_factory=dict)
    context: Dict[str, Any] = field(default_factory=dict)
    tags: List[str] = field(default_factory=list)
    #: The token's ``locale`` claim and the app's; the bot speaks its language (bot/i18n.py).
    #: None: English in the demo customer's country ("en-DE" for Anna: her national phone
    #: numbers still work), whatever the customer's own language.
    locale: Optional[str] = None

    @property
    def id(self) -> str:
        return f"{self.source}::{self.name}"


def _as_list(value: Any) -> List[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def load_conversations(directory: Path = HERE) -> List[Conversation]:
    """Every conversation of ``*.yml`` in ``directory`` (the format is checked strictly)."""
    found: List[Conversation] = []
    names = set()
    for path in sorted(directory.glob("*.yml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for index, raw in enumerate(document.get("conversations") or []):
            where = f"{path.name} #{index + 1}"
            unknown = set(raw) - CONVERSATION_KEYS
            if unknown:
                raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
            if raw.get("customer") not in DEMO_CUSTOMERS:
                raise ValueError(f"{where}: customer must be one of {sorted(DEMO_CUSTOMERS)}")
            turns: List[Turn] = []
            for number, step in enumerate(raw.get("turns") or [], start=1):
                unknown = set(step) - TURN_KEYS
                if unknown or ("say" in step) == ("click" in step):
                    raise ValueError(f"{where} turn {number}: one of say/click, known keys only")
                turns.append(Turn(
                    say=step.get("say"), click=step.get("click"),
                    expect=_as_list(step.get("expect")),
                    expect_any=_as_list(step.get("expect_any")),
                    not_expect=_as_list(step.get("not_expect")),
                    buttons=_as_list(step.get("buttons")), wrong=bool(step.get("wrong")),
                ))
            if not turns:
                raise ValueError(f"{where}: no turns")
            effects = raw.get("effects") or {}
            if set(effects) - EFFECT_KEYS:
                raise ValueError(f"{where}: unknown effects {sorted(set(effects) - EFFECT_KEYS)}")
            conversation = Conversation(
                name=str(raw["name"]), source=path.stem, customer=raw["customer"], turns=turns,
                effects=effects, profile=dict(raw.get("profile") or {}),
                context=dict(raw.get("context") or {}), tags=_as_list(raw.get("tags")),
                locale=str(raw["locale"]) if raw.get("locale") else None,
            )
            if conversation.id in names:
                raise ValueError(f"{where}: duplicate name {conversation.name!r}")
            names.add(conversation.id)
            found.append(conversation)
    return found


def validation_fragments(locale: str = "en") -> Dict[str, List[str]]:
    """For each validation message, its fixed pieces of text (between placeholders), in the
    language of ``locale``."""
    messages = load_messages(locale=locale)
    fragments: Dict[str, List[str]] = {}
    for key in VALIDATION_KEYS:
        template = messages.get(key).text
        pieces = [p.strip(" .,:;\"'") for p in re.split(r"\{[a-z_]+\}", template)]
        useful = [normalize(p) for p in pieces if len(p) >= 12]
        assert useful, f"message {key} has no fixed text to look for"
        fragments[key] = useful
    return fragments


#: Weekday names for ``{open_day}``/``{closed_day}`` in German and French conversations.
WEEKDAYS = {
    "de": ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"),
    "fr": ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"),
}


def placeholders(now: datetime, tz: ZoneInfo, locale: str = "en") -> Dict[str, str]:
    """Values for ``{open_day}`` and ``{closed_day}`` in the customer's zone and language."""
    from bot.business_hours import from_settings

    hours = from_settings()
    today = now.astimezone(tz).date()
    open_day = None
    for ahead in range(1, 7):
        day = today + timedelta(days=ahead)
        start = datetime(day.year, day.month, day.day, 10, 0, tzinfo=tz)
        if all(hours.is_open(start + timedelta(hours=h)) for h in range(0, 6)):
            open_day = day
            break
    assert open_day is not None, "no open weekday in the coming week"
    sunday = today + timedelta(days=(6 - today.weekday()) or 7)
    names = WEEKDAYS.get(normalise_locale(locale))
    if names:
        return {"open_day": names[open_day.weekday()], "closed_day": names[sunday.weekday()]}
    return {"open_day": open_day.strftime("%A"), "closed_day": sunday.strftime("%A")}


@dataclass
class TurnResult:
    """What the customer sent and read in one turn."""

    sent: str
    replies: List[Dict[str, Any]]

    @property
    def texts(self) -> List[str]:
        return [str(r.get("text") or "") for r in self.replies]

    @property
    def buttons(self) -> List[Dict[str, str]]:
        return [b for r in self.replies for b in (r.get("buttons") or [])]


class ConversationFailed(AssertionError):
    """A conversation did not go as written; the message shows the whole transcript."""


def _transcript(results: Sequence[TurnResult]) -> str:
    lines: List[str] = []
    for result in results:
        lines.append(f"  customer: {result.sent}")
        for reply in result.replies:
            titles = [b.get("title") for b in reply.get("buttons") or []]
            lines.append(f"       bot: {reply.get('text')}" + (f"  {titles}" if titles else ""))
    return "\n".join(lines)


async def prepare_customer(bot: Any, customer: str) -> str:
    """A fresh customer id owning ``customer``'s demo orders, reset to their seeded state."""
    fresh = f"{customer}-{uuid.uuid4().hex[:8]}"
    source = SqlOrderSource.from_url(bot.orders_db_url)
    try:
        await seed_demo_orders(source, datetime.now(timezone.utc), reset=True)
        async with source.engine.begin() as connection:
            await connection.execute(
                sql("UPDATE orders SET customer_id = :fresh WHERE customer_id = :base"),
                {"fresh": fresh, "base": customer},
            )
    finally:
        await source.dispose()
    return fresh


async def run_conversation(bot: Any, conversation: Conversation,
                           fragments: Dict[str, List[str]]) -> List[TurnResult]:
    """Play ``conversation`` through the widget and check every turn and its effects."""
    demo = DEMO_CUSTOMERS[conversation.customer]
    fresh = await prepare_customer(bot, conversation.customer)
    locale = conversation.locale or "en-" + demo["locale"].rpartition("-")[2]
    profile = {"name": demo["name"], "email": demo["email"], "timezone": demo["timezone"],
               "locale": locale, **conversation.profile}
    tz = ZoneInfo(profile["timezone"])
    language = normalise_locale(locale)
    values = placeholders(datetime.now(timezone.utc), tz, language)
    if language != "en":
        fragments = validation_fragments(language)
    context = {"screen": "orders", "locale": profile["locale"], "app_version": "5.2.0",
               **conversation.context}
    client = await WidgetClient.connect(bot, token_for(fresh, **profile), context=context)
    results: List[TurnResult] = []
    try:
        for number, turn in enumerate(conversation.turns, start=1):
            if turn.say is not None:
                sent, payload = turn.say.format(**values), None
            else:
                offered = results[-1].buttons if results else []
                chosen = next((b for b in offered if normalize(b.get("title", ""))
                               .startswith(normalize(str(turn.click)))), None)
                if chosen is None:
                    raise ConversationFailed(
                        f"turn {number}: no quick reply {turn.click!r} was offered\n"
                        + _transcript(results))
                sent, payload = chosen["title"], chosen.get("payload")
            got = await client.turn(sent, payload=payload)
            result = TurnResult(sent=sent + (f"  [{payload}]" if payload else ""),
                                replies=got["replies"])
            results.append(result)
            _check_turn(number, turn, result, results, fragments)
    finally:
        await client.close()
    await _check_effects(bot, conversation, fresh, results)
    return results


def _check_turn(number: int, turn: Turn, result: TurnResult, results: Sequence[TurnResult],
                fragments: Dict[str, List[str]]) -> None:
    said = normalize(" \n ".join(result.texts))
    problems: List[str] = []
    if not result.replies:
        problems.append("the bot said nothing")
    for wanted in turn.expect:
        if normalize(wanted) not in said:
            problems.append(f"missing {wanted!r}")
    if turn.expect_any and not any(normalize(w) in said for w in turn.expect_any):
        problems.append(f"none of {turn.expect_any!r}")
    for unwanted in turn.not_expect:
        if normalize(unwanted) in said:
            problems.append(f"should not say {unwanted!r}")
    titles = [normalize(b.get("title", "")) for b in result.buttons]
    for button in turn.buttons:
        if not any(title.startswith(normalize(button)) for title in titles):
            problems.append(f"no quick reply {button!r}")
    if not turn.wrong:
        for key, pieces in fragments.items():
            if any(piece in said for piece in pieces):
                problems.append(f"validation/apology text {key!r} although the input was fine")
    if problems:
        raise ConversationFailed(
            f"turn {number}: " + "; ".join(problems) + "\n" + _transcript(results))


async def _check_effects(bot: Any, conversation: Conversation, customer_id: str,
                         results: Sequence[TurnResult]) -> None:
    effects = conversation.effects
    problems: List[str] = []
    orders_engine = make_engine(bot.orders_db_url)
    support_engine = make_engine(bot.support_db_url)
    try:
        async with orders_engine.connect() as connection:
            for number, status in (effects.get("orders") or {}).items():
                row = (await connection.execute(
                    sql("SELECT status, customer_id FROM orders WHERE number = :n"),
                    {"n": str(number)})).first()
                if row is None or row[0] != status:
                    problems.append(f"order {number}: status {row[0] if row else None!r}, "
                                    f"expected {status!r}")
        async with support_engine.connect() as connection:
            tickets = (await connection.execute(sql(
                "SELECT category, priority, summary, source, queued_at FROM tickets "
                "WHERE customer_id = :c ORDER BY id"), {"c": customer_id})).all()
            callbacks = (await connection.execute(sql(
                "SELECT status, phone, topic FROM callbacks WHERE customer_id = :c ORDER BY id"),
                {"c": customer_id})).all()
    finally:
        await orders_engine.dispose()
        await support_engine.dispose()
    if "tickets" in effects:
        wanted = effects["tickets"] or []
        if len(wanted) != len(tickets):
            problems.append(f"{len(tickets)} tickets {[(t[0], t[2][:60]) for t in tickets]}, "
                            f"expected {len(wanted)}")
        for spec, row in zip(wanted, tickets):
            for key, index in (("category", 0), ("priority", 1), ("source", 3)):
                if key in spec and spec[key] != row[index]:
                    problems.append(f"ticket {key} {row[index]!r}, expected {spec[key]!r}")
            if "summary" in spec and normalize(spec["summary"]) not in normalize(row[2]):
                problems.append(f"ticket summary {row[2]!r} lacks {spec['summary']!r}")
    if "callbacks" in effects:
        wanted = effects["callbacks"] or []
        if len(wanted) != len(callbacks):
            problems.append(f"{len(callbacks)} call-backs {list(map(tuple, callbacks))}, "
                            f"expected {len(wanted)}")
        for spec, row in zip(wanted, callbacks):
            for key, index in (("status", 0), ("phone", 1), ("topic", 2)):
                if key in spec and spec[key] != row[index]:
                    problems.append(f"call-back {key} {row[index]!r}, expected {spec[key]!r}")
    if "handoff" in effects:
        handed = any(t[4] is not None for t in tickets)
        if handed != bool(effects["handoff"]):
            problems.append(f"handoff {handed}, expected {bool(effects['handoff'])}")
    if problems:
        raise ConversationFailed("effects: " + "; ".join(problems) + "\n" + _transcript(results))
