"""Soak benchmark with random fault injection (issue 13): nothing acknowledged is lost or doubled.

"10,000 messages over 200 concurrent conversations with faults injected at random, printing
sent / stored / answered / duplicated / lost (goal: 0 lost, 0 duplicated) and latency p50/p95
during and after faults."

What it runs: the real product, embedded configuration (SQLite support, orders and tracker
databases in a temp dir, as ``make run`` and ``bench_widget.py``), with the fault-friendly
settings of ``tests/faults/conftest.py`` (``FAULT_ENV``: 4 s turn lease, 3 attempts 0.5 s apart,
8 s drain, 2 s send timeout), started by this script as two process groups it can kill:
``python -m bot.action_server`` and ``python -m bot.serve`` (model ``models/support.tar.gz``).

Customers: ``--conversations`` (200) logged-in customers, each a copy of one of the three demo
customers (``soak-anna-007`` has copies of Anna's orders under its own six-digit numbers,
``5007xx``; the bench adds them to the orders database after ``scripts/seed_orders.py``), each
with its own signed token and its own widget WebSocket. ``--messages`` (10,000) in all, split
evenly; each conversation sends one after another like a customer: a realistic message (FAQ
questions, tracking one of *its* orders by number, greetings/thanks; nothing that asks for a
person, which would pause the bot), waits for the answer (at most ``--reply-timeout``), thinks
(``--think``, 15-45 s), sends the next. The client behaves like ``bot/widget/widget.js``:
every message has a unique ``client_id`` and sits in an outbox until acknowledged; after every
(re)connect it says ``hello`` with ``after`` = the newest id it has, resends the whole outbox after
``welcome``, treats a replayed own message as acknowledged, resends after ``not_stored`` /
``rate_limited`` (``retry_after``), sends ``delivered`` and ``read``, pings every 20 s and
declares the socket dead after 50 s without a frame, reconnects with exponential back-off
(capped at ``--backoff-max``, the widget's cap is 30 s). Differences: no ``typing`` frames, and
on close 4008 it retries instead of giving up.

Faults (random order and intervals, ``--seed``), logged with their time: ``kill9`` (SIGKILL to
Rasa's process group, restart), ``sigterm`` (SIGTERM: Rasa drains, then restart), ``actions``
(SIGKILL the action server, restart it after a few seconds), ``dblock`` (another connection holds
``BEGIN EXCLUSIVE`` on the support database for a few seconds, below its 30 s busy timeout),
``disconnect`` (a quarter of the connected clients lose their socket abruptly, without a close
frame: half at once, half 0-150 ms after their next ``message`` frame, around its ``ack``).
Faults are drawn in shuffled rounds of ``--fault-kinds``, ``--fault-gap`` seconds apart (each
fault's recovery, e.g. Rasa answering ``/status`` again, is awaited first); they start when
``--before`` of the messages are written and stop when ``1 - --after`` are (or after
``--faults``). Latency phases: *before* (written and answered before the first fault), *during*
(written before the last fault had recovered), *after* (written later).

At the end (after a settle period and a final reconnect of every client, like reopening the
app), from the support database (``chat_messages``: customer rows by ``client_id``; bot and
system rows by ``reply_to``) and from the frames the clients received:

* sent: unique client ids transmitted; acked: those with an ``ack``; stored: customer rows;
* answered: a bot reply stored (and whether the client got it); failed: marked ``failed``
  with the notice (allowed, counted);
* duplicated: a client id stored twice, a message answered twice (the same reply twice, more
  than one notice, or both a reply and a failure);
* lost: acknowledged but not stored; stored but neither answered nor failed; answered but the
  reply never reached the client, even after the final reconnect;
* latency: writing the message -> first bot reply frame (via ``reply_to``), per phase.

Exit status 1 when lost > 0 or duplicated > 0 (3 when the servers did not start). Writes
``results/soak-<date>.json`` (faults, counts, latencies, every anomaly with its rows and
frames). The temp dir (server logs, databases) is kept when something was lost or duplicated,
or with ``--keep``.

``.venv/bin/python bench/bench_soak.py [--quick] [--seed 13] [--conversations 200]
[--messages 10000]``; ``--quick``: 20 conversations, 400 messages, 3 faults, one of them a Rasa
crash, think 0.5-2 s (about 2 minutes; a check of the bench, not a result).
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import secrets
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import aiohttp
import websockets
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import free_port, log, percentile  # noqa: E402

from bot.channels.auth import issue_token  # noqa: E402
from bot.orders import DEMO_CUSTOMERS, DEMO_ORDER_NUMBERS  # noqa: E402

MODEL = ROOT / "models" / "support.tar.gz"
PYTHON = ROOT / ".venv" / "bin" / "python"
HOST = "127.0.0.1"
SECRET = "bench-soak-secret-" + "x" * 32
TOKEN_TTL = 3600
STARTUP_TIMEOUT = 300.0
WELCOME_TIMEOUT = 20.0   # the widget: 15 s
PING_EVERY = 20.0        # the widget's
DEAD_AFTER = 50.0        # the widget's

#: The fault tests' settings (tests/faults/conftest.py FAULT_ENV: short leases, back-offs,
#: drains and send timeouts), and limits a benchmark must not hit by design.
from tests.faults.conftest import FAULT_ENV  # noqa: E402
LIMITS_ENV: Dict[str, str] = {
    "WIDGET_FRAME_RATE": "1000",
    "WIDGET_FRAME_BURST": "1000",
    "WIDGET_MAX_CONNECTIONS": "10",
    "WIDGET_MAX_PREAUTH_PER_IP": "2000",  # every client is 127.0.0.1
    "WIDGET_AUTH_TIMEOUT": "30",
}

FAQ = [
    "how long does delivery to austria take?",
    "can i pay with paypal?",
    "do you do cash on delivery",
    "i forgot my password and cant log in",
    "how do i delete my account",
    "where can i download the invoice for my order?",
    "i need an invoice with my company's VAT ID on it",
    "whats your refund policy",
    "how can i change the email on my account",
    "how much is shipping to germany?",
    "do i have to pay a fee if i cancel?",
    "too many emails from you, how do i unsubscribe from the newsletter",
    "i cant sign up, it says my email is already registered",
    "how do i switch to my other account",
    "what are your customer service hours",
    "how do i place an order?",
    "how long does delivery take?",
    "which payment methods do you accept",
]
TRACK = [
    "where is my order {n}?",
    "hi there, wheres my parcel {n}",
    "any update on {n}?",
    "status of order {n}?",
    "can you check order {n} for me",
    "wher is my oder {n}",
    "has order {n} shipped yet?",
]
SMALL_TALK = ["hi", "hello", "hey there", "good morning", "thanks a lot", "thank you!", "bye"]
KINDS = (("faq", 0.5), ("track", 0.3), ("small", 0.2))
FAULT_KINDS = ("kill9", "sigterm", "actions", "dblock", "disconnect")








# ------------------------------------------------------------------- customers


@dataclass
class Customer:
    user_id: str
    base: str                 # the demo customer it copies
    orders: List[str]
    profile: Dict[str, str]


def make_customers(count: int) -> List[Customer]:
    bases = sorted(DEMO_CUSTOMERS)
    customers = []
    for i in range(count):
        base = bases[i % len(bases)]
        short = base.split("-", 1)[1]
        orders = [f"5{i:03d}{j:02d}" for j in range(len(DEMO_ORDER_NUMBERS[base]))]
        info = DEMO_CUSTOMERS[base]
        profile = {"name": info["name"], "email": f"soak{i:03d}.{info['email']}",
                   "timezone": info["timezone"], "locale": info["locale"]}
        customers.append(Customer(f"soak-{short}-{i:03d}", base, orders, profile))
    return customers


def clone_orders(orders_db: Path, customers: List[Customer]) -> int:
    """Copy the demo customers' orders (with their items) to every bench customer."""
    connection = sqlite3.connect(orders_db, timeout=30)
    try:
        columns = [r[1] for r in connection.execute("PRAGMA table_info(orders)")]
        rest = [c for c in columns if c not in ("number", "customer_id")]
        item_columns = [r[1] for r in connection.execute("PRAGMA table_info(order_items)")
                        if r[1] not in ("id", "order_number")]
        copied = 0
        with connection:
            for customer in customers:
                for number, source in zip(customer.orders, DEMO_ORDER_NUMBERS[customer.base]):
                    connection.execute(
                        f"INSERT OR IGNORE INTO orders (number, customer_id, {', '.join(rest)}) "
                        f"SELECT ?, ?, {', '.join(rest)} FROM orders WHERE number = ?",
                        (number, customer.user_id, source))
                    connection.execute(
                        f"INSERT INTO order_items (order_number, {', '.join(item_columns)}) "
                        f"SELECT ?, {', '.join(item_columns)} FROM order_items "
                        f"WHERE order_number = ? AND NOT EXISTS "
                        f"(SELECT 1 FROM order_items WHERE order_number = ?)",
                        (number, source, number))
                    copied += 1
        return copied
    finally:
        connection.close()


