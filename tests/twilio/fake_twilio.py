"""A local fake of the Twilio REST API for tests (no internet, no real Twilio).

It serves the real resource shapes the ``twilio`` library parses, on one base URL
(point ``TWILIO_API_BASE`` at :attr:`FakeTwilio.base_url`):

* Conversations v1: ``/v1/Conversations`` (create, list, fetch by SID or unique name,
  update e.g. ``State=closed``, delete), ``.../Participants``, ``.../Messages`` and
  ``.../Webhooks`` (conversation-scoped; create, list, fetch, delete; ``ReplayAfter``
  replays ``onMessageAdded`` of the existing messages from that index).
* Media Content Service (``mcs.us1.twilio.com``): ``/v1/Services/{ChatServiceSid}/Media``
  (create from the raw body and its ``Content-Type``; fetch, with
  ``links.content_direct_temporary``, a signed URL that needs no auth, as at Twilio); a
  Message created with ``MediaSid`` carries it in ``media``, and its ``onMessageAdded`` in
  ``Media`` (a JSON list of ``Sid``, ``Filename``, ``ContentType``, ``Size``, ``Category``);
  :meth:`FakeTwilio.agent_says` may attach media (``media=[(bytes, type, filename)]``).
* Voice (API 2010-04-01): ``/2010-04-01/Accounts/{AccountSid}/Calls.json`` (create, list)
  and ``.../Calls/{CallSid}.json`` (fetch, update: ``Status=completed|canceled``, ``Url``,
  ``Twiml``); :meth:`FakeTwilio.advance_call` moves a call on and sends its signed
  ``StatusCallback`` (``initiated``/``ringing``/``answered``/``completed`` filtered by
  ``StatusCallbackEvent``).

HTTP Basic auth is checked (401 with Twilio's error JSON); errors look like Twilio's
(``{"code", "message", "more_info", "status"}``), e.g. 409/50353 for a taken unique name
and 409/50433 for a participant already in the conversation.

Webhooks are signed exactly as Twilio signs them (``X-Twilio-Signature``: base64
HMAC-SHA1 over the URL plus the sorted POST parameters, with the auth token), carry
``I-Twilio-Idempotency-Token`` and are form-encoded. :meth:`FakeTwilio.route` maps a
public base URL (what is signed, as behind a proxy) to where the bot really listens.

Actions of a human agent (as Flex or a Conversations SDK would do them) fire the
conversation's webhooks: :meth:`agent_says`, :meth:`close_conversation`. REST-created
messages fire them only with ``X-Twilio-Webhook-Enabled: true`` (as Twilio does).

Faults: :meth:`fail` makes the next matching requests answer an HTTP status (500, 429
or 503 with ``Retry-After`` in seconds or as an HTTP date, ...) or hang for ``delay``
seconds (a timeout for the client) without doing anything; with ``after=True`` the request
IS carried out and only its answer is lost (the client sees the error or the timeout).
:meth:`storm` makes a share of all matching requests fail for a while.

The server runs in its own thread and event loop, so synchronous tests, async tests and
the bot's separate processes can all use it; every public method is thread-safe.
"""
from __future__ import annotations

import asyncio
import base64
import json
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from aiohttp import ClientSession, ClientTimeout, web
from twilio.request_validator import RequestValidator

from tests.twilio.fake_flex import FlexFake, TwilioError as _TwilioError, iso as _iso, now as _now
from tests.twilio.fake_flex import sid as _sid

__all__ = ["Fault", "FakeTwilio", "sign"]

CONVERSATIONS_HOST = "https://conversations.twilio.com"
API_HOST = "https://api.twilio.com"

MAX_BODY_CHARS = 1600  # a message Body (SMS/WhatsApp: docs "Conversations Limits")
MAX_CONVERSATION_ATTRIBUTES = 16 * 1024  # a Conversation's Attributes: 16 KB
MAX_ITEM_ATTRIBUTES = 4 * 1024  # a Message's or Participant's Attributes: 4 KB
MAX_PAGE_SIZE = 100  # Conversations lists: "the default is 50, and the maximum is 100"
WEBHOOK_TIMEOUT = 5.0  # "Conversations webhooks have a maximum timeout of 5 seconds"
CONVERSATION_STATES = ("active", "inactive", "closed")


def sign(auth_token: str, url: str, params: Dict[str, Any]) -> str:
    """``X-Twilio-Signature`` of a form POST to ``url`` (as Twilio computes it)."""
    return RequestValidator(auth_token).compute_signature(url, params)


@dataclass
class Fault:
    """Answer the next ``count`` requests matching ``method``/``path_contains`` badly."""

    count: int
    status: int = 500
    delay: float = 0.0
    method: Optional[str] = None
    path_contains: Optional[str] = None
    retry_after: Optional[Any] = None  # seconds (int/float) or an HTTP date (str)
    hits: int = 0
    after: bool = False  # carry the request out, then answer badly (the answer is lost)
    rate: float = 1.0  # share of matching requests that fail (storm)
    seed: int = 0

    def matches(self, method: str, path: str) -> bool:
        if not (self.count > 0 and (self.method is None or self.method == method) and (
                self.path_contains is None or self.path_contains in path)):
            return False
        if self.rate >= 1.0:
            return True
        import random

        self.seed += 1
        return random.Random(f"{self.seed}:{path}").random() < self.rate


@dataclass
class Delivery:
    """One webhook the fake sent."""

    url: str
    params: Dict[str, str]
    token: str
    status: int
    body: str = ""


@dataclass
class _State:
    conversations: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    participants: Dict[str, List[Dict[str, Any]]] = field(default_factory=dict)
    messages: Dict[str, List[Dict[str, Any]]] = field(default_factory=dict)
    webhooks: Dict[str, List[Dict[str, Any]]] = field(default_factory=dict)
    calls: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    media: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # MCS, by ME SID
    service_webhook: Optional[Dict[str, Any]] = None  # the Conversation Service's webhook


