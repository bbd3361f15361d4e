"""The production configuration: deploy/endpoints.production.yml on real services.

``production_bot`` starts the real action server and Rasa server with the production
endpoints file, configured only through environment variables: a fresh PostgreSQL
database (tracker store + support and orders databases), Redis database 15 (lock store)
and a fresh RabbitMQ queue (event broker). Each test asserts on the service itself, so
it fails if Rasa silently fell back to SQLite, in-memory locks or no broker.

The first tests only read the configuration files (no servers, no services).
"""
from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Set

import pytest

from tests.integration.conftest import (
    ANNA_METADATA,
    PRODUCTION_ENDPOINTS,
    REDIS_DB,
    REDIS_HOST,
    REDIS_PORT,
    ROOT,
    TICKET_REFERENCE,
    BotServers,
    bot_texts,
    load_ticket_and_handoffs,
    new_conversation_id,
    rabbitmq_url,
)

pytestmark = pytest.mark.model

ENV_EXAMPLE = ROOT / "deploy" / "production.env.example"
DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"


def _endpoints_yaml() -> str:
    """The production endpoints file without its comment lines."""
    lines = PRODUCTION_ENDPOINTS.read_text().splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("#"))


def _endpoint_vars() -> Set[str]:
    return set(re.findall(r"\$\{([A-Z0-9_]+)\}", _endpoints_yaml()))


def _example_env() -> Dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            values[match.group(1)] = match.group(2)
    return values


def _pg_rows(bot: BotServers, query: str, *args: Any) -> List[tuple]:
    import psycopg2

    connection = psycopg2.connect(
        host="127.0.0.1",
        port=5432,
        dbname=bot.extra["pg_database"],
        user=bot.extra["pg_user"],
        connect_timeout=5,
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(query, args)
            return cursor.fetchall()
    finally:
        connection.close()


# ------------------------------------------------------------ configuration


def test_every_endpoint_variable_is_documented() -> None:
    used = _endpoint_vars()
    assert {"ACTION_SERVER_URL", "RASA_DB_PASSWORD", "RASA_EVENT_QUEUE"} <= used
    example = _example_env()
    assert used - set(example) == set(), "variables missing in production.env.example"
    doc = DEPLOYMENT_DOC.read_text()
    assert [name for name in sorted(used) if name not in doc] == [], "missing in deployment.md"
    for name in ("RASA_TOKEN", "SUPPORT_DB_URL", "ORDERS_DB_URL", "RASA_ENDPOINTS"):
        assert name in example and name in doc, name
    # Rasa only substitutes unquoted values: "${VAR}" would be passed on literally.
    assert not re.search(r"[\"']\$\{", _endpoints_yaml())


def _procfile(path: Path) -> Dict[str, str]:
    processes = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line)  # honcho's Procfile syntax
        if match:
            processes[match.group(1)] = match.group(2)
    return processes


def test_production_processes_are_the_two_servers_only() -> None:
    production = _procfile(ROOT / "deploy" / "Procfile.production")
    assert set(production) == {"rasa", "actions"}
    # One Rasa process per core on one port: bot.supervise runs bot.serve RASA_PROCESSES times.
    assert "-m bot.supervise " in production["rasa"]
    assert "deploy/endpoints.production.yml" in production["rasa"]
    assert "-m bot.action_server " in production["actions"]
    text = " ".join(production.values()).lower()
    for forbidden in ("demo", "seed", "token", "secret", "--auth-token", "rasa run", "make "):
        assert forbidden not in text, forbidden
    # Development runs the same two entry points, plus the demo shop.
    development = _procfile(ROOT / "Procfile")
    assert set(development) == {"rasa", "actions", "demo"}
    assert development["actions"] == production["actions"]
    # (development runs one bot.serve directly; production the same arguments supervised)
    assert development["rasa"].replace("endpoints.yml", "") == production["rasa"].replace(
        "deploy/endpoints.production.yml", "").replace("-m bot.supervise ", "-m bot.serve ")


