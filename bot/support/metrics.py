"""Support figures computed by the database: ``GROUP BY`` aggregates, no rows loaded.

:func:`support_metrics` answers ``GET /webhooks/agent/api/metrics`` and the dashboard,
:func:`totals` the Prometheus scrape. The exact definitions are in docs/agent-console.md
(*Figures*); in short, every figure counts what happened in the period ``[since, until)``,
on the UTC day it happened:

* **questions** (``conversations``): chat sessions (conversation + session number) with at
  least one customer message in the period; their day is the day of the session's first
  customer message in the period. A question is **handed off** when a handoff was recorded
  in that chat session (whenever: a session's outcome does not depend on where the period
  ends), otherwise it was **self-served**. Its category is
  the triage category of the ticket of the session's first handoff (bot-only questions have
  none, so rates are not broken down by category).
* **tickets**: tickets queued for a person in the period (``queued_at``).
* **resolution**: ``resolved_at - queued_at`` of tickets resolved in the period.
* **first response**: ``first_response_at - queued_at`` of tickets first answered in the
  period.
* **CSAT**: ratings given in the period; their category is their ticket's.

Averages are ``sum / count`` of the same rows; by_day and by_category are the same
aggregates grouped, so the overall figure is the count-weighted combination of the days
(and of the categories). A figure without data is ``None`` (never 0).

Day bucketing: ``CAST(x AS DATE)`` on PostgreSQL, ``date(x)`` on SQLite (timestamps are
stored as naive UTC on both, so both give the UTC date). Durations: ``EXTRACT(EPOCH FROM
a - b)`` on PostgreSQL, ``(julianday(a) - julianday(b)) * 86400`` on SQLite (rounded to
the millisecond). Medians: ``percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds)`` on
PostgreSQL; on SQLite (no percentile function) the middle row(s) of
``row_number() OVER (PARTITION BY key ORDER BY seconds)`` averaged in SQL, so both return
the same (interpolated) median without fetching the durations.
"""
from __future__ import annotations

from datetime import date, datetime
from typing import Any, Dict, List, Optional, Tuple

from sqlalchemy import Date, Float, and_, case, cast, extract, func, or_, select
from sqlalchemy.orm import aliased
from sqlalchemy.sql import ColumnElement

from bot.support.models import TICKET_STATUSES, ChatMessage, Conversation, Handoff, Rating, Ticket

__all__ = ["NO_TICKET", "TARGETS", "support_metrics", "targets", "totals"]

NO_TICKET = "(no ticket)"
"""by_category key of ratings that belong to no ticket (an agent wrote in a chat session
without claiming a ticket of it), so that the categories add up to the overall count."""

TARGETS: Dict[str, Dict[str, Any]] = {
    "resolution": {"figure": "resolution.average_seconds", "op": "<", "value": 900.0,
                   "text": "average resolution under 15 minutes"},
    "csat": {"figure": "csat.average", "op": ">", "value": 4.2,
             "text": "CSAT above 4.2 / 5"},
    "self_service": {"figure": "self_service_rate", "op": ">=", "value": 0.3,
                     "text": "self-service at least 30 %"},
}
"""The targets the support team quotes, checked against the overall figures."""

_Key = Tuple[Optional[str], Optional[str]]  # (day, category)


# ------------------------------------------------------------------ dialect helpers

def _is_pg(dialect: str) -> bool:
    return dialect == "postgresql"


def _day(dialect: str, column: Any) -> ColumnElement:
    """The UTC date of a timestamp column (naive UTC on both backends)."""
    if _is_pg(dialect):
        return cast(column, Date)
    return func.date(column)


def _seconds(dialect: str, end: Any, start: Any) -> ColumnElement:
    """Seconds from ``start`` to ``end`` as a float."""
    if _is_pg(dialect):
        return cast(extract("epoch", end - start), Float)
    return func.round((func.julianday(end) - func.julianday(start)) * 86400.0, 3)


def _day_text(value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, (date, datetime)):
        return value.isoformat()[:10]
    return str(value)[:10]


def _round(value: Optional[float], digits: int) -> Optional[float]:
    return None if value is None else round(float(value), digits)


def _ratio(part: int, whole: Optional[int]) -> Optional[float]:
    return round(part / whole, 3) if whole else None


