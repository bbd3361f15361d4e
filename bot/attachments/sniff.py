"""What a file is, from its first bytes (magic numbers), never from its name or header.

Only the types the chat accepts are recognised: JPEG, PNG, WebP, GIF (images) and PDF.
Everything else (HTML, SVG, executables, archives, an image with a ``.pdf`` name ...) is
``None``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

__all__ = ["FileType", "SNIFF_BYTES", "TYPES", "sniff"]

SNIFF_BYTES = 16
"""How many leading bytes :func:`sniff` needs."""


@dataclass(frozen=True)
class FileType:
    """A recognised file type.

    Attributes:
        name: ``jpeg``, ``png``, ``webp``, ``gif`` or ``pdf``.
        content_type: The MIME type it is served with.
        extension: File name extension (without the dot).
        kind: ``image`` or ``pdf``.
    """

    name: str
    content_type: str
    extension: str
    kind: str


TYPES: Dict[str, FileType] = {
    "jpeg": FileType("jpeg", "image/jpeg", "jpg", "image"),
    "png": FileType("png", "image/png", "png", "image"),
    "webp": FileType("webp", "image/webp", "webp", "image"),
    "gif": FileType("gif", "image/gif", "gif", "image"),
    "pdf": FileType("pdf", "application/pdf", "pdf", "pdf"),
}


def sniff(head: bytes) -> Optional[FileType]:
    """The type of a file from its first :data:`SNIFF_BYTES` bytes, or None.

    Args:
        head: The file's first bytes (more is fine).

    Returns:
        The :class:`FileType`, or None when it is not one the chat accepts.
    """
    if head.startswith(b"\xff\xd8\xff"):
        return TYPES["jpeg"]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return TYPES["png"]
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return TYPES["webp"]
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return TYPES["gif"]
    if head.startswith(b"%PDF-"):
        return TYPES["pdf"]
    return None
