"""Shared pytest fixtures: database URLs for SQLite and PostgreSQL, stores.

* ``sqlite_url``: a fresh SQLite file in ``tmp_path``.
* ``postgres_url``: a fresh schema in the local PostgreSQL database
  ``postgresql://postgres@127.0.0.1:5432/test`` (trust auth; user ``postgres``,
  else ``root``). The URL selects the schema through libpq ``options``
  (``?options=-csearch_path%3D<schema>``, turned into asyncpg
  ``server_settings`` by :func:`bot.db.make_engine`); the schema is dropped
  afterwards, so tests (and parallel test runs) never see each other's rows.
  If the server does not answer within 2 s the test is skipped, or fails when
  ``CI=true``.
* ``db_url``: parametrized over ``sqlite`` and ``postgres`` (marked
  ``postgres``) so every store test runs on both backends.
* ``support_store`` / ``order_source``: stores on ``db_url`` with their schema
  created, disposed after the test.
* ``isolated_settings``: settings pointing at a temporary ``var`` directory.
"""
from __future__ import annotations

import os
import uuid
from typing import Any, AsyncIterator, Dict, Iterator, Optional, Tuple

import pytest

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_DATABASE = "test"
PG_USERS = ("postgres", "root")
PG_CONNECT_TIMEOUT = 2.0

# Outcome of the first probe, reused by later tests: {"user": ...} or {"error": ...}.
_PG_PROBE: Dict[str, str] = {}


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


async def _pg_connect() -> Tuple[Optional[Any], Optional[str], str]:
    """Connect as the first user that works; return (connection, user, error)."""
    import asyncpg

    if "error" in _PG_PROBE:
        return None, None, _PG_PROBE["error"]
    users = (_PG_PROBE["user"],) if "user" in _PG_PROBE else PG_USERS
    errors = []
    for user in users:
        try:
            connection = await asyncpg.connect(
                user=user,
                host=PG_HOST,
                port=PG_PORT,
                database=PG_DATABASE,
                timeout=PG_CONNECT_TIMEOUT,
            )
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(f"user {user!r}: {type(error).__name__}: {error}")
            continue
        _PG_PROBE["user"] = user
        return connection, user, ""
    message = "; ".join(errors) or "no user to try"
    _PG_PROBE["error"] = message
    return None, None, message


@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    """URL of a new SQLite database file (in a not-yet-existing sub-directory)."""
    return f"sqlite:///{tmp_path / 'db' / 'test.db'}"


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """URL of a fresh, empty schema in the local PostgreSQL ``test`` database."""
    connection, user, error = await _pg_connect()
    if connection is None:
        message = f"PostgreSQL at {PG_HOST}:{PG_PORT} is not answering: {error}"
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)
    schema = f"t_{uuid.uuid4().hex[:16]}"
    try:
        await connection.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await connection.close()

    yield (
        f"postgresql://{user}@{PG_HOST}:{PG_PORT}/{PG_DATABASE}"
        f"?options=-csearch_path%3D{schema}"
    )

    connection, _, error = await _pg_connect()
    if connection is None:  # pragma: no cover - server went away mid-run
        return
    try:
        await connection.execute("SET lock_timeout = '10s'")
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh database URL, once for SQLite and once for PostgreSQL."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def isolated_settings(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Settings with ``var_dir`` in ``tmp_path`` and default (SQLite) DB URLs."""
    from bot.settings import get_settings, reset_settings_cache

    monkeypatch.setenv("SUPPORT_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("SUPPORT_DB_URL", raising=False)
    monkeypatch.delenv("ORDERS_DB_URL", raising=False)
    reset_settings_cache()
    yield get_settings()
    reset_settings_cache()


@pytest.fixture
async def support_store(db_url: str) -> AsyncIterator[Any]:
    """A :class:`bot.support.SupportStore` on ``db_url`` with its schema."""
    from bot.support import SupportStore

    store = SupportStore.from_url(db_url)
    await store.create_schema()
    try:
        yield store
    finally:
        await store.dispose()


@pytest.fixture
async def order_source(db_url: str) -> AsyncIterator[Any]:
    """An empty :class:`bot.orders.SqlOrderSource` on ``db_url`` with its schema."""
    from bot.orders import SqlOrderSource

    source = SqlOrderSource.from_url(db_url)
    await source.create_schema()
    try:
        yield source
    finally:
        await source.dispose()


# ------------------------------------------------------------ running bots


@pytest.fixture(scope="session")
def bot_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Start real bots (see :class:`tests.servers.BotFactory`); all stop after the session."""
    from tests.servers import BotFactory

    factory = BotFactory(tmp_path_factory)
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture(scope="session")
def embedded_bot(bot_factory: Any) -> Any:
    """The bot on the embedded defaults (SQLite everywhere, in-memory lock store)."""
    return bot_factory.start("embedded")
