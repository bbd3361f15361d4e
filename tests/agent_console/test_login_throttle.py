"""The console's login limits without a server: per-IP window, per-account back-off,
bounded maps, and which address X-Forwarded-For may name (bot/agent_console/channel.py)."""
from __future__ import annotations

from typing import List

import pytest

from bot.agent_console.channel import LoginThrottle, client_ip, parse_networks


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def throttle(clock: Clock, **overrides: float) -> LoginThrottle:
    options = {"ip_limit": 10, "account_failures": 5, "backoff_max": 900.0, "max_keys": 100}
    options.update(overrides)
    return LoginThrottle(clock=clock, **options)  # type: ignore[arg-type]


def fail(limits: LoginThrottle, username: str, ip: str) -> float:
    assert limits.check(ip, username) == 0.0
    return limits.failed(username)


def test_an_account_backs_off_after_failures_from_many_ips_others_do_not() -> None:
    clock = Clock()
    limits = throttle(clock)
    delays = [fail(limits, "maria", f"198.51.100.{n}") for n in range(1, 6)]
    assert delays == [0.0, 0.0, 0.0, 0.0, 30.0]
    # the 6th attempt, from yet another IP, waits; so would the right password
    assert limits.check("198.51.100.6", "maria") == pytest.approx(30.0)
    assert limits.check("198.51.100.6", " MARIA ") == pytest.approx(30.0)
    # another account from the same IPs is not affected
    assert limits.check("198.51.100.1", "tom") == 0.0
    limits.succeeded("tom")


def test_the_back_off_doubles_up_to_the_maximum_and_a_success_resets_it() -> None:
    clock = Clock()
    limits = throttle(clock, backoff_max=100.0)
    waits: List[float] = []
    for attempt in range(9):
        clock.now += limits.check("203.0.113.99", "maria")  # waits exactly as long as told
        waits.append(fail(limits, "maria", f"203.0.113.{attempt}"))
    assert waits == [0.0, 0.0, 0.0, 0.0, 30.0, 60.0, 100.0, 100.0, 100.0]
    clock.now += 100.0
    assert limits.check("203.0.113.7", "maria") == 0.0  # back-off, not a lock-out
    limits.succeeded("maria")
    assert limits.failed("maria") == 0.0  # counting starts again


def test_failures_long_ago_are_forgotten() -> None:
    clock = Clock()
    limits = throttle(clock)
    for _ in range(4):
        fail(limits, "maria", "192.0.2.1")
    clock.now += 901.0
    assert fail(limits, "maria", "192.0.2.1") == 0.0  # the 5th, but weeks later: a new count


def test_per_ip_window() -> None:
    clock = Clock()
    limits = throttle(clock, ip_limit=3, window=60.0)
    for name in ("a1", "a2", "a3"):
        assert limits.check("192.0.2.7", name) == 0.0
    assert limits.check("192.0.2.7", "a4") == pytest.approx(60.0)
    assert limits.check("192.0.2.8", "a4") == 0.0
    clock.now += 60.0
    assert limits.check("192.0.2.7", "a4") == 0.0


def test_the_maps_are_bounded() -> None:
    clock = Clock()
    limits = throttle(clock, max_keys=100)
    for n in range(5000):
        limits.check(f"10.0.{n // 250}.{n % 250}", f"user-{n}")
        limits.failed(f"user-{n}")
    assert limits.sizes() == (100, 100)
    # the least recently used went first: a recent account's failures are still there
    for _ in range(4):
        fail(limits, "user-4999", "10.9.9.9")
    assert limits.check("10.9.9.8", "user-4999") > 0


TRUSTED = parse_networks(["127.0.0.1", "10.0.0.0/8", "2001:db8::/32"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("198.51.100.7", ["203.0.113.5"], "198.51.100.7"),  # untrusted peer: header ignored
        ("127.0.0.1", ["203.0.113.5"], "203.0.113.5"),
        ("127.0.0.1", ["1.2.3.4, 203.0.113.5"], "203.0.113.5"),  # the left part is the client's
        ("127.0.0.1", ["203.0.113.5, 10.1.2.3"], "203.0.113.5"),  # a chain of our proxies
        ("127.0.0.1", ["203.0.113.5", "10.1.2.3"], "203.0.113.5"),  # two header lines
        ("127.0.0.1", ["garbage, 203.0.113.5"], "203.0.113.5"),
        ("127.0.0.1", ["203.0.113.5, garbage"], "127.0.0.1"),  # a broken hop: the proxy
        ("127.0.0.1", [], "127.0.0.1"),
        ("127.0.0.1", ["10.0.0.1, 10.0.0.2"], "10.0.0.1"),  # only proxies: the left-most
        ("::ffff:127.0.0.1", ["[2001:db9::5]:443"], "2001:db9::5"),
        ("127.0.0.1", ["203.0.113.5:51234"], "203.0.113.5"),
    ],
)
def test_client_ip(peer: str, forwarded: List[str], expected: str) -> None:
    assert client_ip(peer, forwarded, TRUSTED) == expected


def test_no_trusted_proxies_means_the_peer() -> None:
    assert client_ip("127.0.0.1", ["203.0.113.5"], ()) == "127.0.0.1"


def test_a_bad_trusted_proxy_setting_is_named() -> None:
    with pytest.raises(ValueError, match="'proxy.example.com' is not an IP address"):
        parse_networks(["10.0.0.0/8", "proxy.example.com"])
