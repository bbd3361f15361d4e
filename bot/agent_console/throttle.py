"""Console login limits and the address a request is counted against.

:class:`LoginThrottle` limits logins in memory: ``AGENT_LOGIN_RATE`` attempts per client
IP per minute, and per account a back-off after ``AGENT_LOGIN_ACCOUNT_FAILURES`` failures
in a row (30 s, doubling up to ``AGENT_LOGIN_BACKOFF_MAX``; a success resets it), whichever
IPs the attempts come from. :func:`client_ip` is the socket's peer, or, only when the peer
is one of ``AGENT_TRUSTED_PROXIES`` (:func:`parse_networks`), the right-most address of
``X-Forwarded-For`` that is not a trusted proxy. Every limiter keeps at most
``LIMITER_MAX_KEYS`` keys (the least recently used go first).
"""
from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Iterable, Optional, Sequence, Tuple, Union

__all__ = ["LOGIN_THROTTLED", "LoginThrottle", "client_ip", "parse_networks"]

LOGIN_WINDOW = 60.0
ACCOUNT_BACKOFF_BASE = 30.0
"""Seconds of the first per-account back-off; each further failure doubles it."""
LOGIN_THROTTLED = "Too many login attempts; try again in {seconds} s."

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


def parse_networks(entries: Iterable[str]) -> Tuple[Network, ...]:
    """``AGENT_TRUSTED_PROXIES`` entries (IPs or CIDRs) as networks.

    Raises:
        ValueError: An entry that is neither, naming it.
    """
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"AGENT_TRUSTED_PROXIES: {entry!r} is not an IP address or "
                             "CIDR range.") from None
    return tuple(networks)


def _address(value: str) -> Optional[Address]:
    """An IP from a peer or ``X-Forwarded-For`` item (``[v6]:port`` and ``v4:port`` too)."""
    value = value.strip().strip('"')
    if value.startswith("["):
        value = value[1:].split("]", 1)[0]
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def client_ip(peer: str, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """The address a request is counted against.

    Args:
        peer: The socket's peer address.
        forwarded_for: The ``X-Forwarded-For`` header values, in order.
        trusted: The proxies whose ``X-Forwarded-For`` is believed.

    Returns:
        The peer, unless it is a trusted proxy: then the right-most ``X-Forwarded-For``
        address that is not a trusted proxy (addresses left of it may be forged by the
        client). When every listed address is trusted, the left-most one; when the header is
        missing, or the next hop is not an IP, the last trusted hop.
    """
    hop = _address(peer)
    if hop is None:
        return peer or "?"
    if not any(hop in network for network in trusted):
        return str(hop)
    items = [item for value in forwarded_for for item in value.split(",") if item.strip()]
    for item in reversed(items):
        address = _address(item)
        if address is None:
            break
        hop = address
        if not any(address in network for network in trusted):
            break
    return str(hop)


class _Bounded(OrderedDict):
    """An LRU mapping of at most ``max_keys`` keys (the least recently used are dropped)."""

    def __init__(self, max_keys: int) -> None:
        super().__init__()
        self.max_keys = max(1, int(max_keys))

    def touch(self, key: str, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.max_keys:
            self.popitem(last=False)


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0
    blocked_until: float = 0.0


class LoginThrottle:
    """Console login limits, in memory: per client IP and per account.

    * Per IP: at most ``ip_limit`` attempts in ``window`` seconds (a sliding window).
    * Per account (the typed user name, whether it exists or not, so answers never tell):
      after ``account_failures`` failed logins in a row, further attempts wait
      ``base`` seconds, doubling with each further failure up to ``backoff_max``; a success
      resets it, and so do ``backoff_max`` seconds without a failure after the wait. A wait
      refuses every attempt on the account (even the right password) without checking it,
      from any IP; other accounts are not affected.

    Both maps keep at most ``max_keys`` keys (least recently used dropped first).

    Args:
        ip_limit: Attempts per IP per window.
        account_failures: Failures in a row before the back-off.
        backoff_max: Longest wait, seconds.
        max_keys: Keys per map.
        window: The IP window, seconds.
        base: The first wait, seconds.
        clock: Monotonic clock (tests pass their own).
    """

    def __init__(self, ip_limit: int, account_failures: int, backoff_max: float,
                 max_keys: int, window: float = LOGIN_WINDOW,
                 base: float = ACCOUNT_BACKOFF_BASE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ip_limit = max(1, int(ip_limit))
        self.account_failures = max(1, int(account_failures))
        self.backoff_max = float(backoff_max)
        self.window = float(window)
        self.base = min(float(base), self.backoff_max)
        self._clock = clock
        self._ips: _Bounded = _Bounded(max_keys)
        self._accounts: _Bounded = _Bounded(max_keys)

    @staticmethod
    def account_key(username: Any) -> str:
        """The account key of a typed user name (as ``AgentStore.do_login`` matches it)."""
        return str(username or "").strip().lower()[:64]

    def check(self, ip: str, username: Any) -> float:
        """Count a login attempt from ``ip`` for ``username`` if it may be tried now.

        Returns:
            0.0 when it may (the IP attempt is counted), else the seconds to wait.
        """
        now = self._clock()
        events: Deque[float] = self._ips.get(ip) or deque()
        while events and now - events[0] >= self.window:
            events.popleft()
        if len(events) >= self.ip_limit:
            self._ips.touch(ip, events)
            return max(0.001, self.window - (now - events[0]))
        key = self.account_key(username)
        state = self._accounts.get(key)
        if state is not None and now < state.blocked_until:
            return state.blocked_until - now
        events.append(now)
        self._ips.touch(ip, events)
        return 0.0

    def failed(self, username: Any) -> float:
        """Record a failed login; returns the back-off it starts (0.0: none yet)."""
        now = self._clock()
        key = self.account_key(username)
        state = self._accounts.get(key) or _Failures()
        if state.count and now >= max(state.last, state.blocked_until) + self.backoff_max:
            state = _Failures()  # quiet for long enough: start counting again
        state.count += 1
        state.last = now
        delay = 0.0
        if state.count >= self.account_failures:
            delay = min(self.backoff_max,
                        self.base * 2 ** (state.count - self.account_failures))
            state.blocked_until = now + delay
        self._accounts.touch(key, state)
        return delay

    def succeeded(self, username: Any) -> None:
        """A successful login resets the account's failures."""
        self._accounts.pop(self.account_key(username), None)

    def sizes(self) -> Tuple[int, int]:
        """``(IP keys, account keys)`` held (tests, bounded memory)."""
        return len(self._ips), len(self._accounts)

