"""Async database plumbing shared by the support store and the order source.

Settings hold *sync-style* SQLAlchemy URLs (``sqlite:////abs/path.db``,
``postgresql://user@host:5432/db``) so that tools such as Alembic or ``psql``
can use them unchanged. This module turns them into async engines:

* :func:`async_url` maps a sync-style URL onto its asyncio driver
  (``aiosqlite`` or ``asyncpg``).
* :func:`make_engine` builds an :class:`~sqlalchemy.ext.asyncio.AsyncEngine`
  with the per-backend settings every caller needs (SQLite: WAL, foreign keys,
  a 30 s busy timeout, ``BEGIN IMMEDIATE`` for write transactions; PostgreSQL:
  libpq ``options=-c name=value`` translated into asyncpg ``server_settings``).
* :func:`session_factory` returns the SQLAlchemy 1.4 equivalent of 2.0's
  ``async_sessionmaker``.
* :func:`write_session` / :func:`read_session` open one session and one
  transaction (:func:`create_all` creates tables the same way); write transactions take SQLite's write lock up front, so two
  concurrent read-modify-write transactions queue instead of failing with
  ``database is locked``.
* :class:`UTCDateTime` stores timezone-aware datetimes as naive UTC on every
  backend and always returns aware UTC datetimes.

Nothing here connects at import time; engines connect lazily on first use.
"""
from __future__ import annotations

import asyncio
import shlex
import time
import weakref
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Dict, List, Optional

from sqlalchemy import MetaData, event, or_, select, update
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.engine.url import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlalchemy.types import DateTime, TypeDecorator

__all__ = [
    "SQLITE_BUSY_TIMEOUT_SECONDS",
    "UTCDateTime",
    "async_url",
    "create_all",
    "make_engine",
    "read_session",
    "redact_url",
    "session_factory",
    "utcnow",
    "write_session",
]

SQLITE_BUSY_TIMEOUT_SECONDS = 30
SQLITE_POOL_SIZE = 5
SQLITE_POOL_OVERFLOW = 10
SQLITE_SYNCHRONOUS = "FULL"
"""``PRAGMA synchronous`` of every SQLite connection (with WAL): ``FULL`` fsyncs the WAL at
each commit, so what was committed (and acknowledged) survives a power loss."""

# Execution option set on the connection of a write transaction; the SQLite
# "begin" hook turns it into BEGIN IMMEDIATE (other backends ignore it).
_WRITE_OPTION = "support_bot_write"
WRITE_OPTION = _WRITE_OPTION
"""Execution option that makes a connection's transaction a write transaction
(``BEGIN IMMEDIATE`` on SQLite), as :func:`write_session` does."""

_ASYNC_SCHEMES = {
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql+asyncpg": "postgresql+asyncpg",
}
_SYNC_SCHEMES = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(timezone.utc)


def async_url(url: str) -> str:
    """Map a sync-style database URL onto its asyncio driver.

    Args:
        url: ``sqlite://…``, ``postgresql://…`` or ``postgres://…``; URLs that
            already name an async driver (``sqlite+aiosqlite://``,
            ``postgresql+asyncpg://``) are returned unchanged.

    Returns:
        The same URL with the scheme replaced by ``sqlite+aiosqlite`` or
        ``postgresql+asyncpg``. Everything after ``://`` is kept verbatim.

    Raises:
        ValueError: If the URL has no scheme, or names a backend or driver
            this project does not support (for example ``mysql://`` or the
            blocking ``postgresql+psycopg2://``).
    """
    if not isinstance(url, str) or "://" not in url:
        raise ValueError(
            f"Not a database URL: {url!r}. Expected e.g. 'sqlite:////abs/path.db' "
            "or 'postgresql://user@host:5432/dbname'."
        )
    scheme, rest = url.split("://", 1)
    key = scheme.lower()
    if key in _ASYNC_SCHEMES:
        return url
    if key in _SYNC_SCHEMES:
        return f"{_SYNC_SCHEMES[key]}://{rest}"
    raise ValueError(
        f"Unsupported database URL scheme {scheme!r}: use 'sqlite://', "
        "'postgresql://' or 'postgres://' (mapped to the aiosqlite/asyncpg "
        "drivers), or the async forms 'sqlite+aiosqlite://' and "
        "'postgresql+asyncpg://'. Blocking drivers and other databases are "
        "not supported."
    )


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (for log output)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - best effort, only used for messages
        return url


