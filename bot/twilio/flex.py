"""Twilio Flex: handoffs that become Flex tasks, and TaskRouter events that bring them back.

``TWILIO_FLEX_MODE=interactions`` (with ``TWILIO_FLEX_WORKSPACE_SID`` and
``TWILIO_FLEX_WORKFLOW_SID``): after the bridge has made the customer's Conversation
(participant, transcript, scoped webhook), it creates a **Flex Interaction**
(``POST https://flex-api.twilio.com/v1/Interactions``) whose channel is that Conversation
(``type: chat``, ``initiated_by: api``, ``properties.media_channel_sid``) and whose routing
puts a task into the configured TaskRouter workspace and workflow, on the ``chat`` task
channel, with the ticket, triage, customer, context and a transcript link as task
attributes. Flex offers the task to an agent; the agent works in the Conversation.

The way back are TaskRouter's **event callbacks** (the workspace's Event Callback URL =
``TWILIO_PUBLIC_URL/webhooks/twilio_conversations/taskrouter``, signed like every Twilio
webhook, stored in the webhook inbox before the 200):

* ``reservation.accepted``: the agent's name for the customer is the worker's
  ``friendly_name`` (``GET .../Workspaces/{WS}/Workers/{WK}``, cached), never the raw
  identity (often an e-mail address); the customer is told who joined.
* ``task.wrapup`` / ``task.completed`` / ``task.canceled``: the ticket is resolved and the bot
  resumes (once: the link is closed by the first of them), unless the chat goes on in another
  task (below).

The Interaction (``KD``), its channel (``UO``) and the task (``WT``) are stored with the link
(``twilio_links.flex_*``, migration 0013); an event is matched by its task SID first.
**Transfers**: Flex transfers a chat by making a new task for the same Interaction channel
(to a worker or a queue) and wrapping the old one up. A task of our ticket other than the
link's becomes the link's task when it is created or accepted (the customer is told the new
agent is taking over), and the end of the replaced task resolves nothing; when the link's
task ends while another task of the ticket is open, or it wraps up while its Interaction
channel is still open, the chat goes on.

``TWILIO_FLEX_MODE=conversations`` (the default) keeps plain Conversations (no Flex calls).
"""
from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, Optional, Tuple

__all__ = ["FLEX_MODES", "FlexConfig", "TASKROUTER_EVENTS", "WorkerNames", "flex_sids",
           "interaction_request", "task_attributes"]

FLEX_MODES = ("conversations", "interactions")
RESOLVING_EVENTS = ("task.wrapup", "task.completed", "task.canceled")
TASKROUTER_EVENTS = ("task.created", "reservation.accepted") + RESOLVING_EVENTS
"""The TaskRouter events the bot acts on (select them for the Event Callback URL)."""
OPEN_TASK_STATUSES = ("pending", "reserved", "assigned")
CLOSED_CHANNEL_STATUSES = ("closed", "inactive", "failed")
"""Interaction channel statuses that end the chat (``active``, ``transfer``, ``pause`` do not)."""
_SIDS = {"interaction": re.compile(r"^KD[0-9a-fA-F]{32}$"),
         "channel": re.compile(r"^UO[0-9a-fA-F]{32}$"),
         "task": re.compile(r"^WT[0-9a-fA-F]{32}$")}
_SID = {"workspace_sid": re.compile(r"^WS[0-9a-fA-F]{32}$"),
        "workflow_sid": re.compile(r"^WW[0-9a-fA-F]{32}$")}
FALLBACK_AGENT_NAME = "our support team"
_SAFE = re.compile(r"[\w.:@+-]+")  # no quotes: TaskRouter expressions have no escapes


