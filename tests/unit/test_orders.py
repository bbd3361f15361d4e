"""Tests of bot.orders (SqlOrderSource, demo data) and scripts/seed_orders.py."""
from __future__ import annotations

import asyncio
import dataclasses
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Dict, List

import pytest
from sqlalchemy import func, select

from bot import db
from bot.orders import (
    DEMO_CUSTOMERS,
    DEMO_ORDER_NUMBERS,
    ORDER_STATUSES,
    REFUND_STATUSES,
    OrderChangeRow,
    OrderItem,
    OrderItemRow,
    OrderNotFound,
    OrderRow,
    OrderSource,
    OrderStateError,
    OrderView,
    SeedReport,
    SqlOrderSource,
    normalize_order_number,
    seed_demo_orders,
)

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=timezone.utc)
LATER = NOW + timedelta(hours=1)

ALL_NUMBERS = [n for numbers in DEMO_ORDER_NUMBERS.values() for n in numbers]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> datetime:
    monkeypatch.setattr(db, "utcnow", lambda: LATER)
    return LATER


@pytest.fixture
async def seeded(order_source: SqlOrderSource) -> SqlOrderSource:
    await seed_demo_orders(order_source, NOW)
    return order_source


async def rows(source: SqlOrderSource, model: Any, **where: Any) -> List[Dict[str, Any]]:
    table = model.__table__
    query = select(table).order_by(*table.primary_key.columns)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    async with source.engine.connect() as connection:
        return [dict(row._mapping) for row in await connection.execute(query)]


async def counts(source: SqlOrderSource) -> Dict[str, int]:
    result = {}
    async with source.engine.connect() as connection:
        for model in (OrderRow, OrderItemRow, OrderChangeRow):
            table = model.__table__
            result[table.name] = (
                await connection.execute(select(func.count()).select_from(table))
            ).scalar()
    return result


# ---------------------------------------------------------- order numbers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("104233", "104233"),
        ("#104233", "104233"),
        ("order 104233", "104233"),
        ("Order #104233, please", "104233"),
        ("my order number is 104233.", "104233"),
        ("  104233\n", "104233"),
        ("(104233)", "104233"),
        (104233, "104233"),
        ("104233 and again #104233", "104233"),
        ("10423", None),
        ("#10423", None),
        ("1042330", None),
        ("order 1042331", None),
        ("A104233", None),
        ("104233B", None),
        ("10423a", None),
        ("order abc123", None),
        ("104 233", None),
        ("104233 or 104190", None),
        ("", None),
        (None, None),
        (True, None),
        ("١٠٤٢٣٣", None),  # non-ASCII digits are not order numbers
    ],
)
def test_normalize_order_number(text: Any, expected: Any) -> None:
    assert normalize_order_number(text) == expected


# ------------------------------------------------------------------ seeding


def test_demo_constants() -> None:
    assert set(DEMO_CUSTOMERS) == {"cust-anna", "cust-ben", "cust-chloe"}
    assert DEMO_CUSTOMERS["cust-anna"] == {
        "name": "Anna Schmidt",
        "email": "anna@example.com",
        "timezone": "Europe/Berlin",
        "locale": "de-DE",
    }
    assert DEMO_CUSTOMERS["cust-ben"]["timezone"] == "Europe/London"
    assert DEMO_CUSTOMERS["cust-chloe"]["name"] == "Chloé Martin"
    assert DEMO_ORDER_NUMBERS == {
        "cust-anna": ("104301", "104233", "104190", "104012"),
        "cust-ben": ("104250", "104205", "104122", "103987"),
        "cust-chloe": ("104275", "104218", "104077", "104160"),
    }
    assert len(set(ALL_NUMBERS)) == len(ALL_NUMBERS)
    assert all(normalize_order_number(n) == n for n in ALL_NUMBERS)


async def test_seed_is_idempotent(order_source: SqlOrderSource) -> None:
    first = await seed_demo_orders(order_source, NOW)
    assert first == SeedReport(created=tuple(ALL_NUMBERS), already_present=())
    after_first = await counts(order_source)
    assert after_first == {"orders": 12, "order_items": 17, "order_changes": 0}

    second = await seed_demo_orders(order_source, NOW + timedelta(days=5))
    assert second == SeedReport(created=(), already_present=tuple(ALL_NUMBERS))
    assert await counts(order_source) == after_first
    # Existing orders were left alone (dates still relative to the first run).
    order = await order_source.get_order("104233")
    assert order is not None and order.placed_at == NOW - timedelta(days=3)


