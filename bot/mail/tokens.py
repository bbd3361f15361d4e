"""Signed unsubscribe tokens: ``<address, base64url>.<HMAC-SHA256, base64url>``.

The key is ``MAIL_UNSUBSCRIBE_SECRET`` (or the file ``MAIL_UNSUBSCRIBE_SECRET_FILE``, else
``var/mail_unsubscribe_secret``, written on first use outside production). A token names the
address it unsubscribes; changing one character of it makes the signature wrong.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Optional

from bot.mail.outbox import clean_address

__all__ = ["InvalidToken", "sign", "unsubscribe_secret", "verify"]

_CONTEXT = b"northwind-mail-unsubscribe-v1:"


class InvalidToken(ValueError):
    """The unsubscribe token is malformed, altered or signed with another key."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def unsubscribe_secret() -> str:
    """The signing key (generated into ``var/mail_unsubscribe_secret`` in development).

    Raises:
        RuntimeError: In production without ``MAIL_UNSUBSCRIBE_SECRET``.
    """
    from bot.settings import get_settings

    settings = get_settings()
    if settings.mail is not None and settings.mail.unsubscribe_secret:
        return settings.mail.unsubscribe_secret
    if settings.production:
        raise RuntimeError("MAIL_UNSUBSCRIBE_SECRET (or _FILE) must be set in production: it "
                           "signs the unsubscribe links of every email.")
    path = Path(settings.var_dir) / "mail_unsubscribe_secret"
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    try:
        fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process wrote it first
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    return value


def _mac(address: str, secret: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), _CONTEXT + address.encode("utf-8"),
                    hashlib.sha256).digest()


def sign(address: str, secret: Optional[str] = None) -> str:
    """The token that unsubscribes ``address``."""
    clean = clean_address(address)
    if clean is None:
        raise ValueError(f"not an email address: {address!r}")
    key = secret or unsubscribe_secret()
    return f"{_b64(clean.encode('utf-8'))}.{_b64(_mac(clean, key))}"


def verify(token: Optional[str], secret: Optional[str] = None) -> str:
    """The address a valid token unsubscribes.

    Raises:
        InvalidToken: Missing, malformed, altered or forged.
    """
    if not token or not isinstance(token, str) or token.count(".") != 1 or len(token) > 1000:
        raise InvalidToken("missing or malformed token")
    encoded, signature = token.split(".")
    try:
        address = _unb64(encoded).decode("utf-8")
        given = _unb64(signature)
    except (ValueError, UnicodeDecodeError):
        raise InvalidToken("malformed token") from None
    clean = clean_address(address)
    if clean is None or clean != address:
        raise InvalidToken("malformed token")
    if not hmac.compare_digest(given, _mac(clean, secret or unsubscribe_secret())):
        raise InvalidToken("bad signature")
    return clean
