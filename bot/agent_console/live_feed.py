"""What the agents' sockets receive: bus events and change-feed ticket changes, filtered.

:class:`ConsoleLiveFeed` is mixed into :class:`bot.agent_console.channel.AgentConsoleInput`.
It subscribes to the customer-side bus topics (:data:`CUSTOMER_TOPICS`, and those of agents
on other processes, :data:`AGENT_TOPICS`) and follows the change feed
(:func:`bot.live.change_feed`) for ticket changes made in other processes (handoffs come
from the action server). Each event goes only to the agents who may see its ticket (an
admin, anyone for a queued ticket, its assignee, and the previous one of a transfer).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, Optional, Sequence, Tuple

from bot.agent_console.wire import ticket_json
from bot.support.agents import AgentView
from bot.support.ops import TicketView

__all__ = ["AGENT_TOPICS", "AUDIT_ACTIONS", "CUSTOMER_TOPICS", "ConsoleLiveFeed", "TicketState"]

AUDIT_ACTIONS = ("handoff.recorded", "ticket.claimed", "ticket.transferred", "ticket.resolved")
CUSTOMER_TOPICS = ("customer.message", "customer.typing", "customer.read",
                   "conversation.ended", "rating.created")
AGENT_TOPICS = ("agent.message", "agent.read")
"""What agents on other Rasa processes do, shown to this process's agents."""


@dataclass
class TicketState:
    """What the console keeps of a conversation's latest ticket (who may see it)."""

    reference: str
    conversation_id: str
    status: str
    assignee_id: Optional[int]
    category: str
    priority: str


class ConsoleLiveFeed:
    """Bus and change-feed events to the agents' sockets (a mixin of ``AgentConsoleInput``)."""

    def _subscribe(self) -> None:
        if self._subscribed:
            return
        from bot.live import REMOTE, bus

        for topic in CUSTOMER_TOPICS:
            callback = self._topic_callback(topic)
            self._callbacks[topic] = callback
            bus().subscribe(topic, callback, group=self)  # one queue: events keep their order
        # an agent's reply and reads reach this process's agents at once (_reply, _read);
        # those of agents on other processes come over the bus (REDIS_URL)
        for topic in AGENT_TOPICS:
            callback = self._topic_callback(topic)
            self._callbacks[topic] = callback
            bus().subscribe(topic, callback, group=self, scope=REMOTE)
        self._subscribed = True

    def _topic_callback(self, topic: str) -> Callable[[Dict[str, Any]], Awaitable[None]]:
        async def callback(event: Dict[str, Any]) -> None:
            await self._on_customer_event(topic, event)

        return callback
    def _remember(self, ticket: TicketView) -> None:
        self._tickets[ticket.conversation_id] = TicketState(
            ticket.reference, ticket.conversation_id, ticket.status, ticket.assignee_id,
            ticket.category, ticket.priority)

    async def _ticket_state(self, *, reference: Optional[str] = None,
                            conversation_id: Optional[str] = None) -> Optional[TicketState]:
        from sqlalchemy import select

        from bot import db
        from bot.support.models import Ticket

        agents, _ = await self.stores()
        query = select(Ticket)
        if reference is not None:
            query = query.where(Ticket.reference == reference.strip().upper())
        else:
            cached = self._tickets.get(conversation_id or "")
            if cached is not None:
                return cached
            query = query.where(Ticket.conversation_id == conversation_id).order_by(
                Ticket.id.desc()).limit(1)
        async with db.read_session(db.session_factory(agents.engine)) as session:
            row = (await session.execute(query)).scalars().first()
            if row is None:
                return None
            view = TicketView.from_row(row)
        self._remember(view)
        return self._tickets[view.conversation_id]

    @staticmethod
    def _may_see(agent: AgentView, ticket: TicketState, also: Tuple[int, ...] = ()) -> bool:
        return (agent.is_admin or ticket.status == "queued" or ticket.assignee_id == agent.id
                or agent.id in also)

    async def _push_conversation(self, conversation_id: str, frame: Dict[str, Any]) -> None:
        if not self._connections:
            return
        ticket = await self._ticket_state(conversation_id=conversation_id)
        for connection in list(self._connections):
            if connection.agent.is_admin or (
                    ticket is not None and self._may_see(connection.agent, ticket)):
                await connection.send(frame)

    async def _on_customer_event(self, topic: str, event: Dict[str, Any]) -> None:
        """Pass a widget-side bus event to the agents who may see its conversation."""
        conversation_id = event.get("conversation_id")
        if not isinstance(conversation_id, str) or not self._connections:
            return
        ticket = await self._ticket_state(conversation_id=conversation_id)
        if ticket is None:
            return  # a conversation with the bot only: no agent is concerned
        frame = {**event, "type": topic, "ticket": ticket.reference}
        await self._push_conversation(conversation_id, frame)

    # ------------------------------------------------------------ change feed

    def _ensure_tail(self) -> None:
        """Follow the change feed (from "now"; the console loads its inbox itself)."""
        if self._feed is None:
            from bot.live import change_feed

            self._feed = change_feed(self.config.support_db_url)
            self._feed.subscribe(self._on_changes, self.config.poll_interval)

    async def _on_changes(self, changes: Sequence[Any]) -> int:
        """Ticket changes from the feed: ``ticket`` frames to the agents who may see them."""
        from sqlalchemy import select

        from bot import db
        from bot.support.models import Ticket

        events = [c for c in changes if c.topic in AUDIT_ACTIONS and c.ticket]
        if not events or not self._connections:
            return 0
        agents, _ = await self.stores()
        tickets: Dict[str, TicketView] = {}
        async with db.read_session(db.session_factory(agents.engine)) as session:
            for row in (await session.execute(select(Ticket).where(
                    Ticket.reference.in_({c.ticket for c in events})))).scalars().all():
                tickets[row.reference] = TicketView.from_row(row)
        sent = 0
        for change in events:
            ticket = tickets.get(change.ticket)
            if ticket is None:
                continue
            self._remember(ticket)
            state = self._tickets[ticket.conversation_id]
            previous = change.data.get("from")
            also = (int(previous),) if isinstance(previous, int) else ()
            frame = {"type": "ticket", "action": change.topic, "audit_id": change.audit_id,
                     "feed_id": change.id, "actor": change.actor, "ticket": ticket_json(ticket)}
            for connection in list(self._connections):
                if self._may_see(connection.agent, state, also):
                    await connection.send(frame)  # queued: never waits for a socket
                    sent += 1
        return sent
