"""The support figures (``AgentStore.metrics``, ``/api/metrics``, ``/prometheus``, the
dashboard) against a hand-counted fixture, on SQLite and PostgreSQL.

The fixture (:func:`seed`), window ``[D1, D3)`` (two UTC days, D1 and D2); ``Dn`` is
``base + n - 1 days``, so D0 is the day before the window and D-1 two days before::

  conversation  session  customer messages        handoff (ticket)          outcome
  C1 anna       1        D1 09:00                 D1 09:01 (T1 SHIPPING)    handed, D1
  C1 anna       2        D2 15:00                 D2 15:01 (T7 SHIPPING)    handed, D2
  C2 ben        1        D1 10:00                 –                         self-served, D1
  C2 ben        2        D2 08:00                 D2 08:02 (T2 REFUND)      handed, D2
  C3 chloe      1        D1 23:50, D2 00:10       D2 00:05 + 00:07 (T3)     handed, D1 (once)
  C4 dan        1        D2 12:00                 –  (an agent wrote)       self-served, D2
  C5 eve        1        D0 23:00, D1 00:30       D0 23:01 (T5 REFUND)      handed, D1
  C6 fay        1        D-1 10:00                D-1 10:00:30 (T6)         outside
  C6 fay        2        D3 00:00 (= until)       –                         outside

  ticket  category  queued        first response   resolved       (seconds)
  T1      SHIPPING  D1 09:01      D1 09:03 (120)   D1 09:11 (600)
  T2      REFUND    D2 08:02      D2 08:12 (600)   D2 08:42 (2400)
  T3      SHIPPING  D2 00:05      D2 00:06 (60)    D2 00:25 (1200)
  T5      REFUND    D0 23:01      D0 23:10 (540)   D1 01:00 (7140)
  T6      SHIPPING  D-1 10:00:30  D-1 10:05:30     D-1 10:30:30 (1800, first 300)
  T7      SHIPPING  D2 15:01      –                –

  rating  conversation/session  ticket  score  at
  R1      C1/1                  T1      5      D1 09:12
  R3      C3/1                  T3      4      D2 00:30
  R4      C4/1                  –       5      D2 13:00
  R6a     C6/1                  T6      1      D-1 10:40
  R6b     C6/2                  –       1      D3 00:00 (= until: outside)

REFUND has no rating: its CSAT is null ("–" in the console), never 0.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Dict, Iterator, List, Optional, Tuple

import pytest
import requests
from sqlalchemy import event

from bot import db
from bot.support.agents import AgentStore
from bot.support.metrics import NO_TICKET
from bot.support.models import ChatMessage, Conversation, Handoff, Rating, Ticket
from tests.agent_console.conftest import _run
from tests.browser.conftest import PHONE, browser, chromium, screenshots  # noqa: F401 - fixtures

BASE = date(2026, 3, 1)  # D1
PASSWORD = "correct horse battery staple"
ROOT = Path(__file__).resolve().parents[2]


def at(base: date, day: int, clock: str) -> datetime:
    """``Dday HH:MM[:SS]`` in UTC (D1 is ``base``)."""
    parts = [int(p) for p in clock.split(":")] + [0]
    return datetime(base.year, base.month, base.day, parts[0], parts[1], parts[2],
                    tzinfo=timezone.utc) + timedelta(days=day - 1)


async def seed(store: AgentStore, base: date = BASE) -> None:
    """Write the fixture of the module docstring (ORM rows with known times)."""
    t = lambda day, clock: at(base, day, clock)  # noqa: E731
    conversations = {"C1": 2, "C2": 2, "C3": 1, "C4": 1, "C5": 1, "C6": 2}
    messages = [  # conversation, session, sender, at
        ("C1", 1, "customer", t(1, "09:00")), ("C1", 1, "bot", t(1, "09:00:05")),
        ("C1", 1, "agent", t(1, "09:03")), ("C1", 1, "system", t(1, "09:20")),
        ("C1", 2, "customer", t(2, "15:00")),
        ("C2", 1, "customer", t(1, "10:00")), ("C2", 1, "bot", t(1, "10:00:05")),
        ("C2", 1, "system", t(1, "10:30")), ("C2", 2, "customer", t(2, "08:00")),
        ("C3", 1, "customer", t(1, "23:50")), ("C3", 1, "customer", t(2, "00:10")),
        ("C4", 1, "customer", t(2, "12:00")), ("C4", 1, "agent", t(2, "12:30")),
        ("C5", 1, "customer", t(0, "23:00")), ("C5", 1, "customer", t(1, "00:30")),
        ("C6", 1, "customer", t(-1, "10:00")), ("C6", 1, "system", t(-1, "11:00")),
        ("C6", 2, "customer", t(3, "00:00")),
    ]
    tickets = {  # name: conversation, category, status, queued, first response, resolved
        "T1": ("C1", "SHIPPING", "resolved", t(1, "09:01"), t(1, "09:03"), t(1, "09:11")),
        "T2": ("C2", "REFUND", "resolved", t(2, "08:02"), t(2, "08:12"), t(2, "08:42")),
        "T3": ("C3", "SHIPPING", "resolved", t(2, "00:05"), t(2, "00:06"), t(2, "00:25")),
        "T5": ("C5", "REFUND", "resolved", t(0, "23:01"), t(0, "23:10"), t(1, "01:00")),
        "T6": ("C6", "SHIPPING", "resolved", t(-1, "10:00:30"), t(-1, "10:05:30"),
               t(-1, "10:30:30")),
        "T7": ("C1", "SHIPPING", "queued", t(2, "15:01"), None, None),
    }
    handoffs = [("C1", "T1", t(1, "09:01")), ("C2", "T2", t(2, "08:02")),
                ("C3", "T3", t(2, "00:05")), ("C3", "T3", t(2, "00:07")),
                ("C5", "T5", t(0, "23:01")), ("C6", "T6", t(-1, "10:00:30")),
                ("C1", "T7", t(2, "15:01"))]
    ratings = [("C1", 1, "T1", 5, t(1, "09:12")), ("C3", 1, "T3", 4, t(2, "00:30")),
               ("C4", 1, None, 5, t(2, "13:00")), ("C6", 1, "T6", 1, t(-1, "10:40")),
               ("C6", 2, None, 1, t(3, "00:00"))]
    async with db.write_session(store._sessions) as session:
        rows: Dict[str, Any] = {}
        for name, current in conversations.items():
            rows[name] = Conversation(
                conversation_id=f"widget:{name}", channel="widget", customer_id=f"cust-{name}",
                profile={}, context={}, session=current, state="bot",
                created_at=t(-1, "00:00"), updated_at=t(-1, "00:00"))
            session.add(rows[name])
        await session.flush()
        for name, number, sender, when in messages:
            session.add(ChatMessage(conversation_pk=rows[name].id, session=number,
                                    sender=sender, text=f"{sender} says hi", status="read",
                                    created_at=when))
        for name, (conv, category, status, queued, first, resolved) in tickets.items():
            rows[name] = Ticket(
                reference=f"T-{name}", conversation_id=f"widget:{conv}", summary=name,
                category=category, priority="normal", status=status, source="handoff",
                details={}, created_at=queued, updated_at=queued, queued_at=queued,
                first_response_at=first, resolved_at=resolved)
            session.add(rows[name])
        await session.flush()
        for conv, ticket, when in handoffs:
            session.add(Handoff(conversation_id=f"widget:{conv}", ticket_id=rows[ticket].id,
                                reason="human_requested", priority="normal", status="queued",
                                created_at=when))
        for conv, number, ticket, score, when in ratings:
            session.add(Rating(conversation_pk=rows[conv].id, session=number,
                               ticket_id=rows[ticket].id if ticket else None, score=score,
                               created_at=when))


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[AgentStore]:
    agents = AgentStore.from_url(db_url)
    await agents.create_schema()
    await seed(agents)
    try:
        yield agents
    finally:
        await agents.dispose()


@pytest.fixture
async def figures(store: AgentStore) -> Dict[str, Any]:
    return await store.metrics(at(BASE, 1, "00:00"), at(BASE, 3, "00:00"))


D1, D2 = BASE.isoformat(), (BASE + timedelta(days=1)).isoformat()
DAYS_AND_CATEGORIES = ("overall", D1, D2, NO_TICKET, "REFUND", "SHIPPING")


def _pick(figures: Dict[str, Any], where: str) -> Dict[str, Any]:
    if where == "overall":
        return figures
    return figures["by_day"][where] if where in figures["by_day"] else figures["by_category"][where]


def _table(figures: Dict[str, Any], read: Any) -> Dict[str, Any]:
    return {where: read(_pick(figures, where)) for where in DAYS_AND_CATEGORIES}


async def test_days_and_categories_are_exactly_those_with_data(figures: Dict[str, Any]) -> None:
    assert list(figures["by_day"]) == [D1, D2]
    assert list(figures["by_category"]) == [NO_TICKET, "REFUND", "SHIPPING"]


async def test_questions_self_service_and_handoffs(figures: Dict[str, Any]) -> None:
    """Sessions with a customer message in the window, each once, on its first day; a
    handoff counts for its own session only (C2's later handoff leaves session 1
    self-served); categories have no questions or rates (bot-only questions have no
    category), only their handed-off questions."""
    assert _table(figures, lambda b: (b["conversations"], b["self_served"], b["handoffs"],
                                      b["self_service_rate"], b["handoff_rate"])) == {
        "overall": (7, 2, 5, 0.286, 0.714),
        D1: (4, 1, 3, 0.25, 0.75),
        D2: (3, 1, 2, 0.333, 0.667),
        NO_TICKET: (None, None, 0, None, None),
        "REFUND": (None, None, 2, None, None),
        "SHIPPING": (None, None, 3, None, None),
    }


async def test_tickets_queued(figures: Dict[str, Any]) -> None:
    assert _table(figures, lambda b: b["tickets"]) == {
        "overall": 4, D1: 1, D2: 3, NO_TICKET: 0, "REFUND": 1, "SHIPPING": 3}


async def test_resolution_time(figures: Dict[str, Any]) -> None:
    """Tickets resolved in the window (T5 was queued before it), on the day resolved."""
    assert _table(figures, lambda b: b["resolution"]) == {
        "overall": {"count": 4, "average_seconds": 2835.0, "median_seconds": 1800.0},
        D1: {"count": 2, "average_seconds": 3870.0, "median_seconds": 3870.0},
        D2: {"count": 2, "average_seconds": 1800.0, "median_seconds": 1800.0},
        NO_TICKET: {"count": 0, "average_seconds": None, "median_seconds": None},
        "REFUND": {"count": 2, "average_seconds": 4770.0, "median_seconds": 4770.0},
        "SHIPPING": {"count": 2, "average_seconds": 900.0, "median_seconds": 900.0},
    }


async def test_first_response_time(figures: Dict[str, Any]) -> None:
    """First replies in the window (T5's came before it); odd count: the middle value."""
    assert _table(figures, lambda b: b["first_response"]) == {
        "overall": {"count": 3, "average_seconds": 260.0, "median_seconds": 120.0},
        D1: {"count": 1, "average_seconds": 120.0, "median_seconds": 120.0},
        D2: {"count": 2, "average_seconds": 330.0, "median_seconds": 330.0},
        NO_TICKET: {"count": 0, "average_seconds": None, "median_seconds": None},
        "REFUND": {"count": 1, "average_seconds": 600.0, "median_seconds": 600.0},
        "SHIPPING": {"count": 2, "average_seconds": 90.0, "median_seconds": 90.0},
    }


async def test_csat(figures: Dict[str, Any]) -> None:
    """Ratings given in the window; REFUND has none: null, not 0."""
    def dist(**scores: int) -> Dict[str, int]:
        return {str(n): scores.get(f"s{n}", 0) for n in range(1, 6)}

    assert _table(figures, lambda b: b["csat"]) == {
        "overall": {"count": 3, "average": 4.67, "distribution": dist(s4=1, s5=2)},
        D1: {"count": 1, "average": 5.0, "distribution": dist(s5=1)},
        D2: {"count": 2, "average": 4.5, "distribution": dist(s4=1, s5=1)},
        NO_TICKET: {"count": 1, "average": 5.0, "distribution": dist(s5=1)},
        "REFUND": {"count": 0, "average": None, "distribution": dist()},
        "SHIPPING": {"count": 2, "average": 4.5, "distribution": dist(s4=1, s5=1)},
    }


async def test_targets(figures: Dict[str, Any]) -> None:
    assert {name: (t["op"], t["value"], t["actual"], t["met"])
            for name, t in figures["targets"].items()} == {
        "resolution": ("<", 900.0, 2835.0, False),
        "csat": (">", 4.2, 4.67, True),
        "self_service": (">=", 0.3, 0.286, False),
    }


def _block(figures: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in figures.items() if k not in ("by_day", "by_category", "targets")}


async def test_a_one_day_window_is_that_day(store: AgentStore,
                                            figures: Dict[str, Any]) -> None:
    """D1 alone: the overall figures equal its only day, and D1's figures in the two-day
    window (C3's handoff after midnight still makes its D1 question handed off)."""
    one_day = await store.metrics(at(BASE, 1, "00:00"), at(BASE, 2, "00:00"))
    assert list(one_day["by_day"]) == [D1]
    assert _block(one_day) == one_day["by_day"][D1] == figures["by_day"][D1]
    assert (one_day["conversations"], one_day["handoffs"], one_day["self_service_rate"]) == (
        4, 3, 0.25)


async def test_no_data_is_null_not_zero(store: AgentStore) -> None:
    empty = await store.metrics(at(BASE, 10, "00:00"), at(BASE, 11, "00:00"))
    assert empty == {
        "resolution": {"count": 0, "average_seconds": None, "median_seconds": None},
        "first_response": {"count": 0, "average_seconds": None, "median_seconds": None},
        "csat": {"count": 0, "average": None,
                 "distribution": {"1": 0, "2": 0, "3": 0, "4": 0, "5": 0}},
        "tickets": 0, "conversations": 0, "self_served": 0, "handoffs": 0,
        "self_service_rate": None, "handoff_rate": None,
        "by_category": {}, "by_day": {},
        "targets": {
            "resolution": {"figure": "resolution.average_seconds", "op": "<", "value": 900.0,
                           "text": "average resolution under 15 minutes", "actual": None,
                           "met": None},
            "csat": {"figure": "csat.average", "op": ">", "value": 4.2,
                     "text": "CSAT above 4.2 / 5", "actual": None, "met": None},
            "self_service": {"figure": "self_service_rate", "op": ">=", "value": 0.3,
                             "text": "self-service at least 30 %", "actual": None,
                             "met": None},
        },
    }


# ------------------------------------------------------------------ Prometheus

def _console(db_url: str, token: Optional[str] = "scrape-token") -> Any:
    from bot.agent_console.channel import AgentConsoleInput, ConsoleConfig

    return AgentConsoleInput(ConsoleConfig(
        support_db_url=db_url, session_ttl=3600, metrics_token=token, poll_interval=1.0,
        canned_file=ROOT / "data" / "canned_responses.yml", login_rate=100))


def _samples(text: str) -> Dict[str, float]:
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line and not line.startswith("#")}


