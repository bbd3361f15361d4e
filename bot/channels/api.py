"""The server-to-server channel: Rasa's REST shape, behind a bearer token.

Rasa's own REST channel believes whatever ``sender`` and ``metadata`` a caller
sends, so anybody who can reach it can speak as any customer in any
conversation. This channel is for callers the operator trusts — scripts, tests,
``make shell``, a shop backend relaying its own customers — and authenticates
them first (docs/security.md):

* ``POST /webhooks/api/webhook`` with ``Authorization: Bearer <SUPPORT_API_TOKEN>``
  (compared in constant time); without the token configured the channel answers
  503, with a missing or wrong one 401, and nothing reaches the bot.
* Body ``{"sender": "...", "message": "...", "metadata": {...}}``, like Rasa's REST
  channel; the answer is the list of the bot's messages.
* ``sender`` is 1-64 characters of ``A-Za-z0-9._-``: no ``:``, so the conversations
  of other channels (``widget:<user>``, Twilio's) can never be addressed here.
* ``metadata`` may carry ``customer`` (the caller vouches for that customer: the bot
  then acts for them) and ``context`` (app context); nothing else is passed on.
* ``message`` is always text, as in the widget: a leading ``/`` is never read as a
  Rasa command. A quick reply goes in ``payload`` (``"/affirm"``) and is accepted only
  when the bot offered it in its last turn of that conversation (from the tracker);
  restart/session commands never are.
"""
from __future__ import annotations

import hmac
import json
import logging
import re
from typing import Any, Awaitable, Callable, Dict, Optional, Set, Text

from rasa.core.channels.channel import CollectingOutputChannel, InputChannel, UserMessage
from rasa.shared.core.events import BotUttered, UserUttered
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.channels.text import INTENT_PREFIX, as_free_text, payload_allowed

__all__ = ["ApiInput", "MAX_BODY_BYTES", "MAX_MESSAGE_CHARS"]

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_MESSAGE_CHARS = 5000
_SENDER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_CUSTOMER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}$")
_CUSTOMER_FIELDS = {"id": 128, "name": 200, "email": 320, "phone": 32, "timezone": 64,
                    "locale": 35}
_CONTEXT_FIELDS = 20
MAX_PAYLOAD_CHARS = 500