async def test_seed_keeps_changes_unless_reset(order_source: SqlOrderSource) -> None:
    await seed_demo_orders(order_source, NOW)
    await order_source.cancel_order("104301", actor="customer:cust-anna")
    await seed_demo_orders(order_source, NOW)
    assert (await order_source.get_order("104301")).status == "cancelled"  # type: ignore[union-attr]

    report = await seed_demo_orders(order_source, NOW + timedelta(days=1), reset=True)
    assert report.created == tuple(ALL_NUMBERS)
    order = await order_source.get_order("104301")
    assert order is not None and order.status == "processing"
    assert order.placed_at == NOW + timedelta(days=1) - timedelta(hours=5)
    assert await counts(order_source) == {"orders": 12, "order_items": 17, "order_changes": 0}


async def test_seed_rejects_naive_now(order_source: SqlOrderSource) -> None:
    with pytest.raises(ValueError, match="aware"):
        await seed_demo_orders(order_source, datetime(2025, 3, 10, 12, 0))


async def test_seeded_states_cover_the_scenarios(seeded: SqlOrderSource) -> None:
    orders = [await seeded.get_order(n) for n in ALL_NUMBERS]
    assert all(o is not None for o in orders)
    by_customer: Dict[str, List[OrderView]] = {}
    for order in orders:
        assert order is not None
        by_customer.setdefault(order.customer_id, []).append(order)
        assert order.status in ORDER_STATUSES and order.refund_status in REFUND_STATUSES
        assert order.total_eur == sum(item.qty * item.price_eur for item in order.items)
        assert order.placed_at < NOW and order.placed_at.tzinfo is not None
    assert {c: len(o) for c, o in by_customer.items()} == {
        "cust-anna": 4,
        "cust-ben": 4,
        "cust-chloe": 4,
    }
    statuses = {o.status for o in orders if o}
    assert {"processing", "packed", "shipped", "in_transit", "delivered", "cancelled"} <= statuses
    moving = [o for o in orders if o and o.status in ("shipped", "in_transit")]
    assert moving and all(o.carrier and o.tracking_code and o.expected_delivery for o in moving)
    assert {o.carrier for o in orders if o and o.carrier} == {"DHL", "DPD", "UPS"}
    assert any(o.refund_status == "requested" for o in orders if o)
    assert {o.number: o.status for o in orders if o} == {
        "104301": "processing",
        "104233": "in_transit",
        "104190": "delivered",
        "104012": "delivered",
        "104250": "packed",
        "104205": "shipped",
        "104122": "delivered",
        "103987": "cancelled",
        "104275": "processing",
        "104218": "in_transit",
        "104077": "cancelled",
        "104160": "delivered",
    }


async def test_get_order_returns_full_view(seeded: SqlOrderSource) -> None:
    order = await seeded.get_order("#104233")
    assert order == OrderView(
        number="104233",
        customer_id="cust-anna",
        status="in_transit",
        carrier="DHL",
        tracking_code="00340434161234567890",
        placed_at=NOW - timedelta(days=3),
        expected_delivery=date(2025, 3, 11),
        items=(
            OrderItem("Trail running shoes", 1, Decimal("89.95")),
            OrderItem("Merino socks (3-pack)", 1, Decimal("19.90")),
        ),
        total_eur=Decimal("109.85"),
        refund_status="none",
        refund_amount_eur=None,
        paid=True,
        change_requests=(),
    )
    assert str(order.total_eur) == "109.85"
    assert order.items[0].name == "Trail running shoes" and order.items[0][1] == 1
    refund = await seeded.get_order("104122")
    assert refund is not None
    assert (refund.refund_status, refund.refund_amount_eur) == ("requested", Decimal("59.90"))
    assert refund.total_eur == Decimal("83.90")


@pytest.mark.parametrize("number", ["999999", "10423", "abc", "", "1042330"])
async def test_get_order_unknown_or_malformed(seeded: SqlOrderSource, number: str) -> None:
    assert await seeded.get_order(number) is None


async def test_recent_orders_newest_first(seeded: SqlOrderSource) -> None:
    recent = await seeded.recent_orders("cust-anna")
    assert [o.number for o in recent] == ["104301", "104233", "104190"]
    assert [o.placed_at for o in recent] == sorted((o.placed_at for o in recent), reverse=True)
    assert [o.number for o in await seeded.recent_orders("cust-chloe", limit=10)] == [
        "104275",
        "104218",
        "104077",
        "104160",
    ]
    assert [o.number for o in await seeded.recent_orders("cust-ben", limit=1)] == ["104250"]
    assert await seeded.recent_orders("cust-nobody") == []
    with pytest.raises(ValueError, match="limit"):
        await seeded.recent_orders("cust-anna", limit=0)


