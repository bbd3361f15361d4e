"""The sender: delivers the outbox over SMTP (aiosmtplib), with retries and back-off.

Runs as one task in each Rasa server process (started by :mod:`bot.mail.channel`). Each
pass takes the due rows (``queued``, ``next_attempt_at`` reached) and claims each with a
conditional UPDATE (``sending``, this process, a lease of ``MAIL_LEASE`` seconds): of two
processes one wins, so a row is sent by one process only. Then, per row:

* an address that unsubscribed: ``suppressed`` (a transcript the customer asked for is sent);
* "you have a reply": ``skipped`` when a device of the customer received the reply (its
  status is ``delivered``/``read``), the customer is connected now (:meth:`bot.live.LiveBus.online`),
  or a newer reply email of the conversation is queued (that one lists every unseen reply);
* otherwise it is sent; ``sent`` only after the SMTP server accepted it. A temporary failure
  (server down, timeout, 4xx) puts it back to ``queued`` with ``next_attempt_at`` doubled from
  ``MAIL_BACKOFF_BASE`` up to ``MAIL_BACKOFF_MAX``; a permanent refusal (5xx for the
  recipient or the data) or the ``MAIL_MAX_ATTEMPTS``-th failure is ``failed``.

Rows survive restarts: unsent rows are sent by the next process that runs. A process killed
between the server's "250 OK" and the commit of ``sent`` leaves the row ``sending``; when its
lease ends it is sent again with the same ``Message-ID`` (the only window for a duplicate,
docs/email.md). Nothing here blocks the event loop: SMTP and the database are asynchronous.
"""
from __future__ import annotations

import asyncio
import logging
import os
import uuid
from datetime import timedelta
from email.message import EmailMessage
from types import SimpleNamespace
from typing import Any, Awaitable, Callable, List, Optional, Tuple

import aiosmtplib
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import db
from bot.mail.compose import build_message
from bot.mail.models import MailOptOut, MailOutbox
from bot.support.models import ChatMessage

__all__ = ["MailSender", "PermanentFailure", "smtp_send"]

logger = logging.getLogger(__name__)

Online = Callable[[str], Awaitable[bool]]
Send = Callable[[EmailMessage, Any], Awaitable[None]]
BATCH = 20


class PermanentFailure(Exception):
    """The server refused the email for good (it will not be tried again)."""


async def smtp_send(message: EmailMessage, mail: Any) -> None:
    """Send one message with the ``SMTP_*`` settings.

    Raises:
        PermanentFailure: 5xx for the recipient or the data.
        aiosmtplib.SMTPException, OSError: temporary (retried).
    """
    starttls = {"auto": None, "true": True, "false": False}[mail.smtp_starttls]
    try:
        await aiosmtplib.send(
            message, hostname=mail.smtp_host, port=mail.smtp_port, username=mail.smtp_user,
            password=mail.smtp_password, use_tls=mail.smtp_tls,
            start_tls=None if mail.smtp_tls else starttls, timeout=mail.smtp_timeout,
        )
    except aiosmtplib.SMTPRecipientsRefused as error:
        codes = [getattr(r, "code", 0) for r in error.recipients]
        if codes and all(code >= 500 for code in codes):
            raise PermanentFailure(f"recipient refused: {codes}") from error
        raise
    except aiosmtplib.SMTPDataError as error:
        if error.code >= 500:
            raise PermanentFailure(f"message refused: {error.code} {error.message}") from error
        raise


async def _default_online(conversation_id: str) -> bool:
    from bot.live import bus

    return await bus().online(conversation_id)


