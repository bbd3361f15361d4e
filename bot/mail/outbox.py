"""Queue an email in the caller's open transaction (the transactional outbox).

The support store calls :func:`stage_ticket_confirmation` where it inserts a ticket, the
agent store :func:`stage_agent_reply` where it stores an agent's reply, each inside the
transaction of that change: the email row commits with it or not at all. Nothing is queued
while email is off (``MAIL_ENABLED``), without an address, or (except a transcript the
customer asks for) for an address that unsubscribed.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any, Mapping, Optional

from sqlalchemy import select

from bot.i18n import DEFAULT_LOCALE, conversation_locale
from bot.mail.models import MailOptOut, MailOutbox

__all__ = ["clean_address", "clean_header_text", "mail_enabled", "stage",
           "stage_agent_reply", "stage_ticket_confirmation"]

_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]+")


def clean_address(value: Any) -> Optional[str]:
    """The address lower-cased, or None when it is not one plain ``local@domain`` address
    (no display name, no CR/LF, no second address)."""
    if not isinstance(value, str):
        return None
    address = value.strip().lower()
    if len(address) > 254 or not _ADDRESS.match(address):
        return None
    return address


def clean_header_text(value: Any, limit: int = 200) -> str:
    """Text that is safe in a header: control characters (CR, LF, ...) become one space."""
    return " ".join(_CONTROL.sub(" ", str(value or "")).split())[:limit]


def mail_enabled() -> bool:
    """Whether email is on (``MAIL_ENABLED``; default: on when ``SMTP_HOST`` is set)."""
    from bot.settings import get_settings

    mail = get_settings().mail
    return bool(mail is not None and mail.enabled)


async def opted_out(session: Any, address: str) -> bool:
    """Whether the address unsubscribed."""
    row = (await session.execute(
        select(MailOptOut.address).where(MailOptOut.address == address))).first()
    return row is not None


async def stage(session: Any, *, kind: str, to_address: Any, to_name: Any, now: datetime,
                params: Mapping[str, Any], conversation_id: Optional[str] = None,
                ticket: Optional[str] = None, message_id: Optional[int] = None,
                dedupe_key: Optional[str] = None, delay: float = 0.0,
                force: bool = False) -> Optional[MailOutbox]:
    """Add one outbox row to ``session`` (flushed, in the caller's transaction).

    Args:
        force: Queue even when email is off or the address unsubscribed (a transcript the
            customer explicitly asks for; still needs SMTP to be sent).

    Returns:
        The row, or None when nothing was queued.
    """
    address = clean_address(to_address)
    if address is None or (not force and not mail_enabled()):
        return None
    if not force and await opted_out(session, address):
        return None
    params = dict(params)
    if "locale" not in params:
        params["locale"] = await _locale(session, conversation_id)
    row = MailOutbox(
        kind=kind, dedupe_key=dedupe_key, to_address=address,
        to_name=clean_header_text(to_name) or None,
        conversation_id=(conversation_id or None) and str(conversation_id)[:255],
        ticket=(ticket or None) and str(ticket)[:48], message_id=message_id,
        params=dict(params), status="queued", attempts=0,
        next_attempt_at=now + timedelta(seconds=max(0.0, float(delay))), created_at=now,
    )
    session.add(row)
    await session.flush()
    return row


async def _locale(session: Any, conversation_id: Optional[str]) -> str:
    """The customer's language for an email about a conversation (bot/i18n.py): its app
    context's locale, else the token's, else English."""
    if not conversation_id:
        return DEFAULT_LOCALE
    from bot.support.models import Conversation

    row = (await session.execute(select(Conversation).where(
        Conversation.conversation_id == str(conversation_id)))).scalars().first()
    return conversation_locale(row)


async def stage_ticket_confirmation(session: Any, ticket: Any, now: datetime) -> Optional[MailOutbox]:
    """Queue the confirmation of a new ticket (a :class:`bot.support.models.Ticket` row with
    its reference set) to its contact address."""
    if not ticket.contact_email or not mail_enabled():
        return None
    from bot.support.models import Customer

    customer = await session.get(Customer, ticket.customer_id) if ticket.customer_id else None
    return await stage(
        session, kind="ticket_confirmation", to_address=ticket.contact_email,
        to_name=customer.name if customer is not None else None, now=now, conversation_id=ticket.conversation_id,
        ticket=ticket.reference, dedupe_key=f"ticket:{ticket.reference}",
        params={"reference": ticket.reference, "summary": str(ticket.summary or "")[:2000],
                "priority": ticket.priority, "source": ticket.source,
                "customer_id": ticket.customer_id},
    )


async def stage_agent_reply(session: Any, *, ticket: Any, conversation: Any, message: Any,
                            agent_name: Optional[str], now: datetime) -> Optional[MailOutbox]:
    """Queue "you have a reply" for an agent's stored reply (``message``, flushed).

    Sent after ``MAIL_REPLY_DELAY`` seconds, and only if by then the customer has not seen
    the reply (no device received it) and is not connected (:mod:`bot.mail.sender`).
    """
    from bot.settings import get_settings

    if not mail_enabled():
        return None
    profile = dict(conversation.profile or {})
    address = ticket.contact_email or profile.get("email")
    mail = get_settings().mail
    return await stage(
        session, kind="agent_reply", to_address=address, to_name=profile.get("name"), now=now,
        conversation_id=conversation.conversation_id, ticket=ticket.reference,
        message_id=int(message.id), dedupe_key=f"reply:{int(message.id)}",
        delay=mail.reply_delay if mail is not None else 0.0,
        params={"reference": ticket.reference, "agent": agent_name or "",
                "text": str(message.text or "")[:4000],
                "locale": conversation_locale(conversation)},
    )