async def test_prometheus_series_are_all_time_aggregates(store: AgentStore) -> None:
    """All-time: T1-T7, R1-R6b, every session (C6's included)."""
    text = await _console("sqlite://unused")._prometheus_text(store)
    assert _samples(text) == {
        'support_tickets{state="assigned"}': 0.0, 'support_tickets{state="closed"}': 0.0,
        'support_tickets{state="open"}': 0.0, 'support_tickets{state="queued"}': 1.0,
        'support_tickets{state="resolved"}': 5.0,
        'support_tickets_by_category{category="REFUND",state="resolved"}': 2.0,
        'support_tickets_by_category{category="SHIPPING",state="queued"}': 1.0,
        'support_tickets_by_category{category="SHIPPING",state="resolved"}': 3.0,
        "support_ratings_total": 5.0, "support_rating_score_total": 16.0,
        "support_rating_average": 3.2,
        'support_ratings{score="1"}': 2.0, 'support_ratings{score="2"}': 0.0,
        'support_ratings{score="3"}': 0.0, 'support_ratings{score="4"}': 1.0,
        'support_ratings{score="5"}': 2.0,
        "support_resolved_tickets_total": 5.0, "support_resolution_seconds_total": 13140.0,
        "support_resolution_seconds_average": 2628.0,
        "support_first_responses_total": 5.0, "support_first_response_seconds_total": 1620.0,
        "support_first_response_seconds_average": 324.0,
        "support_questions_total": 9.0, "support_questions_self_served_total": 3.0,
        "support_questions_handed_off_total": 6.0,
        "support_self_service_rate": 3 / 9, "support_handoff_rate": 6 / 9,
        "support_agents_online": 0.0, "support_twilio_dead_letters": 0.0,
    }
    assert "# TYPE support_ratings_total counter" in text.splitlines()
    assert "# TYPE support_self_service_rate gauge" in text.splitlines()