@dataclass(frozen=True)
class FlexConfig:
    """``TWILIO_FLEX_*``: which mode, and where tasks are routed."""

    mode: str = "conversations"
    workspace_sid: Optional[str] = None
    workflow_sid: Optional[str] = None
    task_channel: str = "chat"
    worker_cache_seconds: float = 300.0

    @property
    def enabled(self) -> bool:
        """Handoffs become Flex Interactions (TaskRouter tasks)."""
        return self.mode == "interactions"

    def check(self) -> None:
        """Raises ValueError for an unknown mode or missing/malformed SIDs (interactions)."""
        if self.mode not in FLEX_MODES:
            raise ValueError(f"TWILIO_FLEX_MODE must be one of {', '.join(FLEX_MODES)}, "
                             f"got {self.mode!r}.")
        if not self.enabled:
            return
        for name, pattern in _SID.items():
            value = getattr(self, name) or ""
            if not pattern.match(value):
                raise ValueError(f"TWILIO_FLEX_{name.upper()} must be a {pattern.pattern[1:3]}"
                                 f"... SID with TWILIO_FLEX_MODE=interactions, got {value!r}.")
        if not self.task_channel:
            raise ValueError("TWILIO_FLEX_TASK_CHANNEL must not be empty.")

    @classmethod
    def from_settings(cls, settings: Any) -> "FlexConfig":
        return cls(mode=settings.twilio_flex_mode,
                   workspace_sid=settings.twilio_flex_workspace_sid,
                   workflow_sid=settings.twilio_flex_workflow_sid,
                   task_channel=settings.twilio_flex_task_channel,
                   worker_cache_seconds=settings.twilio_flex_worker_cache_seconds)


def task_attributes(payload: Dict[str, Any], transcript_url: str) -> Dict[str, Any]:
    """The task attributes of a handoff (what Flex shows and workflows route on).

    ``name``/``customerName``/``from`` are the attributes Flex UI displays; ``ticket`` is
    how the bot finds the ticket again in TaskRouter events.
    """
    attributes = payload["attributes"]
    customer = dict(attributes.get("customer") or {})
    name = str(customer.get("name") or payload["identity"])
    triage = dict(attributes.get("triage") or {})
    return {
        "origin": attributes.get("origin"), "ticket": payload["ticket"],
        "conversation_id": payload["conversation_id"], "summary": attributes.get("summary"),
        "category": attributes.get("category"), "priority": attributes.get("priority"),
        "triage": {"category": triage.get("category", attributes.get("category")),
                   "confidence": triage.get("confidence"),
                   "priority": attributes.get("priority")},
        "name": name, "customerName": name, "from": name,
        "customer": customer, "context": dict(attributes.get("context") or {}),
        "transcript_url": transcript_url,
        "customers": {k: v for k, v in (("name", name), ("email", customer.get("email")),
                                        ("external_id", customer.get("id"))) if v},
    }


