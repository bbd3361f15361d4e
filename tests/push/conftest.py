"""A local push service and browser-side devices for the agent push tests.

:class:`PushService` is an aiohttp server (its own thread and loop) that stands for FCM /
Mozilla autopush: it receives the POSTs of :mod:`bot.push.sender` at
``http://127.0.0.1:<port>/push/<device>``, checks the VAPID ``Authorization`` header (an
ES256 JWT with ``aud`` = this origin, ``exp`` in the next 24 h, ``sub``; ``k`` = the server's
public key) and answers with the status a test set for the device (201 by default).

:class:`Device` is what a browser holds: a P-256 key pair and a 16-byte auth secret made
here with ``cryptography``; :meth:`Device.decrypt` undoes RFC 8291 / RFC 8188 ``aes128gcm``
itself (HKDF and AES-GCM from ``cryptography``, nothing of pywebpush), so the tests read
what really went over the wire.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bot.push.keys import b64url, b64url_decode
from bot.support.agents import AgentStore
from tests.agent_console.conftest import PASSWORD, _run
from tests.servers import HOST, free_port


def _hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def _hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    assert length <= 32
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()[:length]


@dataclass
class Device:
    """A browser's push subscription: keys made here, endpoint at the local service."""

    endpoint: str
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    @property
    def public(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)

    def subscription(self) -> Dict[str, Any]:
        """What ``PushSubscription.toJSON()`` gives the console."""
        return {"endpoint": self.endpoint, "expirationTime": None,
                "keys": {"p256dh": b64url(self.public), "auth": b64url(self.auth)}}

    def decrypt(self, body: bytes) -> Dict[str, Any]:
        """RFC 8291 (Web Push encryption) over RFC 8188 ``aes128gcm``: the JSON payload."""
        salt, record_size, id_length = body[:16], struct.unpack(">I", body[16:20])[0], body[20]
        sender_public = body[21:21 + id_length]
        ciphertext = body[21 + id_length:]
        assert id_length == 65 and sender_public[0] == 4, "keyid must be the sender's key"
        assert len(ciphertext) <= record_size, "one record"
        sender = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), sender_public)
        shared = self.key.exchange(ec.ECDH(), sender)
        prk_key = _hkdf_extract(self.auth, shared)
        ikm = _hkdf_expand(prk_key, b"WebPush: info\x00" + self.public + sender_public, 32)
        prk = _hkdf_extract(salt, ikm)
        cek = _hkdf_expand(prk, b"Content-Encoding: aes128gcm\x00", 16)
        nonce = _hkdf_expand(prk, b"Content-Encoding: nonce\x00", 12)
        padded = AESGCM(cek).decrypt(nonce, ciphertext, None)
        plain = padded.rstrip(b"\x00")
        assert plain.endswith(b"\x02"), "the last record ends with the 0x02 delimiter"
        return json.loads(plain[:-1].decode("utf-8"))


@dataclass
class Received:
    """One POST the push service got, with its VAPID claims (already verified)."""

    device: str
    headers: Dict[str, str]
    body: bytes
    claims: Dict[str, Any]
    vapid_key: str
    answered: int


class PushService:
    """The local push service (see the module docstring)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.origin = f"http://{HOST}:{self.port}"
        self.received: List[Received] = []
        self.refused: List[str] = []  # requests whose VAPID header did not verify
        self.answers: Dict[str, List[int]] = {}  # device -> statuses to answer, in turn
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="push-service", daemon=True)
        self._runner: Optional[web.AppRunner] = None

    def device(self, *answers: int) -> Device:
        """A new device; the service answers its pushes with ``answers`` in turn, then 201."""
        name = uuid.uuid4().hex
        self.answers[name] = list(answers)
        return Device(f"{self.origin}/push/{name}")

    def for_device(self, device: Device) -> List[Received]:
        name = device.endpoint.rsplit("/", 1)[1]
        return [r for r in list(self.received) if r.device == name]

    def wait_for(self, device: Device, count: int = 1, timeout: float = 30.0) -> List[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.for_device(device)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"{device.endpoint} got {len(self.for_device(device))} pushes, "
                             f"not {count}, in {timeout} s (refused: {self.refused})")

    async def _push(self, request: web.Request) -> web.Response:
        name = request.match_info["device"]
        body = await request.read()
        header = request.headers.get("Authorization", "")
        try:
            assert header.startswith("vapid "), header
            params = dict(part.strip().split("=", 1) for part in header[6:].split(","))
            key = ec.EllipticCurvePublicKey.from_encoded_point(
                ec.SECP256R1(), b64url_decode(params["k"]))
            claims = jwt.decode(params["t"], key=key, algorithms=["ES256"],
                                audience=self.origin, options={"require": ["exp", "aud", "sub"]})
            assert 0 < claims["exp"] - time.time() <= 24 * 3600, claims
        except Exception as error:  # noqa: BLE001 - recorded, answered 401
            self.refused.append(f"{type(error).__name__}: {error}")
            return web.Response(status=401, text="bad VAPID")
        answers = self.answers.get(name)
        status = answers.pop(0) if answers else (404 if answers is None else 201)
        self.received.append(Received(name, dict(request.headers), body, claims, params["k"],
                                      status))
        return web.Response(status=status, text="" if status < 300 else "no")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/push/{device}", self._push)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, HOST, self.port).start())
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> "PushService":
        self._thread.start()
        assert self._ready.wait(10), "the push service did not start"
        return self

    def stop(self) -> None:
        async def down() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(down(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def agent(bot: Any, _console: Any = None, name: str = "") -> Dict[str, Any]:
    """A new agent with a console session (opened in the store: the console's login is
    rate-limited per address, and the embedded bot is shared with other modules)."""
    username = f"push-{name or 'agent'}-{uuid.uuid4().hex[:6]}"

    async def make() -> Dict[str, Any]:
        store = AgentStore.from_url(bot.support_db_url)
        try:
            view = await store.do_create_agent(username, (name or "agent").title(), PASSWORD)
            token, _, _ = await store.do_login(username, PASSWORD)
            return {"id": view.id, "token": token}
        finally:
            await store.dispose()

    return _run(make)


@pytest.fixture(scope="module")
def push_service() -> Iterator[PushService]:
    service = PushService().start()
    try:
        yield service
    finally:
        service.stop()
