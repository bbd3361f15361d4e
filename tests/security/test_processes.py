"""The processes: secrets off the command line, loopback only, production refuses demo defaults.

Against the real processes: the Rasa server (``bot/serve.py``) and the action server
(``bot/action_server.py``) of ``embedded_bot`` — their ``/proc/<pid>/cmdline``, their
listening sockets, a conversation through Rasa → action server with the secret, the
terminal client (``bot/shell.py``) — and fresh starts with ``SUPPORT_ENV=production``: on
the defaults ``make run`` leaves behind they exit non-zero naming every variable to change;
on a proper production environment (explicit secrets, PostgreSQL) they start.
"""
from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional, Set

import pytest
import requests

from tests.servers import (
    ANNA_METADATA,
    HOST,
    MODEL,
    PYTHON,
    ROOT,
    BotServers,
    _popen,
    _stop,
    bot_texts,
    free_port,
    new_conversation_id,
    tail,
)

START_TIMEOUT = 120
#: Variables a test process must not inherit from the developer's environment.
_CONFIG_PREFIXES = ("SUPPORT_", "WIDGET_", "RASA_", "ACTION_SERVER_", "ACTIONS_", "AGENT_",
                    "TWILIO_", "ORDERS_DB_URL", "REDIS_", "RABBITMQ_")


# ------------------------------------------------------------------ helpers


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _socket_inodes(pid: int) -> Set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    return inodes


def _ipv4(hex_address: str) -> str:
    packed = bytes.fromhex(hex_address)
    return socket.inet_ntoa(packed[::-1])


def listening_addresses(pid: int) -> List[str]:
    """``address:port`` of every listening TCP socket of a process (/proc/net/tcp, tcp6)."""
    inodes = _socket_inodes(pid)
    found = []
    for table, six in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            address, port = local.split(":")
            if six:
                text = socket.inet_ntop(socket.AF_INET6, b"".join(
                    bytes.fromhex(address[i:i + 8])[::-1] for i in range(0, 32, 8)))
            else:
                text = _ipv4(address)
            found.append(f"{text}:{int(port, 16)}")
    return found


def _non_loopback_ipv4() -> Optional[str]:
    """This machine's address on its default route, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 9))
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def clean_env(var_dir: Path, **values: str) -> Dict[str, str]:
    """The environment of a fresh process: nothing of ours inherited, then ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CONFIG_PREFIXES)}
    env.update({
        "PYTHONPATH": str(ROOT),
        "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "RASA_TELEMETRY_ENABLED": "false",
        "SUPPORT_VAR_DIR": str(var_dir),
    })
    env.update(values)
    return env


def make_run_leftovers(var_dir: Path) -> None:
    """What ``make run`` leaves in var/: generated secrets, a SQLite DB with demo agents."""
    var_dir.mkdir(parents=True, exist_ok=True)
    for name in ("rasa_token", "action_server_token", "api_token", "widget_jwt_secret",
                 "agent_metrics_token"):
        path = var_dir / name
        path.write_text(secrets.token_urlsafe(32) + "\n")
        path.chmod(0o600)
    from bot.push.keys import main as vapid_keys  # the VAPID pair `make run` generates

    vapid_keys(["generate", "--dir", str(var_dir)])
    seeded = subprocess.run([str(PYTHON), str(ROOT / "scripts" / "seed_agents.py")], cwd=ROOT,
                            env=clean_env(var_dir), capture_output=True, text=True, timeout=120)
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr


def run(args: List[str], env: Dict[str, str], timeout: float = START_TIMEOUT
        ) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def _serve_args(port: int, endpoints: str = "endpoints.yml") -> List[str]:
    return [str(PYTHON), "-m", "bot.serve", "--model", str(MODEL), "--credentials",
            str(ROOT / "credentials.yml"), "--endpoints", str(ROOT / endpoints),
            "--port", str(port)]


def _actions_args(port: int) -> List[str]:
    return [str(PYTHON), "-m", "bot.action_server", "--port", str(port)]


DEMO_DEFAULT_VARIABLES = (
    "RASA_TOKEN", "ACTION_SERVER_TOKEN", "SUPPORT_API_TOKEN", "WIDGET_JWT_SECRET",
    "AGENT_METRICS_TOKEN", "WIDGET_JWT_AUDIENCE", "WIDGET_JWT_ISSUER",
    "WIDGET_ALLOWED_ORIGINS", "SUPPORT_DB_URL", "ORDERS_DB_URL", "TWILIO_API_BASE",
    "VAPID_PRIVATE_KEY", "VAPID_SUBJECT",
)


