"""Message round trip through the widget channel next to Rasa's REST channel, same model, same run.

Starts ONE action server and ONE Rasa server (the project's ``credentials.yml``: both the
``rest`` and the widget channel; the trained ``models/support.tar.gz``; SQLite tracker and
support databases in a temp dir, as ``make run``), then for each concurrency level (default 1
and 50) runs the same scripted conversations through each channel, alternating channels
(REST, widget, REST, widget … ``--rounds`` times) so that drift hits both equally:

* REST: ``POST /webhooks/api/webhook`` (the API channel: Rasa's REST shape behind a bearer
  token; Rasa's open REST channel is not enabled); the round trip ends when the response (all bot
  replies of the turn) has arrived.
* widget: a WebSocket per conversation (token signed like the host app does), ``message``
  frame out; the round trip ends when the last bot ``message`` frame of the turn has arrived
  (the turn is over when the bot's ``typing stop`` frame follows it). Every widget message is
  stored, acknowledged and receipted on the way, as in production.

Each conversation sends its messages one after another (the next one after the previous
reply), like a customer; ``N`` conversations run concurrently. Prints, per channel and level:
round trips, p50/p95/p99 (ms), messages/s (turns completed per second of wall time) and the
widget/REST p95 ratio. Writes ``results/widget-<date>.json``.

Run on an idle machine (``uptime``): ``.venv/bin/python bench/bench_widget.py [--levels 1 50]
[--rounds 2] [--turns 6]``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
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

MODEL = ROOT / "models" / "support.tar.gz"
PYTHON = ROOT / ".venv" / "bin" / "python"
HOST = "127.0.0.1"
SECRET = "bench-widget-secret-" + "x" * 32
TIMEOUT = 300.0

#: A customer's conversation: FAQ answers, small talk, a clarification; no state needed.
SCRIPT = [
    "hi",
    "how long does delivery take?",
    "what is your refund policy",
    "which payment methods do you accept",
    "thanks a lot",
    "bye",
]








class Servers:
    """The action server and the Rasa server, in a temp dir, stopped on exit."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.actions_port, self.rasa_port = free_port(), free_port()
        self.rasa_url = f"http://{HOST}:{self.rasa_port}"
        self.api_token = secrets.token_urlsafe(32)
        self.procs: List[subprocess.Popen] = []

    def start(self) -> None:
        var = self.work / "var"
        var.mkdir()
        endpoints = yaml.safe_load((ROOT / "endpoints.yml").read_text())
        endpoints["action_endpoint"]["url"] = f"http://{HOST}:{self.actions_port}/webhook"
        endpoints["tracker_store"]["db"] = str(var / "rasa_tracker.db")
        endpoints_path = self.work / "endpoints.yml"
        endpoints_path.write_text(yaml.safe_dump(endpoints))
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "RASA_TELEMETRY_ENABLED": "false",
            "SUPPORT_VAR_DIR": str(var),
            "ACTION_SERVER_URL": f"http://{HOST}:{self.actions_port}/webhook",
            "WIDGET_JWT_SECRET": SECRET,
            # secrets in the environment only (bot/serve.py, bot/action_server.py)
            "RASA_TOKEN": secrets.token_urlsafe(32),
            "ACTION_SERVER_TOKEN": secrets.token_urlsafe(32),
            "SUPPORT_API_TOKEN": self.api_token,
            "WIDGET_FRAME_RATE": "1000",
            "WIDGET_FRAME_BURST": "1000",
            "WIDGET_RATE_MESSAGES": "100000",
            "WIDGET_MAX_CONNECTIONS": "10",
            "EMBEDDING_MODEL_DIR": os.environ.get(
                "EMBEDDING_MODEL_DIR", str(ROOT / "var" / "embeddings" / "all-MiniLM-L6-v2")
            ),
        }
        subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "scripts/seed_orders.py"],
                       cwd=ROOT, env=env, check=True, capture_output=True)
        for name, args in (
            ("actions", [str(PYTHON), "-m", "bot.action_server", "--port", str(self.actions_port)]),
            ("rasa", [str(PYTHON), "-m", "bot.serve", "--model", str(MODEL),
                      "--port", str(self.rasa_port), "--credentials",
                      str(ROOT / "credentials.yml"), "--endpoints", str(endpoints_path)]),
        ):
            out = open(self.work / f"{name}.log", "wb")
            self.procs.append(subprocess.Popen(args, cwd=ROOT, env=env, stdout=out,
                                               stderr=subprocess.STDOUT, start_new_session=True))

    async def wait(self) -> None:
        deadline = time.monotonic() + 180
        async with aiohttp.ClientSession() as http:
            for url in (f"http://{HOST}:{self.actions_port}/health", f"{self.rasa_url}/"):
                while True:
                    if any(p.poll() is not None for p in self.procs):
                        raise RuntimeError(f"a server exited; see logs in {self.work}")
                    try:
                        async with http.get(url) as response:
                            if response.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{url} not up after 180 s")
                    await asyncio.sleep(0.5)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


FAILURES: Dict[str, int] = {"rest": 0, "widget": 0}
"""Turns that got no bot reply (e.g. an action timed out under load), per channel."""


async def rest_conversation(http: aiohttp.ClientSession, url: str, token: str,
                            turns: List[str]) -> List[float]:
    sender = f"bench-rest-{uuid.uuid4().hex[:12]}"
    times = []
    for text in turns:
        started = time.perf_counter()
        async with http.post(url, json={"sender": sender, "message": text},
                             headers={"Authorization": f"Bearer {token}"}) as response:
            replies = await response.json()
        elapsed = time.perf_counter() - started
        if response.status != 200 or not replies:
            FAILURES["rest"] += 1
            continue
        times.append(elapsed)
    return times


