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


# ------------------------------------------------ lifetime, iat, aud/iss, one answer

INVALID_MESSAGE = "The token is not valid."


def _refused(verifier: TokenVerifier, token: object) -> AuthError:
    with pytest.raises(AuthError) as info:
        verifier.verify(token)
    return info.value


def test_iat_and_exp_are_required_and_the_lifetime_is_bounded() -> None:
    verifier = TokenVerifier("HS256", SECRET, leeway=0, max_ttl=3600)
    now = int(time.time())
    assert verifier.max_ttl == 3600
    assert verifier.verify(issue_token("u1", SECRET, ttl_seconds=3600)).user_id == "u1"
    for claims in (
        {"sub": "u1", "exp": now + 60},                       # no iat
        {"sub": "u1", "iat": now},                            # no exp
        {"sub": "u1", "iat": now, "exp": now + 3601},         # one second too long
        {"sub": "u1", "iat": now - 10, "exp": now + 10 * 365 * 86400},  # ten years
        {"sub": "u1", "iat": "now", "exp": now + 60},         # not a number
        {"sub": "u1", "iat": True, "exp": now + 60},
    ):
        token = jwt.encode(claims, SECRET, algorithm="HS256")
        assert _refusal(verifier, token) == "invalid_token", claims


def test_iat_in_the_future_is_refused_beyond_the_leeway() -> None:
    now = time.time()
    verifier = TokenVerifier("HS256", SECRET, leeway=30)
    assert verifier.verify(issue_token("u1", SECRET, now=now + 20)).user_id == "u1"
    assert _refusal(verifier, issue_token("u1", SECRET, now=now + 90)) == "invalid_token"
    strict = TokenVerifier("HS256", SECRET, leeway=0)
    assert _refusal(strict, issue_token("u1", SECRET, now=now + 5)) == "invalid_token"


def test_leeway_is_at_most_sixty_seconds() -> None:
    assert TokenVerifier("HS256", SECRET, leeway=60)
    with pytest.raises(ValueError, match="WIDGET_JWT_LEEWAY must be between 0 and 60"):
        TokenVerifier("HS256", SECRET, leeway=61)
    with pytest.raises(ValueError, match="WIDGET_JWT_LEEWAY"):
        TokenVerifier("HS256", SECRET, leeway=-1)
    # an expired token is accepted for at most the leeway
    expired = issue_token("u1", SECRET, ttl_seconds=600, now=time.time() - 600 - 61)
    assert _refusal(TokenVerifier("HS256", SECRET, leeway=60), expired) == "token_expired"


def test_audience_and_issuer_are_required_when_configured() -> None:
    verifier = TokenVerifier("HS256", SECRET, audience="support", issuer="shop")
    for token in (
        issue_token("u1", SECRET, issuer="shop"),                      # no aud
        issue_token("u1", SECRET, audience="support"),                 # no iss
        issue_token("u1", SECRET, audience="support", issuer="evil"),  # wrong iss
        issue_token("u1", SECRET, audience="payments", issuer="shop"),  # wrong aud
    ):
        assert _refusal(verifier, token) == "invalid_token"


def test_a_token_for_some_audience_is_refused_when_none_is_configured() -> None:
    verifier = TokenVerifier("HS256", SECRET)
    assert verifier.verify(issue_token("u1", SECRET)).user_id == "u1"
    assert _refusal(verifier, issue_token("u1", SECRET, audience="payments")) == "invalid_token"


def test_every_refusal_has_the_same_message_and_the_reason_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    verifier = TokenVerifier("HS256", SECRET, audience="support", issuer="shop", leeway=0)
    now = int(time.time())
    tokens = {
        "signature": issue_token("u1", OTHER_SECRET, audience="support", issuer="shop"),
        "audience": issue_token("u1", SECRET, audience="other", issuer="shop"),
        "missing iat": jwt.encode({"sub": "u1", "exp": now + 60, "aud": "support",
                                   "iss": "shop"}, SECRET, algorithm="HS256"),
        "lifetime": issue_token("u1", SECRET, audience="support", issuer="shop",
                                ttl_seconds=7200),
        "sub": issue_token("../x", SECRET, audience="support", issuer="shop"),
        "garbage": "a.b.c",
        "too long": "x" * 9000,
    }
    caplog.set_level("INFO", logger="bot.channels.auth")
    errors = {name: _refused(verifier, token) for name, token in tokens.items()}
    assert {name: (e.code, str(e)) for name, e in errors.items()} == {
        name: ("invalid_token", INVALID_MESSAGE) for name in tokens}
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == len(tokens)
    assert any("Signature verification failed" in line for line in logged)
    assert any("lifetime" in line and "3600" in line for line in logged)
    assert any('"iat"' in line for line in logged)
    for token in tokens.values():  # the token itself is never logged
        assert not any(token[-20:] in line for line in logged)
    expired = _refused(verifier, issue_token("u1", SECRET, audience="support", issuer="shop",
                                             ttl_seconds=-5))
    assert (expired.code, str(expired)) == ("token_expired", "The token has expired.")


def test_production_requires_audience_and_issuer(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    from bot.channels.auth import verifier_from_settings
    from bot.settings import get_settings, reset_settings_cache

    monkeypatch.setenv("SUPPORT_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("WIDGET_JWT_SECRET", SECRET)
    monkeypatch.setenv("SUPPORT_ENV", "production")
    monkeypatch.delenv("WIDGET_JWT_AUDIENCE", raising=False)
    monkeypatch.delenv("WIDGET_JWT_ISSUER", raising=False)
    reset_settings_cache()
    try:
        with pytest.raises(ValueError, match="WIDGET_JWT_AUDIENCE must be set"):
            verifier_from_settings(get_settings())
        monkeypatch.setenv("WIDGET_JWT_AUDIENCE", "support")
        reset_settings_cache()
        with pytest.raises(ValueError, match="WIDGET_JWT_ISSUER must be set"):
            verifier_from_settings(get_settings())
        monkeypatch.setenv("WIDGET_JWT_ISSUER", "shop")
        monkeypatch.setenv("WIDGET_JWT_MAX_TTL", "900")
        reset_settings_cache()
        verifier = verifier_from_settings(get_settings())
        assert verifier.max_ttl == 900
        good = issue_token("u1", SECRET, audience="support", issuer="shop", ttl_seconds=900)
        assert verifier.verify(good).user_id == "u1"
        assert _refusal(verifier, issue_token("u1", SECRET, ttl_seconds=900)) == "invalid_token"
        # the channel refuses to start the same way
        from bot.channels.widget import WidgetInput

        monkeypatch.delenv("WIDGET_JWT_ISSUER")
        reset_settings_cache()
        with pytest.raises(ValueError, match="WIDGET_JWT_ISSUER"):
            WidgetInput.from_credentials(None)
        # development: aud/iss stay optional
        monkeypatch.setenv("SUPPORT_ENV", "development")
        monkeypatch.delenv("WIDGET_JWT_AUDIENCE")
        reset_settings_cache()
        dev = verifier_from_settings(get_settings())
        assert dev.verify(issue_token("u1", SECRET, ttl_seconds=900)).user_id == "u1"
    finally:
        reset_settings_cache()