# ------------------------------------------------------- the running bot


@pytest.mark.model
def test_no_secret_on_any_command_line(embedded_bot: BotServers) -> None:
    rasa, actions = _cmdline(embedded_bot.rasa_pid), _cmdline(embedded_bot.actions_pid)
    assert "bot.serve" in rasa and "bot.action_server" in actions
    for secret in (embedded_bot.token, embedded_bot.action_token, embedded_bot.api_token):
        assert secret not in rasa and secret not in actions
    assert "--auth-token" not in rasa


@pytest.mark.model
@pytest.mark.parametrize("server", ["rasa", "actions"])
def test_servers_listen_only_on_loopback(embedded_bot: BotServers, server: str) -> None:
    pid = embedded_bot.rasa_pid if server == "rasa" else embedded_bot.actions_pid
    port = int((embedded_bot.rasa_url if server == "rasa" else embedded_bot.actions_url)
               .rsplit(":", 1)[1])

    addresses = listening_addresses(pid)
    assert f"127.0.0.1:{port}" in addresses, addresses
    assert all(a.startswith("127.0.0.1:") for a in addresses), addresses

    outside = _non_loopback_ipv4()
    if outside is not None:
        with socket.socket() as client:
            client.settimeout(5)
            with pytest.raises(OSError):
                client.connect((outside, port))


@pytest.mark.model
def test_a_conversation_runs_through_the_authenticated_action_server(
    embedded_bot: BotServers,
) -> None:
    before = tail(embedded_bot.actions_log, 100000).count("refused")
    replies = embedded_bot.send(new_conversation_id("conv"), "where is my order 104233",
                                ANNA_METADATA)

    text = " ".join(bot_texts(replies))
    assert "104233" in text and "DHL" in text, replies  # written by action_track_order
    assert tail(embedded_bot.actions_log, 100000).count("refused") == before


