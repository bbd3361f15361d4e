"""Fixtures shared by the unit tests (the NLU component tests need the MiniLM files)."""
from __future__ import annotations

from pathlib import Path
import pytest


@pytest.fixture(scope="module")
def model_dir() -> Path:
    """The MiniLM model directory; fails (never skips) when `make setup` has not fetched it."""
    from bot.settings import get_settings

    directory = get_settings().embedding_model_dir
    missing = [
        name
        for name in ("config.json", "model.safetensors", "tokenizer.json")
        if not (directory / name).is_file()
    ]
    if missing:
        pytest.fail(
            f"MiniLM model files missing in {directory} ({', '.join(missing)}): "
            "run `make setup` to fetch them"
        )
    return directory
