"""The emails: texts from ``data/messages.yml`` (``email_*``), plain text plus a simple HTML
alternative (every value escaped), an unsubscribe link and RFC 8058 one-click headers.

Header injection is impossible by construction: every value that goes into a header (the
customer's name, the subject with the ticket summary) has its control characters (CR, LF,
...) replaced by spaces (:func:`bot.mail.outbox.clean_header_text`), the recipient is one
validated ``local@domain`` address set through :class:`email.headerregistry.Address`, and
the message uses the ``SMTP`` policy, which refuses a header value with a line break.
"""
from __future__ import annotations

import html
import re
from datetime import datetime, timezone
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any, Dict, List, Mapping, Optional
from urllib.parse import urlencode

from bot.mail.outbox import clean_header_text
from bot.mail.tokens import sign
from bot.i18n import normalise_locale, use_locale
from bot.messages import notice

__all__ = ["UNSUBSCRIBE_PATH", "app_link", "build_message", "unsubscribe_url"]

UNSUBSCRIBE_PATH = "/webhooks/mail/unsubscribe"
_URL = re.compile(r"https?://[^\s<>\"]+")


def app_link(base: str, ticket: Optional[str] = None) -> str:
    """The link back into the app (``APP_LINK_BASE`` with ``chat=open`` and the ticket)."""
    query: Dict[str, str] = {"chat": "open"}
    if ticket:
        query["ticket"] = ticket
    return f"{base}{'&' if '?' in base else '?'}{urlencode(query)}"


def unsubscribe_url(public_url: str, address: str, secret: Optional[str] = None) -> str:
    """The signed unsubscribe link of an address (GET: a page, POST: one click)."""
    return f"{public_url.rstrip('/')}{UNSUBSCRIBE_PATH}?{urlencode({'token': sign(address, secret)})}"


def _transcript_lines(lines: Any, customer: str) -> str:
    rendered: List[str] = []
    for line in list(lines or [])[:500]:
        if not isinstance(line, Mapping) or not str(line.get("text") or "").strip():
            continue
        sender = line.get("sender")
        if sender == "customer":
            who = notice("email_transcript_customer")
        elif sender == "agent":
            who = clean_header_text(line.get("name")) or notice("email_transcript_agent")
        else:
            who = notice("email_transcript_bot")
        rendered.append(f"{who}: {str(line.get('text')).strip()}")
    return "\n\n".join(rendered) or notice("email_transcript_empty")


def _texts(kind: str, params: Mapping[str, Any], name: str, link: str) -> Dict[str, str]:
    """The subject and the body's paragraphs (greeting, intro, content, next + link)."""
    reference = str(params.get("reference") or "")
    greeting = notice("email_greeting", name=name)
    if kind == "ticket_confirmation":
        priority = str(params.get("priority") or "normal")
        within = notice(f"reply_within_{priority}") if priority in (
            "urgent", "high", "normal", "low") else notice("reply_within_normal")
        subject = notice("email_ticket_subject", reference=reference,
                         summary=clean_header_text(params.get("summary"), 60))
        paragraphs = [greeting, notice("email_ticket_intro", reference=reference),
                      str(params.get("summary") or ""),
                      notice("email_ticket_next", reply_within=within) + "\n" + link]
    elif kind == "agent_reply":
        agent = clean_header_text(params.get("agent"), 80) or notice("email_transcript_agent")
        subject = notice("email_reply_subject", agent=agent, reference=reference)
        paragraphs = [greeting, notice("email_reply_intro", agent=agent, reference=reference),
                      str(params.get("text") or ""), notice("email_reply_next") + "\n" + link]
    elif kind == "transcript":
        subject = notice("email_transcript_subject")
        paragraphs = [greeting, notice("email_transcript_intro"),
                      _transcript_lines(params.get("lines"), name),
                      notice("email_transcript_next") + "\n" + link]
    else:
        raise ValueError(f"unknown email kind {kind!r}")
    return {"subject": subject, "body": "\n\n".join(p.strip() for p in paragraphs if p.strip())}


def _html(text: str, lang: str = "en") -> str:
    paragraphs = []
    for block in text.split("\n\n"):
        escaped = html.escape(block.strip(), quote=True)
        linked = _URL.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', escaped)
        paragraphs.append(f"<p>{linked.replace(chr(10), '<br>')}</p>")
    return (f'<!DOCTYPE html><html lang="{normalise_locale(lang)}"><head><meta charset="utf-8"></head>'
            '<body style="font-family: sans-serif; line-height: 1.4; max-width: 36em">'
            + "".join(paragraphs) + "</body></html>")


def build_message(row: Any, *, mail_from: str, app_link_base: str, public_url: str,
                  secret: Optional[str] = None, now: Optional[datetime] = None) -> EmailMessage:
    """The email of one outbox row (:class:`bot.mail.models.MailOutbox` or a like object)."""
    params: Mapping[str, Any] = dict(row.params or {})
    with use_locale(params.get("locale")):  # the customer's language, staged with the row
        name = clean_header_text(row.to_name, 80) or notice("email_name_fallback")
        link = app_link(app_link_base, row.ticket)
        unsubscribe = unsubscribe_url(public_url, row.to_address, secret)
        texts = _texts(row.kind, params, name, link)
        body = (texts["body"].rstrip() + "\n\n-- \n"
                + notice("email_footer", unsubscribe=unsubscribe))

    message = EmailMessage(policy=policy.SMTP)
    message["From"] = mail_from
    local, _, domain = row.to_address.partition("@")
    message["To"] = Address(display_name=clean_header_text(row.to_name, 80), username=local,
                            domain=domain)
    message["Subject"] = clean_header_text(texts["subject"], 200)
    message["Date"] = format_datetime(now or datetime.now(timezone.utc))
    sender_domain = parseaddr(mail_from)[1].partition("@")[2] or "localhost"
    message["Message-ID"] = f"<mail-{int(row.id)}.{row.kind}@{sender_domain}>"
    message["List-Unsubscribe"] = f"<{unsubscribe}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(body)
    message.add_alternative(_html(body, str(params.get("locale") or "en")), subtype="html")
    return message
