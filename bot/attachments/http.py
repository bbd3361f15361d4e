"""HTTP pieces both channels share: reading an upload under the limit, serving a file.

:func:`read_limited` reads a streamed request body (the route is declared with
``stream=True``, so Sanic has not buffered it) chunk by chunk and stops at the first byte
over the limit: a 1 GB upload costs at most the limit in memory. A ``Content-Length`` over
the limit is refused before anything is read.

:func:`file_response` serves an attachment with its sniffed type (never HTML),
``Content-Disposition`` (``inline`` for images, ``attachment`` for PDFs), ``nosniff``, a
sandboxing Content-Security-Policy and no caching by shared caches.
"""
from __future__ import annotations

from typing import Any, Optional
from urllib.parse import quote

from sanic import response
from sanic.response import HTTPResponse

from bot.attachments.service import AttachmentError
from bot.attachments.store import AttachmentView

__all__ = ["SAFE_TYPES", "file_response", "read_limited", "upload_name"]

SAFE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/gif",
                        "application/pdf"})


async def read_limited(request: Any, limit: int, too_large: str) -> bytes:
    """The request body, refused as soon as it is longer than ``limit`` bytes.

    Raises:
        AttachmentError: ``too_large`` (413) with the ``too_large`` message.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise AttachmentError("too_large", too_large, 413)
        except ValueError:
            raise AttachmentError("bad_request", "Bad Content-Length.", 400) from None
    stream = getattr(request, "stream", None)
    if stream is None:  # a route without stream=True: Sanic read it (under its own limit)
        body = bytes(request.body or b"")
        if len(body) > limit:
            raise AttachmentError("too_large", too_large, 413)
        return body
    chunks, size = [], 0
    while True:
        chunk = await stream.read()
        if chunk is None:
            break
        size += len(chunk)
        if size > limit:
            raise AttachmentError("too_large", too_large, 413)
        chunks.append(chunk)
    return b"".join(chunks)


def upload_name(request: Any) -> Optional[str]:
    """The file name the client gave (``?name=``), shown only."""
    name = request.args.get("name")
    return name[:300] if isinstance(name, str) else None


def file_response(view: AttachmentView, data: bytes, thumb: bool = False,
                  headers: Optional[dict] = None) -> HTTPResponse:
    """The attachment's bytes with safe headers (see the module docstring)."""
    content_type = (view.thumb_content_type if thumb else view.content_type) or ""
    if content_type not in SAFE_TYPES:  # never happens: rows hold sniffed types only
        content_type = "application/octet-stream"
    disposition = "attachment" if view.kind == "pdf" and not thumb else "inline"
    name = view.name if not thumb else f"thumb-{view.name.rsplit('.', 1)[0]}." + (
        "png" if content_type == "image/png" else "jpg")
    ascii_name = name.encode("ascii", "replace").decode("ascii").replace("?", "_")
    all_headers = {
        "Content-Disposition": f"{disposition}; filename=\"{ascii_name}\"; "
                               f"filename*=UTF-8''{quote(name, safe='')}",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Cache-Control": "private, max-age=300",
        "Referrer-Policy": "no-referrer",
        **(headers or {}),
    }
    return response.raw(data, content_type=content_type, headers=all_headers)
