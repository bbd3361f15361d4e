"""Create the databases and load the demo orders.

Creates the order tables on ``ORDERS_DB_URL`` and inserts the demo orders of
:mod:`bot.orders` (missing ones only), then creates the support tables on
``SUPPORT_DB_URL``. Safe to run any number of times.

Usage::

    python -m scripts.seed_orders            # or: python scripts/seed_orders.py
    python -m scripts.seed_orders --reset    # re-create demo orders, dates relative to now
"""
from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import List, Optional

if __package__ in (None, ""):  # run as a file: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.db import redact_url  # noqa: E402
from bot.orders import DEMO_CUSTOMERS, SqlOrderSource, seed_demo_orders  # noqa: E402
from bot.settings import get_settings  # noqa: E402
from bot.support import SupportStore  # noqa: E402


def _parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="seed_orders",
        description="Create the orders and support schemas and load the demo orders.",
    )
    parser.add_argument(
        "--reset",
        action="store_true",
        help="delete and re-create the demo orders (dates relative to now)",
    )
    return parser.parse_args(argv)


async def seed(reset: bool = False, now: Optional[datetime] = None) -> List[str]:
    """Create both schemas and seed the demo orders.

    Args:
        reset: Replace existing demo orders instead of keeping them.
        now: Time the demo dates are relative to (default: the current time).

    Returns:
        Human-readable lines describing what was done.
    """
    settings = get_settings()
    now = now or datetime.now(timezone.utc)
    lines: List[str] = []

    orders = SqlOrderSource.from_url(settings.orders_db_url)
    try:
        await orders.create_schema()
        lines.append(f"orders: schema ready at {redact_url(settings.orders_db_url)}")
        report = await seed_demo_orders(orders, now, reset=reset)
        verb = "re-created" if reset else "created"
        lines.append(
            f"orders: {verb} {len(report.created)} demo order(s)"
            + (f" ({', '.join(report.created)})" if report.created else "")
            + f", {len(report.already_present)} already present"
        )
        for customer_id, info in DEMO_CUSTOMERS.items():
            recent = await orders.recent_orders(customer_id, limit=10)
            summary = ", ".join(f"{o.number} {o.status}" for o in recent)
            lines.append(f"  {customer_id} ({info['name']}): {summary}")
    finally:
        await orders.dispose()

    support = SupportStore.from_url(settings.support_db_url)
    try:
        await support.create_schema()
        lines.append(f"support: schema ready at {redact_url(settings.support_db_url)}")
    finally:
        await support.dispose()
    return lines


def main(argv: Optional[List[str]] = None) -> int:
    """Command-line entry point; returns the process exit code."""
    args = _parse_args(argv)
    for line in asyncio.run(seed(reset=args.reset)):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
