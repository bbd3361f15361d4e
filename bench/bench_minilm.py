"""Benchmark the NumPy all-MiniLM-L6-v2 encoder (:mod:`bot.nlu.minilm`).

Prints, for the project's training utterances (``data/nlu/bitext/nlu.yml`` by
default, entity markup removed by Rasa's loader):

* model load time;
* batch throughput: sentences/s (and word pieces/s) encoding all utterances;
* single-message latency: p50/p95/max of ``encode_one`` over 500 utterances;
* the process's peak RSS (``resource.getrusage``).

Usage::

    .venv/bin/python bench/bench_minilm.py [--data FILE] [--batch-size 64] [--single 500]

The model must have been fetched (``make setup``).
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import sys
import time
from pathlib import Path
from typing import List, Optional

if __package__ in (None, ""):  # run as a file: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bot.nlu.minilm import MiniLMEncoder  # noqa: E402
from bot.settings import PROJECT_ROOT, get_settings  # noqa: E402

DEFAULT_DATA = PROJECT_ROOT / "data" / "nlu" / "bitext" / "nlu.yml"


def load_texts(path: Path) -> List[str]:
    """Read the example texts of a Rasa NLU file (annotations removed).

    Args:
        path: The NLU YAML file.

    Returns:
        The texts, in file order.
    """
    from rasa.shared.nlu.training_data.loading import load_data

    data = load_data(str(path))
    return [m.get("text") for m in data.training_examples if m.get("text")]


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: Optional[List[str]] = None) -> int:
    """Run the benchmark and print the figures.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(description="Benchmark the MiniLM encoder.")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--single", type=int, default=500, help="messages for the latency run")
    args = parser.parse_args(argv)

    model_dir = args.model_dir or get_settings().embedding_model_dir
    texts = load_texts(args.data)
    print(f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs")
    print(f"data: {args.data} ({len(texts)} utterances)")
    rss_before = peak_rss_mib()

    start = time.perf_counter()
    encoder = MiniLMEncoder.load(model_dir)
    print(f"load: {time.perf_counter() - start:.2f} s")
    encoder.encode(texts[:64], batch_size=args.batch_size)  # warm-up

    pieces = sum(encoder.count_tokens(t) for t in texts)
    start = time.perf_counter()
    vectors = encoder.encode(texts, batch_size=args.batch_size)
    elapsed = time.perf_counter() - start
    assert vectors.shape == (len(texts), encoder.dim)
    print(
        f"batch encode (batch_size={args.batch_size}): {len(texts)} sentences in {elapsed:.2f} s "
        f"= {len(texts) / elapsed:.0f} sentences/s ({pieces / elapsed:.0f} word pieces/s, "
        f"{pieces / len(texts):.1f} pieces/sentence)"
    )

    sample = random.Random(0).sample(texts, min(args.single, len(texts)))
    latencies = []
    for text in sample:
        start = time.perf_counter()
        encoder.encode_one(text)
        latencies.append((time.perf_counter() - start) * 1000.0)
    p50, p95 = np.percentile(latencies, [50, 95])
    print(
        f"single message ({len(sample)} messages): p50 {p50:.2f} ms, p95 {p95:.2f} ms, "
        f"max {max(latencies):.2f} ms"
    )
    print(f"peak RSS: {peak_rss_mib():.0f} MiB (before loading the model: {rss_before:.0f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
