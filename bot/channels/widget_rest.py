"""The widget channel's REST surface: CORS, history, session end, FAQ search and articles.

:class:`WidgetRestRoutes` is mixed into :class:`bot.channels.widget.WidgetInput`; the routes
themselves are declared in its blueprint. Uses the channel's ``config``, ``_verifier``,
``_faq_limiter``, :meth:`chat` and ``_end_session`` (:mod:`bot.channels.widget_session`).
"""
from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Dict, Optional

from sanic import response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.channels.auth import AuthError, Customer
from bot.channels.widget_wire import HISTORY_PAGE, ClientError, optional_int
from bot.faq import current_index

__all__ = ["WidgetRestRoutes"]

logger = logging.getLogger("bot.channels.widget")  # the channel logs under one name


class WidgetRestRoutes:
    """REST handlers of the widget channel (a mixin of ``WidgetInput``)."""

    def _origin_allowed(self, origin: Optional[str]) -> bool:
        return origin is None or origin.rstrip("/") in self.config.allowed_origins

    def _cors(self, request: Request, resp: HTTPResponse) -> HTTPResponse:
        origin = request.headers.get("origin")
        if origin and self._origin_allowed(origin):
            resp.headers["Access-Control-Allow-Origin"] = origin
            resp.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            resp.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            resp.headers["Access-Control-Max-Age"] = "600"
            resp.headers["Vary"] = "Origin"
        return resp

    async def _rest(
        self,
        request: Request,
        handler: Callable[[Request, Optional[Customer]], Awaitable[Any]],
        anonymous: bool = False,
    ) -> HTTPResponse:
        try:
            if not self._origin_allowed(request.headers.get("origin")):
                raise ClientError("origin_not_allowed", "This origin may not use the chat.", 403)
            if request.method == "OPTIONS":
                return self._cors(request, response.empty())
            header = request.headers.get("authorization")
            customer: Optional[Customer] = None
            if header or not anonymous:
                try:
                    customer = self._verifier.verify(header)
                except AuthError as error:
                    raise ClientError(error.code, str(error), 401) from None
            body = await handler(request, customer)
            return self._cors(request, response.json(body))
        except ClientError as error:
            return self._cors(request, error.response())
        except Exception:  # noqa: BLE001 - logged; the client gets a clean 500
            logger.exception("Widget REST request %s failed", request.path)
            return self._cors(
                request,
                ClientError("server_error", "Something went wrong on our side.", 500).response(),
            )

    async def _history(self, request: Request, customer: Optional[Customer]) -> Dict[str, Any]:
        assert customer is not None
        before = optional_int(request.args.get("before"), "before")
        limit = optional_int(request.args.get("limit"), "limit") or HISTORY_PAGE
        if not 1 <= limit <= 100:
            raise ClientError("bad_request", "limit must be between 1 and 100.")
        messages, has_more = await (await self.chat()).history(
            customer.conversation_id, before, limit
        )
        return {"messages": [m.to_wire() for m in messages], "has_more": has_more}

    async def _end_rest(self, _request: Request, customer: Optional[Customer]) -> Dict[str, Any]:
        assert customer is not None
        session = await self._end_session(customer)
        return {"session": session}

    async def _faq_search(self, request: Request, customer: Optional[Customer]) -> Dict[str, Any]:
        key = customer.user_id if customer else f"ip:{request.remote_addr or request.ip}"
        retry = self._faq_limiter.check(key)
        if retry:
            raise ClientError("rate_limited", "Too many searches.", 429, retry_after=retry)
        query = (request.args.get("q") or "").strip()
        limit = optional_int(request.args.get("limit"), "limit") or 5
        if len(query) > 500:
            raise ClientError("too_large", "The search text is too long.", 413)
        if not query:
            return {"query": query, "results": []}
        index = await current_index()
        hits = index.search(query, limit=max(1, min(limit, 10)))
        return {
            "query": query,
            "results": [
                {
                    "id": hit.article.id,
                    "title": hit.article.title,
                    "summary": hit.article.summary,
                    "snippet": hit.snippet,
                    "score": round(hit.score, 3),
                }
                for hit in hits
            ],
        }

    async def _faq_article(self, article_id: str) -> Dict[str, Any]:
        index = await current_index()
        article = index.get(article_id)
        if article is None:
            raise ClientError("not_found", f"No article {article_id!r}.", 404)
        return {
            "id": article.id,
            "title": article.title,
            "summary": article.summary,
            "body": article.body_text,  # rendered when the index was loaded (a worker thread)
            "blocks": article.blocks,
            "buttons": [dict(b) for b in article.buttons],
        }
