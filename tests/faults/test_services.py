"""Service outages in the production configuration: nothing acknowledged is lost (issue 13).

A bot of its own on ``deploy/endpoints.production.yml`` (PostgreSQL tracker store and support
database, Redis lock store, RabbitMQ event broker), its actions behind the controllable
:class:`~tests.faults.conftest.ActionProxy`. While customers talk through the widget
WebSocket, the tests restart PostgreSQL (between two turns of a form, and while a turn waits
for its action), hold it down (while a turn runs, and while a message is sent), stop and start
Redis (while a turn runs and another waits) and stop and start RabbitMQ. Each test checks what
a customer needs, on the services themselves:

* a message is either acknowledged and then answered exactly once once the service is back,
  or refused without an ``ack`` (``not_stored``: the widget keeps it and sends it again);
* the stored rows (``chat_messages``, Rasa's ``events``, ``orders``) hold each message and
  answer once, the customer got each answer once (frames), and the events Rasa published to
  RabbitMQ are exactly the events it stored: none lost, none twice;
* afterwards a new conversation works without restarting the bot (stale pooled connections
  are replaced).

The services are real and shared with other test runs on the machine: every outage is short
(seconds), restored in a ``finally`` and checked to answer again before the test goes on. The
tests need root and the service tools (``pg_ctlcluster``, ``redis-server``/``redis-cli``,
``rabbitmqctl``); like every service test they are skipped with the reason when something is
missing, and fail instead when ``CI=true``.
"""
from __future__ import annotations

import asyncio
import collections
import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Dict, Iterator, List

import pytest

from tests.conftest import PG_HOST, PG_PORT
from tests.faults.conftest import ActionProxy
from tests.integration.conftest import (
    postgres_user,
    production_bot_started,
    rabbitmq_url,
    redis_client,
    require_rabbitmq,
)
from tests.servers import (
    REDIS_HOST,
    REDIS_PORT,
    BotServers,
    unavailable,
)
from tests.widget.conftest import WidgetClient, new_user, token_for

pytestmark = [pytest.mark.model, pytest.mark.postgres]

#: Settings of the bot: production turn retries (3 attempts, 2 s back-off doubling), a short
#: lease so a turn whose claim could not be written is found again within seconds.
OUTAGE_ENV: Dict[str, str] = {
    "WIDGET_TURN_LEASE": "10",
    "WIDGET_RATE_MESSAGES": "60",
}
SERVICE_BACK_TIMEOUT = 90.0
"""Seconds a restored service may take to answer again."""
ANSWER_TIMEOUT = 60.0
"""Seconds within which a turn delayed by an outage must be answered once the service is back."""
#: How the machine's Redis runs (checked before it is stopped), and how it is started again.
REDIS_OPTIONS: Dict[str, str] = {
    "port": str(REDIS_PORT), "bind": "127.0.0.1 -::1", "save": "", "appendonly": "no",
    "dir": "/var/lib/redis", "logfile": "/var/log/redis/ci.log", "daemonize": "yes",
}
REDIS_START = [
    "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port",
    str(REDIS_PORT), "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
    "--logfile", "/var/log/redis/ci.log",
]


# ------------------------------------------------------------------ services


def _sh(*args: str, timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(
            f"`{' '.join(args)}` failed ({result.returncode}): {result.stdout}{result.stderr}")
    return result


def _pg_cluster() -> str:
    versions = sorted(os.listdir("/etc/postgresql"))
    assert versions, "no PostgreSQL cluster in /etc/postgresql"
    return versions[-1]


def _pg_ctl(action: str) -> None:
    _sh("pg_ctlcluster", "--skip-systemctl-redirect", _pg_cluster(), "main", action)


def pg_answers(user: str) -> bool:
    import psycopg2

    try:
        connection = psycopg2.connect(host=PG_HOST, port=PG_PORT, dbname="test", user=user,
                                      connect_timeout=2)
    except psycopg2.Error:
        return False
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except psycopg2.Error:
        return False
    finally:
        connection.close()


def redis_answers() -> bool:
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_connect_timeout=2,
                         socket_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def rabbitmq_answers() -> bool:
    import aio_pika

    async def probe() -> None:
        connection = await aio_pika.connect(rabbitmq_url(), timeout=2)
        await connection.close()

    try:
        asyncio.run(probe())
        return True
    except Exception:  # noqa: BLE001 - any failure: not (yet) answering
        return False


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.2)
    return time.monotonic() - started