class FakeTwilio(FlexFake):
    """The fake server. Use as a context manager or :meth:`start`/:meth:`stop`.

    Args:
        account_sid: The account the credentials belong to.
        auth_token: Its auth token (checks Basic auth, signs webhooks).
    """

    def __init__(self, account_sid: str = "AC" + "0" * 32,
                 auth_token: str = "fake-auth-token-" + "0" * 16) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.chat_service_sid = "IS" + "1" * 32
        self.state = _State()
        self.requests: List[Tuple[str, str, Dict[str, List[str]], Dict[str, str]]] = []
        self.client_ports: List[Tuple[str, str, int]] = []  # (method, path, the caller's port)
        self.deliveries: List[Delivery] = []
        self.faults: List[Fault] = []
        self.routes: Dict[str, str] = {}
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._runner: Optional[web.AppRunner] = None
        self._lock = threading.RLock()
        self._background: set = set()
        self.base_url = ""
        self.webhook_timeout = WEBHOOK_TIMEOUT
        FlexFake.__init__(self)

    # ------------------------------------------------------------- lifecycle

    def start(self) -> "FakeTwilio":
        """Start serving on a free port of 127.0.0.1; sets :attr:`base_url`."""
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-twilio", daemon=True)
        self._thread.start()
        ready.wait(10)
        port = self._submit(self._serve())
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        """Stop the server and its thread."""
        if self._loop is None:
            return
        if self._runner is not None:
            self._submit(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop.close()
        self._loop = None

    async def _shutdown(self) -> None:
        current = asyncio.current_task()
        for task in asyncio.all_tasks():
            if task is not current:
                task.cancel()
        assert self._runner is not None
        await self._runner.cleanup()

    def __enter__(self) -> "FakeTwilio":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _submit(self, coro: Any, timeout: float = 60.0) -> Any:
        assert self._loop is not None, "the fake is not running"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _serve(self) -> int:
        app = web.Application(client_max_size=1024 ** 2)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    # ----------------------------------------------------------- test helpers

    def route(self, public_base: str, actual_base: str) -> None:
        """Deliver webhooks for ``public_base...`` to ``actual_base...`` (signed as public)."""
        with self._lock:
            self.routes[public_base.rstrip("/")] = actual_base.rstrip("/")

    def fail(self, count: int = 1, status: int = 500, *, delay: float = 0.0,
             method: Optional[str] = None, path_contains: Optional[str] = None,
             retry_after: Optional[Any] = None, after: bool = False) -> Fault:
        """Make the next ``count`` matching requests fail (``delay``: hang first;
        ``retry_after``: a ``Retry-After`` header, seconds or an HTTP date; ``after``: do
        the work, then fail, i.e. the answer is lost)."""
        fault = Fault(count, status, delay, method, path_contains, retry_after, after=after)
        with self._lock:
            self.faults.append(fault)
        return fault

    def storm(self, count: int, rate: float = 0.5, statuses: Tuple[int, ...] = (500, 503),
              *, method: Optional[str] = None, path_contains: Optional[str] = None,
              timeout_delay: float = 0.0) -> List[Fault]:
        """A 5xx storm: about ``rate`` of the matching requests fail (deterministically
        pseudo-random), ``count`` failures at most per status; ``timeout_delay`` > 0 adds
        hanging requests (timeouts) as well."""
        faults = [Fault(count, status, 0.0, method, path_contains, rate=rate, seed=i * 7919)
                  for i, status in enumerate(statuses)]
        if timeout_delay:
            faults.append(Fault(count, 500, timeout_delay, method, path_contains, rate=rate,
                                seed=104729))
        with self._lock:
            self.faults.extend(faults)
        return faults

    def set_service_webhook(self, url: Optional[str], filters: Tuple[str, ...] = (
            "onConversationAdded", "onParticipantAdded", "onMessageAdded",
            "onConversationStateUpdated"), method: str = "POST") -> None:
        """Configure the Conversation Service's (post-event) webhook, as an operator does in
        the console (*Conversations → Services → Webhooks*); None removes it. Like Twilio,
        it fires for SDK actions and for REST actions sent with
        ``X-Twilio-Webhook-Enabled: true`` only."""
        with self._lock:
            self.state.service_webhook = None if url is None else {
                "url": url, "filters": list(filters), "method": method}

    def webhook_flags(self, method: str, path_contains: str) -> List[Optional[str]]:
        """The ``X-Twilio-Webhook-Enabled`` header of every matching request (None: absent)."""
        with self._lock:
            return [next((v for k, v in h.items() if k.lower() == "x-twilio-webhook-enabled"),
                         None) for m, p, _f, h in self.requests
                    if m == method and path_contains in p]

    def clear_faults(self) -> None:
        """Forget every fault not used up yet."""
        with self._lock:
            self.faults.clear()

    def requests_to(self, method: str, path_contains: str) -> List[Dict[str, List[str]]]:
        """The form fields of every matching request that arrived (faults included)."""
        with self._lock:
            return [f for m, p, f, _h in self.requests if m == method and path_contains in p]

    def client_port(self, method: str, path_contains: str) -> Optional[int]:
        """The local port of the caller's connection of the latest matching request (which
        process sent it: :func:`tests.live.conftest.connection_owner`); None: no such one."""
        with self._lock:
            return next((port for m, p, port in reversed(self.client_ports)
                         if m == method and path_contains in p), None)

    def conversations(self) -> List[Dict[str, Any]]:
        """All conversations (copies)."""
        with self._lock:
            return [dict(c) for c in self.state.conversations.values()]

    def conversation(self, sid_or_name: str) -> Optional[Dict[str, Any]]:
        """One conversation by SID or unique name (a copy)."""
        with self._lock:
            found = self._find(sid_or_name)
            return dict(found) if found else None

    def messages(self, conversation_sid: str) -> List[Dict[str, Any]]:
        with self._lock:
            return [dict(m) for m in self.state.messages.get(conversation_sid, [])]

    def participants(self, conversation_sid: str) -> List[Dict[str, Any]]:
        with self._lock:
            return [dict(p) for p in self.state.participants.get(conversation_sid, [])]

    def webhooks(self, conversation_sid: str) -> List[Dict[str, Any]]:
        with self._lock:
            return [dict(w) for w in self.state.webhooks.get(conversation_sid, [])]

    def calls(self) -> List[Dict[str, Any]]:
        with self._lock:
            return [dict(c) for c in self.state.calls.values()]

    def count_requests(self, method: str, path_contains: str) -> int:
        """How many requests with this method and path fragment arrived (faults included)."""
        with self._lock:
            return sum(1 for m, p, _f, _h in self.requests if m == method and path_contains in p)

    def agent_says(self, conversation_sid: str, author: str, body: str,
                   attributes: Optional[Dict[str, Any]] = None,
                   media: Optional[List[Tuple[bytes, str, str]]] = None
                   ) -> Tuple[Dict[str, Any], List[Delivery]]:
        """An agent posts (SDK): the message is added and ``onMessageAdded`` is sent.

        ``media``: ``(bytes, content type, file name)`` uploaded to MCS first and attached.
        """
        sids = [self.add_media(data, kind, name, author)["sid"] for data, kind, name in media or []]
        return self._submit(self._agent_says(conversation_sid, author, body, attributes, sids))

    def close_conversation(self, conversation_sid: str) -> List[Delivery]:
        """An agent closes the conversation: state ``closed``, state webhooks sent."""
        return self._submit(self._set_state(conversation_sid, "closed", fire=True,
                                            reason="API"))

    def deliveries_to(self, url_contains: str) -> List[Delivery]:
        """The webhooks sent to URLs containing ``url_contains`` (every try)."""
        with self._lock:
            return [d for d in self.deliveries if url_contains in d.url]

    def send_webhook(self, url: str, params: Dict[str, str], *, token: Optional[str] = None,
                     signature: Optional[str] = None) -> Delivery:
        """POST a (signed unless ``signature`` is given) webhook to ``url``; for tests of
        forged signatures and duplicate deliveries (reuse ``token``)."""
        return self._submit(self._deliver(url, params, token=token, signature=signature,
                                          retries=False))

    def advance_call(self, call_sid: str, status: str, **extra: str) -> List[Delivery]:
        """Move a call to ``status`` (``ringing``, ``in-progress``, ``completed``, ``busy``,
        ``no-answer``, ``failed``) and send its status callback if subscribed."""
        return self._submit(self._advance_call(call_sid, status, extra))

    # --------------------------------------------------------------- routing

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        form = await request.post() if request.method in ("POST", "PUT") else {}
        fields: Dict[str, List[str]] = {}
        for key in form:
            fields[key] = [str(v) for v in form.getall(key)]  # type: ignore[attr-defined]
        query = {k: request.query.getall(k) for k in request.query}
        raw = await request.read() if request.method == "POST" and not form else b""
        parts = [p for p in request.path.split("/") if p]
        if request.method == "GET" and len(parts) == 1 and parts[0].startswith("ME"):
            return self._media_content(parts[0], request.query.get("Signature", ""))
        peer = request.transport.get_extra_info("peername") if request.transport else None
        with self._lock:
            self.requests.append((request.method, request.path, fields,
                                  {k: v for k, v in request.headers.items()}))
            self.client_ports.append((request.method, request.path, peer[1] if peer else 0))
            fault = next((f for f in self.faults if f.matches(request.method, request.path)),
                         None)
            if fault is not None:
                fault.count -= 1
                fault.hits += 1
        if not self._authorised(request):
            return _error(401, 20003, "Authenticate")
        if fault is not None and not fault.after:
            return await self._fault_answer(fault)
        parts = [p for p in request.path.split("/") if p]
        one = {k: v[0] for k, v in fields.items()}
        one.update({k: v[0] for k, v in query.items() if k not in one})
        webhook_enabled = request.headers.get("X-Twilio-Webhook-Enabled", "false") == "true"
        with self._lock:
            try:
                if parts[:2] == ["v1", "Conversations"]:
                    result = self._conversations_api(request.method, parts[2:], one, fields,
                                                     webhook_enabled)
                elif parts[:1] == ["2010-04-01"] and len(parts) >= 4 and parts[1] == "Accounts":
                    result = self._calls_api(request.method, parts[2:], one, fields)
                elif parts[:2] == ["v1", "Services"] and len(parts) >= 4 \
                        and parts[3] == "Media":
                    result = self._media_api(request.method, parts[2], parts[4:], raw,
                                             request.headers.get("Content-Type", ""))
                elif parts[:2] == ["v1", "Interactions"]:
                    result = self._interactions_api(request.method, parts[2:], one)
                elif parts[:2] == ["v1", "Workspaces"]:
                    result = self._taskrouter_api(request.method, parts[2:], one,
                                                  {**query, **fields})
                else:
                    result = (404, {"code": 20404, "message": "The requested resource "
                                    f"{request.path} was not found"})
            except _TwilioError as error:
                result = (error.status, {"code": error.code, "message": str(error)})
            except (KeyError, ValueError) as error:  # a malformed parameter
                result = (400, {"code": 20001, "message": f"Invalid parameter: {error}"})
        status, body, *fire = result
        for job in fire[0] if fire else []:  # webhooks follow the answer, as at Twilio
            task = asyncio.get_running_loop().create_task(self._after(job))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        if fault is not None:  # done, but the client never learns it
            return await self._fault_answer(fault)
        if status == 204:
            return web.Response(status=204)
        if status >= 400:
            return _error(status, body["code"], body["message"])
        if "_bytes" in body:  # MCS content
            return web.Response(body=body["_bytes"], content_type=body["_type"])
        return web.json_response(body, status=status)

    async def _fault_answer(self, fault: Fault) -> web.StreamResponse:
        if fault.delay:
            await asyncio.sleep(fault.delay)
        headers = {"Retry-After": str(fault.retry_after)} \
            if fault.retry_after is not None else {}
        return _error(fault.status, 20500 if fault.status >= 500 else 20429,
                      "Injected failure", headers=headers)

    async def _after(self, job: Any) -> None:
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:  # the fake stops: the webhooks are not sent
            job.close()
            raise
        await job

    def wait_background(self, timeout: float = 30.0) -> None:
        """Wait until webhooks triggered by REST calls were sent."""
        async def wait() -> None:
            while self._background:
                await asyncio.wait(set(self._background), timeout=timeout)

        self._submit(wait(), timeout + 5)

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return user == self.account_sid and password == self.auth_token

    def _find(self, sid_or_name: str) -> Optional[Dict[str, Any]]:
        found = self.state.conversations.get(sid_or_name)
        if found is None:
            found = next((c for c in self.state.conversations.values()
                          if c["unique_name"] == sid_or_name), None)
        return found

    def _require(self, sid_or_name: str) -> Dict[str, Any]:
        found = self._find(sid_or_name)
        if found is None:
            raise _TwilioError(404, 20404, f"The requested resource /Conversations/"
                                           f"{sid_or_name} was not found")
        return found

    # ---------------------------------------------------------- Conversations

    def _conversations_api(self, method: str, rest: List[str], one: Dict[str, str],
                           fields: Dict[str, List[str]], webhook_enabled: bool) -> Tuple:
        if not rest:
            if method == "POST":
                conversation = self._create_conversation(one)
                jobs = [self._fire_service("onConversationAdded",
                                           self._conversation_params(conversation,
                                                                     "onConversationAdded"))] \
                    if webhook_enabled else []
                return (201, conversation, jobs)
            if method == "GET":
                items = list(self.state.conversations.values())
                return (200, _page("conversations", items, "/v1/Conversations",
                                   page_size(one)))
            raise _TwilioError(405, 20004, "Method not allowed")
        conversation = self._require(rest[0])
        sid = conversation["sid"]
        if len(rest) == 1:
            if method == "GET":
                return (200, conversation)
            if method == "POST":
                jobs = []
                _check_attributes(one, MAX_CONVERSATION_ATTRIBUTES)
                if "State" in one:
                    _check_transition(conversation["state"], one["State"])
                for name, key in (("FriendlyName", "friendly_name"),
                                  ("UniqueName", "unique_name"), ("Attributes", "attributes")):
                    if name in one:
                        conversation[key] = one[name]
                if "State" in one and one["State"] != conversation["state"]:
                    fire_job = self._apply_state(sid, one["State"], reason="API")
                    if webhook_enabled:
                        jobs.append(fire_job)
                    else:
                        fire_job.close()
                conversation["date_updated"] = _iso(_now())
                return (200, conversation, jobs)
            if method == "DELETE":
                del self.state.conversations[sid]
                return (204, {})
        kind = rest[1]
        if kind == "Participants":
            return self._participants(method, sid, rest[2:], one, webhook_enabled)
        if kind == "Messages":
            return self._messages(method, sid, rest[2:], one, webhook_enabled)
        if kind == "Webhooks":
            return self._webhooks(method, sid, rest[2:], one, fields)
        raise _TwilioError(404, 20404, f"No resource {kind}")

    def _conversation_params(self, conversation: Dict[str, Any], event: str
                             ) -> Dict[str, str]:
        return {"AccountSid": self.account_sid, "EventType": event,
                "ConversationSid": conversation["sid"], "ChatServiceSid": self.chat_service_sid,
                "MessagingServiceSid": conversation["messaging_service_sid"],
                "DateCreated": conversation["date_created"],
                "DateUpdated": conversation["date_updated"],
                "FriendlyName": conversation["friendly_name"] or "",
                "UniqueName": conversation["unique_name"] or "",
                "Attributes": conversation["attributes"] or "{}",
                "State": conversation["state"], "Source": "API", "RetryCount": "0"}

    def _create_conversation(self, one: Dict[str, str]) -> Dict[str, Any]:
        _check_attributes(one, MAX_CONVERSATION_ATTRIBUTES)
        if one.get("State", "active") not in CONVERSATION_STATES:
            raise _TwilioError(400, 20001, f"Invalid State {one['State']!r}")
        name = one.get("UniqueName")
        if name and self._find(name) is not None:
            raise _TwilioError(409, 50353, "Conversation with provided unique name already "
                                           "exists")
        sid = _sid("CH")
        now = _iso(_now())
        url = f"{CONVERSATIONS_HOST}/v1/Conversations/{sid}"
        conversation = {
            "sid": sid, "account_sid": self.account_sid,
            "chat_service_sid": self.chat_service_sid,
            "messaging_service_sid": "MG" + "2" * 32,
            "friendly_name": one.get("FriendlyName"), "unique_name": name,
            "attributes": one.get("Attributes", "{}"), "state": one.get("State", "active"),
            "date_created": one.get("DateCreated", now), "date_updated": now,
            "timers": {}, "url": url, "bindings": None,
            "links": {"participants": f"{url}/Participants", "messages": f"{url}/Messages",
                      "webhooks": f"{url}/Webhooks"},
        }
        self.state.conversations[sid] = conversation
        self.state.participants[sid] = []
        self.state.messages[sid] = []
        self.state.webhooks[sid] = []
        return conversation

    def _participants(self, method: str, sid: str, rest: List[str],
                      one: Dict[str, str], webhook_enabled: bool = False) -> Tuple:
        items = self.state.participants[sid]
        base = f"/v1/Conversations/{sid}/Participants"
        if not rest and method == "POST":
            _check_attributes(one, MAX_ITEM_ATTRIBUTES)
            identity = one.get("Identity")
            if identity and any(p["identity"] == identity for p in items):
                raise _TwilioError(409, 50433, "Participant already exists")
            now = _iso(_now())
            participant_sid = _sid("MB")
            participant = {
                "account_sid": self.account_sid, "conversation_sid": sid,
                "sid": participant_sid, "identity": identity,
                "attributes": one.get("Attributes", "{}"),
                "messaging_binding": None, "role_sid": "RL" + "3" * 32,
                "date_created": now, "date_updated": now,
                "url": f"{CONVERSATIONS_HOST}{base}/{participant_sid}",
                "last_read_message_index": None, "last_read_timestamp": None,
            }
            items.append(participant)
            jobs = [self._fire_service("onParticipantAdded", {
                "AccountSid": self.account_sid, "EventType": "onParticipantAdded",
                "ConversationSid": sid, "ChatServiceSid": self.chat_service_sid,
                "ParticipantSid": participant_sid, "Identity": identity or "",
                "Attributes": participant["attributes"], "DateCreated": now,
                "Source": "API", "RetryCount": "0"})] if webhook_enabled else []
            return (201, participant, jobs)
        if not rest and method == "GET":
            return (200, _page("participants", items, base, page_size(one)))
        participant = next((p for p in items if p["sid"] == rest[0]
                            or p["identity"] == rest[0]), None) if rest else None
        if participant is None:
            raise _TwilioError(404, 20404, "Participant not found")
        if method == "DELETE":
            items.remove(participant)
            return (204, {})
        return (200, participant)

    # ------------------------------------------------- Media Content Service

    def add_media(self, data: bytes, content_type: str, filename: Optional[str] = None,
                  author: str = "system") -> Dict[str, Any]:
        """Store a Media resource (as an upload to MCS would) and return it."""
        with self._lock:
            media_sid = _sid("ME")
            now = _iso(_now())
            url = f"/v1/Services/{self.chat_service_sid}/Media/{media_sid}"
            signature = secrets.token_urlsafe(16)
            media = {
                "sid": media_sid, "account_sid": self.account_sid,
                "service_sid": self.chat_service_sid, "date_created": now,
                "date_upload_updated": now, "date_updated": now,
                "links": {"content": f"{url}/Content",
                          "content_direct_temporary":
                              f"https://media.us1.twilio.com/{media_sid}"
                              f"?Expires=1900000000&Signature={signature}"},
                "size": len(data), "content_type": content_type, "filename": filename,
                "author": author, "category": "media", "message_sid": None,
                "channel_sid": None, "url": url, "is_multipart_upstream": False,
            }
            self.state.media[media_sid] = {"resource": media, "data": bytes(data),
                                           "signature": signature}
            return dict(media)

    def media_bytes(self, media_sid: str) -> bytes:
        """The bytes of a stored Media resource."""
        with self._lock:
            return self.state.media[media_sid]["data"]

    def _media_api(self, method: str, service_sid: str, rest: List[str], raw: bytes,
                   content_type: str) -> Tuple:
        if service_sid != self.chat_service_sid:
            raise _TwilioError(404, 20404, f"Service {service_sid} not found")
        if not rest and method == "POST":
            if not raw:
                raise _TwilioError(400, 20001, "Empty media")
            return (201, self.add_media(raw, content_type.split(";")[0].strip() or
                                        "application/octet-stream"))
        stored = self.state.media.get(rest[0]) if rest else None
        if stored is None or method != "GET":
            raise _TwilioError(404, 20404, "Media not found")
        if rest[1:] == ["Content"]:
            return (200, {"_bytes": stored["data"],
                          "_type": stored["resource"]["content_type"]})
        return (200, dict(stored["resource"]))

    def _media_content(self, media_sid: str, signature: str) -> web.StreamResponse:
        with self._lock:
            stored = self.state.media.get(media_sid)
        if stored is None or not secrets.compare_digest(signature, stored["signature"]):
            return _error(403, 20403, "Forbidden")
        return web.Response(body=stored["data"],
                            content_type=stored["resource"]["content_type"])

    def _media_of(self, media_sid: Optional[str]) -> Optional[List[Dict[str, Any]]]:
        if not media_sid:
            return None
        stored = self.state.media.get(media_sid)
        if stored is None:
            raise _TwilioError(400, 20001, f"Invalid parameter: MediaSid {media_sid}")
        resource = stored["resource"]
        return [{"sid": resource["sid"], "content_type": resource["content_type"],
                 "filename": resource["filename"], "size": resource["size"],
                 "category": "media"}]

    def _add_message(self, sid: str, author: str, body: str, attributes: str,
                     date_created: Optional[str] = None,
                     media: Optional[List[Dict[str, Any]]] = None) -> Dict[str, Any]:
        items = self.state.messages[sid]
        now = _iso(_now())
        message_sid = _sid("IM")
        participant = next((p for p in self.state.participants[sid]
                            if p["identity"] == author), None)
        url = f"{CONVERSATIONS_HOST}/v1/Conversations/{sid}/Messages/{message_sid}"
        message = {
            "account_sid": self.account_sid, "conversation_sid": sid, "sid": message_sid,
            "index": len(items), "author": author, "body": body, "media": media,
            "attributes": attributes or "{}",
            "participant_sid": participant["sid"] if participant else None,
            "date_created": date_created or now, "date_updated": now, "url": url,
            "delivery": None, "links": {"delivery_receipts": f"{url}/Receipts"},
            "content_sid": None,
        }
        items.append(message)
        return message

    def _messages(self, method: str, sid: str, rest: List[str], one: Dict[str, str],
                  webhook_enabled: bool) -> Tuple:
        base = f"/v1/Conversations/{sid}/Messages"
        if not rest and method == "POST":
            if self.state.conversations[sid]["state"] == "closed":
                raise _TwilioError(409, 50407, "Conversation is closed")
            if len(one.get("Body", "")) > MAX_BODY_CHARS:
                raise _TwilioError(400, 21617, f"The message body exceeds the "
                                               f"{MAX_BODY_CHARS} character limit")
            _check_attributes(one, MAX_ITEM_ATTRIBUTES)
            media = self._media_of(one.get("MediaSid"))
            if not one.get("Body") and not media:
                raise _TwilioError(400, 20001, "Body or MediaSid is required")
            message = self._add_message(sid, one.get("Author", "system"), one.get("Body", ""),
                                        one.get("Attributes", "{}"), one.get("DateCreated"),
                                        media)
            jobs = [self._fire(sid, "onMessageAdded", self._message_params(message, "API"))] \
                if webhook_enabled else []
            return (201, message, jobs)
        if not rest and method == "GET":
            return (200, _page("messages", self.state.messages[sid], base,
                               page_size(one)))
        message = next((m for m in self.state.messages[sid] if m["sid"] == rest[0]), None)
        if message is None:
            raise _TwilioError(404, 20404, "Message not found")
        if method == "DELETE":
            self.state.messages[sid].remove(message)
            return (204, {})
        return (200, message)

    def _webhooks(self, method: str, sid: str, rest: List[str], one: Dict[str, str],
                  fields: Dict[str, List[str]]) -> Tuple:
        items = self.state.webhooks[sid]
        base = f"/v1/Conversations/{sid}/Webhooks"
        if not rest and method == "POST":
            target = one.get("Target")
            if target not in ("webhook", "studio", "trigger"):
                raise _TwilioError(400, 20001, "Invalid Target")
            if target == "webhook" and not one.get("Configuration.Url"):
                raise _TwilioError(400, 20001, "Configuration.Url is required")
            if len(items) >= 5:
                raise _TwilioError(400, 50518, "At most 5 webhooks per conversation")
            now = _iso(_now())
            webhook_sid = _sid("WH")
            webhook = {
                "sid": webhook_sid, "account_sid": self.account_sid, "conversation_sid": sid,
                "target": target, "url": f"{CONVERSATIONS_HOST}{base}/{webhook_sid}",
                "configuration": {
                    "url": one.get("Configuration.Url"),
                    "method": one.get("Configuration.Method", "POST"),
                    "filters": fields.get("Configuration.Filters", []),
                    "triggers": fields.get("Configuration.Triggers", []),
                    "flow_sid": one.get("Configuration.FlowSid"),
                },
                "date_created": now, "date_updated": now,
            }
            items.append(webhook)
            jobs = []
            if target == "webhook" and one.get("Configuration.ReplayAfter") is not None:
                after = int(one["Configuration.ReplayAfter"])
                jobs = [self._replay(webhook, [m for m in self.state.messages[sid]
                                               if m["index"] >= after])]
            return (201, webhook, jobs)
        if not rest and method == "GET":
            return (200, _page("webhooks", items, base, page_size(one)))
        webhook = next((w for w in items if w["sid"] == rest[0]), None) if rest else None
        if webhook is None:
            raise _TwilioError(404, 20404, "Webhook not found")
        if method == "DELETE":
            items.remove(webhook)
            return (204, {})
        return (200, webhook)

    def _message_params(self, message: Dict[str, Any], source: str) -> Dict[str, str]:
        return {
            "AccountSid": self.account_sid, "EventType": "onMessageAdded",
            "ConversationSid": message["conversation_sid"], "MessageSid": message["sid"],
            "MessagingServiceSid": "MG" + "2" * 32, "ChatServiceSid": self.chat_service_sid,
            "Index": str(message["index"]), "DateCreated": message["date_created"],
            "Body": message["body"] or "", "Author": message["author"] or "",
            "ParticipantSid": message["participant_sid"] or "",
            "Attributes": message["attributes"] or "{}", "Source": source,
            "ClientIdentity": message["author"] or "", "RetryCount": "0",
            **({"Media": json.dumps([
                {"Sid": m["sid"], "Filename": m["filename"], "ContentType": m["content_type"],
                 "Size": m["size"], "Category": m["category"]} for m in message["media"]])}
               if message.get("media") else {}),
        }

    async def _replay(self, webhook: Dict[str, Any], messages: List[Dict[str, Any]]
                      ) -> List[Delivery]:
        """``ReplayAfter``: send ``onMessageAdded`` for existing messages to a new webhook."""
        if "onMessageAdded" not in webhook["configuration"]["filters"]:
            return []
        sent = []
        for message in messages:
            params = {**self._message_params(message, "SDK"), "WebhookSid": webhook["sid"],
                      "WebhookType": "webhook"}
            sent.append(await self._deliver(webhook["configuration"]["url"], params))
        return sent

    async def _agent_says(self, sid: str, author: str, body: str,
                          attributes: Optional[Dict[str, Any]],
                          media_sids: Optional[List[str]] = None
                          ) -> Tuple[Dict[str, Any], List[Delivery]]:
        with self._lock:
            self._require(sid)
            media = [m for s in media_sids or [] for m in self._media_of(s) or []] or None
            message = self._add_message(sid, author, body, json.dumps(attributes or {}),
                                        media=media)
            params = self._message_params(message, "SDK")
        return dict(message), await self._fire(sid, "onMessageAdded", params)

    async def _set_state(self, sid: str, state: str, *, fire: bool, reason: str
                         ) -> List[Delivery]:
        with self._lock:
            job = self._apply_state(sid, state, reason=reason)
        if not fire:
            job.close()
            return []
        return await job

    def _apply_state(self, sid: str, state: str, *, reason: str) -> Any:
        """Change the state now; returns the coroutine that sends the webhooks."""
        with self._lock:
            conversation = self._require(sid)
            previous = conversation["state"]
            _check_transition(previous, state)
            conversation["state"] = state
            conversation["date_updated"] = _iso(_now())
            common = {"AccountSid": self.account_sid, "ConversationSid": sid,
                      "ChatServiceSid": self.chat_service_sid,
                      "MessagingServiceSid": conversation["messaging_service_sid"],
                      "DateUpdated": conversation["date_updated"]}
            updated = {**common, "EventType": "onConversationUpdated",
                       "DateCreated": conversation["date_created"],
                       "FriendlyName": conversation["friendly_name"] or "",
                       "UniqueName": conversation["unique_name"] or "",
                       "Attributes": conversation["attributes"] or "{}", "State": state}
            changed = {**common, "EventType": "onConversationStateUpdated",
                       "StateFrom": previous, "StateTo": state, "Reason": reason}

        async def fire() -> List[Delivery]:
            if previous == state:
                return []
            return await self._fire(sid, "onConversationStateUpdated", changed) + \
                await self._fire(sid, "onConversationUpdated", updated)

        return fire()

    async def _fire(self, sid: str, event: str, params: Dict[str, str]) -> List[Delivery]:
        """Send ``event`` to the conversation's scoped webhooks, then the service webhook
        (callers only fire for SDK actions and REST actions that enabled webhooks)."""
        with self._lock:
            hooks = [w for w in self.state.webhooks.get(sid, [])
                     if w["target"] == "webhook" and event in w["configuration"]["filters"]]
        sent = []
        for hook in hooks:
            sent.append(await self._deliver(hook["configuration"]["url"],
                                            {**params, "WebhookSid": hook["sid"],
                                             "WebhookType": "webhook"}, retries=True))
        return sent + await self._fire_service(event, params)

    async def _fire_service(self, event: str, params: Dict[str, str]) -> List[Delivery]:
        with self._lock:
            hook = self.state.service_webhook
            if hook is None or event not in hook["filters"]:
                return []
            url = hook["url"]
        return [await self._deliver(url, {**params, "EventType": event}, retries=True)]

    async def _deliver(self, url: str, params: Dict[str, str], *, token: Optional[str] = None,
                       signature: Optional[str] = None, retries: bool = True) -> Delivery:
        """POST a signed webhook; retried like Twilio (docs "Webhooks: Connection Overrides"):
        ``rc`` more tries (default 1, at most 5) for the failures the retry policy ``rp``
        names (default ``ct``: the connection failed; ``rt``: no answer in time; ``5xx``;
        ``4xx``; ``all``), set per URL in its fragment (``https://x/events#rc=3&rp=all``).
        The fragment is neither sent nor signed; every try carries the same
        ``I-Twilio-Idempotency-Token`` (and ``RetryCount`` when the event has one)."""
        url, _, fragment = url.partition("#")
        options = dict(part.split("=", 1) for part in fragment.split("&") if "=" in part)
        extra = min(5, max(0, int(options.get("rc", "1")))) if retries else 0
        policy = set(options.get("rp", "ct").split(","))
        token = token or secrets.token_hex(16)
        delivery = None
        for attempt in range(extra + 1):
            tried = dict(params)
            if "RetryCount" in tried:
                tried["RetryCount"] = str(attempt)
            delivery, failure = await self._post_once(url, tried, token, signature)
            retry = failure in policy or "all" in policy
            if failure is None or not retry:
                break
        assert delivery is not None
        return delivery

    async def _post_once(self, url: str, params: Dict[str, str], token: str,
                         signature: Optional[str]) -> Tuple[Delivery, Optional[str]]:
        """One try; returns the delivery and the kind of failure (None: a 2xx answer)."""
        params = {k: v for k, v in params.items() if v is not None}
        headers = {
            "X-Twilio-Signature": signature if signature is not None else sign(
                self.auth_token, url, params),
            "I-Twilio-Idempotency-Token": token,
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            "User-Agent": "TwilioProxy/1.1",
        }
        target = url
        with self._lock:
            for public, actual in sorted(self.routes.items(), key=lambda r: -len(r[0])):
                if url.startswith(public):
                    target = actual + url[len(public):]
                    break
        failure: Optional[str] = None
        try:
            async with ClientSession(timeout=ClientTimeout(total=self.webhook_timeout),
                                     trust_env=False) as http:
                async with http.post(target, data=params, headers=headers) as response:
                    delivery = Delivery(url, params, token, response.status,
                                        await response.text())
            if response.status >= 500:
                failure = "5xx"
            elif response.status >= 400:
                failure = "4xx"
        except asyncio.TimeoutError as error:
            delivery = Delivery(url, params, token, 0, f"timeout: {error}")
            failure = "rt"
        except Exception as error:  # noqa: BLE001 - recorded as a failed delivery
            delivery = Delivery(url, params, token, 0, f"{type(error).__name__}: {error}")
            failure = "ct"
        with self._lock:
            self.deliveries.append(delivery)
        return delivery, failure

    # ------------------------------------------------------------------ Calls

    def _calls_api(self, method: str, rest: List[str], one: Dict[str, str],
                   fields: Dict[str, List[str]]) -> Tuple:
        account, rest = rest[0], rest[1:]
        if account != self.account_sid:
            raise _TwilioError(404, 20404, "Account not found")
        base = f"/2010-04-01/Accounts/{account}/Calls"
        if rest == ["Calls.json"]:
            if method == "POST":
                for required in ("To", "From"):
                    if not one.get(required):
                        raise _TwilioError(400, 21201, f"No '{required}' number is specified")
                if not (one.get("Url") or one.get("Twiml") or one.get("ApplicationSid")):
                    raise _TwilioError(400, 21205, "Url, Twiml or ApplicationSid is required")
                return (201, _public(self._create_call(one, fields, base)))
            if method == "GET":
                items = list(self.state.calls.values())
                return (200, _page("calls", items, f"{base}.json",
                                   page_size(one, 1000), api2010=True))
        if len(rest) == 2 and rest[0] == "Calls" and rest[1].endswith(".json"):
            call = self.state.calls.get(rest[1][:-5])
            if call is None:
                raise _TwilioError(404, 20404, "Call not found")
            if method == "GET":
                return (200, _public(call))
            if method == "POST":
                jobs = []
                if one.get("Url") or one.get("Twiml"):
                    call["_instructions"] = one.get("Url") or one.get("Twiml")
                status = one.get("Status")
                if status == "completed" and call["status"] in ("in-progress", "ringing",
                                                                "queued"):
                    jobs.append(self._apply_call(call["sid"], "completed", {}))
                elif status == "canceled" and call["status"] in ("queued", "ringing"):
                    jobs.append(self._apply_call(call["sid"], "canceled", {}))
                elif status:
                    raise _TwilioError(400, 21220, f"Cannot set {status} on a "
                                                   f"{call['status']} call")
                return (200, _public(call), jobs)
            if method == "DELETE":
                del self.state.calls[call["sid"]]
                return (204, {})
        raise _TwilioError(404, 20404, "Not found")

    def _create_call(self, one: Dict[str, str], fields: Dict[str, List[str]],
                     base: str) -> Dict[str, Any]:
        sid = _sid("CA")
        now = format_datetime(_now())
        call = {
            "sid": sid, "date_created": now, "date_updated": now, "parent_call_sid": None,
            "account_sid": self.account_sid, "to": one["To"], "to_formatted": one["To"],
            "from": one["From"], "from_formatted": one["From"], "phone_number_sid": None,
            "status": "queued", "start_time": None, "end_time": None, "duration": None,
            "price": None, "price_unit": "USD", "direction": "outbound-api",
            "answered_by": None, "api_version": "2010-04-01", "forwarded_from": None,
            "group_sid": None, "caller_name": None, "queue_time": "0", "trunk_sid": None,
            "uri": f"{base}/{sid}.json",
            "subresource_uris": {"notifications": f"{base}/{sid}/Notifications.json",
                                 "recordings": f"{base}/{sid}/Recordings.json"},
            "_instructions": one.get("Url") or one.get("Twiml"),
            "_status_callback": one.get("StatusCallback"),
            "_status_callback_method": one.get("StatusCallbackMethod", "POST"),
            "_status_callback_events": fields.get("StatusCallbackEvent") or ["completed"],
        }
        self.state.calls[sid] = call
        return call

    async def _advance_call(self, sid: str, status: str, extra: Dict[str, str]
                            ) -> List[Delivery]:
        return await self._apply_call(sid, status, extra)

    def _apply_call(self, sid: str, status: str, extra: Dict[str, str]) -> Any:
        """Change the call now; returns the coroutine that sends the status callback."""
        event_of = {"initiated": "initiated", "ringing": "ringing",
                    "in-progress": "answered", "completed": "completed", "busy": "completed",
                    "no-answer": "completed", "failed": "completed", "canceled": "completed"}
        with self._lock:
            call = self.state.calls.get(sid)
            if call is None:
                raise KeyError(f"No call {sid}")
            now = _now()
            call["status"] = status
            call["date_updated"] = format_datetime(now)
            if status == "in-progress" and call["start_time"] is None:
                call["start_time"] = format_datetime(now)
            if event_of.get(status) == "completed":
                call["end_time"] = format_datetime(now)
                call["duration"] = call.get("duration") or "0"
            url = call["_status_callback"]
            wanted = event_of.get(status) in call["_status_callback_events"]
            params = {"AccountSid": self.account_sid, "CallSid": sid, "CallStatus": status,
                      "To": call["to"], "From": call["from"], "Direction": "outbound-api",
                      "ApiVersion": "2010-04-01", "Timestamp": format_datetime(now),
                      "CallbackSource": "call-progress-events",
                      "SequenceNumber": str(call.setdefault("_sequence", 0)), **extra}
            if event_of.get(status) == "completed":
                params["CallDuration"] = call["duration"]
            call["_sequence"] += 1

        async def fire() -> List[Delivery]:
            if not url or not wanted:
                return []
            return [await self._deliver(url, params)]

        return fire()


def _check_attributes(one: Dict[str, str], limit: int) -> None:
    """Attributes must be JSON and at most ``limit`` bytes (Twilio answers 400)."""
    raw = one.get("Attributes")
    if raw is None:
        return
    if len(raw.encode("utf-8")) > limit:
        raise _TwilioError(400, 50201, f"Attributes exceed the {limit // 1024} KB limit")
    try:
        json.loads(raw)
    except ValueError:
        raise _TwilioError(400, 50201, "Attributes must be valid JSON") from None


def _check_transition(previous: str, state: str) -> None:
    """active <-> inactive -> closed; a closed Conversation stays closed."""
    if state not in CONVERSATION_STATES:
        raise _TwilioError(400, 20001, f"Invalid State {state!r}")
    if previous == "closed" and state != "closed":
        raise _TwilioError(400, 50355, f"Conversation state can not be changed from "
                                       f"closed to {state}")


def _error(status: int, code: int, message: str,
           headers: Optional[Dict[str, str]] = None) -> web.Response:
    return web.json_response({"code": code, "message": message,
                              "more_info": f"https://www.twilio.com/docs/errors/{code}",
                              "status": status}, status=status, headers=headers)


def page_size(one: Dict[str, str], maximum: int = MAX_PAGE_SIZE) -> int:
    """The ``PageSize`` asked for (default 50); outside ``1..maximum`` (the documented
    maximum of the list) Twilio answers 400."""
    raw = one.get("PageSize", "50")
    try:
        size = int(raw)
    except ValueError:
        raise _TwilioError(400, 20001, f"Invalid PageSize {raw!r}") from None
    if not 1 <= size <= maximum:
        raise _TwilioError(400, 20001, f"PageSize must be between 1 and {maximum}, "
                                       f"got {size}")
    return size


def _page(key: str, items: List[Dict[str, Any]], path: str, page_size: int,
          api2010: bool = False) -> Dict[str, Any]:
    shown = [{k: v for k, v in item.items() if not k.startswith("_")}
             for item in items[:max(1, page_size)]]
    if api2010:
        return {key: shown, "page": 0, "page_size": page_size, "start": 0,
                "end": max(0, len(shown) - 1), "first_page_uri": f"{path}?Page=0",
                "next_page_uri": None, "previous_page_uri": None, "uri": path}
    host = CONVERSATIONS_HOST
    return {key: shown, "meta": {
        "page": 0, "page_size": page_size, "first_page_url": f"{host}{path}?PageSize="
        f"{page_size}&Page=0", "previous_page_url": None, "url": f"{host}{path}",
        "next_page_url": None, "key": key}}


def _public(item: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in item.items() if not k.startswith("_")}


def public_path(url: str) -> str:
    """The path of a URL (helper for tests)."""
    return urlsplit(url).path