class MailSender:
    """Delivers the outbox of one support database.

    Args:
        engine: The support database.
        mail: The ``MailSettings`` (``get_settings().mail``).
        online: ``await online(conversation_id)``: whether the customer is connected
            (default: the live bus's presence, every process with Redis).
        send: ``await send(message, mail)`` (default: :func:`smtp_send`).
        owner: This process's name in claims.
    """

    def __init__(self, engine: AsyncEngine, mail: Any, *, online: Optional[Online] = None,
                 send: Optional[Send] = None, owner: Optional[str] = None) -> None:
        self._engine = engine
        self._sessions = db.session_factory(engine)
        self._mail = mail
        self._online = online or _default_online
        self._send = send or smtp_send
        self.owner = (owner or f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:6]}")[:64]
        self._task: Optional["asyncio.Task[None]"] = None
        self._wake = asyncio.Event()
        self._stopping = False

    # ------------------------------------------------------------- lifecycle

    def start(self) -> "asyncio.Task[None]":
        """Run :meth:`run` in the background (idempotent)."""
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self.run(), name="mail-sender")
        return self._task

    def wake(self) -> None:
        """Look for due emails now instead of at the next poll."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop after the email being sent (claims of unsent rows are given back)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, self._mail.smtp_timeout + 5)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self._task.cancel()
            self._task = None

    async def run(self) -> None:
        """Send due emails until :meth:`stop` (errors are logged, the loop goes on)."""
        while not self._stopping:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a database hiccup must not end the sender
                logger.exception("Mail sender pass failed")
            try:
                await asyncio.wait_for(self._wake.wait(), self._mail.poll_interval)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    # ---------------------------------------------------------------- passes

    async def run_once(self) -> int:
        """One pass over the due rows.

        Returns:
            How many rows this pass finished or re-queued.
        """
        done = 0
        for row_id in await self._claim():
            if self._stopping:
                await self._release(row_id)
                continue
            await self._process(row_id)
            done += 1
        return done

    async def _claim(self) -> List[int]:
        return await db.claim_due_rows(self._sessions, MailOutbox.__table__, self.owner,
                                       self._mail.lease, BATCH)

    async def _process(self, row_id: int) -> None:
        async with db.read_session(self._sessions) as session:
            row = await session.get(MailOutbox, row_id)
            if row is None:
                return
            opted_out = await session.get(MailOptOut, row.to_address) is not None
            skip: Optional[str] = None
            email = SimpleNamespace(
                id=row.id, kind=row.kind, to_address=row.to_address, to_name=row.to_name,
                ticket=row.ticket, conversation_id=row.conversation_id,
                params=dict(row.params or {}), attempts=int(row.attempts or 0))
            if opted_out and row.kind != "transcript":
                skip = "unsubscribed"
            elif row.kind == "agent_reply":
                skip, texts = await self._reply_check(session, row)
                if skip is None and texts:
                    email.params["text"] = "\n\n".join(texts)
        if skip is not None:
            await self._finish(row_id, "suppressed" if skip == "unsubscribed" else "skipped",
                               skip)
            return
        try:
            message = build_message(email, mail_from=self._mail.mail_from,
                                    app_link_base=self._mail.app_link_base,
                                    public_url=self._mail.public_url)
        except Exception as error:  # noqa: BLE001 - a bad row must not stop the others
            logger.exception("Email %s cannot be composed", row_id)
            await self._finish(row_id, "failed", f"compose: {error}")
            return
        attempts = email.attempts
        row = email
        if row.kind == "agent_reply" and row.conversation_id and await self._online(
                row.conversation_id):
            await self._finish(row_id, "skipped", "customer connected")
            return
        try:
            await self._send(message, self._mail)
        except PermanentFailure as error:
            logger.warning("Email %s to %s refused: %s", row_id, row.to_address, error)
            await self._finish(row_id, "failed", str(error))
            return
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as error:
            await self._retry(row_id, attempts, f"{type(error).__name__}: {error}")
            return
        await self._finish(row_id, "sent", None, message_id=str(message["Message-ID"]))

    async def _reply_check(self, session: Any, row: MailOutbox) -> Tuple[Optional[str], List[str]]:
        """Why a "you have a reply" email is not needed (None: it is), and the unseen
        agent replies it tells of (oldest first)."""
        o = MailOutbox
        newer = (await session.execute(select(o.id).where(
            o.kind == "agent_reply", o.conversation_id == row.conversation_id, o.id > row.id,
            o.status.in_(("queued", "sending"))).limit(1))).first()
        if newer is not None:
            return "superseded by a newer reply email", []
        message = await session.get(ChatMessage, row.message_id) if row.message_id else None
        if message is not None and message.status in ("delivered", "read"):
            return "seen in the app", []
        if message is None:
            return None, []
        last_sent = (await session.execute(select(o.message_id).where(
            o.kind == "agent_reply", o.conversation_id == row.conversation_id,
            o.status == "sent").order_by(o.id.desc()).limit(1))).scalar_one_or_none()
        texts = (await session.execute(
            select(ChatMessage.text).where(
                ChatMessage.conversation_pk == message.conversation_pk,
                ChatMessage.sender == "agent", ChatMessage.status == "sent",
                ChatMessage.id > int(last_sent or 0), ChatMessage.id <= message.id)
            .order_by(ChatMessage.id).limit(10))).scalars().all()
        return None, [text for text in texts if (text or "").strip()]

    # ---------------------------------------------------------------- writes

    async def _finish(self, row_id: int, status: str, error: Optional[str],
                      message_id: Optional[str] = None) -> None:
        values: dict = {"status": status, "claimed_by": None, "claimed_until": None,
                        "last_error": (error or None) and error[:255]}
        if status == "sent":
            values.update(sent_at=db.utcnow(), smtp_message_id=(message_id or "")[:255] or None)
        await self._update(row_id, values)

    async def _retry(self, row_id: int, attempts: int, error: str) -> None:
        if attempts >= self._mail.max_attempts:
            logger.warning("Email %s failed %d times, giving up: %s", row_id, attempts, error)
            await self._finish(row_id, "failed", error)
            return
        wait = min(self._mail.backoff_max, self._mail.backoff_base * 2 ** max(0, attempts - 1))
        logger.info("Email %s not sent (attempt %d), next try in %.1f s: %s", row_id,
                    attempts, wait, error)
        await self._update(row_id, {
            "status": "queued", "claimed_by": None, "claimed_until": None,
            "next_attempt_at": db.utcnow() + timedelta(seconds=wait), "last_error": error[:255]})

    async def _release(self, row_id: int) -> None:
        o = MailOutbox.__table__.c
        await self._update(row_id, {"status": "queued", "claimed_by": None,
                                    "claimed_until": None, "attempts": o.attempts - 1})

    async def _update(self, row_id: int, values: dict) -> bool:
        o = MailOutbox.__table__.c
        async with db.write_session(self._sessions) as session:
            result = await session.execute(
                update(MailOutbox.__table__)
                .where(o.id == row_id, o.claimed_by == self.owner, o.status == "sending")
                .values(**values).execution_options(synchronize_session=False))
            return result.rowcount == 1
