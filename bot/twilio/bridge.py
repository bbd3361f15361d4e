"""The Twilio Conversations bridge: handoffs out, agent messages and closes back in.

Flow (docs/twilio.md):

1. **Handoff** (``handoff.recorded`` from the change feed, :func:`bot.live.change_feed`;
   the action server writes it; each one is claimed durably in ``change_feed_claims``, so
   it is bridged once across processes and restarts, and a sweep picks up what was missed
   while no process ran): for a widget conversation whose ticket is still ``queued``, the operation
   ``handoff:<ticket>`` creates a Conversation (unique name = our conversation id;
   attributes = customer, context, ticket, triage), adds the customer as a participant,
   imports the transcript (original authors and times) and attaches a
   conversation-scoped webhook. Every step is recorded in ``twilio_links``, so a retry
   or replay continues where it stopped. Then the ticket is ``assigned`` to Twilio.
   The Conversation and the participant are created with ``X-Twilio-Webhook-Enabled:
   true``, so service-level webhooks (``onConversationAdded``, ``onParticipantAdded``: Flex,
   Studio) see them; the imported transcript is posted with ``false`` (history).
   With ``TWILIO_FLEX_MODE=interactions`` the Conversation then becomes a Flex Interaction
   (a TaskRouter task, :mod:`bot.twilio.flex`).
2. **Customer messages** (bus topic ``customer.message``) are posted as the customer with
   ``X-Twilio-Webhook-Enabled: true`` (the customer's words: service webhooks expect them)
   and ``attributes.origin = "support-bot"`` (the echo to our scoped webhook is ignored).
3. **Webhooks** (:meth:`TwilioBridge.accept_webhook`, after the signature check): stored
   in the inbox (``twilio_inbox``) with its dedupe keys in one transaction, so Twilio's 200
   means "stored"; a duplicate (idempotency token or message SID seen before) adds nothing.
   The inbox processor (:mod:`bot.twilio.inbox`) then runs :meth:`TwilioBridge.handle_webhook`
   per row, in order per Conversation, with retries and dead letters. ``onMessageAdded`` by an agent → stored as an ``agent`` message and
   published by the store after its commit as ``agent.message`` (the widget delivers it);
   the Conversation ``closed`` → the ticket is resolved and ``ticket.resolved`` published
   the same way (the widget resumes the bot and asks for a rating). Our own posts are ignored (author or attributes).

Outbound operations run through :meth:`TwilioBridge.deliver`: each REST call is retried
with exponential backoff and jitter on 429/5xx/timeouts; when the last try fails the
operation goes to ``twilio_dead_letters``; :meth:`TwilioBridge.replay` runs it again and
a delivered operation's key is recorded, so it is delivered once.
"""
from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Set, Tuple
from urllib.parse import quote

from twilio.base.exceptions import TwilioRestException

from bot.attachments.twilio_media import TwilioMedia, media_ids
from bot.twilio.tasks import BackgroundWork
from bot.twilio.client import RetriesExhausted, RetryPolicy, TwilioApi, describe, with_retries
from bot.twilio.flex import (CLOSED_CHANNEL_STATUSES, FALLBACK_AGENT_NAME, OPEN_TASK_STATUSES,
                             RESOLVING_EVENTS, FlexConfig, WorkerNames, event_attributes,
                             flex_sids, interaction_request, task_attributes,
                             ticket_expression)
from bot.twilio.inbox import InboxConfig, InboxProcessor, InboxStore
from bot.twilio.store import DeadLetterView, HandoffMaterial, LinkView, TwilioStore
from bot.twilio.timestamps import parse_time

__all__ = ["ORIGIN", "TwilioBridge", "TwilioConfig", "parse_time"]

logger = logging.getLogger(__name__)

ORIGIN = "support-bot"
"""``attributes.origin`` of everything we post (echoes are recognised by it)."""
CHANNEL_NAME = "twilio_conversations"
EVENTS_PATH = f"/webhooks/{CHANNEL_NAME}/events"
TASKROUTER_PATH = f"/webhooks/{CHANNEL_NAME}/taskrouter"
MAX_BODY_CHARS = 1600
MAX_ATTRIBUTES_CHARS = 16000
HEALTH_TIMEOUT = 3.0
KEEP_WEBHOOK_KEYS_DAYS = 7  # Twilio retries webhooks for minutes, not days
CLAIM_CONSUMER = "twilio.handoff"
CLAIM_STALE_SECONDS = 60.0  # an unfinished claim not refreshed this long: its process died
SWEEP_SECONDS = 30.0  # how often handoffs nobody holds are looked for
WEBHOOK_KIND = "conversations"
"""``twilio_inbox.kind`` of Conversations webhooks (Voice: ``voice``)."""
TASKROUTER_KIND = "taskrouter"
"""``twilio_inbox.kind`` of TaskRouter event callbacks (Flex mode)."""