# ------------------------------------------------------------------ queries

def _window(column: Any, since: Optional[datetime], until: Optional[datetime]) -> List[Any]:
    conditions = []
    if since is not None:
        conditions.append(column >= since)
    if until is not None:
        conditions.append(column < until)
    return conditions


def _durations(dialect: str, end: Any, since: Optional[datetime],
               until: Optional[datetime]) -> Any:
    """(day, category, seconds) of tickets whose ``end`` event is in the window."""
    return (select(_day(dialect, end).label("day"), Ticket.category.label("category"),
                   _seconds(dialect, end, Ticket.queued_at).label("seconds"))
            .where(Ticket.queued_at.is_not(None), end.is_not(None), end >= Ticket.queued_at,
                   *_window(end, since, until))
            .subquery())


async def _duration_stats(session: Any, dialect: str, durations: Any,
                          by: Optional[str]) -> Dict[Optional[str], Dict[str, Any]]:
    """count, average and median seconds, overall (``by=None``) or per day/category."""
    if _is_pg(dialect):
        keys = [durations.c[by]] if by else []
        query = select(*keys, func.count(), func.sum(durations.c.seconds),
                       func.percentile_cont(0.5).within_group(durations.c.seconds))
        if keys:
            query = query.group_by(*keys)
    else:
        keys = [durations.c[by]] if by else None
        ranked = select(
            *(keys or []), durations.c.seconds,
            func.row_number().over(partition_by=keys, order_by=durations.c.seconds).label("rn"),
            func.count().over(partition_by=keys).label("n"),
            func.sum(durations.c.seconds).over(partition_by=keys).label("total"),
        ).subquery()
        rkeys = [ranked.c[by]] if by else []
        # the middle row (odd n) or the two middle rows (even n); integer division
        query = (select(*rkeys, func.max(ranked.c.n), func.max(ranked.c.total),
                        func.avg(ranked.c.seconds))
                 .where(or_(ranked.c.rn == (ranked.c.n + 1) / 2,
                            ranked.c.rn == (ranked.c.n + 2) / 2)))
        if rkeys:
            query = query.group_by(*rkeys)
    result: Dict[Optional[str], Dict[str, Any]] = {}
    for row in (await session.execute(query)).all():
        key = (row[0] if by != "day" else _day_text(row[0])) if by else None
        count, total, median = int(row[-3] or 0), row[-2], row[-1]
        if not count:
            continue
        result[key] = {"count": count,
                       "average_seconds": _round(float(total) / count, 1),
                       "median_seconds": _round(median, 1)}
    return result


def _questions(since: Optional[datetime], until: Optional[datetime]) -> Tuple[Any, Any]:
    """The questions (chat sessions with customer messages in the window) and, for those
    handed off, the first handoff of that session.

    Returns:
        ``(questions, first_handoff)``: a CTE ``(pk, session, started)`` and a subquery
        ``(pk, session, handoff_id)`` to LEFT JOIN on ``(pk, session)``.
    """
    questions = (select(ChatMessage.conversation_pk.label("pk"),
                        ChatMessage.session.label("session"),
                        func.min(ChatMessage.created_at).label("started"))
                 .where(ChatMessage.sender == "customer",
                        *_window(ChatMessage.created_at, since, until))
                 .group_by(ChatMessage.conversation_pk, ChatMessage.session)
                 .cte("questions"))
    earlier = aliased(ChatMessage)
    # a handoff belongs to the chat session of the conversation's latest message before it
    session_of = (select(func.max(earlier.session))
                  .where(earlier.conversation_pk == Conversation.id,
                         earlier.created_at <= Handoff.created_at)
                  .scalar_subquery())
    handoffs = (select(Conversation.id.label("pk"), session_of.label("session"),
                       Handoff.id.label("handoff_id"))
                .join(Conversation, Conversation.conversation_id == Handoff.conversation_id)
                .where(Conversation.id.in_(select(questions.c.pk)))
                .subquery())
    first_handoff = (select(handoffs.c.pk, handoffs.c.session,
                            func.min(handoffs.c.handoff_id).label("handoff_id"))
                     .group_by(handoffs.c.pk, handoffs.c.session)
                     .subquery())
    return questions, first_handoff


