"""Data validation and end-to-end test stories against the trained model."""
from __future__ import annotations

import json
from pathlib import Path

from tests.model.conftest import ROOT, run_rasa


def test_rasa_data_validate_has_no_warnings() -> None:
    result = run_rasa("data", "validate", "--fail-on-warnings")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "UserWarning" not in output, output[-4000:]
    assert "No story structure conflicts found" in output


def test_end_to_end_stories_pass(model_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "core"
    result = run_rasa(
        "test", "core", "--stories", "tests/stories", "--model", str(model_path),
        "--out", str(out), "--fail-on-prediction-errors",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    report = json.loads((out / "story_report.json").read_text())
    stories = sum(1 for p in (ROOT / "tests" / "stories").glob("*.yml")
                  for line in p.read_text().splitlines() if line.strip().startswith("- story:"))
    assert report["conversation_accuracy"]["correct"] == stories
    assert report["conversation_accuracy"]["total"] == stories
    assert (out / "failed_test_stories.yml").read_text().startswith("# None of the test stories failed")
