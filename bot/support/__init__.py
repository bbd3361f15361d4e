"""The support database: tickets, call-backs, handoffs and their audit log.

Use :class:`SupportStore` (``from bot.support import SupportStore``); the
tables are in :mod:`bot.support.models`, the actions in :mod:`bot.support.ops`.
"""
from bot.support.ops import (
    AuditView,
    CallbackView,
    HandoffView,
    Listener,
    NotFound,
    StateError,
    SupportStore,
    TicketView,
)

__all__ = [
    "AuditView",
    "CallbackView",
    "HandoffView",
    "Listener",
    "NotFound",
    "StateError",
    "SupportStore",
    "TicketView",
]
