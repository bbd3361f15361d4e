"""The shop's orders, behind one small interface (:class:`OrderSource`).

The bot only ever talks to an :class:`OrderSource`. This project ships
:class:`SqlOrderSource`, which keeps orders in its own tables (``orders``,
``order_items``, ``order_changes``) on ``get_settings().orders_db_url`` and is
filled with demo data by :func:`seed_demo_orders` (``python -m
scripts.seed_orders``). A real shop integration would implement the same
protocol against the shop's API.

Order numbers are exactly six digits (``"104233"``); use
:func:`normalize_order_number` to pull one out of what the customer typed.
Money is kept in integer cents in the database and exposed as
:class:`~decimal.Decimal` euros with two places.

Demo data (fixed order numbers; dates are relative to the ``now`` given to
:func:`seed_demo_orders`, "+1d" = one day after ``now``)::

    Customer                         Order   Status      Carrier  Tracking                Placed  Expected  Paid  Refund
    -------------------------------  ------  ----------  -------  ----------------------  ------  --------  ----  ----------------------
    cust-anna  Anna Schmidt (Berlin) 104301  processing  -        -                       -5h     -         yes   none
                                     104233  in_transit  DHL      00340434161234567890    -3d     +1d       yes   none
                                     104190  delivered   DPD      01505012345678          -12d    -8d       yes   none
                                     104012  delivered   DHL      00340434165554443332    -45d    -41d      yes   rejected
    cust-ben   Ben Carter (London)   104250  packed      -        -                       -1d     +3d       yes   none
                                     104205  shipped     UPS      1Z999AA10987654321      -2d     +3d       yes   none
                                     104122  delivered   UPS      1Z999AA10123456784      -20d    -15d      yes   requested (59.90)
                                     103987  cancelled   -        -                       -30d    -         yes   refunded (24.90)
    cust-chloe Chloé Martin (Paris)  104275  processing  -        -                       -2h     -         no    none
                                     104218  in_transit  DPD      01505098765432          -4d     +1d       yes   none
                                     104077  cancelled   -        -                       -6d     -         yes   approved (27.80)
                                     104160  delivered   DHL      00340434169876543210    -9d     -6d       yes   none

The numbers are also exported as constants (``ORDER_ANNA_IN_TRANSIT`` …) and
:data:`DEMO_ORDER_NUMBERS`; the customers as :data:`DEMO_CUSTOMERS`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import (
    Any,
    Dict,
    List,
    NamedTuple,
    Optional,
    Protocol,
    Sequence,
    Tuple,
    runtime_checkable,
)
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    delete,
    select,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import declarative_base, relationship

from bot import db

__all__ = [
    "CANCELLABLE_STATUSES",
    "CHANGEABLE_STATUSES",
    "DEMO_CUSTOMERS",
    "DEMO_ORDER_NUMBERS",
    "ORDER_STATUSES",
    "REFUNDABLE_STATUSES",
    "REFUND_STATUSES",
    "OrderError",
    "OrderItem",
    "OrderNotFound",
    "OrderSource",
    "OrderStateError",
    "OrderView",
    "SeedReport",
    "SqlOrderSource",
    "normalize_order_number",
    "seed_demo_orders",
]

ORDER_STATUSES: Tuple[str, ...] = (
    "processing",
    "packed",
    "shipped",
    "in_transit",
    "delivered",
    "cancelled",
)
REFUND_STATUSES: Tuple[str, ...] = ("none", "requested", "approved", "refunded", "rejected")
CANCELLABLE_STATUSES: Tuple[str, ...] = ("processing", "packed")
CHANGEABLE_STATUSES: Tuple[str, ...] = ("processing", "packed")
REFUNDABLE_STATUSES: Tuple[str, ...] = ("shipped", "in_transit", "delivered")

_CENT = Decimal("0.01")
_ORDER_NUMBER = re.compile(r"(?<![0-9A-Za-z])#?([0-9]{6})(?![0-9A-Za-z])")


# --------------------------------------------------------------- errors/views


class OrderError(Exception):
    """Base class of order errors; ``str(error)`` is fit to show a customer."""


class OrderNotFound(OrderError, LookupError):
    """No order with that number exists."""


class OrderStateError(OrderError):
    """The order's state does not allow the requested action."""


class OrderItem(NamedTuple):
    """One order line: ``(name, qty, price_eur)``; ``price_eur`` is per unit."""

    name: str
    qty: int
    price_eur: Decimal


