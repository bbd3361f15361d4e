"""Throughput of the product (production configuration, widget channel) next to a `rasa init` bot.

Issue 14's benchmark. In ONE run, on the same machine:

1. **reference**: a `rasa init --no-prompt` project (Rasa's default pipeline and policies,
   in-memory tracker and lock stores) is created and trained in a temp dir, then served by
   ``rasa run --enable-api`` and driven through Rasa's REST channel
   (``/webhooks/rest/webhook``) with the moodbot's own messages;
2. **product**: the production configuration (``deploy/endpoints.production.yml``: a fresh
   PostgreSQL database for the tracker, support and orders tables, Redis lock store, RabbitMQ
   event broker, ``REDIS_URL`` live bus), one action server and ``--processes`` Rasa processes
   (default 1), driven through the widget WebSocket channel with signed customer tokens,
   exactly as the app does. With several processes, conversations are spread round-robin
   over them (client-side balancing: no balancer process in the path).

Load is closed-loop: each conversation sends its next message when the previous reply has
arrived; ``N`` conversations run at once, for each ``--levels`` N (default 1 50 200). Prints per
bot and level: turns, errors (turns without a reply, failed sockets), msg/s, p50/p95/p99 (ms),
and the product/reference ratios of msg/s. Targets (issue 14, one 2-core machine): at 50
conversations >= 4x the reference's msg/s with p95 <= 500 ms and no errors; at 200 no errors
and p95 <= 2 s.

Run on an idle machine, services up (``uptime`` first):
``.venv/bin/python bench/bench_throughput.py [--levels 1 50 200] [--processes 1] [--turns 6]``
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
    """The production configuration with ``processes`` Rasa processes (a fresh database,
    Redis prefix and queue: tests/integration/conftest.py ``production_bot_started``)."""

    def __init__(self, work: Path, processes: int) -> None:
        import contextlib

        self.work = work
        self.processes = processes
        self.bots: List[Any] = []
        self.secret = ""
        self._stack = contextlib.ExitStack()

    def start(self) -> None:
        from tests.integration.conftest import postgres_user, production_bot_started
        from tests.live.conftest import second_rasa
        from tests.servers import REDIS_DB, REDIS_HOST, REDIS_PORT, WIDGET_TEST_ENV, BotFactory

        self.secret = WIDGET_TEST_ENV["WIDGET_JWT_SECRET"]
        factory = BotFactory(_Tmp(self.work))  # type: ignore[arg-type]
        first = self._stack.enter_context(production_bot_started(factory, "bench", postgres_user(), env={
            "REDIS_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}",
            "WIDGET_RATE_MESSAGES": "100000", "WIDGET_FRAME_RATE": "1000",
            "WIDGET_FRAME_BURST": "1000", "WIDGET_MAX_CONNECTIONS": "10",
            "WIDGET_MAX_PREAUTH_PER_IP": "1000", "WIDGET_JWT_MAX_TTL": "7200",
        }))
        self.bots = [first]
        for n in range(self.processes - 1):
            self.bots.append(second_rasa(first, f"p{n + 2}"))

    def ws_urls(self) -> List[str]:
        return [b.rasa_url.replace("http://", "ws://") + "/webhooks/widget/ws" for b in self.bots]

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
                while True:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
                    if frame["type"] == "message" and frame["message"]["sender"] == "bot":
                        last = time.perf_counter()
                    elif frame["type"] == "typing" and frame.get("state") == "stop":
                        break
                    elif frame["type"] == "error":
                        break
                if last is None:
                    ERRORS["product"] = ERRORS.get("product", 0) + 1
                    continue
                times.append(last - started)
    except Exception:  # noqa: BLE001 - a failed socket: its remaining turns are errors
        ERRORS["product"] = ERRORS.get("product", 0) + len(turns) - len(times)
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


def row(times: List[float], wall: float) -> Dict[str, float]:
    return {"turns": len(times), "msgs_per_s": round(len(times) / wall, 1) if wall else 0.0,
            "p50": round(statistics.median(times), 1) if times else float("nan"),
            "p95": round(percentile(times, 95), 1), "p99": round(percentile(times, 99), 1)}


async def measure(args: argparse.Namespace, reference: Optional[Reference],
                  product: Product) -> Dict[str, Dict[int, Dict[str, float]]]:
    results: Dict[str, Dict[int, Dict[str, float]]] = {"reference": {}, "product": {}}
    targets: List[Tuple[str, Any, List[str]]] = [("product", product, PRODUCT_SCRIPT)]
    if reference is not None:
        await reference.wait()
        targets.insert(0, ("reference", reference, REFERENCE_SCRIPT))
    for kind, target, script in targets:
        await run_level(kind, target, 2, script[: args.turns])  # warm-up
    for level in args.levels:
        for kind, target, script in targets:
            before = dict(ERRORS)
            result = await run_level(kind, target, level, script[: args.turns])
            results[kind][level] = {**row(result["times"], result["wall"]),
                                    "errors": ERRORS.get(kind, 0) - before.get(kind, 0)}
            log(f"{kind:<9} level {level:>3}: {results[kind][level]} "
                f"(load {os.getloadavg()[0]:.2f})")
    return results


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 50, 200])
    parser.add_argument("--processes", type=int, default=1, help="Rasa processes of the product")
    parser.add_argument("--turns", type=int, default=6, help="messages per conversation")
    parser.add_argument("--skip-reference", action="store_true", help="no rasa init bot")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and logs")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    log(f"cpus {os.cpu_count()}, load {os.getloadavg()}, work dir {work}")
    reference = None if args.skip_reference else Reference(work)
    product = Product(work, max(1, args.processes))
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
          f"channel, production configuration, {args.processes} Rasa process(es); reference: "
          "rasa init, REST channel, Rasa's defaults")
    print(f"{'bot':<10} {'level':>5} {'turns':>6} {'errors':>6} {'msg/s':>7} {'p50 ms':>8} "
          f"{'p95 ms':>8} {'p99 ms':>8}")
    for kind in ("reference", "product"):
        for level, r in results[kind].items():
            print(f"{kind:<10} {level:>5} {r['turns']:>6} {r['errors']:>6} {r['msgs_per_s']:>7} "
                  f"{r['p50']:>8} {r['p95']:>8} {r['p99']:>8}")
    if results["reference"]:
        for level in args.levels:
            ref, prod = results["reference"].get(level), results["product"].get(level)
            if ref and prod and ref["msgs_per_s"]:
                print(f"level {level}: product/reference msg/s = "
                      f"{prod['msgs_per_s'] / ref['msgs_per_s']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
