"""Fixtures for tests that need the trained model (``make test`` trains it first)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, List

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "support.tar.gz"


def pytest_collection_modifyitems(items: List[pytest.Item]) -> None:
    for item in items:
        if str(item.fspath).startswith(str(Path(__file__).parent)):
            item.add_marker(pytest.mark.model)


@pytest.fixture(scope="session")
def model_path() -> Path:
    if not MODEL.exists():
        pytest.fail(f"{MODEL} is missing: run `make train` (make test does it for you)")
    return MODEL


@pytest.fixture(scope="session")
def parse(model_path: Path) -> Callable[[str], Dict]:
    from bot.nlu_runtime import load_interpreter

    return load_interpreter(model_path)


def run_rasa(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run the rasa CLI of this project's virtualenv in the project root."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), SQLALCHEMY_SILENCE_UBER_WARNING="1",
               TF_CPP_MIN_LOG_LEVEL="2", RASA_TELEMETRY_ENABLED="false")
    rasa = Path(sys.executable).parent / "rasa"
    return subprocess.run(
        [str(rasa), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
