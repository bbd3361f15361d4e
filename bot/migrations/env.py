"""Alembic environment for the support database (run through :mod:`bot.migrate`).

:func:`bot.migrate.upgrade` passes an open connection in ``config.attributes``; the
``alembic`` command line is not needed (``python -m bot.migrate`` wraps it).
"""
from __future__ import annotations

from alembic import context

import bot.attachments.models  # noqa: F401 - its tables are in Base.metadata too
import bot.mail.models  # noqa: F401 - its tables are in Base.metadata too
import bot.push.models  # noqa: F401 - its tables are in Base.metadata too
import bot.twilio.models  # noqa: F401 - its tables are in Base.metadata too
from bot.support.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only through bot.migrate
    raise RuntimeError("Run migrations with `python -m bot.migrate` (bot/migrate.py).")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite needs table rebuilds
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
