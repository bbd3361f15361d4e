"""Attachments below the HTTP layer: sniffing, images, names, storage (local and S3), the
upload service and its rows (SQLite and PostgreSQL)."""
from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import pytest

from bot.attachments.images import ImageRefused, process_image
from bot.attachments.service import AttachmentError, AttachmentService, clean_name
from bot.attachments.sniff import TYPES, sniff
from bot.attachments.storage import LocalStorage, S3Storage, StorageMissing, check_key, new_key
from bot.attachments.store import AttachmentStore
from bot.settings import AttachmentSettings
from bot.support.chat import ChatStore
from tests.attachments.conftest import HTML_AS_JPEG, PDF, jpeg_with_gps, png_bytes, s3_client


# ------------------------------------------------------------------ sniffing


@pytest.mark.parametrize("head, name", [
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "jpeg"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "png"),
    (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "webp"),
    (b"GIF89a\x01\x00", "gif"),
    (b"GIF87a\x01\x00", "gif"),
    (b"%PDF-1.7\n", "pdf"),
])
def test_sniff_knows_the_accepted_types_by_their_bytes(head: bytes, name: str) -> None:
    assert sniff(head) is TYPES[name]


@pytest.mark.parametrize("head", [
    HTML_AS_JPEG, b"<svg xmlns='http://www.w3.org/2000/svg'/>", b"MZ\x90\x00", b"PK\x03\x04",
    b"RIFF\x10\x00\x00\x00WAVEfmt ", b"", b"\xff\xd8", b" %PDF-1.4",
])
def test_sniff_refuses_everything_else(head: bytes) -> None:
    assert sniff(head) is None


# -------------------------------------------------------------------- images


def _exif(data: bytes) -> Any:
    from PIL import Image

    return Image.open(io.BytesIO(data)).getexif()


def test_photo_loses_its_gps_and_serial_but_keeps_its_pixels() -> None:
    original = jpeg_with_gps()
    assert 0x8825 in _exif(original) and 0xA431 in _exif(original)
    done = process_image(original, TYPES["jpeg"], 40_000_000, 320)
    assert done.data[:3] == b"\xff\xd8\xff"
    assert dict(_exif(done.data)) == {}  # no GPS, no serial, nothing
    assert b"SERIAL-12345" not in done.data
    assert (done.width, done.height) == (640, 480)
    assert done.thumb_type is TYPES["jpeg"] and (done.thumb_width, done.thumb_height) == (320, 240)
    assert sniff(done.thumb) is TYPES["jpeg"]


def test_orientation_is_applied_before_the_exif_goes() -> None:
    done = process_image(jpeg_with_gps(640, 480, orientation=6), TYPES["jpeg"], 40_000_000, 100)
    assert (done.width, done.height) == (480, 640)  # rotated: stands the right way up
    assert (done.thumb_width, done.thumb_height) == (75, 100)


def test_transparent_png_gets_a_png_thumbnail() -> None:
    done = process_image(png_bytes(800, 400, alpha=True), TYPES["png"], 40_000_000, 320)
    assert done.thumb_type is TYPES["png"] and (done.thumb_width, done.thumb_height) == (320, 160)


def test_too_many_pixels_and_broken_images_are_refused() -> None:
    with pytest.raises(ImageRefused, match="too large"):
        process_image(png_bytes(200, 100), TYPES["png"], 10_000, 320)
    with pytest.raises(ImageRefused, match="could not be read"):
        process_image(b"\xff\xd8\xff" + b"\x00" * 100, TYPES["jpeg"], 40_000_000, 320)
    with pytest.raises(ImageRefused):  # a PNG sniffed as JPEG is not decoded as one
        process_image(png_bytes(), TYPES["jpeg"], 40_000_000, 320)


@pytest.mark.parametrize("given, expected", [
    ("IMG_0001.JPG", "IMG_0001.jpg"),
    ("../../etc/passwd", "passwd.jpg"),
    ("C:\\Users\\me\\photo.png", "photo.jpg"),
    ("evil.html", "evil.jpg"),
    ('a"b;c\r\nd.jpg', "a_b_c_d.jpg"),
    ("", "photo.jpg"),
    (None, "photo.jpg"),
    ("..", "photo.jpg"),
])
def test_names_are_cleaned_and_end_in_the_sniffed_extension(given: Any, expected: str) -> None:
    assert clean_name(given, "jpg", "photo") == expected


# ------------------------------------------------------------------- storage