class Services:
    """Stops and starts the local PostgreSQL, Redis and RabbitMQ (and checks they answer)."""

    def __init__(self, pg_user: str) -> None:
        self.pg_user = pg_user
        self.log: List[str] = []

    def _note(self, text: str) -> None:
        self.log.append(f"{time.strftime('%H:%M:%S')} {text}")
        sys.stderr.write(f"\n[services] {text}\n")

    # PostgreSQL
    def start_postgres(self) -> None:
        if not pg_answers(self.pg_user):
            _sh("pg_ctlcluster", "--skip-systemctl-redirect", _pg_cluster(), "main", "start",
                check=False)
        took = _wait_for(lambda: pg_answers(self.pg_user), SERVICE_BACK_TIMEOUT,
                         "PostgreSQL answering again")
        self._note(f"PostgreSQL up ({took:.1f} s)")

    def stop_postgres(self) -> None:
        _pg_ctl("stop")
        assert not pg_answers(self.pg_user), "PostgreSQL still answers after stop"
        self._note("PostgreSQL stopped")

    def restart_postgres(self) -> None:
        try:
            _pg_ctl("restart")
            self._note("PostgreSQL restarted")
        finally:
            self.start_postgres()

    # Redis
    def stop_redis(self) -> None:
        _sh("redis-cli", "-h", REDIS_HOST, "-p", str(REDIS_PORT), "shutdown", "nosave",
            check=False)  # the server closes the connection: an error status is normal
        _wait_for(lambda: not redis_answers(), 20, "Redis going down")
        self._note("Redis stopped")

    def start_redis(self) -> None:
        if not redis_answers():
            _sh(*REDIS_START, check=False)
        took = _wait_for(redis_answers, SERVICE_BACK_TIMEOUT, "Redis answering again")
        self._note(f"Redis up ({took:.1f} s)")

    # RabbitMQ
    def stop_rabbitmq(self) -> None:
        _sh("rabbitmqctl", "stop_app")
        assert not rabbitmq_answers(), "RabbitMQ still accepts connections after stop_app"
        self._note("RabbitMQ stopped (stop_app)")

    def start_rabbitmq(self) -> None:
        _sh("rabbitmqctl", "start_app", check=False)
        _sh("rabbitmqctl", "await_startup", check=False)
        took = _wait_for(rabbitmq_answers, SERVICE_BACK_TIMEOUT, "RabbitMQ answering again")
        self._note(f"RabbitMQ up ({took:.1f} s)")

    def ensure_all_up(self) -> None:
        """Whatever happened: every service answers again (called at the end)."""
        errors = []
        for start in (self.start_postgres, self.start_redis, self.start_rabbitmq):
            try:
                start()
            except Exception as error:  # noqa: BLE001 - try the others, then report
                errors.append(f"{start.__name__}: {error}")
        assert not errors, errors


@pytest.fixture(scope="module")
def services() -> Iterator[Services]:
    """Control of the local services (root and the service tools are required)."""
    user = postgres_user()
    redis_client().close()
    require_rabbitmq()
    missing = [tool for tool in ("pg_ctlcluster", "redis-server", "redis-cli", "rabbitmqctl")
               if shutil.which(tool) is None]
    if missing:
        unavailable(f"cannot control the services: {', '.join(missing)} not found")
    if os.geteuid() != 0:
        unavailable("cannot control the services: the outage tests must run as root")
    if not Path("/etc/postgresql").is_dir():
        unavailable("cannot control PostgreSQL: no /etc/postgresql (pg_ctlcluster clusters)")
    client = redis_client()
    try:
        running = {name: client.config_get(name).get(name) for name in REDIS_OPTIONS}
    finally:
        client.close()
    if running != REDIS_OPTIONS:
        unavailable(f"Redis runs with options this test would not restore: {running} "
                    f"(expected {REDIS_OPTIONS})")
    controller = Services(user)
    try:
        yield controller
    finally:
        controller.ensure_all_up()


@asynccontextmanager
async def postgres_down(services: Services) -> AsyncIterator[None]:
    await asyncio.to_thread(services.stop_postgres)
    try:
        yield
    finally:
        await asyncio.to_thread(services.start_postgres)


@asynccontextmanager
async def redis_down(services: Services) -> AsyncIterator[None]:
    await asyncio.to_thread(services.stop_redis)
    try:
        yield
    finally:
        await asyncio.to_thread(services.start_redis)


