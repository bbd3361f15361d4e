"""Run the REAL bot for tests: the action server and the Rasa server as subprocesses.

:class:`BotFactory` seeds the demo orders into fresh databases, starts the project's own
entry points ``python -m bot.action_server`` and ``python -m bot.serve`` (as production
does: loopback only, the action server behind ``ACTION_SERVER_TOKEN``, every secret in the
environment and none on a command line) on free ports, waits until ``GET /health``
(actions) and ``GET /status?token=...`` (Rasa) answer and returns a :class:`BotServers`.
Everything it started is stopped at the end of the session (SIGTERM to the process group,
SIGKILL after 15 s). The fixtures ``bot_factory`` and ``embedded_bot`` (``tests/conftest.py``) use it;
``tests/integration``, ``tests/widget`` and ``tests/browser`` share them.

Starting Rasa takes 20-30 s (loading TensorFlow and the model), hence session scopes.
"""
from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional

import pytest
import requests
import yaml

from bot.settings import get_settings

from tests.conftest import PG_DATABASE, PG_HOST, PG_PORT, _in_ci, _pg_connect

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
RASA = VENV_BIN / "rasa"
PYTHON = VENV_BIN / "python"
MODEL = ROOT / "models" / "support.tar.gz"
PRODUCTION_ENDPOINTS = ROOT / "deploy" / "endpoints.production.yml"

HOST = "127.0.0.1"
STARTUP_TIMEOUT = 120.0
STOP_TIMEOUT = 15.0
REQUEST_TIMEOUT = 60.0
LOG_TAIL_LINES = 60

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
REDIS_DB = 15
RABBITMQ_HOST = "127.0.0.1"
RABBITMQ_PORT = 5672
RABBITMQ_USER = "guest"
RABBITMQ_PASSWORD = "guest"
SERVICE_TIMEOUT = 2.0

#: The widget channel's HS256 secret in every bot the tests start (tokens: tests sign them).
WIDGET_TEST_SECRET = "test-widget-secret-0123456789abcdefghijklmnopqrstuvwxyz"
#: The origin the channel tests present (browser tests add their demo app's origin).
WIDGET_TEST_ORIGIN = "http://shop.test"
#: Widget settings of every bot the tests start: small limits, so tests reach them quickly.
WIDGET_TEST_ENV: Dict[str, str] = {
    "WIDGET_JWT_SECRET": WIDGET_TEST_SECRET,
    # every test token carries this aud and iss (tests/widget/conftest.py token_for)
    "WIDGET_JWT_AUDIENCE": "northwind-chat-test",
    "WIDGET_JWT_ISSUER": "https://shop.test",
    "WIDGET_JWT_MAX_TTL": "3600",
    "WIDGET_ALLOWED_ORIGINS": WIDGET_TEST_ORIGIN,
    "WIDGET_JWT_LEEWAY": "0",
    "WIDGET_AUTH_TIMEOUT": "2",
    "WIDGET_MAX_PREAUTH_PER_IP": "10",
    "WIDGET_FRAME_RATE": "5",
    "WIDGET_FRAME_BURST": "30",
    "WIDGET_RATE_MESSAGES": "12",
    "WIDGET_RATE_WINDOW": "60",
    "WIDGET_MAX_CONNECTIONS": "3",
    "WIDGET_MAX_MESSAGE_CHARS": "500",
    "WIDGET_MAX_FRAME_BYTES": "8192",
    "WIDGET_TOKEN_WARNING": "60",
    "WIDGET_TYPING_INTERVAL": "2",
    "ATTACHMENT_MAX_BYTES": "1048576",  # 1 MB: the oversized upload test stays small
}

#: The metadata an app would send with every message of Anna's conversation.
ANNA_METADATA: Dict[str, Any] = {
    "customer": {
        "id": "cust-anna",
        "name": "Anna Schmidt",
        "email": "anna@example.com",
        "timezone": "Europe/Berlin",
    },
    "context": {
        "app_version": "5.2.0",
        "device": "iPhone 15",
        "screen": "orders",
        # English in Germany: these tests read the English texts (a German app, de-DE, gets
        # them in German: tests/conversations/languages.yml)
        "locale": "en-DE",
    },
}


