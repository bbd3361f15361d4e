"""Console sign-in: the request wrapper that authenticates, login, logout, ``/api/me``.

:class:`ConsoleSessionRoutes` is mixed into
:class:`bot.agent_console.channel.AgentConsoleInput`. :meth:`_call` runs a handler for an
authenticated agent (a session token in ``Authorization: Bearer``) and maps the stores'
exceptions to JSON errors; :meth:`_login` is throttled (:mod:`bot.agent_console.throttle`).
"""
from __future__ import annotations

import logging
import math
from typing import Any, Awaitable, Callable, Dict

from sanic.request import Request
from sanic.response import HTTPResponse

from bot.agent_console.throttle import LOGIN_THROTTLED, LoginThrottle, client_ip
from bot.agent_console.wire import ApiError, bearer, iso, json_response, read_body, str_field
from bot.support.agents import AgentView, AuthFailed, Forbidden
from bot.support.ops import NotFound, StateError

__all__ = ["ConsoleSessionRoutes"]

logger = logging.getLogger("bot.agent_console.channel")  # the console logs under one name


class ConsoleSessionRoutes:
    """Authentication and the session routes (a mixin of ``AgentConsoleInput``)."""

    async def _call(self, request: Request,
                    handler: Callable[[Request, AgentView], Awaitable[Any]],
                    auth: bool = True) -> HTTPResponse:
        try:
            agents, _ = await self.stores()
            agent: Any = None
            if auth:
                agent = await agents.authenticate(bearer(request))
            body = await handler(request, agent)
            if isinstance(body, HTTPResponse):
                return body
            return json_response(body)
        except ApiError as error:
            return error.response()
        except AuthFailed as error:
            return ApiError(401, error.code, str(error)).response()
        except Forbidden as error:
            return ApiError(403, "forbidden", str(error)).response()
        except NotFound as error:
            return ApiError(404, "not_found", str(error)).response()
        except StateError as error:
            return ApiError(409, "conflict", str(error)).response()
        except (ValueError, LookupError) as error:
            return ApiError(400, "bad_request", str(error)).response()
        except Exception:  # noqa: BLE001 - logged; the client gets a clean 500
            logger.exception("Agent console request %s failed", request.path)
            return ApiError(500, "server_error", "Something went wrong on our side.").response()

    def client_ip(self, request: Request) -> str:
        """The request's client address (see :func:`client_ip`)."""
        return client_ip(request.ip or "", request.headers.getall("x-forwarded-for", []),
                         self._trusted_proxies)

    async def _login(self, request: Request, _agent: None) -> Dict[str, Any]:
        body = read_body(request)
        username = str_field(body, "username", max_chars=64)
        password = str_field(body, "password", max_chars=1024)
        ip = self.client_ip(request)
        retry = self._login_throttle.check(ip, username)
        if retry:
            logger.warning("Console login throttled (ip %s, account %r): %.0f s", ip,
                           LoginThrottle.account_key(username), retry)
            raise ApiError(429, "rate_limited",
                           LOGIN_THROTTLED.format(seconds=max(1, math.ceil(retry))), retry)
        agents, _ = await self.stores()
        try:
            token, agent, expires = await agents.do_login(username or "", password or "",
                                                          ttl_seconds=self.config.session_ttl)
        except AuthFailed:
            backoff = self._login_throttle.failed(username)
            if backoff:
                logger.warning("Console account %r backs off for %.0f s after failed logins "
                               "(last from %s)", LoginThrottle.account_key(username), backoff,
                               ip)
            raise
        self._login_throttle.succeeded(username)
        logger.info("Agent %s logged in to the console.", agent.username)
        return {"token": token, "agent": agent.to_json(), "expires_at": iso(expires)}

    async def _logout(self, request: Request, agent: AgentView) -> Dict[str, Any]:
        token = bearer(request) or ""
        agents, _ = await self.stores()
        await agents.do_logout(token)
        for connection in [c for c in self._connections if c.token == token]:
            await connection.send({"type": "logged_out"})
            await connection.close(4001, "logged_out")
        return {"ok": True}

    async def _me(self, _request: Request, agent: AgentView) -> Dict[str, Any]:
        return {"agent": agent.to_json()}