def interaction_request(config: FlexConfig, conversation_sid: str,
                        attributes: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """``(Channel, Routing)`` of ``POST /v1/Interactions`` for a Conversation we made."""
    channel = {"type": "chat", "initiated_by": "api",
               "properties": {"media_channel_sid": conversation_sid}}
    routing = {"properties": {"workspace_sid": config.workspace_sid,
                              "workflow_sid": config.workflow_sid,
                              "task_channel_unique_name": config.task_channel,
                              "attributes": attributes}}
    return channel, routing


def ticket_expression(reference: str, conversation_id: Optional[str] = None) -> str:
    """TaskRouter's ``EvaluateTaskAttributes`` finding the task of a ticket (and of our
    conversation, when its id can be quoted: a database restored elsewhere repeats
    ticket references)."""
    if not _SAFE.fullmatch(reference):
        raise ValueError(f"Unexpected ticket reference {reference!r}.")
    expression = f'ticket == "{reference}"'
    if conversation_id and _SAFE.fullmatch(conversation_id):
        expression += f' and conversation_id == "{conversation_id}"'
    return expression


class WorkerNames:
    """Worker SID → (friendly name, Flex identity), fetched from TaskRouter and cached.

    Args:
        fetch: ``await fetch(worker_sid)`` → the worker (``friendly_name``, ``attributes``).
        ttl: Seconds a name is kept.
    """

    def __init__(self, fetch: Callable[[str], Awaitable[Any]], ttl: float = 300.0) -> None:
        self._fetch = fetch
        self.ttl = ttl
        self._by_sid: Dict[str, Tuple[float, str, Optional[str]]] = {}
        self._by_identity: Dict[str, str] = {}  # identity -> worker SID
        self._lock = asyncio.Lock()

    async def name(self, worker_sid: str) -> str:
        """The worker's friendly name (fetched at most once per ``ttl``: a worker renamed in
        TaskRouter is shown with the new name once the cached one is older than ``ttl``)."""
        cached = self._by_sid.get(worker_sid)
        if cached is not None and time.monotonic() - cached[0] < self.ttl:
            return cached[1]
        async with self._lock:
            cached = self._by_sid.get(worker_sid)  # fetched while we waited for the lock
            if cached is not None and time.monotonic() - cached[0] < self.ttl:
                return cached[1]
            worker = await self._fetch(worker_sid)
            name = _display_name(worker)
            identity = _identity(getattr(worker, "attributes", None))
            self._by_sid[worker_sid] = (time.monotonic(), name, identity)
            if identity:
                self._by_identity[identity] = worker_sid
            return name

    async def for_identity(self, identity: str) -> Optional[str]:
        """The friendly name of a worker seen before, by its Flex identity (message author);
        fetched again when the cached name is older than ``ttl``. None for a stranger."""
        worker_sid = self._by_identity.get(identity)
        if not worker_sid:
            return None
        try:
            return await self.name(worker_sid)
        except Exception:  # noqa: BLE001 - TaskRouter unreachable: the name we had will do
            return self._by_sid[worker_sid][1]


def _display_name(worker: Any) -> str:
    name = str(getattr(worker, "friendly_name", "") or "").strip()
    attributes = _json(getattr(worker, "attributes", None))
    full = str(attributes.get("full_name") or "").strip()
    if "@" in name or not name:  # Flex SSO often names workers by their e-mail address
        name = full or (name.split("@", 1)[0] if name else "")
    return name[:200] or FALLBACK_AGENT_NAME


def _identity(raw: Any) -> Optional[str]:
    contact = str(_json(raw).get("contact_uri") or "")
    return contact[len("client:"):] if contact.startswith("client:") else None


def _json(raw: Any) -> Dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw or "{}")
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def flex_sids(made: Any) -> Tuple[Optional[str], Optional[str], Optional[str]]:
    """``(interaction KD, channel UO, task WT)`` SIDs of what ``POST /v1/Interactions``
    answered (its ``channel.sid`` and ``routing.properties.sid``) or of a TaskRouter task
    found for the ticket (Flex's ``flexInteractionSid``/``flexInteractionChannelSid``
    attributes); None for what is missing or not shaped like such a SID."""
    sid = str(getattr(made, "sid", "") or "")
    if _SIDS["task"].match(sid):
        attributes = _json(getattr(made, "attributes", None))
        found = (attributes.get("flexInteractionSid"),
                 attributes.get("flexInteractionChannelSid"), sid)
    else:
        channel = getattr(made, "channel", None)
        routing = getattr(made, "routing", None)
        channel = channel if isinstance(channel, dict) else {}
        properties = (routing if isinstance(routing, dict) else {}).get("properties")
        properties = properties if isinstance(properties, dict) else {}
        found = (sid, channel.get("sid"), properties.get("sid"))
    return tuple(str(value) if value and _SIDS[kind].match(str(value)) else None  # type: ignore
                 for kind, value in zip(("interaction", "channel", "task"), found))


def event_attributes(params: Dict[str, str]) -> Dict[str, Any]:
    """The ``TaskAttributes`` of a TaskRouter event (empty when absent or not JSON)."""
    return _json(params.get("TaskAttributes"))
