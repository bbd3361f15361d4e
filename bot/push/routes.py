"""The console's push routes and its service worker (docs/agent-console.md "Push").

:func:`install` adds to the agent console's blueprint (``/webhooks/agent/``):

* ``GET /sw.js``: the service worker (``static/sw.js``). Served from the console's own
  path, so its default scope is the console (``/webhooks/agent/``) and no
  ``Service-Worker-Allowed`` header is needed;
* ``GET /api/push``: ``{"available", "public_key", "enabled", "devices"}``;
* ``POST /api/push/subscription`` ``{"subscription": <PushSubscription.toJSON()>}``: store
  this device and turn the agent's push on;
* ``POST /api/push/unsubscribe`` ``{"endpoint"}``: delete this device;
* ``POST /api/push/settings`` ``{"enabled": true|false}``: the agent's setting (all devices);
* ``POST /api/push/test``: a test notification to the agent's devices.

Every route but ``/sw.js`` needs the agent's console session (``Authorization: Bearer``).
The listeners run :class:`bot.push.sender.PushSender` from server start to stop while push
is on (``PUSH_ENABLED``, the VAPID keys).
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Optional

from sanic import Blueprint
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.agent_console.assets import serve_asset
from bot.agent_console.wire import ApiError, iso, read_body, str_field
from bot.push.keys import key_problems
from bot.push.sender import PushSender
from bot.push.store import PushState, PushStore, clean_subscription

__all__ = ["install"]

logger = logging.getLogger(__name__)


def _push_settings() -> Any:
    from bot.settings import get_settings

    return get_settings().push


def _available() -> bool:
    push = _push_settings()
    return bool(push is not None and push.enabled and not key_problems(
        push.vapid_private_key, push.vapid_public_key, push.vapid_subject))


def _state_json(state: PushState) -> Dict[str, Any]:
    push = _push_settings()
    return {
        "available": _available(),
        "public_key": push.vapid_public_key if _available() else None,
        "enabled": state.enabled,
        "devices": [{"id": d.id, "service": d.origin, "user_agent": d.user_agent,
                     "created_at": iso(d.created_at), "last_success_at": iso(d.last_success_at)}
                    for d in state.devices],
    }


class _PushRoutes:
    """The handlers, bound to one console (its ``_call`` authenticates the agent)."""

    def __init__(self, console: Any) -> None:
        self.console = console
        self._store: Optional[PushStore] = None
        self.sender: Optional[PushSender] = None

    async def store(self) -> PushStore:
        if self._store is None:
            agents, _ = await self.console.stores()
            self._store = PushStore(agents.engine)  # shares the console's engine
        return self._store

    async def get(self, _request: Request, agent: Any) -> Dict[str, Any]:
        return _state_json(await (await self.store()).state(agent.id))

    async def subscribe(self, request: Request, agent: Any) -> Dict[str, Any]:
        if not _available():
            raise ApiError(409, "push_unavailable",
                           "Push notifications are not set up on this server (VAPID keys).")
        from bot.settings import get_settings

        settings = get_settings()
        body = read_body(request)
        subscription = clean_subscription(body.get("subscription"),
                                          settings.push.allowed_hosts,
                                          allow_loopback=not settings.production)
        state = await (await self.store()).do_subscribe(
            agent.id, subscription, request.headers.get("user-agent"))
        logger.info("Agent %s subscribed a device to push.", agent.username)
        return _state_json(state)

    async def unsubscribe(self, request: Request, agent: Any) -> Dict[str, Any]:
        endpoint = str_field(read_body(request), "endpoint", max_chars=4096) or ""
        store = await self.store()
        deleted = await store.do_unsubscribe(agent.id, endpoint)
        return {"deleted": deleted, **_state_json(await store.state(agent.id))}

    async def settings(self, request: Request, agent: Any) -> Dict[str, Any]:
        enabled = read_body(request).get("enabled")
        if not isinstance(enabled, bool):
            raise ApiError(400, "bad_request", "enabled must be true or false.")
        return _state_json(await (await self.store()).do_set_enabled(agent.id, enabled))

    async def test(self, _request: Request, agent: Any) -> Dict[str, Any]:
        if not _available():
            raise ApiError(409, "push_unavailable",
                           "Push notifications are not set up on this server (VAPID keys).")
        count = await (await self.store()).do_test(agent.id)
        if self.sender is not None:
            self.sender.wake()
        return {"queued": count}

    async def start(self) -> None:
        push = _push_settings()
        if push is None or not push.enabled:
            logger.info("Agent push is off (PUSH_ENABLED / VAPID keys, docs/agent-console.md).")
            return
        problems = key_problems(push.vapid_private_key, push.vapid_public_key,
                                push.vapid_subject)
        if problems:
            logger.error("Agent push stays off: %s", " ".join(problems))
            return
        from bot import db

        url = self.console.config.support_db_url
        self.sender = PushSender(db.make_engine(url), push, feed_url=url)
        self.sender.start()

    async def stop(self) -> None:
        if self.sender is not None:
            sender, self.sender = self.sender, None
            await sender.stop()
            await sender._engine.dispose()


def install(bp: Blueprint, console: Any) -> _PushRoutes:
    """Add the push routes, the service worker and the sender's listeners to the console's
    blueprint (``console`` is the :class:`~bot.agent_console.channel.AgentConsoleInput`)."""
    routes = _PushRoutes(console)
    console.push = routes

    @bp.route("/sw.js", methods=["GET"])
    async def service_worker(_request: Request) -> HTTPResponse:
        answer = await serve_asset("sw.js", "application/javascript; charset=utf-8")
        answer.headers["Service-Worker-Allowed"] = "./"
        return answer

    for path, method, handler in (
        ("/api/push", "GET", routes.get),
        ("/api/push/subscription", "POST", routes.subscribe),
        ("/api/push/unsubscribe", "POST", routes.unsubscribe),
        ("/api/push/settings", "POST", routes.settings),
        ("/api/push/test", "POST", routes.test),
    ):
        def bound(handler: Any = handler) -> Any:
            async def route(request: Request) -> HTTPResponse:
                return await console._call(request, handler)

            return route

        bp.add_route(bound(), path, methods=[method], name=path.strip("/").replace("/", "_"))

    @bp.listener("after_server_start")
    async def _start(_app: Any, _loop: Any) -> None:
        await routes.start()

    @bp.listener("before_server_stop")
    async def _stop(_app: Any, _loop: Any) -> None:
        await routes.stop()

    return routes
