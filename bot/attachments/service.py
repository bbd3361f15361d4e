"""One upload, from its bytes to a stored attachment: sniff, check, clean, store.

:class:`AttachmentService` is what the widget and console routes (and the Twilio bridge, for
an agent's media) call. The declared ``Content-Type`` and the file name's extension are never
believed: the type comes from the bytes (:func:`bot.attachments.sniff.sniff`), images are
decoded and re-encoded without metadata (:func:`bot.attachments.images.process_image`, in a
worker thread) and get a thumbnail, and the name the file is shown with ends in the sniffed
type's extension. A refused upload stores nothing.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import unicodedata
from typing import Any, Optional

from bot.attachments.images import ImageRefused, process_image
from bot.attachments.sniff import SNIFF_BYTES, sniff
from bot.attachments.storage import Storage, new_key, storage_from_settings
from bot.attachments.store import AttachmentStore, AttachmentView, NewAttachment

__all__ = ["AttachmentError", "AttachmentService", "clean_name"]

logger = logging.getLogger(__name__)

MAX_NAME_CHARS = 120
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\"\\/:*?<>|;]+")
ACCEPTED = "photos (JPEG, PNG, WebP, GIF) and PDF files"


class AttachmentError(Exception):
    """A refused upload: ``code`` and HTTP ``status`` for the client, a clear message.

    Codes: ``too_large`` (413), ``unsupported_type`` (415), ``bad_file`` (422), ``empty``
    (400), ``rate_limited`` (429).
    """

    def __init__(self, code: str, message: str, status: int,
                 retry_after: Optional[float] = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.retry_after = retry_after


def clean_name(name: Optional[str], extension: str, default: str) -> str:
    """A file name safe to show and to put in ``Content-Disposition``.

    The directory part, control and reserved characters are dropped, the length is capped,
    and the extension is the sniffed type's (``invoice.html`` that is a PDF becomes
    ``invoice.pdf``).
    """
    base = unicodedata.normalize("NFC", str(name or "")).replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base).strip(" ._")
    stem = base.rsplit(".", 1)[0] if "." in base else base
    stem = stem.strip(" ._")[:MAX_NAME_CHARS] or default
    return f"{stem}.{extension}"


class AttachmentService:
    """Uploads into storage and the ``attachments`` table.

    Args:
        config: ``Settings.attachments`` (:class:`bot.settings.AttachmentSettings`).
        storage: Where the bytes go.
        store: The rows (owned by the caller).
    """

    def __init__(self, config: Any, storage: Storage, store: AttachmentStore) -> None:
        self.config = config
        self.storage = storage
        self.store = store

    @classmethod
    def from_settings(cls, store: AttachmentStore) -> "AttachmentService":
        """With the storage ``ATTACHMENT_STORAGE`` names."""
        from bot.settings import get_settings

        settings = get_settings()
        return cls(settings.attachments, storage_from_settings(settings), store)

    @property
    def max_bytes(self) -> int:
        """``ATTACHMENT_MAX_BYTES``."""
        return int(self.config.max_bytes)

    async def accept(self, data: bytes, name: Optional[str], conversation_id: str,
                     uploader: str, twilio_media_sid: Optional[str] = None) -> AttachmentView:
        """Check, clean and store one upload of a conversation.

        Args:
            data: The whole body (already read under :attr:`max_bytes`).
            name: The name the client gave (shown only, never trusted for the type).
            conversation_id: The conversation it belongs to.
            uploader: ``customer:<id>``, ``agent:<id>`` or ``twilio:<author>``.
            twilio_media_sid: The Twilio Media SID it came from (an agent's media).

        Raises:
            AttachmentError: Refused (nothing is stored).
            LookupError: No such conversation.
        """
        if not data:
            raise AttachmentError("empty", "The file is empty.", 400)
        if len(data) > self.max_bytes:
            raise AttachmentError("too_large", self.too_large_message(), 413)
        file_type = sniff(data[:SNIFF_BYTES])
        if file_type is None:
            raise AttachmentError("unsupported_type", f"Only {ACCEPTED} can be sent.", 415)
        width = height = None
        thumb = thumb_type = None
        thumb_size: Any = (None, None)
        if file_type.kind == "image":
            try:
                processed = await asyncio.to_thread(
                    process_image, data, file_type, int(self.config.max_pixels),
                    int(self.config.thumb_px))
            except ImageRefused as error:
                raise AttachmentError("bad_file", str(error), 422) from None
            data, width, height = processed.data, processed.width, processed.height
            thumb, thumb_type = processed.thumb, processed.thumb_type
            thumb_size = (processed.thumb_width, processed.thumb_height)
        elif b"%%EOF" not in data[-2048:]:
            raise AttachmentError("bad_file", "The PDF file is incomplete.", 422)
        key = new_key(file_type.extension)
        thumb_key = new_key("thumb") if thumb else None
        await self.storage.put(key, data, file_type.content_type)
        try:
            if thumb and thumb_key and thumb_type:
                await self.storage.put(thumb_key, thumb, thumb_type.content_type)
            return await self.store.do_store(conversation_id, uploader, NewAttachment(
                kind=file_type.kind, content_type=file_type.content_type,
                name=clean_name(name, file_type.extension,
                                "photo" if file_type.kind == "image" else "document"),
                size=len(data), sha256=hashlib.sha256(data).hexdigest(), width=width,
                height=height, storage_key=key, thumb_key=thumb_key,
                thumb_content_type=thumb_type.content_type if thumb_type else None,
                thumb_width=thumb_size[0], thumb_height=thumb_size[1],
                twilio_media_sid=twilio_media_sid))
        except BaseException:
            for stored in (key, thumb_key):
                if stored:
                    try:
                        await asyncio.shield(self.storage.delete(stored))
                    except Exception:  # noqa: BLE001 - an orphan object is harmless
                        logger.exception("Could not delete attachment object %s", stored)
            raise

    def too_large_message(self) -> str:
        """"Files can be at most N MB." for this limit."""
        megabytes = self.max_bytes / (1024 * 1024)
        size = f"{megabytes:g} MB" if megabytes >= 1 else f"{self.max_bytes // 1024} KB"
        return f"Files can be at most {size}."

    async def content(self, view: AttachmentView, thumb: bool = False) -> bytes:
        """The stored bytes of an attachment (or of its thumbnail).

        Raises:
            bot.attachments.storage.StorageMissing: The object is gone.
            LookupError: ``thumb`` asked for and there is none.
        """
        if thumb:
            if not view.thumb_key:
                raise LookupError("No thumbnail.")
            return await self.storage.get(view.thumb_key)
        return await self.storage.get(view.storage_key)
