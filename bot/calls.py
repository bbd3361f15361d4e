"""The chat's view of call-backs placed by phone: what the widget may ask of a call.

The widget channel (``end_call`` frames, the ``call`` frame sent on ``hello``) must not
depend on the Twilio integration, and the integration already depends on the chat. So the
piece both need lives here, below both: :class:`CallControl` is what a call service
offers the chat; :func:`register` is called by the service when it starts
(:class:`bot.twilio.voice.VoiceService`), :func:`unregister` when it stops. With no
service registered (Voice not configured), :func:`end_call` answers ``no_call`` and
:func:`current_call_frame` None. Call *state changes* travel the other way, on the live
bus (topic ``call.state``, :mod:`bot.live`), which the widget subscribes to.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Protocol

__all__ = ["CallControl", "active", "current_call_frame", "end_call", "register",
           "unregister"]


class CallControl(Protocol):
    """What a running call service offers the chat."""

    async def end_call(self, conversation_id: str,
                       reference: Optional[str] = None) -> Dict[str, Any]:
        """End the conversation's ongoing call; returns the reply frame."""

    async def current_call_frame(self, conversation_id: str) -> Optional[Dict[str, Any]]:
        """The ``call`` frame of the conversation's ongoing call-back call, if any."""


_ACTIVE: Optional[CallControl] = None


def register(service: CallControl) -> None:
    """Make ``service`` the process's call service."""
    global _ACTIVE
    _ACTIVE = service


def unregister(service: CallControl) -> None:
    """Forget ``service`` if it is the process's call service."""
    global _ACTIVE
    if _ACTIVE is service:
        _ACTIVE = None


def active() -> Optional[CallControl]:
    """The process's call service (None: none configured/started)."""
    return _ACTIVE


async def end_call(conversation_id: str, frame: Mapping[str, Any]) -> Dict[str, Any]:
    """The widget's ``end_call`` frame: the reply frame for the customer's connection."""
    service = _ACTIVE
    if service is None:
        return {"type": "error", "code": "no_call",
                "message": "There is no ongoing call-back call."}
    reference = frame.get("callback")
    return await service.end_call(conversation_id,
                                  reference if isinstance(reference, str) else None)


async def current_call_frame(conversation_id: str) -> Optional[Dict[str, Any]]:
    """The ``call`` frame of the conversation's ongoing call-back call (widget welcome)."""
    service = _ACTIVE
    if service is None:
        return None
    return await service.current_call_frame(conversation_id)
