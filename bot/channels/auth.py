"""Customer tokens for the widget channel: verification (channel) and issuing (host app).

The shop's backend knows who is logged in; it signs a short-lived JWT that names
the user and their profile, and hands it to the widget. The widget channel
verifies it on connect and on every REST call and derives the conversation id
from the verified ``sub`` claim, never from anything else the client sends.

Claims (see ``docs/widget-protocol.md``)::

    {"sub": "cust-anna",                 # required: the shop's user id
     "iat": 1767222000,                  # required: issued at (not in the future)
     "exp": 1767225600,                  # required: exp - iat <= WIDGET_JWT_MAX_TTL
     "name": "Anna Berg", "email": "anna@example.com", "phone": "+4915...",
     "locale": "de-DE", "timezone": "Europe/Berlin",
     "app_version": "5.2.0", "device": "iPhone 15",
     "iss": "...", "aud": "..."}         # checked when configured (always in production)

HS256 with a shared secret is the default; RS256 with the host's public key is
the alternative (the private key never leaves the host app). Exactly one
algorithm is accepted per deployment, which rules out ``alg: none`` and
HS/RS confusion.

A refused token gets one generic answer (``invalid_token``, "The token is not
valid."), whatever the reason, so a client cannot probe which check failed;
only ``token_expired`` (a genuine, expired token: the client should fetch a new
one) and ``missing_token`` are told apart. The real reason is logged, never the
token or its claims.
"""
from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, TypedDict

import jwt

if TYPE_CHECKING:  # pragma: no cover - typing only
    from bot.settings import Settings

__all__ = [
    "AuthError",
    "Customer",
    "CustomerProfile",
    "TokenVerifier",
    "issue_token",
    "conversation_id_for",
    "verifier_from_settings",
]

logger = logging.getLogger(__name__)

SUPPORTED_ALGORITHMS = ("HS256", "RS256")
MIN_HS256_SECRET_BYTES = 32
LEEWAY_SECONDS = 30.0
"""Default clock skew tolerated between the host app and this server."""
MAX_LEEWAY_SECONDS = 60.0
"""The most clock skew a deployment may tolerate (``WIDGET_JWT_LEEWAY``)."""
MAX_TTL_SECONDS = 3600
"""Default longest token lifetime, ``exp - iat`` (``WIDGET_JWT_MAX_TTL``)."""
MAX_TOKEN_CHARS = 8192