def make_engine(url: str) -> AsyncEngine:
    """Create an async engine for a (sync- or async-style) database URL.

    SQLite: the database file's parent directory is created, connections are pooled,
    every connection gets ``journal_mode=WAL``, ``synchronous=FULL`` (a commit is on disk
    before it returns: acknowledged messages survive a power loss) and
    ``foreign_keys=ON``, and the driver waits up to 30 s for a lock. Transactions are started explicitly (``BEGIN`` for
    reads, ``BEGIN IMMEDIATE`` for :func:`write_session`).

    PostgreSQL: a libpq-style ``options`` query parameter (``?options=-c
    search_path=myschema``) is translated into asyncpg ``server_settings``;
    pooled connections are pinged before use; the pool keeps ``SUPPORT_DB_POOL_SIZE``
    connections and opens up to ``SUPPORT_DB_POOL_OVERFLOW`` more at peaks.

    No connection is opened here.

    Args:
        url: Database URL, see :func:`async_url`.

    Returns:
        The new engine. Call ``await engine.dispose()`` when done.

    Raises:
        ValueError: For unsupported URLs or malformed ``options``.
    """
    target = make_url(async_url(url))
    if target.get_backend_name() == "sqlite":
        _ensure_sqlite_parent(target)
        engine = create_async_engine(
            target,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
            # Reuse connections (SQLAlchemy 1.4 defaults to NullPool for SQLite files, which
            # opens a connection, a thread and runs the PRAGMAs for every transaction).
            poolclass=AsyncAdaptedQueuePool,
            pool_size=SQLITE_POOL_SIZE,
            max_overflow=SQLITE_POOL_OVERFLOW,
        )
        _install_sqlite_hooks(engine)
        return engine

    connect_args: Dict[str, Any] = {}
    options = target.query.get("options")
    if options is not None:
        if not isinstance(options, str):
            raise ValueError("Give the 'options' URL parameter only once.")
        connect_args["server_settings"] = _parse_pg_options(options)
        target = target.difference_update_query(["options"])
    from bot.settings import get_settings

    settings = get_settings()
    # Connections a turn uses stay pooled: with SQLAlchemy's default (5) the 8 turns a
    # process runs at once (WIDGET_TURN_CONCURRENCY) overflowed it, and every overflow
    # connection was opened (TLS negotiation, authentication) and closed again per use.
    return create_async_engine(target, connect_args=connect_args, pool_pre_ping=True,
                               pool_size=settings.db_pool_size,
                               max_overflow=settings.db_pool_overflow)


def session_factory(engine: AsyncEngine) -> "sessionmaker[AsyncSession]":
    """Return a factory of :class:`AsyncSession` bound to ``engine``.

    Objects stay readable after commit (``expire_on_commit=False``), so views
    can be built from them without another round trip.
    """
    return sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


@asynccontextmanager
async def write_session(
    factory: "sessionmaker[AsyncSession]",
) -> AsyncIterator[AsyncSession]:
    """Open a new session in one read-write transaction.

    The transaction commits when the block exits normally and rolls back if it
    raises. On SQLite the write lock is taken at ``BEGIN`` (``BEGIN
    IMMEDIATE``), so concurrent read-modify-write transactions wait for each
    other (up to the busy timeout) instead of failing.

    Args:
        factory: A factory from :func:`session_factory`.

    Yields:
        The session; do not use it after the block.
    """
    lock = _sqlite_write_lock(factory)
    if lock is None:
        async with factory() as session:
            async with session.begin():
                await session.connection(execution_options={_WRITE_OPTION: True})
                yield session
        return
    async with lock:
        async with factory() as session:
            async with session.begin():
                await session.connection(execution_options={_WRITE_OPTION: True})
                yield session


