"""Fixtures that run the REAL bot: the action server and the Rasa server as subprocesses.

* ``bot_factory`` (session): ``bot_factory.start(name, ...)`` seeds the demo orders into
  fresh databases, starts ``rasa run actions`` and ``rasa run`` on free ports, waits until
  ``GET /health`` (actions) and ``GET /status?token=...`` (Rasa) answer and returns a
  :class:`BotServers`. Everything it started is stopped at the end of the session
  (SIGTERM to the process group, SIGKILL after 15 s).
* ``embedded_bot`` (session): the embedded configuration of ``make run``: the project's
  ``endpoints.yml`` with the action endpoint moved to the free port and the SQLite tracker
  store moved into a temporary directory; SQLite support and orders databases there too.
* ``production_bot`` (module): ``deploy/endpoints.production.yml`` unchanged, configured
  through environment variables: a fresh PostgreSQL database ``rasa_it_<random>`` on the
  local server (tracker store, support and orders databases; dropped afterwards), Redis
  database 15 with key prefix ``rasait<random>``, RabbitMQ queue ``rasa_it_<random>``
  (deleted afterwards).

The services follow the rule of ``tests/conftest.py``: tests that need PostgreSQL, Redis
or RabbitMQ run when the service answers, are skipped with the reason otherwise, and fail
instead of skipping when ``CI=true``.

Starting Rasa takes 20-30 s (loading TensorFlow and the model), hence the wide scopes.
"""
from __future__ import annotations

import asyncio
import uuid
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Optional

import pytest

from tests.conftest import PG_DATABASE, PG_HOST, PG_PORT, _pg_connect
from tests.servers import *  # noqa: F401,F403 - re-exported for the test modules
from tests.servers import (
    PRODUCTION_ENDPOINTS,
    BotFactory,
    BotServers,
    unavailable,
)

# ------------------------------------------------------------------- services


def postgres_user() -> str:
    """The user that can log into the local PostgreSQL server (or skip/fail)."""

    async def probe() -> Any:
        connection, user, error = await _pg_connect()
        if connection is not None:
            await connection.close()
        return user, error

    user, error = asyncio.run(probe())
    if user is None:
        unavailable(f"PostgreSQL at {PG_HOST}:{PG_PORT} is not answering: {error}")
    return user


def redis_client() -> Any:
    """A client for the local Redis database 15 (or skip/fail)."""
    import redis

    client = redis.Redis(
        host=REDIS_HOST,
        port=REDIS_PORT,
        db=REDIS_DB,
        socket_connect_timeout=SERVICE_TIMEOUT,
        socket_timeout=10,
    )
    try:
        client.ping()
    except redis.RedisError as error:
        unavailable(f"Redis at {REDIS_HOST}:{REDIS_PORT} is not answering: {error}")
    return client


def rabbitmq_url() -> str:
    return f"amqp://{RABBITMQ_USER}:{RABBITMQ_PASSWORD}@{RABBITMQ_HOST}:{RABBITMQ_PORT}/"


def require_rabbitmq() -> None:
    """Skip/fail unless RabbitMQ accepts guest/guest."""
    import aio_pika

    async def probe() -> None:
        connection = await aio_pika.connect(rabbitmq_url(), timeout=SERVICE_TIMEOUT)
        await connection.close()

    try:
        asyncio.run(probe())
    except Exception as error:  # noqa: BLE001 - reported
        unavailable(
            f"RabbitMQ at {RABBITMQ_HOST}:{RABBITMQ_PORT} is not answering: "
            f"{type(error).__name__}: {error}"
        )


def _pg_admin(user: str, statement: str) -> None:
    import psycopg2

    connection = psycopg2.connect(
        host=PG_HOST, port=PG_PORT, dbname=PG_DATABASE, user=user, connect_timeout=5
    )
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '10s'")
            cursor.execute(statement)
    finally:
        connection.close()


def _delete_queue(name: str) -> None:
    import aio_pika

    async def delete() -> None:
        connection = await aio_pika.connect(rabbitmq_url(), timeout=SERVICE_TIMEOUT)
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(name)

    asyncio.run(delete())