@dataclass(frozen=True)
class OrderView:
    """An order as the bot sees it (immutable, detached from any session).

    Attributes:
        number: Six-digit order number.
        customer_id: Shop customer id (``cust-anna``).
        status: One of :data:`ORDER_STATUSES`.
        carrier: ``DHL``/``DPD``/``UPS`` once handed to a carrier.
        tracking_code: The carrier's tracking code, if any.
        placed_at: When the order was placed (aware UTC).
        expected_delivery: Expected (or actual) delivery date, if known.
        items: The order lines.
        total_eur: Order total in euros.
        refund_status: One of :data:`REFUND_STATUSES`.
        refund_amount_eur: Amount requested/approved/refunded, if any.
        paid: Whether the order has been paid (invoice orders are not, yet).
        change_requests: Change requests recorded for this order, oldest first.
    """

    number: str
    customer_id: str
    status: str
    carrier: Optional[str]
    tracking_code: Optional[str]
    placed_at: datetime
    expected_delivery: Optional[date]
    items: Tuple[OrderItem, ...]
    total_eur: Decimal
    refund_status: str
    refund_amount_eur: Optional[Decimal]
    paid: bool = True
    change_requests: Tuple[str, ...] = ()

    @property
    def cancellable(self) -> bool:
        """True while the order has not left the warehouse."""
        return self.status in CANCELLABLE_STATUSES

    @property
    def changeable(self) -> bool:
        """True while the order can still be changed (same as cancellable)."""
        return self.status in CHANGEABLE_STATUSES

    @property
    def refundable(self) -> bool:
        """True if a refund may be requested now."""
        return self.status in REFUNDABLE_STATUSES and self.refund_status == "none" and self.paid


@runtime_checkable
class OrderSource(Protocol):
    """Where the bot reads and changes orders."""

    async def get_order(self, number: str) -> Optional[OrderView]:
        """Return the order, or None if the number is unknown or malformed."""

    async def recent_orders(self, customer_id: str, limit: int = 3) -> List[OrderView]:
        """Return the customer's newest orders, newest first."""

    async def cancel_order(self, number: str, actor: str) -> OrderView:
        """Cancel an order that has not shipped (refund approved if paid)."""

    async def request_change(self, number: str, change: str, actor: str) -> OrderView:
        """Record a change request for an order that has not shipped."""

    async def request_refund(self, number: str, reason: str, actor: str) -> OrderView:
        """Request a refund for a shipped/in-transit/delivered order."""


