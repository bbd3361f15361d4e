"""``/webhooks/agent/prometheus``: support metrics in the Prometheus text format 0.0.4.

:class:`ConsolePrometheus` is mixed into :class:`bot.agent_console.channel.AgentConsoleInput`.
Readable with ``AGENT_METRICS_TOKEN`` (bearer or ``?token=``) or an admin session; the
series come from a few aggregate queries (no rows are loaded per scrape).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

from sanic import response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.agent_console.wire import ApiError, bearer
from bot.support.agents import AgentStore, AuthFailed, Forbidden

__all__ = ["ConsolePrometheus"]


class ConsolePrometheus:
    """The Prometheus route (a mixin of ``AgentConsoleInput``)."""

    async def _prometheus(self, request: Request) -> HTTPResponse:
        import hmac

        token = bearer(request) or request.args.get("token")
        allowed = bool(token and self.config.metrics_token
                       and hmac.compare_digest(token, self.config.metrics_token))
        try:
            agents, _ = await self.stores()
            if not allowed:
                agent = await agents.authenticate(token)
                if not agent.is_admin:
                    raise Forbidden("Only admins and the metrics token may read metrics.")
            body = await self._prometheus_text(agents)
        except AuthFailed as error:
            return ApiError(401, error.code, str(error)).response()
        except Forbidden as error:
            return ApiError(403, "forbidden", str(error)).response()
        return response.text(body, content_type="text/plain; version=0.0.4; charset=utf-8",
                             headers={"Cache-Control": "no-store"})

    async def _prometheus_text(self, agents: AgentStore) -> str:
        """All-time series from a few aggregate queries (no rows are loaded per scrape)."""
        from sqlalchemy import func, select

        from bot import db
        from bot.twilio.models import TwilioDeadLetter

        totals = await agents.metric_totals()
        async with db.read_session(db.session_factory(agents.engine)) as session:
            dead_letters = int((await session.execute(
                select(func.count(TwilioDeadLetter.id)).where(TwilioDeadLetter.status == "dead")
            )).scalar_one())
        lines: List[str] = []

        def metric(name: str, kind: str, help_text: str,
                   samples: List[Tuple[str, Optional[float]]]) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                shown = "NaN" if value is None else repr(float(value))
                lines.append(f"{name}{labels} {shown}")

        def label(value: str) -> str:
            return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

        def ratio(part: float, whole: float) -> Optional[float]:
            return part / whole if whole else None

        metric("support_tickets", "gauge", "Tickets by state.",
               [(f'{{state="{s}"}}', float(n))
                for s, n in sorted(totals["tickets_by_state"].items())])
        metric("support_tickets_by_category", "gauge", "Tickets by triage category and state.",
               [(f'{{category="{label(c)}",state="{s}"}}', float(n))
                for (c, s), n in sorted(((c, s), n) for (s, c), n in totals["tickets"].items())])
        ratings = totals["ratings"]
        count, score_sum = sum(ratings.values()), sum(k * n for k, n in ratings.items())
        metric("support_ratings_total", "counter", "Customer ratings (CSAT) received.",
               [("", float(count))])
        metric("support_rating_score_total", "counter", "Sum of the ratings' scores (1-5).",
               [("", float(score_sum))])
        metric("support_rating_average", "gauge", "Average rating, 1-5.",
               [("", ratio(score_sum, count))])
        metric("support_ratings", "gauge", "Ratings by score.",
               [(f'{{score="{n}"}}', float(ratings.get(n, 0))) for n in range(1, 6)])
        resolved, resolution_sum = totals["resolution"]
        metric("support_resolved_tickets_total", "counter", "Tickets resolved by an agent.",
               [("", float(resolved))])
        metric("support_resolution_seconds_total", "counter",
               "Sum of the seconds from queued to resolved of the resolved tickets.",
               [("", resolution_sum)])
        metric("support_resolution_seconds_average", "gauge",
               "Average seconds from queued to resolved.",
               [("", ratio(resolution_sum, resolved))])
        answered, first_sum = totals["first_response"]
        metric("support_first_responses_total", "counter",
               "Tickets an agent answered (first reply).", [("", float(answered))])
        metric("support_first_response_seconds_total", "counter",
               "Sum of the seconds from queued to the first agent reply.", [("", first_sum)])
        metric("support_first_response_seconds_average", "gauge",
               "Average seconds from queued to the first agent reply.",
               [("", ratio(first_sum, answered))])
        questions, handed = totals["questions"], totals["handed_off"]
        metric("support_questions_total", "counter",
               "Questions: chat sessions with at least one customer message.",
               [("", float(questions))])
        metric("support_questions_self_served_total", "counter",
               "Questions the bot handled without a person.", [("", float(questions - handed))])
        metric("support_questions_handed_off_total", "counter",
               "Questions handed to a person (a handoff in that chat session).",
               [("", float(handed))])
        metric("support_self_service_rate", "gauge",
               "Questions the bot handled without a person (0-1).",
               [("", ratio(questions - handed, questions))])
        metric("support_handoff_rate", "gauge", "Questions handed to a person (0-1).",
               [("", ratio(handed, questions))])
        metric("support_agents_online", "gauge", "Agents with an open console.",
               [("", float(len({c.agent.id for c in self._connections})))])
        metric("support_twilio_dead_letters", "gauge",
               "Twilio deliveries that failed every retry and wait for an operator "
               "(python -m bot.twilio.deadletters).",
               [("", float(dead_letters))])
        return "\n".join(lines) + "\n"
