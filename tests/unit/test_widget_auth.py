"""Customer tokens: what the widget channel accepts and the exact reason it refuses."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.channels.auth import AuthError, TokenVerifier, conversation_id_for, issue_token

SECRET = "s" * 40
OTHER_SECRET = "o" * 40


def _rsa_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return private, public


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256_by_hand(claims: dict, key: bytes) -> str:
    """An HS256 token signed with any key (PyJWT refuses PEM keys as HMAC secrets)."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(signature)}"


def _refusal(verifier: TokenVerifier, token: object) -> str:
    with pytest.raises(AuthError) as info:
        verifier.verify(token)
    return info.value.code


def test_hs256_token_names_the_customer_and_profile() -> None:
    now = time.time()
    token = issue_token(
        "cust-anna",
        SECRET,
        profile={"name": "Anna Schmidt", "email": "anna@example.com", "locale": "de-DE",
                 "app_version": "5.2.0", "device": "iPhone 15"},
        ttl_seconds=600,
        now=now,
    )
    customer = TokenVerifier("HS256", SECRET, leeway=0).verify(f"Bearer {token}")
    assert customer.user_id == "cust-anna"
    assert customer.conversation_id == "widget:cust-anna" == conversation_id_for("cust-anna")
    assert customer.profile == {
        "name": "Anna Schmidt", "email": "anna@example.com", "locale": "de-DE",
        "app_version": "5.2.0", "device": "iPhone 15",
    }
    assert customer.expires_at == int(now) + 600
    assert customer.metadata_customer() == {
        "id": "cust-anna", "name": "Anna Schmidt", "email": "anna@example.com", "locale": "de-DE",
    }


def test_leeway_extends_the_accepted_lifetime() -> None:
    token = issue_token("u1", SECRET, ttl_seconds=-10)
    assert _refusal(TokenVerifier("HS256", SECRET, leeway=0), token) == "token_expired"
    customer = TokenVerifier("HS256", SECRET, leeway=30).verify(token)
    assert customer.expires_at > time.time()


@pytest.mark.parametrize(
    "token",
    [None, "", "   ", 42],
)
def test_missing_token(token: object) -> None:
    assert _refusal(TokenVerifier("HS256", SECRET), token) == "missing_token"


def test_forged_and_malformed_tokens_are_invalid() -> None:
    verifier = TokenVerifier("HS256", SECRET, leeway=0)
    forged = issue_token("cust-anna", OTHER_SECRET)
    assert _refusal(verifier, forged) == "invalid_token"
    assert _refusal(verifier, "not.a.jwt") == "invalid_token"
    assert _refusal(verifier, "x" * 9000) == "invalid_token"
    # alg "none" is never accepted
    unsigned = jwt.encode({"sub": "cust-anna", "exp": time.time() + 60}, None, algorithm="none")
    assert _refusal(verifier, unsigned) == "invalid_token"
    # the payload of a valid token changed: signature no longer matches
    header, payload, signature = issue_token("cust-anna", SECRET).split(".")
    other_payload = issue_token("cust-ben", SECRET).split(".")[1]
    assert _refusal(verifier, f"{header}.{other_payload}.{signature}") == "invalid_token"


def test_required_claims() -> None:
    verifier = TokenVerifier("HS256", SECRET)
    no_exp = jwt.encode({"sub": "cust-anna"}, SECRET, algorithm="HS256")
    no_sub = jwt.encode({"exp": time.time() + 60}, SECRET, algorithm="HS256")
    bad_sub = jwt.encode({"sub": "../etc", "exp": time.time() + 60}, SECRET, algorithm="HS256")
    long_sub = jwt.encode({"sub": "a" * 129, "exp": time.time() + 60}, SECRET, algorithm="HS256")
    for token in (no_exp, no_sub, bad_sub, long_sub):
        assert _refusal(verifier, token) == "invalid_token"


def test_audience_and_issuer_are_checked_when_configured() -> None:
    verifier = TokenVerifier("HS256", SECRET, audience="support", issuer="shop")
    good = issue_token("u1", SECRET, audience="support", issuer="shop")
    assert verifier.verify(good).user_id == "u1"
    assert _refusal(verifier, issue_token("u1", SECRET, audience="other", issuer="shop")) == (
        "invalid_token"
    )
    assert _refusal(verifier, issue_token("u1", SECRET, audience="support")) == "invalid_token"


def test_rs256_with_public_key_and_no_algorithm_confusion() -> None:
    private, public = _rsa_pair()
    verifier = TokenVerifier("RS256", public, leeway=0)
    token = issue_token("cust-ben", private, algorithm="RS256", profile={"name": "Ben"})
    assert verifier.verify(token).profile == {"name": "Ben"}
    # an HS256 token signed with the public key as secret must not pass
    confused = _hs256_by_hand({"sub": "cust-ben", "exp": 9999999999}, public.encode())
    assert _refusal(verifier, confused) == "invalid_token"
    # HS256 channel refuses RS256 tokens
    assert _refusal(TokenVerifier("HS256", SECRET), token) == "invalid_token"


def test_unusable_configuration_is_refused_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="WIDGET_JWT_SECRET"):
        TokenVerifier("HS256", "")
    with pytest.raises(ValueError, match="at least 32 bytes"):
        TokenVerifier("HS256", "short")
    with pytest.raises(ValueError, match="one of HS256, RS256"):
        TokenVerifier("none", SECRET)
    with pytest.raises(ValueError, match="PEM public key"):
        TokenVerifier("RS256", SECRET)