def test_production_example_sets_every_trust_boundary_variable() -> None:
    example = _example_env()
    assert example["SUPPORT_ENV"] == "production"
    for name in ("RASA_TOKEN", "ACTION_SERVER_TOKEN", "SUPPORT_API_TOKEN", "WIDGET_JWT_SECRET",
                 "AGENT_METRICS_TOKEN"):
        assert example[name] == "", f"{name}: the example must not carry a secret"
    for name in ("WIDGET_JWT_AUDIENCE", "WIDGET_JWT_ISSUER", "WIDGET_ALLOWED_ORIGINS",
                 "RASA_INTERFACE", "ACTIONS_HOST", "ACTION_SERVER_MAX_BODY"):
        assert example[name], name
    assert "TWILIO_API_BASE" not in example
    doc = DEPLOYMENT_DOC.read_text()
    for name in ("SUPPORT_ENV", "ACTION_SERVER_TOKEN", "SUPPORT_API_TOKEN", "RASA_INTERFACE",
                 "ACTIONS_HOST", "ACTION_SERVER_MAX_BODY", "Procfile.production"):
        assert name in doc, name


def test_production_endpoints_parse_with_the_example_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rasa.core.utils import AvailableEndpoints

    for name, value in _example_env().items():
        monkeypatch.setenv(name, value)
    endpoints = AvailableEndpoints.read_endpoints(str(PRODUCTION_ENDPOINTS))

    assert endpoints.action.url == "http://127.0.0.1:5055/webhook"
    assert endpoints.tracker_store.type == "SQL"
    assert endpoints.tracker_store.kwargs["dialect"] == "postgresql"
    assert endpoints.tracker_store.kwargs["login_db"] == ""  # empty = off
    assert endpoints.lock_store.type == "redis"
    assert endpoints.lock_store.kwargs["key_prefix"].isalnum()  # else Rasa ignores it
    assert endpoints.event_broker.type == "pika"
    assert endpoints.event_broker.kwargs["queues"] == ["rasa_events"]


def test_a_missing_variable_stops_rasa(monkeypatch: pytest.MonkeyPatch) -> None:
    from rasa.core.utils import AvailableEndpoints
    from rasa.shared.exceptions import RasaException

    for name, value in _example_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("REDIS_PASSWORD")
    with pytest.raises(RasaException, match="REDIS_PASSWORD"):
        AvailableEndpoints.read_endpoints(str(PRODUCTION_ENDPOINTS))


# ------------------------------------------------------------- live services


def test_tracker_events_are_stored_in_postgresql(production_bot: BotServers) -> None:
    sender = new_conversation_id("pg")
    message = "what is your refund policy?"

    replies = production_bot.send(sender, message, ANNA_METADATA)
    assert bot_texts(replies), replies

    rows = _pg_rows(
        production_bot,
        "SELECT type_name, data FROM events WHERE sender_id = %s ORDER BY id",
        sender,
    )
    types = [type_name for type_name, _ in rows]
    assert "user" in types and "bot" in types, types
    user_texts = [json.loads(data).get("text") for type_name, data in rows if type_name == "user"]
    assert user_texts == [message]
    bot_events = [json.loads(data)["text"] for type_name, data in rows if type_name == "bot"]
    assert bot_events == bot_texts(replies)
    # The embedded SQLite tracker store was not used.
    assert not (production_bot.var_dir / "rasa_tracker.db").exists()


class _RedisMonitor:
    """Records the commands Redis executes (MONITOR) until a sentinel ECHO arrives."""

    def __init__(self) -> None:
        import redis

        self._redis = redis
        self.commands: List[Dict[str, Any]] = []
        self.error: Any = None
        self._sentinel = f"it-sentinel-{uuid.uuid4().hex}"
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        client = self._redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=60)
        try:
            with client.monitor() as monitor:
                self._ready.set()
                while True:
                    command = monitor.next_command()
                    if self._sentinel in command["command"]:
                        return
                    self.commands.append(command)
        except Exception as error:  # noqa: BLE001 - reported by stop()
            self.error = error
            self._ready.set()

    def __enter__(self) -> "_RedisMonitor":
        self._thread.start()
        assert self._ready.wait(10), "MONITOR did not start"
        assert self.error is None, self.error
        return self

    def __exit__(self, *exc: Any) -> None:
        client = self._redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=10)
        client.echo(self._sentinel)
        client.close()
        self._thread.join(30)
        assert not self._thread.is_alive(), "MONITOR did not see the sentinel"
        assert self.error is None, self.error