def make_plan(customer: Customer, count: int, rng: random.Random) -> List[Tuple[str, str]]:
    plan = []
    for n in range(count):
        if n == 0:
            kind = "small"
            text = rng.choice(SMALL_TALK[:4])
        else:
            kind = rng.choices([k for k, _ in KINDS], [w for _, w in KINDS])[0]
            if kind == "faq":
                text = rng.choice(FAQ)
            elif kind == "track":
                text = rng.choice(TRACK).format(n=rng.choice(customer.orders))
            else:
                text = rng.choice(SMALL_TALK)
        plan.append((kind, text))
    return plan


# --------------------------------------------------------------------- servers


class Servers:
    """The action server and Rasa as process groups this bench starts, kills and restarts."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.var = work / "var"
        self.actions_port, self.rasa_port = free_port(), free_port()
        while self.rasa_port == self.actions_port:
            self.rasa_port = free_port()
        self.rasa_url = f"http://{HOST}:{self.rasa_port}"
        self.ws_url = f"ws://{HOST}:{self.rasa_port}/webhooks/widget/ws"
        self.actions_url = f"http://{HOST}:{self.actions_port}"
        self.support_db = self.var / "support.db"
        self.orders_db = self.var / "orders.db"
        self.tracker_db = self.var / "rasa_tracker.db"
        self.rasa: Optional[asyncio.subprocess.Process] = None
        self.actions: Optional[asyncio.subprocess.Process] = None
        self.rasa_starts = 0
        self.actions_starts = 0
        self.env: Dict[str, str] = {}
        self.endpoints = work / "endpoints.yml"
        self._logs: Dict[str, Any] = {}

    def prepare(self, customers: List[Customer]) -> None:
        """Config, seeded databases, bench customers' orders (before the event loop)."""
        self.var.mkdir(parents=True)
        endpoints = yaml.safe_load((ROOT / "endpoints.yml").read_text())
        endpoints["action_endpoint"]["url"] = f"{self.actions_url}/webhook"
        endpoints["tracker_store"]["db"] = str(self.tracker_db)
        self.endpoints.write_text(yaml.safe_dump(endpoints, sort_keys=False))
        inherited = {
            key: value for key, value in os.environ.items()
            if key not in ("SUPPORT_ENV", "RASA_INTERFACE", "ACTIONS_HOST")
            and not key.startswith("WIDGET_")
            and not key.endswith(("_TOKEN_FILE", "_SECRET_FILE"))
        }
        self.env = {
            **inherited,
            "PYTHONPATH": str(ROOT),
            "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "RASA_TELEMETRY_ENABLED": "false",
            "SUPPORT_VAR_DIR": str(self.var),
            "SUPPORT_DB_URL": f"sqlite:///{self.support_db}",
            "ORDERS_DB_URL": f"sqlite:///{self.orders_db}",
            "ACTION_SERVER_URL": f"{self.actions_url}/webhook",
            "WIDGET_JWT_SECRET": SECRET,
            "RASA_TOKEN": secrets.token_urlsafe(32),
            "ACTION_SERVER_TOKEN": secrets.token_urlsafe(32),
            "SUPPORT_API_TOKEN": secrets.token_urlsafe(32),
            "EMBEDDING_MODEL_DIR": os.environ.get(
                "EMBEDDING_MODEL_DIR", str(ROOT / "var" / "embeddings" / "all-MiniLM-L6-v2")),
            **FAULT_ENV,
            **LIMITS_ENV,
        }
        subprocess.run([str(PYTHON), "scripts/seed_orders.py"], cwd=ROOT, env=self.env,
                       check=True, capture_output=True, timeout=300)
        clone_orders(self.orders_db, customers)
        for name in ("rasa", "actions"):
            self._logs[name] = open(self.work / f"{name}.log", "ab")

    def log_path(self, name: str) -> Path:
        return self.work / f"{name}.log"

    async def _spawn(self, name: str, args: List[str]) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *args, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=self._logs[name],
            stderr=subprocess.STDOUT, start_new_session=True)

    async def start_actions(self) -> None:
        self.actions = await self._spawn("actions", [
            str(PYTHON), "-m", "bot.action_server", "--port", str(self.actions_port)])
        self.actions_starts += 1

    async def start_rasa(self) -> None:
        self.rasa = await self._spawn("rasa", [
            str(PYTHON), "-m", "bot.serve", "--model", str(MODEL), "--port", str(self.rasa_port),
            "--credentials", str(ROOT / "credentials.yml"), "--endpoints", str(self.endpoints)])
        self.rasa_starts += 1

    async def wait_ready(self, http: aiohttp.ClientSession, rasa: bool = True,
                         actions: bool = True, timeout: float = STARTUP_TIMEOUT) -> float:
        started = time.monotonic()
        checks = []
        if actions:
            checks.append(("action server", self.actions, f"{self.actions_url}/health", {}))
        if rasa:
            checks.append(("Rasa", self.rasa, f"{self.rasa_url}/status",
                           {"token": self.env["RASA_TOKEN"]}))
        for label, process, url, params in checks:
            while True:
                if process is None or process.returncode is not None:
                    raise RuntimeError(f"the {label} exited during start-up; see {self.work}")
                try:
                    async with http.get(url, params=params,
                                        timeout=aiohttp.ClientTimeout(total=5)) as response:
                        if response.status == 200:
                            break
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    pass
                if time.monotonic() - started > timeout:
                    raise RuntimeError(f"the {label} is not up after {timeout:.0f} s; see {self.work}")
                await asyncio.sleep(0.5)
        return time.monotonic() - started

    @staticmethod
    async def signal_group(process: Optional[asyncio.subprocess.Process], sig: int,
                           wait: float) -> Optional[float]:
        """Signal the process group; wait for the leader's exit (SIGKILL after ``wait``)."""
        if process is None or process.returncode is not None:
            return None
        started = time.monotonic()
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            await asyncio.wait_for(process.wait(), wait)
        except asyncio.TimeoutError:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await process.wait()
        took = time.monotonic() - started
        try:  # children left in the group (none expected)
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return took

    def stop_now(self) -> None:
        """Synchronous last-resort stop (after the event loop, or on an error)."""
        for process in (self.rasa, self.actions):
            if process is None or process.returncode is not None:
                continue
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    break
                deadline = time.monotonic() + (15 if sig == signal.SIGTERM else 5)
                alive = True
                while time.monotonic() < deadline:
                    try:
                        os.killpg(process.pid, 0)
                    except ProcessLookupError:
                        alive = False
                        break
                    time.sleep(0.2)
                if not alive:
                    break
        for out in self._logs.values():
            out.close()