def test_view_flags() -> None:
    base = OrderView(
        number="100000",
        customer_id="c",
        status="processing",
        carrier=None,
        tracking_code=None,
        placed_at=NOW,
        expected_delivery=None,
        items=(),
        total_eur=Decimal("1.00"),
        refund_status="none",
        refund_amount_eur=None,
    )
    expected = {
        "processing": (True, True, False),
        "packed": (True, True, False),
        "shipped": (False, False, True),
        "in_transit": (False, False, True),
        "delivered": (False, False, True),
        "cancelled": (False, False, False),
    }
    for status, flags in expected.items():
        view = dataclasses.replace(base, status=status)
        assert (view.cancellable, view.changeable, view.refundable) == flags, status
    assert not dataclasses.replace(base, status="delivered", refund_status="requested").refundable
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.status = "packed"  # type: ignore[misc]


async def test_sql_source_implements_protocol(order_source: SqlOrderSource) -> None:
    assert isinstance(order_source, OrderSource)


# --------------------------------------------------------------- changes


async def test_cancel_paid_order_approves_refund(seeded: SqlOrderSource, clock: datetime) -> None:
    order = await seeded.cancel_order("order #104301", actor="customer:cust-anna")
    assert (order.status, order.refund_status, order.refund_amount_eur) == (
        "cancelled",
        "approved",
        Decimal("63.99"),
    )
    [row] = await rows(seeded, OrderRow, number="104301")
    assert {k: row[k] for k in ("status", "refund_status", "refund_amount_cents", "updated_at")} == {
        "status": "cancelled",
        "refund_status": "approved",
        "refund_amount_cents": 6399,
        "updated_at": LATER,
    }
    changes = await rows(seeded, OrderChangeRow)
    assert [{k: c[k] for k in ("order_number", "kind", "description", "actor", "created_at")}
            for c in changes] == [
        {
            "order_number": "104301",
            "kind": "cancel",
            "description": "cancelled",
            "actor": "customer:cust-anna",
            "created_at": LATER,
        }
    ]
    assert await seeded.get_order("104301") == order


async def test_cancel_unpaid_order_has_no_refund(seeded: SqlOrderSource) -> None:
    order = await seeded.cancel_order("104275", actor="bot")
    assert (order.status, order.refund_status, order.refund_amount_eur) == ("cancelled", "none", None)
    packed = await seeded.cancel_order("104250", actor="bot")
    assert (packed.status, packed.refund_status) == ("cancelled", "approved")


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("104233", "Order #104233 is already on its way, so it can no longer be cancelled."),
        ("104205", "Order #104205 has already shipped, so it can no longer be cancelled."),
        ("104190", "Order #104190 has already been delivered, so it can no longer be cancelled."),
        ("103987", "Order #103987 has been cancelled, so it can no longer be cancelled."),
    ],
)
async def test_cancel_order_state_errors(seeded: SqlOrderSource, number: str, message: str) -> None:
    before = await seeded.get_order(number)
    with pytest.raises(OrderStateError) as caught:
        await seeded.cancel_order(number, actor="bot")
    assert str(caught.value) == message
    assert await seeded.get_order(number) == before
    assert await counts(seeded) == {"orders": 12, "order_items": 17, "order_changes": 0}


async def test_unknown_order_raises_not_found(seeded: SqlOrderSource) -> None:
    with pytest.raises(OrderNotFound, match="no order #999999"):
        await seeded.cancel_order("999999", actor="bot")
    with pytest.raises(OrderNotFound, match="not an order number"):
        await seeded.request_change("12345", "x", actor="bot")
    with pytest.raises(OrderNotFound):
        await seeded.request_refund("abcdef", "x", actor="bot")
    assert issubclass(OrderNotFound, LookupError)
    with pytest.raises(ValueError, match="actor"):
        await seeded.cancel_order("104301", actor="")


async def test_concurrent_cancels_only_one_wins(seeded: SqlOrderSource) -> None:
    results = await asyncio.gather(
        *(seeded.cancel_order("104301", actor=f"agent:{i}") for i in range(5)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, OrderView) for r in results) == 1
    assert sum(isinstance(r, OrderStateError) for r in results) == 4
    assert len(await rows(seeded, OrderChangeRow)) == 1


async def test_request_change(seeded: SqlOrderSource, clock: datetime) -> None:
    first = await seeded.request_change("104250", "  Deliver to the neighbour at no. 5 ", "customer:cust-ben")
    second = await seeded.request_change("104250", "Gift wrap, please", "customer:cust-ben")
    assert first.change_requests == ("Deliver to the neighbour at no. 5",)
    assert second.change_requests == ("Deliver to the neighbour at no. 5", "Gift wrap, please")
    assert second.status == "packed"
    changes = await rows(seeded, OrderChangeRow, order_number="104250")
    assert [(c["kind"], c["description"], c["actor"], c["created_at"]) for c in changes] == [
        ("change", "Deliver to the neighbour at no. 5", "customer:cust-ben", LATER),
        ("change", "Gift wrap, please", "customer:cust-ben", LATER),
    ]
    with pytest.raises(OrderStateError, match="#104205 has already shipped, so it can no longer be changed"):
        await seeded.request_change("104205", "new address", "bot")
    with pytest.raises(ValueError, match="change"):
        await seeded.request_change("104301", "  ", "bot")


