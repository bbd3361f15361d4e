"""The widget's attachment routes and the ``attachments`` field of ``message`` frames.

Routes (under ``/webhooks/widget/``; docs/widget-protocol.md, "Attachments"), all with the
customer's ``Authorization: Bearer <token>``:

* ``POST /attachments?name=<file name>``: the file as the raw request body (any declared
  ``Content-Type`` is ignored). ``201 {"attachment": {...}}``; refused: 413 ``too_large``,
  415 ``unsupported_type``, 422 ``bad_file``, 429 ``rate_limited``; nothing is stored then.
* ``GET /attachments/<id>`` and ``GET /attachments/<id>/thumb``: the file (or its thumbnail),
  only for the customer of the attachment's conversation; anyone else gets the same 404 as
  for an id that does not exist.

Then a ``message`` frame names the uploaded ids in ``attachments`` (:meth:`message_refs`);
the message is stored, acknowledged and replayed like any other.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Dict, List, Optional

from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.attachments.http import file_response, read_limited, upload_name
from bot.attachments.service import AttachmentError, AttachmentService
from bot.attachments.storage import StorageMissing
from bot.attachments.store import AttachmentRef, AttachmentStore
from bot.channels.auth import AuthError, Customer
from bot.channels.hub import RateLimiter
from bot.channels.widget_wire import ClientError

__all__ = ["MAX_PER_MESSAGE", "WidgetAttachments"]

logger = logging.getLogger("bot.channels.widget")  # the channel logs under one name

MAX_PER_MESSAGE = 4


class WidgetAttachments:
    """The widget channel's attachments (one per channel; stores opened on first use).

    Args:
        channel: The :class:`bot.channels.widget.WidgetInput` (its verifier, CORS, chat store).
    """

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self._service: Optional[AttachmentService] = None
        self._lock = asyncio.Lock()
        self._limiter: Optional[RateLimiter] = None

    async def service(self) -> AttachmentService:
        """The upload service, on the chat store's engine (opened on first use)."""
        if self._service is None:
            async with self._lock:
                if self._service is None:
                    chat = await self.channel.chat()
                    self._service = AttachmentService.from_settings(AttachmentStore(chat.engine))
        return self._service

    def _rate(self, user_id: str) -> float:
        if self._limiter is None:
            from bot.settings import get_settings

            settings = get_settings()
            self._limiter = RateLimiter(settings.attachments.upload_rate, 60.0,
                                        max_keys=settings.limiter_max_keys)
        return self._limiter.check(user_id)

    # ------------------------------------------------------------------ frames

    async def message_refs(self, connection: Any, frame: Dict[str, Any],
                           client_id: str) -> Optional[List[AttachmentRef]]:
        """The attachments a ``message`` frame names, checked (None when it names none).

        Raises:
            ClientError: ``bad_request``: not a list of 1-4 ids, or an id that is not an
                upload of this customer in this conversation (the message is not stored).
        """
        ids = frame.get("attachments")
        if ids is None:
            return None
        if (not isinstance(ids, list) or not 1 <= len(ids) <= MAX_PER_MESSAGE
                or not all(isinstance(i, str) and 8 <= len(i) <= 40 for i in ids)):
            raise ClientError("bad_request",
                              f"attachments must be a list of 1-{MAX_PER_MESSAGE} attachment ids.",
                              client_id=client_id)
        service = await self.service()
        try:
            views = await service.store.of_conversation(
                connection.conversation_id, ids, uploader=f"customer:{connection.user_id}")
        except LookupError:
            raise ClientError("bad_request", "Unknown attachment: upload the file first.",
                              client_id=client_id) from None
        return [view.ref() for view in views]

    # ------------------------------------------------------------------ routes

    def register(self, bp: Blueprint) -> None:
        """Add the upload and download routes to the widget's blueprint."""
        async def upload(request: Request) -> HTTPResponse:  # Sanic marks a function (stream)
            return await self._upload(request)

        async def download(request: Request, public_id: str) -> HTTPResponse:
            return await self._download(request, public_id)

        async def thumb(request: Request, public_id: str) -> HTTPResponse:
            return await self._thumb(request, public_id)

        bp.add_route(upload, "/attachments", methods=["POST", "OPTIONS"], stream=True,
                     name="attachment_upload")
        bp.add_route(download, "/attachments/<public_id>", methods=["GET", "OPTIONS"],
                     name="attachment_download")
        bp.add_route(thumb, "/attachments/<public_id>/thumb", methods=["GET", "OPTIONS"],
                     name="attachment_thumb")

    async def _guarded(self, request: Request, handler: Any) -> HTTPResponse:
        channel = self.channel
        try:
            if not channel._origin_allowed(request.headers.get("origin")):
                raise ClientError("origin_not_allowed", "This origin may not use the chat.", 403)
            if request.method == "OPTIONS":
                return channel._cors(request, response.empty())
            try:
                customer = channel._verifier.verify(request.headers.get("authorization"))
            except AuthError as error:
                raise ClientError(error.code, str(error), 401) from None
            return channel._cors(request, await handler(request, customer))
        except AttachmentError as error:
            return channel._cors(request, ClientError(
                error.code, str(error), error.status, retry_after=error.retry_after).response())
        except ClientError as error:
            return channel._cors(request, error.response())
        except Exception:  # noqa: BLE001 - logged; the client gets a clean 500
            logger.exception("Widget attachment request %s failed", request.path)
            return channel._cors(request, ClientError(
                "server_error", "Something went wrong on our side.", 500).response())

    async def _upload(self, request: Request) -> HTTPResponse:
        async def upload(request: Request, customer: Customer) -> HTTPResponse:
            retry = self._rate(customer.user_id)
            if retry:
                raise AttachmentError("rate_limited", "Too many files; try again in a moment.",
                                      429, retry_after=retry)
            service = await self.service()
            data = await read_limited(request, service.max_bytes, service.too_large_message())
            chat = await self.channel.chat()
            await chat.do_open_conversation(customer.conversation_id, customer.user_id,
                                            "widget", profile=customer.profile)
            view = await service.accept(data, upload_name(request), customer.conversation_id,
                                        f"customer:{customer.user_id}")
            return response.json({"attachment": view.ref()}, status=201)

        return await self._guarded(request, upload)

    async def _download(self, request: Request, public_id: str) -> HTTPResponse:
        return await self._guarded(request, lambda r, c: self._serve(c, public_id, False))

    async def _thumb(self, request: Request, public_id: str) -> HTTPResponse:
        return await self._guarded(request, lambda r, c: self._serve(c, public_id, True))

    async def _serve(self, customer: Customer, public_id: str, thumb: bool) -> HTTPResponse:
        service = await self.service()
        view = await service.store.get(public_id)
        # another conversation's attachment looks exactly like one that does not exist
        if view is None or view.conversation_id != customer.conversation_id:
            raise ClientError("not_found", "No such attachment.", 404)
        try:
            data = await service.content(view, thumb)
        except (StorageMissing, LookupError):
            raise ClientError("not_found", "No such attachment.", 404) from None
        return file_response(view, data, thumb)
