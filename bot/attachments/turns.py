"""The bot's turn of a customer message that is only a photo or a file (no words).

Rasa understands words; a photo alone would only reach its fallback. While the bot has the
chat, such a message is answered by the channel itself with ``widget_attachment_received``
from ``data/messages.yml`` (stored as a bot message of that turn, ``reply_to`` the photo, so
the exactly-once guarantees of :mod:`bot.channels.widget_turns` hold). Words sent with a
photo go to Rasa as usual; agents see the photo in the conversation either way.
"""
from __future__ import annotations

from typing import Any

__all__ = ["answer_attachment_only"]


async def answer_attachment_only(channel: Any, claim: Any) -> bool:
    """Answer a claimed turn whose message is attachments only.

    Returns:
        True when it was such a message (answered: finish the turn as ``read``); False
        for any other message (run the turn as usual).
    """
    message = claim.message
    if message.text.strip() or not message.extra.get("attachments"):
        return False
    from bot.channels.widget_output import WidgetOutput
    from bot.messages import notice

    output = WidgetOutput(channel, reply_to=message.id)
    await output.send_response(claim.conversation.conversation_id,
                               {"text": notice("widget_attachment_received")})
    return True
