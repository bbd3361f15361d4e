"""Customer text is text: the rules both customer-facing channels apply before Rasa.

Rasa unpacks any message text starting with ``/`` (after stripping whitespace) as
``/intent@confidence{entities}`` and skips the NLU (``RegexMessageHandler``), so a
customer typing ``/restart`` or ``/inform{"order_number": ...}`` would be giving the
bot commands. The widget channel and the API channel therefore pass typed text
through :func:`as_free_text`, and accept a quick-reply payload only when
:func:`payload_allowed` says the bot offered it (docs/security.md).
"""
from __future__ import annotations

import re
from typing import Collection

__all__ = ["FREE_TEXT_GUARD", "INTENT_PREFIX", "RESERVED_INTENTS", "as_free_text",
           "payload_allowed", "payload_intent"]

INTENT_PREFIX = "/"
"""Rasa's intent prefix (``rasa.shared.constants.INTENT_MESSAGE_PREFIX``)."""
FREE_TEXT_GUARD = "\u2060"
"""U+2060 WORD JOINER: put before a typed text that starts with ``/``. It is invisible,
not whitespace (``str.strip`` keeps it, so Rasa's ``UserMessage`` and regex handler do
too), and the tokenizers drop it, so the NLU reads the words as typed."""
RESERVED_INTENTS = frozenset({"restart", "back", "session_start", "nlu_fallback"})
"""Rasa's built-in commands: never accepted from a customer, even as an offered payload."""
_PAYLOAD_INTENT_RE = re.compile(r"^/([^{@]*)")


def as_free_text(text: str) -> str:
    """What Rasa gets for a customer's typed text: never a ``/intent{entities}`` command.

    A text starting with ``/`` gets :data:`FREE_TEXT_GUARD` in front: it no longer starts
    with the prefix, the NLU reads it like any other text, and the customer and agents see
    it as typed (the stores keep the original text).

    Args:
        text: The customer's text as stored.

    Returns:
        The text to hand to Rasa.
    """
    stripped = text.strip()
    if stripped.startswith(INTENT_PREFIX):
        return FREE_TEXT_GUARD + stripped
    return text


def payload_intent(payload: str) -> str:
    """The intent name of a ``/intent@conf{entities}`` payload ("" if it is not one)."""
    match = _PAYLOAD_INTENT_RE.match(payload)
    return match.group(1).strip() if match else ""


def payload_allowed(payload: str, offered: Collection[str]) -> bool:
    """Whether a quick-reply payload may reach Rasa: offered by the bot, and no command."""
    return payload_intent(payload) not in RESERVED_INTENTS and payload in offered
