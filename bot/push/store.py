"""The agent's push setting and devices (one transaction each, audited).

A device is the browser's ``PushSubscription`` (``{"endpoint", "keys": {"p256dh",
"auth"}}``). It is checked before anything is stored (:func:`clean_subscription`): the
endpoint must be an ``https://`` URL on a push service host (``PUSH_ALLOWED_HOSTS``; in
development also ``http(s)://`` on a loopback address, for the local push endpoint of the
tests), ``p256dh`` a P-256 public point and ``auth`` 16 bytes. The server POSTs to this URL,
so nothing else is accepted (no requests to internal addresses on an agent's say-so).
"""
from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import delete, select

from bot import db
from bot.push.keys import b64url_decode
from bot.push.models import PushPreference, PushSubscription
from bot.support.base import StoreBase
from bot.support.lifecycle import stage_audit

__all__ = ["CleanSubscription", "DeviceView", "PushState", "PushStore", "clean_subscription",
           "endpoint_hash", "host_allowed"]

MAX_ENDPOINT_CHARS = 2048


@dataclass(frozen=True)
class CleanSubscription:
    """A subscription that passed :func:`clean_subscription`."""

    endpoint: str
    p256dh: str
    auth: str


@dataclass(frozen=True)
class DeviceView:
    """One subscribed device of an agent (never its keys)."""

    id: int
    origin: str  # the push service (scheme://host), not the secret endpoint path
    user_agent: Optional[str]
    created_at: datetime
    last_success_at: Optional[datetime]


@dataclass(frozen=True)
class PushState:
    """The agent's setting and devices."""

    enabled: bool
    devices: Tuple[DeviceView, ...]


def endpoint_hash(endpoint: str) -> str:
    """The SHA-256 (hex) that identifies a device's endpoint."""
    return hashlib.sha256(endpoint.encode("utf-8")).hexdigest()


def host_allowed(host: str, patterns: Sequence[str]) -> bool:
    """Whether ``host`` matches one of ``patterns`` (``*.example.com``: any subdomain)."""
    host = host.lower().rstrip(".")
    for pattern in patterns:
        pattern = pattern.lower().strip()
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def clean_subscription(value: Any, allowed_hosts: Sequence[str],
                       allow_loopback: bool) -> CleanSubscription:
    """Check a browser ``PushSubscription`` (its ``toJSON()``).

    Raises:
        ValueError: With a message naming what is wrong (nothing is stored).
    """
    if not isinstance(value, Mapping):
        raise ValueError("subscription must be an object with endpoint and keys")
    endpoint = value.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint or len(endpoint) > MAX_ENDPOINT_CHARS:
        raise ValueError(f"subscription.endpoint must be a URL of at most "
                         f"{MAX_ENDPOINT_CHARS} characters")
    try:
        url = urlsplit(endpoint)
        host = (url.hostname or "").lower()
        url.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError("subscription.endpoint is not a valid URL") from None
    if url.username or url.password or not host:
        raise ValueError("subscription.endpoint is not a valid push service URL")
    if allow_loopback and _loopback(host) and url.scheme in ("http", "https"):
        pass
    elif url.scheme != "https":
        raise ValueError("subscription.endpoint must be an https:// URL")
    elif not host_allowed(host, allowed_hosts):
        raise ValueError(f"subscription.endpoint: {host} is not a known push service "
                         "(PUSH_ALLOWED_HOSTS)")
    keys = value.get("keys")
    if not isinstance(keys, Mapping):
        raise ValueError("subscription.keys must hold p256dh and auth")
    p256dh, auth = keys.get("p256dh"), keys.get("auth")
    if not isinstance(p256dh, str) or not isinstance(auth, str) or len(p256dh) > 128 \
            or len(auth) > 64:
        raise ValueError("subscription.keys.p256dh and .auth must be base64url strings")
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(p256dh))
    except ValueError:
        raise ValueError("subscription.keys.p256dh is not a P-256 public key") from None
    if len(b64url_decode(auth)) != 16:
        raise ValueError("subscription.keys.auth must be 16 bytes")
    return CleanSubscription(endpoint, p256dh.strip().rstrip("="), auth.strip().rstrip("="))


def _origin(endpoint: str) -> str:
    url = urlsplit(endpoint)
    return f"{url.scheme}://{url.netloc}"


