"""`make triage`: messages on stdin, one JSON object per line on stdout."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.model.conftest import ROOT

MESSAGES = [
    "what is your refund policy?",
    "where is my order 104233",
    "I want to speak to a human",
    "where the fuck is my order, this is a scam",
    "what's the weather like in paris",
    "",
    "i have a problem making a payment",
]


def test_triage_cli_prints_one_json_object_per_message(model_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2",
               SQLALCHEMY_SILENCE_UBER_WARNING="1", RASA_TELEMETRY_ENABLED="false")
    result = subprocess.run(
        [sys.executable, "-m", "bot.triage", "--model", str(model_path)],
        input="\n".join(MESSAGES) + "\n", capture_output=True, text=True, cwd=ROOT, env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["text"] for r in rows] == [m for m in MESSAGES if m]  # blank lines are skipped
    for row in rows:
        assert set(row) == {"text", "intent", "confidence", "category", "route", "priority", "reasons"}
        assert 0.0 <= row["confidence"] <= 1.0
    refund, track, human, angry, weather, charged = rows
    assert (refund["intent"], refund["category"], refund["route"], refund["priority"]) == (
        "check_refund_policy", "REFUND", "self_service", "low")
    assert (track["intent"], track["category"], track["route"], track["priority"]) == (
        "track_order", "ORDER", "guided", "normal")
    assert (human["intent"], human["route"], human["priority"], human["reasons"]) == (
        "contact_human_agent", "agent", "high", ["human_requested"])
    assert (angry["route"], angry["priority"]) == ("agent", "high")
    assert "angry_language" in angry["reasons"]
    assert (weather["intent"], weather["category"], weather["route"]) == ("out_of_scope", "OTHER", "agent")
    assert weather["reasons"] == ["not_understood"]
    assert (charged["intent"], charged["category"], charged["route"], charged["priority"]) == (
        "payment_issue", "PAYMENT", "guided", "high")
