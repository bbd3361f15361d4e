"""Bot turns: every acknowledged customer message is answered exactly once.

:class:`WidgetBotTurns` is mixed into :class:`bot.channels.widget.WidgetInput`. A turn is
claimed in the database (:meth:`bot.support.chat.ChatStore.do_claim_turn`, one winner over
every process), its lease renewed while Rasa runs it (one turn per conversation at a time,
the hub's turn lock), a failed attempt handed back with a back-off and tried again, the
last failure marked ``failed`` with a notice. Unfinished turns are found again at start-up,
by a periodic sweep and at each ``hello``; :meth:`drain` hands the running ones back on
shutdown. See docs/widget-protocol.md, "Delivery guarantees".
"""
from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any, Dict, Optional

from rasa.core.channels.channel import OutputChannel, UserMessage

from bot import db
from bot.channels.auth import Customer
from bot.channels.text import as_free_text
from bot.channels.widget_output import WidgetOutput
from bot.attachments.turns import answer_attachment_only
from bot.channels.widget_wire import ClientError, push_everywhere
from bot.i18n import conversation_locale
from bot.messages import notice
from bot.support.chat import MessageView, TurnClaim

__all__ = ["WidgetBotTurns"]

logger = logging.getLogger("bot.channels.widget")  # the channel logs under one name


