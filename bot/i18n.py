"""The customer's language: normalising locales and the language of the current turn.

The bot speaks English (``en``), German (``de``) and French (``fr``). A locale comes from
the widget token's ``locale`` claim or the app context (``SupportWidget.init({context:
{locale}})``); the app context wins, because it is the language the app shows right now.
Anything else (``"de-DE"``, ``"fr_CA"``, ``"EN"``) is reduced to its language, and a language
the bot does not speak is English (docs/widget.md, docs/designers.md).

The action server sets the language of the action call it runs (:func:`use_locale`, from
the tracker: :func:`locale_of_tracker`), so every message an action sends through
:mod:`bot.messages` is in the customer's language without passing it around.
"""
from __future__ import annotations

import contextlib
import contextvars
import re
from typing import Any, Iterator, Mapping, Optional

__all__ = [
    "DEFAULT_LOCALE", "SUPPORTED_LOCALES", "current_locale", "locale_of_metadata",
    "locale_of_tracker", "normalise_locale", "use_locale",
]

#: The languages the bot speaks; English is the source of every text.
SUPPORTED_LOCALES = ("en", "de", "fr")
DEFAULT_LOCALE = "en"

_LANGUAGE = re.compile(r"^\s*([A-Za-z]{2,3})(?:[-_][A-Za-z0-9]{1,8})*\s*$")
_current: contextvars.ContextVar[str] = contextvars.ContextVar(
    "support_locale", default=DEFAULT_LOCALE)


def normalise_locale(value: Any) -> str:
    """The bot's language for a locale tag: ``"de-DE"`` → ``"de"``, unknown → ``"en"``.

    Args:
        value: A BCP 47 tag (``de-DE``), a POSIX one (``fr_FR``), a bare language, or
            anything else (``None``, a number, garbage), which gives the default.

    Returns:
        One of :data:`SUPPORTED_LOCALES`.
    """
    if not isinstance(value, str):
        return DEFAULT_LOCALE
    match = _LANGUAGE.match(value)
    language = match.group(1).lower() if match else ""
    return language if language in SUPPORTED_LOCALES else DEFAULT_LOCALE


def _raw_locale(metadata: Any) -> Optional[str]:
    if not isinstance(metadata, Mapping):
        return None
    for part in ("context", "customer"):
        section = metadata.get(part)
        value = section.get("locale") if isinstance(section, Mapping) else None
        if isinstance(value, str) and value.strip():
            return value
    return None


def locale_of_metadata(metadata: Any) -> Optional[str]:
    """The language a channel's message metadata names, or None when it names none.

    The app context's ``locale`` wins over the customer profile's (the token claim).
    """
    raw = _raw_locale(metadata)
    return normalise_locale(raw) if raw is not None else None


def locale_of_tracker(tracker: Any) -> str:
    """The language of a conversation: its latest message's metadata, else the slot.

    Args:
        tracker: A tracker as the action server receives it (a dict) or a rasa-sdk
            ``Tracker``.
    """
    if isinstance(tracker, Mapping):
        latest = tracker.get("latest_message") or {}
        slots = tracker.get("slots") or {}
    else:
        latest = getattr(tracker, "latest_message", None) or {}
        slots = getattr(tracker, "slots", None) or {}
    found = locale_of_metadata(latest.get("metadata") if isinstance(latest, Mapping) else None)
    if found is not None:
        return found
    return normalise_locale(slots.get("locale") if isinstance(slots, Mapping) else None)


def current_locale() -> str:
    """The language of the turn being handled (English outside of one)."""
    return _current.get()


@contextlib.contextmanager
def use_locale(locale: Any) -> Iterator[str]:
    """Speak ``locale`` (normalised) inside the block."""
    token = _current.set(normalise_locale(locale))
    try:
        yield _current.get()
    finally:
        _current.reset(token)


def set_locale(locale: Any) -> str:
    """Speak ``locale`` for the rest of the current task (the action server's request)."""
    _current.set(normalise_locale(locale))
    return _current.get()


def conversation_locale(conversation: Any) -> str:
    """The language of a stored widget conversation (``ConversationView``): its app context's
    ``locale``, else its profile's (the token claim), else English."""
    if conversation is None:
        return DEFAULT_LOCALE
    found = locale_of_metadata({"context": getattr(conversation, "context", None),
                                "customer": getattr(conversation, "profile", None)})
    return found or DEFAULT_LOCALE
