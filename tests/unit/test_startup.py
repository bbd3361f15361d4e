"""Settings are checked at start-up by every process, and .env.example works when copied."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest
from honcho.environ import parse as honcho_parse

from bot.settings import get_settings
from bot.startup import ConfigurationError, check_configuration

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv" / "bin" / "python"


def shell_parse(path: Path) -> Dict[str, str]:
    """The variables ``set -a; . file`` exports (what scripts/run.sh does)."""
    script = f'set -a; . "{path}"; set +a; env -0'
    out = subprocess.run(["bash", "-c", script], env={"PATH": os.environ["PATH"]},
                         capture_output=True, check=True).stdout.decode()
    names = {line.split("=", 1)[0] for line in path.read_text().splitlines()
             if line and not line.startswith("#") and "=" in line}
    pairs = dict(item.split("=", 1) for item in out.split("\0") if "=" in item)
    return {name: pairs.get(name, "") for name in names}


@pytest.fixture
def clean_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_env_example_reads_the_same_in_the_shell_and_in_honcho() -> None:
    example = ROOT / ".env.example"
    by_shell = shell_parse(example)
    by_honcho = {k: v for k, v in honcho_parse(example.read_text()).items()}
    assert by_shell == {k: by_honcho.get(k, "") for k in by_shell}
    assert by_shell["BUSINESS_HOURS"] == "mon-fri 09:00-18:00, sat 10:00-14:00"


def test_a_copied_env_example_passes_the_start_up_check(
    monkeypatch: pytest.MonkeyPatch, clean_settings: None, tmp_path: Path
) -> None:
    for name, value in honcho_parse((ROOT / ".env.example").read_text()).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SUPPORT_VAR_DIR", str(tmp_path))
    check_configuration()
    assert get_settings().business_hours == "mon-fri 09:00-18:00, sat 10:00-14:00"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("BUSINESS_HOURS", "mon-fri09:00-18:00,sat10:00-14:00", "BUSINESS_HOURS: Cannot parse"),
        ("BUSINESS_TZ", "Europe/Nowhere", "BUSINESS_TZ"),
        ("DEFAULT_CUSTOMER_TZ", "CEST", "DEFAULT_CUSTOMER_TZ must be an IANA time zone"),
        ("SUPPORT_HOLIDAYS_COUNTRY", "XX", "SUPPORT_HOLIDAYS_COUNTRY must be a country code"),
        ("WIDGET_RATE_MESSAGES", "lots", "WIDGET_RATE_MESSAGES must be an integer"),
    ],
)
def test_a_wrong_setting_is_named(monkeypatch: pytest.MonkeyPatch, clean_settings: None,
                                  name: str, value: str, message: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=message):
        check_configuration()


def test_a_broken_designers_file_is_named(monkeypatch: pytest.MonkeyPatch, clean_settings: None,
                                          tmp_path: Path) -> None:
    data = tmp_path / "data"
    subprocess.run(["cp", "-r", str(ROOT / "data"), str(data)], check=True)
    forms = data / "forms.yml"
    forms.write_text(forms.read_text().replace('"no"', "no"))
    monkeypatch.setenv("SUPPORT_DATA_DIR", str(data))
    with pytest.raises(ConfigurationError, match=r"forms.yml.*quote yes, no, on and off"):
        check_configuration()


@pytest.mark.parametrize(
    ("module", "label"),
    [("bot.action_server", "action server"), ("bot.serve", "Rasa server"),
     ("bot.demo", "demo shop")],
)
def test_every_process_refuses_to_start_with_one_line(module: str, label: str) -> None:
    args = ["--model", "models/support.tar.gz", "--credentials", "credentials.yml",
            "--endpoints", "endpoints.yml"] if module == "bot.serve" else []
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BUSINESS_HOURS": "mon-fri09:00-18:00,",
           "RASA_TOKEN": "t" * 32, "ACTION_SERVER_TOKEN": "a" * 32}
    done = subprocess.run([str(PYTHON), "-m", module, *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if "configuration error" in line]
    assert lines == [f"{label}: configuration error: BUSINESS_HOURS: Cannot parse "
                     "'mon-fri09:00-18:00' in business hours spec 'mon-fri09:00-18:00,'; "
                     "expected e.g. 'mon-fri 09:00-18:00'"]
