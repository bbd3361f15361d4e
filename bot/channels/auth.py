"""Customer tokens for the widget channel: verification (channel) and issuing (host app).

The shop's backend knows who is logged in; it signs a short-lived JWT that names
the user and their profile, and hands it to the widget. The widget channel
verifies it on connect and on every REST call and derives the conversation id
from the verified ``sub`` claim, never from anything else the client sends.

Claims (see ``docs/widget-protocol.md``)::

    {"sub": "cust-anna",                 # required: the shop's user id
     "exp": 1767225600, "iat": ...,      # required expiry, optional issued-at
     "name": "Anna Berg", "email": "anna@example.com", "phone": "+4915...",
     "locale": "de-DE", "timezone": "Europe/Berlin",
     "app_version": "5.2.0", "device": "iPhone 15",
     "iss": "...", "aud": "..."}         # checked when configured

HS256 with a shared secret is the default; RS256 with the host's public key is
the alternative (the private key never leaves the host app). Exactly one
algorithm is accepted per deployment, which rules out ``alg: none`` and
HS/RS confusion.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, TypedDict

import jwt

__all__ = [
    "AuthError",
    "Customer",
    "CustomerProfile",
    "TokenVerifier",
    "issue_token",
    "conversation_id_for",
]

SUPPORTED_ALGORITHMS = ("HS256", "RS256")
MIN_HS256_SECRET_BYTES = 32
LEEWAY_SECONDS = 30.0
"""Default clock skew tolerated between the host app and this server."""

_SUB_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:+-]{0,127}$")
_PROFILE_LIMITS: Mapping[str, int] = {
    "name": 200,
    "email": 320,
    "phone": 32,
    "locale": 35,
    "timezone": 64,
    "app_version": 64,
    "device": 128,
}


class CustomerProfile(TypedDict, total=False):
    """Profile fields a token may carry (all optional strings)."""

    name: str
    email: str
    phone: str
    locale: str
    timezone: str
    app_version: str
    device: str


class AuthError(Exception):
    """A token was missing, malformed, forged or expired.

    Attributes:
        code: Stable machine-readable reason: ``missing_token``, ``invalid_token``
            or ``token_expired``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Customer:
    """A verified customer.

    Attributes:
        user_id: The token's ``sub``.
        profile: Profile fields from the token (validated, trimmed).
        expires_at: When the token stops being accepted: ``exp`` plus the leeway
            (Unix seconds).
    """

    user_id: str
    profile: Dict[str, str] = field(default_factory=dict)
    expires_at: float = 0.0

    @property
    def conversation_id(self) -> str:
        """The Rasa conversation (sender) id of this customer's widget chat."""
        return conversation_id_for(self.user_id)

    def metadata_customer(self) -> Dict[str, str]:
        """The ``customer`` object the bot's session start reads (``actions/session.py``)."""
        customer = {"id": self.user_id}
        for key in ("name", "email", "phone", "timezone", "locale"):
            if key in self.profile:
                customer[key] = self.profile[key]
        return customer


def conversation_id_for(user_id: str) -> str:
    """Return the conversation id of a verified user (``"widget:<user id>"``)."""
    return f"widget:{user_id}"


