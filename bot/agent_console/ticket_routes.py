"""The console's ticket routes: inbox, agents, canned replies, metrics, ticket actions.

:class:`ConsoleTicketRoutes` is mixed into
:class:`bot.agent_console.channel.AgentConsoleInput`: ``/api/inbox``, ``/api/agents``,
``/api/canned``, ``/api/metrics``, ``/api/tickets/<reference>`` and its actions (claim,
transfer, resolve, reply, read). Each action publishes what happened on the live bus
(:mod:`bot.live`), where the widget side (:mod:`bot.channels.agent_bridge`) and the other
processes' consoles hear it.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any, Dict

from sanic.request import Request

from bot.agent_console.wire import (ApiError, inbox_json, int_field, iso, read_body, str_field,
                                    ticket_json)
from bot.support.agents import AgentView
from bot.support.ops import TicketView

__all__ = ["ConsoleTicketRoutes", "INBOX_STATES"]

logger = logging.getLogger("bot.agent_console.channel")  # the console logs under one name

INBOX_STATES = ("queued", "assigned", "resolved")


class ConsoleTicketRoutes:
    """Ticket and inbox routes (a mixin of ``AgentConsoleInput``)."""

    async def _inbox(self, request: Request, agent: AgentView) -> Dict[str, Any]:
        raw = (request.args.get("state") or "queued,assigned").strip().lower()
        states = list(INBOX_STATES) if raw == "all" else [s.strip() for s in raw.split(",")
                                                            if s.strip()]
        bad = [s for s in states if s not in INBOX_STATES]
        if bad or not states:
            raise ApiError(400, "bad_request",
                           f"state must be 'all' or a comma-separated list of {INBOX_STATES}.")
        category = (request.args.get("category") or "").strip().upper() or None
        if category and (len(category) > 64 or not category.replace("_", "").isalnum()):
            raise ApiError(400, "bad_request", "category must be a triage category name.")
        agents, _ = await self.stores()
        items = await agents.inbox(agent, states=states, category=category)
        return {"tickets": [inbox_json(i) for i in items], "states": states,
                "category": category}

    async def _list_agents(self, _request: Request, agent: AgentView) -> Dict[str, Any]:
        agents, _ = await self.stores()
        online = {c.agent.id for c in self._connections}
        return {"agents": [{**a.to_json(), "online": a.id in online}
                           for a in await agents.list_agents() if a.active or agent.is_admin]}

    async def _canned(self, _request: Request, _agent: AgentView) -> Dict[str, Any]:
        from bot.agent_console.resources import canned_responses

        try:
            responses = await canned_responses(self.config.canned_file)
        except ValueError as error:
            logger.error("Canned responses unusable: %s", error)
            raise ApiError(500, "canned_invalid", "The canned responses file is invalid.") \
                from None
        return {"responses": [r.to_json() for r in responses]}

    async def _metrics(self, request: Request, _agent: AgentView) -> Dict[str, Any]:
        raw = request.args.get("days") or "30"
        try:
            days = int(raw)
        except ValueError:
            raise ApiError(400, "bad_request", "days must be an integer from 1 to 366.") from None
        if not 1 <= days <= 366:
            raise ApiError(400, "bad_request", "days must be an integer from 1 to 366.")
        until = datetime.now(timezone.utc)
        since = (until - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0,
                                                           microsecond=0)
        agents, _ = await self.stores()
        figures = await agents.metrics(since, until + timedelta(seconds=1))
        return {"days": days, "since": iso(since), "until": iso(until), **figures}

    async def _detail(self, agent: AgentView, reference: str) -> Dict[str, Any]:
        from bot.agent_console.resources import faq_suggestions

        agents, _ = await self.stores()
        detail = await agents.ticket_detail(agent, reference)
        customer_texts = [m.text for m in reversed(detail.messages) if m.sender == "customer"]
        customer_texts += [line.get("text", "") for line in reversed(detail.bot_transcript)
                           if line.get("author") == "customer"]
        try:
            suggestions = await faq_suggestions(customer_texts or [detail.ticket.summary])
        except Exception:  # noqa: BLE001 - suggestions are optional
            logger.exception("FAQ suggestions failed for %s", reference)
            suggestions = []
        self._remember(detail.ticket)
        return {
            "ticket": ticket_json(detail.ticket),
            "conversation_id": detail.conversation_id,
            "state": detail.state,
            "assignee": detail.assignee.to_json() if detail.assignee else None,
            "customer": detail.customer,
            "context": detail.context,
            "triage": detail.triage,
            "slots": detail.slots,
            "recent_orders": detail.recent_orders,
            "transcript": detail.bot_transcript,
            "messages": [m.to_wire() for m in detail.messages],
            "suggestions": suggestions,
            "can_act": detail.state == "assigned" and (
                agent.is_admin or (detail.assignee is not None
                                   and detail.assignee.id == agent.id)),
        }

    async def _claim(self, _request: Request, agent: AgentView, reference: str) -> Dict[str, Any]:
        agents, _ = await self.stores()
        ticket = await agents.do_claim(reference, agent)
        await self._ticket_changed("ticket.claimed", ticket, agent.display_name)
        return {"ticket": ticket_json(ticket)}

    async def _transfer(self, request: Request, agent: AgentView, reference: str
                        ) -> Dict[str, Any]:
        to_id = int_field(read_body(request), "agent_id")
        agents, _ = await self.stores()
        ticket = await agents.do_transfer(reference, agent, int(to_id or 0))
        target = await agents.get_agent(int(to_id or 0))
        await self._ticket_changed("ticket.transferred", ticket, target.display_name)
        return {"ticket": ticket_json(ticket), "assignee": target.to_json()}

    async def _resolve(self, request: Request, agent: AgentView, reference: str
                       ) -> Dict[str, Any]:
        note = str_field(read_body(request), "note", required=False, max_chars=2000)
        agents, _ = await self.stores()
        ticket = await agents.do_resolve(reference, agent, note=(note or "").strip() or None)
        await self._ticket_changed("ticket.resolved", ticket, agent.display_name)
        return {"ticket": ticket_json(ticket)}

    async def _reply(self, request: Request, agent: AgentView, reference: str) -> Dict[str, Any]:
        body = read_body(request)
        extra = await self.attachments.reply_extra(agent, reference, body)  # photos, files
        text = str_field(body, "text", required=extra is None)
        client_id = str_field(body, "client_id", required=False, max_chars=64)
        agents, _ = await self.stores()
        message = await agents.do_agent_message(reference, agent, text or "", client_id=client_id,
                                                extra=extra)
        wire = message.to_wire()  # the store published agent.message after its commit
        await self._push_conversation(message.conversation_id, {
            "type": "agent.message", "conversation_id": message.conversation_id,
            "ticket": reference.upper(), "message": wire})
        return {"message": wire}

    async def _read(self, request: Request, agent: AgentView, reference: str) -> Dict[str, Any]:
        up_to = int_field(read_body(request), "up_to")
        agents, chat = await self.stores()
        detail = await agents.ticket_detail(agent, reference)  # authorises
        ids = await chat.do_mark(detail.conversation_id, "read", up_to=up_to,
                                 senders=("customer",))
        if ids:  # the store published agent.read after its commit
            await self._push_conversation(detail.conversation_id, {
                "type": "agent.read", "conversation_id": detail.conversation_id,
                "ticket": detail.ticket.reference, "ids": ids})
        return {"ids": ids}

    async def _ticket_changed(self, action: str, ticket: TicketView, agent_name: str) -> None:
        # the store published ``action`` on the bus after its commit
        self._remember(ticket)
