"""Chat sessions: the customer ends one; the bot resumes after a person.

:class:`WidgetChatSessions` is mixed into :class:`bot.channels.widget.WidgetInput`:
:meth:`resume_bot` un-pauses Rasa for a conversation a person has finished (used by the
agent bridge when a ticket is resolved, and when the customer leaves a chat with a
person); :meth:`_end_session` ends the chat session (``end`` frame, ``POST /session/end``)
and starts a new bot session.
"""
from __future__ import annotations

import logging

from bot.channels.auth import Customer
from bot.channels.widget_output import WidgetOutput
from bot.i18n import conversation_locale
from bot.messages import notice

__all__ = ["WidgetChatSessions"]

logger = logging.getLogger("bot.channels.widget")  # the channel logs under one name


class WidgetChatSessions:
    """Session end and bot resume (a mixin of ``WidgetInput``)."""

    async def resume_bot(self, conversation_id: str) -> None:
        """Un-pause Rasa for a conversation a person has finished (under Rasa's lock).

        Appends ``ConversationResumed`` and ``action_listen`` to the tracker, as if the
        bot had just started listening again.
        """
        from rasa.shared.core.events import ActionExecuted, ConversationResumed

        agent = getattr(getattr(self._app, "ctx", None), "agent", None)
        if agent is None or agent.tracker_store is None:
            return
        async with agent.lock_store.lock(conversation_id):
            tracker = await agent.tracker_store.retrieve(conversation_id)
            if tracker is not None and tracker.is_paused():
                tracker.update(ConversationResumed())
                # the bot listens again (Rasa's default rules, e.g. /session_start, need it)
                tracker.update(ActionExecuted("action_listen"))
                await agent.tracker_store.save(tracker)

    async def _end_session(self, customer: Customer) -> int:
        """End the chat session; returns the new session number."""
        conversation_id = customer.conversation_id
        chat = await self.chat()
        await chat.do_open_conversation(
            conversation_id, customer.user_id, "widget", profile=customer.profile
        )
        async with self.hub.turn_lock(conversation_id):
            paused = await self._paused(conversation_id)
            locale = conversation_locale(await chat.get_conversation(conversation_id))
            conversation, ended = await chat.do_end_session(
                conversation_id,
                f"customer:{customer.user_id}",
                notice("widget_session_ended", locale=locale),
            )
            await self.hub.push(conversation_id, {"type": "message", "message": ended.to_wire()})
            output = WidgetOutput(self)
            try:
                if paused:  # the customer left a chat with a person
                    await self.resume_bot(conversation_id)
                await self._handle(customer, "/session_start", output)
            except Exception:  # noqa: BLE001 - the session is ended in our store anyway
                logger.exception("Could not start a new bot session for %s", conversation_id)
            await self.hub.push(
                conversation_id, {"type": "session_ended", "session": conversation.session}
            )
        await self.bridge.publish(
            "conversation.ended",
            {"conversation_id": conversation_id, "session": conversation.session},
        )
        return conversation.session