def normalize_order_number(text: Any) -> Optional[str]:
    """Extract a six-digit order number from customer text.

    ``"#104233"``, ``"104233"``, ``"order 104233"`` and ``"it's order #104233."``
    all give ``"104233"``. Runs of 5 or 7+ digits, digits glued to letters
    (``"A104233"``), non-strings and text with two different numbers give
    None.

    Args:
        text: What the customer typed (or a slot value).

    Returns:
        The six digits, or None.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        text = str(text)
    if not isinstance(text, str):
        return None
    found = {match.group(1) for match in _ORDER_NUMBER.finditer(text)}
    if len(found) != 1:
        return None
    return found.pop()


def _eur(cents: Optional[int]) -> Optional[Decimal]:
    if cents is None:
        return None
    return (Decimal(cents) / 100).quantize(_CENT)


def _cents(amount: Any) -> int:
    return int((Decimal(str(amount)) * 100).quantize(Decimal(1)))


# --------------------------------------------------------------------- tables

_OrdersBase: Any = declarative_base(
    metadata=MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
)
OrdersBase = _OrdersBase
"""Declarative base of the order tables (``OrdersBase.metadata`` for migrations)."""


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


class OrderRow(_OrdersBase):
    """Table ``orders``."""

    __tablename__ = "orders"

    number = Column(String(6), primary_key=True)
    customer_id = Column(String(255), nullable=False, index=True)
    status = Column(String(16), nullable=False)
    carrier = Column(String(16), nullable=True)
    tracking_code = Column(String(64), nullable=True)
    placed_at = Column(db.UTCDateTime, nullable=False)
    expected_delivery = Column(Date, nullable=True)
    total_cents = Column(Integer, nullable=False)
    paid = Column(Boolean, nullable=False, default=True)
    refund_status = Column(String(16), nullable=False, default="none")
    refund_amount_cents = Column(Integer, nullable=True)
    refund_reason = Column(Text, nullable=True)
    updated_at = Column(db.UTCDateTime, nullable=False)

    items = relationship(
        "OrderItemRow",
        order_by="OrderItemRow.position",
        lazy="selectin",
        cascade="all, delete-orphan",
    )
    changes = relationship(
        "OrderChangeRow",
        order_by="OrderChangeRow.id",
        lazy="selectin",
        cascade="all, delete-orphan",
    )

    __table_args__ = (
        CheckConstraint(_in("status", ORDER_STATUSES), name="status"),
        CheckConstraint(_in("refund_status", REFUND_STATUSES), name="refund_status"),
    )


class OrderItemRow(_OrdersBase):
    """Table ``order_items`` (unit prices in cents)."""

    __tablename__ = "order_items"

    id = Column(Integer, primary_key=True)
    order_number = Column(
        String(6), ForeignKey("orders.number", ondelete="CASCADE"), nullable=False, index=True
    )
    position = Column(Integer, nullable=False)
    name = Column(String(255), nullable=False)
    qty = Column(Integer, nullable=False)
    unit_price_cents = Column(Integer, nullable=False)


class OrderChangeRow(_OrdersBase):
    """Table ``order_changes``: change requests, cancellations, refund requests."""

    __tablename__ = "order_changes"

    id = Column(Integer, primary_key=True)
    order_number = Column(
        String(6), ForeignKey("orders.number", ondelete="CASCADE"), nullable=False, index=True
    )
    kind = Column(String(16), nullable=False)
    description = Column(Text, nullable=False)
    actor = Column(String(255), nullable=False)
    created_at = Column(db.UTCDateTime, nullable=False)

    __table_args__ = (CheckConstraint(_in("kind", ("change", "cancel", "refund")), name="kind"),)


def _view(row: OrderRow) -> OrderView:
    return OrderView(
        number=row.number,
        customer_id=row.customer_id,
        status=row.status,
        carrier=row.carrier,
        tracking_code=row.tracking_code,
        placed_at=row.placed_at,
        expected_delivery=row.expected_delivery,
        items=tuple(
            OrderItem(item.name, item.qty, _eur(item.unit_price_cents)) for item in row.items
        ),
        total_eur=_eur(row.total_cents),
        refund_status=row.refund_status,
        refund_amount_eur=_eur(row.refund_amount_cents),
        paid=bool(row.paid),
        change_requests=tuple(c.description for c in row.changes if c.kind == "change"),
    )


# --------------------------------------------------------------------- source


def _status_phrase(status: str) -> str:
    return {
        "processing": "is still being processed",
        "packed": "is packed and waiting for the carrier",
        "shipped": "has already shipped",
        "in_transit": "is already on its way",
        "delivered": "has already been delivered",
        "cancelled": "has been cancelled",
    }.get(status, f"is {status}")


class SqlOrderSource(OrderSource):
    """:class:`OrderSource` over the ``orders`` tables of a SQL database.

    Args:
        engine: The engine to use; the source owns it (see :meth:`dispose`).
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sessions = db.session_factory(engine)

    @classmethod
    def from_url(cls, url: str) -> "SqlOrderSource":
        """Create a source for a database URL (sync- or async-style)."""
        return cls(db.make_engine(url))

    @classmethod
    def from_settings(cls) -> "SqlOrderSource":
        """Create a source for ``get_settings().orders_db_url``."""
        from bot.settings import get_settings

        return cls.from_url(get_settings().orders_db_url)

    @property
    def engine(self) -> AsyncEngine:
        """The underlying engine."""
        return self._engine

    async def create_schema(self) -> None:
        """Create the order tables if they do not exist (idempotent)."""
        await db.create_all(self._engine, _OrdersBase.metadata)

    async def dispose(self) -> None:
        """Close all pooled connections."""
        await self._engine.dispose()

    # ---------------------------------------------------------------- reads

    async def get_order(self, number: str) -> Optional[OrderView]:
        """Return the order, or None if ``number`` is unknown or not 6 digits."""
        normalized = normalize_order_number(number)
        if normalized is None:
            return None
        async with db.read_session(self._sessions) as session:
            row = await session.get(OrderRow, normalized)
            return None if row is None else _view(row)

    async def recent_orders(self, customer_id: str, limit: int = 3) -> List[OrderView]:
        """Return up to ``limit`` orders of the customer, newest first."""
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive integer, got {limit!r}.")
        query = (
            select(OrderRow)
            .where(OrderRow.customer_id == customer_id)
            .order_by(OrderRow.placed_at.desc(), OrderRow.number.desc())
            .limit(limit)
        )
        async with db.read_session(self._sessions) as session:
            rows = (await session.execute(query)).scalars().all()
            return [_view(row) for row in rows]

    # -------------------------------------------------------------- changes

    async def cancel_order(self, number: str, actor: str) -> OrderView:
        """Cancel an order that is still processing or packed.

        A paid order gets ``refund_status="approved"`` for its full total.

        Raises:
            OrderNotFound: Unknown or malformed number.
            OrderStateError: The order has shipped, been delivered or cancelled.
        """
        actor = _actor(actor)
        now = db.utcnow()
        async with db.write_session(self._sessions) as session:
            row = await _order_for_update(session, number)
            if row.status not in CANCELLABLE_STATUSES:
                raise OrderStateError(
                    f"Order #{row.number} {_status_phrase(row.status)}, so it can no "
                    "longer be cancelled."
                )
            row.status = "cancelled"
            if row.paid:
                row.refund_status = "approved"
                row.refund_amount_cents = row.total_cents
            row.updated_at = now
            row.changes.append(
                OrderChangeRow(kind="cancel", description="cancelled", actor=actor, created_at=now)
            )
            await session.flush()
            return _view(row)

    async def request_change(self, number: str, change: str, actor: str) -> OrderView:
        """Record a change request (address, size …) for an unshipped order.

        Raises:
            ValueError: ``change`` is empty.
            OrderNotFound: Unknown or malformed number.
            OrderStateError: The order is no longer processing or packed.
        """
        if not isinstance(change, str) or not change.strip():
            raise ValueError("change must be a non-empty description of the change.")
        actor = _actor(actor)
        now = db.utcnow()
        async with db.write_session(self._sessions) as session:
            row = await _order_for_update(session, number)
            if row.status not in CHANGEABLE_STATUSES:
                raise OrderStateError(
                    f"Order #{row.number} {_status_phrase(row.status)}, so it can no "
                    "longer be changed."
                )
            row.updated_at = now
            row.changes.append(
                OrderChangeRow(
                    kind="change", description=change.strip(), actor=actor, created_at=now
                )
            )
            await session.flush()
            return _view(row)

    async def request_refund(self, number: str, reason: str, actor: str) -> OrderView:
        """Request a refund of the full total for a shipped or delivered order.

        Raises:
            ValueError: ``reason`` is empty.
            OrderNotFound: Unknown or malformed number.
            OrderStateError: The order has not shipped yet, was cancelled, was
                not paid, or already has a refund in progress or decided.
        """
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError("reason must be a non-empty explanation of the refund.")
        actor = _actor(actor)
        now = db.utcnow()
        async with db.write_session(self._sessions) as session:
            row = await _order_for_update(session, number)
            if row.status in CANCELLABLE_STATUSES:
                raise OrderStateError(
                    f"Order #{row.number} hasn't shipped yet, so there is nothing to "
                    "refund; it can be cancelled instead."
                )
            if row.status == "cancelled":
                raise OrderStateError(
                    f"Order #{row.number} has been cancelled; its refund is "
                    f"{_refund_phrase(row.refund_status)}."
                )
            if row.refund_status != "none":
                raise OrderStateError(
                    f"Order #{row.number} already has a refund that is "
                    f"{_refund_phrase(row.refund_status)}."
                )
            if not row.paid:
                raise OrderStateError(
                    f"Order #{row.number} hasn't been paid yet, so there is nothing to refund."
                )
            row.refund_status = "requested"
            row.refund_amount_cents = row.total_cents
            row.refund_reason = reason.strip()
            row.updated_at = now
            row.changes.append(
                OrderChangeRow(
                    kind="refund", description=reason.strip(), actor=actor, created_at=now
                )
            )
            await session.flush()
            return _view(row)


