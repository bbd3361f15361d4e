"""The agent console's attachment routes and the ``attachments`` field of a reply.

Routes (under ``/webhooks/agent/api/``; docs/agent-console.md), with the agent's session
(``Authorization: Bearer <session token>``):

* ``POST /tickets/<ref>/attachments?name=<file name>``: the file as the raw request body,
  only by the agent the ticket is assigned to (or an admin), like a reply. ``201
  {"attachment": {...}}``; refused as in the widget (413, 415, 422, 429).
* ``GET /attachments/<id>`` and ``GET /attachments/<id>/thumb``: any signed-in agent.

``POST /tickets/<ref>/reply`` with ``attachments: [<id>, ...]`` (and an optional ``text``)
sends them to the customer (:func:`reply_attachments`).
"""
from __future__ import annotations

import asyncio
from typing import Any, Dict, List, Optional

from sanic import Blueprint
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.agent_console.wire import ApiError, json_response
from bot.attachments.http import file_response, read_limited, upload_name
from bot.attachments.service import AttachmentError, AttachmentService
from bot.attachments.storage import StorageMissing
from bot.attachments.store import AttachmentRef, AttachmentStore
from bot.attachments.widget_routes import MAX_PER_MESSAGE
from bot.channels.hub import RateLimiter

__all__ = ["ConsoleAttachments"]


class ConsoleAttachments:
    """The console's attachments (one per channel; opened on first use).

    Args:
        console: The :class:`bot.agent_console.channel.AgentConsoleInput`.
    """

    def __init__(self, console: Any) -> None:
        self.console = console
        self._service: Optional[AttachmentService] = None
        self._lock = asyncio.Lock()
        self._limiter: Optional[RateLimiter] = None

    async def service(self) -> AttachmentService:
        """The upload service on the console's engine."""
        if self._service is None:
            async with self._lock:
                if self._service is None:
                    agents, _ = await self.console.stores()
                    self._service = AttachmentService.from_settings(
                        AttachmentStore(agents.engine))
        return self._service

    def reset(self) -> None:
        """Forget the service (the console closed its stores)."""
        self._service = None

    def register(self, bp: Blueprint) -> None:
        """Add the routes to the console's blueprint."""
        async def upload(request: Request, reference: str) -> HTTPResponse:
            return await self._upload(request, reference)  # Sanic marks a function (stream)

        async def download(request: Request, public_id: str) -> HTTPResponse:
            return await self._download(request, public_id)

        async def thumb(request: Request, public_id: str) -> HTTPResponse:
            return await self._thumb(request, public_id)

        bp.add_route(upload, "/api/tickets/<reference>/attachments", methods=["POST"],
                     stream=True, name="api_ticket_attachments")
        bp.add_route(download, "/api/attachments/<public_id>", methods=["GET"],
                     name="api_attachment")
        bp.add_route(thumb, "/api/attachments/<public_id>/thumb", methods=["GET"],
                     name="api_attachment_thumb")

    async def _upload(self, request: Request, reference: str) -> HTTPResponse:
        async def upload(request: Request, agent: Any) -> HTTPResponse:
            agents, _ = await self.console.stores()
            detail = await agents.ticket_detail(agent, reference)  # authorises seeing it
            if detail.state != "assigned" or not (
                    agent.is_admin or (detail.assignee is not None
                                       and detail.assignee.id == agent.id)):
                raise ApiError(403, "forbidden",
                               f"{detail.ticket.reference}: claim the ticket to send files.")
            if self._limiter is None:
                from bot.settings import get_settings

                settings = get_settings()
                self._limiter = RateLimiter(settings.attachments.upload_rate, 60.0,
                                            max_keys=settings.limiter_max_keys)
            retry = self._limiter.check(f"agent:{agent.id}")
            if retry:
                raise ApiError(429, "rate_limited", "Too many files; try again in a moment.",
                               retry_after=retry)
            service = await self.service()
            try:
                data = await read_limited(request, service.max_bytes,
                                          service.too_large_message())
                view = await service.accept(data, upload_name(request), detail.conversation_id,
                                            f"agent:{agent.id}")
            except AttachmentError as error:
                raise ApiError(error.status, error.code, str(error)) from None
            return json_response({"attachment": view.ref()}, status=201)

        return await self.console._call(request, upload)

    async def _download(self, request: Request, public_id: str) -> HTTPResponse:
        return await self.console._call(request, lambda r, a: self._serve(public_id, False))

    async def _thumb(self, request: Request, public_id: str) -> HTTPResponse:
        return await self.console._call(request, lambda r, a: self._serve(public_id, True))

    async def _serve(self, public_id: str, thumb: bool) -> HTTPResponse:
        service = await self.service()
        view = await service.store.get(public_id)
        if view is None:
            raise ApiError(404, "not_found", "No such attachment.")
        try:
            data = await service.content(view, thumb)
        except (StorageMissing, LookupError):
            raise ApiError(404, "not_found", "No such attachment.") from None
        return file_response(view, data, thumb)

    async def reply_extra(self, agent: Any, reference: str,
                          body: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """``{"attachments": [...]}`` for a reply that names uploads, else None.

        Raises:
            ApiError: As :meth:`reply_attachments`.
        """
        if body.get("attachments") is None:
            return None
        agents, _ = await self.console.stores()
        detail = await agents.ticket_detail(agent, reference)
        refs = await self.reply_attachments(body, agent, detail.conversation_id)
        return {"attachments": refs} if refs else None

    async def reply_attachments(self, body: Dict[str, Any], agent: Any,
                                conversation_id: str) -> Optional[List[AttachmentRef]]:
        """The attachments a reply names, checked: this agent's uploads to this conversation.

        Raises:
            ApiError: 400 ``bad_request`` (not a list of 1-4 ids, or an unknown id).
        """
        ids = body.get("attachments")
        if ids is None:
            return None
        if (not isinstance(ids, list) or not 1 <= len(ids) <= MAX_PER_MESSAGE
                or not all(isinstance(i, str) and 8 <= len(i) <= 40 for i in ids)):
            raise ApiError(400, "bad_request",
                           f"attachments must be a list of 1-{MAX_PER_MESSAGE} attachment ids.")
        service = await self.service()
        try:
            views = await service.store.of_conversation(conversation_id, ids,
                                                        uploader=f"agent:{agent.id}")
        except LookupError:
            raise ApiError(400, "bad_request",
                           "Unknown attachment: upload the file first.") from None
        return [view.ref() for view in views]