# --------------------------------------------------------------------- clients


@dataclass
class Msg:
    conv: int
    cid: str
    kind: str
    text: str
    written: float                       # monotonic, when the customer "pressed send"
    first_sent: Optional[float] = None   # first transmission
    transmits: int = 0
    acks: int = 0
    dup_acks: int = 0
    acked_at: Optional[float] = None
    ack_ids: List[int] = field(default_factory=list)
    seen_replayed: Optional[int] = None  # id from a replayed own message (ack lost)
    failed_frame_at: Optional[float] = None
    read_at: Optional[float] = None
    timed_out: bool = False
    errors: collections.Counter = field(default_factory=collections.Counter)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def message_id(self) -> Optional[int]:
        return self.ack_ids[0] if self.ack_ids else self.seen_replayed


class Client:
    """One customer's widget: outbox, resume, acks, like bot/widget/widget.js."""

    def __init__(self, bench: "Bench", index: int, customer: Customer,
                 plan: List[Tuple[str, str]]) -> None:
        self.bench = bench
        self.index = index
        self.customer = customer
        self.plan = plan
        self.rng = random.Random(bench.args.seed * 100003 + index)
        self.msgs: Dict[str, Msg] = {}
        self.outbox: List[Msg] = []
        self.last_id: Optional[int] = None
        self.received: Dict[int, float] = {}          # message id -> first frame time
        self.received_count: collections.Counter = collections.Counter()
        self.frames_log: collections.deque = collections.deque(maxlen=60)
        self.ws: Any = None
        self.welcomed = False
        self.stop = False
        self.abort_after_send = False
        self.connects = 0
        self.closes: collections.Counter = collections.Counter()
        self.pending_delivered: List[int] = []
        self.read_sent = 0
        self.latest: Optional[Msg] = None
        self._token = ""
        self._token_exp = 0.0
        self._timers: List[asyncio.Task] = []

    # -- token

    def token(self) -> str:
        if time.time() > self._token_exp - 300:
            self._token = issue_token(self.customer.user_id, SECRET, profile=self.customer.profile,
                                      ttl_seconds=TOKEN_TTL)
            self._token_exp = time.time() + TOKEN_TTL
        return self._token

    # -- script (the customer)

    async def run_script(self) -> None:
        args = self.bench.args
        for n, (kind, text) in enumerate(self.plan):
            cid = f"c{self.index:03d}-{n:04d}-{uuid.uuid4().hex[:8]}"
            msg = Msg(self.index, cid, kind, text, time.monotonic())
            self.msgs[cid] = msg
            self.outbox.append(msg)
            self.latest = msg
            self.bench.written += 1
            if self.welcomed:
                await self.transmit(msg)
            try:
                await asyncio.wait_for(msg.done.wait(), args.reply_timeout)
            except asyncio.TimeoutError:
                msg.timed_out = True
            await asyncio.sleep(self.rng.uniform(*args.think))

    # -- connection (the widget)

    async def connection_loop(self) -> None:
        attempt = 0
        while not self.stop:
            try:
                ws = await websockets.connect(
                    self.bench.servers.ws_url, open_timeout=WELCOME_TIMEOUT, ping_interval=None,
                    close_timeout=2, max_size=2 ** 22, max_queue=None)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - refused, reset, timed out
                self.closes[f"connect:{type(error).__name__}"] += 1
            else:
                self.connects += 1
                self.ws = ws
                try:
                    if await self._session(ws):
                        attempt = 0
                except asyncio.CancelledError:
                    raise
                except websockets.ConnectionClosed as closed:
                    code = closed.rcvd.code if closed.rcvd else 1006
                    self.closes[str(code)] += 1
                except Exception as error:  # noqa: BLE001 - counted, then reconnect
                    self.closes[type(error).__name__] += 1
                finally:
                    self.welcomed = False
                    self.ws = None
                    for timer in self._timers:
                        timer.cancel()
                    self._timers.clear()
                    if ws.transport is not None:
                        ws.transport.abort()
            if self.stop:
                break
            base = min(self.bench.args.backoff_max, 1.0 * 2 ** attempt)
            attempt += 1
            await asyncio.sleep(base / 2 + self.rng.random() * base / 2)

    async def _session(self, ws: Any) -> bool:
        """hello, welcome, then frames until the socket closes. True when welcomed."""
        await ws.send(json.dumps({"type": "hello", "token": self.token(), "after": self.last_id,
                                  "context": {"screen": "orders", "app_version": "soak"}}))
        welcome = None
        hello_at = time.monotonic()
        deadline = hello_at + WELCOME_TIMEOUT
        while welcome is None:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise asyncio.TimeoutError
                frame = json.loads(await asyncio.wait_for(ws.recv(), remaining))
            except asyncio.TimeoutError:  # like the widget: a stuck connection, reconnect
                self.closes["welcome_timeout"] += 1
                self.bench.welcome_timeouts.append(round(hello_at - self.bench.t0, 1))
                return False
            if frame.get("type") == "welcome":
                welcome = frame
            elif frame.get("type") == "error":
                self.closes[f"error:{frame.get('code')}"] += 1
        self.bench.welcome_waits.append(time.monotonic() - hello_at)
        self.welcomed = True
        pinger = asyncio.get_running_loop().create_task(self._pinger(ws))
        try:
            for msg in list(self.outbox):  # the widget resends its outbox after welcome
                await self.transmit(msg)
            while True:
                try:
                    raw = await asyncio.wait_for(ws.recv(), DEAD_AFTER)
                except asyncio.TimeoutError:  # no frame, not even a pong: dead
                    self.closes["dead"] += 1
                    ws.transport.abort()
                    return True
                await self.handle(json.loads(raw))
        finally:
            pinger.cancel()

    async def _pinger(self, ws: Any) -> None:
        while True:
            await asyncio.sleep(PING_EVERY)
            try:
                await ws.send('{"type":"ping"}')
            except Exception:  # noqa: BLE001 - the reader notices
                return

    async def transmit(self, msg: Msg) -> None:
        ws = self.ws
        if ws is None or not self.welcomed or msg not in self.outbox:
            return
        now = time.monotonic()
        if msg.first_sent is None:
            msg.first_sent = now
            self.bench.sent += 1
        msg.transmits += 1
        try:
            await ws.send(json.dumps({"type": "message", "client_id": msg.cid, "text": msg.text}))
        except Exception:  # noqa: BLE001 - still in the outbox: resent after reconnect
            return
        if self.abort_after_send:  # fault: the socket dies around the time of the ack
            self.abort_after_send = False
            self.bench.aborted_after_send += 1
            delay = self.rng.uniform(0.0, 0.15)

            async def abort_soon() -> None:
                await asyncio.sleep(delay)
                if self.ws is ws and ws.transport is not None:
                    ws.transport.abort()
            self._timers.append(asyncio.get_running_loop().create_task(abort_soon()))

    def abort(self) -> bool:
        ws = self.ws
        if ws is None or ws.transport is None:
            return False
        ws.transport.abort()
        return True

    def _later(self, delay: float, action: Any) -> None:
        async def run() -> None:
            await asyncio.sleep(delay)
            await action()
        self._timers.append(asyncio.get_running_loop().create_task(run()))

    async def _resend_outbox(self) -> None:
        for msg in list(self.outbox):
            await self.transmit(msg)

    async def _send(self, frame: Dict[str, Any]) -> None:
        ws = self.ws
        if ws is not None and self.welcomed:
            try:
                await ws.send(json.dumps(frame))
            except Exception:  # noqa: BLE001
                pass

    async def handle(self, frame: Dict[str, Any]) -> None:
        now = time.monotonic()
        kind = frame.get("type")
        self.frames_log.append((round(now - self.bench.t0, 3), _frame_summary(frame)))
        if kind == "ack":
            msg = self.msgs.get(frame.get("client_id"))
            if msg is None:
                self.bench.unknown_acks += 1
                return
            message_id = frame["message"]["id"]
            msg.acks += 1
            if frame.get("duplicate"):
                msg.dup_acks += 1
            if message_id not in msg.ack_ids:
                msg.ack_ids.append(message_id)
            if msg.acked_at is None:
                msg.acked_at = now
                self.bench.acked += 1
            self._drop(msg)
            self.last_id = max(self.last_id or 0, message_id)
        elif kind == "message":
            message = frame["message"]
            message_id = message["id"]
            self.received_count[message_id] += 1
            self.received.setdefault(message_id, now)
            self.last_id = max(self.last_id or 0, message_id)
            if message["sender"] == "customer":
                msg = self.msgs.get(message.get("client_id") or "")
                if msg is not None and msg in self.outbox:  # replayed: it was stored
                    msg.seen_replayed = message_id
                    self._drop(msg)
                return
            if message["sender"] in ("bot", "system"):
                latest = self.latest
                if (latest is not None and latest.message_id is not None
                        and message_id > latest.message_id):
                    latest.done.set()  # pacing only; the figures use reply_to
                self.pending_delivered.append(message_id)
                if len(self.pending_delivered) == 1:
                    self._later(0.05, self._flush_delivered)
        elif kind == "receipt":
            if frame.get("status") == "read":
                ids = set(frame.get("ids") or [])
                for msg in self._by_ids(ids):
                    if msg.read_at is None:
                        msg.read_at = now
                    msg.done.set()
                if self.last_id and self.last_id > self.read_sent:
                    self.read_sent = self.last_id
                    await self._send({"type": "read", "up_to": self.last_id})
        elif kind == "error":
            code = frame.get("code")
            msg = self.msgs.get(frame.get("client_id") or "")
            self.bench.error_codes[code] += 1
            if msg is None:
                return
            msg.errors[code] += 1
            if code == "bot_unavailable":
                msg.failed_frame_at = msg.failed_frame_at or now
                msg.done.set()
            elif code in ("not_stored", "rate_limited"):
                wait = max(1.0, float(frame.get("retry_after") or 2.0))
                self._later(wait, self._resend_outbox)
        elif kind == "token_expiring":
            self._token_exp = 0.0
            await self._send({"type": "auth", "token": self.token()})

    async def _flush_delivered(self) -> None:
        ids, self.pending_delivered = self.pending_delivered, []
        if ids:
            await self._send({"type": "delivered", "ids": ids})

    def _by_ids(self, ids: set) -> List[Msg]:
        return [m for m in self.msgs.values() if m.message_id in ids]

    def _drop(self, msg: Msg) -> None:
        if msg in self.outbox:
            self.outbox.remove(msg)

    async def final_resume(self, quiet: float) -> None:
        """Reopen the app once: hello.after = newest id, collect what was missed."""
        self.stop = False
        try:
            ws = await websockets.connect(self.bench.servers.ws_url, open_timeout=60,
                                          ping_interval=None, close_timeout=2,
                                          max_size=2 ** 22, max_queue=None)
        except Exception as error:  # noqa: BLE001
            self.closes[f"final:{type(error).__name__}"] += 1
            return
        self.ws = ws
        try:
            await ws.send(json.dumps({"type": "hello", "token": self.token(),
                                      "after": self.last_id}))
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if frame.get("type") == "welcome":
                    break
            self.welcomed = True
            await self._resend_outbox()
            while True:
                try:
                    raw = await asyncio.wait_for(ws.recv(), quiet)
                except asyncio.TimeoutError:
                    break
                await self.handle(json.loads(raw))
        except Exception as error:  # noqa: BLE001
            self.closes[f"final:{type(error).__name__}"] += 1
        finally:
            self.welcomed = False
            self.ws = None
            await ws.close()