def _refund_phrase(refund_status: str) -> str:
    return {
        "none": "not applicable",
        "requested": "already requested and being reviewed",
        "approved": "approved and on its way",
        "refunded": "already paid out",
        "rejected": "was rejected",
    }.get(refund_status, refund_status)


def _actor(actor: Any) -> str:
    if not isinstance(actor, str) or not actor.strip():
        raise ValueError(f"actor must be a non-empty string, got {actor!r}.")
    return actor.strip()


async def _order_for_update(session: AsyncSession, number: Any) -> OrderRow:
    normalized = normalize_order_number(number)
    if normalized is None:
        raise OrderNotFound(f"{number!r} is not an order number (six digits, e.g. 104233).")
    row = (
        await session.execute(
            select(OrderRow).where(OrderRow.number == normalized).with_for_update()
        )
    ).scalar_one_or_none()
    if row is None:
        raise OrderNotFound(f"There is no order #{normalized}.")
    return row


# ----------------------------------------------------------------- demo data

DEMO_CUSTOMERS: Dict[str, Dict[str, str]] = {
    "cust-anna": {
        "name": "Anna Schmidt",
        "email": "anna@example.com",
        "timezone": "Europe/Berlin",
        "locale": "de-DE",
    },
    "cust-ben": {
        "name": "Ben Carter",
        "email": "ben@example.com",
        "timezone": "Europe/London",
        "locale": "en-GB",
    },
    "cust-chloe": {
        "name": "Chloé Martin",
        "email": "chloe@example.com",
        "timezone": "Europe/Paris",
        "locale": "fr-FR",
    },
}
"""Demo customers: id → {name, email, timezone, locale}."""

