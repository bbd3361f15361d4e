"""Throughput of the product (production configuration, widget channel) next to a `rasa init` bot.

Issue 14's benchmark. In ONE run, on the same machine:

1. **reference**: a `rasa init --no-prompt` project (Rasa's default pipeline and policies,
   in-memory tracker and lock stores) is created and trained in a temp dir, then served by
   ``rasa run --enable-api`` and driven through Rasa's REST channel
   (``/webhooks/rest/webhook``) with the moodbot's own messages;
2. **product**: the production configuration (``deploy/endpoints.production.yml``: a fresh
   PostgreSQL database for the tracker, support and orders tables, Redis lock store, RabbitMQ
   event broker, ``REDIS_URL`` live bus), one action server and N Rasa processes on ONE
   port for each ``--processes`` N (default 1): every process binds the port with
   ``SO_REUSEPORT`` (``RASA_REUSE_PORT=true``, the production recipe of
   ``deploy/Procfile.production``) and the kernel spreads the connections; the product is
   driven through the widget WebSocket channel with signed customer tokens, exactly as the
   app does. The processes are added one after another on the same port and database
   (``--processes 1 2 4``: one process, then a second and later two more).

Load is closed-loop: each conversation sends its next message when the previous reply has
arrived; ``N`` conversations run at once, for each ``--levels`` N (default 1 50 200). Prints per
bot, process count and level: turns, errors (turns without a reply, failed sockets), msg/s,
p50/p95/p99 (ms), the CPU seconds each Rasa process used during the level (how evenly the
kernel spread the load), the product/reference ratios of msg/s and the N-process/1-process
ratios. Targets (issue 14, one 2-core machine): at 50
conversations >= 4x the reference's msg/s with p95 <= 500 ms and no errors; at 200 no errors
and p95 <= 2 s.

Run on an idle machine, services up (``uptime`` first):
``.venv/bin/python bench/bench_throughput.py [--levels 1 50 200] [--processes 1 2 4] [--turns 6]``
(``--skip-reference`` reuses nothing: it only leaves the reference out). Needs the trained
model (``make train``) and the local PostgreSQL, Redis and RabbitMQ.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import free_port, log, percentile  # noqa: E402

PYTHON = ROOT / ".venv" / "bin" / "python"
RASA = ROOT / ".venv" / "bin" / "rasa"
HOST = "127.0.0.1"
TIMEOUT = 120.0

#: A customer's conversation with the product: FAQ answers, small talk, an order.
PRODUCT_SCRIPT = ["hi", "how long does delivery take?", "what is your refund policy",
                  "which payment methods do you accept", "thanks a lot", "bye"]
#: The moodbot's own conversation (rasa init's data/stories.yml "sad path").
REFERENCE_SCRIPT = ["hello", "I am sad", "yes", "great", "bye", "are you a bot?"]

ERRORS: Dict[str, int] = {}
#: Why product turns failed: "no reply" (the turn ended without a bot message), "error <code>"
#: (an error frame), "timeout" (nothing for TIMEOUT s: the conversation's remaining turns fail
#: too), "socket <exception>" (connect or socket failure: its remaining turns fail).
ERROR_KINDS: Dict[str, int] = {}


def _failed(kind: str, count: int = 1) -> None:
    ERRORS["product"] = ERRORS.get("product", 0) + count
    ERROR_KINDS[kind] = ERROR_KINDS.get(kind, 0) + count








# ------------------------------------------------------------------ reference


class Reference:
    """A `rasa init` bot, trained and served on Rasa's defaults."""

    def __init__(self, work: Path) -> None:
        self.dir = work / "rasa-init"
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.proc: Optional[subprocess.Popen] = None
        self.train_seconds = 0.0

    def env(self) -> Dict[str, str]:
        return {**os.environ, "RASA_TELEMETRY_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "2",
                "SQLALCHEMY_SILENCE_UBER_WARNING": "1"}

    def start(self) -> None:
        started = time.monotonic()
        self.dir.mkdir(parents=True)
        subprocess.run([str(RASA), "init", "--no-prompt", "--init-dir", str(self.dir)],
                       cwd=self.dir.parent, env=self.env(), check=True,
                       stdout=open(self.dir.parent / "rasa-init-train.log", "wb"),
                       stderr=subprocess.STDOUT)
        self.train_seconds = time.monotonic() - started
        log(f"reference: rasa init trained in {self.train_seconds:.0f} s")
        self.proc = subprocess.Popen(
            [str(RASA), "run", "--enable-api", "--auth-token", secrets.token_urlsafe(16),
             "-p", str(self.port), "-i", HOST],
            cwd=self.dir, env=self.env(), start_new_session=True,
            stdout=open(self.dir.parent / "rasa-init-run.log", "wb"), stderr=subprocess.STDOUT)

    async def wait(self) -> None:
        import aiohttp

        deadline = time.monotonic() + 300
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    async with http.get(f"{self.url}/") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError("the reference bot exited; see rasa-init-run.log")
                if time.monotonic() > deadline:
                    raise RuntimeError("the reference bot is not up after 300 s")
                await asyncio.sleep(0.5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


async def reference_conversation(http: Any, url: str, turns: List[str]) -> List[float]:
    sender = f"ref-{uuid.uuid4().hex[:12]}"
    times: List[float] = []
    for text in turns:
        started = time.perf_counter()
        try:
            async with http.post(url, json={"sender": sender, "message": text}) as response:
                replies = await response.json()
                ok = response.status == 200 and bool(replies)
        except Exception:  # noqa: BLE001 - counted
            ok = False
        if not ok:
            ERRORS["reference"] = ERRORS.get("reference", 0) + 1
            continue
        times.append(time.perf_counter() - started)
    return times


# -------------------------------------------------------------------- product


class _Tmp:
    """What tests.servers.BotFactory needs of pytest's tmp_path_factory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def mktemp(self, name: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.root))
        return path


class Product:
    """The production configuration (a fresh database, Redis prefix and queue:
    tests/integration/conftest.py ``production_bot_started``) with Rasa processes sharing
    one SO_REUSEPORT port."""

    def __init__(self, work: Path) -> None:
        import contextlib

        self.work = work
        self.bots: List[Any] = []
        self.secret = ""
        self._stack = contextlib.ExitStack()

    def start(self) -> None:
        from tests.integration.conftest import postgres_user, production_bot_started
        from tests.servers import REDIS_DB, REDIS_HOST, REDIS_PORT, WIDGET_TEST_ENV, BotFactory

        self.secret = WIDGET_TEST_ENV["WIDGET_JWT_SECRET"]
        factory = BotFactory(_Tmp(self.work))  # type: ignore[arg-type]
        first = self._stack.enter_context(production_bot_started(factory, "bench", postgres_user(), env={
            "REDIS_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}",
            "RASA_REUSE_PORT": "true",
            "WIDGET_RATE_MESSAGES": "100000", "WIDGET_FRAME_RATE": "1000",
            "WIDGET_FRAME_BURST": "1000", "WIDGET_MAX_CONNECTIONS": "10",
            "WIDGET_MAX_PREAUTH_PER_IP": "1000", "WIDGET_JWT_MAX_TTL": "7200",
        }))
        self.bots = [first]

    def scale_to(self, processes: int) -> None:
        """Start Rasa processes on the same port until ``processes`` run (all listening)."""
        from tests.live.conftest import same_port_rasa, wait_listening

        added = []
        while len(self.bots) < processes:
            bot = same_port_rasa(self.bots[0], f"p{len(self.bots) + 1}", wait=False)
            self.bots.append(bot)
            added.append(bot)
        for bot in added:  # loading in parallel, on the same port
            wait_listening(bot, bot.name)
        if added:
            log(f"product: {len(self.bots)} Rasa processes listen on {self.bots[0].rasa_url}")

    def pids(self) -> List[int]:
        return [bot.rasa_pid for bot in self.bots]

    def ws_urls(self) -> List[str]:
        return [self.bots[0].rasa_url.replace("http://", "ws://") + "/webhooks/widget/ws"]

    def stop(self) -> None:
        from tests.servers import _stop

        for bot in self.bots[1:]:
            _stop(bot._rasa)
        self._stack.close()


async def product_conversation(ws_url: str, secret: str, turns: List[str]) -> List[float]:
    import websockets

    from tests.widget.conftest import token_for

    user = f"bench-{uuid.uuid4().hex[:12]}"
    times: List[float] = []
    done = 0  # turns finished (answered or failed)
    try:
        async with websockets.connect(ws_url, max_size=2 ** 20, open_timeout=60) as ws:
            await ws.send(json.dumps({"type": "hello",
                                      "token": token_for(user, ttl=3600, secret=secret)}))
            while json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))["type"] != "welcome":
                pass
            for n, text in enumerate(turns):
                started = time.perf_counter()
                await ws.send(json.dumps({"type": "message", "client_id": f"m{n}", "text": text}))
                last: Optional[float] = None
                why = "no reply"
                while True:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
                    if frame["type"] == "message" and frame["message"]["sender"] == "bot":
                        last = time.perf_counter()
                    elif frame["type"] == "typing" and frame.get("state") == "stop":
                        break
                    elif frame["type"] == "error":
                        why = f"error {frame.get('code')}"
                        break
                done += 1
                if last is None:
                    _failed(why)
                    continue
                times.append(last - started)
    except asyncio.TimeoutError:  # nothing for TIMEOUT s: this and the remaining turns fail
        _failed("timeout", len(turns) - done)
    except Exception as error:  # noqa: BLE001 - a failed socket: its remaining turns fail
        _failed(f"socket {type(error).__name__}", len(turns) - done)
    return times


# ---------------------------------------------------------------------- runs


async def run_level(kind: str, target: Any, level: int, turns: List[str]) -> Dict[str, Any]:
    import aiohttp

    started = time.perf_counter()
    if kind == "reference":
        connector = aiohttp.TCPConnector(limit=level + 5)
        async with aiohttp.ClientSession(connector=connector,
                                         timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as http:
            url = f"{target.url}/webhooks/rest/webhook"
            results = await asyncio.gather(*(reference_conversation(http, url, turns)
                                             for _ in range(level)))
    else:
        urls = target.ws_urls()
        results = await asyncio.gather(*(product_conversation(urls[n % len(urls)], target.secret,
                                                              turns) for n in range(level)))
    wall = time.perf_counter() - started
    times = [t * 1000 for conversation in results for t in conversation]
    return {"times": times, "wall": wall}


def cpu_seconds(pids: List[int]) -> List[float]:
    """User + system CPU seconds each process has used (``/proc/<pid>/stat``)."""
    tick = os.sysconf("SC_CLK_TCK")
    result = []
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            result.append((int(fields[11]) + int(fields[12])) / tick)
        except (OSError, IndexError, ValueError):
            result.append(float("nan"))
    return result


def row(times: List[float], wall: float) -> Dict[str, float]:
    return {"turns": len(times), "msgs_per_s": round(len(times) / wall, 1) if wall else 0.0,
            "p50": round(statistics.median(times), 1) if times else float("nan"),
            "p95": round(percentile(times, 95), 1), "p99": round(percentile(times, 99), 1)}


async def _level(kind: str, target: Any, level: int, script: List[str]) -> Dict[str, Any]:
    before = dict(ERRORS)
    kinds_before = dict(ERROR_KINDS)
    pids = target.pids() if kind == "product" else []
    cpu_before = cpu_seconds(pids)
    result = await run_level(kind, target, level, script)
    cpu = [round(after - start, 1) for start, after in zip(cpu_before, cpu_seconds(pids))]
    return {**row(result["times"], result["wall"]),
            "errors": ERRORS.get(kind, 0) - before.get(kind, 0), "cpu_s": cpu,
            "why": {k: v - kinds_before.get(k, 0) for k, v in ERROR_KINDS.items()
                    if v > kinds_before.get(k, 0)},
            "load": round(os.getloadavg()[0], 2)}


async def measure(args: argparse.Namespace, reference: Optional[Reference],
                  product: Product) -> Dict[str, Dict[Tuple[int, int], Dict[str, Any]]]:
    """{"reference": {(0, level): row}, "product": {(processes, level): row}}."""
    results: Dict[str, Dict[Tuple[int, int], Dict[str, Any]]] = {"reference": {}, "product": {}}
    if reference is not None:
        await reference.wait()
        await run_level("reference", reference, 2, REFERENCE_SCRIPT[: args.turns])  # warm-up
        for level in args.levels:
            results["reference"][(0, level)] = r = await _level(
                "reference", reference, level, REFERENCE_SCRIPT[: args.turns])
            log(f"reference level {level:>3}: {r}")
    for processes in args.processes:
        await asyncio.to_thread(product.scale_to, processes)
        await run_level("product", product, 2 * processes, PRODUCT_SCRIPT[: args.turns])  # warm-up
        for level in args.levels:
            results["product"][(processes, level)] = r = await _level(
                "product", product, level, PRODUCT_SCRIPT[: args.turns])
            log(f"product   {processes} proc level {level:>3}: {r}")
    return results


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 50, 200])
    parser.add_argument("--processes", type=int, nargs="+", default=[1],
                        help="Rasa process counts of the product, on one SO_REUSEPORT port")
    parser.add_argument("--turns", type=int, default=6, help="messages per conversation")
    parser.add_argument("--skip-reference", action="store_true", help="no rasa init bot")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and logs")
    args = parser.parse_args(argv)
    args.processes = sorted({max(1, n) for n in args.processes})
    work = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    log(f"cpus {os.cpu_count()}, load {os.getloadavg()}, work dir {work}")
    reference = None if args.skip_reference else Reference(work)
    product = Product(work)
    try:
        if reference is not None:
            reference.start()
        product.start()
        results = asyncio.run(measure(args, reference, product))
    finally:
        if reference is not None:
            reference.stop()
        product.stop()
        if not args.keep:
            subprocess.run(["rm", "-rf", str(work)], check=False)
    print()
    print(f"Closed-loop throughput, {args.turns} turns per conversation; product: widget "
          "channel, production configuration, N Rasa processes on one SO_REUSEPORT port; "
          f"reference: rasa init, REST channel, Rasa's defaults. {os.cpu_count()} cores.")
    print(f"{'bot':<10} {'procs':>5} {'level':>5} {'turns':>6} {'errors':>6} {'msg/s':>7} "
          f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'x ref':>6} {'x 1proc':>7} "
          f"{'load':>5}  CPU s per process")
    for kind in ("reference", "product"):
        for (processes, level), r in results[kind].items():
            ref = results["reference"].get((0, level))
            one = results["product"].get((1, level))
            x_ref = (f"{r['msgs_per_s'] / ref['msgs_per_s']:.2f}"
                     if kind == "product" and ref and ref["msgs_per_s"] else "")
            x_one = (f"{r['msgs_per_s'] / one['msgs_per_s']:.2f}"
                     if kind == "product" and one and one["msgs_per_s"] else "")
            print(f"{kind:<10} {processes or '':>5} {level:>5} {r['turns']:>6} {r['errors']:>6} "
                  f"{r['msgs_per_s']:>7} {r['p50']:>8} {r['p95']:>8} {r['p99']:>8} "
                  f"{x_ref:>6} {x_one:>7} {r['load']:>5}  "
                  f"{' '.join(str(c) for c in r['cpu_s'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