def test_lock_store_uses_redis(production_bot: BotServers) -> None:
    """Rasa takes and releases the conversation lock in Redis around each message.

    RedisLockStore keeps nothing once a message is processed (the lock key is deleted),
    so the test watches the commands Redis executes while the message is handled.
    """
    import redis

    sender = new_conversation_id("lock")
    key = f"{production_bot.extra['redis_key_prefix']}:lock:{sender}"

    with _RedisMonitor() as monitor:
        assert bot_texts(production_bot.send(sender, "what is your refund policy?", ANNA_METADATA))

    on_key = [c for c in monitor.commands if key in c["command"]]
    verbs = [c["command"].split(" ", 1)[0].upper() for c in on_key]
    assert "SET" in verbs and "DEL" in verbs, (verbs, monitor.commands[-20:])
    assert {c["db"] for c in on_key} == {REDIS_DB}
    assert verbs.index("SET") < len(verbs) - 1 - verbs[::-1].index("DEL")
    # The value is Rasa's TicketLock as JSON: {"conversation_id": ..., "tickets": [...]}.
    first_set = next(c["command"] for c in on_key if c["command"].upper().startswith("SET "))
    assert '"tickets"' in first_set and f'"conversation_id": "{sender}"' in first_set, first_set

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB, socket_timeout=10)
    try:
        assert client.exists(key) == 0, "the lock must be released after the message"
    finally:
        client.close()


async def test_events_are_published_to_rabbitmq(production_bot: BotServers) -> None:
    import aio_pika

    sender = new_conversation_id("mq")
    message = "where is my order 104233"
    replies = production_bot.send(sender, message, ANNA_METADATA)
    assert bot_texts(replies), replies

    received: List[Dict[str, Any]] = []
    connection = await aio_pika.connect(rabbitmq_url(), timeout=5)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(production_bot.extra["queue"], passive=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            incoming = await queue.get(no_ack=True, fail=False)
            if incoming is None:
                if any(e["event"] == "bot" for e in received):
                    break
                await asyncio.sleep(0.2)
                continue
            event = json.loads(incoming.body)
            if event.get("sender_id") == sender:
                received.append(event)

    kinds = [event["event"] for event in received]
    user = [event for event in received if event["event"] == "user"]
    assert [event["text"] for event in user] == [message], kinds
    assert user[0]["parse_data"]["intent"]["name"] == "track_order"
    assert [event["text"] for event in received if event["event"] == "bot"] == bot_texts(replies)
    assert "session_started" in kinds, kinds


async def test_handoff_ticket_is_stored_in_postgresql(production_bot: BotServers) -> None:
    sender = new_conversation_id("pgticket")
    replies = production_bot.send(sender, "i want to talk to a human", ANNA_METADATA)

    match = re.search(TICKET_REFERENCE, " ".join(bot_texts(replies)))
    assert match, replies
    reference = match.group(0)

    assert production_bot.support_db_url.startswith("postgresql://")
    ticket, handoffs = await load_ticket_and_handoffs(production_bot.support_db_url, reference)
    assert (ticket.conversation_id, ticket.source, ticket.status, ticket.priority) == (
        sender,
        "handoff",
        "queued",
        "high",
    )
    assert ticket.details["context"]["app_version"] == "5.2.0"
    assert len(handoffs) == 1, handoffs

    rows = _pg_rows(
        production_bot,
        "SELECT reference, status FROM tickets WHERE conversation_id = %s",
        sender,
    )
    assert rows == [(reference, "queued")]
    # Nothing went to the embedded SQLite defaults.
    assert not (production_bot.var_dir / "support.db").exists()
    assert not (production_bot.var_dir / "orders.db").exists()


async def test_widget_messages_and_receipts_are_stored_in_postgresql(
    production_bot: BotServers,
) -> None:
    from tests.widget.conftest import WidgetClient, new_user, token_for

    user = new_user("prod")
    client = await WidgetClient.connect(production_bot, token_for(user))
    turn = await client.turn("hi", client_id="prod-1")
    assert turn["replies"], "the bot answers over the widget channel"
    again = await client.say("hi", client_id="prod-1")
    assert again["duplicate"] is True
    await client.close()
    rows = _pg_rows(
        production_bot,
        "SELECT m.sender, m.client_id, m.status FROM chat_messages m "
        "JOIN conversations c ON c.id = m.conversation_pk "
        "WHERE c.conversation_id = %s ORDER BY m.id",
        f"widget:{user}",
    )
    assert rows == [("customer", "prod-1", "read"), ("bot", None, "sent")]
    revision = _pg_rows(production_bot, "SELECT version_num FROM alembic_version")
    from bot.migrate import head_revision

    assert revision == [(head_revision(),)]
