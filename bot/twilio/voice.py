"""Call-backs placed with Twilio Voice: the persistent scheduler, call status webhooks and
the widget's "End call".

* **Scheduler** (:meth:`VoiceService.run_once`, every ``TWILIO_CALLBACK_POLL`` s in the
  Rasa server process, started by the Twilio channel when Twilio and both numbers are
  configured): the state is the ``callbacks`` table only, so a restart simply resumes.
  Due ``scheduled`` call-backs are claimed with a conditional UPDATE (→ ``calling``; two
  processes never call twice), then the call is placed through the retrying client (a retry
  first looks for the call an earlier try may have made before its answer was lost: a timeout
  never rings the customer twice) with TwiML that greets the customer and dials the support
  line, and a signed status
  callback to :data:`STATUS_PATH` (``?callback=<reference>``). At most
  ``TWILIO_CALLBACK_MAX_CONCURRENT`` calls are being placed or going on at once (the claim
  counts them in its transaction); the other due call-backs wait for a later run. A number
  outside ``CALLBACK_COUNTRIES`` or not answered by a person (premium rate, shared cost, ...)
  is never dialled, however it was booked: the call-back is ``failed``. A call whose status
  callbacks stop for ``TWILIO_CALLBACK_STALE`` s is looked up in Twilio (a lost webhook
  must not hold a slot for ever). A call-back found more than
  ``TWILIO_CALLBACK_MAX_LATE`` s late is ``missed`` (the customer is told). One left in
  ``calling`` without a call SID for ``TWILIO_CALLBACK_STALE`` s (the process died while
  placing it) is placed once more, unless Twilio already has a call to that number since
  the claim (its SID is adopted); after a second such failure it is ``failed``.
* **Status webhooks** (:meth:`VoiceService.accept_status`, after the channel checked the
  signature): deduplicated per ``CallSid`` + ``CallStatus`` and stored in the inbox
  (``twilio_inbox``, kind ``voice``) before they are answered, then applied by the inbox
  processor in order per call, with retries
  (:meth:`bot.twilio.voice_store.VoiceStore.do_record_call_status`). When the
  call-back's status changes, a system message is stored in the chat and the bus topic
  ``call.state`` is published; the widget channel pushes the message and a ``call`` frame.
* **End call** (:func:`end_call`, the widget's ``end_call`` frame): the ongoing call of the
  conversation is updated to ``Status=completed`` through the client.

The widget never imports this module: a started service registers itself as the
process's :class:`bot.calls.CallControl` (:func:`bot.calls.register`), which is what the
widget's ``end_call`` frame and its welcome ``call`` frame go through; state changes reach
the widget on the live bus (``call.state``).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import (TYPE_CHECKING, Any, Awaitable, Callable, Dict, List, Mapping, Optional, Set,
                    Tuple)

from bot import calls as call_control
from bot import db
from bot.i18n import conversation_locale
from bot.messages import notice
from bot.settings import Settings
from bot.twilio.tasks import BackgroundWork
from bot.twilio.client import (RetriesExhausted, RetryPolicy, TwilioApi, describe, http_status,
                               with_retries)
from bot.twilio.voice_store import CallbackCall, CallbackLimits, VoiceStore, status_for

if TYPE_CHECKING:
    from bot.twilio.inbox import InboxProcessor

__all__ = ["STATUS_PATH", "VoiceConfig", "VoiceService", "active_service", "call_frame",
           "current_call_frame", "end_call", "twiml"]

logger = logging.getLogger(__name__)

STATUS_PATH = "/webhooks/twilio_conversations/voice/status"
STATUS_EVENTS = ("initiated", "ringing", "answered", "completed")
INBOX_KIND = "voice"
"""``twilio_inbox.kind`` of call status callbacks."""

Publish = Callable[[str, Dict[str, Any]], Awaitable[Any]]

NOTICE_STATUSES = frozenset(
    {"calling", "in_progress", "completed", "no_answer", "failed", "cancelled", "missed"})


def call_notice(status: str, phone: str, reference: str, locale: Optional[str] = None) -> str:
    """What the customer reads in the chat when the call-back's status changes
    (``data/messages.yml``, ``callback_call_*``, in ``locale``; empty for statuses without a
    notice)."""
    if status not in NOTICE_STATUSES:
        return ""
    return notice(f"callback_call_{status}", locale=locale, phone=phone, reference=reference)


def twiml(greeting: str, support_line: str, caller_id: str) -> str:
    """The call's TwiML: say ``greeting``, then dial the support line.

    Args:
        greeting: Spoken first (``<Say>``).
        support_line: The number the customer is connected to (``<Dial>``).
        caller_id: The ``callerId`` the support line sees (a Twilio number / verified id).

    Returns:
        ``<?xml ...?><Response><Say>…</Say><Dial callerId="…">…</Dial></Response>``
        (text escaped by twilio's ``VoiceResponse``).
    """
    from twilio.twiml.voice_response import VoiceResponse

    response = VoiceResponse()
    if greeting:
        response.say(greeting)
    response.dial(support_line, caller_id=caller_id)
    return str(response)


@dataclass(frozen=True)
class VoiceConfig:
    """Voice settings (:meth:`from_settings`)."""

    voice_from: Optional[str]
    support_line: Optional[str]
    public_url: str
    poll_interval: float = 5.0
    max_late: int = 900
    stale_seconds: int = 120
    greeting: str = ""
    policy: RetryPolicy = RetryPolicy()
    max_concurrent: int = Settings.twilio_callback_max_concurrent
    countries: Tuple[str, ...] = Settings.callback_countries

    @property
    def enabled(self) -> bool:
        """Both numbers are set (Twilio itself must be configured too)."""
        return bool(self.voice_from and self.support_line)

    @property
    def status_url(self) -> str:
        """The status callback URL (what Twilio signs), without the query."""
        return self.public_url.rstrip("/") + STATUS_PATH

    @classmethod
    def from_settings(cls, public_url: str, policy: RetryPolicy) -> "VoiceConfig":
        """From :func:`bot.settings.get_settings` (``TWILIO_VOICE_FROM`` …)."""
        from bot.settings import get_settings

        s = get_settings()
        return cls(voice_from=s.twilio_voice_from, support_line=s.support_line_number,
                   public_url=public_url, poll_interval=s.twilio_callback_poll,
                   max_late=s.twilio_callback_max_late, stale_seconds=s.twilio_callback_stale,
                   greeting=s.twilio_callback_greeting, policy=policy,
                   max_concurrent=s.twilio_callback_max_concurrent,
                   countries=tuple(c.upper() for c in s.callback_countries))


def call_frame(callback: CallbackCall) -> Dict[str, Any]:
    """The widget's ``call`` frame for a call-back (docs/widget-protocol.md)."""
    state = callback.status if callback.active else "ended"
    return {"type": "call", "callback": callback.reference, "state": state,
            "status": callback.status, "can_end": callback.active and bool(callback.call_sid)}


async def _no_publish(_topic: str, _event: Dict[str, Any]) -> None:
    return None


class VoiceService(BackgroundWork):
    """Places due call-backs and follows their calls (one per Rasa process).

    Args:
        config: Voice settings (must be :attr:`VoiceConfig.enabled`).
        store: The call-back store.
        api: The Twilio client (shared with the Conversations bridge; not closed here).
        publish: ``await publish(topic, event)`` on the live bus.
        claim_keys: ``await claim_keys([key])`` → False when seen before (webhook dedupe;
            :meth:`bot.twilio.store.TwilioStore.do_claim_keys`); used only without ``inbox``.
        inbox: The process's webhook inbox (the Conversations bridge's): status callbacks
            are stored there and processed by it. Without one, a status callback is
            applied before it is answered.
    """

    def __init__(self, config: VoiceConfig, store: VoiceStore, api: TwilioApi,
                 publish: Optional[Publish] = None,
                 claim_keys: Optional[Callable[[List[str]], Awaitable[bool]]] = None,
                 inbox: Optional["InboxProcessor"] = None) -> None:
        if not config.enabled:
            raise ValueError("Voice call-backs need TWILIO_VOICE_FROM and SUPPORT_LINE_NUMBER.")
        self.config = config
        self.store = store
        self.api = api
        self._publish = publish or _no_publish
        self._claim_keys = claim_keys
        self._loop_task: Optional[asyncio.Task] = None
        self._tasks: Set[asyncio.Task] = set()
        self.inbox = inbox
        if inbox is not None:
            inbox.register(INBOX_KIND, self._handle_inbox_row)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the scheduler loop (idempotent) and make this the process's service
        (:func:`bot.calls.register`: the widget's call frames go through it)."""
        call_control.register(self)
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.create_task(self._run(), name="twilio-voice-scheduler")

    async def close(self) -> None:
        """Stop the loop and background work."""
        call_control.unregister(self)
        if self.inbox is not None and self.inbox.handlers.get(INBOX_KIND) == \
                self._handle_inbox_row:
            self.inbox.unregister(INBOX_KIND)
        tasks = [t for t in [self._loop_task, *self._tasks] if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        self._loop_task = None

    async def _run(self) -> None:
        logger.info("Call-back scheduler started (every %.1f s)", self.config.poll_interval)
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep scheduling
                logger.exception("Call-back scheduler run failed")
            await asyncio.sleep(self.config.poll_interval)

    # ------------------------------------------------------------ scheduler

    async def run_once(self, now: Optional[datetime] = None) -> List[CallbackCall]:
        """Recover stale claims, claim due call-backs and place their calls (awaited).

        Returns:
            The call-backs this run claimed or took over.
        """
        now = now or db.utcnow()
        taken: List[CallbackCall] = []
        cutoff = now - timedelta(seconds=self.config.stale_seconds)
        await self._follow_up_quiet_calls(cutoff)
        for stale in await self.store.stale_calling(cutoff):
            again = await self.store.do_reclaim_stale(stale, now)
            if again is None:
                continue
            taken.append(again)
            if again.status == "failed":
                await self.tell(again)
            elif not await self._adopt_existing_call(again, stale.updated_at):
                logger.warning("Call-back %s was left calling without a call; placing it "
                               "again (try %d)", again.reference, again.attempts)
                await self.place(again, announce=False)
        max_late = timedelta(seconds=self.config.max_late) if self.config.max_late else None
        claimed = await self.store.do_claim_due_callbacks(
            now, max_late, max_active=self.config.max_concurrent)
        for callback in claimed:
            taken.append(callback)
            if callback.status == "missed":
                logger.warning("Call-back %s is %.0f s late: missed", callback.reference,
                               (now - callback.scheduled_for).total_seconds())
                await self.tell(callback)
        await asyncio.gather(*(self.place(c) for c in claimed if c.status == "calling"))
        return taken

    async def place(self, callback: CallbackCall, announce: bool = True) -> Optional[str]:
        """Place the call of a claimed call-back; returns the call SID (None: failed).

        A failure after the client's retries marks the call-back ``failed`` and tells the
        customer.
        """
        calls = self.api.client.calls
        status_callback = f"{self.config.status_url}?callback={callback.reference}"
        body = twiml(self.config.greeting, self.config.support_line or "",
                     self.config.voice_from or "")
        problem = CallbackLimits(countries=self.config.countries).number_problem(callback.phone)
        if problem is not None:  # booked before the rules, or around them: never dialled
            logger.error("Call-back %s: %s is not a number we call (%s); not placed",
                         callback.reference, callback.phone, problem)
            failed = await self.store.do_call_failed(
                callback.id, f"not placed: the number is not allowed ({problem})")
            if failed is not None:
                await self.tell(failed)
            return None
        if announce:
            await self.tell(callback)
        started, tries = db.utcnow(), 0

        async def create() -> Any:
            nonlocal tries
            tries += 1
            if tries > 1:  # an earlier try may have made the call and lost only the answer
                made = await self._call_since(callback, started)
                if made is not None:
                    return made
            return await calls.create_async(
                to=callback.phone, from_=self.config.voice_from, twiml=body,
                status_callback=status_callback, status_callback_method="POST",
                status_callback_event=list(STATUS_EVENTS))

        try:
            call = await with_retries(create, self.config.policy,
                                      f"place call-back {callback.reference}")
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - recorded on the call-back
            cause = error.error if isinstance(error, RetriesExhausted) else error
            logger.error("Could not place call-back %s: %s", callback.reference,
                         describe(cause))
            failed = await self.store.do_call_failed(callback.id, describe(cause))
            if failed is not None:
                await self.tell(failed)
            return None
        recorded = await self.store.do_record_call_sid(callback.id, call.sid, call.status)
        logger.info("Placed call-back %s: call %s (%s)", callback.reference, call.sid,
                    call.status)
        if recorded.call_sid == call.sid and recorded.active:
            await self._announce_state(recorded)
        return call.sid

    async def _follow_up_quiet_calls(self, older_than: datetime) -> None:
        """Ask Twilio about calls we have heard nothing of since ``older_than`` (a lost status
        callback must not keep a call-back ``calling`` and hold a slot for ever)."""
        for callback in await self.store.active_calls(older_than=older_than, limit=20):
            sid = callback.call_sid or ""
            try:
                call = await with_retries(lambda: self.api.client.calls(sid).fetch_async(),
                                          self.config.policy, f"fetch call {sid}")
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - asked again on the next run
                cause = error.error if isinstance(error, RetriesExhausted) else error
                logger.warning("Could not look up call %s of call-back %s: %s", sid,
                               callback.reference, describe(cause))
                continue
            updated, changed = await self.store.do_record_call_status(sid, call.status or "")
            if updated is not None and changed:
                logger.info("Call-back %s: Twilio says the call is %s", callback.reference,
                            call.status)
                await self.tell(updated)

    async def _adopt_existing_call(self, callback: CallbackCall, claimed_at: datetime) -> bool:
        """Whether Twilio already has a call to the customer made since the claim (the
        process died before it stored the SID): if so its SID is recorded."""
        try:
            call = await with_retries(lambda: self._call_since(callback, claimed_at),
                                      self.config.policy, "list calls")
        except Exception as error:  # noqa: BLE001 - then place it again
            logger.warning("Could not list calls for %s: %s", callback.reference,
                           describe(error))
            return False
        if call is None:
            return False
        await self.store.do_record_call_sid(callback.id, call.sid, call.status)
        logger.info("Call-back %s: adopted the call %s placed before a restart",
                    callback.reference, call.sid)
        return True

    async def _call_since(self, callback: CallbackCall, since: datetime) -> Any:
        """Twilio's call to the customer's number made since ``since`` (5 s of clock skew
        allowed), or None."""
        since = since - timedelta(seconds=5)
        for call in await self.api.client.calls.list_async(to=callback.phone, limit=20):
            created = call.date_created
            if call.to != callback.phone or created is None:
                continue
            if created.tzinfo is None:
                created = created.replace(tzinfo=timezone.utc)
            if created >= since:
                return call
        return None

    # -------------------------------------------------------------- webhooks

    async def accept_status(self, params: Mapping[str, str], reference: Optional[str]) -> bool:
        """Store a (signature-checked) status callback in the inbox (processed from there,
        in order per call); without an inbox it is applied before this returns.

        Returns:
            False for a duplicate (same ``CallSid`` and ``CallStatus`` seen before).
        """
        sid = params.get("CallSid") or ""
        status = params.get("CallStatus") or ""
        keys = [f"sid:call:{sid}:{status}"] if sid and status else []
        if self.inbox is not None:
            fresh = await self.inbox.accept(INBOX_KIND, keys, f"call:{sid}",
                                            {"params": dict(params), "reference": reference})
            if not fresh:
                logger.info("Duplicate call status %s %s ignored", sid, status)
            return fresh
        if self._claim_keys is not None and keys:
            if not await self._claim_keys(keys):
                logger.info("Duplicate call status %s %s ignored", sid, status)
                return False
        await self.handle_status(dict(params), reference)
        return True

    async def _handle_inbox_row(self, payload: Dict[str, Any]) -> str:
        reference = payload.get("reference")
        return await self.handle_status(dict(payload.get("params") or {}),
                                        reference if isinstance(reference, str) else None)

    async def idle(self, timeout: float = 30.0) -> None:
        """Wait until no background work runs and the due inbox rows are processed (tests)."""
        await super().idle(timeout)
        if self.inbox is not None:
            await self.inbox.drain()
        await super().idle(timeout)

    async def handle_status(self, params: Dict[str, str], reference: Optional[str]) -> str:
        """Apply one status callback; returns what happened (logs, tests)."""
        sid = params.get("CallSid") or ""
        status = params.get("CallStatus") or ""
        if status_for(status) is None:
            return "ignored"
        callback, changed = await self.store.do_record_call_status(
            sid, status, reference=reference, duration=params.get("CallDuration"))
        if callback is None:
            return "unknown_call"
        if not changed:
            return "unchanged"
        await self.tell(callback)
        return callback.status

    # -------------------------------------------------------------- end call

    async def end_call(self, conversation_id: str,
                       reference: Optional[str] = None) -> Dict[str, Any]:
        """End the ongoing call-back call of a conversation (``Status=completed``; when
        Twilio refuses that for a call not answered yet, ``Status=canceled``).

        Returns:
            The ``call`` frame after the update, or an ``error`` frame (``no_call``,
            ``call_not_started``, ``end_call_failed``).
        """
        callback = await self.store.active_call(conversation_id)
        if callback is None or (reference and callback.reference != reference.upper()):
            return {"type": "error", "code": "no_call",
                    "message": "There is no ongoing call-back call."}
        if not callback.call_sid:
            return {"type": "error", "code": "call_not_started",
                    "message": "The call is being placed; try again in a moment."}
        sid = callback.call_sid

        async def hang_up() -> Any:
            try:
                return await with_retries(
                    lambda: self.api.client.calls(sid).update_async(status="completed"),
                    self.config.policy, f"end call {sid}")
            except RetriesExhausted as error:
                status = http_status(error.error)
                if status is None or status >= 500 or status == 429:
                    raise
                # not accepted for a call that is not answered yet: cancel it instead
                return await with_retries(
                    lambda: self.api.client.calls(sid).update_async(status="canceled"),
                    self.config.policy, f"cancel call {sid}")

        try:
            call = await hang_up()
        except Exception as error:  # noqa: BLE001 - told to the customer
            cause = error.error if isinstance(error, RetriesExhausted) else error
            logger.error("Could not end call %s: %s", sid, describe(cause))
            return {"type": "error", "code": "end_call_failed",
                    "message": "We could not end the call. Please hang up your phone."}
        updated, changed = await self.store.do_record_call_status(sid, call.status or
                                                                  "completed")
        if updated is None:
            return call_frame(callback)
        if changed:
            await self.tell(updated)
        return call_frame(updated)

    async def current_call_frame(self, conversation_id: str) -> Optional[Dict[str, Any]]:
        """The ``call`` frame of the conversation's ongoing call-back call (None: none)."""
        callback = await self.store.active_call(conversation_id)
        return call_frame(callback) if callback is not None else None

    # ------------------------------------------------------------- customer

    async def tell(self, callback: CallbackCall) -> None:
        """Tell the customer in the chat: a stored system message and a ``call`` frame
        (bus ``call.state``)."""
        message = None
        if callback.status in NOTICE_STATUSES:
            try:
                from bot.support.chat import ChatStore

                chat = ChatStore(self.store.engine)
                locale = conversation_locale(await chat.get_conversation(callback.conversation_id))
                text = call_notice(callback.status, callback.phone, callback.reference, locale)
                stored = await chat.do_store_outgoing(
                    callback.conversation_id, "system", text,
                    extra={"callback": callback.reference, "call_state": callback.status})
                message = stored.to_wire()
            except LookupError:  # not a chat conversation (e.g. booked over REST)
                pass
        await self._publish("call.state", {"conversation_id": callback.conversation_id,
                                           "frame": call_frame(callback), "message": message})

    async def _announce_state(self, callback: CallbackCall) -> None:
        await self._publish("call.state", {"conversation_id": callback.conversation_id,
                                           "frame": call_frame(callback), "message": None})


def active_service() -> Optional[VoiceService]:
    """The running service of this process (None: Voice not configured/started)."""
    service = call_control.active()
    return service if isinstance(service, VoiceService) else None


end_call = call_control.end_call
"""The widget's ``end_call`` frame (:func:`bot.calls.end_call`, kept importable here)."""

current_call_frame = call_control.current_call_frame
"""The welcome ``call`` frame (:func:`bot.calls.current_call_frame`, kept importable here)."""
