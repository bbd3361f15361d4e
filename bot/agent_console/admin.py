"""Manage agent accounts from the command line.

Usage::

    python -m bot.agent_console.admin create-agent --username maria --name "Maria" --role agent
    echo "$PASSWORD" | python -m bot.agent_console.admin create-agent --username maria \\
        --name "Maria" --password-stdin
    python -m bot.agent_console.admin list-agents [--json]

The password is read from standard input (``--password-stdin``, first line) or asked for
twice with ``getpass``; it is never accepted as a command-line argument (it would end up
in the shell history and the process list) and never printed or logged. The database is
``SUPPORT_DB_URL`` (default ``var/support.db``).
"""
from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from typing import List, Optional, Sequence

from bot.support.agents import AgentStore, AgentView

__all__ = ["main", "create_agent", "list_agents"]


async def create_agent(url: str, username: str, name: str, password: str, role: str) -> AgentView:
    """Create an agent account in the support database at ``url``.

    Raises:
        ValueError: As :meth:`AgentStore.do_create_agent` (bad username/password/role, taken).
    """
    store = AgentStore.from_url(url)
    try:
        await store.create_schema()
        return await store.do_create_agent(username, name, password, role=role, actor="cli")
    finally:
        await store.dispose()


async def list_agents(url: str) -> List[AgentView]:
    """Every agent account of the support database at ``url``."""
    store = AgentStore.from_url(url)
    try:
        await store.create_schema()
        return await store.list_agents()
    finally:
        await store.dispose()


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise ValueError("no terminal to ask for the password: use --password-stdin")
    first = getpass.getpass("Password (10+ characters): ")
    if getpass.getpass("Repeat the password: ") != first:
        raise ValueError("the passwords do not match")
    return first


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot.agent_console.admin",
                                     description="Manage agent console accounts.")
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create-agent", help="create an agent account")
    create.add_argument("--username", required=True, help="2-64 characters: a-z 0-9 _ . -")
    create.add_argument("--name", default="", help="display name shown to customers")
    create.add_argument("--role", default="agent", choices=("agent", "admin"))
    create.add_argument("--password-stdin", action="store_true",
                        help="read the password from the first line of standard input")
    listing = sub.add_parser("list-agents", help="list agent accounts")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status."""
    from bot.settings import get_settings

    args = _parser().parse_args(argv)
    url = get_settings().support_db_url
    try:
        if args.command == "create-agent":
            password = _read_password(args.password_stdin)
            agent = asyncio.run(create_agent(url, args.username, args.name, password, args.role))
            print(f"created {agent.role} {agent.username!r} ({agent.display_name}), id {agent.id}")
            return 0
        agents = asyncio.run(list_agents(url))
        for agent in agents:
            if args.json:
                print(json.dumps({**agent.to_json(),
                                  "last_seen_at": agent.last_seen_at.isoformat()
                                  if agent.last_seen_at else None}))
            else:
                print(f"{agent.id:>4}  {agent.username:<20} {agent.role:<6} "
                      f"{'active' if agent.active else 'inactive':<8} {agent.display_name}")
        if not agents and not args.json:
            print("no agents yet: python -m bot.agent_console.admin create-agent ...")
        return 0
    except (ValueError, KeyboardInterrupt, EOFError) as error:
        print(f"error: {error or 'cancelled'}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
