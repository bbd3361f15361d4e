"""Benchmark the project's pipeline (``config.yml``) against Rasa 3.6's default pipeline.

Both configurations are trained in the same run on the same inputs: a snapshot of this
project's ``data/``, ``domain.yml``, ``config.yml`` and ``bot/`` (the custom components)
taken when the bench starts, so edits made while it runs cannot change one side only.
The children import ``bot`` from the snapshot (``PYTHONPATH``), with ``SUPPORT_VAR_DIR``
defaulting to this repository's ``var/`` (the embedding model) and ``SUPPORT_DATA_DIR``
to the data snapshot. For each configuration it measures:

* full training from scratch: ``rasa train --force --config <cfg> --out <tmp>
  --fixed-model-name <name>`` in a child process, under ``/usr/bin/time -v``: wall time,
  the child's peak RSS ("Maximum resident set size") and its CPU time. Rasa's training
  cache goes to a fresh directory in the temp dir, so neither run can use (or pollute)
  ``.rasa/cache``;
* parsing, in a fresh child process: ``rasa.core.agent.Agent.load`` then
  ``await agent.parse_message(text)`` on one event loop, 20 warm-up parses, then every
  message of ``tests/nlu/bitext_holdout.yml`` and ``tests/nlu/realistic.yml`` timed
  one by one: p50/p95/p99 latency in ms, the process's peak RSS after loading and
  parsing, intent accuracy on each set (strict: ``nlu_fallback`` counts as wrong), and
  for ``realistic.yml`` how many ``out_of_scope`` messages got a shop intent (anything
  but ``out_of_scope`` / ``nlu_fallback``) with confidence >= 0.5.

The default configuration is the installed Rasa's
``rasa/engine/recipes/config_files/default_config.yml``, copied byte for byte: a project
made by ``rasa init`` has an empty ``pipeline:`` / ``policies:`` and Rasa fills both from
that file at training time (the commented-out copy in ``rasa/cli/initial_project/config.yml``
is out of date: it lacks ``constrain_similarities`` and UnexpecTEDIntentPolicy).

Two kinds of training data (``--data``):

* ``project`` (the default): the whole assistant, ``rasa train`` on all of ``data/`` and
  ``domain.yml`` (NLU and dialogue), as ``make train`` does;
* ``bitext``: the issue's reference set-up, ``rasa train nlu`` on the Bitext training file
  alone (``data/nlu/bitext/nlu.yml``: the 8k file minus the 819 held-out messages). The
  realistic set then also gets an accuracy over the messages whose intent is one of the
  27 Bitext intents (the others cannot be right for a model that never saw them).

Usage (from the repository root)::

    .venv/bin/python bench/bench_pipelines.py [--only chosen|default|both]
        [--data project|bitext] [--quick] [--keep]

``--quick`` sets the DIET / ResponseSelector / UnexpecTED / TED epochs of the default
configuration to 2: a smoke test of the bench, never a result. On 2 cores a full
``--only both --data bitext`` run takes about 35 minutes (DIET's 100 epochs: 32 minutes);
with ``--data project`` DIET also learns the entities and TED/UnexpecTED train too (85 s
for DIET's first epoch: over two hours). ``--only chosen`` takes 2-3 minutes. Figures only
mean something on an otherwise idle machine; the load average is printed and recorded.

Prints progress lines with timestamps, then one table (a column per configuration), and
writes the figures as JSON to ``results/pipelines-<date>[-<only>][-quick].json``.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
TEST_SETS = {
    "bitext_holdout": ROOT / "tests" / "nlu" / "bitext_holdout.yml",
    "realistic": ROOT / "tests" / "nlu" / "realistic.yml",
}
WARMUP = 20
OOS_INTENT = "out_of_scope"
FALLBACK_INTENT = "nlu_fallback"
OOS_CONFIDENCE = 0.5
QUICK_EPOCHS = 2
HEARTBEAT_S = 60.0
TIME_BIN = "/usr/bin/time"
CHILD_ENV = {
    "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "RASA_TELEMETRY_ENABLED": "false",
    "PYTHONUNBUFFERED": "1",
}

# Rasa 3.6's default configuration, as parsed; the installed file must match it.
EXPECTED_DEFAULT = {
    "recipe": "default.v1",
    "language": "en",
    "pipeline": [
        {"name": "WhitespaceTokenizer"},
        {"name": "RegexFeaturizer"},
        {"name": "LexicalSyntacticFeaturizer"},
        {"name": "CountVectorsFeaturizer"},
        {"name": "CountVectorsFeaturizer", "analyzer": "char_wb", "min_ngram": 1, "max_ngram": 4},
        {"name": "DIETClassifier", "epochs": 100, "constrain_similarities": True},
        {"name": "EntitySynonymMapper"},
        {"name": "ResponseSelector", "epochs": 100, "constrain_similarities": True},
        {"name": "FallbackClassifier", "threshold": 0.3, "ambiguity_threshold": 0.1},
    ],
    "policies": [
        {"name": "MemoizationPolicy"},
        {"name": "RulePolicy"},
        {"name": "UnexpecTEDIntentPolicy", "max_history": 5, "epochs": 100},
        {"name": "TEDPolicy", "max_history": 5, "epochs": 100, "constrain_similarities": True},
    ],
}

_children: List[subprocess.Popen] = []


# --------------------------------------------------------------------------- helpers
def log(message: str) -> None:
    """Print a progress line with a timestamp."""
    print(f"[{dt.datetime.now():%H:%M:%S}] {message}", flush=True)


def fmt_duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m {secs:02d}s" if minutes else f"{seconds:.1f}s"


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sha256_tree(path: Path) -> str:
    """A digest of every file (relative path and bytes) under ``path``."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        digest.update(b"\0")
        digest.update(file.read_bytes())
    return digest.hexdigest()


