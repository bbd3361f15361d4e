"""The console API's JSON: refused requests, request bodies, and tickets as JSON.

:class:`ApiError` is a refused request (``{"error": {"code", "message"}}`` with its HTTP
status); :func:`read_body`, :func:`int_field` and :func:`str_field` read a request's JSON
body; :func:`ticket_json` and :func:`inbox_json` are what the API and the live frames
show of tickets; :func:`iso` writes times (UTC, milliseconds, ``Z``).
"""
from __future__ import annotations

import json
import math
from datetime import date, datetime, timezone
from typing import Any, Dict, Optional

from sanic import response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.support.agents import InboxItem
from bot.support.ops import TicketView

__all__ = ["ApiError", "MAX_BODY_BYTES", "bearer", "inbox_json", "int_field", "iso",
           "json_default", "json_response", "read_body", "str_field", "ticket_json"]

MAX_BODY_BYTES = 64 * 1024


class ApiError(Exception):
    """A refused request: JSON ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str,
                 retry_after: Optional[float] = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after = retry_after

    def response(self) -> HTTPResponse:
        headers = {"Cache-Control": "no-store"}
        body: Dict[str, Any] = {"code": self.code, "message": str(self)}
        if self.retry_after is not None:
            seconds = max(1, math.ceil(self.retry_after))
            headers["Retry-After"] = str(seconds)
            body["retry_after"] = seconds
        return response.json({"error": body}, status=self.status, headers=headers)


def json_default(value: Any) -> Any:
    """``json.dumps`` ``default``: datetimes and dates as ISO text, sets and tuples as lists."""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def iso(value: Optional[datetime]) -> Optional[str]:
    """A time as ISO 8601 UTC with milliseconds and ``Z`` (naive = UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def json_response(body: Any, status: int = 200) -> HTTPResponse:
    """A JSON answer that is never cached."""
    return response.json(body, status=status, dumps=lambda o: json.dumps(o, default=json_default),
                         headers={"Cache-Control": "no-store"})


def ticket_json(ticket: TicketView) -> Dict[str, Any]:
    """A ticket for the API (without the bulky ``details``)."""
    return {
        "id": ticket.id, "reference": ticket.reference,
        "conversation_id": ticket.conversation_id, "customer_id": ticket.customer_id,
        "contact_email": ticket.contact_email, "summary": ticket.summary,
        "category": ticket.category, "priority": ticket.priority, "status": ticket.status,
        "source": ticket.source, "assignee_id": ticket.assignee_id,
        "created_at": iso(ticket.created_at), "updated_at": iso(ticket.updated_at),
        "queued_at": iso(ticket.queued_at), "first_response_at": iso(ticket.first_response_at),
        "resolved_at": iso(ticket.resolved_at),
    }


def inbox_json(item: InboxItem) -> Dict[str, Any]:
    """One inbox line for the API."""
    return {
        "ticket": ticket_json(item.ticket), "conversation_id": item.conversation_id,
        "customer_id": item.customer_id, "customer_name": item.customer_name,
        "state": item.state, "assignee": item.assignee.to_json() if item.assignee else None,
        "waiting_since": iso(item.waiting_since), "last_message": item.last_message,
        "last_message_at": iso(item.last_message_at), "unread": item.unread,
    }


def bearer(request: Request) -> Optional[str]:
    """The ``Authorization: Bearer`` token of a request (None: none)."""
    header = request.headers.get("authorization") or ""
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return None


def read_body(request: Request) -> Dict[str, Any]:
    """The request's JSON object body (``{}`` when empty); ``ApiError`` 400/413 otherwise."""
    if len(request.body or b"") > MAX_BODY_BYTES:
        raise ApiError(413, "too_large", "The request body is too large.")
    if not request.body:
        return {}
    try:
        body = json.loads(request.body)
    except (TypeError, ValueError):
        raise ApiError(400, "bad_request", "The body must be a JSON object.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "The body must be a JSON object.")
    return body


def int_field(body: Dict[str, Any], name: str, *, required: bool = True) -> Optional[int]:
    """An integer field of a body (digits in a string too); ``ApiError`` 400 otherwise."""
    value = body.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().isdigit():
            return int(value.strip())
        raise ApiError(400, "bad_request", f"{name} must be an integer.")
    return value


def str_field(body: Dict[str, Any], name: str, *, required: bool = True,
              max_chars: int = 4000) -> Optional[str]:
    """A text field of a body, at most ``max_chars``; ``ApiError`` 400 otherwise."""
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise ApiError(400, "bad_request", f"{name} must be a non-empty string.")
    if len(value) > max_chars:
        raise ApiError(400, "bad_request", f"{name} must have at most {max_chars} characters.")
    return value

