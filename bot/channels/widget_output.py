"""The widget's output channel: store each bot reply, then push it to the customer.

:class:`WidgetOutput` is what Rasa sends the bot's messages through for a widget
conversation (one per turn, and the channel's default output for replies Rasa sends on its
own). Markdown an action marks as such is rendered into rich-text ``blocks`` here.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Text

from rasa.core.channels.channel import OutputChannel

from bot.channels.widget_wire import WidgetChannel, push_everywhere
from bot.support.chat import MessageView

__all__ = ["WidgetOutput"]

logger = logging.getLogger("bot.channels.widget")  # the channel logs under one name

RENDERED_KEPT = 256
"""Markdown sources whose rendering is kept (FAQ articles repeat: each was parsed anew)."""
_rendered: "OrderedDict[str, str]" = OrderedDict()  # source -> its blocks as JSON


async def _blocks(source: str) -> List[Dict[str, Any]]:
    """The blocks of ``source``: rendered once in a worker thread, then from the kept JSON
    (every message gets blocks of its own)."""
    from bot.richtext import markdown_to_blocks

    kept = _rendered.get(source)
    if kept is None:
        kept = json.dumps(await asyncio.to_thread(markdown_to_blocks, source))
        _rendered[source] = kept
        while len(_rendered) > RENDERED_KEPT:
            _rendered.popitem(last=False)
    else:
        _rendered.move_to_end(source)
    return json.loads(kept)


async def _render_markdown(extra: Dict[str, Any]) -> Dict[str, Any]:
    """A bot message's extras with its Markdown rendered as rich-text ``blocks``.

    An action marks Markdown with ``json_message={"format": "markdown", "markdown": ...}``
    (it arrives as ``custom``). The source is kept as ``markdown`` and rendered by
    :func:`bot.richtext.markdown_to_blocks` in a worker thread (once per source: see
    :func:`_blocks`); other ``custom`` keys stay.
    Anything else (every ``data/messages.yml`` text, for one) is never read as Markdown.
    """
    custom = extra.get("custom")
    if not isinstance(custom, dict) or custom.get("format") != "markdown":
        return extra
    rendered = {key: value for key, value in extra.items() if key != "custom"}
    rest = {key: value for key, value in custom.items() if key not in ("format", "markdown")}
    if rest:
        rendered["custom"] = rest
    source = custom.get("markdown")
    if isinstance(source, str) and source.strip():
        blocks = await _blocks(source)
        if blocks:
            rendered.update(markdown=source, blocks=blocks)
    return rendered


class WidgetOutput(OutputChannel):
    """Stores each bot reply, then pushes it to the customer's open connections.

    Args:
        channel: The widget channel (its store and hub).
    """

    def __init__(self, channel: WidgetChannel, reply_to: Optional[int] = None) -> None:
        self._channel = channel
        self._reply_to = reply_to
        self.sent: List[MessageView] = []

    @classmethod
    def name(cls) -> Text:
        return "widget"

    async def send_response(self, recipient_id: Text, message: Dict[Text, Any]) -> None:
        """Store and push one bot message (text, buttons, image, attachment, custom).

        Markdown marked by the action becomes ``blocks`` (:func:`_render_markdown`); the
        stored ``text`` stays the action's plain text (a FAQ answer's summary), which is
        what transcripts, Twilio and handoffs show.
        """
        text = message.get("text") or ""
        buttons = message.get("buttons") or message.get("quick_replies")
        extra = await _render_markdown({
            key: message[key]
            for key in ("image", "attachment", "custom", "elements")
            if message.get(key)
        })
        if not text and not buttons and not extra:
            return
        chat = await self._channel.chat()
        try:
            view = await chat.do_store_outgoing(
                recipient_id, "bot", text, buttons=buttons, extra=extra or None,
                reply_to=self._reply_to,
            )
        except LookupError:
            logger.warning("No widget conversation %s; bot message dropped.", recipient_id)
            return
        self.sent.append(view)
        await push_everywhere(self._channel.hub, recipient_id,
                              {"type": "message", "message": view.to_wire()})
