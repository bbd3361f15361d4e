"""Alembic migrations: head equals the models, up/down round trip, legacy databases, races."""
from __future__ import annotations

import asyncio
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from bot import db, migrate
from bot.support.models import Base


def _diff(connection: Any) -> list:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return compare_metadata(context, Base.metadata)


def _tables(connection: Any) -> set:
    return set(inspect(connection).get_table_names())


async def test_head_schema_equals_the_models(db_url: str) -> None:
    engine = db.make_engine(db_url)
    try:
        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == migrate.head_revision()
        async with engine.connect() as connection:
            assert await connection.run_sync(_diff) == []
        await migrate.upgrade(engine)  # idempotent
        assert await migrate.current_revision(engine) == migrate.head_revision()
    finally:
        await engine.dispose()


async def test_downgrade_to_nothing_and_up_again(db_url: str) -> None:
    engine = db.make_engine(db_url)
    try:
        await migrate.upgrade(engine)
        await migrate.downgrade(engine, "base")
        async with engine.connect() as connection:
            assert await connection.run_sync(_tables) <= {"alembic_version"}
        await migrate.upgrade(engine)
        async with engine.connect() as connection:
            assert await connection.run_sync(_diff) == []
    finally:
        await engine.dispose()


async def test_database_made_before_migrations_is_stamped_then_upgraded(sqlite_url: str) -> None:
    engine = db.make_engine(sqlite_url)
    try:
        # what `create_all` made before migrations existed: the baseline tables only
        await migrate.upgrade(engine, migrate.BASELINE)
        async with engine.begin() as connection:
            await connection.exec_driver_sql("DROP TABLE alembic_version")
        assert await migrate.current_revision(engine) is None
        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == migrate.head_revision()
    finally:
        await engine.dispose()


async def test_processes_starting_together_migrate_once(db_url: str) -> None:
    engines = [db.make_engine(db_url) for _ in range(3)]
    try:
        await asyncio.gather(*(migrate.upgrade(engine) for engine in engines))
        for engine in engines:
            assert await migrate.current_revision(engine) == migrate.head_revision()
    finally:
        for engine in engines:
            await engine.dispose()