ORDER_ANNA_PROCESSING = "104301"
ORDER_ANNA_IN_TRANSIT = "104233"
ORDER_ANNA_DELIVERED = "104190"
ORDER_ANNA_REFUND_REJECTED = "104012"
ORDER_BEN_PACKED = "104250"
ORDER_BEN_SHIPPED = "104205"
ORDER_BEN_REFUND_REQUESTED = "104122"
ORDER_BEN_CANCELLED = "103987"
ORDER_CHLOE_PROCESSING_UNPAID = "104275"
ORDER_CHLOE_IN_TRANSIT = "104218"
ORDER_CHLOE_DELIVERED = "104160"
ORDER_CHLOE_CANCELLED = "104077"


@dataclass(frozen=True)
class _DemoOrder:
    number: str
    customer_id: str
    status: str
    placed_ago: timedelta
    items: Tuple[Tuple[str, int, str], ...]
    carrier: Optional[str] = None
    tracking_code: Optional[str] = None
    expected_in_days: Optional[int] = None
    paid: bool = True
    refund_status: str = "none"
    refund_amount: Optional[str] = None
    refund_reason: Optional[str] = None


_DEMO_ORDERS: Tuple[_DemoOrder, ...] = (
    _DemoOrder(ORDER_ANNA_PROCESSING, "cust-anna", "processing", timedelta(hours=5),
               (("Yoga mat", 1, "34.99"), ("Water bottle 750 ml", 2, "14.50"))),
    _DemoOrder(ORDER_ANNA_IN_TRANSIT, "cust-anna", "in_transit", timedelta(days=3),
               (("Trail running shoes", 1, "89.95"), ("Merino socks (3-pack)", 1, "19.90")),
               carrier="DHL", tracking_code="00340434161234567890", expected_in_days=1),
    _DemoOrder(ORDER_ANNA_DELIVERED, "cust-anna", "delivered", timedelta(days=12),
               (("Rain jacket", 1, "129.00"),),
               carrier="DPD", tracking_code="01505012345678", expected_in_days=-8),
    _DemoOrder(ORDER_ANNA_REFUND_REJECTED, "cust-anna", "delivered", timedelta(days=45),
               (("Hiking poles (pair)", 1, "45.00"),),
               carrier="DHL", tracking_code="00340434165554443332", expected_in_days=-41,
               refund_status="rejected", refund_amount="45.00",
               refund_reason="Used on a hike; outside the return conditions."),
    _DemoOrder(ORDER_BEN_PACKED, "cust-ben", "packed", timedelta(days=1),
               (("Wireless headphones", 1, "149.00"),), expected_in_days=3),
    _DemoOrder(ORDER_BEN_SHIPPED, "cust-ben", "shipped", timedelta(days=2),
               (("Backpack 30 L", 1, "79.00"),),
               carrier="UPS", tracking_code="1Z999AA10987654321", expected_in_days=3),
    _DemoOrder(ORDER_BEN_REFUND_REQUESTED, "cust-ben", "delivered", timedelta(days=20),
               (("Denim jacket", 1, "59.90"), ("Cotton T-shirt", 2, "12.00")),
               carrier="UPS", tracking_code="1Z999AA10123456784", expected_in_days=-15,
               refund_status="requested", refund_amount="59.90",
               refund_reason="Denim jacket too small."),
    _DemoOrder(ORDER_BEN_CANCELLED, "cust-ben", "cancelled", timedelta(days=30),
               (("Smartwatch strap", 1, "24.90"),),
               refund_status="refunded", refund_amount="24.90"),
    _DemoOrder(ORDER_CHLOE_PROCESSING_UNPAID, "cust-chloe", "processing", timedelta(hours=2),
               (("Linen shirt", 1, "49.00"), ("Canvas tote bag", 1, "15.00")), paid=False),
    _DemoOrder(ORDER_CHLOE_IN_TRANSIT, "cust-chloe", "in_transit", timedelta(days=4),
               (("Ceramic mug set", 1, "32.50"),),
               carrier="DPD", tracking_code="01505098765432", expected_in_days=1),
    _DemoOrder(ORDER_CHLOE_CANCELLED, "cust-chloe", "cancelled", timedelta(days=6),
               (("Scented candle", 2, "13.90"),),
               refund_status="approved", refund_amount="27.80"),
    _DemoOrder(ORDER_CHLOE_DELIVERED, "cust-chloe", "delivered", timedelta(days=9),
               (("Desk lamp", 1, "64.90"), ("LED bulb", 2, "6.50")),
               carrier="DHL", tracking_code="00340434169876543210", expected_in_days=-6),
)