async def _question_counts(session: Any, dialect: str, since: Optional[datetime],
                           until: Optional[datetime]) -> Dict[_Key, Tuple[int, int]]:
    """(questions, handed off) per (day, category of the handoff's ticket)."""
    questions, first = _questions(since, until)
    day = _day(dialect, questions.c.started)
    joined = (questions
              .outerjoin(first, and_(first.c.pk == questions.c.pk,
                                     first.c.session == questions.c.session))
              .outerjoin(Handoff, Handoff.id == first.c.handoff_id)
              .outerjoin(Ticket, Ticket.id == Handoff.ticket_id))
    query = (select(day, Ticket.category, func.count(), func.count(first.c.handoff_id))
             .select_from(joined).group_by(day, Ticket.category))
    return {(_day_text(d), c): (int(n), int(handed))
            for d, c, n, handed in (await session.execute(query)).all()}


async def _ticket_counts(session: Any, dialect: str, since: datetime,
                         until: datetime) -> Dict[_Key, int]:
    day = _day(dialect, Ticket.queued_at)
    query = (select(day, Ticket.category, func.count())
             .where(*_window(Ticket.queued_at, since, until))
             .group_by(day, Ticket.category))
    return {(_day_text(d), c): int(n) for d, c, n in (await session.execute(query)).all()}


async def _rating_counts(session: Any, dialect: str, since: datetime,
                         until: datetime) -> Dict[_Key, List[int]]:
    """[count, sum of scores, count of 1, …, count of 5] per (day, ticket category)."""
    day = _day(dialect, Rating.created_at)
    category = Ticket.category  # NULL: no ticket (NO_TICKET); not COALESCEd in SQL, as a
    # bound literal in both SELECT and GROUP BY is two parameters to PostgreSQL
    query = (select(day, category, func.count(), func.sum(Rating.score),
                    *[func.sum(case((Rating.score == n, 1), else_=0)) for n in range(1, 6)])
             .select_from(Rating).outerjoin(Ticket, Ticket.id == Rating.ticket_id)
             .where(*_window(Rating.created_at, since, until))
             .group_by(day, category))
    return {(_day_text(row[0]), row[1] if row[1] is not None else NO_TICKET):
            [int(v or 0) for v in row[2:]]
            for row in (await session.execute(query)).all()}


# ------------------------------------------------------------------ figures