@asynccontextmanager
async def rabbitmq_down(services: Services) -> AsyncIterator[None]:
    await asyncio.to_thread(services.stop_rabbitmq)
    try:
        yield
    finally:
        await asyncio.to_thread(services.start_rabbitmq)


# ----------------------------------------------------------------------- bot


@pytest.fixture(scope="module")
def outage_bot(bot_factory: Any, action_proxy: ActionProxy,
               services: Services) -> Iterator[BotServers]:
    """The production configuration (as ``production_bot``), actions behind the proxy."""
    with production_bot_started(bot_factory, "outages", services.pg_user, env={
            "ACTION_SERVER_URL": f"{action_proxy.url}/webhook", **OUTAGE_ENV}) as bot:
        action_proxy.target = f"{bot.actions_url}/webhook"
        try:
            yield bot
        finally:
            services.ensure_all_up()  # before the databases and the queue are removed


@pytest.fixture(autouse=True)
def _proxy_passes(action_proxy: ActionProxy) -> Iterator[None]:
    action_proxy.set("pass")
    yield
    action_proxy.release()
    action_proxy.set("pass")


# ------------------------------------------------------------------- helpers


def _pg(bot: BotServers, query: str, *args: Any) -> List[Dict[str, Any]]:
    import psycopg2
    import psycopg2.extras

    connection = psycopg2.connect(host=PG_HOST, port=PG_PORT, dbname=bot.extra["pg_database"],
                                  user=bot.extra["pg_user"], connect_timeout=5)
    try:
        with connection.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cursor:
            cursor.execute(query, args)
            return [dict(row) for row in cursor.fetchall()]
    finally:
        connection.close()


def chat_rows(bot: BotServers, conversation_id: str) -> List[Dict[str, Any]]:
    """The stored messages of a conversation, in order."""
    return _pg(bot, "SELECT m.id, m.client_id, m.sender, m.text, m.status, m.attempts, "
                    "m.reply_to, m.turn_error FROM chat_messages m JOIN conversations c "
                    "ON c.id = m.conversation_pk WHERE c.conversation_id = %s ORDER BY m.id",
               conversation_id)


def stored_events(bot: BotServers, sender: str) -> List[Dict[str, Any]]:
    """Rasa's tracker events of a conversation in PostgreSQL, in order."""
    return [json.loads(row["data"]) for row in _pg(
        bot, "SELECT data FROM events WHERE sender_id = %s ORDER BY id", sender)]


def _event_key(event: Dict[str, Any]) -> tuple:
    return (event["event"], event.get("timestamp"), event.get("text"), event.get("name"))