def rasa_package_dir() -> Path:
    """The installed ``rasa`` package directory (found without importing Rasa)."""
    spec = importlib.util.find_spec("rasa")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("rasa is not importable: run this with .venv/bin/python")
    return Path(list(spec.submodule_search_locations)[0])


def git_state() -> Dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=30).stdout.rstrip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "HEAD"),
            "changed": git("status", "--porcelain", "--", "config.yml", "data", "domain.yml",
                           "bot").splitlines()}


def last_log_line(path: Path) -> str:
    """The last non-empty line (or progress-bar segment) of a log file."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 4096))
            tail = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    parts = [p.strip() for p in re.split(r"[\r\n]+", tail) if p.strip()]
    line = parts[-1] if parts else ""
    return line if len(line) <= 110 else line[:107] + "..."


def kill_children() -> None:
    """Terminate every child process group still running (SIGTERM, then SIGKILL)."""
    for proc in list(_children):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 10
    for proc in list(_children):
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    _children.clear()


def run_child(cmd: List[str], log_path: Path, env: Dict[str, str], what: str,
              load_samples: List[float]) -> Tuple[int, float]:
    """Run ``cmd`` in its own process group, output to ``log_path``; heartbeat every minute.

    Returns:
        (exit status, wall seconds).
    """
    with log_path.open("wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        _children.append(proc)
        next_beat = start + HEARTBEAT_S
        while True:
            try:
                code = proc.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.perf_counter()
            if now >= next_beat:
                next_beat += HEARTBEAT_S
                load1 = os.getloadavg()[0]
                load_samples.append(load1)
                log(f"  ... {what}: {fmt_duration(now - start)} elapsed, load {load1:.2f} | "
                    f"{last_log_line(log_path)}")
        elapsed = time.perf_counter() - start
        _children.remove(proc)
    return code, elapsed


def parse_time_v(path: Path) -> Dict[str, Any]:
    """Peak RSS and CPU time from GNU time's ``-v`` report."""
    text = path.read_text(errors="replace") if path.exists() else ""

    def number(label: str) -> Optional[float]:
        match = re.search(rf"^\s*{re.escape(label)}:\s*([0-9.]+)", text, re.M)
        return float(match.group(1)) if match else None

    maxrss_kb = number("Maximum resident set size (kbytes)")
    user, system = number("User time (seconds)"), number("System time (seconds)")
    return {
        "peak_rss_mib": maxrss_kb / 1024.0 if maxrss_kb is not None else None,
        "cpu_s": (user or 0.0) + (system or 0.0) if user is not None else None,
    }


