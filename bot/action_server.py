"""The action server, behind the shared secret: ``python -m bot.action_server [--port 5055]``.

rasa-sdk's own server (``rasa run actions``) listens on every interface and runs any action
for anybody who POSTs a tracker to ``/webhook`` — a forged tracker cancels any order. This
entry point builds the same Sanic app (:func:`rasa_sdk.endpoint.create_app` with the
``actions`` package) and puts a trust boundary in front of it (docs/security.md):

* it listens on ``ACTIONS_HOST`` (default ``127.0.0.1``) and refuses to start without
  ``ACTION_SERVER_TOKEN`` (or, with ``SUPPORT_ENV=production``, on any demo default,
  :mod:`bot.production`);
* every request but ``GET /health`` needs ``Authorization: Bearer <ACTION_SERVER_TOKEN>``
  (constant-time compare), else ``401`` with a JSON error; the Rasa server sends it
  (``bot/serve.py``);
* bodies are at most ``ACTION_SERVER_MAX_BODY`` bytes, on the wire (Sanic's
  ``REQUEST_MAX_SIZE``, ``413``) and after inflating: ``Content-Encoding: deflate`` (what
  Rasa sends with ``COMPRESS_ACTION_SERVER_REQUEST=true``) is inflated here with a bounded
  ``zlib.decompressobj`` (over the limit ``413``, broken ``400``) and handed to rasa-sdk as
  a plain body, so rasa-sdk's unbounded ``zlib.decompress`` never sees it; any other
  encoding is ``415``;
* errors are short JSON bodies, never the request body or a traceback.
"""
from __future__ import annotations

import argparse
import asyncio
import hmac
import logging
import sys
import zlib
from typing import Optional, Sequence

from sanic import Sanic, response
from sanic.exceptions import SanicException
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.i18n import locale_of_tracker, set_locale
from bot.settings import Settings, get_settings

__all__ = ["BodyTooLarge", "BrokenBody", "create_app", "inflate", "main"]

logger = logging.getLogger(__name__)

#: The package with the custom actions.
ACTIONS_PACKAGE = "actions"
DEFAULT_PORT = 5055
#: Paths that need no token (they reveal nothing but "up").
OPEN_PATHS = frozenset({"/health"})
#: Content-Encoding values accepted (besides none at all).
IDENTITY = frozenset({"", "identity"})


class BodyTooLarge(ValueError):
    """The inflated body is larger than the limit."""


class BrokenBody(ValueError):
    """The body is not a complete deflate (zlib) stream."""


def inflate(body: bytes, limit: int) -> bytes:
    """Inflate a ``Content-Encoding: deflate`` body, reading at most ``limit`` bytes of output.

    HTTP's "deflate" is the zlib format (RFC 1950), which is what aiohttp, and so Rasa,
    sends. Never produces more than ``limit + 1`` bytes, whatever the input claims.

    Args:
        body: The compressed body.
        limit: The largest inflated size accepted, bytes.

    Returns:
        The inflated body.

    Raises:
        BodyTooLarge: The body inflates to more than ``limit`` bytes.
        BrokenBody: It is not one complete zlib stream (or has trailing bytes).
    """
    inflater = zlib.decompressobj()
    out = bytearray()
    data = body
    try:
        while True:
            chunk = inflater.decompress(data, limit + 1 - len(out))
            out += chunk
            if len(out) > limit:
                raise BodyTooLarge(f"the body inflates to more than {limit} bytes")
            if inflater.eof:
                break
            data = inflater.unconsumed_tail
            if not data and not chunk:
                raise BrokenBody("the deflate stream is truncated")
    except zlib.error as error:
        raise BrokenBody(f"not a deflate stream: {error}") from None
    if inflater.unused_data:
        raise BrokenBody("bytes after the end of the deflate stream")
    return bytes(out)


def _error(status: int, code: str, message: str, **headers: str) -> HTTPResponse:
    return response.json({"error": code, "message": message}, status=status,
                         headers=headers or None)


def _authorized(request: Request, token: bytes) -> bool:
    header = request.headers.get("authorization") or ""
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return False
    return hmac.compare_digest(credential.strip().encode(), token)


async def speak_the_customers_language(request: Request) -> None:
    """Request middleware: the language of the action call's tracker for this request.

    rasa-sdk runs the action in the request's task, so :mod:`bot.messages` (and the times
    of :mod:`bot.timeparse`) speak the customer's language (bot/i18n.py) without the
    actions passing it around. A body that is no JSON is left to rasa-sdk.
    """
    if request.path != "/webhook" or request.method != "POST":
        return
    try:
        call = request.json
    except Exception:  # noqa: BLE001 - rasa-sdk answers a broken body itself
        return
    if isinstance(call, dict):
        tracker = call.get("tracker")
        set_locale(locale_of_tracker(tracker if isinstance(tracker, dict) else {}))