DEMO_ORDER_NUMBERS: Dict[str, Tuple[str, ...]] = {
    customer: tuple(o.number for o in _DEMO_ORDERS if o.customer_id == customer)
    for customer in DEMO_CUSTOMERS
}
"""Demo customer id → their order numbers, newest first."""


@dataclass(frozen=True)
class SeedReport:
    """What :func:`seed_demo_orders` did."""

    created: Tuple[str, ...]
    already_present: Tuple[str, ...]


async def seed_demo_orders(
    source: SqlOrderSource, now: datetime, *, reset: bool = False
) -> SeedReport:
    """Insert the demo orders (see the module docstring) if they are missing.

    Idempotent: orders that already exist are left untouched (so changes made
    while testing survive), unless ``reset`` is true, in which case the demo
    orders (with their items and changes) are deleted and inserted afresh
    with dates relative to ``now``. The schema must exist
    (:meth:`SqlOrderSource.create_schema`). Runs in one transaction.

    Args:
        source: The SQL order source to fill.
        now: Aware "current" time the demo dates are relative to.
        reset: Replace existing demo orders.

    Returns:
        Which order numbers were created and which were already present.

    Raises:
        ValueError: If ``now`` is naive.
    """
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime.")
    now = now.astimezone(timezone.utc)
    numbers = [order.number for order in _DEMO_ORDERS]
    async with db.write_session(source._sessions) as session:
        if reset:
            for table in (OrderChangeRow, OrderItemRow):
                await session.execute(
                    delete(table).where(table.order_number.in_(numbers))
                )
            await session.execute(delete(OrderRow).where(OrderRow.number.in_(numbers)))
            existing = set()
        else:
            existing = set(
                (
                    await session.execute(
                        select(OrderRow.number).where(OrderRow.number.in_(numbers))
                    )
                ).scalars()
            )
        created = []
        for spec in _DEMO_ORDERS:
            if spec.number in existing:
                continue
            session.add(_demo_row(spec, now))
            created.append(spec.number)
    return SeedReport(
        created=tuple(created),
        already_present=tuple(n for n in numbers if n in existing),
    )


def _demo_row(spec: _DemoOrder, now: datetime) -> OrderRow:
    local_today = now.astimezone(ZoneInfo(DEMO_CUSTOMERS[spec.customer_id]["timezone"])).date()
    items = [
        OrderItemRow(position=i, name=name, qty=qty, unit_price_cents=_cents(price))
        for i, (name, qty, price) in enumerate(spec.items, start=1)
    ]
    return OrderRow(
        number=spec.number,
        customer_id=spec.customer_id,
        status=spec.status,
        carrier=spec.carrier,
        tracking_code=spec.tracking_code,
        placed_at=now - spec.placed_ago,
        expected_delivery=(
            None
            if spec.expected_in_days is None
            else local_today + timedelta(days=spec.expected_in_days)
        ),
        total_cents=sum(item.qty * item.unit_price_cents for item in items),
        paid=spec.paid,
        refund_status=spec.refund_status,
        refund_amount_cents=None if spec.refund_amount is None else _cents(spec.refund_amount),
        refund_reason=spec.refund_reason,
        updated_at=now,
        items=items,
        changes=[],
    )
