"""Create the demo agent accounts for `make run` (idempotent; development only).

``demo-agent`` (role agent) and ``demo-admin`` (role admin) get random passwords, written
to ``var/agent_passwords.txt`` (mode 600) when the accounts are created. Existing accounts
are left alone. Prints where to log in. Refuses to run with ``SUPPORT_ENV=production``
(a production start refuses to run while these accounts exist, see bot/production.py).
"""
from __future__ import annotations

import asyncio
import os
import secrets
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.production import DEMO_AGENT_USERNAMES, refuse_in_production  # noqa: E402
from bot.settings import get_settings  # noqa: E402
from bot.support.agents import AgentStore  # noqa: E402

DEMO_ACCOUNTS = (("demo-agent", "Demo Agent", "agent"), ("demo-admin", "Demo Admin", "admin"))
assert tuple(username for username, _, _ in DEMO_ACCOUNTS) == DEMO_AGENT_USERNAMES


async def seed(url: str, passwords_file: Path) -> list:
    """Create the missing demo accounts; append their passwords to ``passwords_file``."""
    store = AgentStore.from_url(url)
    created = []
    try:
        await store.create_schema()
        existing = {a.username for a in await store.list_agents()}
        for username, name, role in DEMO_ACCOUNTS:
            if username in existing:
                continue
            password = secrets.token_urlsafe(12)
            await store.do_create_agent(username, name, password, role=role, actor="seed")
            created.append((username, role, password))
    finally:
        await store.dispose()
    if created:
        passwords_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(passwords_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as out:
            for username, role, password in created:
                out.write(f"{username} ({role}): {password}\n")
        os.chmod(passwords_file, 0o600)
    return created


def main() -> int:
    """Seed the demo accounts (never in production) and print where to log in."""
    settings = get_settings()
    refuse_in_production(settings, "scripts/seed_agents.py (the demo agent accounts)")
    passwords_file = settings.var_dir / "agent_passwords.txt"
    created = asyncio.run(seed(settings.support_db_url, passwords_file))
    port = os.environ.get("RASA_PORT", "5005")
    for username, role, _ in created:
        print(f"created demo {role} account {username!r}")
    print(f"Agent console: http://localhost:{port}/webhooks/agent/  "
          f"(demo-agent / demo-admin; passwords in {passwords_file})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