async def widget_conversation(ws_url: str, turns: List[str]) -> List[float]:
    user = f"bench-{uuid.uuid4().hex[:12]}"
    token = issue_token(user, SECRET, ttl_seconds=3600)
    times = []
    async with websockets.connect(ws_url, max_size=2 ** 20, open_timeout=60) as ws:
        await ws.send(json.dumps({"type": "hello", "token": token, "after": None}))
        while json.loads(await ws.recv())["type"] != "welcome":
            pass
        for n, text in enumerate(turns):
            client_id = f"m{n}"
            started = time.perf_counter()
            await ws.send(json.dumps({"type": "message", "client_id": client_id, "text": text}))
            last_reply: Optional[float] = None
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
                kind = frame["type"]
                if kind == "message" and frame["message"]["sender"] == "bot":
                    last_reply = time.perf_counter()
                elif kind == "typing" and frame["state"] == "stop":
                    break
                elif kind == "error" and frame.get("code") != "bot_unavailable":
                    raise RuntimeError(f"widget turn {text!r} failed: {frame}")
            if last_reply is None:  # the bot could not answer (the customer got a notice)
                FAILURES["widget"] += 1
                continue
            times.append(last_reply - started)
    return times


async def run_level(channel: str, servers: Servers, concurrency: int, turns: List[str]) -> Dict[str, Any]:
    started = time.perf_counter()
    if channel == "rest":
        connector = aiohttp.TCPConnector(limit=concurrency + 5)
        async with aiohttp.ClientSession(connector=connector,
                                         timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as http:
            url = f"{servers.rasa_url}/webhooks/api/webhook"
            results = await asyncio.gather(
                *(rest_conversation(http, url, servers.api_token, turns)
                  for _ in range(concurrency)))
    else:
        ws_url = servers.rasa_url.replace("http://", "ws://") + "/webhooks/widget/ws"
        results = await asyncio.gather(
            *(widget_conversation(ws_url, turns) for _ in range(concurrency)))
    wall = time.perf_counter() - started
    times = [t * 1000 for conversation in results for t in conversation]
    return {"times_ms": times, "wall_s": wall, "turns": len(times)}


def summary(times: List[float], wall: float) -> Dict[str, float]:
    return {
        "round_trips": len(times),
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(percentile(times, 95), 1),
        "p99_ms": round(percentile(times, 99), 1),
        "msgs_per_s": round(len(times) / wall, 1),
    }


async def main_async(args: argparse.Namespace, servers: Servers) -> Dict[str, Any]:
    await servers.wait()
    turns = SCRIPT[: args.turns]
    log("warming up both channels (2 conversations each)")
    for channel in ("rest", "widget"):
        await run_level(channel, servers, 2, turns)
    results: Dict[str, Any] = {}
    for level in args.levels:
        collected: Dict[str, Dict[str, Any]] = {"rest": {"times_ms": [], "wall_s": 0.0},
                                                 "widget": {"times_ms": [], "wall_s": 0.0}}
        for round_ in range(args.rounds):
            for channel in ("rest", "widget") if round_ % 2 == 0 else ("widget", "rest"):
                load = os.getloadavg()[0]
                result = await run_level(channel, servers, level, turns)
                collected[channel]["times_ms"] += result["times_ms"]
                collected[channel]["wall_s"] += result["wall_s"]
                log(f"level {level:>3} round {round_ + 1} {channel:<6} {result['turns']} turns "
                    f"in {result['wall_s']:.1f} s (load {load:.2f})")
        results[str(level)] = {
            channel: summary(data["times_ms"], data["wall_s"]) for channel, data in collected.items()
        }
    return results


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 50])
    parser.add_argument("--rounds", type=int, default=2, help="REST/widget alternations")
    parser.add_argument("--turns", type=int, default=len(SCRIPT), help="messages per conversation")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and logs")
    args = parser.parse_args(argv)
    if not MODEL.is_file():
        print(f"No model at {MODEL}: run `make train` first.", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench-widget-"))
    servers = Servers(work)
    log(f"load average before start: {os.getloadavg()}; cpus: {os.cpu_count()}; work dir {work}")
    try:
        servers.start()
        results = asyncio.run(main_async(args, servers))
    finally:
        servers.stop()
        if not args.keep:
            subprocess.run(["rm", "-rf", str(work)], check=False)
    print()
    print(f"Round trip, customer message in -> bot reply out ({len(SCRIPT[:args.turns])} turns "
          f"per conversation, {args.rounds} rounds per channel and level)")
    print(f"turns without a bot reply: REST {FAILURES['rest']}, widget {FAILURES['widget']}")
    print(f"{'level':>6} {'channel':<8} {'round trips':>11} {'p50 ms':>8} {'p95 ms':>8} "
          f"{'p99 ms':>8} {'msgs/s':>8}")
    for level, by_channel in results.items():
        for channel, row in by_channel.items():
            print(f"{level:>6} {channel:<8} {row['round_trips']:>11} {row['p50_ms']:>8} "
                  f"{row['p95_ms']:>8} {row['p99_ms']:>8} {row['msgs_per_s']:>8}")
        ratio = by_channel["widget"]["p95_ms"] / by_channel["rest"]["p95_ms"]
        print(f"{'':>6} widget p95 / REST p95 = {ratio:.3f} (target <= 1.10)")
    out = ROOT / "results" / f"widget-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"levels": results, "failures": FAILURES,
                               "script": SCRIPT[: args.turns],
                               "rounds": args.rounds, "load_after": os.getloadavg()}, indent=2))
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