class EventQueue:
    """Every event the bot published to its RabbitMQ queue (drained as the tests go)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.events: List[Dict[str, Any]] = []

    async def _drain(self) -> int:
        import aio_pika

        got = 0
        connection = await aio_pika.connect(rabbitmq_url(), timeout=5)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(self.name, passive=True)
            while True:
                incoming = await queue.get(no_ack=True, fail=False, timeout=5)
                if incoming is None:
                    return got
                self.events.append(json.loads(incoming.body))
                got += 1

    def of(self, sender: str) -> List[Dict[str, Any]]:
        return [{k: v for k, v in e.items() if k != "sender_id"} for e in self.events
                if e.get("sender_id") == sender]

    async def expect_stored(self, bot: BotServers, senders: List[str],
                            timeout: float = ANSWER_TIMEOUT, settle: float = 2.0) -> None:
        """Wait until the published events of ``senders`` are exactly their stored events
        (as multisets; nothing more arrives for ``settle`` seconds), else fail with both."""
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while True:
            if await self._drain():
                quiet_since = time.monotonic()
            stored = {s: collections.Counter(map(_event_key, stored_events(bot, s)))
                      for s in senders}
            published = {s: collections.Counter(map(_event_key, self.of(s))) for s in senders}
            if stored == published and time.monotonic() - quiet_since >= settle:
                return
            if time.monotonic() > deadline:
                report = []
                for s in senders:
                    missing = stored[s] - published[s]
                    extra = published[s] - stored[s]
                    report.append(f"{s}: stored {sum(stored[s].values())}, published "
                                  f"{sum(published[s].values())}; stored but not published "
                                  f"{sorted(missing.elements(), key=str)}; published but not "
                                  f"stored (or twice) {sorted(extra.elements(), key=str)}")
                raise AssertionError("RabbitMQ events differ from the stored events:\n"
                                     + "\n".join(report) + f"\n{bot.logs()}")
            await asyncio.sleep(0.5)


@pytest.fixture(scope="module")
def event_queue(outage_bot: BotServers) -> EventQueue:
    return EventQueue(outage_bot.extra["queue"])


async def _until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.3)


def _answers(rows: List[Dict[str, Any]], message_id: int) -> List[Dict[str, Any]]:
    return [r for r in rows if r["sender"] in ("bot", "system") and r["reply_to"] == message_id]


def _bot_frames(client: WidgetClient) -> List[Dict[str, Any]]:
    return [f["message"] for f in client.frames
            if f.get("type") == "message" and f["message"]["sender"] in ("bot", "system")]


def _texts(messages: List[Dict[str, Any]]) -> str:
    return " | ".join(m["text"] for m in messages)


def assert_each_answered_once(bot: BotServers, conversation_id: str,
                              client_ids: List[str], clients: List[WidgetClient]) -> None:
    """Each customer message stored once, ``read``, answered by the bot (no failure notice);
    every stored answer reached the customer exactly once over ``clients``; nothing else."""
    rows = chat_rows(bot, conversation_id)
    customer = [r for r in rows if r["sender"] == "customer"]
    assert [r["client_id"] for r in customer] == client_ids, rows
    answer_ids: List[int] = []
    for row in customer:
        answers = _answers(rows, row["id"])
        assert row["status"] == "read" and row["turn_error"] is None, (row, rows)
        assert answers and {a["sender"] for a in answers} == {"bot"}, (row, answers)
        answer_ids += [a["id"] for a in answers]
    assert len(rows) == len(customer) + len(answer_ids), rows  # nothing else stored
    delivered = [m["id"] for c in clients for m in _bot_frames(c)]
    assert sorted(delivered) == sorted(answer_ids), (delivered, answer_ids)
    errors = [f for c in clients for f in c.frames if f.get("type") == "error"
              and f.get("code") != "not_stored"]
    assert errors == [], errors


async def assert_new_customer_is_answered(bot: BotServers) -> None:
    """A new conversation works after the outage, without restarting the bot."""
    user = new_user("after")
    client = await WidgetClient.connect(bot, token_for(user))
    try:
        turn = await client.turn("what is your refund policy?", client_id="after-1")
        assert turn["replies"], client.frames
    finally:
        await client.close()
    assert_each_answered_once(bot, f"widget:{user}", ["after-1"], [client])


# --------------------------------------------------------------------- tests


async def test_postgres_restart_between_turns_keeps_the_conversation(
    outage_bot: BotServers, services: Services, event_queue: EventQueue,
) -> None:
    """A form is half done when PostgreSQL restarts: the next answers continue it, once."""
    user = "cust-ben"  # has open orders (scripts/seed_orders.py)
    conversation = f"widget:{user}"
    client = await WidgetClient.connect(outage_bot, token_for(user))
    first = await client.turn("i need to cancel an order", client_id="ben-1")
    assert "Which order is it about?" in _texts(first["replies"]), first["replies"]

    await asyncio.to_thread(services.restart_postgres)

    second = await client.turn("104250", client_id="ben-2")
    assert "Shall I cancel order #104250?" in _texts(second["replies"]), second["replies"]
    third = await client.turn("yes", client_id="ben-3")
    assert "order #104250 is cancelled" in _texts(third["replies"]), third["replies"]
    await client.nothing_for(2)
    await client.close()

    assert_each_answered_once(outage_bot, conversation, ["ben-1", "ben-2", "ben-3"], [client])
    users = [e["text"] for e in stored_events(outage_bot, conversation) if e["event"] == "user"]
    assert users == ["i need to cancel an order", "104250", "yes"]
    order = _pg(outage_bot, "SELECT status FROM orders WHERE number = '104250'")
    cancels = _pg(outage_bot, "SELECT actor FROM order_changes WHERE order_number = '104250' "
                              "AND kind = 'cancel'")
    assert (order, len(cancels)) == ([{"status": "cancelled"}], 1)
    await event_queue.expect_stored(outage_bot, [conversation])
    await assert_new_customer_is_answered(outage_bot)


async def test_postgres_restart_in_the_middle_of_a_turn_answers_it_once(
    outage_bot: BotServers, services: Services, action_proxy: ActionProxy,
    event_queue: EventQueue,
) -> None:
    """PostgreSQL restarts while a turn waits for its action: answered once, stored once."""
    user = new_user("pgmid")
    conversation = f"widget:{user}"
    client = await WidgetClient.connect(outage_bot, token_for(user))
    action_proxy.set("delay", 6.0)  # the action call of the turn takes 6 s
    ack = await client.say("I want to cancel my order", client_id="mid-1")
    assert ack["duplicate"] is False
    assert await asyncio.to_thread(action_proxy.called.wait, 60), "no action call"
    await asyncio.to_thread(services.restart_postgres)
    read = await client.expect("receipt", lambda f: f["status"] == "read"
                               and ack["message"]["id"] in f["ids"], timeout=ANSWER_TIMEOUT)
    assert read
    action_proxy.set("pass")
    await client.nothing_for(3)
    await client.close()

    assert_each_answered_once(outage_bot, conversation, ["mid-1"], [client])
    users = [e["text"] for e in stored_events(outage_bot, conversation) if e["event"] == "user"]
    assert users == ["I want to cancel my order"]
    await event_queue.expect_stored(outage_bot, [conversation])
    await assert_new_customer_is_answered(outage_bot)


async def test_postgres_down_in_the_middle_of_a_turn_answers_it_once_it_is_back(
    outage_bot: BotServers, services: Services, action_proxy: ActionProxy,
    event_queue: EventQueue,
) -> None:
    """PostgreSQL stops (for 6 s) while an acknowledged message's turn runs: the attempt
    cannot store its answer; once PostgreSQL is back the turn runs again and is answered
    once, and RabbitMQ gets the events Rasa stored, nothing of the failed attempt twice."""
    user = new_user("pgheld")
    conversation = f"widget:{user}"
    client = await WidgetClient.connect(outage_bot, token_for(user))
    await client.turn("hi", client_id="held-0")
    action_proxy.set("delay", 2.0)  # the action call runs when PostgreSQL is down
    ack = await client.say("I want to cancel my order", client_id="held-1")
    assert await asyncio.to_thread(action_proxy.called.wait, 60), "no action call"
    async with postgres_down(services):
        action_proxy.set("pass")
        during = await client.nothing_for(6)
        assert not [f for f in during if f.get("type") == "message"], during
    await client.expect("receipt", lambda f: f["status"] == "read"
                        and ack["message"]["id"] in f["ids"], timeout=ANSWER_TIMEOUT)
    await client.nothing_for(3)
    await client.close()

    assert_each_answered_once(outage_bot, conversation, ["held-0", "held-1"], [client])
    users = [e["text"] for e in stored_events(outage_bot, conversation) if e["event"] == "user"]
    assert users == ["hi", "I want to cancel my order"]
    await event_queue.expect_stored(outage_bot, [conversation])
    await assert_new_customer_is_answered(outage_bot)


async def test_postgres_down_refuses_messages_and_answers_the_resend_once(
    outage_bot: BotServers, services: Services, event_queue: EventQueue,
) -> None:
    """While PostgreSQL is down a message is not acknowledged (not_stored); the widget's
    resend afterwards is stored and answered once, a second resend is a duplicate."""
    user = new_user("pgdown")
    conversation = f"widget:{user}"
    token = token_for(user)
    client = await WidgetClient.connect(outage_bot, token)
    await client.turn("hi", client_id="down-0")
    text = "what is your refund policy?"
    async with postgres_down(services):
        await client.send({"type": "message", "client_id": "down-1", "text": text})
        error = await client.expect("error", lambda f: f.get("client_id") == "down-1",
                                    timeout=30)
        assert error["code"] == "not_stored" and error["retry_after"] > 0, error
        assert not [f for f in client.frames if f.get("type") == "ack"
                    and f.get("client_id") == "down-1"]
        # a customer who opens the chat now is not welcomed on a database it cannot use
        newcomer = await WidgetClient.open(outage_bot)
        await newcomer.send({"type": "hello", "token": token_for(new_user("pgdown-new")),
                             "after": None, "context": {}})
        code = await newcomer.close_code(timeout=30)
        # closed at once, no welcome; a code the widget answers by reconnecting with back-off
        # (not 4001/4002: the token is fine; not 4003/4008: those stop the widget)
        assert code not in (4001, 4002, 4003, 4008), code
        assert not [f for f in newcomer.frames if f.get("type") == "welcome"], newcomer.frames
    # the widget sends what was not acknowledged again
    turn = await client.turn(text, client_id="down-1")
    assert turn["ack"]["duplicate"] is False and turn["replies"]
    again = await client.say(text, client_id="down-1")
    assert again["duplicate"] is True and again["message"]["id"] == turn["ack"]["message"]["id"]
    later = await client.nothing_for(3)
    assert not [f for f in later if f.get("type") == "message"], later
    await client.close()

    assert_each_answered_once(outage_bot, conversation, ["down-0", "down-1"], [client])
    users = [e["text"] for e in stored_events(outage_bot, conversation) if e["event"] == "user"]
    assert users == ["hi", text]
    await event_queue.expect_stored(outage_bot, [conversation])
    await assert_new_customer_is_answered(outage_bot)


async def test_redis_outage_delays_turns_and_answers_each_once(
    outage_bot: BotServers, services: Services, action_proxy: ActionProxy,
    event_queue: EventQueue,
) -> None:
    """Redis stops while a turn runs (for ~12 s): the running turn is answered; a message
    sent meanwhile is acknowledged (it is stored) and answered once Redis is back: not
    failed, not twice."""
    user = new_user("redis")
    conversation = f"widget:{user}"
    client = await WidgetClient.connect(outage_bot, token_for(user))
    await client.turn("hi", client_id="redis-0")
    action_proxy.set("delay", 3.0)  # the running turn's first action call takes 3 s
    running = await client.say("I want to cancel my order", client_id="redis-1")
    assert await asyncio.to_thread(action_proxy.called.wait, 60), "no action call"
    async with redis_down(services):
        action_proxy.set("pass")
        waiting = await client.say("what is your refund policy?", client_id="redis-2")
        assert waiting["duplicate"] is False
        # the running turn had its lock: it is answered while Redis is down
        await client.expect("receipt", lambda f: f["status"] == "read"
                            and running["message"]["id"] in f["ids"], timeout=30)
        # now the waiting message's turn runs; Redis stays away for longer than the
        # turn's 3 attempts take (2 s, 4 s apart)
        during = await client.nothing_for(9)
        assert not [f for f in during if f.get("type") == "error"], during
        assert not [f for f in during if f.get("type") == "receipt" and f["status"] == "read"
                    and waiting["message"]["id"] in f["ids"]], during  # it waits for Redis
    read = await client.expect("receipt", lambda f: f["status"] == "read"
                               and waiting["message"]["id"] in f["ids"], timeout=ANSWER_TIMEOUT)
    assert read
    await client.nothing_for(3)
    await client.close()

    assert_each_answered_once(outage_bot, conversation, ["redis-0", "redis-1", "redis-2"],
                              [client])
    users = [e["text"] for e in stored_events(outage_bot, conversation) if e["event"] == "user"]
    assert users == ["hi", "I want to cancel my order", "what is your refund policy?"]
    await event_queue.expect_stored(outage_bot, [conversation])
    await assert_new_customer_is_answered(outage_bot)


async def test_rabbitmq_outage_loses_no_event_and_repeats_none(
    outage_bot: BotServers, services: Services, event_queue: EventQueue,
) -> None:
    """Customers are answered while RabbitMQ is down; the events of those turns reach the
    queue once it is back, each once."""
    users = [new_user("mq"), new_user("mq")]
    conversations = [f"widget:{u}" for u in users]
    clients = [await WidgetClient.connect(outage_bot, token_for(u)) for u in users]
    await clients[0].turn("hi", client_id="mq-0")
    async with rabbitmq_down(services):
        during = await clients[0].turn("what is your refund policy?", client_id="mq-1")
        assert during["replies"]
        other = await clients[1].turn("where is my order 104233", client_id="mq-2")
        assert other["replies"]
    after = await clients[0].turn("thanks", client_id="mq-3")
    assert after["replies"]
    for client in clients:
        await client.close()

    assert_each_answered_once(outage_bot, conversations[0], ["mq-0", "mq-1", "mq-3"],
                              [clients[0]])
    assert_each_answered_once(outage_bot, conversations[1], ["mq-2"], [clients[1]])
    await event_queue.expect_stored(outage_bot, conversations)
    published = [e["text"] for e in event_queue.of(conversations[0]) if e["event"] == "user"]
    assert sorted(published) == sorted(["hi", "what is your refund policy?", "thanks"])
    await assert_new_customer_is_answered(outage_bot)
