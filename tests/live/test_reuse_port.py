"""Two Rasa processes on ONE port (SO_REUSEPORT): the kernel is the load balancer.

The production configuration with ``REDIS_URL`` and ``RASA_REUSE_PORT=true``: Rasa process A
(started by the bot factory) and process B bound to the same 127.0.0.1:port. Which process
holds a connection is read from ``/proc`` (the server side of the client's TCP connection),
not from anything the product says. Checked:

* while B loads its model (bound, not yet listening) every new connection is served by A at
  once: a (re)starting process makes no connection wait or fail;
* many widget connections to the one port land on both processes;
* a customer on one process and an agent on the other, both through the one port, see each
  other live (join notice, agent reply, customer message);
* after ``kill -9`` of B new connections through the port are all served by A.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Tuple

import pytest
import websockets

from tests.agent_console.conftest import Console, create_agent
from tests.integration.conftest import (
    postgres_user,
    production_bot_started,
    redis_client,
    require_rabbitmq,
)
from tests.live.conftest import connection_owner, listens, same_port_rasa
from tests.live.test_two_processes import AgentSocket
from tests.servers import REDIS_DB, REDIS_HOST, REDIS_PORT, BotFactory, BotServers, _stop
from tests.widget.conftest import WidgetClient, new_user, token_for

CONNECTIONS = 24  # both processes get some: all on one has probability 2 * 2**-24
WELCOME_WITHIN = 15.0


@dataclass
class OnePort:
    a: BotServers
    b: BotServers
    port: int
    #: Connections opened while B was starting: (seconds to welcome, owner pid or None).
    during_start: List[Tuple[float, Any]] = field(default_factory=list)

    @property
    def pids(self) -> Tuple[int, int]:
        return self.a.rasa_pid, self.b.rasa_pid


def _client_port(client: Any) -> int:
    return client.ws.transport.get_extra_info("sockname")[1]


async def _connect(setup: OnePort, prefix: str) -> Tuple[WidgetClient, Any]:
    """A widget connection through the port (hello -> welcome) and the pid serving it."""
    client = await asyncio.wait_for(
        WidgetClient.connect(setup.a, token_for(new_user(prefix))), WELCOME_WITHIN)
    return client, connection_owner(setup.port, _client_port(client), setup.pids)


def _serving_line(setup: OnePort) -> str:
    """What B prints once it serves (after_server_start, just after listen())."""
    return f"process {setup.b.rasa_pid} listening on 127.0.0.1:{setup.port} (SO_REUSEPORT)"


async def _probe_until_serving(setup: OnePort) -> None:
    """From B's start until B serves, a new connection every 0.25 s (not waiting for the
    previous one). A socket that listened before its process serves would get about half of
    them and keep each waiting until the model is loaded."""

    async def probe() -> None:
        started = time.monotonic()
        try:
            client, owner = await _connect(setup, "boot")
        except (asyncio.TimeoutError, OSError, websockets.WebSocketException) as error:
            setup.during_start.append((time.monotonic() - started, repr(error)))
            return
        setup.during_start.append((time.monotonic() - started, owner))
        await client.ws.close()

    tasks = []
    deadline = time.monotonic() + 180
    while _serving_line(setup) not in setup.b.rasa_log.read_text():
        assert setup.b._rasa.poll() is None, f"B exited during start-up\n{setup.b.logs()}"
        assert time.monotonic() < deadline, f"B not serving after 180 s\n{setup.b.logs()}"
        tasks.append(asyncio.create_task(probe()))
        await asyncio.sleep(0.25)
    await asyncio.gather(*tasks)


@pytest.fixture(scope="module")
def one_port(bot_factory: BotFactory) -> Iterator[OnePort]:
    user = postgres_user()
    redis_client().close()
    require_rabbitmq()
    env = {"REDIS_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}",
           "RASA_REUSE_PORT": "true", "WIDGET_MAX_PREAUTH_PER_IP": "50"}
    with production_bot_started(bot_factory, "port", user, env=env) as a:
        b = same_port_rasa(a, "b", wait=False)  # the same port: a.rasa_url
        setup = OnePort(a, b, int(a.rasa_url.rsplit(":", 1)[1]))
        try:
            asyncio.run(_probe_until_serving(setup))
            yield setup
        finally:
            _stop(b._rasa)


def test_a_starting_process_takes_no_connection(one_port: OnePort) -> None:
    """B binds the port early but listens only once its model is loaded and it serves:
    every connection opened meanwhile is welcomed at once, by A (B may take the last ones,
    opened in the instant between its listen() and its 'listening' line)."""
    probes = one_port.during_start
    a_pid, b_pid = one_port.pids
    failed = [p for p in probes if p[1] not in (a_pid, b_pid)]
    assert failed == [], f"connections that failed or were not accepted: {failed}"
    assert max(seconds for seconds, _ in probes) < 3.0, probes
    owners = [owner for _, owner in probes]
    assert owners.count(a_pid) >= 10 and owners.count(b_pid) <= 3, owners
    assert listens(b_pid, one_port.port)


async def test_connections_spread_and_live_frames_cross_processes(one_port: OnePort) -> None:
    a, b = one_port.a, one_port.b
    clients: List[WidgetClient] = []
    owners: Dict[int, Any] = {}
    for _ in range(CONNECTIONS):
        client, owner = await _connect(one_port, "spread")
        clients.append(client)
        owners[id(client)] = owner
    counts = Counter(owners.values())
    assert set(counts) == set(one_port.pids), f"connections per process: {counts}"
    for client in clients:
        await client.ws.close()

    # A customer on one process, the agent's socket on the other, everything via the port.
    await asyncio.to_thread(create_agent, a.extra["pg_url"], "noa", "agent", "Noa")
    console = Console(f"{a.rasa_url}/webhooks/agent")
    token = await asyncio.to_thread(console.login, "noa")
    user = new_user("cross")
    customer = await WidgetClient.connect(a, token_for(user))
    customer_pid = connection_owner(one_port.port, _client_port(customer), one_port.pids)
    handoff = await customer.turn("I want to talk to a person please")
    said = " ".join(m["text"] for m in handoff["replies"])
    reference = re.search(r"\bT-\d{6}\b", said).group(0)

    for _ in range(40):  # the kernel picks: reconnect until the agent is on the other one
        raw = await websockets.connect(console.ws_url, open_timeout=30)
        agent_pid = connection_owner(one_port.port, raw.transport.get_extra_info("sockname")[1],
                                     one_port.pids)
        if agent_pid not in (None, customer_pid):
            break
        await raw.close()
    else:
        pytest.fail("40 agent sockets, none on the customer's other process")
    try:
        await raw.send(json.dumps({"type": "hello", "token": token}))
        agent = AgentSocket(raw)
        await agent.wait_for("welcome")

        claimed = await asyncio.to_thread(console.call, "POST",
                                          f"/api/tickets/{reference}/claim", token)
        assert claimed.status_code == 200, claimed.text
        joined = await customer.expect("message", lambda f: "has joined" in f["message"]["text"])
        assert joined["message"]["text"] == "Noa from our support team has joined the chat."

        reply = await asyncio.to_thread(console.call, "POST", f"/api/tickets/{reference}/reply",
                                        token, json={"text": "Hi, Noa here."})
        assert reply.status_code == 200, reply.text
        got = await customer.expect("message", lambda f: f["message"]["sender"] == "agent")
        assert got["message"]["text"] == "Hi, Noa here."

        ack = await customer.say("my parcel 104233 has not arrived")
        seen = await agent.wait_for("customer.message",
                                    lambda f: f["message"]["id"] == ack["message"]["id"])
        assert seen["message"]["text"] == "my parcel 104233 has not arrived"
        await agent.close()
    finally:
        await raw.close()
        await customer.close()
    assert {customer_pid, agent_pid} == set(one_port.pids)


async def test_after_kill_9_the_survivor_takes_every_connection(one_port: OnePort) -> None:
    a, b = one_port.a, one_port.b
    os.kill(b.rasa_pid, signal.SIGKILL)
    await asyncio.to_thread(b._rasa.wait, 10)
    owners = []
    for _ in range(10):
        client, owner = await _connect(one_port, "survivor")
        owners.append(owner)
        await client.ws.close()
    assert owners == [a.rasa_pid] * 10, owners
    client, _ = await _connect(one_port, "survivor")
    answer = await client.turn("how long does delivery take?")
    assert answer["replies"], "the survivor answers"
    await client.close()


def test_the_supervisor_keeps_n_processes_on_one_port(one_port: OnePort, tmp_path: Any) -> None:
    """deploy/Procfile.production's launcher: RASA_PROCESSES=2 on a port of its own, a
    kill -9 restarted, SIGTERM stops them all."""
    import subprocess

    from tests.servers import MODEL, PYTHON, ROOT, free_port

    port = free_port()
    log = tmp_path / "supervise.log"
    env = {**one_port.a.env, "RASA_PROCESSES": "2"}
    with open(log, "wb") as out:
        supervisor = subprocess.Popen(
            [str(PYTHON), "-m", "bot.supervise", "--model", str(MODEL), "--credentials",
             str(ROOT / "credentials.yml"), "--endpoints", str(one_port.a.endpoints),
             "--port", str(port)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    pattern = re.compile(rf"process (\d+) listening on 127\.0\.0\.1:{port} \(SO_REUSEPORT\)")

    def serving(count: int) -> List[int]:
        deadline = time.monotonic() + 120
        while True:
            pids = [int(pid) for pid in pattern.findall(log.read_text())]
            if len(pids) >= count:
                return pids
            assert supervisor.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)

    try:
        first = serving(2)
        assert all(listens(pid, port) for pid in first)
        os.kill(first[0], signal.SIGKILL)
        restarted = serving(3)[2]
        assert restarted not in first and listens(restarted, port)
        assert "exited with signal 9" in log.read_text()
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(60) == 0, log.read_text()[-3000:]
        for pid in (first[1], restarted):
            assert not os.path.exists(f"/proc/{pid}") or "zombie" in \
                open(f"/proc/{pid}/status").read().lower(), f"{pid} still running"
    finally:
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)
            supervisor.wait(10)