# SQLite allows one writer at a time; a second ``BEGIN IMMEDIATE`` waits in SQLite's busy
# handler, which sleeps in steps of up to 100 ms. Writers of the same process therefore
# queue on an asyncio lock instead (FIFO, no sleeping); other processes still use the
# busy timeout. One lock per engine and event loop.
_SQLITE_WRITE_LOCKS: "weakref.WeakKeyDictionary[Any, Dict[Any, asyncio.Lock]]" = (
    weakref.WeakKeyDictionary()
)


@asynccontextmanager
async def write_connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """Open a Core connection in one read-write transaction (no ORM session).

    The same transaction as :func:`write_session` (``BEGIN IMMEDIATE`` and the
    process's writer queue on SQLite), for Core statements only: the hot path of a
    bot turn (a customer message, the turn's claim, the bot's messages, the finish)
    runs here, because an ORM session around a single ``UPDATE`` cost half of its CPU
    (issue 14, ``bench/README.md``).

    Args:
        engine: The support database engine.

    Yields:
        The connection; it commits when the block exits normally, rolls back if it
        raises.
    """
    writer = _write_engine(engine)
    lock = _sqlite_write_lock_of(engine)
    if lock is None:
        async with writer.begin() as connection:
            yield connection
        return
    async with lock:
        async with writer.begin() as connection:
            yield connection


# One engine proxy per engine that carries the write option (SQLite's BEGIN IMMEDIATE):
# setting it per connection (``execution_options``) branched a connection per call.
_WRITE_ENGINES: "weakref.WeakKeyDictionary[Any, AsyncEngine]" = weakref.WeakKeyDictionary()


def _write_engine(engine: AsyncEngine) -> AsyncEngine:
    writer = _WRITE_ENGINES.get(engine.sync_engine)
    if writer is None:
        writer = _WRITE_ENGINES[engine.sync_engine] = engine.execution_options(
            **{_WRITE_OPTION: True})
    return writer


def _sqlite_write_lock(factory: "sessionmaker[AsyncSession]") -> Optional[asyncio.Lock]:
    engine = factory.kw.get("bind")
    if engine is None:
        return None
    return _sqlite_write_lock_of(engine)


def _sqlite_write_lock_of(engine: AsyncEngine) -> Optional[asyncio.Lock]:
    if engine.dialect.name != "sqlite":
        return None
    per_loop = _SQLITE_WRITE_LOCKS.setdefault(engine.sync_engine, {})
    loop = asyncio.get_running_loop()
    lock = per_loop.get(loop)
    if lock is None:
        for stale in [key for key in per_loop if key.is_closed()]:
            del per_loop[stale]
        lock = per_loop[loop] = asyncio.Lock()
    return lock


async def create_all(engine: AsyncEngine, metadata: MetaData) -> None:
    """Create the tables of ``metadata`` that do not exist yet (idempotent).

    Runs as a write transaction, so on SQLite concurrent callers (for example
    two processes starting at once) queue instead of failing.
    """
    async with engine.connect() as connection:
        connection = await connection.execution_options(**{_WRITE_OPTION: True})
        async with connection.begin():
            await connection.run_sync(metadata.create_all)


@asynccontextmanager
async def read_session(
    factory: "sessionmaker[AsyncSession]",
) -> AsyncIterator[AsyncSession]:
    """Open a new session in one (deferred) transaction for queries."""
    async with factory() as session:
        async with session.begin():
            yield session