@pytest.mark.model
def test_the_terminal_client_chats_with_the_api_token(embedded_bot: BotServers) -> None:
    sender = new_conversation_id("shell")
    result = subprocess.run(
        [str(PYTHON), "-m", "bot.shell", "--url", embedded_bot.rasa_url, "--sender", sender,
         "--customer", "cust-anna", "--wait", "30"],
        cwd=ROOT, env=embedded_bot.env, input="where is my order 104233\n",
        capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "bot>" in result.stdout and "DHL" in result.stdout, result.stdout
    assert embedded_bot.api_token not in result.stdout + result.stderr
    events = [e for e in embedded_bot.tracker(sender)["events"] if e["event"] == "user"]
    assert events and events[0]["metadata"]["customer"]["id"] == "cust-anna"


def test_the_terminal_client_needs_the_api_token(tmp_path: Path) -> None:
    result = run([str(PYTHON), "-m", "bot.shell", "--url", "http://127.0.0.1:9"],
                 clean_env(tmp_path / "var"), timeout=60)
    assert result.returncode == 2
    assert "SUPPORT_API_TOKEN" in result.stderr


# --------------------------------------------------- starts without tokens


def test_action_server_refuses_to_start_without_its_token(tmp_path: Path) -> None:
    result = run(_actions_args(free_port()), clean_env(tmp_path / "var"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "ACTION_SERVER_TOKEN" in result.stderr


@pytest.mark.model
def test_rasa_server_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "var", ACTION_SERVER_TOKEN=secrets.token_urlsafe(32))
    result = run(_serve_args(free_port()), env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "RASA_TOKEN" in result.stderr and "command line" in result.stderr

    env = clean_env(tmp_path / "var", RASA_TOKEN=secrets.token_urlsafe(32))
    result = run(_serve_args(free_port()), env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "ACTION_SERVER_TOKEN" in result.stderr


# ------------------------------------------------------------- production


@pytest.fixture(scope="module")
def leftovers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A var/ directory as ``make run`` leaves it (generated secrets, demo agents)."""
    var_dir = tmp_path_factory.mktemp("make-run") / "var"
    make_run_leftovers(var_dir)
    return var_dir


def _assert_names_every_demo_default(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "refusing to start in production" in result.stderr
    missing = [name for name in DEMO_DEFAULT_VARIABLES if name not in result.stderr]
    assert missing == [], result.stderr
    for username in ("demo-agent", "demo-admin"):
        assert username in result.stderr, result.stderr


def test_production_action_server_refuses_demo_defaults(leftovers: Path) -> None:
    port = free_port()
    env = clean_env(leftovers, SUPPORT_ENV="production", TWILIO_API_BASE="http://127.0.0.1:9")
    result = run(_actions_args(port), env)

    _assert_names_every_demo_default(result)
    with socket.socket() as client:  # it never listened
        assert client.connect_ex((HOST, port)) != 0


@pytest.mark.model
def test_production_rasa_server_refuses_demo_defaults(leftovers: Path) -> None:
    env = clean_env(leftovers, SUPPORT_ENV="production", TWILIO_API_BASE="http://127.0.0.1:9")
    result = run(_serve_args(free_port()), env)

    _assert_names_every_demo_default(result)
    assert "RASA_ENDPOINTS" in result.stderr  # the embedded endpoints.yml: SQLite tracker store


def test_demo_seeding_refuses_to_run_in_production(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    result = run([str(PYTHON), str(ROOT / "scripts" / "seed_agents.py")],
                 clean_env(var_dir, SUPPORT_ENV="production"), timeout=60)
    assert result.returncode == 2
    assert "production" in result.stderr
    assert not (var_dir / "support.db").exists()
    assert not (var_dir / "agent_passwords.txt").exists()


def test_run_script_refuses_production(tmp_path: Path) -> None:
    if (ROOT / ".env").exists():
        pytest.skip("a local .env could override SUPPORT_ENV for scripts/run.sh")
    result = run([str(ROOT / "scripts" / "run.sh")],
                 clean_env(tmp_path / "var", SUPPORT_ENV="production"), timeout=60)
    assert result.returncode == 2
    assert "deploy/Procfile.production" in result.stderr
    assert not (tmp_path / "var").exists()  # no secret generated


def production_env(var_dir: Path, db_url: str) -> Dict[str, str]:
    """A proper production environment: explicit random secrets, PostgreSQL, real origins."""
    return clean_env(
        var_dir,
        SUPPORT_ENV="production",
        RASA_TOKEN=secrets.token_urlsafe(32),
        ACTION_SERVER_TOKEN=secrets.token_urlsafe(32),
        SUPPORT_API_TOKEN=secrets.token_urlsafe(32),
        WIDGET_JWT_SECRET=secrets.token_urlsafe(48),
        WIDGET_JWT_AUDIENCE="northwind-support",
        WIDGET_JWT_ISSUER="https://shop.example.com",
        WIDGET_ALLOWED_ORIGINS="https://shop.example.com",
        SUPPORT_DB_URL=db_url,
        ORDERS_DB_URL=db_url,
        **_vapid_env(),
    )


def _vapid_env() -> Dict[str, str]:
    from bot.push.keys import generate_pair

    private, public = generate_pair()
    return {"VAPID_PRIVATE_KEY": private, "VAPID_PUBLIC_KEY": public,
            "VAPID_SUBJECT": "mailto:ops@shop.example.com"}


async def test_production_action_server_starts_on_a_proper_environment(
    tmp_path: Path, postgres_url: str
) -> None:
    env = production_env(tmp_path / "var", postgres_url)
    check = await asyncio.to_thread(run, [str(PYTHON), "-m", "bot.production"], env)
    assert check.returncode == 0, check.stdout + check.stderr

    port = free_port()
    log = tmp_path / "actions.log"
    process = _popen(_actions_args(port), env, log)
    session = requests.Session()
    session.trust_env = False
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert process.poll() is None, tail(log)
            try:
                if session.get(f"http://{HOST}:{port}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, tail(log)
            await asyncio.sleep(0.3)
        assert session.get(f"http://{HOST}:{port}/actions", timeout=10).status_code == 401
        listing = session.get(f"http://{HOST}:{port}/actions", timeout=10,
                              headers={"Authorization": f"Bearer {env['ACTION_SERVER_TOKEN']}"})
        assert listing.status_code == 200
        assert env["ACTION_SERVER_TOKEN"] not in _cmdline(process.pid)
        assert listening_addresses(process.pid) == [f"127.0.0.1:{port}"]
    finally:
        session.close()
        await asyncio.to_thread(_stop, process)
