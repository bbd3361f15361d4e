"""Fault injection for the widget channel: a bot of its own, behind a controllable action proxy.

:class:`ActionProxy` sits between the Rasa server and the real action server (the endpoints
file points Rasa at the proxy): it forwards calls, or holds them (a turn that is "in the
middle" for as long as the test wants), or delays them. The ``fault_bot`` fixture starts a
bot with short turn leases, back-offs, drain and send timeouts, so faults show in seconds.
"""
from __future__ import annotations

import http.server
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
import requests
import yaml

from tests.servers import HOST, ROOT, free_port

#: Settings of the fault bot: failures, retries, leases and drains take seconds, not minutes.
FAULT_ENV: Dict[str, str] = {
    "WIDGET_TURN_LEASE": "4",
    "WIDGET_TURN_ATTEMPTS": "3",
    "WIDGET_TURN_BACKOFF": "0.5",
    "WIDGET_DRAIN_SECONDS": "8",
    "WIDGET_SEND_TIMEOUT": "2",
    "WIDGET_SEND_QUEUE": "64",
    "WIDGET_RATE_MESSAGES": "60",
}


class ActionProxy:
    """An HTTP proxy for the action server's ``/webhook`` that tests can hold or delay.

    Modes: ``pass`` (forward), ``hold`` (keep the call open until :meth:`release` or 120 s,
    then answer 503), ``delay`` (wait ``delay`` seconds, then forward).
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.target: Optional[str] = None
        self.mode = "pass"
        self.delay = 0.0
        self.calls: List[str] = []
        self.called = threading.Event()
        self._released = threading.Event()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.calls.append(proxy.mode)
                proxy.called.set()
                if proxy.mode == "hold":
                    proxy._released.wait(120)
                    self._answer(503, b'{"error": "held"}')
                    return
                if proxy.mode == "delay":
                    time.sleep(proxy.delay)
                try:
                    upstream = requests.post(
                        proxy.target or "", data=body, timeout=60,
                        headers={k: v for k, v in self.headers.items()
                                 if k.lower() in ("authorization", "content-type")},
                    )
                    self._answer(upstream.status_code, upstream.content)
                except Exception:  # noqa: BLE001 - the action server is down
                    self._answer(502, b'{"error": "action server down"}')

            def _answer(self, status: int, body: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # Rasa died meanwhile
                    pass

        self._server = http.server.ThreadingHTTPServer((HOST, self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def set(self, mode: str, delay: float = 0.0) -> None:
        """Switch mode; calls are counted afresh."""
        self.mode, self.delay = mode, delay
        self.calls.clear()
        self.called.clear()
        self._released.clear()

    def release(self) -> None:
        """Let held calls go (they answer 503)."""
        self._released.set()

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def action_proxy() -> Iterator[ActionProxy]:
    proxy = ActionProxy()
    yield proxy
    proxy.close()


@pytest.fixture(scope="module")
def fault_bot(bot_factory: Any, action_proxy: ActionProxy,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A bot whose Rasa server calls its actions through ``action_proxy``."""
    base = tmp_path_factory.mktemp("fault-endpoints")
    endpoints = base / "endpoints.yml"
    config = yaml.safe_load((ROOT / "endpoints.yml").read_text())
    config["action_endpoint"]["url"] = f"{action_proxy.url}/webhook"
    config["tracker_store"]["db"] = str(base / "rasa_tracker.db")
    endpoints.write_text(yaml.safe_dump(config, sort_keys=False))
    bot = bot_factory.start("faults", endpoints=endpoints, env=FAULT_ENV)
    action_proxy.target = f"{bot.actions_url}/webhook"
    yield bot
    bot.stop()


def support_rows(bot: Any, conversation_id: str) -> List[Dict[str, Any]]:
    """The stored messages of a conversation (with the turn columns)."""
    path = bot.support_db_url.replace("sqlite:///", "")
    with sqlite3.connect(path, timeout=30) as connection:
        connection.row_factory = sqlite3.Row
        return [dict(row) for row in connection.execute(
            "SELECT m.id, m.client_id, m.sender, m.text, m.status, m.attempts, m.reply_to, "
            "m.turn_error FROM chat_messages m JOIN conversations c ON c.id = m.conversation_pk "
            "WHERE c.conversation_id = ? ORDER BY m.id", (conversation_id,))]


def support_db_path(bot: Any) -> Path:
    return Path(bot.support_db_url.replace("sqlite:///", ""))
