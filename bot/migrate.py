"""Schema migrations of the support database (Alembic, scripts in ``bot/migrations``).

Every process that opens the support database brings it to the newest schema first
(:func:`upgrade`, idempotent and safe when several processes start at once: on SQLite
the migration runs in a ``BEGIN IMMEDIATE`` transaction while holding an exclusive lock
on a ``<database>.migrate-lock`` file, on PostgreSQL under an advisory lock). A database created before migrations existed (tables present, no
``alembic_version``) is stamped with the baseline revision first.

Command line::

    python -m bot.migrate                 # upgrade SUPPORT_DB_URL to head
    python -m bot.migrate --url URL       # another database
    python -m bot.migrate current         # print the current revision
    python -m bot.migrate revision -m "add x" --autogenerate   # for developers
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import os
import sys
from pathlib import Path
from typing import Any, AsyncIterator, List, Optional

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import db

__all__ = ["BASELINE", "alembic_config", "current_revision", "head_revision", "upgrade"]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
BASELINE = "0001"
"""The revision of the schema that ``create_all`` made before migrations existed."""
_PG_LOCK_KEY = 742_190_311  # advisory lock: one migrating process at a time


def alembic_config() -> Config:
    """An Alembic config pointing at ``bot/migrations`` (no ini file needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    """The newest revision in ``bot/migrations/versions``."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _upgrade_sync(connection: Any, target: str) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    config = alembic_config()
    config.attributes["connection"] = connection
    tables = set(inspect(connection).get_table_names())
    if "alembic_version" not in tables and "tickets" in tables:
        command.stamp(config, BASELINE)
    command.upgrade(config, target)


def _current_sync(connection: Any) -> Optional[str]:
    return MigrationContext.configure(connection).get_current_revision()


@contextlib.asynccontextmanager
async def _sqlite_file_lock(engine: AsyncEngine) -> AsyncIterator[None]:
    """Hold an exclusive ``flock`` next to a SQLite database file (no-op otherwise).

    Processes that create the same new SQLite file at once can otherwise wait on each
    other's locks until the busy timeout while one of them switches it to WAL and
    another begins its migration (seen in about 1 of 20 runs of three engines). The
    lock is taken in a worker thread, so the event loop never waits on it.
    """
    url = engine.url
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith(
        "file:"
    ):
        yield
        return
    path = Path(database).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(path.with_name(path.name + ".migrate-lock")), os.O_CREAT | os.O_RDWR, 0o600)
    try:
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


async def upgrade(engine: AsyncEngine, target: str = "head") -> None:
    """Bring the database to ``target`` (default: the newest schema), in one transaction."""
    async with _sqlite_file_lock(engine):
        async with engine.connect() as connection:
            connection = await connection.execution_options(**{db.WRITE_OPTION: True})
            async with connection.begin():
                await connection.run_sync(_upgrade_sync, target)


async def downgrade(engine: AsyncEngine, target: str) -> None:
    """Return the database to an older revision (for developers and tests)."""

    def run(connection: Any) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, target)

    async with _sqlite_file_lock(engine):
        async with engine.connect() as connection:
            connection = await connection.execution_options(**{db.WRITE_OPTION: True})
            async with connection.begin():
                await connection.run_sync(run)


async def current_revision(engine: AsyncEngine) -> Optional[str]:
    """The revision the database is at (None before the first migration)."""
    async with engine.connect() as connection:
        return await connection.run_sync(_current_sync)


def _revision(url: str, message: str, autogenerate: bool, rev_id: Optional[str]) -> None:
    """Write a new migration script (autogenerate compares the models with ``url``)."""

    async def run() -> None:
        engine = db.make_engine(url)
        try:
            await upgrade(engine)

            def write(connection: Any) -> None:
                config = alembic_config()
                config.attributes["connection"] = connection
                command.revision(
                    config, message=message, autogenerate=autogenerate, rev_id=rev_id
                )

            async with engine.connect() as connection:
                await connection.run_sync(write)
        finally:
            await engine.dispose()

    asyncio.run(run())


def main(argv: Optional[List[str]] = None) -> int:
    """Command line entry point (see the module docstring)."""
    from bot.settings import get_settings

    parser = argparse.ArgumentParser(prog="python -m bot.migrate", description=__doc__.split("\n")[0])
    parser.add_argument("action", nargs="?", default="upgrade",
                        choices=("upgrade", "current", "revision"))
    parser.add_argument("--url", default=None, help="database URL (default: SUPPORT_DB_URL)")
    parser.add_argument("--target", default="head", help="revision to upgrade to")
    parser.add_argument("-m", "--message", default="change", help="revision message")
    parser.add_argument("--autogenerate", action="store_true")
    parser.add_argument("--rev-id", default=None, help="revision id (e.g. 0003)")
    args = parser.parse_args(argv)
    url = args.url or get_settings().support_db_url
    if args.action == "revision":
        _revision(url, args.message, args.autogenerate, args.rev_id)
        return 0

    async def run() -> Optional[str]:
        engine = db.make_engine(url)
        try:
            if args.action == "upgrade":
                await upgrade(engine, args.target)
            return await current_revision(engine)
        finally:
            await engine.dispose()

    revision = asyncio.run(run())
    print(f"{db.redact_url(url)}: at revision {revision} (head {head_revision()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
