"""The email channel: unsubscribe routes and the sender task, in the Rasa server.

Registered in ``credentials.yml`` as ``bot.mail.channel.MailInput``; routes under
``/webhooks/mail/`` (docs/email.md):

* ``GET /unsubscribe?token=...``: a confirmation page with one button (nothing is stored:
  mail scanners follow links);
* ``POST /unsubscribe?token=...``: stores the opt-out. This is also the RFC 8058 one-click
  target of the ``List-Unsubscribe`` header (body ``List-Unsubscribe=One-Click``).

A forged or altered token is refused with 400 and a page that says so. While email is on
(``MAIL_ENABLED``) the channel runs :class:`bot.mail.sender.MailSender` from server start to
stop; with several Rasa processes each runs one (claims keep every email sent once).
"""
from __future__ import annotations

import html
import logging
from typing import Any, Awaitable, Callable, Dict, Optional, Text, Tuple

from rasa.core.channels.channel import InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.mail.sender import MailSender
from bot.mail.store import MailStore
from bot.mail.tokens import InvalidToken, unsubscribe_secret, verify

__all__ = ["MailInput", "unsubscribe_blueprint"]

logger = logging.getLogger(__name__)

OnNewMessage = Callable[[UserMessage], Awaitable[Any]]

_PAGE = ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
         '<meta name="viewport" content="width=device-width, initial-scale=1">'
         '<title>{title}</title></head><body style="font-family: sans-serif; max-width: 32em; '
         'margin: 2em auto; padding: 0 1em; line-height: 1.4"><h1>{title}</h1>{body}'
         '</body></html>')
_HEADERS = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                       "form-action 'self'"}


def _page(status: int, title: str, body: str) -> HTTPResponse:
    return response.html(_PAGE.format(title=html.escape(title), body=body), status=status,
                         headers=_HEADERS)


def _invalid() -> HTTPResponse:
    return _page(400, "This unsubscribe link is not valid",
                 "<p>The link is incomplete or was changed (error <code>invalid_token</code>). "
                 "Nothing was changed. Please use the unsubscribe link of your latest email "
                 "from us, exactly as it is.</p>")


def _token_address(request: Request) -> Tuple[str, Optional[str]]:
    """The link's token and the address it was signed for (None: forged or altered)."""
    token = request.args.get("token") or ""
    try:
        return token, verify(token)
    except InvalidToken:
        return token, None


def unsubscribe_blueprint(store: Callable[[], Awaitable[MailStore]],
                          name: str = "mail_webhook") -> Blueprint:
    """The unsubscribe routes (``store()`` opens the mail store on first use)."""
    bp = Blueprint(name, __name__)

    @bp.route("/unsubscribe", methods=["GET"])
    async def confirm(request: Request) -> HTTPResponse:
        token, address = _token_address(request)
        if address is None:
            return _invalid()
        done = await (await store()).is_unsubscribed(address)
        if done:
            return _page(200, "You are unsubscribed",
                         f"<p>We send no more emails to {html.escape(address)}.</p>")
        return _page(200, "Unsubscribe from Northwind Support emails?", (
            f"<p>We'll stop sending emails about your support tickets to "
            f"<strong>{html.escape(address)}</strong>. Replies still wait for you in the chat "
            "in the app.</p>"
            f'<form method="post" action="?token={html.escape(token, quote=True)}">'
            '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
            '<button type="submit">Unsubscribe</button></form>'))

    @bp.route("/unsubscribe", methods=["POST"])
    async def unsubscribe(request: Request) -> HTTPResponse:
        _, address = _token_address(request)
        if address is None:
            return _invalid()
        await (await store()).do_unsubscribe(address, source="one-click")
        return _page(200, "You are unsubscribed",
                     f"<p>We send no more emails to {html.escape(address)}. A transcript you "
                     "ask for in the chat is still sent.</p>")

    return bp


class MailInput(InputChannel):
    """Unsubscribe routes plus the outbox sender, as a Rasa input channel (no messages)."""

    def __init__(self, support_db_url: str) -> None:
        self._support_db_url = support_db_url
        self._store: Optional[MailStore] = None
        self.sender: Optional[MailSender] = None

    @classmethod
    def name(cls) -> Text:
        return "mail"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> "MailInput":
        from bot.settings import get_settings

        return cls(get_settings().support_db_url)

    async def store(self) -> MailStore:
        if self._store is None:
            store = MailStore.from_url(self._support_db_url)
            await store.create_schema()
            self._store = store
        return self._store

    def blueprint(self, on_new_message: OnNewMessage) -> Blueprint:
        bp = unsubscribe_blueprint(self.store)

        @bp.listener("after_server_start")
        async def _start(_app: Any, _loop: Any) -> None:
            from bot.settings import get_settings

            mail = get_settings().mail
            if mail is None or not mail.enabled:
                logger.info("Email is off (MAIL_ENABLED/SMTP_HOST, docs/email.md).")
                return
            if not mail.smtp_host:
                logger.warning("MAIL_ENABLED is true but SMTP_HOST is empty: emails stay "
                               "queued until it is set.")
                return
            try:
                unsubscribe_secret()  # generated in development, required in production
            except RuntimeError as error:
                logger.error("Email stays queued: %s", error)
                return
            self.sender = MailSender((await self.store()).engine, mail)
            self.sender.start()

        @bp.listener("before_server_stop")
        async def _stop(_app: Any, _loop: Any) -> None:
            if self.sender is not None:
                await self.sender.stop()
            if self._store is not None:
                await self._store.dispose()

        return bp
