"""Benchmark the all-MiniLM-L6-v2 encoder (:mod:`bot.nlu.minilm`), per backend and depth.

Prints, for the project's training utterances (``data/nlu/bitext/nlu.yml`` by
default, entity markup removed by Rasa's loader), for every backend
(ONNX Runtime, TensorFlow, NumPy) and layer count asked for:

* load + warm-up time;
* batch throughput: sentences/s (and word pieces/s) encoding all utterances;
* single-message latency: p50/p95/max of ``encode_one`` over 500 utterances,
  the variants interleaved over several rounds;
* the process's peak RSS (``resource.getrusage``) and the load average.

Usage::

    .venv/bin/python bench/bench_minilm.py [--data FILE] [--batch-size 64] [--single 500]
        [--backend onnxruntime tensorflow numpy] [--num-layers 6 4 3] [--rounds 3] [--batch-limit N]

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
from typing import Dict, List, Optional

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

    Every variant (backend x layer count) is loaded once; the single-message
    latency runs are interleaved across variants over ``--rounds`` rounds, so
    that background load hits all of them alike, and the medians per variant
    are reported.

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
    parser.add_argument("--backend", nargs="*", default=["onnxruntime", "tensorflow", "numpy"],
                        choices=["onnxruntime", "tensorflow", "numpy"])
    parser.add_argument("--num-layers", nargs="*", type=int, default=[6])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved latency rounds")
    parser.add_argument("--batch-limit", type=int, default=0,
                        help="encode only the first N utterances in the batch run (0: all)")
    args = parser.parse_args(argv)

    model_dir = args.model_dir or get_settings().embedding_model_dir
    texts = load_texts(args.data)
    print(f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs, "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"data: {args.data} ({len(texts)} utterances)")
    rss_before = peak_rss_mib()

    encoders = {}
    for backend in args.backend:
        for layers in args.num_layers:
            start = time.perf_counter()
            encoder = MiniLMEncoder.load(model_dir, backend=backend, num_layers=layers)
            encoder.encode(texts[:64], batch_size=args.batch_size)  # warm-up (traces TF)
            name = f"{backend}, {layers} layers"
            encoders[name] = encoder
            print(f"{name}: load + warm-up {time.perf_counter() - start:.2f} s")

    batch = texts[: args.batch_limit] if args.batch_limit else texts
    pieces = sum(next(iter(encoders.values())).count_tokens(t) for t in batch)
    for name, encoder in encoders.items():
        start = time.perf_counter()
        vectors = encoder.encode(batch, batch_size=args.batch_size)
        elapsed = time.perf_counter() - start
        assert vectors.shape == (len(batch), encoder.dim)
        print(
            f"{name}: batch encode (batch_size={args.batch_size}): {len(batch)} sentences in "
            f"{elapsed:.2f} s = {len(batch) / elapsed:.0f} sentences/s ({pieces / elapsed:.0f} "
            f"word pieces/s, {pieces / len(batch):.1f} pieces/sentence; load "
            f"{os.getloadavg()[0]:.2f})"
        )

    sample = random.Random(0).sample(texts, min(args.single, len(texts)))
    latencies: Dict[str, List[float]] = {name: [] for name in encoders}
    for _ in range(args.rounds):
        for name, encoder in encoders.items():
            for text in sample:
                start = time.perf_counter()
                encoder.encode_one(text)
                latencies[name].append((time.perf_counter() - start) * 1000.0)
    for name, values in latencies.items():
        p50, p95 = np.percentile(values, [50, 95])
        print(
            f"{name}: single message ({len(sample)} messages x {args.rounds} interleaved rounds): "
            f"p50 {p50:.2f} ms, p95 {p95:.2f} ms, max {max(values):.2f} ms"
        )
    print(f"peak RSS: {peak_rss_mib():.0f} MiB (before loading the model: {rss_before:.0f} MiB); "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