def test_keys_are_random_and_never_paths() -> None:
    keys = {new_key("jpg") for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert check_key(key) == key
    for bad in ("../x/abcdefghijklmnopqrstuvwx", "/etc/passwd", "ab/../../etc/passwd",
                "ab\\cdefghijklmnopqrstuvwx", "ab/short", "", "ab/abcdefghijklmnop/x"):
        with pytest.raises(ValueError):
            check_key(bad)


async def _exercise(storage: Any) -> None:
    key = new_key("jpg")
    assert not await storage.exists(key)
    await storage.put(key, b"first", "image/jpeg")
    await storage.put(key, b"x" * 200_000, "image/jpeg")  # replaced
    assert await storage.exists(key)
    assert await storage.get(key) == b"x" * 200_000
    chunks = [chunk async for chunk in storage.stream(key)]
    assert len(chunks) > 1 and b"".join(chunks) == b"x" * 200_000
    await storage.delete(key)
    assert not await storage.exists(key)
    with pytest.raises(StorageMissing):
        await storage.get(key)
    await storage.delete(key)  # nothing to delete: fine
    with pytest.raises(ValueError):
        await storage.get("../../../etc/passwd")


async def test_local_storage(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "attachments")
    await _exercise(storage)
    key = new_key("pdf")
    await storage.put(key, PDF, "application/pdf")
    path = tmp_path / "attachments" / key
    assert path.read_bytes() == PDF
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


async def test_s3_storage_against_a_local_s3_server(s3_server: str) -> None:
    client = s3_client(s3_server)
    bucket = f"att-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    storage = S3Storage(bucket, "attachments/", client=client)
    await _exercise(storage)
    key = new_key("png")
    await storage.put(key, png_bytes(), "image/png")
    head = client.head_object(Bucket=bucket, Key=f"attachments/{key}")
    assert head["ContentType"] == "image/png"
    # made from settings-like arguments (endpoint, region, keys), as production does
    made = S3Storage(bucket, "attachments/", endpoint_url=s3_server, region="us-east-1",
                     access_key_id="test", secret_access_key="test")
    assert await made.get(key) == png_bytes()


# ------------------------------------------------------------------- service


def _config(tmp_path: Path, **overrides: Any) -> AttachmentSettings:
    values = dict(max_bytes=200_000, max_pixels=40_000_000, thumb_px=320, upload_rate=10,
                  storage="local", local_dir=tmp_path / "att", s3_bucket=None,
                  s3_prefix="attachments/", s3_endpoint_url=None, s3_region=None,
                  s3_access_key_id=None, s3_secret_access_key=None)
    values.update(overrides)
    return AttachmentSettings(**values)


@pytest.fixture
async def service(db_url: str, tmp_path: Path) -> Any:
    chat = ChatStore.from_url(db_url)
    await chat.create_schema()
    await chat.do_open_conversation("widget:cust-anna", "cust-anna", "widget")
    await chat.do_open_conversation("widget:cust-ben", "cust-ben", "widget")
    store = AttachmentStore(chat.engine)
    try:
        yield AttachmentService(_config(tmp_path), LocalStorage(tmp_path / "att"), store)
    finally:
        await chat.dispose()


def _files(tmp_path: Path) -> list:
    root = tmp_path / "att"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def test_a_photo_is_stored_clean_with_its_thumbnail_and_an_audit_row(
        service: Any, tmp_path: Path) -> None:
    view = await service.accept(jpeg_with_gps(), "../DSC 0001.jpeg", "widget:cust-anna",
                                "customer:cust-anna")
    ref = view.ref()
    assert ref["kind"] == "image" and ref["content_type"] == "image/jpeg"
    assert ref["name"] == "DSC 0001.jpg" and (ref["width"], ref["height"]) == (640, 480)
    assert ref["thumb"] is True and (ref["thumb_width"], ref["thumb_height"]) == (320, 240)
    assert len(ref["id"]) == 24
    stored = await service.content(view)
    assert b"SERIAL-12345" not in stored and stored[:3] == b"\xff\xd8\xff"
    assert ref["size"] == len(stored)
    assert sniff(await service.content(view, thumb=True)) is TYPES["jpeg"]
    assert len(_files(tmp_path)) == 2
    again = await service.store.get(ref["id"])
    assert again == view and again.conversation_id == "widget:cust-anna"
    from sqlalchemy import select

    from bot import db
    from bot.support.models import AuditLog

    async with db.read_session(db.session_factory(service.store.engine)) as session:
        audit = (await session.execute(select(AuditLog).where(
            AuditLog.action == "attachment.uploaded"))).scalars().all()
    assert [(a.actor, a.object_id, a.data["attachment"]) for a in audit] == [
        ("customer:cust-anna", "widget:cust-anna", ref["id"])]


async def test_a_pdf_is_stored_without_a_thumbnail(service: Any) -> None:
    view = await service.accept(PDF, "invoice.html", "widget:cust-anna", "customer:cust-anna")
    assert (view.kind, view.content_type, view.name, view.thumb_key) == (
        "pdf", "application/pdf", "invoice.pdf", None)
    assert await service.content(view) == PDF


@pytest.mark.parametrize("data, code, status", [
    (HTML_AS_JPEG, "unsupported_type", 415),
    (b"MZ\x90\x00" + b"\x00" * 100, "unsupported_type", 415),
    (b"", "empty", 400),
    (b"\xff\xd8\xff" + b"\x00" * 100, "bad_file", 422),
    (b"%PDF-1.4\n" + b"x" * 5000, "bad_file", 422),  # no %%EOF: cut off
    (b"\xff\xd8\xff" + b"\x00" * 200_001, "too_large", 413),
], ids=["html-as-jpeg", "exe", "empty", "broken-jpeg", "cut-off-pdf", "too-large"])
async def test_refused_uploads_store_nothing(service: Any, tmp_path: Path, data: bytes,
                                             code: str, status: int) -> None:
    with pytest.raises(AttachmentError) as refused:
        await service.accept(data, "x.jpg", "widget:cust-anna", "customer:cust-anna")
    assert (refused.value.code, refused.value.status) == (code, status)
    assert _files(tmp_path) == []
    assert await service.store.of_conversation("widget:cust-anna", []) == []


async def test_an_unknown_conversation_leaves_no_bytes_behind(service: Any,
                                                              tmp_path: Path) -> None:
    with pytest.raises(LookupError):
        await service.accept(png_bytes(), "a.png", "widget:nobody", "customer:nobody")
    assert _files(tmp_path) == []


async def test_a_message_may_name_only_its_own_conversations_uploads(service: Any) -> None:
    anna = await service.accept(png_bytes(), "a.png", "widget:cust-anna", "customer:cust-anna")
    ben = await service.accept(png_bytes(), "b.png", "widget:cust-ben", "customer:cust-ben")
    found = await service.store.of_conversation("widget:cust-anna", [anna.public_id],
                                                uploader="customer:cust-anna")
    assert [v.public_id for v in found] == [anna.public_id]
    for ids, uploader in (([ben.public_id], "customer:cust-anna"),
                          ([anna.public_id, ben.public_id], None),
                          ([anna.public_id], "agent:1"),
                          (["x" * 24], None)):
        with pytest.raises(LookupError):
            await service.store.of_conversation("widget:cust-anna", ids, uploader=uploader)


async def test_the_service_on_s3(db_url: str, tmp_path: Path, s3_server: str) -> None:
    client = s3_client(s3_server)
    bucket = f"svc-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    chat = ChatStore.from_url(db_url)
    try:
        await chat.create_schema()
        await chat.do_open_conversation("widget:cust-anna", "cust-anna", "widget")
        service = AttachmentService(_config(tmp_path, storage="s3", s3_bucket=bucket),
                                    S3Storage(bucket, "p/", client=client),
                                    AttachmentStore(chat.engine))
        view = await service.accept(jpeg_with_gps(), "x.jpg", "widget:cust-anna",
                                    "customer:cust-anna")
        keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"])
        assert keys == sorted([f"p/{view.storage_key}", f"p/{view.thumb_key}"])
        assert b"SERIAL-12345" not in await service.content(view)
        with pytest.raises(AttachmentError):
            await service.accept(HTML_AS_JPEG, "x.jpg", "widget:cust-anna", "customer:x")
        assert len(client.list_objects_v2(Bucket=bucket)["Contents"]) == 2
    finally:
        await chat.dispose()


# ------------------------------------------------------------- Twilio media


def test_twilio_media_lists_are_read_defensively() -> None:
    from bot.attachments.twilio_media import media_ids, media_list

    raw = ('[{"Sid": "ME' + "1" * 32 + '", "Filename": "a.jpg", "ContentType": "image/jpeg",'
           ' "Size": 10}, {"MediaSid": "ME' + "2" * 32 + '"}, {"Sid": "XX1"}, 5]')
    assert [m["sid"] for m in media_list(raw)] == ["ME" + "1" * 32, "ME" + "2" * 32]
    assert media_list(raw)[0]["filename"] == "a.jpg"
    for bad in (None, "", "not json", '{"Sid": "ME1"}', "[]"):
        assert media_list(bad) == []
    assert media_ids({"attachments": [{"id": "abc"}, {"x": 1}, "y"]}) == ["abc"]
    assert media_ids({}) == [] and media_ids(None) == []
