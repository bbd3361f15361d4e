"""Rasa's calls to the action server reuse their HTTP connections.

Rasa 3.6's ``EndpointConfig.request`` (``rasa/utils/endpoints.py``) opens a new
``aiohttp.ClientSession`` for every request, so every custom action of every turn makes a
new TCP connection to the action server, a new connector and a cookie jar, and closes them
again: in issue 14's profile (50 widget conversations, one Rasa process) that was 2-3 % of
the process, beside the request itself.

:func:`install` replaces ``request`` with the same request (same URL, headers, query
parameters, authentication, compression, CA file, timeout, the same errors for status >= 400
and the same ``None`` for a body that is not JSON) sent through one session per event loop,
whose connector keeps idle connections for :data:`KEEPALIVE_SECONDS`: less than the 5 s the
action server (Sanic) keeps them, so a kept connection is not one the server is closing.
Cookies are not kept between requests (as with a session per request). :func:`close`
(``bot/serve.py``, when the server stops) closes the sessions.
"""
from __future__ import annotations

import asyncio
import os
import ssl
import weakref
from typing import Any, Dict, Optional, Text

__all__ = ["KEEPALIVE_SECONDS", "install", "close"]

KEEPALIVE_SECONDS = 2.0
"""How long an idle connection to the action server is kept for the next request."""

_installed: Dict[str, Any] = {}
_SESSIONS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any]" = (
    weakref.WeakKeyDictionary())


def _session() -> Any:
    import aiohttp

    loop = asyncio.get_running_loop()
    session = _SESSIONS.get(loop)
    if session is None or session.closed:
        session = _SESSIONS[loop] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(keepalive_timeout=KEEPALIVE_SECONDS),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
    return session


async def close() -> None:
    """Close this event loop's session (its kept connections)."""
    session = _SESSIONS.pop(asyncio.get_running_loop(), None)
    if session is not None and not session.closed:
        await session.close()


def install() -> None:
    """Replace ``EndpointConfig.request`` (idempotent)."""
    import aiohttp
    from aiohttp.client_exceptions import ContentTypeError
    from rasa.shared.exceptions import FileNotFoundException
    from rasa.utils.endpoints import (
        DEFAULT_REQUEST_TIMEOUT, ClientResponseError, EndpointConfig, concat_url)

    if "original" in _installed:
        return

    async def request(
        self: Any,
        method: Text = "post",
        subpath: Optional[Text] = None,
        content_type: Optional[Text] = "application/json",
        compress: bool = False,
        **kwargs: Any,
    ) -> Optional[Any]:
        """:meth:`rasa.utils.endpoints.EndpointConfig.request` on a kept session."""
        headers = {}
        if content_type:
            headers["Content-Type"] = content_type
        if "headers" in kwargs:
            headers.update(kwargs["headers"])
            del kwargs["headers"]
        if self.headers:
            headers.update(self.headers)
        url = concat_url(self.url, subpath)
        sslcontext = None
        if self.cafile:
            try:
                sslcontext = ssl.create_default_context(cafile=self.cafile)
            except FileNotFoundError as e:
                raise FileNotFoundException(
                    f"Failed to find certificate file, "
                    f"'{os.path.abspath(self.cafile)}' does not exist."
                ) from e
        auth = None
        if self.basic_auth:
            auth = aiohttp.BasicAuth(self.basic_auth["username"], self.basic_auth["password"])
        kwargs.setdefault("timeout", aiohttp.ClientTimeout(total=DEFAULT_REQUEST_TIMEOUT))
        if isinstance(kwargs["timeout"], (int, float)):
            kwargs["timeout"] = aiohttp.ClientTimeout(total=kwargs["timeout"])
        async with _session().request(
            method, url, headers=headers, params=self.combine_parameters(kwargs),
            compress=compress, ssl=sslcontext, auth=auth, **kwargs,
        ) as response:
            if response.status >= 400:
                raise ClientResponseError(
                    response.status, response.reason, await response.content.read())
            try:
                return await response.json()
            except ContentTypeError:
                return None

    _installed["original"] = EndpointConfig.request
    EndpointConfig.request = request  # type: ignore[assignment]


def uninstall() -> None:
    """Put Rasa's ``request`` back (tests)."""
    from rasa.utils.endpoints import EndpointConfig

    original = _installed.pop("original", None)
    if original is not None:
        EndpointConfig.request = original  # type: ignore[assignment]
