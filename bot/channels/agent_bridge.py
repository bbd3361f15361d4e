"""The customer's side of a conversation with a live agent (widget channel ↔ live bus).

:class:`AgentBridge` subscribes the widget channel to what agents do (``bot.live``
topics published by the agent console) and delivers it to the customer's devices:

* ``agent.message``: the agent's reply (already stored) as a ``message`` frame;
* ``agent.typing``: ``typing`` frames with ``sender: "agent"`` and the agent's name;
* ``agent.read``: ``receipt`` frames (``read``) for the customer's messages;
* ``ticket.claimed`` / ``ticket.transferred``: a stored system notice ("Maria from our
  support team has joined the chat");
* ``ticket.resolved``: the bot is resumed (Rasa's ``ConversationResumed`` under the
  conversation lock), thanks the customer and asks for a rating (a stored bot message
  and a ``rating_request`` frame).

With several Rasa processes (``REDIS_URL``, bot/live.py) the customer's socket may be on
another process than the agent: deliveries run in every process (each pushes to the sockets
it holds); the side effects (stored notices, resuming the bot, the offline notification)
run once, in the process that published the event, and send their frames on
``widget.frames`` to wherever the customer is connected.

It also handles the customer's ``rate`` frame (only for a finished session a person
handled, once: :meth:`bot.support.agents.AgentStore.do_rate`) and publishes what the
customer does (messages, typing, reads, session end, ratings).
All notice texts are in ``data/messages.yml``.

The bridge knows the widget channel only as :class:`bot.channels.widget_wire.WidgetChannel`
(its hub, chat store and ``resume_bot``): the channel imports the bridge, never the reverse.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional

from bot.channels.widget_wire import FRAMES_TOPIC, WidgetChannel, push_everywhere
from bot.live import ORIGIN, REMOTE, bus
from bot.i18n import conversation_locale
from bot.messages import notice
from bot.support.agents import AgentStore, RatingRefused

__all__ = ["AgentBridge", "FRAMES_TOPIC"]


logger = logging.getLogger(__name__)

MAX_COMMENT_CHARS = 2000


class AgentBridge:
    """Connects one widget channel to the process's live bus.

    Args:
        channel: The widget channel (its store, hub and Rasa access).
    """

    def __init__(self, channel: WidgetChannel) -> None:
        self._channel = channel
        self._agents: Optional[AgentStore] = None
        self._subscribed = False

    def subscribe(self) -> None:
        """Listen to the agent topics (idempotent)."""
        if self._subscribed:
            return
        live = bus()
        # deliveries to this process's sockets: events of every process
        live.subscribe("agent.message", self._on_agent_message)
        live.subscribe("agent.typing", self._on_agent_typing)
        live.subscribe("agent.read", self._on_agent_read)
        live.subscribe(FRAMES_TOPIC, self._on_frames, scope=REMOTE)  # pushed here already
        # side effects (stored notices, the bot resumed, notifications): once, where published
        live.subscribe("agent.message", self._notify_if_offline, scope=ORIGIN)
        live.subscribe("ticket.claimed", self._on_claimed, scope=ORIGIN)
        live.subscribe("ticket.transferred", self._on_transferred, scope=ORIGIN)
        live.subscribe("ticket.resolved", self._on_resolved, scope=ORIGIN)
        self._subscribed = True

    async def agents(self) -> AgentStore:
        """The agent store, sharing the chat store's engine."""
        if self._agents is None:
            self._agents = AgentStore((await self._channel.chat()).engine)
        return self._agents

    # ------------------------------------------------------- agent → customer

    async def _on_agent_message(self, event: Dict[str, Any]) -> None:
        await self._channel.hub.push(
            event["conversation_id"], {"type": "message", "message": event["message"]}
        )

    async def _notify_if_offline(self, event: Dict[str, Any]) -> None:
        """The customer is not in the app (no socket on any process): the host app may
        notify them."""
        conversation_id = event["conversation_id"]
        if self._channel.hub.connections(conversation_id) or await bus().online(conversation_id):
            return
        self._channel.hub.spawn(self.notify_offline(event))

    async def _on_frames(self, event: Dict[str, Any]) -> None:
        """Frames stored by another subscriber (:data:`FRAMES_TOPIC`), to this process's
        sockets of the conversation, in order."""
        for frame in event.get("frames") or ():  # queued without a loop iteration each
            await self._channel.hub.push(event["conversation_id"], frame, settle=False)

    async def notify_offline(self, event: Dict[str, Any]) -> bool:
        """POST the ``agent_reply`` notification to ``SUPPORT_NOTIFY_URL`` (if configured).

        The body is JSON ``{"event": "agent_reply", "conversation_id", "customer_id",
        "agent", "preview", "message_id"}``; with ``SUPPORT_NOTIFY_SECRET`` it is signed in
        ``X-Support-Signature: sha256=<hex HMAC of the body>``. Three tries with backoff;
        failures are logged. Returns whether the hook accepted it (2xx).
        """
        import asyncio
        import hashlib
        import hmac
        import json

        import aiohttp

        from bot.settings import get_settings

        settings = get_settings()
        if not settings.notify_webhook_url:
            return False
        message = event.get("message") or {}
        conversation_id = event["conversation_id"]
        body = json.dumps({
            "event": "agent_reply",
            "conversation_id": conversation_id,
            "customer_id": conversation_id.split(":", 1)[-1],
            "agent": message.get("sender_name"),
            "preview": (message.get("text") or "")[:140],
            "message_id": message.get("id"),
        }).encode()
        headers = {"Content-Type": "application/json"}
        if settings.notify_webhook_secret:
            digest = hmac.new(settings.notify_webhook_secret.encode(), body, hashlib.sha256)
            headers["X-Support-Signature"] = "sha256=" + digest.hexdigest()
        timeout = aiohttp.ClientTimeout(total=5)
        for attempt in range(3):
            try:
                async with aiohttp.ClientSession(timeout=timeout) as http:
                    async with http.post(settings.notify_webhook_url, data=body,
                                         headers=headers) as response:
                        if 200 <= response.status < 300:
                            return True
                        logger.warning("Notification hook answered %s", response.status)
            except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                logger.warning("Notification hook failed: %s", error)
            await asyncio.sleep(0.5 * 2 ** attempt)
        return False

    async def _on_agent_typing(self, event: Dict[str, Any]) -> None:
        await self._channel.hub.push(
            event["conversation_id"],
            {"type": "typing", "sender": "agent", "state": event.get("state", "stop"),
             "name": event.get("name")},
        )

    async def _on_agent_read(self, event: Dict[str, Any]) -> None:
        ids = [int(i) for i in event.get("ids") or []]
        if ids:
            await self._channel.hub.push(
                event["conversation_id"], {"type": "receipt", "ids": ids, "status": "read"}
            )

    async def _on_claimed(self, event: Dict[str, Any]) -> None:
        locale = await self._locale(event["conversation_id"])
        await self._system(event["conversation_id"], notice(
            "widget_agent_joined", locale=locale, agent=event.get("agent_name") or "Someone"))

    async def _on_transferred(self, event: Dict[str, Any]) -> None:
        locale = await self._locale(event["conversation_id"])
        await self._system(
            event["conversation_id"],
            notice("widget_agent_transferred", locale=locale,
                   agent=event.get("agent_name") or "Someone"),
        )

    async def _locale(self, conversation_id: str) -> str:
        """The customer's language in a widget conversation (English for any other)."""
        try:
            return conversation_locale(
                await (await self._channel.chat()).get_conversation(conversation_id))
        except LookupError:
            return conversation_locale(None)

    async def _on_resolved(self, event: Dict[str, Any]) -> None:
        conversation_id = event["conversation_id"]
        channel = self._channel
        async with channel.hub.turn_lock(conversation_id):
            await channel.resume_bot(conversation_id)
            chat = await channel.chat()
            conversation = await chat.get_conversation(conversation_id)
            locale = conversation_locale(conversation)
            thanks = await chat.do_store_outgoing(
                conversation_id, "bot",
                notice("widget_agent_resolved", locale=locale, reference=event.get("ticket") or ""),
                buttons=_transcript_button(locale),
            )
        await self._push_everywhere(conversation_id, [
            {"type": "message", "message": thanks.to_wire()},
            {"type": "rating_request", "session": conversation.session,
             "ticket": event.get("ticket"), "agent": event.get("agent_name")},
        ])

    async def _system(self, conversation_id: str, text: str) -> None:
        chat = await self._channel.chat()
        try:
            message = await chat.do_store_outgoing(conversation_id, "system", text)
        except LookupError:
            return  # not a widget conversation
        await self._push_everywhere(conversation_id, [{"type": "message",
                                                       "message": message.to_wire()}])

    async def _push_everywhere(self, conversation_id: str, frames: List[Dict[str, Any]]) -> None:
        """Frames to this process's sockets now (in the order of this subscriber group's
        events: the "joined" notice before the agent's first reply), and to the other
        processes' over the bus."""
        await push_everywhere(self._channel.hub, conversation_id, *frames)

    # ------------------------------------------------------- customer → agent

    async def rate(self, conversation_id: str, customer_id: str, frame: Dict[str, Any]) -> Dict[str, Any]:
        """Store a ``rate`` frame's rating.

        Returns:
            The ``rated`` frame, or an ``error`` frame with code ``not_ratable`` (a session
            no person handled, or not finished yet) or ``already_rated``; then nothing is
            stored or published.

        Raises:
            ValueError: A bad score, session or comment (``bad_request``).
        """
        session, score, comment = frame.get("session"), frame.get("score"), frame.get("comment")
        if not isinstance(session, int) or isinstance(session, bool) or session < 1:
            raise ValueError("rate.session must be a chat session number.")
        if comment is not None and (not isinstance(comment, str) or len(comment) > MAX_COMMENT_CHARS):
            raise ValueError(f"rate.comment must be text of at most {MAX_COMMENT_CHARS} characters.")
        conversation = await (await self._channel.chat()).get_conversation(conversation_id)
        if session > conversation.session:
            raise ValueError("rate.session is a session that has not started yet.")
        try:
            rating = await (await self.agents()).do_rate(
                conversation_id, session, score, comment, actor=f"customer:{customer_id}"
            )
        except RatingRefused as refused:
            logger.info("Rating of %s session %s refused: %s", conversation_id, session,
                        refused.code)
            return {"type": "error", "code": refused.code, "message": str(refused),
                    "session": session}
        # the store published rating.created after its commit
        return {"type": "rated", "session": rating.session, "score": rating.score}

    @staticmethod
    async def publish(topic: str, event: Dict[str, Any]) -> None:
        """Publish a customer-side event on the live bus."""
        await bus().publish(topic, event)


def _transcript_button(locale: Optional[str] = None) -> Optional[List[Dict[str, str]]]:
    """"Email me this conversation" (``action_email_transcript``), while email is on."""
    from bot.settings import get_settings

    mail = get_settings().mail
    if mail is None or not mail.enabled:
        return None
    return [{"title": notice("transcript_button", locale=locale), "payload": "/email_transcript"}]
