"""The assistant's texts from ``data/messages.yml`` (edited by conversation designers)."""
from __future__ import annotations

import functools
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, TypedDict

import yaml


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


def load_messages(path: Optional[Path] = None) -> Messages:
    """The messages from settings (reloaded when the file changes)."""
    from bot.settings import get_settings

    target = Path(path) if path else get_settings().data_dir / "messages.yml"
    return _load_cached(str(target), target.stat().st_mtime)


def notice(key: str, **values: Any) -> str:
    """A notice text from ``data/messages.yml`` (designers edit it; reloaded on change).

    Shared by the widget channel, its agent bridge and the Twilio Voice call-backs, which
    is why it lives here and not in any of them.
    """
    return load_messages().text(key, **values)