def create_app(settings: Settings, token: str) -> Sanic:
    """rasa-sdk's Sanic app for the ``actions`` package, behind the token and the body limits.

    Args:
        settings: ``action_server_max_body`` is the body limit.
        token: The shared secret callers must send as a bearer token.

    Returns:
        The app (not running).
    """
    from rasa_sdk.endpoint import create_app as create_sdk_app

    if not token:
        raise ValueError("the action server needs a token")
    limit = settings.action_server_max_body
    secret = token.encode()
    # No CORS origins: no browser has any business calling the action server.
    app = create_sdk_app(ACTIONS_PACKAGE, cors_origins=None)
    app.config.REQUEST_MAX_SIZE = limit
    app.config.FALLBACK_ERROR_FORMAT = "json"

    async def guard(request: Request) -> Optional[HTTPResponse]:
        if request.path in OPEN_PATHS and request.method in ("GET", "HEAD"):
            return None
        if not _authorized(request, secret):
            logger.warning("action server: refused %s %s without a valid token from %s",
                           request.method, request.path, request.ip)
            return _error(401, "unauthorized", "A valid bearer token is required.",
                          **{"WWW-Authenticate": 'Bearer realm="actions"'})
        encodings = [value.strip().lower()
                     for value in request.headers.getall("content-encoding", [])]
        if not encodings or all(value in IDENTITY for value in encodings):
            return None
        if encodings != ["deflate"]:
            return _error(415, "unsupported_encoding",
                          "Content-Encoding must be identity or deflate.")
        try:
            body = await asyncio.to_thread(inflate, request.body or b"", limit)
        except BodyTooLarge:
            return _error(413, "too_large", f"The body inflates to more than {limit} bytes.")
        except BrokenBody as error:
            return _error(400, "bad_encoding", f"The deflate body is broken: {error}.")
        # rasa-sdk inflates a "deflate" body itself, without a limit: hand it a plain one.
        request.body = body
        request.parsed_json = None
        del request.headers["content-encoding"]
        request.headers["content-length"] = str(len(body))
        return None

    async def on_error(request: Request, exception: Exception) -> HTTPResponse:
        # Replaces rasa-sdk's handler, which answers 500 with the exception text and the
        # request body, also for 404, 405 and 413.
        if isinstance(exception, SanicException):
            status = int(getattr(exception, "status_code", 500) or 500)
            if status == 413:
                return _error(413, "too_large", f"The body is larger than {limit} bytes.")
            if status < 500:
                return _error(status, "bad_request" if status == 400 else "http_error",
                              str(exception)[:200])
        logger.error("action server: error in %s %s", request.method, request.path,
                     exc_info=exception)
        return _error(500, "internal_error", "The action server failed on this request.")

    app.register_middleware(guard, "request")
    app.register_middleware(speak_the_customers_language, "request")
    app.error_handler.add(Exception, on_error)
    app.register_listener(_close_services, "after_server_stop")
    return app


async def _close_services(_app: Sanic, _loop: object) -> None:
    """Dispose the actions' database engines, so the process exits on SIGTERM.

    Without this an open aiosqlite connection thread keeps the interpreter from exiting
    after Sanic has stopped (``rasa run actions`` has the same problem).
    """
    from actions import common

    close = getattr(common, "close_services", None)
    if close is not None:
        await close()
        return
    current = getattr(common, "_services", None)
    if current is None:
        return
    for resource in (current.store, current.orders):
        try:
            await resource.dispose()
        except Exception:  # noqa: BLE001 - shutting down; log and go on
            logger.exception("action server: closing %s failed", type(resource).__name__)
    common.use_services(None)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot.action_server",
        description="Run the custom actions behind ACTION_SERVER_TOKEN on ACTIONS_HOST.")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port to listen on (default {DEFAULT_PORT}; Procfile: $ACTIONS_PORT)")
    parser.add_argument("--debug", action="store_true", help="log at DEBUG level")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Check the configuration, then serve until stopped.

    Args:
        argv: Command-line arguments (default ``sys.argv[1:]``); no secrets among them.

    Returns:
        The exit status (2: refused to start).
    """
    from rasa_sdk import utils
    from rasa_sdk.plugin import plugin_manager

    from bot.production import enforce_production

    from bot.startup import exit_on_bad_configuration

    args = _parser().parse_args(argv)
    exit_on_bad_configuration("action server")
    settings = get_settings()
    token = settings.action_server_token
    if not token:
        print(
            "action server: refusing to start without ACTION_SERVER_TOKEN, the secret the "
            "Rasa server sends (Authorization: Bearer ...). Set ACTION_SERVER_TOKEN or "
            f"ACTION_SERVER_TOKEN_FILE, or create {settings.var_dir / 'action_server_token'} "
            "(`make run` does).",
            file=sys.stderr)
        return 2
    enforce_production(settings, "action server")

    level = logging.DEBUG if args.debug else logging.INFO
    logging.getLogger("matplotlib").setLevel(logging.WARN)
    utils.configure_colored_logging(level)
    utils.update_sanic_log_level()

    app = create_app(settings, token)
    plugin_manager().hook.attach_sanic_app_extensions(app=app)
    logger.info("Action server on http://%s:%s (token required, bodies up to %d bytes)",
                settings.actions_host, args.port, settings.action_server_max_body)
    app.run(host=settings.actions_host, port=args.port,
            workers=utils.number_of_sanic_workers(), access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
