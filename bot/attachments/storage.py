"""Where attachment bytes live, behind one small interface.

:class:`Storage` has ``put``, ``get``, ``stream``, ``delete`` and ``exists``. Keys are made by
:func:`new_key` (random, unguessable) and checked by :func:`check_key` on every call, so no
key can climb out of the local directory or the bucket prefix (no ``..``, no ``/`` at the
start, no backslashes).

* :class:`LocalStorage`: a directory (default ``var/attachments``); files are written to a
  temporary name and renamed, so a crash never leaves half a file under a key.
* :class:`S3Storage`: an S3-compatible store (AWS S3, MinIO, R2, ...) through boto3, each
  call in a worker thread (boto3 is synchronous).

:func:`storage_from_settings` picks one from ``ATTACHMENT_STORAGE``.
"""
from __future__ import annotations

import asyncio
import os
import re
import secrets
from pathlib import Path
from typing import Any, AsyncIterator, Optional, Protocol

__all__ = ["KEY_RE", "LocalStorage", "S3Storage", "Storage", "StorageMissing", "check_key",
           "new_key", "storage_from_settings"]

KEY_RE = re.compile(r"^[a-z0-9]{2}/[A-Za-z0-9_-]{16,64}(\.[a-z]{1,8})?$")
CHUNK = 64 * 1024


class StorageMissing(LookupError):
    """No object under this key."""


def new_key(suffix: str = "") -> str:
    """A fresh random key: ``ab/<32 random url-safe characters>[.suffix]``."""
    token = secrets.token_urlsafe(24)
    return f"{secrets.token_hex(1)}/{token}" + (f".{suffix}" if suffix else "")


def check_key(key: str) -> str:
    """``key`` if it is one :func:`new_key` could have made.

    Raises:
        ValueError: Anything else (path traversal, absolute paths, odd characters).
    """
    if not isinstance(key, str) or not KEY_RE.match(key):
        raise ValueError("Not a storage key.")
    return key


class Storage(Protocol):
    """The attachment store."""

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key`` (replacing what was there)."""

    async def get(self, key: str) -> bytes:
        """The bytes under ``key``. Raises :class:`StorageMissing`."""

    def stream(self, key: str) -> AsyncIterator[bytes]:
        """The bytes under ``key`` in chunks. Raises :class:`StorageMissing`."""

    async def delete(self, key: str) -> None:
        """Remove ``key`` (nothing when it is not there)."""

    async def exists(self, key: str) -> bool:
        """Whether something is stored under ``key``."""


class LocalStorage:
    """Attachments in a local directory (created on first write, mode 700).

    Args:
        root: The directory.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if self.root not in path.parents:
            raise ValueError("Not a storage key.")
        return path

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)

        def write() -> None:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            path.parent.mkdir(exist_ok=True, mode=0o700)
            temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)

        await asyncio.to_thread(write)

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise StorageMissing(key) from None

    async def stream(self, key: str) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            handle = await asyncio.to_thread(open, path, "rb")
        except FileNotFoundError:
            raise StorageMissing(key) from None
        try:
            while True:
                chunk = await asyncio.to_thread(handle.read, CHUNK)
                if not chunk:
                    return
                yield chunk
        finally:
            handle.close()

    async def delete(self, key: str) -> None:
        path = self._path(key)
        await asyncio.to_thread(lambda: path.unlink(missing_ok=True))

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).is_file)


class S3Storage:
    """Attachments in an S3-compatible bucket (boto3, in worker threads).

    Args:
        bucket: The bucket (it must exist).
        prefix: Prepended to every key (``attachments/``).
        client: A boto3 S3 client (default: made from the other arguments on first use).
        endpoint_url: The store's URL (None: AWS).
        region: The region.
        access_key_id, secret_access_key: Credentials (None: boto3's default chain).
    """

    def __init__(self, bucket: str, prefix: str = "", client: Any = None,
                 endpoint_url: Optional[str] = None, region: Optional[str] = None,
                 access_key_id: Optional[str] = None,
                 secret_access_key: Optional[str] = None) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self._client = client
        self._options = {"endpoint_url": endpoint_url, "region_name": region,
                         "aws_access_key_id": access_key_id,
                         "aws_secret_access_key": secret_access_key}

    def _s3(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "s3", config=Config(retries={"max_attempts": 3, "mode": "standard"},
                                    connect_timeout=5, read_timeout=30),
                **{k: v for k, v in self._options.items() if v})
        return self._client

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        name = self._key(key)
        await asyncio.to_thread(lambda: self._s3().put_object(
            Bucket=self.bucket, Key=name, Body=data, ContentType=content_type))

    def _body(self, name: str) -> Any:
        from botocore.exceptions import ClientError

        try:
            return self._s3().get_object(Bucket=self.bucket, Key=name)["Body"]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise StorageMissing(name) from None
            raise

    async def get(self, key: str) -> bytes:
        name = self._key(key)
        body = await asyncio.to_thread(self._body, name)
        try:
            return await asyncio.to_thread(body.read)
        finally:
            body.close()

    async def stream(self, key: str) -> AsyncIterator[bytes]:
        name = self._key(key)
        body = await asyncio.to_thread(self._body, name)
        try:
            while True:
                chunk = await asyncio.to_thread(body.read, CHUNK)
                if not chunk:
                    return
                yield chunk
        finally:
            body.close()

    async def delete(self, key: str) -> None:
        name = self._key(key)
        await asyncio.to_thread(lambda: self._s3().delete_object(Bucket=self.bucket, Key=name))

    async def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        name = self._key(key)

        def head() -> bool:
            try:
                self._s3().head_object(Bucket=self.bucket, Key=name)
                return True
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404",
                                                                    "NotFound"):
                    return False
                raise

        return await asyncio.to_thread(head)


def storage_from_settings(settings: Any) -> Storage:
    """The store ``ATTACHMENT_STORAGE`` names (``settings.attachments``)."""
    config = settings.attachments
    if config.storage == "s3":
        return S3Storage(config.s3_bucket, config.s3_prefix, endpoint_url=config.s3_endpoint_url,
                         region=config.s3_region, access_key_id=config.s3_access_key_id,
                         secret_access_key=config.s3_secret_access_key)
    return LocalStorage(config.local_dir)
