"""``python -m bot.serve`` runs NumPy's BLAS on one thread unless the environment says otherwise.

Each case is a fresh interpreter (NumPy reads the variables when it loads); the BLAS pool
size is read back with threadpoolctl, i.e. from the loaded OpenBLAS itself.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
from bot.serve import BLAS_THREAD_VARIABLES, single_threaded_blas
if sys.argv[1] == "numpy-first":
    import numpy
single_threaded_blas()
import numpy, threadpoolctl
print(json.dumps([p["num_threads"] for p in threadpoolctl.threadpool_info()
                  if p["user_api"] == "blas"]))
"""


def _blas_threads(mode: str, env: Dict[str, str]) -> List[int]:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    done = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=ROOT, env={**clean, **env},
                          capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: OpenBLAS uses one thread anyway")
def test_one_blas_thread_unless_set() -> None:
    assert _blas_threads("serve", {}) == [1]
    assert _blas_threads("serve", {"OPENBLAS_NUM_THREADS": "2"}) == [2]  # the operator's choice
    # NumPy already loaded: nothing changes (its pool is one per core)
    assert _blas_threads("numpy-first", {}) == [os.cpu_count()]
