"""Helpers the benchmark scripts share: timestamped logging, free ports, percentiles."""
from __future__ import annotations

import socket
from datetime import datetime
from typing import List

HOST = "127.0.0.1"


def log(message: str) -> None:
    """Print ``message`` with the time, at once."""
    print(f"[{datetime.now():%H:%M:%S}] {message}", flush=True)


def free_port() -> int:
    """A TCP port on the loopback nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def percentile(values: List[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of ``values``; NaN when empty."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]
