"""What every module of the widget channel shares: limits, close codes, the client error.

The widget channel (:mod:`bot.channels.widget`) is split into modules of one job each; this
one is at the bottom of them: :class:`WidgetConfig` (the channel's limits and keys),
:data:`CLOSE_CODES`, :class:`ClientError` (a refused frame or request, as an ``error``
frame or a JSON error), the raw-socket helpers used before a connection is registered,
and :class:`WidgetChannel`, what the channel's helpers (the output channel, the agent
bridge) use of it. It imports no other widget module.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, Optional, Protocol, Tuple

from rasa.core.channels.channel import UserMessage
from sanic import response
from sanic.response import HTTPResponse

from bot.channels.hub import SLOW_CONSUMER_CLOSE, Hub
from bot.support.chat import ChatStore

__all__ = ["CLOSE_CODES", "ClientError", "FRAMES_TOPIC", "OnNewMessage", "WidgetChannel",
           "WidgetConfig", "push_everywhere",
           "close_socket", "is_closed_error", "optional_int", "send_raw"]

HISTORY_PAGE = 50
REPLAY_LIMIT = 500
MAX_CLIENT_ID = 64
MAX_PAYLOAD_CHARS = 500
FAQ_RATE_PER_MINUTE = 120
NOT_STORED_RETRY = 2.0
"""``retry_after`` of a ``not_stored`` error (the database refused the write)."""
CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")

CLOSE_CODES: Dict[str, int] = {
    "invalid_token": 4001,
    "missing_token": 4001,
    "auth_timeout": 4001,
    "hello_required": 4001,
    "token_expired": 4002,
    "origin_not_allowed": 4003,
    "too_many_connections": 4008,
    "too_many_pending": 4029,
    "rate_limited": 1008,
    "frame_too_large": 1009,
    "slow_consumer": SLOW_CONSUMER_CLOSE,
    "server_going_away": 1001,
}

OnNewMessage = Callable[[UserMessage], Awaitable[Any]]


FRAMES_TOPIC = "widget.frames"
"""Bus topic: ``frames`` already stored, for whichever process holds the customer's sockets."""


async def push_everywhere(hub: Hub, conversation_id: str, *frames: Dict[str, Any]) -> None:
    """Frames to this process's sockets of the conversation now, and over the live bus to
    the other processes' (``FRAMES_TOPIC``, pushed there by the agent bridge).

    Behind a load balancer the process that runs a turn (or answers for a person) is not
    always the one holding the customer's socket: a turn another process's sweep picked up,
    a customer on two devices. With the in-process bus nothing leaves the process.
    """
    from bot.live import bus

    for frame in frames:
        await hub.push(conversation_id, frame)
    await bus().publish(FRAMES_TOPIC, {"conversation_id": conversation_id,
                                       "frames": list(frames)})


class WidgetChannel(Protocol):
    """What the output channel and the agent bridge use of the widget channel."""

    hub: Hub

    async def chat(self) -> ChatStore:
        """The chat store (opened on first use)."""

    async def resume_bot(self, conversation_id: str) -> None:
        """Un-pause Rasa for a conversation a person has finished."""


@dataclass(frozen=True)
class WidgetConfig:
    """The channel's limits and keys (from the settings)."""

    allowed_origins: Tuple[str, ...]
    max_message_chars: int
    max_frame_bytes: int
    rate_messages: int
    rate_window: float
    max_connections: int
    typing_interval: float
    auth_timeout: float
    token_warning: float
    preauth_per_ip: int = 10
    frame_rate: float = 5.0
    frame_burst: int = 30
    max_keys: int = 10000
    drain_seconds: float = 20.0
    turn_lease: float = 30.0
    turn_attempts: int = 3
    turn_backoff: float = 2.0
    turn_concurrency: int = 8
    send_queue: int = 256
    send_timeout: float = 10.0
    attachment_max_bytes: int = 10 * 1024 * 1024  # ATTACHMENT_MAX_BYTES (bot/attachments)

    def limits(self) -> Dict[str, Any]:
        """The limits a client is told about."""
        return {
            "max_message_chars": self.max_message_chars,
            "max_frame_bytes": self.max_frame_bytes,
            "rate_messages": self.rate_messages,
            "rate_window": self.rate_window,
            "typing_interval": self.typing_interval,
            "max_connections": self.max_connections,
            "frame_rate": self.frame_rate,
            "frame_burst": self.frame_burst,
            "auth_timeout": self.auth_timeout,
            "attachment_max_bytes": self.attachment_max_bytes,
        }


class ClientError(Exception):
    """A frame or request the channel refuses (an ``error`` frame / JSON error)."""

    def __init__(
        self,
        code: str,
        message: str,
        status: int = 400,
        client_id: Optional[str] = None,
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.client_id = client_id
        self.retry_after = retry_after

    def frame(self) -> Dict[str, Any]:
        frame: Dict[str, Any] = {"type": "error", "code": self.code, "message": str(self)}
        if self.client_id is not None:
            frame["client_id"] = self.client_id
        if self.retry_after is not None:
            frame["retry_after"] = round(self.retry_after, 1)
        return frame

    def response(self) -> HTTPResponse:
        body: Dict[str, Any] = {"error": {"code": self.code, "message": str(self)}}
        if self.retry_after is not None:
            body["error"]["retry_after"] = round(self.retry_after, 1)
        return response.json(body, status=self.status)


def optional_int(value: Any, name: str) -> Optional[int]:
    """A query argument as an int (None when missing); ``bad_request`` otherwise."""
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ClientError("bad_request", f"{name} must be an integer.") from None


async def send_raw(ws: Any, frame: Dict[str, Any]) -> None:
    """Send a frame on a socket not registered on the hub (before ``hello`` is done)."""
    try:
        await ws.send(json.dumps(frame))
    except Exception:  # noqa: BLE001 - the client is gone
        pass


async def close_socket(ws: Any, reason: str) -> None:
    """Close a socket with the close code of ``reason`` (:data:`CLOSE_CODES`)."""
    try:
        await ws.close(code=CLOSE_CODES[reason], reason=reason)
    except Exception:  # noqa: BLE001 - the client is gone
        pass


def is_closed_error(error: BaseException) -> bool:
    """Whether ``error`` only says the client went away."""
    name = type(error).__name__
    return name.startswith("ConnectionClosed") or name in ("WebsocketClosed",)