INVALID_TOKEN_MESSAGE = "The token is not valid."
"""What a client is told about every refused token (the reason is only logged)."""
EXPIRED_TOKEN_MESSAGE = "The token has expired."

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

    The message is what the client may be told; for ``invalid_token`` it is
    always :data:`INVALID_TOKEN_MESSAGE`.

    Attributes:
        code: Stable machine-readable reason: ``missing_token``, ``invalid_token``
            or ``token_expired``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Refused(Exception):
    """Internal: why a signed token is refused (logged, never sent to the client)."""


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
        audience: Required ``aud`` claim, if set. When unset, a token that names an
            audience is refused (it was minted for someone else).
        issuer: Required ``iss`` claim, if set.
        leeway: Seconds of clock skew tolerated on ``exp``/``iat``/``nbf`` (0 to 60);
            a live connection is closed at ``exp + leeway`` (:attr:`Customer.expires_at`).
        max_ttl: Longest lifetime accepted: ``exp - iat`` in seconds.

    Raises:
        ValueError: On an unsupported algorithm, an unusable key, or a leeway or
            lifetime out of range.
    """

    def __init__(
        self,
        algorithm: str,
        key: str,
        audience: Optional[str] = None,
        issuer: Optional[str] = None,
        leeway: float = LEEWAY_SECONDS,
        max_ttl: int = MAX_TTL_SECONDS,
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
        leeway = float(leeway)
        if not 0.0 <= leeway <= MAX_LEEWAY_SECONDS:
            raise ValueError(
                f"WIDGET_JWT_LEEWAY must be between 0 and {MAX_LEEWAY_SECONDS:g} seconds, "
                f"got {leeway:g}."
            )
        if int(max_ttl) < 1:
            raise ValueError(f"WIDGET_JWT_MAX_TTL must be at least 1 second, got {max_ttl}.")
        self._algorithm = algorithm
        self._key = key
        self._audience = audience or None
        self._issuer = issuer or None
        self._leeway = leeway
        self._max_ttl = int(max_ttl)

    @property
    def algorithm(self) -> str:
        """The accepted algorithm."""
        return self._algorithm

    @property
    def max_ttl(self) -> int:
        """The longest token lifetime accepted (``exp - iat``, seconds)."""
        return self._max_ttl

    def verify(self, token: Any) -> Customer:
        """Verify a token and return the customer it names.

        Args:
            token: The compact JWT string (a ``Bearer`` prefix is accepted).

        Returns:
            The verified customer.

        Raises:
            AuthError: ``missing_token``, ``token_expired`` or ``invalid_token`` (the
                same message for every reason; the reason is logged).
        """
        if not isinstance(token, str) or not token.strip():
            raise AuthError("missing_token", "A customer token is required.")
        token = token.strip()
        if token[:7].lower() == "bearer ":
            token = token[7:].strip()
        try:
            claims = self._claims(token)
            return _customer(claims, self._leeway)
        except jwt.ExpiredSignatureError:
            logger.info("Widget token refused: expired.")
            raise AuthError("token_expired", EXPIRED_TOKEN_MESSAGE) from None
        except (jwt.InvalidTokenError, _Refused) as error:
            # The reason is for the operator; the client learns nothing about which check
            # failed. PyJWT's messages name the failed check, never the token's contents.
            logger.warning("Widget token refused: %s: %s", type(error).__name__, error)
            raise AuthError("invalid_token", INVALID_TOKEN_MESSAGE) from None

    def _claims(self, token: str) -> Dict[str, Any]:
        """The claims of a token that passes every check.

        Raises:
            jwt.InvalidTokenError: A check of PyJWT failed (``ExpiredSignatureError``
                for an expired token).
            _Refused: One of our own checks failed.
        """
        if len(token) > MAX_TOKEN_CHARS:
            raise _Refused(f"longer than {MAX_TOKEN_CHARS} characters")
        required = ["exp", "iat", "sub"]
        if self._audience is not None:
            required.append("aud")
        if self._issuer is not None:
            required.append("iss")
        claims = jwt.decode(
            token,
            self._key,
            algorithms=[self._algorithm],
            audience=self._audience,
            issuer=self._issuer,
            leeway=self._leeway,
            # aud is always verified: with no audience configured, a token minted for
            # one (another service's) is refused.
            options={"require": required, "verify_aud": True, "verify_iat": True,
                     "verify_exp": True, "verify_nbf": True, "verify_iss": True,
                     "verify_signature": True},
        )
        exp, iat = _number(claims.get("exp"), "exp"), _number(claims.get("iat"), "iat")
        if iat > time.time() + self._leeway:  # PyJWT checks this too; kept explicit
            raise _Refused("iat is in the future")
        if exp - iat > self._max_ttl:
            raise _Refused(
                f"lifetime exp - iat = {exp - iat:.0f} s is over the {self._max_ttl} s allowed"
            )
        return claims


def verifier_from_settings(settings: "Settings") -> TokenVerifier:
    """The channel's verifier from the settings (``WIDGET_JWT_*``).

    In the production configuration (``SUPPORT_ENV=production``) the audience and
    the issuer are required: a token is only accepted when it was minted for this
    chat by the expected host app.

    Args:
        settings: The resolved settings.

    Returns:
        The verifier.

    Raises:
        ValueError: A setting is missing or unusable; the message names it.
    """
    if settings.production:
        for name, value in (
            ("WIDGET_JWT_AUDIENCE", settings.widget_jwt_audience),
            ("WIDGET_JWT_ISSUER", settings.widget_jwt_issuer),
        ):
            if not value:
                raise ValueError(
                    f"{name} must be set in the production configuration "
                    "(SUPPORT_ENV=production): widget tokens must carry the aud and iss "
                    "claims your host app signs; see docs/widget.md."
                )
    key = (
        settings.widget_jwt_public_key
        if settings.widget_jwt_algorithm == "RS256"
        else settings.widget_jwt_secret
    )
    return TokenVerifier(
        settings.widget_jwt_algorithm,
        key or "",
        audience=settings.widget_jwt_audience,
        issuer=settings.widget_jwt_issuer,
        leeway=settings.widget_jwt_leeway,
        max_ttl=settings.widget_jwt_max_ttl,
    )


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _Refused(f"{name} is not a number")
    return float(value)


def _customer(claims: Mapping[str, Any], leeway: float) -> Customer:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not _SUB_RE.match(sub):
        raise _Refused("sub is not 1-128 characters of letters, digits and _.@:+-")
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
        ttl_seconds: Lifetime; ``exp = now + ttl_seconds`` (the channel accepts at most
            ``WIDGET_JWT_MAX_TTL``, one hour by default).
        algorithm: ``"HS256"`` or ``"RS256"``.
        audience: ``aud`` claim, if the channel checks one.
        issuer: ``iss`` claim, if the channel checks one.
        now: Issue time (Unix seconds); default: the current time.

    Returns:
        The compact JWT, with ``sub``, ``iat`` and ``exp`` (and ``aud``/``iss`` when given).
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