class _BadRequest(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _error(status: int, code: str, message: str) -> HTTPResponse:
    return response.json({"error": code, "message": message}, status=status)


def _clean_metadata(raw: Any) -> Dict[str, Any]:
    """The ``customer`` and ``context`` objects of the caller's metadata, validated."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _BadRequest(400, "bad_request", "metadata must be an object.")
    metadata: Dict[str, Any] = {}
    customer = raw.get("customer")
    if customer is not None:
        if not isinstance(customer, dict):
            raise _BadRequest(400, "bad_request", "metadata.customer must be an object.")
        customer_id = customer.get("id")
        if not isinstance(customer_id, str) or not _CUSTOMER_ID_RE.match(customer_id):
            raise _BadRequest(
                400, "bad_request",
                "metadata.customer.id must be 1-128 characters: letters, digits and _.@+-.")
        metadata["customer"] = {
            key: str(customer[key]).strip()[:limit]
            for key, limit in _CUSTOMER_FIELDS.items()
            if isinstance(customer.get(key), (str, int)) and str(customer[key]).strip()
        }
    context = raw.get("context")
    if context is not None:
        if not isinstance(context, dict):
            raise _BadRequest(400, "bad_request", "metadata.context must be an object.")
        metadata["context"] = {
            str(key)[:64]: value[:200] if isinstance(value, str) else value
            for key, value in list(context.items())[:_CONTEXT_FIELDS]
            if isinstance(value, (str, int, float, bool))
        }
    return metadata


class ApiInput(InputChannel):
    """Authenticated server-to-server channel (see the module docstring).

    Args:
        token: The bearer token callers must send; None: the channel is inert (503).
    """

    def __init__(self, token: Optional[str]) -> None:
        self._token = token.encode() if token else None

    @classmethod
    def name(cls) -> Text:
        return "api"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> "ApiInput":
        """Build the channel; the token comes from ``SUPPORT_API_TOKEN`` (bot/settings.py)."""
        from bot.settings import get_settings

        return cls(get_settings().api_token)

    def get_metadata(self, request: Request) -> Optional[Dict[Text, Any]]:
        """The validated ``customer``/``context`` of a request (None when it is malformed)."""
        try:
            return self._parse(request)["metadata"]
        except _BadRequest:
            return None

    def _authenticated(self, request: Request) -> bool:
        header = request.headers.get("authorization") or ""
        scheme, _, credential = header.partition(" ")
        if self._token is None or scheme.lower() != "bearer" or not credential.strip():
            return False
        return hmac.compare_digest(credential.strip().encode(), self._token)

    def _parse(self, request: Request) -> Dict[str, Any]:
        if len(request.body or b"") > MAX_BODY_BYTES:
            raise _BadRequest(413, "too_large", f"The body is larger than {MAX_BODY_BYTES} bytes.")
        try:
            body = json.loads(request.body or b"")
        except (ValueError, UnicodeDecodeError):
            raise _BadRequest(400, "bad_request", "The body must be a JSON object.") from None
        if not isinstance(body, dict):
            raise _BadRequest(400, "bad_request", "The body must be a JSON object.")
        sender = body.get("sender")
        if not isinstance(sender, str) or not _SENDER_RE.match(sender):
            raise _BadRequest(
                400, "bad_request",
                "sender must be 1-64 characters of A-Za-z0-9._- (no ':'; the conversations "
                "of other channels cannot be addressed here).")
        text = body.get("message")
        if not isinstance(text, str) or not text.strip():
            raise _BadRequest(400, "bad_request", "message must be a non-empty string.")
        if len(text) > MAX_MESSAGE_CHARS:
            raise _BadRequest(
                413, "too_large", f"message can have at most {MAX_MESSAGE_CHARS} characters.")
        payload = body.get("payload")
        if payload is not None and (
            not isinstance(payload, str) or not payload.startswith(INTENT_PREFIX)
            or len(payload) > MAX_PAYLOAD_CHARS
        ):
            raise _BadRequest(400, "bad_request", "payload must be a quick reply's /intent.")
        return {"sender": sender, "text": text.strip(), "payload": payload,
                "metadata": _clean_metadata(body.get("metadata"))}

    @staticmethod
    async def _offered(request: Request, sender: str) -> Set[str]:
        """The quick-reply payloads of the bot's last turn in ``sender``'s conversation."""
        agent = getattr(request.app.ctx, "agent", None)
        store = getattr(agent, "tracker_store", None)
        tracker = await store.retrieve(sender) if store is not None else None
        offered: Set[str] = set()
        for event in reversed(tracker.events if tracker is not None else []):
            if isinstance(event, UserUttered):
                break
            if isinstance(event, BotUttered):
                for button in (event.data or {}).get("buttons") or []:
                    if isinstance(button, dict) and isinstance(button.get("payload"), str):
                        offered.add(button["payload"])
        return offered

    async def _text_for_rasa(self, request: Request, parsed: Dict[str, Any]) -> str:
        payload = parsed["payload"]
        if payload is None:
            return as_free_text(parsed["text"])
        if not payload_allowed(payload, await self._offered(request, parsed["sender"])):
            raise _BadRequest(
                400, "payload_not_offered",
                "That quick reply was not offered in the bot's last message; send the text "
                "instead.")
        return payload

    def blueprint(
        self, on_new_message: Callable[[UserMessage], Awaitable[Any]]
    ) -> Blueprint:
        """``GET /webhooks/api/`` (health) and ``POST /webhooks/api/webhook``."""
        bp = Blueprint("api_webhook", __name__)

        @bp.route("/", methods=["GET"])
        async def health(_request: Request) -> HTTPResponse:
            return response.json({"status": "ok" if self._token else "not_configured"})

        @bp.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            if self._token is None:
                return _error(503, "not_configured",
                              "The API channel has no token: set SUPPORT_API_TOKEN.")
            if not self._authenticated(request):
                logger.info("API channel: refused a request without a valid token from %s",
                            request.ip)
                return _error(401, "unauthorized", "A valid bearer token is required.")
            try:
                parsed = self._parse(request)
                text = await self._text_for_rasa(request, parsed)
            except _BadRequest as error:
                return _error(error.status, error.code, str(error))
            collector = CollectingOutputChannel()
            try:
                await on_new_message(
                    UserMessage(
                        text,
                        collector,
                        parsed["sender"],
                        input_channel=self.name(),
                        metadata={**parsed["metadata"], "channel": self.name()},
                    )
                )
            except Exception:  # noqa: BLE001 - the caller gets what the bot said so far
                logger.exception("API channel: the bot failed on a message of %s",
                                 parsed["sender"])
            return response.json(collector.messages)

        return bp