async def test_prometheus_of_an_empty_database_is_nan_not_zero(db_url: str) -> None:
    agents = AgentStore.from_url(db_url)
    await agents.create_schema()
    try:
        samples = _samples(await _console(db_url)._prometheus_text(agents))
    finally:
        await agents.dispose()
    nan = [name for name, value in samples.items() if value != value]
    assert nan == ["support_rating_average", "support_resolution_seconds_average",
                   "support_first_response_seconds_average", "support_self_service_rate",
                   "support_handoff_rate"]
    assert samples["support_questions_total"] == 0.0


async def test_a_scrape_only_runs_aggregate_queries(store: AgentStore) -> None:
    """No ticket/rating/message rows travel per scrape: six statements, each an aggregate
    (what ``metrics(2000, now)`` was before: every ticket and rating loaded)."""
    statements: List[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(" ".join(statement.split()).lower())

    engine = store.engine.sync_engine
    event.listen(engine, "before_cursor_execute", before)
    try:
        await _console("sqlite://unused")._prometheus_text(store)
    finally:
        event.remove(engine, "before_cursor_execute", before)
    selects = [s for s in statements if s.startswith(("select", "with"))]
    assert len(selects) == 6, selects
    assert all("count(" in s for s in selects), selects


# ------------------------------------------------------------------ the dashboard

def serve(db_url: str, port: int) -> None:
    """Run only the console channel (no model needed) on 127.0.0.1:``port``: what Rasa
    mounts at /webhooks/agent/ (``python -c "...serve(url, port)"``)."""
    from sanic import Sanic

    channel = _console(db_url)
    app = Sanic("metrics_console")

    async def on_new_message(_message: Any) -> None:  # the console sends nothing to Rasa
        return None

    app.blueprint(channel.blueprint(on_new_message), url_prefix="/webhooks/agent")
    app.run(host="127.0.0.1", port=port, access_log=False, workers=1)


@pytest.fixture(scope="module")
def dashboard_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[str, date]]:
    """The console channel on a SQLite database with the fixture ending yesterday (so
    ``days=30`` covers all of it) and an agent ``maria``; yields (base URL, D1)."""
    from tests.servers import free_port

    base = datetime.now(timezone.utc).date() - timedelta(days=3)
    path = tmp_path_factory.mktemp("metrics") / "support.db"
    url = f"sqlite:///{path}"

    async def prepare() -> None:
        agents = AgentStore.from_url(url)
        try:
            await agents.create_schema()
            await seed(agents, base)
            await agents.do_create_agent("maria", "Maria", PASSWORD)
        finally:
            await agents.dispose()

    _run(prepare)  # in a worker thread: Playwright's sync API may own this thread's loop
    port = free_port()
    log = path.with_suffix(".log")
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c",
             f"from tests.agent_console.test_metrics import serve; serve({url!r}, {port})"],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=out,
            stderr=subprocess.STDOUT)
    root = f"http://127.0.0.1:{port}/webhooks/agent"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"the console server exited:\n{log.read_text()}")
            try:
                if requests.get(f"{root}/", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the console server did not start:\n{log.read_text()}")
            time.sleep(0.3)
        yield root, base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_api_metrics_over_http(dashboard_server: Tuple[str, date]) -> None:
    """``GET /api/metrics?days=30`` covers the whole fixture (D-1 to D3 00:00)."""
    root, base = dashboard_server
    with requests.Session() as http:
        http.trust_env = False
        token = http.post(f"{root}/api/login", json={"username": "maria", "password": PASSWORD},
                          timeout=30).json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        m = http.get(f"{root}/api/metrics", params={"days": 30}, headers=auth, timeout=30).json()
        assert http.get(f"{root}/api/metrics", params={"days": 0}, headers=auth,
                        timeout=30).status_code == 400
        assert http.get(f"{root}/prometheus", headers=auth, timeout=30).status_code == 403
        scrape = http.get(f"{root}/prometheus", headers={"Authorization": "Bearer scrape-token"},
                          timeout=30)
    assert m["days"] == 30
    days = [(base + timedelta(days=n)).isoformat() for n in (-2, -1, 0, 1, 2)]  # D-1 … D3
    assert list(m["by_day"]) == days
    assert (m["conversations"], m["handoffs"], m["self_service_rate"]) == (9, 6, 0.333)
    # C5's session now starts on D0 (its 23:00 message is inside the window)
    assert [m["by_day"][d]["conversations"] for d in days] == [1, 1, 3, 3, 1]
    assert [m["by_day"][d]["handoffs"] for d in days] == [1, 1, 2, 2, 0]
    assert m["by_category"]["REFUND"]["csat"] == {
        "count": 0, "average": None, "distribution": {"1": 0, "2": 0, "3": 0, "4": 0, "5": 0}}
    assert m["by_category"]["SHIPPING"]["csat"]["average"] == 3.33  # 5, 4, 1
    assert (m["resolution"]["count"], m["resolution"]["average_seconds"]) == (5, 2628.0)
    assert scrape.status_code == 200 and "version=0.0.4" in scrape.headers["content-type"]
    assert "support_questions_total 9.0" in scrape.text.splitlines()


def test_dashboard_shows_a_dash_for_a_category_without_ratings(
        dashboard_server: Tuple[str, date], browser: Any, screenshots: Path) -> None:  # noqa: F811
    from playwright.sync_api import expect

    root, _ = dashboard_server
    context = browser.new_context(**PHONE)
    try:
        page = context.new_page()
        errors: List[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{root}/")
        page.get_by_label("Username").fill("maria")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page.locator("#ac-inbox")).to_be_visible(timeout=20_000)
        page.goto(f"{root}/#/dashboard")
        table = page.get_by_role("table", name="Figures by category")
        refund = table.locator("tr[data-category=REFUND]")
        expect(refund.locator("[data-figure=csat]")).to_have_text("–", timeout=20_000)
        expect(refund.locator("[data-figure=resolution-avg]")).to_have_text("1.3 h")  # 4770 s
        expect(table.locator("tr[data-category=SHIPPING] [data-figure=csat]")).to_have_text(
            "3.33 (3)")
        expect(page.locator("[data-kpi=csat] b")).to_have_text("3.20 / 5")  # 5+4+5+1+1 / 5
        expect(page.locator("[data-kpi=self-service] b")).to_have_text("33 %")
        expect(page.locator("[data-target=resolution]")).to_have_attribute("data-met", "missed")
        expect(page.locator("[data-target=csat]")).to_have_text("Target above 4.2 / 5: not met ✗")
        expect(page.locator("[data-target=self_service]")).to_have_attribute("data-met", "met")
        expect(page.get_by_role("img", name="REFUND: –", exact=False)).to_be_visible()
        page.screenshot(path=str(screenshots / "agent-dashboard-figures.png"), full_page=True)
        assert not errors, errors
    finally:
        context.close()