async def test_request_refund(seeded: SqlOrderSource, clock: datetime) -> None:
    order = await seeded.request_refund("104190", "  Zipper broken ", actor="customer:cust-anna")
    assert (order.refund_status, order.refund_amount_eur, order.status) == (
        "requested",
        Decimal("129.00"),
        "delivered",
    )
    [row] = await rows(seeded, OrderRow, number="104190")
    assert (row["refund_status"], row["refund_amount_cents"], row["refund_reason"]) == (
        "requested",
        12900,
        "Zipper broken",
    )
    [change] = await rows(seeded, OrderChangeRow)
    assert (change["kind"], change["description"], change["actor"]) == (
        "refund",
        "Zipper broken",
        "customer:cust-anna",
    )
    in_transit = await seeded.request_refund("104218", "Ordered twice", actor="bot")
    assert in_transit.refund_status == "requested"
    shipped = await seeded.request_refund("104205", "Changed my mind", actor="bot")
    assert shipped.refund_status == "requested"


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("104301", "Order #104301 hasn't shipped yet, so there is nothing to refund; it can be cancelled instead."),
        ("104250", "Order #104250 hasn't shipped yet"),
        ("104122", "Order #104122 already has a refund that is already requested and being reviewed."),
        ("104012", "Order #104012 already has a refund that is was rejected."),
        ("103987", "Order #103987 has been cancelled; its refund is already paid out."),
        ("104077", "Order #104077 has been cancelled; its refund is approved and on its way."),
    ],
)
async def test_request_refund_state_errors(seeded: SqlOrderSource, number: str, message: str) -> None:
    before = await seeded.get_order(number)
    with pytest.raises(OrderStateError) as caught:
        await seeded.request_refund(number, "reason", actor="bot")
    assert str(caught.value).startswith(message)
    assert await seeded.get_order(number) == before


async def test_request_refund_needs_reason(seeded: SqlOrderSource) -> None:
    with pytest.raises(ValueError, match="reason"):
        await seeded.request_refund("104190", "", actor="bot")


# -------------------------------------------------------------- settings/CLI


async def test_from_settings_uses_orders_db_url(
    db_url: str, isolated_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.settings import reset_settings_cache

    monkeypatch.setenv("ORDERS_DB_URL", db_url)
    reset_settings_cache()
    source = SqlOrderSource.from_settings()
    try:
        await source.create_schema()
        await seed_demo_orders(source, NOW)
    finally:
        await source.dispose()
    again = SqlOrderSource.from_url(db_url)
    try:
        assert [o.number for o in await again.recent_orders("cust-ben")] == ["104250", "104205", "104122"]
    finally:
        await again.dispose()


def test_seed_script_is_idempotent(
    db_url: str, isolated_settings: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.settings import reset_settings_cache
    from bot.support import SupportStore
    from scripts import seed_orders

    monkeypatch.setenv("ORDERS_DB_URL", db_url)
    monkeypatch.setenv("SUPPORT_DB_URL", db_url)
    reset_settings_cache()

    assert seed_orders.main([]) == 0
    first = capsys.readouterr().out
    assert "orders: created 12 demo order(s) (104301, 104233" in first
    assert "cust-anna (Anna Schmidt): 104301 processing, 104233 in_transit" in first
    assert "support: schema ready" in first

    assert seed_orders.main([]) == 0
    second = capsys.readouterr().out
    assert "orders: created 0 demo order(s), 12 already present" in second

    async def check() -> Dict[str, int]:
        source = SqlOrderSource.from_url(db_url)
        store = SupportStore.from_url(db_url)
        try:
            assert await store.audit_log() == []  # support tables exist
            return await counts(source)
        finally:
            await source.dispose()
            await store.dispose()

    assert asyncio.run(check()) == {"orders": 12, "order_items": 17, "order_changes": 0}


def test_seed_script_defaults_to_var_dir(
    isolated_settings: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from scripts import seed_orders

    assert seed_orders.main(["--reset"]) == 0
    assert "re-created 12 demo order(s)" in capsys.readouterr().out
    assert (isolated_settings.var_dir / "orders.db").is_file()
    assert (isolated_settings.var_dir / "support.db").is_file()