# --------------------------------------------------------------------------- configs
def default_config_text(quick: bool) -> Tuple[str, Path]:
    """The installed Rasa's default config (checked), with epochs cut to 2 if ``quick``."""
    import yaml

    source = rasa_package_dir() / "engine" / "recipes" / "config_files" / "default_config.yml"
    text = source.read_text(encoding="utf-8")
    parsed = yaml.safe_load(text)
    got = {key: parsed.get(key) for key in EXPECTED_DEFAULT}
    if got != EXPECTED_DEFAULT:
        raise SystemExit(f"{source} is not Rasa 3.6's default configuration this bench expects:\n"
                         f"{json.dumps(got, indent=1)}")
    if quick:
        text, count = re.subn(r"(?m)^(\s*epochs:\s*)100\s*$", rf"\g<1>{QUICK_EPOCHS}", text)
        if count != 4:
            raise SystemExit(f"expected 4 'epochs: 100' lines in {source}, found {count}")
    return text, source


# --------------------------------------------------------------------------- parse worker
def percentile(values: List[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q))


def parse_worker(model: Path, tests_path: Path, out_path: Path) -> int:
    """Child process: load the model, parse every test message, write figures as JSON."""
    import logging

    for name in ("rasa", "tensorflow", "absl", "py.warnings"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import structlog

        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    except ImportError:
        pass
    import warnings

    warnings.filterwarnings("ignore")
    from rasa.core.agent import Agent

    tests_doc: Dict[str, Any] = json.loads(tests_path.read_text(encoding="utf-8"))
    test_sets: Dict[str, List[List[str]]] = tests_doc["sets"]
    known = set(tests_doc.get("known_intents") or [])
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    start = time.perf_counter()
    agent = Agent.load(str(model))
    load_s = time.perf_counter() - start
    rss_after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    async def run() -> Dict[str, List[Dict[str, Any]]]:
        everything = [text for examples in test_sets.values() for text, _ in examples]
        for text in everything[:WARMUP]:
            await agent.parse_message(text)
        outcome: Dict[str, List[Dict[str, Any]]] = {}
        for set_name, examples in test_sets.items():
            rows = []
            for text, intent in examples:
                begin = time.perf_counter()
                parsed = await agent.parse_message(text)
                ms = (time.perf_counter() - begin) * 1000.0
                top = parsed.get("intent") or {}
                rows.append({"expected": intent, "predicted": top.get("name"),
                             "confidence": float(top.get("confidence") or 0.0), "ms": ms})
            outcome[set_name] = rows
        return outcome

    outcome = loop.run_until_complete(run())
    loop.close()
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    all_ms = [row["ms"] for rows in outcome.values() for row in rows]
    result: Dict[str, Any] = {
        "load_s": load_s,
        "peak_rss_after_load_mib": rss_after_load,
        "peak_rss_mib": peak_rss,
        "messages": len(all_ms),
        "warmup": WARMUP,
        "latency_ms": {"p50": percentile(all_ms, 50), "p95": percentile(all_ms, 95),
                       "p99": percentile(all_ms, 99), "max": max(all_ms)},
        "sets": {},
    }
    for set_name, rows in outcome.items():
        correct = sum(row["predicted"] == row["expected"] for row in rows)
        confusions: Dict[str, int] = {}
        for row in rows:
            if row["predicted"] != row["expected"]:
                key = f"{row['expected']} -> {row['predicted']}"
                confusions[key] = confusions.get(key, 0) + 1
        oos = [row for row in rows if row["expected"] == OOS_INTENT]
        oos_shop = [row for row in oos if row["predicted"] not in (OOS_INTENT, FALLBACK_INTENT)
                    and row["confidence"] >= OOS_CONFIDENCE]
        ms = [row["ms"] for row in rows]
        known_rows = [row for row in rows if row["expected"] in known] if known else rows
        known_correct = sum(row["predicted"] == row["expected"] for row in known_rows)
        result["sets"][set_name] = {
            "n": len(rows),
            "correct": correct,
            "accuracy": correct / len(rows),
            "known_n": len(known_rows),
            "known_correct": known_correct,
            "known_accuracy": known_correct / len(known_rows) if known_rows else None,
            "nlu_fallback": sum(row["predicted"] == FALLBACK_INTENT for row in rows),
            "out_of_scope_n": len(oos),
            "out_of_scope_to_shop_ge_0_5": len(oos_shop),
            "latency_ms": {"p50": percentile(ms, 50), "p95": percentile(ms, 95),
                           "p99": percentile(ms, 99)},
            "top_confusions": sorted(confusions.items(), key=lambda kv: -kv[1])[:10],
        }
    out_path.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


# --------------------------------------------------------------------------- one configuration
def child_env(name: str, snapshot: Path, work: Path) -> Dict[str, str]:
    """Environment of the children: the snapshot's code and data, a fresh Rasa cache."""
    env = dict(os.environ, **CHILD_ENV)
    env["PYTHONPATH"] = str(snapshot / "code")
    env["RASA_CACHE_DIRECTORY"] = str(work / f"cache-{name}")
    env["EMBEDDING_CACHE_DIR"] = "off"  # from scratch: no sentence vectors of earlier runs
    env.setdefault("SUPPORT_VAR_DIR", str(ROOT / "var"))
    env.setdefault("SUPPORT_DATA_DIR", str(snapshot / "data"))
    return env


def bench_config(name: str, config_path: Path, snapshot: Path, work: Path, tests_json: Path,
                 load_samples: List[float], data: str) -> Dict[str, Any]:
    """Train one configuration from scratch, then measure parsing in a fresh process."""
    rasa_bin = str(Path(sys.executable).parent / "rasa")
    out_dir = work / "models"
    out_dir.mkdir(exist_ok=True)
    env = child_env(name, snapshot, work)
    if data == "bitext":
        train_cmd = [rasa_bin, "train", "nlu", "--config", str(config_path),
                     "--nlu", str(snapshot / "data" / "nlu" / "bitext" / "nlu.yml"),
                     "--out", str(out_dir), "--fixed-model-name", name]
    else:
        train_cmd = [rasa_bin, "train", "--force", "--config", str(config_path),
                     "--domain", str(snapshot / "domain.yml"), "--data", str(snapshot / "data"),
                     "--out", str(out_dir), "--fixed-model-name", name]
    time_report = work / f"time-{name}.txt"
    use_time = os.access(TIME_BIN, os.X_OK)
    cmd = [TIME_BIN, "-v", "-o", str(time_report), *train_cmd] if use_time else train_cmd
    train_log = work / f"train-{name}.log"
    result: Dict[str, Any] = {"config": str(config_path), "train_command": " ".join(train_cmd),
                              "train_log": str(train_log)}

    log(f"[{name}] training from scratch ({'under /usr/bin/time -v' if use_time else 'getrusage'}); "
        f"log: {train_log}")
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    code, wall = run_child(cmd, train_log, env, f"{name} training", load_samples)
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if use_time:
        train = parse_time_v(time_report)
    else:  # ru_maxrss of children is a running maximum, so only a rise is attributable
        rss = children_after.ru_maxrss / 1024.0
        train = {"peak_rss_mib": rss if children_after.ru_maxrss > children_before.ru_maxrss else None,
                 "cpu_s": (children_after.ru_utime - children_before.ru_utime)
                 + (children_after.ru_stime - children_before.ru_stime)}
    model = out_dir / f"{name}.tar.gz"
    result["train"] = dict(train, wall_s=wall, exit_status=code)
    if code != 0 or not model.exists():
        log(f"[{name}] TRAINING FAILED (exit {code}); last lines of {train_log}:")
        print("\n".join(train_log.read_text(errors="replace").splitlines()[-30:]), flush=True)
        result["error"] = f"training failed with exit status {code}"
        return result
    result["model_mib"] = model.stat().st_size / 2**20
    rss_text = f"{train['peak_rss_mib']:.0f} MiB" if train["peak_rss_mib"] else "n/a"
    log(f"[{name}] trained in {fmt_duration(wall)}, peak RSS {rss_text}, "
        f"model {result['model_mib']:.1f} MiB")

    log(f"[{name}] parsing {WARMUP} warm-up + all test messages in a fresh process")
    parse_out = work / f"parse-{name}.json"
    parse_log = work / f"parse-{name}.log"
    worker_cmd = [sys.executable, str(Path(__file__).resolve()), "--parse-worker", str(model),
                  str(tests_json), str(parse_out)]
    code, wall = run_child(worker_cmd, parse_log, env, f"{name} parsing", load_samples)
    if code != 0 or not parse_out.exists():
        log(f"[{name}] PARSING FAILED (exit {code}); last lines of {parse_log}:")
        print("\n".join(parse_log.read_text(errors="replace").splitlines()[-30:]), flush=True)
        result["error"] = f"parse process failed with exit status {code}"
        return result
    parse = json.loads(parse_out.read_text(encoding="utf-8"))
    parse["process_wall_s"] = wall
    result["parse"] = parse
    lat = parse["latency_ms"]
    log(f"[{name}] loaded in {parse['load_s']:.1f}s; {parse['messages']} messages: p50 "
        f"{lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms, p99 {lat['p99']:.1f} ms; "
        + ", ".join(f"{k} {v['accuracy']:.2%}" for k, v in parse["sets"].items()))
    return result


# --------------------------------------------------------------------------- report
def table(results: Dict[str, Dict[str, Any]], quick: bool, data: str) -> str:
    names = list(results)
    rows: List[Tuple[str, List[str]]] = []

    def add(label: str, getter) -> None:
        cells = []
        for name in names:
            try:
                cells.append(getter(results[name]))
            except (KeyError, TypeError):
                cells.append("FAILED" if "error" in results[name] else "n/a")
        rows.append((label, cells))

    def mib(value: Optional[float]) -> str:
        if value is None:
            return "n/a"
        return f"{value / 1024:.2f} GiB" if value >= 1024 else f"{value:.0f} MiB"

    def acc(set_name: str):
        def get(r: Dict[str, Any]) -> str:
            s = r["parse"]["sets"][set_name]
            return f"{s['accuracy']:.2%} ({s['correct']}/{s['n']})"
        return get

    add("train: wall time", lambda r: fmt_duration(r["train"]["wall_s"]))
    add("train: peak RSS", lambda r: mib(r["train"]["peak_rss_mib"]))
    add("train: CPU time (user+sys)", lambda r: fmt_duration(r["train"]["cpu_s"]))
    add("model size", lambda r: f"{r['model_mib']:.1f} MiB")
    add("parse: model load time", lambda r: f"{r['parse']['load_s']:.1f}s")
    add("parse: messages timed", lambda r: str(r["parse"]["messages"]))
    for q in ("p50", "p95", "p99"):
        add(f"parse: latency {q}", lambda r, q=q: f"{r['parse']['latency_ms'][q]:.1f} ms")
    add("parse: process peak RSS", lambda r: mib(r["parse"]["peak_rss_mib"]))
    add("accuracy bitext_holdout", acc("bitext_holdout"))
    add("accuracy realistic", acc("realistic"))
    if data == "bitext":
        def known(r: Dict[str, Any]) -> str:
            s = r["parse"]["sets"]["realistic"]
            return f"{s['known_accuracy']:.2%} ({s['known_correct']}/{s['known_n']})"
        add("accuracy realistic, Bitext intents", known)
    add("realistic: nlu_fallback", lambda r: str(r["parse"]["sets"]["realistic"]["nlu_fallback"]))
    add(f"realistic: OOS -> shop intent >= {OOS_CONFIDENCE}", lambda r: (
        f"{r['parse']['sets']['realistic']['out_of_scope_to_shop_ge_0_5']}"
        f"/{r['parse']['sets']['realistic']['out_of_scope_n']}"))

    headers = [f"{n} ({'config.yml' if n == 'chosen' else 'Rasa 3.6 default'}"
               f"{', QUICK epochs=2' if quick and n == 'default' else ''})" for n in names]
    width0 = max(len(label) for label, _ in rows)
    widths = [max(len(h), *(len(cells[i]) for _, cells in rows)) for i, h in enumerate(headers)]
    lines = [" | ".join([" " * width0, *(h.ljust(w) for h, w in zip(headers, widths))]),
             "-+-".join(["-" * width0, *("-" * w for w in widths)])]
    for label, cells in rows:
        lines.append(" | ".join([label.ljust(width0), *(c.ljust(w) for c, w in zip(cells, widths))]))
    return "\n".join(lines)


# --------------------------------------------------------------------------- main
def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("chosen", "default", "both"), default="both")
    parser.add_argument("--data", choices=("project", "bitext"), default="project",
                        help="project: the whole assistant (rasa train); bitext: NLU only on "
                             "the Bitext training file (the issue's reference set-up)")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: default config epochs set to {QUICK_EPOCHS} (not a result)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir with the models")
    parser.add_argument("--parse-worker", nargs=3, metavar=("MODEL", "TESTS_JSON", "OUT_JSON"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.parse_worker:
        model, tests_json, out_json = (Path(p) for p in args.parse_worker)
        return parse_worker(model, tests_json, out_json)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)

    names = ["chosen", "default"] if args.only == "both" else [args.only]
    rasa_version = importlib.metadata.version("rasa")
    started = dt.datetime.now()
    load_start = os.getloadavg()
    if args.quick:
        print("*" * 78 + f"\nQUICK SMOKE RUN: DIET, ResponseSelector, UnexpecTEDIntentPolicy and "
              f"TEDPolicy epochs\nare set to {QUICK_EPOCHS} in the default config. These figures "
              "are NOT results.\n" + "*" * 78, flush=True)
    log(f"bench_pipelines: {', '.join(names)} on {args.data} data; rasa {rasa_version}, python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, load average "
        f"{load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}")
    if load_start[0] > 0.5:
        log(f"WARNING: load average {load_start[0]:.2f}: the machine is not idle, "
            "timings and memory figures will not be representative")

    work = Path(tempfile.mkdtemp(prefix="bench-pipelines-"))
    load_samples: List[float] = [load_start[0]]
    results: Dict[str, Dict[str, Any]] = {}
    meta: Dict[str, Any] = {}
    status = 0
    try:
        # Same inputs for both configurations: snapshot data/, domain.yml, config.yml, tests.
        snapshot = work / "snapshot"
        if args.data == "bitext":
            shutil.copytree(ROOT / "data" / "nlu" / "bitext", snapshot / "data" / "nlu" / "bitext")
        else:
            shutil.copytree(ROOT / "data", snapshot / "data")
        shutil.copy2(ROOT / "domain.yml", snapshot / "domain.yml")
        shutil.copytree(ROOT / "bot", snapshot / "code" / "bot",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        configs: Dict[str, Path] = {}
        chosen_cfg = work / "config-chosen.yml"
        shutil.copy2(ROOT / "config.yml", chosen_cfg)
        configs["chosen"] = chosen_cfg
        default_text, default_source = default_config_text(args.quick)
        default_cfg = work / "config-default.yml"
        default_cfg.write_text(default_text, encoding="utf-8")
        configs["default"] = default_cfg
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        from bot.nlu_runtime import yaml_examples

        tests = {name: yaml_examples(path) for name, path in TEST_SETS.items()}
        tests_json = work / "tests.json"
        known_intents = (sorted({intent for _, intent in yaml_examples(
            snapshot / "data" / "nlu" / "bitext" / "nlu.yml")}) if args.data == "bitext" else None)
        tests_json.write_text(json.dumps({"sets": tests, "known_intents": known_intents}),
                              encoding="utf-8")
        meta = {
            "date": started.isoformat(timespec="seconds"),
            "quick": args.quick,
            "data": args.data,
            "quick_note": (f"default config epochs set to {QUICK_EPOCHS}: NOT a result"
                           if args.quick else None),
            "rasa": rasa_version,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "git": git_state(),
            "config_sha256": sha256_file(chosen_cfg),
            "default_config_source": str(default_source),
            "default_config_sha256": sha256_file(default_cfg),
            "data_sha256": sha256_tree(snapshot / "data"),
            "domain_sha256": sha256_file(snapshot / "domain.yml"),
            "code_sha256": sha256_tree(snapshot / "code"),
            "test_sets": {name: {"path": str(path.relative_to(ROOT)), "n": len(tests[name])}
                          for name, path in TEST_SETS.items()},
            "work_dir": str(work),
        }
        log(f"work dir {work}; snapshot of data/ sha256 {meta['data_sha256'][:12]}, "
            f"bot/ sha256 {meta['code_sha256'][:12]}")
        log(f"chosen config: config.yml (sha256 {meta['config_sha256'][:12]})")
        log(f"default config: copied from {default_source}"
            + (f" with epochs 100 -> {QUICK_EPOCHS} (--quick)" if args.quick else " unchanged"))
        log("test sets: " + ", ".join(f"{k} {len(v)}" for k, v in tests.items()))

        for name in names:
            results[name] = bench_config(name, configs[name], snapshot, work, tests_json,
                                         load_samples, args.data)
            if "error" in results[name]:
                status = 1
    except KeyboardInterrupt as exc:
        print(flush=True)
        log(f"interrupted ({exc or 'Ctrl-C'}): stopping the child processes")
        kill_children()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"kept {work}")
        return 130
    finally:
        kill_children()

    load_end = os.getloadavg()
    load_samples.append(load_end[0])
    meta.update(finished=dt.datetime.now().isoformat(timespec="seconds"),
                load_average_start=list(load_start), load_average_end=list(load_end),
                load_average_1min_max=max(load_samples))

    print(flush=True)
    if args.quick:
        print(f"QUICK SMOKE RUN (default config epochs = {QUICK_EPOCHS}): NOT results.")
    what = ("NLU only, Bitext training file" if args.data == "bitext"
            else "whole assistant, data/ + domain.yml")
    print(f"Pipelines on the same data ({what}; {started:%Y-%m-%d %H:%M}, rasa {rasa_version}, "
          f"{os.cpu_count()} CPUs, 1-min load average max {max(load_samples):.2f}):")
    print(table(results, args.quick, args.data))
    print(f"latency over {', '.join(f'{k} ({len(v)})' for k, v in tests.items())} after "
          f"{WARMUP} warm-up parses; accuracy is strict (nlu_fallback counts as wrong).")
    if max(load_samples) > 1.0:
        print(f"NOTE: the 1-min load average reached {max(load_samples):.2f} during the run: "
              "the machine was not idle, so timings/memory are not representative.")

    results_dir = ROOT / "results"
    results_dir.mkdir(exist_ok=True)
    suffix = (("" if args.data == "project" else f"-{args.data}")
              + ("" if args.only == "both" else f"-{args.only}") + ("-quick" if args.quick else ""))
    out = results_dir / f"pipelines-{started:%Y-%m-%d}{suffix}.json"
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=1), encoding="utf-8")
    print(f"JSON: {out.relative_to(ROOT)}")

    if args.keep:
        print(f"models and logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
