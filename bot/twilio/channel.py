"""The Twilio Conversations input channel: signed webhooks in, the bridge's lifecycle.

Registered in ``credentials.yml`` as ``bot.twilio.channel.TwilioConversationsInput``;
routes under ``/webhooks/twilio_conversations/``:

* ``POST /events``: conversation-scoped webhooks. ``X-Twilio-Signature`` is checked
  against ``TWILIO_PUBLIC_URL`` + the request path (403 otherwise); duplicates (same
  ``I-Twilio-Idempotency-Token`` or message SID) are acknowledged and ignored; the others
  are stored in the inbox (``twilio_inbox``, :mod:`bot.twilio.inbox`) before the 200 (a
  database failure answers 500), then processed from there with retries, so Twilio gets
  its 200 well inside its 5 s limit and a 200 means "stored".
* ``POST /voice/status``: call status callbacks of call-backs placed with Twilio Voice
  (same signature check; deduplicated per ``CallSid`` + ``CallStatus``; stored in the same
  inbox), see :mod:`bot.twilio.voice`.
* ``POST /taskrouter``: TaskRouter event callbacks of the Flex workspace
  (``TWILIO_FLEX_MODE=interactions``; same signature check against ``TWILIO_PUBLIC_URL`` +
  path; deduplicated per event SID; stored in the inbox before the 200), see
  :mod:`bot.twilio.flex`. 404 ``flex_off`` in plain Conversations mode.
* ``GET /health``: ``{"configured", "reachable", "dead_letters"}``.

Without ``TWILIO_ACCOUNT_SID``/``TWILIO_AUTH_TOKEN`` the channel is inert: every route
answers 503 ``not_configured`` and nothing runs in the background.

When configured, the channel (in the Rasa server process) reads the change feed
(:func:`bot.live.change_feed`) for ``handoff.recorded`` rows and claims each one durably
(handoffs happen in the action server) and subscribes to the
live bus (``customer.message``, ``conversation.ended``), see :mod:`bot.twilio.bridge`.
With ``TWILIO_VOICE_FROM`` and ``SUPPORT_LINE_NUMBER`` also set, it runs the call-back
scheduler (:class:`bot.twilio.voice.VoiceService`).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Dict, List, Optional, Text
from urllib.parse import parse_qsl

from rasa.core.channels.channel import InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse
from twilio.request_validator import RequestValidator

from bot.twilio.bridge import CHANNEL_NAME, TwilioBridge, TwilioConfig
from bot.twilio.voice import VoiceConfig, VoiceService

__all__ = ["TwilioConversationsInput", "signature_valid"]

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024


def signature_valid(auth_token: str, public_url: str, path: str, query: str,
                    params: Any, signature: Optional[str]) -> bool:
    """Whether ``signature`` is Twilio's HMAC-SHA1 over the public URL and the POST params.

    Args:
        auth_token: The account's auth token.
        public_url: ``TWILIO_PUBLIC_URL`` (scheme, host and optional path prefix).
        path: The request path (``/webhooks/twilio_conversations/events``).
        query: The raw query string ('' when none).
        params: The form parameters (a dict, or a multi-dict with ``getlist``).
        signature: The ``X-Twilio-Signature`` header.
    """
    if not signature or not auth_token:
        return False
    url = public_url.rstrip("/") + path + (f"?{query}" if query else "")
    return bool(RequestValidator(auth_token).validate(url, params, signature))


class FormParams(dict):
    """Form fields as name → list of values, blank values KEPT (Twilio signs them too;
    Sanic's ``request.form`` drops them). ``getlist`` is what twilio's validator reads."""

    @classmethod
    def parse(cls, body: bytes) -> "FormParams":
        """Parse an ``application/x-www-form-urlencoded`` body.

        Raises:
            ValueError: Not UTF-8 or not form-encoded.
        """
        params = cls()
        for key, value in parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                                    strict_parsing=bool(body)):
            params.setdefault(key, []).append(value)
        return params

    def getlist(self, key: str) -> List[str]:
        return list(self.get(key, []))

    def first(self) -> Dict[str, str]:
        """The first value of every field."""
        return {key: values[0] for key, values in self.items() if values}


def _error(status: int, code: str, message: str) -> HTTPResponse:
    return response.json({"error": {"code": code, "message": message}}, status=status,
                         headers={"Cache-Control": "no-store"})


class TwilioConversationsInput(InputChannel):
    """Twilio Conversations webhooks and the handoff bridge, as a Rasa input channel.

    Args:
        config: The bridge's settings (inert unless ``config.configured``).
    """

    def __init__(self, config: TwilioConfig, voice: Optional[VoiceConfig] = None) -> None:
        self.config = config
        self.voice_config = voice
        self.voice: Optional[VoiceService] = None
        self.bridge: Optional[TwilioBridge] = None
        self._lock: Optional[asyncio.Lock] = None
        self._subscribed = False

    @classmethod
    def name(cls) -> Text:
        return CHANNEL_NAME

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> "TwilioConversationsInput":
        """Build from the settings (``TWILIO_*``); ``credentials.yml`` may override
        ``public_url``.

        Raises:
            ValueError: ``credentials`` is not a mapping or has unknown keys.
        """
        config = TwilioConfig.from_settings()
        if credentials:
            if not isinstance(credentials, dict):
                raise ValueError("twilio_conversations credentials must be a mapping.")
            unknown = set(credentials) - {"public_url"}
            if unknown:
                raise ValueError(f"Unknown twilio_conversations keys: {sorted(unknown)}; "
                                 "credentials come from TWILIO_* environment variables.")
            if credentials.get("public_url"):
                from dataclasses import replace

                config = replace(config, public_url=str(credentials["public_url"]).rstrip("/"))
        return cls(config, VoiceConfig.from_settings(config.public_url, config.policy))

    async def ensure_bridge(self) -> TwilioBridge:
        """The bridge, made (store opened and migrated, bus subscribed) on first use."""
        if self.bridge is not None:
            return self.bridge
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.bridge is None:
                from bot.live import ORIGIN, bus
                from bot.twilio.store import TwilioStore

                store = TwilioStore.from_url(self.config.support_db_url)
                await store.create_schema()
                bridge = TwilioBridge(self.config, store, publish=bus().publish)
                # ORIGIN: forwarded to Twilio by the process the customer wrote to, once
                bus().subscribe("customer.message", bridge.on_customer_message, scope=ORIGIN)
                bus().subscribe("conversation.ended", bridge.on_conversation_ended,
                                scope=ORIGIN)
                self._subscribed = True
                self.bridge = bridge
        assert self.bridge is not None
        return self.bridge

    async def ensure_voice(self) -> Optional[VoiceService]:
        """The call-back service (made on first use; None unless Voice is configured)."""
        if self.voice is None and self.config.configured and self.voice_config is not None \
                and self.voice_config.enabled:
            from bot.live import bus
            from bot.twilio.voice_store import VoiceStore

            bridge = await self.ensure_bridge()
            if self.voice is None:
                self.voice = VoiceService(self.voice_config, VoiceStore(bridge.store.engine),
                                          bridge.api, publish=bus().publish,
                                          claim_keys=bridge.store.do_claim_keys,
                                          inbox=bridge.inbox)
        return self.voice

    async def close(self) -> None:
        """Stop the inbox (the current row may finish), unsubscribe, stop background work,
        dispose the store (server shutdown)."""
        if self.bridge is not None:
            await self.bridge.inbox.stop()
        voice, self.voice = self.voice, None
        if voice is not None:
            await voice.close()
        bridge, self.bridge = self.bridge, None
        if bridge is None:
            return
        if self._subscribed:
            from bot.live import bus

            bus().unsubscribe("customer.message", bridge.on_customer_message)
            bus().unsubscribe("conversation.ended", bridge.on_conversation_ended)
            self._subscribed = False
        await bridge.close()
        await bridge.store.dispose()

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        """The Sanic blueprint (webhook and health routes; tail started with the server)."""
        bp = Blueprint("twilio_conversations_webhook", __name__)

        @bp.listener("after_server_start")
        async def _start(_app: Any, _loop: Any) -> None:
            if not self.config.configured:
                logger.info("Twilio Conversations not configured: handoffs stay in the "
                            "agent console.")
                return
            try:
                bridge = await self.ensure_bridge()
            except Exception:  # noqa: BLE001 - the bot still serves customers
                logger.exception("Could not start the Twilio Conversations bridge")
                return
            try:
                voice = await self.ensure_voice()  # before the inbox runs: its handler
            except Exception:  # noqa: BLE001 - the bot still serves customers
                logger.exception("Could not start the call-back scheduler")
                voice = None
            bridge.start()  # the inbox processor (pending rows of before) and the tail
            logger.info("Twilio Conversations bridge started; webhooks at %s",
                        self.config.webhook_url)
            if self.config.flex.enabled:
                logger.info("Flex mode: handoffs become Flex Interactions in workspace %s "
                            "(workflow %s); TaskRouter Event Callback URL %s",
                            self.config.flex.workspace_sid, self.config.flex.workflow_sid,
                            self.config.taskrouter_url)
            try:
                if voice is None:
                    logger.info("Twilio Voice call-backs not configured (TWILIO_VOICE_FROM, "
                                "SUPPORT_LINE_NUMBER): call-backs are not placed.")
                else:
                    voice.start()
                    logger.info("Twilio Voice call-backs on; status callbacks at %s",
                                voice.config.status_url)
            except Exception:  # noqa: BLE001 - the bot still serves customers
                logger.exception("Could not start the call-back scheduler")

        @bp.listener("before_server_stop")
        async def _stop(_app: Any, _loop: Any) -> None:
            await self.close()

        @bp.route("/", methods=["GET"])
        async def root(_request: Request) -> HTTPResponse:
            if not self.config.configured:
                return _not_configured()
            return response.json({"channel": CHANNEL_NAME, "webhook_url": self.config.webhook_url})

        @bp.route("/health", methods=["GET"])
        async def health(_request: Request) -> HTTPResponse:
            if not self.config.configured:
                return response.json({"configured": False, "reachable": False,
                                      "dead_letters": None,
                                      "error": {"code": "not_configured",
                                                "message": _NOT_CONFIGURED}}, status=503)
            try:
                bridge = await self.ensure_bridge()
                body = await bridge.health()
            except Exception:  # noqa: BLE001 - health must answer
                logger.exception("Twilio health check failed")
                body = {"configured": True, "reachable": False, "dead_letters": None}
            status = 200 if body.get("reachable") else 503
            return response.json(body, status=status, headers={"Cache-Control": "no-store"})

        @bp.route("/events", methods=["POST"])
        async def events(request: Request) -> HTTPResponse:
            return await self._events(request)

        @bp.route("/taskrouter", methods=["POST"])
        async def taskrouter(request: Request) -> HTTPResponse:
            return await self._taskrouter(request)

        @bp.route("/voice/status", methods=["POST"])
        async def voice_status(request: Request) -> HTTPResponse:
            return await self._voice_status(request)

        return bp

    async def _signed(self, request: Request) -> Any:
        """The request's form parameters if it is a validly signed Twilio webhook, else the
        error response (503 not configured, 413, 400, 403)."""
        if not self.config.configured:
            return _not_configured()
        if len(request.body or b"") > MAX_BODY_BYTES:
            return _error(413, "too_large", "The webhook body is too large.")
        try:
            params = FormParams.parse(request.body or b"")
        except ValueError:
            return _error(400, "bad_request", "The webhook body must be form-encoded UTF-8.")
        signature = request.headers.get("X-Twilio-Signature")
        if not signature_valid(self.config.auth_token or "", self.config.public_url,
                               request.path, request.query_string or "", params, signature):
            logger.warning("Rejected a Twilio webhook with a bad signature from %s",
                           request.remote_addr or request.ip)
            return _error(403, "invalid_signature",
                          "X-Twilio-Signature does not match this request.")
        return params

    async def _voice_status(self, request: Request) -> HTTPResponse:
        params = await self._signed(request)
        if isinstance(params, HTTPResponse):
            return params
        try:
            voice = await self.ensure_voice()
            if voice is None:
                return _error(503, "not_configured", "Twilio Voice call-backs are not "
                              "configured (TWILIO_VOICE_FROM, SUPPORT_LINE_NUMBER).")
            reference = request.args.get("callback")
            fresh = await voice.accept_status(params.first(), reference)
        except Exception:  # noqa: BLE001 - Twilio retries on 5xx
            logger.exception("Could not accept a call status callback")
            return _error(500, "server_error", "Try again.")
        return response.json({"ok": True, "duplicate": not fresh},
                             headers={"Cache-Control": "no-store"})

    async def _taskrouter(self, request: Request) -> HTTPResponse:
        params = await self._signed(request)
        if isinstance(params, HTTPResponse):
            return params
        if not self.config.flex.enabled:
            return _error(404, "flex_off", "TaskRouter events are only used with "
                          "TWILIO_FLEX_MODE=interactions.")
        try:
            bridge = await self.ensure_bridge()
            fresh = await bridge.accept_task_event(
                params.first(), request.headers.get("I-Twilio-Idempotency-Token"))
        except Exception:  # noqa: BLE001 - a 5xx lets Twilio retry
            logger.exception("Could not accept a TaskRouter event")
            return _error(500, "server_error", "Try again.")
        return response.json({"ok": True, "duplicate": not fresh},
                             headers={"Cache-Control": "no-store"})

    async def _events(self, request: Request) -> HTTPResponse:
        params = await self._signed(request)
        if isinstance(params, HTTPResponse):
            return params
        flat = params.first()
        try:
            bridge = await self.ensure_bridge()
            fresh = await bridge.accept_webhook(
                flat, request.headers.get("I-Twilio-Idempotency-Token"))
        except Exception:  # noqa: BLE001 - Twilio retries on 5xx
            logger.exception("Could not accept a Twilio webhook")
            return _error(500, "server_error", "Try again.")
        return response.json({"ok": True, "duplicate": not fresh},
                             headers={"Cache-Control": "no-store"})


_NOT_CONFIGURED = ("Twilio is not configured: set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN "
                   "(docs/twilio.md).")


def _not_configured() -> HTTPResponse:
    return _error(503, "not_configured", _NOT_CONFIGURED)
