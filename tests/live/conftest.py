"""Two Rasa processes on one PostgreSQL, Redis and RabbitMQ, as behind a load balancer.

``two_processes`` (module): the production configuration (deploy/endpoints.production.yml)
with ``REDIS_URL`` set, an action server, Rasa process A (started by the bot factory) and a
second Rasa process B on its own port with the same environment and databases. Tests put a
customer on one process and an agent on the other. Services follow tests/conftest.py: run when
they answer, skip otherwise, fail when CI=true.

:func:`same_port_rasa` starts another Rasa process on the SAME port (``RASA_REUSE_PORT=true``,
SO_REUSEPORT); :func:`listens` and :func:`connection_owner` tell from ``/proc`` which process
listens and which one holds the server side of a client's connection.
"""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, List, Optional, Set, Tuple

import pytest
import requests

from tests.integration.conftest import (
    postgres_user,
    production_bot_started,
    redis_client,
    require_rabbitmq,
)
from tests.servers import (
    HOST,
    REDIS_DB,
    REDIS_HOST,
    REDIS_PORT,
    BotFactory,
    BotServers,
    _stop,
    free_port,
)


def second_rasa(bot: BotServers, label: str) -> BotServers:
    """Another Rasa process of ``bot`` (same environment, databases and action server)."""
    other = dataclasses.replace(
        bot, name=f"{bot.name}-{label}", rasa_url=f"http://{HOST}:{free_port()}",
        rasa_log=bot.rasa_log.with_name(f"rasa-{label}.log"), _rasa=None, _actions=None,
        _http=requests.Session())
    other.start_rasa()
    _wait_until(other, label, "ready", 180.0, 0.5,
                lambda: other._ready(f"{other.rasa_url}/status", token=other.token))
    return other


def _wait_until(bot: Any, label: str, what: str, timeout: float, step: float,
                done: Callable[[], bool]) -> None:
    """Wait until ``done()``; fail (with the logs) if the Rasa process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while not done():
        if bot._rasa is not None and bot._rasa.poll() is not None:
            pytest.fail(f"Rasa process {label} exited during start-up.\n{bot.logs()}",
                        pytrace=False)
        if time.monotonic() > deadline:
            pytest.fail(f"Rasa process {label} not {what}.\n{bot.logs()}", pytrace=False)
        time.sleep(step)


def _tcp_sockets() -> List[Tuple[int, int, str, str]]:
    """(local port, remote port, state, inode) of every TCP socket (``/proc/net/tcp*``)."""
    rows = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            rows.append((int(fields[1].rsplit(":", 1)[1], 16),
                         int(fields[2].rsplit(":", 1)[1], 16), fields[3], fields[9]))
    return rows


def _socket_inodes(pid: int) -> Set[str]:
    inodes = set()
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def listens(pid: int, port: int) -> bool:
    """True when process ``pid`` has a LISTEN socket on ``port``."""
    inodes = _socket_inodes(pid)
    return any(local == port and state == "0A" and inode in inodes
               for local, _, state, inode in _tcp_sockets())


def connection_owner(port: int, client_port: int, pids: Iterable[int]) -> Optional[int]:
    """Which of ``pids`` holds the server side of the connection from ``client_port``
    to ``port`` (None: nobody accepted it yet)."""
    inodes = {inode for local, remote, state, inode in _tcp_sockets()
              if local == port and remote == client_port and state == "01"}
    for pid in pids:
        if inodes & _socket_inodes(pid):
            return pid
    return None


def same_port_rasa(bot: BotServers, label: str, wait: bool = True) -> BotServers:
    """Another Rasa process of ``bot`` on the SAME host:port (``bot`` must run with
    ``RASA_REUSE_PORT=true``); with ``wait``, until it listens (its /status cannot be told
    apart from the others', the kernel picks the process)."""
    other = dataclasses.replace(
        bot, name=f"{bot.name}-{label}",
        rasa_log=bot.rasa_log.with_name(f"rasa-{label}.log"), _rasa=None, _actions=None,
        _http=requests.Session())
    other.start_rasa()
    if wait:
        wait_listening(other, label)
    return other


def wait_listening(bot: BotServers, label: str, timeout: float = 180.0) -> None:
    """Wait until ``bot``'s Rasa process listens on its port; fail if it exits."""
    port = int(bot.rasa_url.rsplit(":", 1)[1])
    _wait_until(bot, label, "listening", timeout, 0.3, lambda: listens(bot.rasa_pid, port))


@pytest.fixture(scope="module")
def two_processes(bot_factory: BotFactory) -> Iterator[Tuple[BotServers, BotServers]]:
    user = postgres_user()
    redis_client().close()
    require_rabbitmq()
    redis_url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
    with production_bot_started(bot_factory, "live", user, env={"REDIS_URL": redis_url}) as a:
        b = second_rasa(a, "b")
        try:
            yield a, b
        finally:
            _stop(b._rasa)
