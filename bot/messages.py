"""The assistant's texts from ``data/messages.yml`` (edited by conversation designers).

English is the source; ``data/messages.de.yml`` and ``data/messages.fr.yml`` translate it
key by key (docs/designers.md, "Languages").
"""
from __future__ import annotations

import functools
import logging
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple, TypedDict

import yaml

from bot.i18n import DEFAULT_LOCALE, current_locale, normalise_locale

logger = logging.getLogger(__name__)


class Button(TypedDict):
    """A quick reply."""

    title: str
    payload: str


class MessageError(ValueError):
    """``messages.yml`` is malformed, or a message was rendered with missing values."""


@dataclass(frozen=True)
class Message:
    """One entry: a text template and fixed quick replies."""

    key: str
    text: str
    buttons: Tuple[Button, ...] = ()

    @property
    def placeholders(self) -> frozenset:
        """Names in ``{braces}`` that rendering fills in."""
        return frozenset(
            name for _, name, _, _ in string.Formatter().parse(self.text) if name
        )

    def render(self, **values: Any) -> str:
        """The text with its placeholders filled.

        Raises:
            MessageError: a placeholder has no value.
        """
        missing = self.placeholders - set(values)
        if missing:
            raise MessageError(f"message {self.key!r} needs {sorted(missing)}")
        return self.text.format(**values)


class Messages:
    """All messages by key."""

    def __init__(self, entries: Mapping[str, Message]) -> None:
        self.entries = dict(entries)

    @classmethod
    def load(cls, path: Path) -> "Messages":
        """Load and validate a messages file.

        Raises:
            MessageError: the file is unreadable or an entry is malformed.
        """
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as error:
            raise MessageError(f"{path}: cannot read messages: {error}") from error
        if not isinstance(raw, dict) or not isinstance(raw.get("messages"), dict):
            raise MessageError(f"{path}: expected a mapping with a 'messages' section")
        entries: Dict[str, Message] = {}
        for key, value in raw["messages"].items():
            entries[key] = cls._parse(path, key, value)
        return cls(entries)

    @staticmethod
    def _parse(path: Path, key: str, value: Any) -> Message:
        where = f"{path}: messages.{key}"
        if isinstance(value, str):
            text, buttons = value, []
        elif isinstance(value, dict) and isinstance(value.get("text"), str):
            text, buttons = value["text"], value.get("buttons") or []
        else:
            raise MessageError(f"{where}: expected a text or a mapping with 'text'")
        parsed: List[Button] = []
        for button in buttons:
            if not (isinstance(button, dict) and isinstance(button.get("title"), str)
                    and isinstance(button.get("payload"), str)):
                raise MessageError(f"{where}: each button needs a 'title' and a 'payload'")
            parsed.append({"title": button["title"], "payload": button["payload"]})
        message = Message(key=key, text=text.strip("\n"), buttons=tuple(parsed))
        try:
            message.placeholders
        except ValueError as error:
            raise MessageError(f"{where}: bad placeholder: {error}") from error
        return message

    def get(self, key: str) -> Message:
        """The message called ``key``.

        Raises:
            MessageError: there is no such message.
        """
        try:
            return self.entries[key]
        except KeyError:
            raise MessageError(f"no message {key!r} in messages.yml") from None

    def text(self, key: str, **values: Any) -> str:
        """The rendered text of ``key``."""
        return self.get(key).render(**values)


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, mtime: float) -> Messages:
    return Messages.load(Path(path))


def locale_path(path: Path, locale: str) -> Path:
    """The translation of a messages file: ``messages.yml`` → ``messages.de.yml``."""
    return path.with_name(f"{path.stem}.{locale}{path.suffix}")


#: (file, key) pairs already logged as missing, so each is logged once per process.
_missing_logged: Set[Tuple[str, str]] = set()


@functools.lru_cache(maxsize=8)
def _load_localised(path: str, mtime: float, translated: str, translated_mtime: float) -> Messages:
    english = _load_cached(path, mtime)
    own = Messages.load(Path(translated))
    entries = dict(english.entries)
    for key, message in own.entries.items():
        if key not in english.entries:
            logger.warning("%s: messages.%s is not in %s (ignored)", translated, key,
                           Path(path).name)
            continue
        entries[key] = message
    for key in english.entries.keys() - own.entries.keys():
        if (translated, key) not in _missing_logged:
            _missing_logged.add((translated, key))
            logger.warning("%s: no messages.%s, the English text is used", translated, key)
    return Messages(entries)


def load_messages(path: Optional[Path] = None, locale: Optional[str] = None) -> Messages:
    """The messages from settings in ``locale`` (reloaded when a file changes).

    Args:
        path: The English source (``data/messages.yml`` by default).
        locale: A locale (normalised: ``de-DE`` is ``de``); None is the language of the
            current turn (:func:`bot.i18n.current_locale`). A language is its file next to
            the source (``messages.de.yml``); a key it lacks, or a missing or broken file,
            falls back to English (logged).
    """
    from bot.settings import get_settings

    target = Path(path) if path else get_settings().data_dir / "messages.yml"
    english = _load_cached(str(target), target.stat().st_mtime)
    language = current_locale() if locale is None else normalise_locale(locale)
    if language == DEFAULT_LOCALE:
        return english
    translated = locale_path(target, language)
    try:
        stamp = translated.stat().st_mtime
        return _load_localised(str(target), target.stat().st_mtime, str(translated), stamp)
    except (OSError, MessageError) as error:
        if (str(translated), "") not in _missing_logged:
            _missing_logged.add((str(translated), ""))
            logger.warning("%s: cannot use the translation, English is used: %s",
                           translated, error)
        return english


def notice(key: str, locale: Optional[str] = None, **values: Any) -> str:
    """A notice text from ``data/messages.yml`` (designers edit it; reloaded on change).

    Shared by the widget channel, its agent bridge and the Twilio Voice call-backs, which
    is why it lives here and not in any of them. ``locale`` is the customer's language
    (None: the current turn's, :func:`bot.i18n.current_locale`).
    """
    return load_messages(locale=locale).text(key, **values)
