"""The async Twilio REST client: the real ``twilio`` library on an aiohttp transport.

:class:`RedirectingHttpClient` implements twilio's :class:`~twilio.http.AsyncHttpClient`
with one pooled :class:`aiohttp.ClientSession` (created lazily inside the running loop),
a total timeout per request, repeated form fields for list parameters, and, when
``api_base`` is set (``TWILIO_API_BASE``), every ``https://*.twilio.com`` URL rewritten
to that base — tests point it at the local fake in ``tests/twilio/fake_twilio.py``.

:func:`with_retries` runs one REST call with exponential backoff and full jitter on
429, 5xx, timeouts and connection errors (:func:`is_retryable`). A 429 or 503 with a
``Retry-After`` header (seconds or an HTTP date, :func:`parse_retry_after`) waits that long
instead, at most ``RetryPolicy.retry_after_max`` (``TWILIO_RETRY_AFTER_MAX``): the transport
records the header of the try's answer in a context variable that only that try sees
(concurrent calls share the transport). Nothing blocks the loop.
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
import random
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http import AsyncHttpClient
from twilio.http.response import Response
from twilio.rest import Client

__all__ = ["RedirectingHttpClient", "RetryPolicy", "TwilioApi", "is_retryable",
           "parse_retry_after", "with_retries"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_AFTER_STATUSES = (429, 503)
_RETRY_AFTER: "contextvars.ContextVar[Optional[Dict[str, Optional[str]]]]" = \
    contextvars.ContextVar("twilio_retry_after", default=None)
"""Set by :func:`with_retries` for one try; the transport stores ``Retry-After`` in it."""


def parse_retry_after(value: Optional[str], now: Optional[datetime] = None) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header: delta seconds (``"120"``) or an HTTP
    date (``"Wed, 21 Oct 2026 07:28:00 GMT"``; a past date is 0). None when absent or
    unreadable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if moment is None:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        seconds = (moment - (now or datetime.now(timezone.utc))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def _record_retry_after(status: int, headers: Any) -> None:
    holder = _RETRY_AFTER.get()
    if holder is not None:
        value = headers.get("Retry-After") if status in RETRY_AFTER_STATUSES else None
        holder["retry_after"] = value


class RedirectingHttpClient(AsyncHttpClient):
    """An async HTTP client for the twilio library (aiohttp, optional base URL rewrite).

    Args:
        timeout: Total seconds per request.
        api_base: ``scheme://host[:port]`` replacing the scheme and host of every
            ``*.twilio.com`` URL (None: talk to Twilio).
    """

    def __init__(self, timeout: float = 10.0, api_base: Optional[str] = None) -> None:
        super().__init__(logger=logging.getLogger("twilio.http_client"), is_async=True,
                         timeout=timeout)
        if api_base is not None:
            parts = urlsplit(api_base)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"TWILIO_API_BASE must be an http(s) URL, got {api_base!r}.")
        self.api_base = api_base.rstrip("/") if api_base else None
        self._session: Optional[aiohttp.ClientSession] = None

    def rewrite(self, url: str) -> str:
        """The URL actually requested (``api_base`` replaces Twilio's host)."""
        if not self.api_base:
            return url
        parts = urlsplit(url)
        if not (parts.hostname or "").endswith("twilio.com"):
            return url
        base = urlsplit(self.api_base)
        path = base.path.rstrip("/") + parts.path
        return urlunsplit((base.scheme, base.netloc, path, parts.query, parts.fragment))

    @staticmethod
    def _form(data: Optional[Dict[str, object]]) -> Optional[List[Tuple[str, str]]]:
        if not data:
            return None
        fields: List[Tuple[str, str]] = []
        for key, value in data.items():
            for item in value if isinstance(value, (list, tuple)) else [value]:
                fields.append((key, str(item)))
        return fields

    async def request(self, method: str, url: str, params: Optional[Dict[str, object]] = None,
                      data: Optional[Dict[str, object]] = None,
                      headers: Optional[Dict[str, str]] = None,
                      auth: Optional[Tuple[str, str]] = None, timeout: Optional[float] = None,
                      allow_redirects: bool = False) -> Response:
        """Make one HTTP request (see :class:`twilio.http.HttpClient`)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(trust_env=False)
        total = timeout if timeout is not None else self.timeout
        form = self._form(data)
        query = self._form(params)
        async with self._session.request(
            method.upper(), self.rewrite(url), params=query, data=form,
            headers=headers, auth=aiohttp.BasicAuth(*auth) if auth else None,
            timeout=aiohttp.ClientTimeout(total=total), allow_redirects=allow_redirects,
        ) as response:
            text = await response.text()
            _record_retry_after(response.status, response.headers)
            return Response(response.status, text, dict(response.headers))

    async def close(self) -> None:
        """Close the pooled session."""
        if self._session is not None:
            await self._session.close()
            self._session = None


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry (``TWILIO_MAX_ATTEMPTS``, ``TWILIO_BACKOFF_*``,
    ``TWILIO_RETRY_AFTER_MAX``)."""

    attempts: int = 5
    base: float = 0.5
    cap: float = 30.0
    retry_after_max: float = 60.0

    def delay(self, attempt: int, retry_after: Optional[float] = None) -> float:
        """Seconds before try ``attempt + 1``: full jitter over ``min(cap, base·2^attempt)``.

        A ``Retry-After`` from Twilio (429/503, in seconds) replaces it: the call waits what
        Twilio asked for, but never more than ``retry_after_max``.
        """
        if retry_after is not None:
            return max(0.0, min(self.retry_after_max, retry_after))
        ceiling = min(self.cap, self.base * (2 ** attempt))
        return random.uniform(0, ceiling)


class RetriesExhausted(Exception):
    """Every try failed; ``attempts`` were made and ``error`` is the last failure."""

    def __init__(self, attempts: int, error: BaseException) -> None:
        super().__init__(f"{attempts} tries failed; last: {describe(error)}")
        self.attempts = attempts
        self.error = error


def http_status(error: BaseException) -> Optional[int]:
    """The HTTP status of a twilio error (REST calls and page fetches), else None."""
    if isinstance(error, TwilioRestException):
        return int(error.status)
    if isinstance(error, TwilioException) and len(error.args) > 1:
        return getattr(error.args[1], "status_code", None)
    return None


def retry_after_of(error: BaseException, recorded: Optional[str] = None) -> Optional[float]:
    """The ``Retry-After`` seconds of a failed try (429/503 only), else None.

    Args:
        error: The failure.
        recorded: The header the transport saw for this try (the twilio library drops the
            headers of REST errors; page fetches keep their response in ``args[1]``).
    """
    if http_status(error) not in RETRY_AFTER_STATUSES:
        return None
    if recorded is None and isinstance(error, TwilioException) and len(error.args) > 1:
        headers = getattr(error.args[1], "headers", None) or {}
        recorded = headers.get("Retry-After") if hasattr(headers, "get") else None
    return parse_retry_after(recorded)


def describe(error: BaseException) -> str:
    """A short description of a failure, for logs and the dead-letter table."""
    if isinstance(error, TwilioRestException):
        return f"HTTP {error.status} (Twilio code {error.code}): {error.msg}"
    if http_status(error) is not None:
        return f"HTTP {http_status(error)}: {error.args[0]}"
    if isinstance(error, asyncio.TimeoutError):
        return "timeout"
    return f"{type(error).__name__}: {error}"


def is_retryable(error: BaseException) -> bool:
    """True for 429, 5xx, timeouts and connection failures; other errors are final."""
    status = http_status(error)
    if status is not None:
        return status == 429 or status >= 500
    return isinstance(error, (asyncio.TimeoutError, aiohttp.ClientError, ConnectionError))


async def with_retries(call: Callable[[], Awaitable[T]], policy: RetryPolicy,
                       what: str = "Twilio call",
                       sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> T:
    """Run ``call()`` until it succeeds, retrying retryable failures per ``policy``.

    A 429/503 answer with ``Retry-After`` waits that long (at most
    ``policy.retry_after_max``) instead of the jittered backoff.

    Raises:
        RetriesExhausted: The last try failed (or a failure was not retryable).
    """
    attempt = 0
    while True:
        holder: Dict[str, Optional[str]] = {}
        token = _RETRY_AFTER.set(holder)
        try:
            return await call()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - classified below
            attempt += 1
            if not is_retryable(error) or attempt >= policy.attempts:
                raise RetriesExhausted(attempt, error) from error
            retry_after = retry_after_of(error, holder.get("retry_after"))
            delay = policy.delay(attempt - 1, retry_after)
            logger.warning("%s failed (%s), try %d/%d; retrying in %.2f s%s", what,
                           describe(error), attempt, policy.attempts, delay,
                           "" if retry_after is None else
                           f" (Retry-After {retry_after:.0f} s)")
        finally:
            _RETRY_AFTER.reset(token)
        await sleep(delay)


class TwilioApi:
    """The twilio ``Client`` with the async transport (one per process).

    Args:
        account_sid / auth_token: The account's credentials.
        timeout: Seconds per request.
        api_base: Optional base URL replacing Twilio's hosts (tests: the fake).
    """

    def __init__(self, account_sid: str, auth_token: str, timeout: float = 10.0,
                 api_base: Optional[str] = None) -> None:
        if not account_sid or not auth_token:
            raise ValueError("Twilio needs both an account SID and an auth token.")
        self.http = RedirectingHttpClient(timeout=timeout, api_base=api_base)
        self.client = Client(account_sid, auth_token, http_client=self.http)

    @property
    def conversations(self) -> Any:
        """``client.conversations.v1.conversations`` (the Conversations list)."""
        return self.client.conversations.v1.conversations

    async def close(self) -> None:
        """Close the HTTP session."""
        await self.http.close()
