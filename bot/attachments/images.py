"""Images re-encoded without their metadata, and their thumbnails (Pillow).

Everything here is synchronous and CPU-bound: the service runs it in a worker thread
(:func:`asyncio.to_thread`), never on the event loop.

Re-encoding drops what a photo carries besides its pixels (EXIF with the GPS position and
the camera's serial number, XMP, comments); the orientation EXIF asked for is applied to
the pixels first, so the photo still stands the right way up. The colour profile (ICC) is
kept. An animated GIF keeps its first frame.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Optional

from bot.attachments.sniff import TYPES, FileType

__all__ = ["ImageRefused", "Processed", "process_image"]

_PIL_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "gif": "GIF"}


class ImageRefused(ValueError):
    """The bytes are not a usable image of the sniffed type (the message says why)."""


@dataclass(frozen=True)
class Processed:
    """An image as it is stored: re-encoded bytes and a thumbnail.

    Attributes:
        data: The re-encoded image (same type as uploaded).
        file_type: Its type.
        width, height: Its size in pixels (after applying the EXIF orientation).
        thumb: The thumbnail's bytes (JPEG, or PNG when the image has transparency).
        thumb_type: The thumbnail's type.
        thumb_width, thumb_height: Its size.
    """

    data: bytes
    file_type: FileType
    width: int
    height: int
    thumb: Optional[bytes]
    thumb_type: Optional[FileType]
    thumb_width: Optional[int]
    thumb_height: Optional[int]


def process_image(data: bytes, file_type: FileType, max_pixels: int, thumb_px: int) -> Processed:
    """Decode, check, re-encode without metadata and make a thumbnail.

    Args:
        data: The uploaded bytes (already sniffed as ``file_type``).
        file_type: An image type from :data:`bot.attachments.sniff.TYPES`.
        max_pixels: Refuse images with more pixels (decompression bombs).
        thumb_px: The thumbnail's longest side.

    Raises:
        ImageRefused: Not decodable as that type, or too many pixels.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[file_type.name]])
    except (UnidentifiedImageError, OSError, ValueError, KeyError):
        raise ImageRefused("The image could not be read.") from None
    width, height = image.size
    if width < 1 or height < 1 or width * height > max_pixels:
        raise ImageRefused(
            f"The image is too large ({width}x{height} pixels; at most {max_pixels:,}).")
    try:
        image.seek(0)
        image.load()
        icc = image.info.get("icc_profile")
        image = ImageOps.exif_transpose(image) or image
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise ImageRefused("The image could not be read.") from None
    clean = _reencode(image, file_type, icc)
    thumb, thumb_type, size = _thumbnail(image, thumb_px)
    return Processed(data=clean, file_type=file_type, width=image.size[0],
                     height=image.size[1], thumb=thumb, thumb_type=thumb_type,
                     thumb_width=size[0], thumb_height=size[1])


def _has_alpha(image: "object") -> bool:
    mode = getattr(image, "mode", "")
    info = getattr(image, "info", {})
    return mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in info)


def _reencode(image: "object", file_type: FileType, icc: Optional[bytes]) -> bytes:
    """The pixels again, in the same format, with no metadata but the colour profile."""
    out = io.BytesIO()
    options = {"icc_profile": icc} if icc else {}
    if file_type.name == "jpeg":
        if image.mode not in ("RGB", "L", "CMYK"):
            image = image.convert("RGB")
        image.save(out, format="JPEG", quality=90, optimize=True, **options)
    elif file_type.name == "png":
        image.save(out, format="PNG", **options)
    elif file_type.name == "webp":
        if image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA" if _has_alpha(image) else "RGB")
        image.save(out, format="WEBP", quality=90, **options)
    else:  # gif: the first frame
        frame = image if image.mode in ("P", "L") else image.convert("P")
        frame.save(out, format="GIF")
    return out.getvalue()


def _thumbnail(image: "object", size: int) -> "tuple":
    thumb = image.copy()
    alpha = _has_alpha(thumb)
    thumb = thumb.convert("RGBA" if alpha else "RGB")
    thumb.thumbnail((size, size))
    out = io.BytesIO()
    if alpha:
        thumb.save(out, format="PNG")
        kind = TYPES["png"]
    else:
        thumb.save(out, format="JPEG", quality=80)
        kind = TYPES["jpeg"]
    return out.getvalue(), kind, thumb.size