# ------------------------------------------------------------------- helpers


def unavailable(message: str) -> None:
    """Skip the test because a service is missing, or fail when ``CI=true``."""
    if _in_ci():
        pytest.fail(f"{message} (required because CI=true)", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def new_conversation_id(prefix: str = "it") -> str:
    """A conversation (sender) id no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file (or a note that it is missing)."""
    try:
        content = path.read_text(errors="replace").splitlines()
    except OSError as error:
        return f"<cannot read {path}: {error}>"
    return "\n".join(content[-lines:])


def bot_texts(replies: List[Dict[str, Any]]) -> List[str]:
    """The texts of a REST channel reply (buttons and custom payloads dropped)."""
    return [reply["text"] for reply in replies if reply.get("text")]


def _popen(args: List[str], env: Mapping[str, str], log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"\n===== {time.strftime('%H:%M:%S')} $ {' '.join(args)}\n".encode())
        out.flush()
        # A new session (process group): teardown signals the whole group, which is
        # exactly what this fixture started and nothing else.
        return subprocess.Popen(
            args,
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(process: Optional[subprocess.Popen]) -> None:
    """SIGTERM the process group, SIGKILL it if still alive after STOP_TIMEOUT."""
    if process is None or process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# -------------------------------------------------------------------- servers


@dataclass
class BotServers:
    """A running action server and Rasa server, and where their data lives."""

    name: str
    rasa_url: str
    actions_url: str
    actions_port: int
    token: str
    support_db_url: str
    orders_db_url: str
    endpoints: Path
    var_dir: Path
    rasa_log: Path
    actions_log: Path
    env: Dict[str, str]
    #: ``ACTION_SERVER_TOKEN``: the secret the Rasa server sends to the action server.
    action_token: str = ""
    #: ``SUPPORT_API_TOKEN``: the bearer token of the API channel (/webhooks/api/webhook).
    api_token: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)
    _rasa: Optional[subprocess.Popen] = field(default=None, repr=False)
    _actions: Optional[subprocess.Popen] = field(default=None, repr=False)
    _http: requests.Session = field(default_factory=requests.Session, repr=False)

    def __post_init__(self) -> None:
        self._http.trust_env = False  # never send 127.0.0.1 through an HTTP proxy

    # -- HTTP

    @property
    def webhook_url(self) -> str:
        """The authenticated server-to-server channel (bot/channels/api.py)."""
        return f"{self.rasa_url}/webhooks/api/webhook"

    def post_message(
        self, sender: str, message: str, metadata: Optional[Dict[str, Any]] = None,
        token: Optional[str] = None, payload: Optional[str] = None,
    ) -> requests.Response:
        """POST a message (or a quick reply's ``payload``) to the API channel, with this
        bot's API token unless ``token`` is given; return the raw response."""
        body: Dict[str, Any] = {"sender": sender, "message": message}
        if metadata is not None:
            body["metadata"] = metadata
        if payload is not None:
            body["payload"] = payload
        token = self.env["SUPPORT_API_TOKEN"] if token is None else token
        return self._http.post(self.webhook_url, json=body, timeout=REQUEST_TIMEOUT,
                               headers={"Authorization": f"Bearer {token}"})

    def send(
        self, sender: str, message: str, metadata: Optional[Dict[str, Any]] = None,
        payload: Optional[str] = None,
    ) -> List[Dict[str, Any]]:
        """Send a message through the API channel; return the bot's replies."""
        response = self.post_message(sender, message, metadata, payload=payload)
        assert response.status_code == 200, (
            f"API channel answered {response.status_code}: {response.text[:500]}\n"
            f"{self.logs()}"
        )
        return response.json()

    def get(self, path: str, token: Optional[str] = None, **kwargs: Any) -> requests.Response:
        """GET a path of the Rasa HTTP API, with ``?token=`` if given."""
        params = dict(kwargs.pop("params", {}) or {})
        if token is not None:
            params["token"] = token
        return self._http.get(
            f"{self.rasa_url}{path}", params=params, timeout=REQUEST_TIMEOUT, **kwargs
        )

    def tracker(self, sender: str) -> Dict[str, Any]:
        """The conversation's tracker from the HTTP API (all events)."""
        response = self.get(
            f"/conversations/{sender}/tracker", self.token, params={"include_events": "ALL"}
        )
        assert response.status_code == 200, response.text[:500]
        return response.json()

    # -- processes

    def logs(self) -> str:
        """The tails of both logs, for assertion messages."""
        return (
            f"--- action server log ({self.actions_log}) ---\n{tail(self.actions_log)}\n"
            f"--- rasa server log ({self.rasa_log}) ---\n{tail(self.rasa_log)}"
        )

    def start_actions(self) -> None:
        """(Re)start the action server on its port and wait for ``/health``."""
        if self._actions is not None and self._actions.poll() is None:
            return
        self._start_actions_process()
        self._wait(need_rasa=False)

    def _start_actions_process(self) -> None:
        self._actions = _popen(
            [str(PYTHON), "-m", "bot.action_server", "--port", str(self.actions_port)],
            self.env,
            self.actions_log,
        )

    def stop_actions(self) -> None:
        """Stop the action server (the Rasa server keeps running)."""
        _stop(self._actions)

    def start_rasa(self) -> None:
        """Start the Rasa server (``bot.serve``: the token in ``env``, loopback only)."""
        self._rasa = _popen(
            [
                str(PYTHON), "-m", "bot.serve",
                "--model", str(MODEL),
                "--port", self.rasa_url.rsplit(":", 1)[1],
                "--credentials", str(ROOT / "credentials.yml"),
                "--endpoints", str(self.endpoints),
            ],
            self.env,
            self.rasa_log,
        )

    @property
    def rasa_pid(self) -> Optional[int]:
        """The Rasa server's process id (None when not started)."""
        return self._rasa.pid if self._rasa is not None else None

    @property
    def actions_pid(self) -> Optional[int]:
        """The action server's process id (None when not started)."""
        return self._actions.pid if self._actions is not None else None

    def restart_rasa(self) -> None:
        """Stop the Rasa server and start it again on the same port; wait until it answers."""
        _stop(self._rasa)
        self.start_rasa()
        self._wait()

    def stop(self) -> None:
        """Stop both servers (idempotent)."""
        _stop(self._rasa)
        _stop(self._actions)
        self._http.close()

    def _ready(self, url: str, **params: str) -> bool:
        try:
            return self._http.get(url, params=params, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def _wait(self, need_rasa: bool = True, timeout: float = STARTUP_TIMEOUT) -> None:
        """Wait until the servers answer; fail early when one of them exits."""
        deadline = time.monotonic() + timeout
        actions_up = rasa_up = False
        while True:
            for label, process in (("action server", self._actions), ("Rasa server", self._rasa)):
                if process is not None and process.poll() is not None and (
                    label == "action server" or need_rasa
                ):
                    pytest.fail(
                        f"[{self.name}] the {label} exited with status {process.returncode} "
                        f"during start-up.\n{self.logs()}",
                        pytrace=False,
                    )
            actions_up = actions_up or self._ready(f"{self.actions_url}/health")
            if need_rasa:
                rasa_up = rasa_up or self._ready(f"{self.rasa_url}/status", token=self.token)
            if actions_up and (rasa_up or not need_rasa):
                return
            if time.monotonic() > deadline:
                pytest.fail(
                    f"[{self.name}] not ready after {timeout:.0f} s (action server "
                    f"{'up' if actions_up else 'DOWN'}, Rasa server "
                    f"{'up' if rasa_up else 'DOWN'}).\n{self.logs()}",
                    pytrace=False,
                )
            time.sleep(0.5)


class BotFactory:
    """Starts bots for the session and stops them all at its end."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_path_factory
        self._running: List[BotServers] = []

    def start(
        self,
        name: str,
        *,
        endpoints: Optional[Path] = None,
        support_db_url: Optional[str] = None,
        orders_db_url: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
    ) -> BotServers:
        """Seed the databases, start both servers and wait until they answer.

        Args:
            name: Label for directories and messages.
            endpoints: Endpoints file for the Rasa server; default: the project's
                ``endpoints.yml`` with the action endpoint at the new action server and
                the SQLite tracker store in the temporary directory.
            support_db_url / orders_db_url: Database URLs (default: SQLite files in the
                temporary ``SUPPORT_VAR_DIR``).
            env: Extra environment variables for both servers (and the seeding).
        """
        if not MODEL.is_file():
            pytest.fail(f"No trained model at {MODEL}: run `make train` first.", pytrace=False)
        base = self._tmp.mktemp(name)
        var_dir = base / "var"
        var_dir.mkdir()
        # like `make run`: a VAPID pair in var/, so agent push is on (tests/push)
        from bot.push.keys import main as vapid_keys

        vapid_keys(["generate", "--dir", str(var_dir)])
        actions_port, rasa_port = free_port(), free_port()
        while rasa_port == actions_port:
            rasa_port = free_port()
        actions_url = f"http://{HOST}:{actions_port}"

        support_db_url = support_db_url or f"sqlite:///{var_dir / 'support.db'}"
        orders_db_url = orders_db_url or f"sqlite:///{var_dir / 'orders.db'}"
        rasa_token = uuid.uuid4().hex
        action_token = secrets.token_urlsafe(32)
        api_token = secrets.token_urlsafe(32)
        inherited = {
            key: value for key, value in os.environ.items()
            # The bots run on the defaults (loopback, development) unless `env` says otherwise.
            if key not in ("SUPPORT_ENV", "RASA_INTERFACE", "ACTIONS_HOST")
            and not key.endswith(("_TOKEN_FILE", "_SECRET_FILE"))
        }
        process_env = {
            **inherited,
            "PYTHONPATH": str(ROOT),
            "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "RASA_TELEMETRY_ENABLED": "false",
            "SUPPORT_VAR_DIR": str(var_dir),
            # The embedding model stays where `make setup` put it (it is read-only data).
            "EMBEDDING_MODEL_DIR": str(get_settings().embedding_model_dir),
            "SUPPORT_DB_URL": support_db_url,
            "ORDERS_DB_URL": orders_db_url,
            "ACTION_SERVER_URL": f"{actions_url}/webhook",
            # Secrets through the environment only, never on a command line.
            "RASA_TOKEN": rasa_token,
            "ACTION_SERVER_TOKEN": action_token,
            "SUPPORT_API_TOKEN": api_token,
            **WIDGET_TEST_ENV,
            "PUSH_BACKOFF_BASE": "0.3",  # tests/push: a 503 is retried at once
            **(env or {}),
        }

        if endpoints is None:
            endpoints = base / "endpoints.yml"
            config = yaml.safe_load((ROOT / "endpoints.yml").read_text())
            config["action_endpoint"]["url"] = f"{actions_url}/webhook"
            config["tracker_store"]["db"] = str(var_dir / "rasa_tracker.db")
            endpoints.write_text(yaml.safe_dump(config, sort_keys=False))

        seed = subprocess.run(
            [str(PYTHON), str(ROOT / "scripts" / "seed_orders.py")],
            cwd=ROOT,
            env=process_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if seed.returncode != 0:
            pytest.fail(
                f"[{name}] seeding failed ({seed.returncode}):\n{seed.stdout}\n{seed.stderr}",
                pytrace=False,
            )

        bot = BotServers(
            name=name,
            rasa_url=f"http://{HOST}:{rasa_port}",
            actions_url=actions_url,
            actions_port=actions_port,
            token=process_env["RASA_TOKEN"],
            support_db_url=support_db_url,
            orders_db_url=orders_db_url,
            endpoints=endpoints,
            var_dir=var_dir,
            rasa_log=base / "rasa.log",
            actions_log=base / "actions.log",
            env=process_env,
            action_token=process_env["ACTION_SERVER_TOKEN"],
            api_token=process_env["SUPPORT_API_TOKEN"],
        )
        self._running.append(bot)
        started = time.monotonic()
        bot._start_actions_process()
        bot.start_rasa()
        try:
            bot._wait()
        except BaseException:
            bot.stop()
            raise
        bot.extra["startup_seconds"] = round(time.monotonic() - started, 1)
        sys.stderr.write(f"\n[{name}] servers up in {bot.extra['startup_seconds']} s\n")
        return bot

    def stop_all(self) -> None:
        for bot in self._running:
            bot.stop()
        self._running.clear()
