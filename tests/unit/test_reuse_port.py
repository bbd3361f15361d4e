"""One Rasa process per core on one port: the SO_REUSEPORT socket of ``bot/serve.py``, its
settings and refusals, and the supervisor ``bot/supervise.py`` with stand-in processes
(the real Rasa processes: tests/live/test_reuse_port.py)."""
from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator, List

import pytest

from bot import serve, supervise
from bot.settings import get_settings

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv" / "bin" / "python"


@pytest.fixture
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("RASA_REUSE_PORT", "RASA_PROCESSES", "REDIS_URL", "SANIC_WORKERS"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


# ------------------------------------------------------------------ settings


def test_settings_defaults_and_values(fresh_settings: None,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    settings = get_settings()
    assert settings.rasa_reuse_port is False
    assert settings.rasa_processes == len(os.sched_getaffinity(0))
    monkeypatch.setenv("RASA_REUSE_PORT", "TRUE")
    monkeypatch.setenv("RASA_PROCESSES", "3")
    get_settings.cache_clear()
    assert (get_settings().rasa_reuse_port, get_settings().rasa_processes) == (True, 3)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("RASA_REUSE_PORT", "maybe", "RASA_REUSE_PORT must be true or false"),
    ("RASA_PROCESSES", "0", "RASA_PROCESSES must be at least 1"),
    ("RASA_PROCESSES", "two", "RASA_PROCESSES must be an integer"),
])
def test_bad_settings_name_the_variable(fresh_settings: None, monkeypatch: pytest.MonkeyPatch,
                                        name: str, value: str, message: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        get_settings()


# -------------------------------------------------------------------- socket


def test_processes_share_a_port_and_only_listening_ones_get_connections() -> None:
    first = serve.reuse_port_socket("127.0.0.1", 0)
    port = first.getsockname()[1]
    second = serve.reuse_port_socket("127.0.0.1", port)  # the same port: allowed
    try:
        for sock in (first, second):
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
        with socket.socket() as client:  # bound, nobody listens yet: refused, not queued
            assert client.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED
        first.listen(8)
        for _ in range(20):  # `second` is bound but not listening: every one goes to `first`
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                accepted, _ = first.accept()
                accepted.close()
    finally:
        first.close()
        second.close()


def test_a_port_held_without_reuseport_cannot_be_shared() -> None:
    with socket.socket() as plain:
        plain.bind(("127.0.0.1", 0))
        plain.listen(1)
        with pytest.raises(OSError) as raised:
            serve.reuse_port_socket("127.0.0.1", plain.getsockname()[1])
        assert raised.value.errno == errno.EADDRINUSE


def test_no_reuseport_on_the_platform_is_a_clear_refusal(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(socket, "SO_REUSEPORT")
    with pytest.raises(serve.ReusePortUnavailable, match="has no SO_REUSEPORT"):
        serve.reuse_port_socket("127.0.0.1", 0)


def test_reuseport_without_load_balancing_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")  # the option exists, the balancing not
    with pytest.raises(serve.ReusePortUnavailable, match=r"darwin.*Linux 3\.9\+"):
        serve.reuse_port_socket("127.0.0.1", 0)


def test_a_kernel_that_refuses_reuseport_is_a_clear_refusal(
        monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.socket

    class NoReusePort(real):  # type: ignore[misc, valid-type]
        def setsockopt(self, level: int, option: int, value: Any) -> None:
            if option == socket.SO_REUSEPORT:
                raise OSError(errno.ENOPROTOOPT, "Protocol not available")
            super().setsockopt(level, option, value)

    monkeypatch.setattr(socket, "socket", NoReusePort)
    with pytest.raises(serve.ReusePortUnavailable, match="refuses SO_REUSEPORT"):
        serve.reuse_port_socket("127.0.0.1", 0)


def test_ipv6_and_host_names_bind_too() -> None:
    if socket.has_ipv6:
        try:
            serve.reuse_port_socket("::1", 0).close()
        except OSError as error:
            if error.errno != errno.EADDRNOTAVAIL:  # no IPv6 loopback in this container
                raise
    sock = serve.reuse_port_socket("localhost", 0)
    assert sock.getsockname()[1] > 0
    sock.close()


def test_reuse_port_needs_shared_locks_and_the_live_bus(
        fresh_settings: None, monkeypatch: pytest.MonkeyPatch) -> None:
    redis_locks = SimpleNamespace(lock_store=SimpleNamespace(type="redis"))
    memory_locks = SimpleNamespace(lock_store=None)
    problems = serve.reuse_port_problems(get_settings(), memory_locks)
    assert [p.split(":")[1].split(",")[0].strip() for p in problems] == [
        "the endpoints file has the in-memory lock store", "REDIS_URL is not set"]
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/1")
    get_settings.cache_clear()
    assert serve.reuse_port_problems(get_settings(), redis_locks) == []
    monkeypatch.setenv("SANIC_WORKERS", "4")
    assert "RASA_PROCESSES" in " ".join(serve.reuse_port_problems(get_settings(), redis_locks))


def test_sanic_gets_the_socket_instead_of_host_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    from sanic import Sanic

    calls: List[Any] = []
    monkeypatch.setattr(Sanic, "run", lambda app, *a, **k: calls.append(k))
    original = Sanic.run
    marker = object()
    with serve._sanic_serves_on(marker):  # type: ignore[arg-type]
        Sanic.run(object(), host="127.0.0.1", port=5005, ssl=None, backlog=100, workers=1)
    assert calls == [{"sock": marker, "ssl": None, "backlog": 100, "workers": 1}]
    assert Sanic.run is original


def test_serve_refuses_reuse_port_without_redis(tmp_path: Path) -> None:
    """The whole start-up path: one line, exit status 2, nothing bound."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RASA_TOKEN": "t" * 32,
           "ACTION_SERVER_TOKEN": "a" * 32, "RASA_REUSE_PORT": "true",
           "SUPPORT_VAR_DIR": str(tmp_path)}
    env.pop("REDIS_URL", None)
    done = subprocess.run(
        [str(PYTHON), "-m", "bot.serve", "--model", "models/support.tar.gz", "--credentials",
         "credentials.yml", "--endpoints", "endpoints.yml"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Rasa server: refusing to start: RASA_REUSE_PORT=true: the endpoints file has the " \
           "in-memory lock store" in done.stderr
    assert "REDIS_URL is not set" in done.stderr


# ---------------------------------------------------------------- supervisor


CHILD = textwrap.dedent("""
    import os, sys, time
    flag = sys.argv[1]
    if os.path.exists(flag):
        sys.exit(2)
    signal_log = sys.argv[2]
    import signal
    def stop(*_):
        open(signal_log, "a").write(f"{os.getpid()}\\n")
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    while True:
        time.sleep(0.05)
""")


def _supervisor(tmp_path: Path, processes: int = 2) -> supervise.Supervisor:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return supervise.Supervisor(
        [sys.executable, str(script), str(tmp_path / "refuse"), str(tmp_path / "stopped")],
        processes, dict(os.environ), stop_timeout=5.0)


def _until(condition: Any, sup: supervise.Supervisor, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        sup.step()
        time.sleep(0.02)


def test_a_process_that_dies_is_started_again(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervise, "RESTART_DELAY", 0.1)
    sup = _supervisor(tmp_path)
    try:
        sup.step()  # starts both
        first = sup.pids()
        assert len(first) == 2
        os.kill(first[0], signal.SIGKILL)
        _until(lambda: len(sup.pids()) == 2 and first[0] not in sup.pids(), sup)
        assert sup.pids()[1] == first[1]
        assert sup.slots[0].restarts == 1 and sup.slots[1].restarts == 0
        os.kill(sup.pids()[0], signal.SIGKILL)  # dies again soon after its start: backs off
        _until(lambda: sup.slots[0].restarts == 2, sup)
        assert sup.slots[0].delay == pytest.approx(0.2)
    finally:
        sup.request_stop()
        _until(lambda: not sup.pids(), sup)


def test_a_process_that_refuses_to_start_stops_them_all(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervise, "RESTART_DELAY", 0.1)
    sup = _supervisor(tmp_path)
    sup.step()
    (tmp_path / "refuse").touch()  # from now on a (re)started process exits with 2
    os.kill(sup.pids()[0], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while sup.step():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert sup.status == 2 and sup.pids() == []


def test_sigterm_stops_every_process(tmp_path: Path) -> None:
    """The real signal path: the supervisor in its own process, SIGTERM to it only."""
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from bot.supervise import Supervisor
        child = {str(tmp_path / 'child.py')!r}
        sup = Supervisor([sys.executable, child, {str(tmp_path / 'refuse')!r},
                          {str(tmp_path / 'stopped')!r}], 3, dict(os.environ), 5.0)
        sys.exit(sup.run())
    """))
    (tmp_path / "child.py").write_text(CHILD)
    proc = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        children: List[int] = []
        while len(children) < 3:
            assert time.monotonic() < deadline, "children not started"
            out = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
            children = [int(pid) for pid in out.stdout.split()]
            time.sleep(0.1)
        time.sleep(0.3)  # their SIGTERM handlers are installed
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        stopped = sorted(int(p) for p in (tmp_path / "stopped").read_text().split())
        assert stopped == sorted(children)  # each got SIGTERM and exited by itself
        assert "stopping 3 process(es)" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_several_processes_share_the_port(fresh_settings: None) -> None:
    assert supervise.child_env({"A": "1"}, 1) == {"A": "1"}
    assert supervise.child_env({"A": "1"}, 4) == {"A": "1", "RASA_REUSE_PORT": "true"}
