"""Canned responses file, the admin command line and the demo seed (no model needed)."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bot.agent_console.resources import canned_responses, faq_suggestions, load_canned

ROOT = Path(__file__).resolve().parents[2]


def test_project_canned_responses_load() -> None:
    responses = load_canned(ROOT / "data" / "canned_responses.yml")
    assert len(responses) >= 5
    assert len({r.id for r in responses}) == len(responses)
    assert all(r.title and r.text for r in responses)
    assert any("{customer_name}" in r.text for r in responses)


@pytest.mark.parametrize("content, message", [
    ("- just a list", "canned_responses:"),
    ("canned_responses:\n  - id: a\n    title: A\n", "text needs"),
    ("canned_responses:\n  - {id: a, title: A, text: x}\n  - {id: a, title: B, text: y}", "duplicate"),
    ("canned_responses:\n  - {id: 'Bad Id', title: A, text: x}", "id must"),
    ("canned_responses:\n  - {id: a, title: A, text: x, colour: red}", "unknown keys"),
    ("canned_responses: [", "not valid YAML"),
])
def test_invalid_canned_files_are_explained(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "canned.yml"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_canned(path)


async def test_canned_file_is_reloaded_when_changed(tmp_path: Path) -> None:
    path = tmp_path / "canned.yml"
    path.write_text("canned_responses:\n  - {id: a, title: A, text: first}\n")
    assert [r.text for r in await canned_responses(path)] == ["first"]
    path.write_text("canned_responses:\n  - {id: a, title: A, text: second}\n")
    os.utime(path, ns=(1, 10**18))
    assert [r.text for r in await canned_responses(path)] == ["second"]


async def test_faq_suggestions_for_customer_messages() -> None:
    hits = await faq_suggestions(["Where is my parcel? It has not arrived"])
    assert hits and hits[0]["title"] and hits[0]["answer"]
    assert await faq_suggestions(["[quick reply: greet]"]) == []


def _run(args: list, env: dict, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, input=stdin,
                          capture_output=True, text=True, timeout=120)


def test_admin_cli_and_demo_seed(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SUPPORT_VAR_DIR": str(tmp_path),
           "SQLALCHEMY_SILENCE_UBER_WARNING": "1"}
    env.pop("SUPPORT_DB_URL", None)
    secret = "a long enough password"
    created = _run(["-m", "bot.agent_console.admin", "create-agent", "--username", "maria",
                    "--name", "Maria", "--role", "admin", "--password-stdin"], env, secret + "\n")
    assert created.returncode == 0, created.stderr
    assert "maria" in created.stdout and secret not in created.stdout + created.stderr
    short = _run(["-m", "bot.agent_console.admin", "create-agent", "--username", "bob",
                  "--password-stdin"], env, "short\n")
    assert short.returncode == 2 and "10 characters" in short.stderr
    no_tty = _run(["-m", "bot.agent_console.admin", "create-agent", "--username", "bob"], env)
    assert no_tty.returncode == 2 and "--password-stdin" in no_tty.stderr

    for _ in range(2):  # idempotent
        seeded = _run([str(ROOT / "scripts" / "seed_agents.py")], env)
        assert seeded.returncode == 0, seeded.stderr
        assert "/webhooks/agent/" in seeded.stdout
    passwords = tmp_path / "agent_passwords.txt"
    assert stat.S_IMODE(passwords.stat().st_mode) == 0o600
    lines = passwords.read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["demo-agent", "demo-admin"]

    listed = _run(["-m", "bot.agent_console.admin", "list-agents"], env)
    assert listed.returncode == 0
    assert all(name in listed.stdout for name in ("maria", "demo-agent", "demo-admin"))
    assert secret not in listed.stdout