@contextmanager
def production_bot_started(bot_factory: BotFactory, name: str, user: str,
                           env: Optional[Dict[str, str]] = None) -> Iterator[BotServers]:
    """A bot on ``deploy/endpoints.production.yml`` with its own fresh PostgreSQL database,
    Redis key prefix and RabbitMQ queue, all removed afterwards.

    ``extra`` holds ``pg_user``, ``pg_database``, ``pg_url`` (the fresh database, which also
    holds the support and orders tables), ``redis_db``, ``redis_key_prefix`` and ``queue``.
    ``env`` adds to (or overrides) the production variables.
    """
    suffix = uuid.uuid4().hex[:10]
    database = f"rasa_{name}_{suffix}"
    key_prefix = f"rasa{name}{suffix}"
    queue = f"rasa_{name}_{suffix}"
    pg_url = f"postgresql://{user}@{PG_HOST}:{PG_PORT}/{database}"

    _pg_admin(user, f'CREATE DATABASE "{database}"')
    bot: Optional[BotServers] = None
    try:
        bot = bot_factory.start(
            name,
            endpoints=PRODUCTION_ENDPOINTS,
            support_db_url=pg_url,
            orders_db_url=pg_url,
            env={
                "RASA_DB_HOST": PG_HOST,
                "RASA_DB_PORT": str(PG_PORT),
                "RASA_DB_NAME": database,
                "RASA_DB_USER": user,
                "RASA_DB_PASSWORD": "",
                "RASA_DB_LOGIN_DB": "",
                "REDIS_HOST": REDIS_HOST,
                "REDIS_PORT": str(REDIS_PORT),
                "REDIS_DB": str(REDIS_DB),
                "REDIS_PASSWORD": "",
                "REDIS_KEY_PREFIX": key_prefix,
                "RABBITMQ_HOST": RABBITMQ_HOST,
                "RABBITMQ_PORT": str(RABBITMQ_PORT),
                "RABBITMQ_USERNAME": RABBITMQ_USER,
                "RABBITMQ_PASSWORD": RABBITMQ_PASSWORD,
                "RASA_EVENT_QUEUE": queue,
                **(env or {}),
            },
        )
        bot.extra.update(
            pg_user=user,
            pg_database=database,
            pg_url=pg_url,
            redis_db=REDIS_DB,
            redis_key_prefix=key_prefix,
            queue=queue,
        )
        yield bot
    finally:
        if bot is not None:
            bot.stop()
        try:
            _delete_queue(queue)
        except Exception:  # noqa: BLE001 - best effort; the queue may not exist
            pass
        try:
            client = redis_client()
            keys = list(client.scan_iter(match=f"{key_prefix}:*"))
            if keys:
                client.delete(*keys)
            client.close()
        except Exception:  # noqa: BLE001 - best effort
            pass
        _pg_admin(user, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture(scope="module")
def production_bot(bot_factory: BotFactory) -> Iterator[BotServers]:
    """The bot on ``deploy/endpoints.production.yml``: PostgreSQL, Redis, RabbitMQ
    (:func:`production_bot_started`)."""
    user = postgres_user()
    redis_client().close()
    require_rabbitmq()
    with production_bot_started(bot_factory, "it", user) as bot:
        yield bot


# ------------------------------------------------------------ shared checks


TICKET_REFERENCE = r"\bT-\d{6}\b"


async def load_ticket_and_handoffs(support_db_url: str, reference: str) -> Any:
    """The ticket (``TicketView``) and its handoff rows (dicts), read with SupportStore."""
    from sqlalchemy import select

    from bot import db
    from bot.support import SupportStore
    from bot.support.models import Handoff

    store = SupportStore.from_url(support_db_url)
    try:
        ticket = await store.get_ticket(reference)
        async with db.read_session(db.session_factory(store.engine)) as session:
            rows = (
                await session.execute(
                    select(Handoff).where(Handoff.ticket_id == ticket.id).order_by(Handoff.id)
                )
            ).scalars().all()
            handoffs = [
                {
                    "conversation_id": row.conversation_id,
                    "ticket_id": row.ticket_id,
                    "reason": row.reason,
                    "priority": row.priority,
                    "status": row.status,
                }
                for row in rows
            ]
        return ticket, handoffs
    finally:
        await store.dispose()


async def open_ticket_of(support_db_url: str, conversation_id: str) -> Any:
    """The conversation's newest open ticket (``TicketView``), or None."""
    from bot.support import SupportStore

    store = SupportStore.from_url(support_db_url)
    try:
        return await store.open_ticket_for_conversation(conversation_id)
    finally:
        await store.dispose()