class UTCDateTime(TypeDecorator):
    """A timestamp column that accepts and returns aware UTC datetimes.

    Values are stored as naive UTC (``TIMESTAMP WITHOUT TIME ZONE`` on
    PostgreSQL, ISO text on SQLite), so both backends behave the same. Binding
    a naive datetime raises :class:`ValueError`.
    """

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: Optional[datetime], dialect: Any) -> Optional[datetime]:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise ValueError(f"Expected a datetime, got {type(value).__name__}.")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"Naive datetime {value.isoformat()} given; use an aware datetime.")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: Optional[datetime], dialect: Any) -> Optional[datetime]:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def _ensure_sqlite_parent(target: URL) -> None:
    database = target.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)


def _ensure_wal(cursor: Any) -> None:
    """Switch a new database file to WAL; already-WAL files only read the mode.

    Switching needs an exclusive lock, and SQLite does not wait for it: when several
    processes create the same database at once, the loser retries for up to 5 s.
    """
    for _ in range(100):
        try:
            cursor.execute("PRAGMA journal_mode")
            if str(cursor.fetchone()[0]).lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as error:  # sqlite3 / aiosqlite OperationalError
            if "locked" not in str(error).lower():
                raise
            time.sleep(0.05)  # only while a brand-new file is being created concurrently
    cursor.execute("PRAGMA journal_mode=WAL")


def _install_sqlite_hooks(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        # Let SQLAlchemy (the "begin" hook below) emit BEGIN itself instead of
        # the sqlite3 module's implicit, deferred transaction handling.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            _ensure_wal(cursor)
            # WAL + FULL: the WAL is fsynced at every commit, so a committed transaction
            # (an acknowledged customer message) survives a power loss too, not only a
            # crash of the process (NORMAL). Cost measured in docs/deployment.md.
            cursor.execute(f"PRAGMA synchronous={SQLITE_SYNCHRONOUS}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(_WRITE_OPTION):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


def _parse_pg_options(options: str) -> Dict[str, str]:
    """Parse libpq ``options`` (``-c name=value`` pairs) into a settings dict."""
    settings: Dict[str, str] = {}
    tokens = shlex.split(options)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "-c" and i + 1 < len(tokens):
            pair = tokens[i + 1]
            i += 2
        elif token.startswith("-c") and len(token) > 2:
            pair = token[2:]
            i += 1
        elif token.startswith("--") and "=" in token:
            pair = token[2:]
            i += 1
        else:
            raise ValueError(
                f"Unsupported PostgreSQL 'options' value {options!r}: only "
                "'-c name=value' settings are understood."
            )
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"Malformed setting {pair!r} in PostgreSQL 'options' {options!r}.")
        settings[name.replace("-", "_")] = value
    return settings


async def claim_due_rows(factory: "sessionmaker[AsyncSession]", table: Any, owner: str,
                         lease: float, limit: int) -> List[int]:
    """Claim up to ``limit`` due rows of an outbox table for ``owner`` (one winner each).

    An outbox row (``bot/mail``, ``bot/push``) is due when it is ``queued`` or ``sending``,
    its ``next_attempt_at`` has come and nobody holds it (``claimed_until`` unset or past).
    Each is taken with its own conditional ``UPDATE`` (status ``sending``, the claim until
    ``now + lease``, one more attempt), so of several processes exactly one gets it.

    Returns:
        The ids this call claimed, oldest due first.
    """
    now = utcnow()
    until = now + timedelta(seconds=lease)
    o = table.c
    due = (o.status.in_(("queued", "sending")), o.next_attempt_at <= now,
           or_(o.claimed_until.is_(None), o.claimed_until <= now))
    async with read_session(factory) as session:
        ids = (await session.execute(
            select(o.id).where(*due).order_by(o.next_attempt_at, o.id).limit(limit)
        )).scalars().all()
    claimed: List[int] = []
    for row_id in ids:
        async with write_session(factory) as session:
            result = await session.execute(
                update(table).where(o.id == row_id, *due)
                .values(status="sending", claimed_by=owner, claimed_until=until,
                        attempts=o.attempts + 1)
                .execution_options(synchronize_session=False))
        if result.rowcount == 1:
            claimed.append(int(row_id))
    return claimed