class PushStore(StoreBase):
    """Agents' push settings and devices (the outbox is written by the handoff and transfer
    transactions, :mod:`bot.push.outbox`, and drained by :mod:`bot.push.sender`)."""

    async def state(self, agent_id: int) -> PushState:
        """The agent's setting and devices."""
        async with db.read_session(self._sessions) as session:
            return await _state(session, agent_id)

    async def do_subscribe(self, agent_id: int, subscription: CleanSubscription,
                           user_agent: Optional[str] = None) -> PushState:
        """Store this device for the agent and turn their push on; audit ``push.subscribed``.

        A device already stored (same endpoint, any agent) is updated and moves to this
        agent (the browser is now theirs).
        """
        now = db.utcnow()
        digest = endpoint_hash(subscription.endpoint)
        async with db.write_session(self._sessions) as session:
            row = (await session.execute(select(PushSubscription).where(
                PushSubscription.endpoint_hash == digest))).scalar_one_or_none()
            if row is None:
                row = PushSubscription(endpoint=subscription.endpoint, endpoint_hash=digest,
                                       created_at=now)
                session.add(row)
            row.agent_id = agent_id
            row.p256dh, row.auth = subscription.p256dh, subscription.auth
            row.user_agent = (user_agent or "")[:255] or None
            row.updated_at = now
            await _set_enabled(session, agent_id, True, now)
            await session.flush()
            await stage_audit(session, at=now, actor=f"agent:{agent_id}",
                              action="push.subscribed", object_type="agent",
                              object_id=str(agent_id),
                              data={"device": row.id, "service": _origin(row.endpoint)})
            state = await _state(session, agent_id)
        await self._notify("push.subscribed", {"agent_id": agent_id})
        return state

    async def do_unsubscribe(self, agent_id: int, endpoint: str) -> bool:
        """Delete the agent's device with this endpoint; audit ``push.unsubscribed``.

        Returns:
            Whether a device was deleted (False: it was not stored; nothing changes).
        """
        now = db.utcnow()
        async with db.write_session(self._sessions) as session:
            result = await session.execute(
                delete(PushSubscription).where(
                    PushSubscription.endpoint_hash == endpoint_hash(endpoint),
                    PushSubscription.agent_id == agent_id)
                .execution_options(synchronize_session=False))
            if result.rowcount:
                await stage_audit(session, at=now, actor=f"agent:{agent_id}",
                                  action="push.unsubscribed", object_type="agent",
                                  object_id=str(agent_id), data={})
        if result.rowcount:
            await self._notify("push.unsubscribed", {"agent_id": agent_id})
        return bool(result.rowcount)

    async def do_set_enabled(self, agent_id: int, enabled: bool) -> PushState:
        """Turn the agent's push on or off (all their devices); audit ``push.enabled`` /
        ``push.disabled``."""
        now = db.utcnow()
        async with db.write_session(self._sessions) as session:
            await _set_enabled(session, agent_id, enabled, now)
            await stage_audit(session, at=now, actor=f"agent:{agent_id}",
                              action="push.enabled" if enabled else "push.disabled",
                              object_type="agent", object_id=str(agent_id), data={})
            state = await _state(session, agent_id)
        await self._notify("push.enabled" if enabled else "push.disabled",
                           {"agent_id": agent_id})
        return state

    async def do_test(self, agent_id: int) -> int:
        """Queue a test notification to every device of the agent; audit ``push.test``.

        Returns:
            How many devices it goes to.
        """
        from bot.push.outbox import stage_push

        now = db.utcnow()
        async with db.write_session(self._sessions) as session:
            audit = await stage_audit(session, at=now, actor=f"agent:{agent_id}",
                                      action="push.test", object_type="agent",
                                      object_id=str(agent_id), data={})
            connection = await session.connection()
            count = await connection.run_sync(lambda sync: stage_push(
                sync, kind="test", agent_ids=[agent_id], payload={
                    "type": "test", "subject": "Notifications work on this device."},
                urgency="normal", now=now, dedupe=f"audit{audit.id}", any_setting=True))
        return count

    async def outbox(self, ticket: Optional[str] = None) -> List[Dict[str, Any]]:
        """Outbox rows (oldest first), for operators and tests."""
        from bot.push.models import PushOutbox

        async with db.read_session(self._sessions) as session:
            query = select(PushOutbox).order_by(PushOutbox.id)
            if ticket:
                query = query.where(PushOutbox.ticket == ticket)
            rows = (await session.execute(query)).scalars().all()
            return [{c.name: getattr(r, c.name) for c in PushOutbox.__table__.columns}
                    for r in rows]


async def _set_enabled(session: Any, agent_id: int, enabled: bool, now: datetime) -> None:
    row = await session.get(PushPreference, agent_id)
    if row is None:
        session.add(PushPreference(agent_id=agent_id, enabled=enabled, updated_at=now))
    else:
        row.enabled, row.updated_at = enabled, now


async def _state(session: Any, agent_id: int) -> PushState:
    preference = await session.get(PushPreference, agent_id)
    rows = (await session.execute(select(PushSubscription).where(
        PushSubscription.agent_id == agent_id).order_by(PushSubscription.id))).scalars().all()
    return PushState(
        enabled=bool(preference is not None and preference.enabled),
        devices=tuple(DeviceView(r.id, _origin(r.endpoint), r.user_agent, r.created_at,
                                 r.last_success_at) for r in rows))
