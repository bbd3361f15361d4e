"""Attachments to and from Twilio Conversations, through Twilio's Media Content Service.

Out (the customer's photos and PDFs, to the Conversation an agent works in): the file is
uploaded once to ``POST https://mcs.us1.twilio.com/v1/Services/{ChatServiceSid}/Media`` (the
raw bytes with their ``Content-Type``, HTTP Basic auth with the account's credentials); the
Media SID is kept on the attachment row, so a retry or a second message does not upload it
again; then a Message is created with ``MediaSid`` (one Media per Message, as the API allows;
the text goes with the first). The Chat Service SID is the Conversation's
(``chat_service_sid``), fetched once per Conversation.

In (an agent's media in ``onMessageAdded``: ``Media``, a JSON list of ``{Sid, Filename,
ContentType, Size}``): each is fetched (``GET .../Media/{Sid}``: ``links.content_direct_temporary``,
a short-lived download URL), checked and cleaned like any upload
(:meth:`bot.attachments.service.AttachmentService.accept`; a file the chat does not accept is
dropped with a log line) and stored once per Media SID.

Every call goes through the bridge's retry policy (429/5xx/timeouts retried); with
``TWILIO_API_BASE`` set (tests) the hosts are rewritten like every other Twilio call.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Dict, List, Optional

import aiohttp
from twilio.base.exceptions import TwilioRestException

from bot.attachments.service import AttachmentError, AttachmentService
from bot.attachments.store import AttachmentRef, AttachmentStore, AttachmentView

__all__ = ["MCS_BASE", "TwilioMedia", "media_ids", "media_list"]

logger = logging.getLogger(__name__)

MCS_BASE = "https://mcs.us1.twilio.com/v1"
MAX_MEDIA = 4


def media_ids(holder: Any) -> List[str]:
    """The attachment ids a message names (its ``extra``, or its wire object)."""
    refs = holder.get("attachments") if isinstance(holder, dict) else None
    return [r["id"] for r in refs or [] if isinstance(r, dict) and isinstance(r.get("id"), str)]


def media_list(raw: Optional[str]) -> List[Dict[str, Any]]:
    """The ``Media`` parameter of a webhook as ``[{"sid", "filename", "content_type"}]``."""
    try:
        items = json.loads(raw or "[]")
    except ValueError:
        return []
    found = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        sid = item.get("Sid") or item.get("MediaSid") or item.get("sid")
        if isinstance(sid, str) and sid.startswith("ME"):
            found.append({"sid": sid, "filename": item.get("Filename") or item.get("filename"),
                          "content_type": item.get("ContentType") or item.get("content_type")})
    return found[:MAX_MEDIA]


class TwilioMedia:
    """The bridge's media helper (one per bridge).

    Args:
        bridge: The :class:`bot.twilio.bridge.TwilioBridge` (its API, config, store engine).
    """

    def __init__(self, bridge: Any) -> None:
        self.bridge = bridge
        self._service: Optional[AttachmentService] = None
        self._chat_services: Dict[str, str] = {}

    def service(self) -> AttachmentService:
        """The attachment service on the bridge's engine."""
        if self._service is None:
            self._service = AttachmentService.from_settings(
                AttachmentStore(self.bridge.store.engine))
        return self._service

    async def _http(self, method: str, url: str, *, data: Optional[bytes] = None,
                    headers: Optional[Dict[str, str]] = None, auth: bool = True) -> Any:
        """One HTTP call (JSON or bytes back); a Twilio-style error for 4xx/5xx."""
        config = self.bridge.config
        target = self.bridge.api.http.rewrite(url)
        basic = aiohttp.BasicAuth(config.account_sid or "", config.auth_token or "") \
            if auth else None
        async with aiohttp.ClientSession(trust_env=False) as session:
            async with session.request(method, target, data=data, headers=headers, auth=basic,
                                       timeout=aiohttp.ClientTimeout(total=config.timeout),
                                       allow_redirects=True) as response:
                body = await response.read()
                if response.status >= 400:
                    raise TwilioRestException(response.status, url,
                                              body[:200].decode("utf-8", "replace"),
                                              method=method)
                if response.content_type == "application/json":
                    return json.loads(body or b"{}")
                return body

    async def chat_service_sid(self, conversation_sid: str) -> str:
        """The Conversation's Chat Service SID (``IS…``), fetched once."""
        if conversation_sid not in self._chat_services:
            conversation = self.bridge.api.conversations(conversation_sid)
            fetched = await self.bridge._call("fetch conversation",
                                              lambda: conversation.fetch_async())
            self._chat_services[conversation_sid] = fetched.chat_service_sid
        return self._chat_services[conversation_sid]

    async def upload(self, conversation_sid: str, public_id: str) -> Optional[str]:
        """The Media SID of an attachment in Twilio, uploading it the first time.

        Returns:
            None when the attachment is gone (nothing to send).
        """
        service = self.service()
        view = await service.store.get(public_id)
        if view is None:
            return None
        if view.twilio_media_sid:
            return view.twilio_media_sid
        data = await service.content(view)
        chat_service = await self.chat_service_sid(conversation_sid)
        made = await self.bridge._call("upload media", lambda: self._http(
            "POST", f"{MCS_BASE}/Services/{chat_service}/Media", data=data,
            headers={"Content-Type": view.content_type}))
        sid = str(made["sid"])
        await service.store.do_set_twilio_media(view.id, sid)
        return sid

    async def post(self, conversation: Any, *, author: str, body: str,
                   media: List[str], webhooks: str, attributes: str,
                   date_created: Any = None) -> None:
        """Create the Message(s) of a text with attachments: the text with the first Media,
        one Message per further Media (a Message carries one Media SID)."""
        from twilio.base import values

        conversation_sid = conversation._solution["sid"]
        sids = [sid for sid in [await self.upload(conversation_sid, i) for i in media] if sid]
        if not sids:
            if body:
                await self.bridge._call("post message", lambda: conversation.messages.create_async(
                    x_twilio_webhook_enabled=webhooks, author=author, body=body,
                    date_created=date_created if date_created is not None else values.unset,
                    attributes=attributes))
            return
        for index, sid in enumerate(sids):
            text = body if index == 0 and body else values.unset
            await self.bridge._call("post media", lambda: conversation.messages.create_async(
                x_twilio_webhook_enabled=webhooks, author=author, body=text, media_sid=sid,
                date_created=date_created if date_created is not None else values.unset,
                attributes=attributes))

    async def add_session_files(self, payload: Dict[str, Any], material: Any) -> None:
        """Add the customer's files of this chat session to a handoff's transcript lines.

        A photo sent without words never reached Rasa, so the bot's transcript does not
        have it; its message may also be older than the transcript's end. Each such message
        not in the lines yet becomes a line with ``media`` (posted as Twilio Media).
        """
        lines = payload.setdefault("lines", [])
        present = {line.get("message_id") for line in lines if line.get("message_id")}
        for message in await self.service().store.session_customer_files(
                material.ticket.conversation_id):
            if message["message_id"] not in present:
                lines.append({"kind": "customer", "text": message["text"][:1600],
                              "at": message["at"], "message_id": message["message_id"],
                              "media": message["media"]})

    async def receive(self, link: Any, author: str,
                      raw_media: Optional[str]) -> List[AttachmentRef]:
        """Store an agent's Twilio media as attachments of the customer's conversation."""
        refs: List[AttachmentRef] = []
        service = self.service()
        for item in media_list(raw_media):
            existing = await service.store.by_twilio_sid(item["sid"])
            if existing is not None:
                refs.append(existing.ref())
                continue
            try:
                view = await self._fetch_and_store(link, author, item)
            except AttachmentError as error:
                logger.warning("Twilio media %s of %s not accepted: %s", item["sid"],
                               link.conversation_id, error)
                continue
            refs.append(view.ref())
        return refs

    async def _fetch_and_store(self, link: Any, author: str,
                               item: Dict[str, Any]) -> AttachmentView:
        chat_service = await self.chat_service_sid(link.conversation_sid)
        meta = await self.bridge._call("fetch media", lambda: self._http(
            "GET", f"{MCS_BASE}/Services/{chat_service}/Media/{item['sid']}"))
        url = ((meta.get("links") or {}).get("content_direct_temporary")
               or f"{MCS_BASE}/Services/{chat_service}/Media/{item['sid']}/Content")
        service = self.service()
        data = await self.bridge._call("download media", lambda: self._http(
            "GET", url, auth="content_direct_temporary" not in (meta.get("links") or {})))
        if isinstance(data, dict) or len(data) > service.max_bytes:
            raise AttachmentError("too_large", service.too_large_message(), 413)
        return await service.accept(data, item.get("filename") or meta.get("filename"),
                                    link.conversation_id, f"twilio:{author}"[:96],
                                    twilio_media_sid=item["sid"])