class TokenVerifier:
    """Verifies customer tokens with one configured algorithm and key.

    Args:
        algorithm: ``"HS256"`` or ``"RS256"``.
        key: The shared secret (HS256, at least 32 bytes) or the PEM public key (RS256).
        audience: Required ``aud`` claim, if set.
        issuer: Required ``iss`` claim, if set.
        leeway: Seconds of clock skew tolerated on ``exp``/``iat``; a live
            connection is closed at ``exp + leeway`` (:attr:`Customer.expires_at`).

    Raises:
        ValueError: On an unsupported algorithm or an unusable key.
    """

    def __init__(
        self,
        algorithm: str,
        key: str,
        audience: Optional[str] = None,
        issuer: Optional[str] = None,
        leeway: float = LEEWAY_SECONDS,
    ) -> None:
        if algorithm not in SUPPORTED_ALGORITHMS:
            raise ValueError(
                f"Widget token algorithm must be one of {', '.join(SUPPORTED_ALGORITHMS)}, "
                f"got {algorithm!r}."
            )
        if not key:
            raise ValueError(
                "No widget token key: set WIDGET_JWT_SECRET (HS256) or "
                "WIDGET_JWT_PUBLIC_KEY (RS256); see .env.example."
            )
        if algorithm == "HS256" and len(key.encode()) < MIN_HS256_SECRET_BYTES:
            raise ValueError(
                f"WIDGET_JWT_SECRET must be at least {MIN_HS256_SECRET_BYTES} bytes long."
            )
        if algorithm == "RS256" and "PUBLIC KEY" not in key:
            raise ValueError("WIDGET_JWT_PUBLIC_KEY must be a PEM public key (RS256).")
        self._algorithm = algorithm
        self._key = key
        self._audience = audience or None
        self._issuer = issuer or None
        self._leeway = max(0.0, float(leeway))

    @property
    def algorithm(self) -> str:
        """The accepted algorithm."""
        return self._algorithm

    def verify(self, token: Any) -> Customer:
        """Verify a token and return the customer it names.

        Args:
            token: The compact JWT string (a ``Bearer`` prefix is accepted).

        Returns:
            The verified customer.

        Raises:
            AuthError: ``missing_token``, ``token_expired`` or ``invalid_token``.
        """
        if not isinstance(token, str) or not token.strip():
            raise AuthError("missing_token", "A customer token is required.")
        token = token.strip()
        if token[:7].lower() == "bearer ":
            token = token[7:].strip()
        if len(token) > 8192:
            raise AuthError("invalid_token", "The token is too long.")
        options = {"require": ["exp", "sub"], "verify_aud": self._audience is not None}
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self._algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options=options,
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token_expired", "The token has expired.") from None
        except jwt.InvalidTokenError as error:
            raise AuthError("invalid_token", f"The token is not valid: {error}.") from None
        return _customer(claims, self._leeway)


def _customer(claims: Mapping[str, Any], leeway: float) -> Customer:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not _SUB_RE.match(sub):
        raise AuthError(
            "invalid_token",
            "The token's sub must be 1-128 characters: letters, digits and _.@:+-.",
        )
    profile: Dict[str, str] = {}
    for key, limit in _PROFILE_LIMITS.items():
        value = claims.get(key)
        if isinstance(value, (str, int)) and str(value).strip():
            profile[key] = str(value).strip()[:limit]
    exp = claims.get("exp")
    return Customer(user_id=sub, profile=profile, expires_at=float(exp) + leeway)


def issue_token(
    user_id: str,
    key: str,
    *,
    profile: Optional[Mapping[str, str]] = None,
    ttl_seconds: int = 3600,
    algorithm: str = "HS256",
    audience: Optional[str] = None,
    issuer: Optional[str] = None,
    now: Optional[float] = None,
) -> str:
    """Sign a customer token, as the host app's backend does.

    Args:
        user_id: The shop's user id (``sub``).
        key: HS256 shared secret, or the RS256 PEM private key.
        profile: Optional profile claims (see :class:`CustomerProfile`).
        ttl_seconds: Lifetime; ``exp = now + ttl_seconds``.
        algorithm: ``"HS256"`` or ``"RS256"``.
        audience: ``aud`` claim, if the channel checks one.
        issuer: ``iss`` claim, if the channel checks one.
        now: Issue time (Unix seconds); default: the current time.

    Returns:
        The compact JWT.
    """
    issued = int(time.time() if now is None else now)
    claims: Dict[str, Any] = {"sub": user_id, "iat": issued, "exp": issued + int(ttl_seconds)}
    for name, value in (profile or {}).items():
        if value:
            claims[name] = value
    if audience:
        claims["aud"] = audience
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, key, algorithm=algorithm)