def _block(tickets: int, questions: Optional[int], handed: int, ratings: List[int],
           resolution: Optional[Dict[str, Any]],
           first_response: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    count, total = ratings[0], ratings[1]
    self_served = None if questions is None else questions - handed
    empty = {"count": 0, "average_seconds": None, "median_seconds": None}
    return {
        "resolution": resolution or dict(empty),
        "first_response": first_response or dict(empty),
        "csat": {"count": count,
                 "average": round(total / count, 2) if count else None,
                 "distribution": {str(n): ratings[1 + n] for n in range(1, 6)}},
        "tickets": tickets,
        "conversations": questions,
        "self_served": self_served,
        "handoffs": handed,
        "self_service_rate": None if questions is None else _ratio(self_served or 0, questions),
        "handoff_rate": None if questions is None else _ratio(handed, questions),
    }


def _sum_where(rows: Dict[_Key, Any], match: Any, width: int = 0) -> Any:
    if width:
        out = [0] * width
        for key, values in rows.items():
            if match(key):
                out = [a + b for a, b in zip(out, values)]
        return out
    return sum(v for k, v in rows.items() if match(k))


async def support_metrics(session: Any, dialect: str, since: datetime,
                          until: datetime) -> Dict[str, Any]:
    """The figures for ``[since, until)`` (see the module docstring), with ``targets``.

    Args:
        session: An open (read) session.
        dialect: ``"sqlite"`` or ``"postgresql"``.

    Returns:
        The overall block plus ``by_category`` and ``by_day`` (``YYYY-MM-DD``, UTC) blocks
        of the same shape, and ``targets`` (:func:`targets`).
    """
    question_rows = await _question_counts(session, dialect, since, until)
    ticket_rows = await _ticket_counts(session, dialect, since, until)
    rating_rows = await _rating_counts(session, dialect, since, until)
    durations = {name: _durations(dialect, column, since, until) for name, column in
                 (("resolution", Ticket.resolved_at),
                  ("first_response", Ticket.first_response_at))}
    stats: Dict[str, Dict[Optional[str], Dict[Optional[str], Dict[str, Any]]]] = {}
    for name, subquery in durations.items():
        stats[name] = {by: await _duration_stats(session, dialect, subquery, by)
                       for by in (None, "day", "category")}

    def block(match: Any, by: Optional[str], key: Optional[str],
              rates: bool = True) -> Dict[str, Any]:
        questions = _sum_where(question_rows, match, 2)
        return _block(
            tickets=_sum_where(ticket_rows, match),
            questions=questions[0] if rates else None,
            handed=questions[1],
            ratings=_sum_where(rating_rows, match, 7),
            resolution=stats["resolution"][by].get(key),
            first_response=stats["first_response"][by].get(key))

    result = block(lambda k: True, None, None)
    days = sorted({k[0] for rows in (question_rows, ticket_rows, rating_rows) for k in rows}
                  | {d for name in stats for d in stats[name]["day"]})
    categories = sorted({k[1] for rows in (ticket_rows, rating_rows) for k in rows}
                        | {k[1] for k, (_, handed) in question_rows.items()
                           if k[1] is not None and handed}
                        | {c for name in stats for c in stats[name]["category"]})
    result["by_category"] = {
        c: block(lambda k, c=c: k[1] == c, "category", c, rates=False) for c in categories}
    result["by_day"] = {d: block(lambda k, d=d: k[0] == d, "day", d) for d in days}
    result["targets"] = targets(result)
    return result


def targets(figures: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """Each target of :data:`TARGETS` with the overall figure and whether it is met
    (``None``: no data)."""
    checks = {"<": lambda a, b: a < b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}
    out: Dict[str, Dict[str, Any]] = {}
    for name, target in TARGETS.items():
        value: Any = figures
        for part in target["figure"].split("."):
            value = value.get(part) if isinstance(value, dict) else None
        out[name] = {"figure": target["figure"], "op": target["op"], "value": target["value"],
                     "text": target["text"], "actual": value,
                     "met": None if value is None else checks[target["op"]](value,
                                                                          target["value"])}
    return out


# ------------------------------------------------------------------ Prometheus

async def totals(session: Any, dialect: str) -> Dict[str, Any]:
    """All-time counts and sums for the Prometheus scrape (a few aggregate queries).

    Returns:
        ``tickets`` ``{(status, category): n}``, ``ratings`` ``{score: n}``,
        ``resolution`` / ``first_response`` ``(count, seconds sum)``, ``questions`` and
        ``handed_off`` (chat sessions with customer messages, and those handed to a person).
    """
    tickets = {(status, category): int(n) for status, category, n in (await session.execute(
        select(Ticket.status, Ticket.category, func.count())
        .group_by(Ticket.status, Ticket.category))).all()}
    ratings = {int(score): int(n) for score, n in (await session.execute(
        select(Rating.score, func.count()).group_by(Rating.score))).all()}
    sums: Dict[str, Tuple[int, float]] = {}
    for name, end in (("resolution", Ticket.resolved_at),
                      ("first_response", Ticket.first_response_at)):
        seconds = _seconds(dialect, end, Ticket.queued_at)
        count, total = (await session.execute(
            select(func.count(), func.sum(seconds))
            .where(Ticket.queued_at.is_not(None), end.is_not(None),
                   end >= Ticket.queued_at))).one()
        sums[name] = (int(count or 0), float(total or 0.0))
    questions, first = _questions(None, None)
    asked, handed = (await session.execute(
        select(func.count(), func.count(first.c.handoff_id)).select_from(
            questions.outerjoin(first, and_(first.c.pk == questions.c.pk,
                                            first.c.session == questions.c.session))))).one()
    by_state = {status: 0 for status in TICKET_STATUSES}
    for (status, _), n in tickets.items():
        by_state[status] = by_state.get(status, 0) + n
    return {"tickets": tickets, "tickets_by_state": by_state, "ratings": ratings,
            "resolution": sums["resolution"], "first_response": sums["first_response"],
            "questions": int(asked or 0), "handed_off": int(handed or 0)}