class WidgetBotTurns:
    """Running the bot's turns (a mixin of ``WidgetInput``)."""

    #
    # Every acknowledged customer message gets its turn exactly once (docs/widget-protocol.md,
    # "Delivery guarantees"): the turn is claimed in the database (ChatStore.do_claim_turn:
    # received -> processing with a lease, one winner over every process), the lease is
    # renewed while it runs, a failed attempt is handed back with a back-off and tried again,
    # the last failure marks it failed with a notice. Unfinished turns are found again at
    # start-up, periodically (a process that died), and at each hello.

    def _queue_turn(self, customer: Any, message: MessageView) -> None:
        """Run the turn of a stored customer message (once per message in this process)."""
        if self._draining or message.id in self._inflight:
            return
        self._inflight.add(message.id)
        task = self.hub.spawn(self._turn(customer, message))
        self._turn_tasks.add(task)
        task.add_done_callback(self._turn_tasks.discard)

    async def _requeue(self, conversation_id: Optional[str] = None,
                       customer: Optional[Customer] = None) -> int:
        """Queue the turns still to run (of one conversation, or all); returns how many."""
        if self._draining or self._on_new_message is None:
            return 0
        try:
            pending = await (await self.chat()).pending_turns(conversation_id, limit=200)
        except Exception:  # noqa: BLE001 - the next sweep tries again
            logger.exception("Could not read the unfinished widget turns")
            return 0
        queued = 0
        for message, conversation in pending:
            if conversation.channel != "widget" or message.id in self._inflight:
                continue
            who = customer if customer is not None else Customer(
                user_id=conversation.customer_id, profile=dict(conversation.profile))
            self._queue_turn(who, message)
            queued += 1
        if queued:
            logger.info("Re-queued %d unfinished widget turn(s)%s.", queued,
                        f" of {conversation_id}" if conversation_id else "")
        return queued

    def _sweep_interval(self) -> float:
        return max(1.0, min(self.config.turn_lease / 2.0, 15.0))

    async def _sweep(self) -> None:
        """At start-up, then every few seconds: queue unfinished turns nobody holds."""
        while not self._draining and not self._agent_ready():
            await asyncio.sleep(0.2)
        while not self._draining:
            await self._requeue()
            await asyncio.sleep(self._sweep_interval())

    def _agent_ready(self) -> bool:
        agent = getattr(getattr(self._app, "ctx", None), "agent", None)
        try:
            return agent is not None and bool(agent.is_ready())
        except Exception:  # noqa: BLE001 - not loaded yet
            return False

    async def drain(self, seconds: Optional[float] = None) -> int:
        """Stop starting turns; wait up to ``seconds`` (``WIDGET_DRAIN_SECONDS``) for the
        running ones, cancel the rest and hand their claims back (the next start runs them).

        Returns:
            How many turns were handed back unfinished.
        """
        self._draining = True
        if self._drain_event is not None:
            self._drain_event.set()
        if self._sweeper is not None:
            self._sweeper.cancel()
        seconds = self.config.drain_seconds if seconds is None else seconds
        running = [task for task in self._turn_tasks if not task.done()]
        if running:
            logger.info("Shutting down: waiting up to %g s for %d widget turn(s).",
                        seconds, len(running))
            _done, pending = await asyncio.wait(running, timeout=max(0.0, seconds))
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5.0)
        released = 0
        if self._chat is not None:
            try:
                released = await self._chat.do_release_claims(self.owner)
            except Exception:  # noqa: BLE001 - their leases run out instead
                logger.exception("Could not hand back the unfinished widget turns")
        if released:
            logger.warning("Shutting down: %d widget turn(s) not finished in %g s are "
                           "handed back; the next start answers them.", released, seconds)
        return released

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake up when the process starts draining."""
        if self._drain_event is None:
            self._drain_event = asyncio.Event()
            if self._draining:
                self._drain_event.set()
        try:
            await asyncio.wait_for(self._drain_event.wait(), max(0.0, seconds))
        except asyncio.TimeoutError:
            pass

    async def _turn(self, customer: Any, message: MessageView) -> None:
        """Claim, run (and retry) the bot turn of one stored customer message, in order."""
        conversation_id = customer.conversation_id
        if getattr(self, "_turn_slots", None) is None:
            self._turn_slots = asyncio.Semaphore(max(1, int(self.config.turn_concurrency)))
        try:
            # One turn per conversation at a time, and at most turn_concurrency in all: the
            # rest wait here, unclaimed and holding no database connection (200 turns at
            # once on one event loop held every pooled connection for seconds each).
            async with self.hub.turn_lock(conversation_id), self._turn_slots:
                chat = await self.chat()
                while not self._draining:
                    claim = await chat.do_claim_turn(message.id, self.owner,
                                                     self.config.turn_lease)
                    if claim is None:  # done, failed, someone else's, or backing off
                        return
                    if claim.answered:  # ran before its process died: never twice
                        await self._finish(claim, "read")
                        return
                    error = await self._run_claimed(customer, claim)
                    if error is None:
                        return
                    if claim.attempt < self.config.turn_attempts and not self._draining:
                        delay = self.config.turn_backoff * 2 ** (claim.attempt - 1)
                        logger.warning(
                            "Turn of message %s failed (attempt %d of %d: %s); retrying in "
                            "%g s.", message.id, claim.attempt, self.config.turn_attempts,
                            error, delay)
                        await chat.do_release_turn(
                            message.id, self.owner,
                            retry_at=db.utcnow() + timedelta(seconds=delay), error=error)
                        await self._pause(delay)
                        continue
                    if self._draining:  # handed back by drain(); the next start retries
                        await chat.do_release_turn(message.id, self.owner, error=error)
                        return
                    await self._turn_failed(claim, error)
                    return
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the claim's lease runs out; the sweeper retries
            logger.exception("The turn of message %s could not run; it will be retried.",
                             message.id)
        finally:
            self._inflight.discard(message.id)

    async def _keep_claim(self, message_id: int) -> None:
        """Renew the claim's lease while the turn runs."""
        chat = await self.chat()
        while True:
            await asyncio.sleep(max(0.5, self.config.turn_lease / 3.0))
            try:
                if not await chat.do_renew_claim(message_id, self.owner, self.config.turn_lease):
                    logger.warning("Lost the claim of message %s's turn.", message_id)
                    return
            except Exception:  # noqa: BLE001 - try again at the next beat
                logger.exception("Could not renew the claim of message %s", message_id)

    async def _run_claimed(self, customer: Any, claim: TurnClaim) -> Optional[str]:
        """Run one attempt of a claimed turn.

        Returns:
            None when the turn is finished (answered, or handed to a person), else why it
            failed (the claim is still held).
        """
        message, conversation_id = claim.message, claim.conversation.conversation_id
        chat = await self.chat()
        heartbeat = asyncio.get_running_loop().create_task(self._keep_claim(message.id))
        try:
            # Handed to the bot (or the agent's queue) now. The row is written once at the
            # end of the turn: "read" when the bot answered (delivered_at set too), else
            # "delivered".
            await push_everywhere(
                self.hub, conversation_id,
                {"type": "receipt", "ids": [message.id], "status": "delivered"})
            if claim.conversation.with_person:  # the bot is silent; the agent gets it
                await self._finish(claim, "delivered")
                return None
            if await answer_attachment_only(self, claim):  # a photo without words
                await self._finish(claim, "read")
                return None
            output = WidgetOutput(self, reply_to=message.id)
            await push_everywhere(self.hub, conversation_id,
                                  {"type": "typing", "sender": "bot", "state": "start"})
            error: Optional[str] = None
            try:
                # An (offered) quick reply goes as its /intent; typed text always as text.
                await self._handle(
                    customer, message.payload or as_free_text(message.text), output,
                    message_id=f"widget-{message.id}", context=claim.conversation.context,
                )
            except Exception as failure:  # noqa: BLE001 - retried, then the customer is told
                logger.exception("The bot failed on message %s", message.id)
                error = f"{type(failure).__name__}: {failure}"
            await push_everywhere(self.hub, conversation_id,
                                  {"type": "typing", "sender": "bot", "state": "stop"})
            if output.sent:
                await self._finish(claim, "read")
                return None
            if error is None:
                if await self._paused(conversation_id):  # handed over during the turn
                    await self._finish(claim, "delivered")
                    return None
                error = "no reply (is the action server reachable?)"
            return error
        finally:
            heartbeat.cancel()

    async def _finish(self, claim: TurnClaim, status: str) -> None:
        chat = await self.chat()
        message_id = claim.message.id
        if not await chat.do_finish_turn(message_id, self.owner, status):
            logger.warning("Turn of message %s finished without its claim.", message_id)
            return
        if status == "read":
            await push_everywhere(self.hub, claim.conversation.conversation_id,
                                  {"type": "receipt", "ids": [message_id], "status": "read"})

    async def _turn_failed(self, claim: TurnClaim, error: str) -> None:
        """The last attempt failed: ``failed``, a stored notice, an ``error`` frame."""
        message, conversation_id = claim.message, claim.conversation.conversation_id
        logger.error("Turn of message %s failed %d times (%s): marked failed.",
                     message.id, claim.attempt, error)
        stored = await (await self.chat()).do_fail_turn(
            message.id, self.owner, error,
            notice("widget_bot_unavailable", locale=conversation_locale(claim.conversation)))
        if stored is None:
            return
        await push_everywhere(self.hub, conversation_id,
                              {"type": "message", "message": stored.to_wire()})
        await push_everywhere(
            self.hub, conversation_id,
            ClientError(
                "bot_unavailable",
                "The assistant could not answer this message.",
                client_id=message.client_id,
            ).frame(),
        )
        # agents see the notice in the conversation: the store publishes it after its commit

    async def _handle(
        self, customer: Customer, text: str, output: OutputChannel,
        message_id: Optional[str] = None, context: Optional[Dict[str, Any]] = None,
    ) -> None:
        if context is None:
            context = (await (await self.chat()).get_conversation(customer.conversation_id)).context
        stored_context = context
        context = {
            key: customer.profile[key]
            for key in ("app_version", "device", "locale")
            if key in customer.profile
        }
        context.update(stored_context)
        metadata = {"customer": customer.metadata_customer(), "context": context,
                    "channel": "widget"}
        assert self._on_new_message is not None
        await self._on_new_message(
            UserMessage(
                text,
                output,
                customer.conversation_id,
                input_channel=self.name(),
                message_id=message_id,
                metadata=metadata,
            )
        )

    async def _paused(self, conversation_id: str) -> bool:
        agent = getattr(getattr(self._app, "ctx", None), "agent", None)
        store = getattr(agent, "tracker_store", None)
        if store is None:
            return False
        try:
            tracker = await store.retrieve(conversation_id)
        except Exception:  # noqa: BLE001 - unknown: treat as not paused
            logger.exception("Could not read the tracker of %s", conversation_id)
            return False
        return bool(tracker is not None and tracker.is_paused())
