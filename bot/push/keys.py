"""The VAPID key pair that signs every push (RFC 8292).

``VAPID_PRIVATE_KEY`` is the raw P-256 private scalar (32 bytes) and ``VAPID_PUBLIC_KEY``
the uncompressed public point (65 bytes, the browser's ``applicationServerKey``), both
base64url without padding. ``make run`` generates a pair into ``var/`` with
``python -m bot.push.keys generate --dir var``; production must set both explicitly
(:mod:`bot.production`).
"""
from __future__ import annotations

import argparse
import base64
import os
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ["b64url", "b64url_decode", "generate_pair", "key_problems", "public_key_of"]

PRIVATE_FILE = "vapid_private_key"
PUBLIC_FILE = "vapid_public_key"


def b64url(data: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode base64url with or without padding.

    Raises:
        ValueError: Not base64url.
    """
    text = (text or "").strip()
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as error:
        raise ValueError(f"not base64url: {error}") from None


def generate_pair() -> Tuple[str, str]:
    """A new ``(private, public)`` pair, base64url."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_numbers().private_value.to_bytes(32, "big")
    return b64url(private), public_key_of(b64url(private))


def public_key_of(private: str) -> str:
    """The uncompressed public point of a raw private key (base64url).

    Raises:
        ValueError: Not a 32-byte P-256 private key.
    """
    raw = b64url_decode(private)
    if len(raw) != 32:
        raise ValueError(f"the private key is {len(raw)} bytes, not 32")
    key = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
    return b64url(key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint))


def key_problems(private: Optional[str], public: Optional[str], subject: str) -> List[str]:
    """What is wrong with a VAPID configuration (empty: it can sign pushes)."""
    problems: List[str] = []
    if not private:
        problems.append("VAPID_PRIVATE_KEY: not set (python -m bot.push.keys generate prints "
                        "a pair).")
    if not public:
        problems.append("VAPID_PUBLIC_KEY: not set (the public half of VAPID_PRIVATE_KEY).")
    if private and public:
        try:
            if public_key_of(private) != public.strip().rstrip("="):
                problems.append("VAPID_PUBLIC_KEY: is not the public key of VAPID_PRIVATE_KEY.")
        except ValueError as error:
            problems.append(f"VAPID_PRIVATE_KEY: not a raw P-256 key in base64url ({error}).")
    if not subject.startswith(("mailto:", "https://")):
        problems.append(f"VAPID_SUBJECT: must be a mailto: or https: URL, not {subject!r}.")
    return problems


def _write(path: Path, value: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    os.chmod(path, mode)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``generate --dir var``: write a pair into the directory unless one is there
    (``make run``); ``generate`` alone prints a pair as environment lines."""
    parser = argparse.ArgumentParser(prog="python -m bot.push.keys")
    parser.add_argument("command", choices=["generate"])
    parser.add_argument("--dir", type=Path, help="write vapid_private_key / vapid_public_key")
    args = parser.parse_args(argv)
    private, public = generate_pair()
    if args.dir is None:
        print(f"VAPID_PRIVATE_KEY={private}\nVAPID_PUBLIC_KEY={public}")
        return 0
    private_path, public_path = args.dir / PRIVATE_FILE, args.dir / PUBLIC_FILE
    try:
        existing = private_path.read_text(encoding="utf-8").strip()
        if existing:
            _write(public_path, public_key_of(existing), 0o644)
            os.chmod(private_path, 0o600)
            return 0
    except OSError:
        pass
    except ValueError as error:
        print(f"{private_path}: {error}; delete it to generate a new pair.", file=sys.stderr)
        return 1
    args.dir.mkdir(parents=True, exist_ok=True)
    _write(private_path, private, 0o600)
    _write(public_path, public, 0o644)
    return 0


if __name__ == "__main__":
    sys.exit(main())
