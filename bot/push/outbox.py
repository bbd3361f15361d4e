"""Queue agent pushes in the transaction of the change they announce (the outbox).

Every audit row is inserted in the transaction of its state change; an ``after_insert``
hook on :class:`bot.support.models.AuditLog` (next to the change-feed hook there) calls
:func:`stage_for_audit` on that transaction's connection, for every writer (the support
store's handoffs, the agent store's transfers). So a push row commits with the handoff or
transfer or not at all, and the sender of whichever process claims it sends it once.

Who gets what:

* ``handoff.recorded`` (a ticket queued for a person): every active agent whose push
  setting is on, one row per device they subscribed;
* ``ticket.transferred``: the agent the ticket was given to (if their setting is on), per
  device.

Nothing is staged with ``PUSH_ENABLED=false``; otherwise rows are staged whenever an agent
has push on, also in a process without the VAPID keys (the action server does not sign
anything: the Rasa processes' senders do). The payload holds the ticket's reference, subject (its summary, cut to 140
characters), priority and category, and for a transfer who gave it, nothing else.

This module imports no model of ``bot``: the support models import it, so it names the
tables it reads and writes with SQLAlchemy Core (:mod:`bot.push.models` has the ORM models,
the migration 0013 the schema).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, List, Optional, TypedDict

from sqlalchemy import JSON, Boolean, Integer, String, Text, column, select, table, true

__all__ = ["PushPayload", "stage_for_audit", "stage_push", "staging_on", "urgency_of"]

SUBJECT_CHARS = 140
_EVENTS = {"handoff.recorded": "new_ticket", "ticket.transferred": "transfer"}

_subscriptions = table("push_subscriptions", column("id", Integer), column("agent_id", Integer))
_preferences = table("push_preferences", column("agent_id", Integer),
                     column("enabled", Boolean))
_agents = table("agents", column("id", Integer), column("active", Boolean),
                column("display_name", String))
_tickets = table("tickets", column("reference", String), column("summary", Text),
                 column("priority", String), column("category", String))
_outbox = table(
    "push_outbox", column("kind", String), column("dedupe_key", String),
    column("agent_id", Integer), column("subscription_id", Integer), column("ticket", String),
    column("payload", JSON), column("urgency", String), column("status", String),
    column("attempts", Integer), column("next_attempt_at"), column("created_at"))


class PushPayload(TypedDict, total=False):
    """What the service worker receives (JSON, encrypted per RFC 8291)."""

    type: str  # "ticket.new", "ticket.transferred" or "test"
    ticket: str  # "T-000123"
    subject: str  # the ticket's summary (at most 140 characters)
    priority: str  # low / normal / high / urgent
    category: str  # ORDER, REFUND, ...
    by: str  # transfer: who gave it to you (display name)


def staging_on() -> bool:
    """Whether handoffs and transfers queue pushes (not ``PUSH_ENABLED=false``)."""
    from bot.settings import get_settings

    push = get_settings().push
    return bool(push is not None and push.stage)


def urgency_of(priority: str) -> str:
    """The ``Urgency`` header (RFC 8030 section 5.3) of a ticket priority."""
    return {"urgent": "high", "high": "high", "low": "low"}.get(priority, "normal")


def stage_push(connection: Any, *, kind: str, agent_ids: Optional[List[int]],
               payload: PushPayload, urgency: str, now: datetime,
               dedupe: Optional[str] = None, any_setting: bool = False) -> int:
    """Insert one outbox row per device of the agents (``None``: every agent) whose push
    setting is on (``any_setting``: whatever it is, for a test push), on ``connection``
    (a sync connection inside the caller's open transaction).

    Returns:
        How many rows were staged.
    """
    s = _subscriptions.c
    query = (select(s.id, s.agent_id).select_from(
        _subscriptions.join(_agents, _agents.c.id == s.agent_id))
        .where(_agents.c.active == true()).order_by(s.id))
    if not any_setting:
        query = query.join(_preferences, _preferences.c.agent_id == s.agent_id).where(
            _preferences.c.enabled == true())
    if agent_ids is not None:
        query = query.where(s.agent_id.in_(agent_ids))
    devices = connection.execute(query).all()
    if devices:
        connection.execute(_outbox.insert(), [
            {"kind": kind, "dedupe_key": f"{dedupe}:{device_id}" if dedupe else None,
             "agent_id": agent_id, "subscription_id": device_id,
             "ticket": payload.get("ticket"), "payload": dict(payload), "urgency": urgency,
             "status": "queued", "attempts": 0, "next_attempt_at": now, "created_at": now}
            for device_id, agent_id in devices])
    return len(devices)


def stage_for_audit(connection: Any, audit: Any) -> int:
    """Stage the pushes an audit row calls for (the ``after_insert`` hook's connection).

    Args:
        connection: The sync connection of the state change's transaction.
        audit: The inserted :class:`bot.support.models.AuditLog` row.

    Returns:
        How many rows were staged (0 for other actions or with ``PUSH_ENABLED=false``).
    """
    kind = _EVENTS.get(audit.action)
    if kind is None or not staging_on():
        return 0
    data = dict(audit.data or {})
    reference = data.get("ticket") if audit.object_type != "ticket" else audit.object_id
    ticket = connection.execute(select(
        _tickets.c.reference, _tickets.c.summary, _tickets.c.priority, _tickets.c.category
    ).where(_tickets.c.reference == reference)).first()
    if ticket is None:
        return 0
    payload: PushPayload = {
        "type": "ticket.new" if kind == "new_ticket" else "ticket.transferred",
        "ticket": ticket.reference,
        "subject": " ".join(str(ticket.summary or "").split())[:SUBJECT_CHARS],
        "priority": ticket.priority, "category": ticket.category,
    }
    agent_ids: Optional[List[int]] = None
    if kind == "transfer":
        target = str(data.get("to", ""))
        agent_ids = [int(target)] if target.isdigit() else []  # never raise in the hook
        actor = str(audit.actor or "")
        if actor.startswith("agent:") and actor[6:].isdigit():
            by = connection.execute(select(_agents.c.display_name).where(
                _agents.c.id == int(actor[6:]))).scalar()
            if by:
                payload["by"] = str(by)
    return stage_push(connection, kind=kind, agent_ids=agent_ids, payload=payload,
                      urgency=urgency_of(ticket.priority), now=audit.at,
                      dedupe=f"audit{audit.id}")
