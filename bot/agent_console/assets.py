"""The console's single page and its static files (``static/``, no build step).

Served with ``no-cache``, ``nosniff`` and no referrer; the page itself with a strict
Content-Security-Policy and ``X-Frame-Options: DENY``.
"""
from __future__ import annotations

from pathlib import Path

from sanic import response
from sanic.response import HTTPResponse

from bot.agent_console.wire import ApiError

__all__ = ["ASSETS", "STATIC", "serve_asset"]

STATIC = Path(__file__).resolve().parent / "static"
ASSETS = {
    "console.js": "application/javascript; charset=utf-8",
    "push.js": "application/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'")


async def serve_asset(name: str, mime: str) -> HTTPResponse:
    """The file ``static/<name>`` (404 ``not_found`` when it is missing)."""
    path = STATIC / name
    if not path.is_file():
        return ApiError(404, "not_found", f"{name} is missing.").response()
    headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
               "Referrer-Policy": "no-referrer"}
    if name == "index.html":
        headers.update({"Content-Security-Policy": CSP, "X-Frame-Options": "DENY"})
    return await response.file(path, mime_type=mime, headers=headers)