def _frame_summary(frame: Dict[str, Any]) -> str:
    kind = frame.get("type")
    if kind == "message":
        m = frame["message"]
        return f"message id={m['id']} {m['sender']} {m.get('client_id') or ''} {m['text'][:40]!r}"
    if kind == "ack":
        return f"ack {frame.get('client_id')} id={frame['message']['id']} dup={frame.get('duplicate')}"
    if kind == "receipt":
        return f"receipt {frame.get('status')} {frame.get('ids')}"
    if kind == "error":
        return f"error {frame.get('code')} {frame.get('client_id') or ''}"
    if kind == "typing":
        return f"typing {frame.get('state')}"
    return str(kind)


# ----------------------------------------------------------------------- bench


@dataclass
class Fault:
    kind: str
    at: float          # seconds since t0
    wall: str
    detail: str = ""
    recovered_after: Optional[float] = None


class Bench:
    def __init__(self, args: argparse.Namespace, servers: Servers,
                 customers: List[Customer]) -> None:
        self.args = args
        self.servers = servers
        self.customers = customers
        self.rng = random.Random(args.seed)
        per, extra = divmod(args.messages, args.conversations)
        self.clients = [
            Client(self, i, c, make_plan(c, per + (1 if i < extra else 0),
                                         random.Random(args.seed * 7919 + i)))
            for i, c in enumerate(customers)
        ]
        self.t0 = time.monotonic()
        self.written = self.sent = self.acked = 0
        self.unknown_acks = 0
        self.aborted_after_send = 0
        self.error_codes: collections.Counter = collections.Counter()
        self.welcome_waits: List[float] = []
        self.welcome_timeouts: List[float] = []
        self.faults: List[Fault] = []
        self.first_fault_at: Optional[float] = None
        self.faults_over_at: Optional[float] = None
        self.startup_s = 0.0
        self.settled_s = 0.0
        self.settle_complete = False
        self.http: Optional[aiohttp.ClientSession] = None
        self.interrupted = asyncio.Event()

    def rel(self) -> float:
        return time.monotonic() - self.t0

    async def run(self) -> None:
        async with aiohttp.ClientSession() as http:
            self.http = http
            started = time.monotonic()
            await self.servers.start_actions()
            await self.servers.start_rasa()
            await self.servers.wait_ready(http)
            self.startup_s = time.monotonic() - started
            log(f"servers up in {self.startup_s:.1f} s (Rasa {self.servers.rasa_url}, actions "
                f"{self.servers.actions_url}); {len(self.clients)} conversations, "
                f"{self.args.messages} messages")
            self.t0 = time.monotonic()
            loop = asyncio.get_running_loop()
            scripts: List[asyncio.Task] = []
            main_task = asyncio.current_task()

            def on_signal(sig: signal.Signals) -> None:
                if self.interrupted.is_set():
                    log(f"{sig.name} again: stopping at once, no report")
                    assert main_task is not None
                    main_task.cancel()
                    return
                log(f"{sig.name}: no new messages or faults; settling, then the report "
                    f"(send it again to stop at once)")
                self.interrupted.set()
                for task in scripts:
                    task.cancel()

            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.add_signal_handler(sig, on_signal, sig)
            connections = [loop.create_task(c.connection_loop()) for c in self.clients]
            for client in self.clients:  # stagger the start over ~2 s
                if self.interrupted.is_set():
                    break
                scripts.append(loop.create_task(client.run_script()))
                await asyncio.sleep(2.0 / len(self.clients))
            injector = loop.create_task(self.inject())
            progress = loop.create_task(self.progress())
            if scripts:
                await asyncio.wait(scripts)
            log(f"{'interrupted: ' if self.interrupted.is_set() else 'every message '}written "
                f"{self.written}; waiting for the fault injector (it finishes a running fault)")
            await injector
            if self.faults_over_at is None:
                self.faults_over_at = self.rel()
            await self.settle()
            progress.cancel()
            for client in self.clients:
                client.stop = True
                client.abort()
            for task in connections:
                task.cancel()
            await asyncio.gather(*connections, return_exceptions=True)
            log("final reconnect of every client (hello.after = newest id)")
            await asyncio.gather(*(c.final_resume(self.args.final_quiet) for c in self.clients))
            log("stopping the servers (SIGTERM)")
            await self.servers.signal_group(self.servers.rasa, signal.SIGTERM, 30)
            await self.servers.signal_group(self.servers.actions, signal.SIGTERM, 15)

    async def progress(self) -> None:
        while True:
            await asyncio.sleep(30)
            connected = sum(1 for c in self.clients if c.welcomed)
            answered = sum(1 for c in self.clients for m in c.msgs.values() if m.done.is_set())
            log(f"t+{self.rel():.0f}s written {self.written} sent {self.sent} acked {self.acked} "
                f"replied {answered}; connected {connected}/{len(self.clients)}; "
                f"load {os.getloadavg()[0]:.2f}")

    async def inject(self) -> None:
        args = self.args
        total = args.messages
        start_at, stop_at = args.before * total, (1 - args.after) * total
        while self.written < start_at and not self.interrupted.is_set():
            await asyncio.sleep(0.5)
        kinds: List[str] = []
        count = 0
        while (self.written < stop_at and not self.interrupted.is_set()
               and (args.faults <= 0 or count < args.faults)):
            if not kinds:
                kinds = list(args.fault_kinds)
                self.rng.shuffle(kinds)
                crashes = [k for k in kinds if k in ("kill9", "sigterm")]
                if args.quick and count == 0 and crashes:  # a short run has a Rasa crash
                    kinds.remove(crashes[0])
                    kinds.append(crashes[0])  # popped first
            kind = kinds.pop()
            await self.fault(kind)
            count += 1
            if args.faults > 0 and count >= args.faults:
                break
            gap = self.rng.uniform(*args.fault_gap)
            deadline = time.monotonic() + gap
            while (time.monotonic() < deadline and self.written < stop_at
                   and not self.interrupted.is_set()):
                await asyncio.sleep(0.5)
        self.faults_over_at = self.rel()
        log(f"faults over at t+{self.faults_over_at:.0f}s ({count} faults)")

    async def fault(self, kind: str) -> None:
        servers, http = self.servers, self.http
        assert http is not None
        at = self.rel()
        if self.first_fault_at is None:
            self.first_fault_at = at
        fault = Fault(kind, round(at, 1), datetime.now().strftime("%H:%M:%S"))
        self.faults.append(fault)
        started = time.monotonic()
        if kind in ("kill9", "sigterm"):
            pid = servers.rasa.pid if servers.rasa else None
            sig = signal.SIGKILL if kind == "kill9" else signal.SIGTERM
            log(f"FAULT t+{at:.0f}s {kind}: Rasa (pid {pid}) gets {sig.name}")
            took = await servers.signal_group(servers.rasa, sig, 60)
            down = self.rng.uniform(0.0, 3.0)
            await asyncio.sleep(down)
            await servers.start_rasa()
            ready = await servers.wait_ready(http, actions=False)
            fault.detail = (f"Rasa pid {pid} exited {took:.1f} s after {sig.name}, restarted after "
                            f"{down:.1f} s more, up {ready:.1f} s later")
        elif kind == "actions":
            pid = servers.actions.pid if servers.actions else None
            log(f"FAULT t+{at:.0f}s actions: action server (pid {pid}) gets SIGKILL")
            await servers.signal_group(servers.actions, signal.SIGKILL, 10)
            down = self.rng.uniform(*self.args.actions_down)
            await asyncio.sleep(down)
            await servers.start_actions()
            ready = await servers.wait_ready(http, rasa=False)
            fault.detail = (f"action server pid {pid} killed, down {down:.1f} s, up {ready:.1f} s "
                            f"after restart")
        elif kind == "dblock":
            hold = self.rng.uniform(*self.args.lock_hold)
            log(f"FAULT t+{at:.0f}s dblock: BEGIN EXCLUSIVE on support.db for {hold:.1f} s")
            waited = await asyncio.to_thread(_hold_lock, servers.support_db, hold)
            fault.detail = (f"support.db locked (BEGIN EXCLUSIVE) for {hold:.1f} s (lock taken "
                            f"after {waited:.2f} s)")
        elif kind == "disconnect":
            connected = [c for c in self.clients if c.ws is not None and c.welcomed]
            chosen = self.rng.sample(connected, max(1, len(connected) // 4)) if connected else []
            half = (len(chosen) + 1) // 2
            now_, later = chosen[:half], chosen[half:]
            dropped = sum(1 for c in now_ if c.abort())
            for c in later:
                c.abort_after_send = True
            log(f"FAULT t+{at:.0f}s disconnect: {dropped} sockets aborted now, {len(later)} "
                f"after their next message frame")
            fault.detail = (f"{dropped} of {len(connected)} connected sockets aborted at once, "
                            f"{len(later)} armed to abort right after their next message frame")
        fault.recovered_after = round(time.monotonic() - started, 1)
        log(f"      {fault.detail}")

    async def settle(self) -> None:
        """Until every outbox is empty and no turn is pending in the database (3 s), or timeout."""
        started = time.monotonic()
        deadline = started + self.args.settle
        log(f"settling (at most {self.args.settle:.0f} s)")
        quiet_since: Optional[float] = None
        while time.monotonic() < deadline:
            unacked = sum(len(c.outbox) for c in self.clients)
            pending = await asyncio.to_thread(_pending_turns, self.servers.support_db)
            if unacked == 0 and pending == 0:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= 3.0:
                    self.settle_complete = True
                    break
            else:
                quiet_since = None
            await asyncio.sleep(1)
        self.settled_s = time.monotonic() - started
        log(f"settled in {self.settled_s:.0f} s (complete: {self.settle_complete})")


def _hold_lock(path: Path, seconds: float) -> float:
    """Another writer: BEGIN EXCLUSIVE for ``seconds`` (runs in a worker thread)."""
    started = time.monotonic()
    connection = sqlite3.connect(path, timeout=60, isolation_level=None)
    try:
        connection.execute("BEGIN EXCLUSIVE")
        waited = time.monotonic() - started
        time.sleep(seconds)
        connection.execute("COMMIT")
        return waited
    finally:
        connection.close()


def _pending_turns(path: Path) -> int:
    connection = sqlite3.connect(path, timeout=30)
    try:
        return connection.execute(
            "SELECT count(*) FROM chat_messages WHERE sender = 'customer' "
            "AND status IN ('received', 'processing')").fetchone()[0]
    finally:
        connection.close()


# -------------------------------------------------------------------- analysis


def analyse(bench: Bench) -> Dict[str, Any]:
    servers = bench.servers
    connection = sqlite3.connect(servers.support_db, timeout=30)
    connection.row_factory = sqlite3.Row
    rows = [dict(r) for r in connection.execute(
        "SELECT c.conversation_id, c.state, m.id, m.client_id, m.sender, m.text, m.status, "
        "m.attempts, m.reply_to, m.turn_error, m.created_at, m.buttons FROM chat_messages m "
        "JOIN conversations c ON c.id = m.conversation_pk "
        "WHERE c.conversation_id LIKE 'widget:soak-%' ORDER BY m.id")]
    connection.close()
    customer_rows: Dict[Tuple[str, str], List[Dict[str, Any]]] = collections.defaultdict(list)
    replies: Dict[int, List[Dict[str, Any]]] = collections.defaultdict(list)
    orphans = []
    states = {}
    for row in rows:
        states[row["conversation_id"]] = row["state"]
        if row["sender"] == "customer":
            customer_rows[(row["conversation_id"], row["client_id"])].append(row)
        elif row["reply_to"] is not None:
            replies[row["reply_to"]].append(row)
        elif row["sender"] in ("bot", "system"):
            orphans.append(row)
    tracker_runs = _tracker_user_events(servers.tracker_db)

    counts = collections.Counter()
    anomalies: Dict[str, List[Dict[str, Any]]] = collections.defaultdict(list)
    latencies: Dict[str, List[float]] = {"before": [], "during": [], "after": []}
    sent_cids = set()

    def phase(msg: Msg, replied: float) -> str:
        t, first = msg.written - bench.t0, bench.first_fault_at
        if first is None or (t < first and replied - bench.t0 < first):
            return "before"
        if bench.faults_over_at is None or t <= bench.faults_over_at:
            return "during"
        return "after"

    def evidence(client: Client, msg: Msg, stored: List[Dict[str, Any]],
                 answer: List[Dict[str, Any]]) -> Dict[str, Any]:
        return {
            "conversation": f"widget:{client.customer.user_id}", "client_id": msg.cid,
            "text": msg.text, "written_at": round(msg.written - bench.t0, 2),
            "first_sent_at": None if msg.first_sent is None else round(msg.first_sent - bench.t0, 2),
            "transmits": msg.transmits, "acks": msg.acks, "ack_ids": msg.ack_ids,
            "acked_at": None if msg.acked_at is None else round(msg.acked_at - bench.t0, 2),
            "errors": dict(msg.errors), "rows": [_row(r) for r in stored],
            "replies": [_row(r) for r in answer],
            "reply_frames": {r["id"]: client.received_count.get(r["id"], 0) for r in answer},
            "tracker_user_events": sum(tracker_runs.get(f"widget-{r['id']}", 0) for r in stored),
            "last_frames": list(client.frames_log)[-15:],
        }

    for client in bench.clients:
        conversation = f"widget:{client.customer.user_id}"
        with_person = states.get(conversation) in ("queued", "assigned")
        counts["resends"] += sum(max(0, m.transmits - 1) for m in client.msgs.values())
        counts["reconnects"] += max(0, client.connects - 1)
        counts["frames_twice"] += sum(1 for n in client.received_count.values() if n > 1)
        for msg in client.msgs.values():
            if msg.first_sent is None:
                counts["never_sent"] += 1
                continue
            sent_cids.add(msg.cid)
            counts["sent"] += 1
            stored = customer_rows.get((conversation, msg.cid), [])
            if msg.acked_at is not None:
                counts["acked"] += 1
            if msg.dup_acks:
                counts["dup_acks"] += msg.dup_acks
            if msg.timed_out:
                counts["reply_timeouts"] += 1
            if len(set(msg.ack_ids)) > 1:
                anomalies["acked_with_two_ids"].append(evidence(client, msg, stored, []))
            if not stored:
                if msg.acked_at is not None:
                    counts["lost_acked_not_stored"] += 1
                    anomalies["lost_acked_not_stored"].append(evidence(client, msg, stored, []))
                else:
                    counts["unacked_not_stored"] += 1
                continue
            counts["stored"] += 1
            if msg.acked_at is None and msg.seen_replayed is None:
                counts["stored_not_acked"] += 1
            if len(stored) > 1:
                counts["dup_stored"] += 1
                anomalies["dup_stored"].append(evidence(client, msg, stored, []))
            row = stored[0]
            if msg.message_id is not None and msg.message_id != row["id"]:
                anomalies["ack_id_mismatch"].append(evidence(client, msg, stored, []))
            answer = [r for s in stored for r in replies.get(s["id"], [])]
            bot = [r for r in answer if r["sender"] == "bot"]
            notices = [r for r in answer if r["sender"] == "system"]
            runs = tracker_runs.get(f"widget-{row['id']}", 0)
            if runs > 1:
                counts["tracker_reruns"] += 1
            keys = [(r["sender"], r["text"], r["buttons"]) for r in answer]
            twice = len(keys) != len(set(keys)) or len(notices) > 1 or (
                bool(bot) and row["status"] == "failed")
            if twice:
                counts["dup_answered"] += 1
                anomalies["dup_answered"].append(evidence(client, msg, stored, answer))
            if row["status"] == "failed":
                counts["failed"] += 1
                if notices and not any(n["id"] in client.received for n in notices):
                    counts["lost_undelivered"] += 1
                    anomalies["lost_undelivered"].append(evidence(client, msg, stored, answer))
                if not msg.errors.get("bot_unavailable"):
                    counts["failed_no_error_frame"] += 1
                continue
            if bot:
                counts["answered"] += 1
                got = [client.received[r["id"]] for r in bot if r["id"] in client.received]
                if got:
                    counts["answered_delivered"] += 1
                    latencies[phase(msg, min(got))].append((min(got) - msg.written) * 1000)
                else:
                    counts["lost_undelivered"] += 1
                    anomalies["lost_undelivered"].append(evidence(client, msg, stored, answer))
                continue
            if with_person:
                counts["with_person"] += 1
                continue
            counts["lost_unanswered"] += 1
            anomalies["lost_unanswered"].append(evidence(client, msg, stored, answer))
        counts["still_in_outbox"] += len(client.outbox)
    unexpected = [r for (conv, cid), rs in customer_rows.items() for r in rs if cid not in sent_cids]
    counts["unexpected_rows"] = len(unexpected)
    if unexpected:
        anomalies["unexpected_rows"] = [_row(r) for r in unexpected[:20]]
    counts["orphan_replies"] = len(orphans)
    counts["with_person_conversations"] = sum(1 for s in states.values() if s in ("queued", "assigned"))
    counts["lost"] = (counts["lost_acked_not_stored"] + counts["lost_unanswered"]
                      + counts["lost_undelivered"])
    counts["duplicated"] = counts["dup_stored"] + counts["dup_answered"]
    summary = {}
    for name, values in latencies.items():
        summary[name] = {
            "n": len(values),
            "p50_ms": round(statistics.median(values)) if values else None,
            "p95_ms": round(percentile(values, 95)) if values else None,
            "p99_ms": round(percentile(values, 99)) if values else None,
            "max_ms": round(max(values)) if values else None,
        }
    return {"counts": dict(counts), "latency": summary,
            "anomalies": {k: v[:20] for k, v in anomalies.items()},
            "anomaly_totals": {k: len(v) for k, v in anomalies.items()}}


def _row(row: Dict[str, Any]) -> Dict[str, Any]:
    return {k: row[k] for k in ("id", "client_id", "sender", "status", "attempts", "reply_to",
                                "turn_error", "created_at")} | {"text": row["text"][:60]}


def _tracker_user_events(path: Path) -> Dict[str, int]:
    """How often each widget message id appears as a user event in Rasa's tracker."""
    counts: Dict[str, int] = collections.Counter()
    if not path.is_file():
        return counts
    connection = sqlite3.connect(path, timeout=30)
    try:
        for (data,) in connection.execute(
                "SELECT data FROM events WHERE type_name = 'user' AND sender_id LIKE 'widget:soak-%'"):
            try:
                message_id = json.loads(data).get("message_id")
            except (TypeError, ValueError):
                continue
            if message_id:
                counts[message_id] += 1
    except sqlite3.Error:
        pass
    finally:
        connection.close()
    return counts


def report(bench: Bench, result: Dict[str, Any], wall: float, load: Tuple[float, ...]) -> None:
    c = collections.Counter(result["counts"])
    args = bench.args
    print()
    if bench.interrupted.is_set():
        print(f"INTERRUPTED: {bench.written} of {args.messages} messages were written; the "
              f"figures are for those")
    print(f"Soak: {len(bench.clients)} conversations, {args.messages} messages, seed {args.seed}"
          f"{' (--quick)' if args.quick else ''}; {len(bench.faults)} faults; wall "
          f"{wall / 60:.1f} min (servers up in {bench.startup_s:.0f} s, settle "
          f"{bench.settled_s:.0f} s{'' if bench.settle_complete else ', NOT complete'}); "
          f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPUs")
    print("\nFaults (t = seconds since the first message):")
    for f in bench.faults:
        print(f"  t+{f.at:>6.1f}s {f.wall} {f.kind:<10} {f.detail} (recovered in {f.recovered_after} s)")
    print()
    rows = [
        ("sent (unique client ids)", c["sent"], f"{c['resends']} resends, {c['never_sent']} never sent"),
        ("acked", c["acked"], f"{c['dup_acks']} duplicate acks (resends of stored messages)"),
        ("stored (customer rows)", c["stored"],
         f"{c['stored_not_acked']} stored but ack not seen, {c['unacked_not_stored']} neither, "
         f"{c['unexpected_rows']} unexpected rows"),
        ("answered (bot reply stored)", c["answered"],
         f"{c['answered_delivered']} with the reply delivered to the client"),
        ("failed (notice shown)", c["failed"],
         f"allowed; {c['failed_no_error_frame']} without a bot_unavailable frame"),
        ("duplicated", c["duplicated"],
         f"stored twice {c['dup_stored']}, answered twice {c['dup_answered']}"),
        ("lost", c["lost"],
         f"acked not stored {c['lost_acked_not_stored']}, stored never answered/failed "
         f"{c['lost_unanswered']}, reply never delivered {c['lost_undelivered']}"),
    ]
    print(f"{'':<30} {'count':>7}")
    for label, value, note in rows:
        print(f"{label:<30} {value:>7}   {note}")
    print(f"\nother: reconnects {c['reconnects']}, sockets aborted after a message frame "
          f"{bench.aborted_after_send}, still in an outbox {c['still_in_outbox']}, with a person "
          f"{c['with_person']} (conversations {c['with_person_conversations']}), reply waits over "
          f"{args.reply_timeout:.0f} s {c['reply_timeouts']}, frames received twice "
          f"{c['frames_twice']}, turns Rasa ran more than once (tracker) {c['tracker_reruns']}, "
          f"orphan bot rows {c['orphan_replies']}")
    print(f"error frames: {dict(bench.error_codes) or 'none'}")
    waits = bench.welcome_waits
    if waits:
        print(f"hello -> welcome: {len(waits)} welcomes, p50 {statistics.median(waits):.2f} s, p95 "
              f"{percentile(waits, 95):.2f} s, max {max(waits):.1f} s; {len(bench.welcome_timeouts)} "
              f"waits over {WELCOME_TIMEOUT:.0f} s (the client reconnected)"
              + (f", at t+{sorted(set(round(t) for t in bench.welcome_timeouts))[:12]} s"
                 if bench.welcome_timeouts else ""))
    closes: collections.Counter = collections.Counter()
    for client in bench.clients:
        closes.update(client.closes)
    print(f"socket ends: {dict(closes) or 'none'}")
    print("\nLatency, message written -> first bot reply frame (ms; answered messages only)")
    print(f"{'phase':<8} {'n':>6} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}")
    for name, s in result["latency"].items():
        print(f"{name:<8} {s['n']:>6} {s['p50_ms'] if s['p50_ms'] is not None else '-':>8} "
              f"{s['p95_ms'] if s['p95_ms'] is not None else '-':>8} "
              f"{s['p99_ms'] if s['p99_ms'] is not None else '-':>8} "
              f"{s['max_ms'] if s['max_ms'] is not None else '-':>8}")
    for name, total in result["anomaly_totals"].items():
        print(f"\n!! {name}: {total}; first example:")
        print(json.dumps(result["anomalies"][name][0], indent=1, default=str)[:4000])
    verdict = "PASS" if c["lost"] == 0 and c["duplicated"] == 0 else "FAIL"
    print(f"\n{verdict}: lost {c['lost']}, duplicated {c['duplicated']} (goal: 0 and 0)"
          + ("" if bench.settle_complete else "; the settle did not complete: turns still "
             "unfinished count as lost"))


# ------------------------------------------------------------------------ main


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--messages", type=int, default=10000, help="in all")
    parser.add_argument("--quick", action="store_true",
                        help="20 conversations, 400 messages, 3 faults (a check, not a result)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--faults", type=int, default=0,
                        help="at most this many faults (0: until the fault window ends)")
    parser.add_argument("--fault-kinds", nargs="+", choices=FAULT_KINDS, default=list(FAULT_KINDS),
                        help="faults to draw from (each once per shuffled round)")
    parser.add_argument("--fault-gap", type=float, nargs=2, default=(20.0, 60.0),
                        metavar=("MIN", "MAX"), help="seconds between faults")
    parser.add_argument("--before", type=float, default=0.15,
                        help="share of messages written before the first fault")
    parser.add_argument("--after", type=float, default=0.2,
                        help="share of messages written after the fault window")
    parser.add_argument("--think", type=float, nargs=2, default=(15.0, 45.0),
                        metavar=("MIN", "MAX"), help="customer's pause after a reply (s)")
    parser.add_argument("--reply-timeout", type=float, default=60.0,
                        help="a customer waits this long for a reply, then writes the next")
    parser.add_argument("--backoff-max", type=float, default=10.0, help="reconnect back-off cap (s)")
    parser.add_argument("--actions-down", type=float, nargs=2, default=(2.0, 8.0))
    parser.add_argument("--lock-hold", type=float, nargs=2, default=(2.0, 8.0))
    parser.add_argument("--settle", type=float, default=180.0, help="max settle time (s)")
    parser.add_argument("--final-quiet", type=float, default=4.0,
                        help="final reconnect: stop after this long without a frame (s)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, databases)")
    args = parser.parse_args(argv)
    if args.quick:
        defaults = parser.parse_args([])
        for name, value in (("conversations", 20), ("messages", 400), ("faults", 3),
                            ("fault_gap", (8.0, 15.0)), ("think", (0.5, 2.0)), ("settle", 90.0)):
            if getattr(args, name) == getattr(defaults, name):
                setattr(args, name, value)
    if not MODEL.is_file():
        print(f"No model at {MODEL}: run `make train` first.", file=sys.stderr)
        return 2
    if args.messages < args.conversations:
        parser.error("--messages must be at least --conversations")

    def terminate(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    work = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    servers = Servers(work)
    customers = make_customers(args.conversations)
    load_before = os.getloadavg()
    log(f"load average before start: {load_before}; cpus: {os.cpu_count()}; work dir {work}")
    started = time.monotonic()
    bench: Optional[Bench] = None
    failed = True
    status = 3
    try:
        servers.prepare(customers)
        bench = Bench(args, servers, customers)
        asyncio.run(bench.run())
        signal.signal(signal.SIGTERM, terminate)  # the event loop reset them
        signal.signal(signal.SIGHUP, terminate)
        wall = time.monotonic() - started
        result = analyse(bench)
        load = os.getloadavg()
        report(bench, result, wall, load)
        counts = result["counts"]
        failed = counts.get("lost", 0) > 0 or counts.get("duplicated", 0) > 0
        status = 1 if failed else (130 if bench.interrupted.is_set() else 0)
        suffix = "-quick" if args.quick else ""
        out = ROOT / "results" / f"soak-{datetime.now():%Y%m%d-%H%M%S}{suffix}.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps({
            "args": {k: v for k, v in vars(args).items()}, "wall_s": round(wall, 1),
            "startup_s": round(bench.startup_s, 1), "settle_s": round(bench.settled_s, 1),
            "settle_complete": bench.settle_complete, "written": bench.written,
            "interrupted": bench.interrupted.is_set(),
            "load_before": load_before, "load_after": load, "cpus": os.cpu_count(),
            "faults": [vars(f) for f in bench.faults],
            "first_fault_at": bench.first_fault_at, "faults_over_at": bench.faults_over_at,
            "error_frames": dict(bench.error_codes),
            "welcome_wait_s": {"n": len(bench.welcome_waits),
                               "p50": round(statistics.median(bench.welcome_waits), 2)
                               if bench.welcome_waits else None,
                               "p95": round(percentile(bench.welcome_waits, 95), 2)
                               if bench.welcome_waits else None,
                               "max": round(max(bench.welcome_waits), 2)
                               if bench.welcome_waits else None,
                               "timeouts_at": bench.welcome_timeouts},
            **result,
            "work_dir": str(work),
        }, indent=1, default=str))
        print(f"\nJSON: {out}")
    except (KeyboardInterrupt, asyncio.CancelledError):
        log("stopped")
        status = 130
    except RuntimeError as error:
        log(f"error: {error}")
        for name in ("rasa", "actions"):
            path = servers.log_path(name)
            if path.is_file():
                print(f"--- {path} (tail) ---\n" + "\n".join(
                    path.read_text(errors="replace").splitlines()[-40:]))
        status = 3
    finally:
        servers.stop_now()
        if args.keep or failed:
            log(f"kept {work} (server logs, databases)")
        else:
            subprocess.run(["rm", "-rf", str(work)], check=False)
    return status


if __name__ == "__main__":
    sys.exit(main())
