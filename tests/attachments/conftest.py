"""Fixtures of the attachment tests: sample files made with Pillow, a local S3 server.

* :func:`jpeg_with_gps`: a JPEG whose EXIF carries a GPS position and a camera serial.
* ``s3_server``: moto's S3-compatible server on a free loopback port (session-scoped,
  started in a thread by the tests themselves; no network, no credentials).
"""
from __future__ import annotations

import io
from typing import Any, Iterator

import pytest


def jpeg_with_gps(width: int = 640, height: int = 480, orientation: int = 1) -> bytes:
    """A JPEG with EXIF GPS (52.52 N, 13.40 E), a body serial number and an orientation."""
    from PIL import Image

    image = Image.new("RGB", (width, height), (200, 30, 30))
    for x in range(0, width, 8):  # a stripe, so the thumbnail is not one colour
        image.putpixel((x, height // 2), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    exif[0xA431] = "SERIAL-12345"  # BodySerialNumber
    gps = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 0.0)}
    exif[0x8825] = gps  # GPSInfo
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif.tobytes(), quality=90)
    return out.getvalue()


def png_bytes(width: int = 64, height: int = 48, alpha: bool = False) -> bytes:
    from PIL import Image

    image = Image.new("RGBA" if alpha else "RGB", (width, height),
                      (10, 200, 10, 128) if alpha else (10, 200, 10))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
       b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")
HTML_AS_JPEG = b"<!doctype html><html><script>alert(document.cookie)</script></html>"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 (endpoint URL); stopped after the session."""
    from moto.server import ThreadedMotoServer

    from tests.servers import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")
