"""Two Rasa processes on one PostgreSQL, Redis and RabbitMQ, as behind a load balancer.

``two_processes`` (module): the production configuration (deploy/endpoints.production.yml)
with ``REDIS_URL`` set, an action server, Rasa process A (started by the bot factory) and a
second Rasa process B on its own port with the same environment and databases. Tests put a
customer on one process and an agent on the other. Services follow tests/conftest.py: run when
they answer, skip otherwise, fail when CI=true.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Iterator, Tuple

import pytest
import requests

from tests.integration.conftest import (
    postgres_user,
    production_bot_started,
    redis_client,
    require_rabbitmq,
)
from tests.servers import (
    HOST,
    REDIS_DB,
    REDIS_HOST,
    REDIS_PORT,
    BotFactory,
    BotServers,
    _stop,
    free_port,
)


def second_rasa(bot: BotServers, label: str) -> BotServers:
    """Another Rasa process of ``bot`` (same environment, databases and action server)."""
    other = dataclasses.replace(
        bot, name=f"{bot.name}-{label}", rasa_url=f"http://{HOST}:{free_port()}",
        rasa_log=bot.rasa_log.with_name(f"rasa-{label}.log"), _rasa=None, _actions=None,
        _http=requests.Session())
    other.start_rasa()
    deadline = time.monotonic() + 180
    while not other._ready(f"{other.rasa_url}/status", token=other.token):
        if other._rasa is not None and other._rasa.poll() is not None:
            pytest.fail(f"Rasa process {label} exited during start-up.\n{other.logs()}",
                        pytrace=False)
        if time.monotonic() > deadline:
            pytest.fail(f"Rasa process {label} not ready.\n{other.logs()}", pytrace=False)
        time.sleep(0.5)
    return other


@pytest.fixture(scope="module")
def two_processes(bot_factory: BotFactory) -> Iterator[Tuple[BotServers, BotServers]]:
    user = postgres_user()
    redis_client().close()
    require_rabbitmq()
    redis_url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
    with production_bot_started(bot_factory, "live", user, env={"REDIS_URL": redis_url}) as a:
        b = second_rasa(a, "b")
        try:
            yield a, b
        finally:
            _stop(b._rasa)
