"""Call-backs by phone in the chat: the ``end_call`` frame and ``call`` frames.

:class:`WidgetCallFrames` is mixed into :class:`bot.channels.widget.WidgetInput`. It talks
to the call service only through :mod:`bot.calls` (the Twilio Voice service registers
itself there when it starts) and hears about state changes on the live bus
(``call.state``), so the widget never imports the Twilio integration.
"""
from __future__ import annotations

import logging
from typing import Any, Dict

from bot import calls
from bot.channels.hub import Connection

__all__ = ["WidgetCallFrames"]

logger = logging.getLogger("bot.channels.widget")  # the channel logs under one name


class WidgetCallFrames:
    """The widget side of call-backs (a mixin of ``WidgetInput``)."""

    async def _on_end_call(self, connection: Connection, frame: Dict[str, Any]) -> None:
        await connection.send(await calls.end_call(connection.conversation_id, frame))

    async def _on_call_state(self, event: Dict[str, Any]) -> None:
        """Bus ``call.state``: the system message (if any), then the ``call`` frame."""
        conversation_id = event["conversation_id"]
        if event.get("message"):
            await self.hub.push(conversation_id, {"type": "message", "message": event["message"]})
        await self.hub.push(conversation_id, event["frame"])

    async def _send_call_state(self, connection: Connection) -> None:
        try:
            frame = await calls.current_call_frame(connection.conversation_id)
        except Exception:  # noqa: BLE001 - the chat works without it
            logger.exception("Could not read the call state of %s", connection.conversation_id)
            return
        if frame is not None:
            await connection.send(frame)
