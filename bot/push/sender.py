"""The sender: POSTs the push outbox to the agents' push services, with retries.

Runs as one task in each Rasa server process (started by the agent console channel,
:mod:`bot.push.routes`). Each pass takes the due rows (``queued``, ``next_attempt_at``
reached, no live claim) and claims each with a conditional UPDATE (``sending``, this
process, a lease of ``PUSH_LEASE`` seconds): of two processes one wins, so a row is sent by
one process only. It wakes on every change-feed batch (a handoff or transfer committed in
any process, :func:`bot.live.change_feed`) and otherwise polls every ``PUSH_POLL_INTERVAL``.

Per row: the device's subscription is read (gone, or the agent turned push off:
``skipped``); the payload is encrypted for the device (RFC 8291 ``aes128gcm``, pywebpush's
:class:`~pywebpush.WebPusher`) and the request signed with the VAPID key (RFC 8292,
py-vapid; ``aud`` = the endpoint's origin, ``exp`` 12 h, ``sub`` = ``VAPID_SUBJECT``), both
in a worker thread; then it is POSTed with aiohttp with ``TTL`` (``PUSH_TTL``), ``Urgency``
(from the ticket priority) and ``Topic`` (the ticket: a newer push of the same ticket
replaces one still waiting at the service). The answer:

* 200/201/202: ``sent``;
* 404/410: the subscription expired: the device is deleted, the row is ``gone``;
* 429, 5xx, a network error or timeout: back to ``queued`` after ``PUSH_BACKOFF_BASE``
  doubling up to ``PUSH_BACKOFF_MAX`` (a ``Retry-After`` in seconds is honoured), until
  ``PUSH_MAX_ATTEMPTS`` or the TTL has passed: ``failed``;
* any other status (400, 401, 403, 413): ``failed``.

Nothing here blocks the event loop: HTTP and the database are asynchronous, the crypto runs
in a thread.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from datetime import timedelta
from typing import Any, Dict, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit

import aiohttp
from py_vapid import Vapid
from pywebpush import WebPusher
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import db
from bot.push.models import PushOutbox, PushPreference, PushSubscription

__all__ = ["PushSender", "encrypt_and_sign"]

logger = logging.getLogger(__name__)

BATCH = 50
CONCURRENCY = 8  # POSTs in flight per process
VAPID_LIFETIME = 12 * 3600
SENT = (200, 201, 202)
GONE = (404, 410)


def encrypt_and_sign(subscription: Mapping[str, Any], payload: bytes, vapid: Vapid,
                     subject: str, ttl: int, urgency: str,
                     topic: Optional[str]) -> Tuple[bytes, Dict[str, str]]:
    """The encrypted body and the headers of one push (CPU work: run it in a thread).

    Args:
        subscription: ``{"endpoint", "keys": {"p256dh", "auth"}}``.
        payload: The JSON to deliver.
        vapid: The server's VAPID key.
        subject: ``VAPID_SUBJECT``.
        ttl: Seconds the service may keep it.
        urgency: ``very-low``, ``low``, ``normal`` or ``high``.
        topic: Replaces a waiting push of the same topic (at most 32 base64url characters).
    """
    body = WebPusher(dict(subscription)).encode(payload, "aes128gcm")["body"]
    url = urlsplit(str(subscription["endpoint"]))
    claims = {"sub": subject, "aud": f"{url.scheme}://{url.netloc}",
              "exp": int(time.time()) + VAPID_LIFETIME}
    headers = {key: str(value) for key, value in vapid.sign(claims).items()}
    headers.update({"Content-Encoding": "aes128gcm", "Content-Type": "application/octet-stream",
                    "TTL": str(int(ttl)), "Urgency": urgency})
    if topic:
        headers["Topic"] = "".join(c for c in topic if c.isalnum() or c in "-_")[:32]
    return body, headers


class PushSender:
    """Delivers the push outbox of one support database.

    Args:
        engine: The support database.
        push: The ``PushSettings`` (``get_settings().push``).
        owner: This process's name in claims.
        feed_url: Wake on this database's change feed (None: poll only).
    """

    def __init__(self, engine: AsyncEngine, push: Any, *, owner: Optional[str] = None,
                 feed_url: Optional[str] = None) -> None:
        self._engine = engine
        self._sessions = db.session_factory(engine)
        self._push = push
        self._vapid = Vapid.from_string(push.vapid_private_key)
        self.owner = (owner or f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:6]}")[:64]
        self._feed_url = feed_url
        self._feed: Any = None
        self._http: Optional[aiohttp.ClientSession] = None
        self._task: Optional["asyncio.Task[None]"] = None
        self._wake = asyncio.Event()
        self._stopping = False

    # ------------------------------------------------------------- lifecycle

    def start(self) -> "asyncio.Task[None]":
        """Run :meth:`run` in the background (idempotent)."""
        if self._task is None or self._task.done():
            self._stopping = False
            if self._feed_url and self._feed is None:
                from bot.live import change_feed

                self._feed = change_feed(self._feed_url)
                self._feed.subscribe(self._on_changes)
            self._task = asyncio.get_running_loop().create_task(self.run(), name="push-sender")
        return self._task

    async def _on_changes(self, _changes: Any) -> None:
        self.wake()

    def wake(self) -> None:
        """Look for due pushes now instead of at the next poll."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop after the push being sent; leave the change feed; close HTTP."""
        self._stopping = True
        self._wake.set()
        if self._feed is not None:
            feed, self._feed = self._feed, None
            await feed.unsubscribe(self._on_changes)
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, self._push.timeout + 5)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self._task.cancel()
            self._task = None
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def run(self) -> None:
        """Send due pushes until :meth:`stop` (errors are logged, the loop goes on)."""
        while not self._stopping:
            self._wake.clear()
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a database hiccup must not end the sender
                logger.exception("Push sender pass failed")
            try:
                await asyncio.wait_for(self._wake.wait(), self._push.poll_interval)
            except asyncio.TimeoutError:
                pass

    # ---------------------------------------------------------------- passes

    async def run_once(self) -> int:
        """One pass over the due rows (sent concurrently).

        Returns:
            How many rows this pass finished or re-queued.
        """
        ids = await self._claim()
        if not ids:
            return 0
        if self._stopping:
            for row_id in ids:
                await self._release(row_id)
            return 0
        limit = asyncio.Semaphore(CONCURRENCY)

        async def one(row_id: int) -> None:
            async with limit:
                await self._process(row_id)

        await asyncio.gather(*(one(row_id) for row_id in ids))
        return len(ids)

    async def _claim(self) -> List[int]:
        return await db.claim_due_rows(self._sessions, PushOutbox.__table__, self.owner,
                                       self._push.lease, BATCH)

    async def _process(self, row_id: int) -> None:
        async with db.read_session(self._sessions) as session:
            row = await session.get(PushOutbox, row_id)
            if row is None:
                return
            subscription = await session.get(PushSubscription, row.subscription_id) \
                if row.subscription_id else None
            preference = await session.get(PushPreference, row.agent_id)
            item = {"id": row.id, "kind": row.kind, "ticket": row.ticket,
                    "payload": dict(row.payload or {}), "urgency": row.urgency,
                    "attempts": int(row.attempts or 0), "created_at": row.created_at}
            device = None if subscription is None else {
                "id": subscription.id, "endpoint": subscription.endpoint,
                "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth}}
            enabled = preference is not None and preference.enabled
        if device is None or (not enabled and item["kind"] != "test"):
            await self._finish(row_id, "skipped",
                               "device removed" if device is None else "push turned off")
            return
        age = (db.utcnow() - item["created_at"]).total_seconds()
        ttl = max(0, int(self._push.ttl - age))
        if age > self._push.ttl:  # queued while no sender ran, or retried past it
            await self._finish(row_id, "failed", "expired (PUSH_TTL passed)")
            return
        try:
            body, headers = await asyncio.to_thread(
                encrypt_and_sign, device, json.dumps(item["payload"]).encode("utf-8"),
                self._vapid, self._push.vapid_subject, ttl, item["urgency"], item["ticket"])
        except Exception as error:  # noqa: BLE001 - a bad row must not stop the others
            logger.exception("Push %s cannot be encrypted", row_id)
            await self._finish(row_id, "failed", f"encrypt: {error}")
            return
        try:
            status, retry_after, text = await self._post(device["endpoint"], body, headers)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
            await self._retry(row_id, item["attempts"], f"{type(error).__name__}: {error}",
                              None, None)
            return
        if status in SENT:
            await self._finish(row_id, "sent", None, code=status, device=device["id"])
        elif status in GONE:
            logger.info("Push subscription %s expired (%s): deleted", device["id"], status)
            await self._gone(row_id, device["id"], status)
        elif status == 429 or status >= 500:
            await self._retry(row_id, item["attempts"], f"HTTP {status}: {text[:120]}",
                              status, retry_after)
        else:
            logger.warning("Push %s refused by the push service: %s %s", row_id, status,
                           text[:200])
            await self._finish(row_id, "failed", f"HTTP {status}: {text[:200]}", code=status)

    async def _post(self, endpoint: str, body: bytes,
                    headers: Dict[str, str]) -> Tuple[int, Optional[float], str]:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._push.timeout))
        async with self._http.post(endpoint, data=body, headers=headers,
                                   allow_redirects=False) as response:
            text = (await response.content.read(2048)).decode("utf-8", "replace")
            retry_after: Optional[float] = None
            try:
                retry_after = float(response.headers.get("Retry-After", ""))
            except ValueError:
                pass
            return response.status, retry_after, text

    # ---------------------------------------------------------------- writes

    async def _finish(self, row_id: int, status: str, error: Optional[str], *,
                      code: Optional[int] = None, device: Optional[int] = None) -> None:
        values: Dict[str, Any] = {"status": status, "claimed_by": None, "claimed_until": None,
                                  "last_error": (error or None) and error[:255],
                                  "response_status": code}
        now = db.utcnow()
        if status == "sent":
            values["sent_at"] = now
        async with db.write_session(self._sessions) as session:
            ok = await self._owned_update(session, row_id, values)
            if ok and device is not None:
                await session.execute(update(PushSubscription).where(
                    PushSubscription.id == device).values(last_success_at=now)
                    .execution_options(synchronize_session=False))

    async def _gone(self, row_id: int, device: int, status: int) -> None:
        async with db.write_session(self._sessions) as session:
            ok = await self._owned_update(session, row_id, {
                "status": "gone", "claimed_by": None, "claimed_until": None,
                "last_error": f"HTTP {status}: subscription expired", "response_status": status})
            if ok:
                await session.execute(delete(PushSubscription).where(
                    PushSubscription.id == device).execution_options(synchronize_session=False))

    async def _retry(self, row_id: int, attempts: int, error: str, status: Optional[int],
                     retry_after: Optional[float]) -> None:
        if attempts >= self._push.max_attempts:
            logger.warning("Push %s failed %d times, giving up: %s", row_id, attempts, error)
            await self._finish(row_id, "failed", error, code=status)
            return
        wait = min(self._push.backoff_max,
                   self._push.backoff_base * 2 ** max(0, attempts - 1))
        if retry_after is not None:
            wait = min(self._push.backoff_max, max(wait, retry_after))
        logger.info("Push %s not sent (attempt %d), next try in %.1f s: %s", row_id, attempts,
                    wait, error)
        async with db.write_session(self._sessions) as session:
            await self._owned_update(session, row_id, {
                "status": "queued", "claimed_by": None, "claimed_until": None,
                "next_attempt_at": db.utcnow() + timedelta(seconds=wait),
                "last_error": error[:255], "response_status": status})

    async def _release(self, row_id: int) -> None:
        o = PushOutbox.__table__.c
        async with db.write_session(self._sessions) as session:
            await self._owned_update(session, row_id, {
                "status": "queued", "claimed_by": None, "claimed_until": None,
                "attempts": o.attempts - 1})

    async def _owned_update(self, session: Any, row_id: int, values: Dict[str, Any]) -> bool:
        o = PushOutbox.__table__.c
        result = await session.execute(
            update(PushOutbox.__table__)
            .where(o.id == row_id, o.claimed_by == self.owner, o.status == "sending")
            .values(**values).execution_options(synchronize_session=False))
        return result.rowcount == 1