Publish = Callable[[str, Dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class TwilioConfig:
    """The bridge's settings (:meth:`from_settings`)."""

    account_sid: Optional[str]
    auth_token: Optional[str]
    public_url: str
    api_base: Optional[str] = None
    bot_identity: str = "support-bot"
    timeout: float = 10.0
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    poll_interval: float = 1.0
    catchup_seconds: int = 3600
    webhook_filters: Tuple[str, ...] = ("onMessageAdded", "onConversationUpdated",
                                        "onConversationStateUpdated")
    support_db_url: str = ""
    handoff_delay: float = 1.0
    inbox: InboxConfig = field(default_factory=InboxConfig)
    flex: FlexConfig = field(default_factory=FlexConfig)

    @property
    def configured(self) -> bool:
        """Both the account SID and the auth token are set."""
        return bool(self.account_sid and self.auth_token)

    @property
    def webhook_url(self) -> str:
        """Where Twilio sends this integration's webhooks (and what it signs)."""
        return self.public_url.rstrip("/") + EVENTS_PATH

    @property
    def taskrouter_url(self) -> str:
        """The TaskRouter workspace's Event Callback URL (Flex mode; what Twilio signs)."""
        return self.public_url.rstrip("/") + TASKROUTER_PATH

    def transcript_url(self, reference: str) -> str:
        """The ticket in the agent console (transcript, context; agents log in)."""
        return f"{self.public_url.rstrip('/')}/webhooks/agent/#/t/{quote(reference, safe='')}"

    @classmethod
    def from_settings(cls) -> "TwilioConfig":
        """From :func:`bot.settings.get_settings` (``TWILIO_*``)."""
        from bot.settings import get_settings

        s = get_settings()
        return cls(
            account_sid=s.twilio_account_sid, auth_token=s.twilio_auth_token,
            public_url=s.twilio_public_url or s.widget_public_url,
            api_base=s.twilio_api_base, bot_identity=s.twilio_bot_identity,
            timeout=s.twilio_timeout,
            policy=RetryPolicy(s.twilio_max_attempts, s.twilio_backoff_base,
                               s.twilio_backoff_max, s.twilio_retry_after_max),
            poll_interval=s.twilio_poll_interval, catchup_seconds=s.twilio_catchup_seconds,
            webhook_filters=s.twilio_webhook_filters, support_db_url=s.support_db_url,
            handoff_delay=s.twilio_handoff_delay, inbox=InboxConfig.from_settings(),
            flex=FlexConfig.from_settings(s),
        )


class TwilioBridge(BackgroundWork):
    """Does the bridge's work (the channel only routes HTTP and starts the tail).

    Args:
        config: Settings; must be :attr:`TwilioConfig.configured`.
        store: The bridge's store (owned by the caller).
        api: The Twilio client (default: made from ``config``).
        publish: ``await publish(topic, event)``: where the store publishes its live events
            after each commit (default: the process's bus, :func:`bot.live.bus`).
    """

    def __init__(self, config: TwilioConfig, store: TwilioStore,
                 api: Optional[TwilioApi] = None, publish: Optional[Publish] = None) -> None:
        if not config.configured:
            raise ValueError("Twilio is not configured (TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN).")
        config.flex.check()
        self.config = config
        self.store = store
        self.api = api or TwilioApi(config.account_sid or "", config.auth_token or "",
                                    timeout=config.timeout, api_base=config.api_base)
        if publish is not None:  # the store publishes its live events after each commit
            store.set_publisher(publish)
        self._locks: Dict[str, asyncio.Lock] = {}
        self._tasks: Set[asyncio.Task] = set()
        self._tail: Optional[asyncio.Task] = None
        self._feed: Any = None
        self._feed_claims: Any = None
        self._bridging: Set[int] = set()
        self._health: Optional[Tuple[float, bool]] = None
        self.inbox = InboxProcessor(InboxStore(store.engine), config.inbox)
        self.inbox.register(WEBHOOK_KIND, self.handle_webhook)
        self.media = TwilioMedia(self)  # photos and PDFs both ways (bot/attachments)
        self.workers = WorkerNames(self._fetch_worker, config.flex.worker_cache_seconds)
        if config.flex.enabled:
            self.inbox.register(TASKROUTER_KIND, self.handle_task_event)

    # ------------------------------------------------------------ plumbing

    def _lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    async def close(self) -> None:
        """Stop the inbox (the current row may finish), the tail and background work, close
        the HTTP session."""
        await self.inbox.stop()
        if self._tail is not None:
            self._tail.cancel()
        for task in list(self._tasks):
            task.cancel()
        pending = [t for t in [self._tail, *self._tasks] if t is not None]
        if pending:
            await asyncio.wait(pending, timeout=5)
        self._tail = None
        await self.api.close()

    async def idle(self, timeout: float = 30.0) -> None:
        """Wait until no background work runs and the due inbox rows are processed (tests)."""
        await super().idle(timeout)
        await self.inbox.drain()
        await super().idle(timeout)

    async def _call(self, what: str, make: Callable[[], Awaitable[Any]]) -> Any:
        return await with_retries(make, self.config.policy, what)

    # ------------------------------------------------------ reliable delivery

    async def deliver(self, kind: str, key: str, payload: Dict[str, Any],
                      conversation_id: Optional[str] = None) -> bool:
        """Run the outbound operation ``kind`` once per ``key``; dead-letter it on failure.

        Returns:
            True if it was delivered now or before; False if it went to the dead letters.
        """
        done_key = f"out:{key}"
        async with self._lock(f"key:{key}"):
            if await self.store.is_processed(done_key):
                await self.store.do_mark_replayed(key)
                return True
            try:
                await self._perform(kind, payload)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - every failure ends in a dead letter
                attempts = error.attempts if isinstance(error, RetriesExhausted) else 1
                cause = error.error if isinstance(error, RetriesExhausted) else error
                letter = await self.store.do_dead_letter(
                    key=key, kind=kind, conversation_id=conversation_id, payload=payload,
                    error=describe(cause), attempts=attempts)
                logger.error("Twilio %s %s failed after %d tries (%s): dead letter %d",
                             kind, key, attempts, describe(cause), letter.id)
                return False
            await self.store.do_claim_keys([done_key])
            await self.store.do_mark_replayed(key)
            return True

    async def replay(self, dead_letter_id: int) -> Tuple[DeadLetterView, bool]:
        """Run a dead letter's operation again (delivered once: its key is recorded).

        Returns:
            The dead letter as it is now and whether the operation is delivered.

        Raises:
            LookupError: No such dead letter.
        """
        letter = await self.store.dead_letter(dead_letter_id)
        ok = await self.deliver(letter.kind, letter.key, letter.payload, letter.conversation_id)
        return await self.store.dead_letter(dead_letter_id), ok

    async def _perform(self, kind: str, payload: Dict[str, Any]) -> None:
        if kind == "handoff":
            await self._set_up(payload)
        elif kind == "message":
            await self._post(payload)
        elif kind == "close":
            await self._close_remote(payload)
        else:
            raise ValueError(f"Unknown Twilio operation {kind!r}.")

    # ---------------------------------------------------------------- handoff

    async def on_handoff(self, conversation_id: str, reference: str) -> Optional[bool]:
        """Hand a new handoff to Twilio if it is a widget chat still waiting in the queue.

        Returns:
            None when not for Twilio (unknown, not a widget chat, no longer queued,
            already linked); else whether the set-up was delivered.
        """
        if not conversation_id or not reference:
            return None
        if self.config.handoff_delay:  # let the bot's turn (its handoff reply) finish
            await asyncio.sleep(self.config.handoff_delay)
        async with self._lock(f"conversation:{conversation_id}"):
            link = await self.store.link_for_ticket(reference)
            if link is not None and link.state != "setup":
                return None
            if link is None and await self.store.ticket_status(reference) != "queued":
                return None
            material = await self.store.handoff_material(reference)
            if material is None:
                return None
            payload = self._handoff_payload(material)
            await self.media.add_session_files(payload, material)  # photos sent before
            return await self.deliver("handoff", f"handoff:{reference}", payload,
                                      conversation_id)

    def _handoff_payload(self, material: HandoffMaterial) -> Dict[str, Any]:
        ticket, details = material.ticket, material.details
        identity = material.customer_id or ticket.conversation_id
        lines: List[Dict[str, Any]] = []
        for line in details.get("transcript") or []:
            if not isinstance(line, dict) or not str(line.get("text") or "").strip():
                continue
            kind = "customer" if line.get("author") == "customer" else "bot"
            lines.append({"kind": kind, "text": str(line["text"])[:MAX_BODY_CHARS],
                          "at": line.get("at")})
        for message in material.messages:
            media = media_ids(message.extra)  # photos and files (bot/attachments)
            if not message.text.strip() and not media:
                continue
            lines.append({"kind": message.sender, "text": message.text[:MAX_BODY_CHARS],
                          "at": message.created_at.isoformat(), "name": message.sender_name,
                          "message_id": message.id if message.sender == "customer" else None,
                          **({"media": media} if media else {})})
        customer = {"id": material.customer_id, **{k: v for k, v in material.profile.items()
                                                    if isinstance(v, (str, int, float, bool))}}
        attributes: Dict[str, Any] = {
            "origin": ORIGIN, "conversation_id": ticket.conversation_id,
            "ticket": ticket.reference, "summary": ticket.summary, "category": ticket.category,
            "priority": ticket.priority, "customer": customer,
            "context": {**dict(details.get("context") or {}), **material.context},
            "triage": dict(details.get("triage") or {}),
            "slots": dict(details.get("slots") or {}),
        }
        for optional in ("slots", "context", "triage"):
            if len(json.dumps(attributes, default=str)) <= MAX_ATTRIBUTES_CHARS:
                break
            attributes.pop(optional)
        name = customer.get("name") or identity
        return {"conversation_id": ticket.conversation_id, "ticket": ticket.reference,
                "identity": identity, "friendly_name": f"{name} · {ticket.reference}"[:256],
                "attributes": json.loads(json.dumps(attributes, default=str)), "lines": lines,
                "after_id": material.last_message_id}

    async def _set_up(self, payload: Dict[str, Any]) -> None:
        conversation_id, reference = payload["conversation_id"], payload["ticket"]
        identity = payload["identity"]
        conversations = self.api.conversations
        link = await self.store.link_for_ticket(reference)
        if link is None:
            earlier = await self.store.count_links(conversation_id)
            unique_name = conversation_id if not earlier else f"{conversation_id}:{reference}"
            try:
                # webhooks on: service webhooks (Flex, Studio) see onConversationAdded
                remote = await self._call("create conversation", lambda: conversations.create_async(
                    x_twilio_webhook_enabled="true",
                    unique_name=unique_name, friendly_name=payload["friendly_name"],
                    attributes=json.dumps(payload["attributes"])))
            except RetriesExhausted as error:
                if not _conflict(error.error):
                    raise
                # made by an earlier try whose answer we never saw: address it by name
                by_name = quote(unique_name, safe="")  # the library does not escape paths
                remote = await self._call("fetch conversation",
                                          lambda: conversations(by_name).fetch_async())
            link = await self.store.do_create_link(
                conversation_id=conversation_id, ticket_reference=reference,
                conversation_sid=remote.sid, unique_name=unique_name,
                customer_identity=identity)
        conversation = conversations(link.conversation_sid)
        if link.participant_sid is None:
            try:
                participant = await self._call(
                    "add participant", lambda: conversation.participants.create_async(
                        x_twilio_webhook_enabled="true", identity=identity,
                        attributes=json.dumps({"origin": ORIGIN, "role": "customer"})))
                participant_sid = participant.sid
            except RetriesExhausted as error:
                if not _conflict(error.error):
                    raise
                existing = await self._call("list participants",
                                            lambda: conversation.participants.list_async())
                participant_sid = next((p.sid for p in existing if p.identity == identity), None)
                if participant_sid is None:
                    raise
            link = await self.store.do_update_link(link.id, participant_sid=participant_sid)
        lines = payload.get("lines") or []
        for index in range(link.imported, len(lines)):
            line = lines[index]
            author = self._author(line, identity)
            at = parse_time(line.get("at"))
            if line.get("media"):  # with the customer's photos and files as Twilio Media
                await self.media.post(conversation, author=author, body=line["text"],
                                      media=line["media"], webhooks="false", date_created=at,
                                      attributes=json.dumps({"origin": ORIGIN, "transcript": True,
                                                             "sender": line.get("kind")}))
            else:
                await self._call("import transcript", lambda: conversation.messages.create_async(
                    x_twilio_webhook_enabled="false", author=author, body=line["text"],
                    date_created=at if at is not None else _unset(),
                    attributes=json.dumps({"origin": ORIGIN, "transcript": True,
                                           "sender": line.get("kind")})))
            link = await self.store.do_update_link(link.id, imported=index + 1)
            if line.get("message_id"):
                await self.store.do_claim_keys(
                    [f"out:msg:{conversation_id}:{line['message_id']}"])
        # messages stored while this ran (the bot's handoff reply, the customer's next words)
        for message in await self.store.messages_after(conversation_id,
                                                       int(payload.get("after_id") or 0)):
            key = f"out:msg:{conversation_id}:{message.id}"
            media = media_ids(message.extra)  # photos and files (bot/attachments)
            if (not message.text.strip() and not media) or await self.store.is_processed(key):
                continue
            author = identity if message.sender == "customer" else self.config.bot_identity
            late = json.dumps({"origin": ORIGIN, "message_id": message.id,
                               "sender": message.sender})
            if media:
                await self.media.post(conversation, author=author,
                                      body=message.text[:MAX_BODY_CHARS], media=media,
                                      webhooks="false", attributes=late,
                                      date_created=message.created_at)
            else:
                await self._call("post late message", lambda: conversation.messages.create_async(
                    x_twilio_webhook_enabled="false", author=author,
                    body=message.text[:MAX_BODY_CHARS], date_created=message.created_at,
                    attributes=late))
            await self.store.do_claim_keys([key])
        if link.webhook_sid is None:
            webhook = await self._call("attach webhook", lambda: conversation.webhooks.create_async(
                target="webhook", configuration_url=self.config.webhook_url,
                configuration_method="POST",
                configuration_filters=list(self.config.webhook_filters),
                # messages an agent wrote before the webhook existed are replayed to us
                configuration_replay_after=len(lines)))
            link = await self.store.do_update_link(link.id, webhook_sid=webhook.sid)
        if self.config.flex.enabled:
            await self._route_to_flex(payload, link)
        if link.state == "setup":
            assigned = await self.store.do_assign_to_twilio(reference, link.conversation_sid,
                                                            link_id=link.id)
            logger.info("Handed %s (%s) to Twilio Conversation %s%s", reference,
                        conversation_id, link.conversation_sid,
                        "" if assigned else " (the ticket was no longer queued)")

    async def _route_to_flex(self, payload: Dict[str, Any], link: LinkView) -> None:
        """Create the Flex Interaction (a TaskRouter task) of the Conversation, once.

        Each try first looks for the ticket's task (``EvaluateTaskAttributes``): a try whose
        answer was lost (timeout) has created it, and a second Interaction would offer the
        customer to two agents.
        """
        done = f"out:flex:{payload['ticket']}"
        if await self.store.is_processed(done):
            return
        flex = self.config.flex
        attributes = task_attributes(payload, self.config.transcript_url(payload["ticket"]))
        channel, routing = interaction_request(flex, link.conversation_sid, attributes)
        tasks = self.api.client.taskrouter.v1.workspaces(flex.workspace_sid).tasks
        expression = ticket_expression(payload["ticket"], payload["conversation_id"])

        async def create() -> Any:
            existing = await tasks.list_async(evaluate_task_attributes=expression, limit=1)
            if existing:
                return existing[0]
            return await self.api.client.flex_api.v1.interaction.create_async(
                channel=channel, routing=routing)

        made = await self._call("create Flex interaction", create)
        interaction_sid, channel_sid, task_sid = flex_sids(made)
        if task_sid is None:  # the Interaction's task is made asynchronously: look it up
            found = await self._call("find Flex task", lambda: tasks.list_async(
                evaluate_task_attributes=expression, limit=1))
            task_sid = flex_sids(found[0])[2] if found else None
        fresh = await self.store.link_for_ticket(payload["ticket"]) or link
        sids = {"flex_interaction_sid": interaction_sid, "flex_channel_sid": channel_sid,
                "flex_task_sid": fresh.flex_task_sid or task_sid}
        await self.store.do_update_link(link.id, **{k: v for k, v in sids.items() if v})
        await self.store.do_claim_keys([done])
        logger.info("Routed %s to Flex (workspace %s, workflow %s): interaction %s, channel "
                    "%s, task %s", payload["ticket"], flex.workspace_sid, flex.workflow_sid,
                    interaction_sid, channel_sid, task_sid)

    async def _fetch_worker(self, worker_sid: str) -> Any:
        workers = self.api.client.taskrouter.v1.workspaces(
            self.config.flex.workspace_sid).workers
        return await self._call("fetch worker", lambda: workers(worker_sid).fetch_async())

    def _author(self, line: Mapping[str, Any], identity: str) -> str:
        kind = line.get("kind")
        if kind == "customer":
            return identity
        if kind == "bot":
            return self.config.bot_identity
        if kind == "agent":
            return str(line.get("name") or "agent")
        return "system"

    # ------------------------------------------------------ customer messages

    async def on_customer_message(self, event: Dict[str, Any]) -> None:
        """Bus ``customer.message``: forward it in the background if a link is open."""
        conversation_id = event.get("conversation_id")
        message = event.get("message") or {}
        if isinstance(conversation_id, str) and isinstance(message.get("id"), int):
            self.spawn(self.forward_customer_message(conversation_id, message),
                       name=f"twilio-forward-{message['id']}")

    async def forward_customer_message(self, conversation_id: str,
                                       message: Mapping[str, Any]) -> Optional[bool]:
        """Post a customer's message to their open Twilio Conversation (once).

        Returns:
            None when the conversation has no open link; else whether it was delivered.
        """
        text = str(message.get("text") or "").strip()
        media = media_ids(message)  # the customer's photos and files (bot/attachments)
        if not text and not media:
            return None
        async with self._lock(f"conversation:{conversation_id}"):
            link = await self.store.open_link(conversation_id)
        if link is None:
            return None
        payload = {"conversation_sid": link.conversation_sid, "author": link.customer_identity,
                   "body": text[:MAX_BODY_CHARS], "at": message.get("created_at"),
                   "webhooks": True, **({"media": media} if media else {}),
                   "attributes": {"origin": ORIGIN, "message_id": message.get("id")}}
        return await self.deliver("message", f"msg:{conversation_id}:{message['id']}", payload,
                                  conversation_id)

    async def _post(self, payload: Dict[str, Any]) -> None:
        conversation = self.api.conversations(payload["conversation_sid"])
        # the customer's own words: service webhooks (Flex, Studio) expect them; payloads
        # dead-lettered before this flag existed keep the old behaviour
        enabled = "true" if payload.get("webhooks") else "false"
        if payload.get("media"):  # photos and files go as Twilio Media (bot/attachments)
            await self.media.post(conversation, author=payload["author"], body=payload["body"],
                                  media=payload["media"], webhooks=enabled,
                                  attributes=json.dumps(payload.get("attributes")
                                                        or {"origin": ORIGIN}))
            return
        await self._call("post message", lambda: conversation.messages.create_async(
            x_twilio_webhook_enabled=enabled, author=payload["author"], body=payload["body"],
            attributes=json.dumps(payload.get("attributes") or {"origin": ORIGIN})))

    async def on_conversation_ended(self, event: Dict[str, Any]) -> None:
        """Bus ``conversation.ended``: the customer left; close their Twilio Conversation."""
        conversation_id = event.get("conversation_id")
        if isinstance(conversation_id, str):
            self.spawn(self._customer_left(conversation_id), name="twilio-customer-left")

    async def _customer_left(self, conversation_id: str) -> None:
        async with self._lock(f"conversation:{conversation_id}"):
            link = await self.store.open_link(conversation_id)
            if link is None:
                return
            await self.store.do_resolve(link, actor=f"customer:{link.customer_identity}",
                                        touch_conversation=False)
        await self.deliver("close", f"close:{link.conversation_sid}",
                           {"conversation_sid": link.conversation_sid,
                            "ticket": link.ticket_reference, "flex": self.config.flex.enabled,
                            "conversation_id": conversation_id,
                            "note": "The customer ended the chat."}, conversation_id)

    async def _close_remote(self, payload: Dict[str, Any]) -> None:
        conversation = self.api.conversations(payload["conversation_sid"])
        if payload.get("note"):
            await self._call("post note", lambda: conversation.messages.create_async(
                x_twilio_webhook_enabled="false", author="system", body=payload["note"],
                attributes=json.dumps({"origin": ORIGIN})))
        if payload.get("flex") and payload.get("ticket"):
            await self._close_flex_task(payload["ticket"], payload.get("conversation_id"))
            fetched = await self._call("fetch conversation", lambda: conversation.fetch_async())
            if fetched.state == "closed":  # Flex closed it with the interaction channel
                return
        await self._call("close conversation", lambda: conversation.update_async(
            x_twilio_webhook_enabled="false", state="closed"))

    async def _close_flex_task(self, reference: str, conversation_id: Optional[str]) -> None:
        """The customer left: close the Interaction channel of the ticket's open task (Flex
        wraps the task up, or cancels it when no agent has it yet)."""
        flex = self.config.flex
        tasks = self.api.client.taskrouter.v1.workspaces(flex.workspace_sid).tasks
        expression = ticket_expression(reference, conversation_id)
        found = await self._call("find Flex task", lambda: tasks.list_async(
            evaluate_task_attributes=expression, assignment_status=list(OPEN_TASK_STATUSES),
            limit=5))
        for task in found:
            attributes = event_attributes({"TaskAttributes": task.attributes})
            interaction, channel = (attributes.get("flexInteractionSid"),
                                    attributes.get("flexInteractionChannelSid"))
            if interaction and channel:
                context = self.api.client.flex_api.v1.interaction(interaction).channels(channel)
                await self._call("close Flex channel",
                                 lambda: context.update_async(status="closed"))
            else:
                status = "canceled" if task.assignment_status != "assigned" else "wrapping"
                await self._call("end Flex task", lambda: tasks(task.sid).update_async(
                    assignment_status=status, reason="The customer ended the chat."))

    # ---------------------------------------------------------------- webhooks

    async def accept_webhook(self, params: Mapping[str, str],
                             idempotency_token: Optional[str]) -> bool:
        """Store a (signature-checked) webhook in the inbox; it is processed from there.

        The row and its dedupe keys are written in one transaction: when this returns,
        the webhook survives a crash and Twilio may get its 200.

        Returns:
            False for a duplicate (same idempotency token or message SID): nothing stored.
        """
        keys = []
        event = params.get("EventType") or ""
        if params.get("MessageSid"):
            keys.append(f"sid:{event}:{params['MessageSid']}")
        if idempotency_token:
            keys.append(f"webhook:{idempotency_token}")
        order_key = f"conversation:{params.get('ConversationSid') or ''}"
        if not await self.inbox.accept(WEBHOOK_KIND, keys, order_key, dict(params)):
            logger.info("Duplicate Twilio webhook %s ignored", keys)
            return False
        return True

    async def handle_webhook(self, params: Dict[str, str]) -> str:
        """Act on one webhook; returns what was done (for logs and tests)."""
        event = params.get("EventType") or ""
        link = await self.store.link_for_sid(params.get("ConversationSid") or "")
        if link is None:
            return "unknown_conversation"
        if event == "onMessageAdded":
            return await self._agent_message(link, params)
        closed = (event == "onConversationStateUpdated" and params.get("StateTo") == "closed") \
            or (event == "onConversationUpdated" and params.get("State") == "closed")
        if closed:
            return await self._closed(link, params)
        return "ignored"

    async def _agent_message(self, link: LinkView, params: Dict[str, str]) -> str:
        author = (params.get("Author") or "").strip() or "agent"
        try:
            attributes = json.loads(params.get("Attributes") or "{}")
        except ValueError:
            attributes = {}
        if (isinstance(attributes, dict) and attributes.get("origin") == ORIGIN) or author in (
                link.customer_identity, self.config.bot_identity, "system"):
            return "echo"
        if link.state == "closed":
            return "closed"
        text = (params.get("Body") or "").strip()
        # the agent's photos and files, checked and stored like uploads (bot/attachments)
        attachments = await self.media.receive(link, author, params.get("Media"))
        if not text and params.get("Media") and not attachments:
            text = "(attachment)"
        if not text and not attachments:
            return "empty"
        name = await self._agent_name(author, link)
        # the store publishes after its commit: ticket.claimed (who joined, unless Flex
        # named the worker already) on the first reply, then agent.message
        _message, duplicate, _first = await self.store.do_agent_message(
            link, params.get("MessageSid") or "", name, text,
            extra={"attachments": attachments} if attachments else None,
            announce=not (self.config.flex.enabled and link.last_agent))
        if duplicate:
            return "duplicate"
        return "delivered"

    async def _agent_name(self, author: str, link: LinkView) -> str:
        """What the customer sees as the agent's name. Plain mode: the author. Flex: the
        worker's friendly name (by identity, fetched again when older than
        ``TWILIO_FLEX_WORKER_CACHE_SECONDS``, else the worker who accepted the task), never
        the raw identity, which is often an e-mail address."""
        if not self.config.flex.enabled:
            return author
        return await self.workers.for_identity(author) or link.last_agent or FALLBACK_AGENT_NAME

    # ----------------------------------------------------- TaskRouter events

    async def accept_task_event(self, params: Mapping[str, str],
                                idempotency_token: Optional[str]) -> bool:
        """Store a (signature-checked) TaskRouter event callback in the inbox.

        Deduplicated by the event SID (``Sid``, ``EV…``) and the idempotency token; ordered
        with the Conversation's webhooks (``TaskAttributes.conversationSid``).

        Returns:
            False for a duplicate: nothing stored.
        """
        keys = [f"sid:taskrouter:{params['Sid']}"] if params.get("Sid") else []
        if idempotency_token:
            keys.append(f"webhook:{idempotency_token}")
        attributes = event_attributes(dict(params))
        order_key = f"conversation:{attributes.get('conversationSid') or params.get('TaskSid')}"
        if not await self.inbox.accept(TASKROUTER_KIND, keys, order_key, dict(params)):
            logger.info("Duplicate TaskRouter event %s ignored", keys)
            return False
        return True

    async def handle_task_event(self, params: Dict[str, str]) -> str:
        """Act on one TaskRouter event; returns what was done (for logs and tests).

        The link is found by the event's task SID (the task stored with it), else by the
        task attributes we set (``ticket``, then Flex's ``conversationSid``). A task of our
        ticket that is not the link's task is a **transfer** (Flex made a new task for the
        same chat): when it is created or accepted it becomes the link's task, and the end of
        the earlier task resolves nothing.
        """
        if params.get("WorkspaceSid") != self.config.flex.workspace_sid:
            return "other_workspace"
        task_sid = params.get("TaskSid") or ""
        attributes = event_attributes(params)
        link = await self.store.link_for_task(task_sid)
        if link is None:
            if attributes.get("origin") != ORIGIN:
                return "not_ours"  # a task of another channel in the same workspace
            if attributes.get("ticket"):
                link = await self.store.link_for_ticket(str(attributes["ticket"]))
            if link is None and attributes.get("conversationSid"):
                link = await self.store.link_for_sid(str(attributes["conversationSid"]))
        if link is None:
            return "unknown_ticket"
        event = params.get("EventType") or ""
        transferred = False
        if task_sid and link.flex_task_sid != task_sid:
            if link.flex_task_sid and event in RESOLVING_EVENTS:
                return "superseded"  # the task a transfer replaced ends: the chat goes on
            if link.state != "closed" and event in ("task.created", "reservation.accepted"):
                transferred = bool(link.flex_task_sid)
                link = await self.store.do_update_link(link.id, **_task_sids(
                    task_sid, attributes, link))
                if transferred:
                    logger.info("Flex task of %s transferred to %s", link.ticket_reference,
                                task_sid)
                if event == "task.created":
                    return "transferred" if transferred else "task"
        if event == "reservation.accepted" and params.get("WorkerSid"):
            name = await self.workers.name(params["WorkerSid"])
            # published after the store's commit: ticket.claimed, or ticket.transferred when
            # someone had the chat before ("... is taking over your chat")
            if await self.store.do_set_agent(link, name) is None:
                return "ignored"
            return "accepted"
        if event in RESOLVING_EVENTS:
            if link.state == "closed":
                return "already_closed"
            going_on = await self._chat_goes_on(link, task_sid, event, attributes)
            if going_on:
                return going_on
            return await self._closed(link, params)
        return "ignored"

    async def _chat_goes_on(self, link: LinkView, task_sid: str, event: str,
                            attributes: Dict[str, Any]) -> Optional[str]:
        """Whether the end of the link's task is not the end of the chat: another open task
        of the ticket exists (a transfer: it becomes the link's task; ``"transferred"``), or
        the task is wrapping while its Interaction channel is still open (the agent left
        without ending the chat, e.g. a transfer whose new task is not made yet;
        ``"agent_left"``: ``task.completed`` decides). None: the chat is over."""
        flex = self.config.flex
        tasks = self.api.client.taskrouter.v1.workspaces(flex.workspace_sid).tasks
        expression = ticket_expression(link.ticket_reference, link.conversation_id)
        found = await self._call("find Flex tasks", lambda: tasks.list_async(
            evaluate_task_attributes=expression, assignment_status=list(OPEN_TASK_STATUSES),
            limit=20))
        others = [task for task in found if task.sid != task_sid]
        if others:
            newest = max(others, key=lambda task: (task.date_created or datetime.min
                                                   .replace(tzinfo=timezone.utc)))
            await self.store.do_update_link(link.id, **_task_sids(
                newest.sid, event_attributes({"TaskAttributes": newest.attributes}), link))
            logger.info("Flex task %s of %s ended (%s); the chat goes on in task %s",
                        task_sid, link.ticket_reference, event, newest.sid)
            return "transferred"
        if event != "task.wrapup":
            return None
        interaction = link.flex_interaction_sid or attributes.get("flexInteractionSid")
        channel_sid = link.flex_channel_sid or attributes.get("flexInteractionChannelSid")
        if not (interaction and channel_sid):
            return None
        context = self.api.client.flex_api.v1.interaction(interaction).channels(channel_sid)
        channel = await self._call("fetch Flex channel", lambda: context.fetch_async())
        if str(getattr(channel, "status", "") or "") in CLOSED_CHANNEL_STATUSES:
            return None
        return "agent_left"

    async def _closed(self, link: LinkView, params: Dict[str, str]) -> str:
        fresh = await self.store.link_for_sid(link.conversation_sid) or link
        ticket = await self.store.do_resolve(  # publishes ticket.resolved after its commit
            fresh, actor=f"twilio:{fresh.last_agent or 'agent'}",
            agent_name=fresh.last_agent or FALLBACK_AGENT_NAME)
        if ticket is None:
            return "already_closed"
        return "resolved"

    # ------------------------------------------------------------ change feed

    def _claims(self) -> Any:
        if self._feed_claims is None:
            from bot.live import PROCESS_ID, FeedClaims

            self._feed_claims = FeedClaims(self.store.engine, CLAIM_CONSUMER,
                                           stale_after=CLAIM_STALE_SECONDS,
                                           owner=f"{PROCESS_ID}:{id(self):x}"[:64])
        return self._feed_claims

    def start(self) -> None:
        """Start the webhook inbox processor, follow the change feed for handoffs and sweep
        for missed ones (idempotent)."""
        self.inbox.start()
        if self._tail is None or self._tail.done():
            from bot.live import change_feed

            url = self.config.support_db_url or self.store.engine.url.render_as_string(
                hide_password=False)
            self._feed = change_feed(url)
            self._feed.subscribe(self.on_changes, self.config.poll_interval)
            self._tail = asyncio.create_task(self._run_tail(), name="twilio-handoff-sweep")

    async def _run_tail(self) -> None:
        pruned_at, sweep_at = 0.0, float("-inf")  # sweep at once: what was missed
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    if loop.time() - sweep_at >= SWEEP_SECONDS:
                        sweep_at = loop.time()
                        await self.sweep()
                    if loop.time() - pruned_at > 3600:
                        pruned_at = loop.time()
                        await self.store.do_prune_keys(timedelta(days=KEEP_WEBHOOK_KEYS_DAYS))
                        await self.inbox.store.do_prune(timedelta(days=KEEP_WEBHOOK_KEYS_DAYS))
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - keep sweeping
                    logger.exception("Twilio handoff sweep failed")
                await asyncio.sleep(min(self.config.poll_interval, SWEEP_SECONDS))
        finally:
            feed, self._feed = self._feed, None
            if feed is not None:
                await feed.unsubscribe(self.on_changes)

    async def on_changes(self, changes: List[Any]) -> None:
        """Change feed batch: bridge each new handoff (in the background)."""
        for change in changes:
            if change.topic == "handoff.recorded":
                self.spawn(self.bridge_change(change), name=f"twilio-handoff-{change.ticket}")

    async def sweep(self) -> int:
        """Bridge the handoffs of the last ``catchup_seconds`` nobody finished or holds
        (recorded while no bridge ran, or left by a process that died); returns how many."""
        if not self.config.catchup_seconds:
            return 0
        from bot.live import ChangeFeedReader

        since = datetime.now(timezone.utc) - timedelta(seconds=self.config.catchup_seconds)
        changes = await ChangeFeedReader(self.store.engine).recent("handoff.recorded", since)
        open_ids = set(await self._claims().open_ids([c.id for c in changes]))
        started = 0
        for change in changes:
            if change.id in open_ids and change.id not in self._bridging:
                self.spawn(self.bridge_change(change), name=f"twilio-catch-up-{change.ticket}")
                started += 1
        return started

    async def bridge_change(self, change: Any) -> Optional[bool]:
        """Bridge one ``handoff.recorded`` change if this process wins its durable claim.

        Returns:
            None when another process has (or had) it or it is not for Twilio; else whether
            the set-up was delivered (False: it is a dead letter now, replayed by an operator).
        """
        if change.id in self._bridging:
            return None
        self._bridging.add(change.id)
        claims = self._claims()
        try:
            if not await claims.claim(change.id):
                return None
            heartbeat = asyncio.create_task(self._keep_claim(change.id))
            try:
                result = await self.on_handoff(change.conversation_id or "", change.ticket or "")
            except BaseException:
                heartbeat.cancel()
                await asyncio.shield(claims.release(change.id))  # the next sweep retries
                raise
            heartbeat.cancel()
            await claims.finish(change.id)
            return result
        finally:
            self._bridging.discard(change.id)

    async def _keep_claim(self, change_id: int) -> None:
        while True:
            await asyncio.sleep(CLAIM_STALE_SECONDS / 3)
            await self._claims().refresh(change_id)

    # ------------------------------------------------------------------ health

    async def health(self) -> Dict[str, Any]:
        """``{configured, reachable, dead_letters}``; reachability cached for 10 s."""
        loop = asyncio.get_running_loop()
        if self._health is None or loop.time() - self._health[0] > 10.0:
            reachable = True
            try:
                await asyncio.wait_for(
                    self.api.conversations.page_async(page_size=1), HEALTH_TIMEOUT)
            except Exception as error:  # noqa: BLE001 - any failure means unreachable
                logger.warning("Twilio health check failed: %s", describe(error))
                reachable = False
            self._health = (loop.time(), reachable)
        return {"configured": True, "reachable": self._health[1],
                "dead_letters": await self.store.count_dead_letters()}


def _task_sids(task_sid: str, attributes: Dict[str, Any], link: LinkView) -> Dict[str, Any]:
    """The link's Flex columns for its (new) task ``task_sid``."""
    return {"flex_task_sid": task_sid,
            "flex_interaction_sid": link.flex_interaction_sid
            or attributes.get("flexInteractionSid"),
            "flex_channel_sid": link.flex_channel_sid
            or attributes.get("flexInteractionChannelSid")}


def _conflict(error: BaseException) -> bool:
    return isinstance(error, TwilioRestException) and error.status == 409


def _unset() -> Any:
    from twilio.base import values

    return values.unset
