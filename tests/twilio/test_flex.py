"""Flex mode (issue 15, steps 3 and 4): a handoff becomes a Flex Interaction routed to the
configured TaskRouter workspace and workflow; TaskRouter's signed event callbacks (stored in
the inbox before the 200) name the agent by the worker's friendly name and resolve the ticket
once. The real ``twilio`` client and the real Sanic route against the local fake."""
from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import replace
from typing import Any, AsyncIterator, Dict, List, Tuple

import pytest

from bot.twilio.bridge import TASKROUTER_PATH, TwilioBridge, TwilioConfig
from bot.twilio.flex import FlexConfig, ticket_expression
from bot.twilio.store import TwilioStore
from tests.twilio.conftest import AUTH_TOKEN, PUBLIC_URL, hand_off
from tests.twilio.fake_twilio import FakeTwilio, sign

Bridge = Tuple[TwilioBridge, List[Tuple[str, Dict[str, Any]]]]


@pytest.fixture
def flex_config(config: TwilioConfig, fake_twilio: FakeTwilio) -> TwilioConfig:
    return replace(config, flex=FlexConfig(
        mode="interactions", workspace_sid=fake_twilio.workspace_sid,
        workflow_sid=fake_twilio.workflow_sid))


@pytest.fixture
async def flex(flex_config: TwilioConfig, fake_twilio: FakeTwilio
               ) -> AsyncIterator[Tuple[TwilioBridge, List[Tuple[str, Dict[str, Any]]], Any]]:
    """A Flex-mode bridge (its inbox is processed by ``bridge.idle()``)."""
    store = TwilioStore.from_url(flex_config.support_db_url)
    await store.create_schema()
    published: List[Tuple[str, Dict[str, Any]]] = []

    async def publish(topic: str, event: Dict[str, Any]) -> None:
        published.append((topic, event))

    bridge = TwilioBridge(flex_config, store, publish=publish)  # inbox: drained by idle()
    yield bridge, published, store
    fake_twilio.configure_event_callback(None)
    await bridge.close()
    await store.dispose()


def _db(url: str) -> sqlite3.Connection:
    connection = sqlite3.connect(url.replace("sqlite:///", ""))
    connection.row_factory = sqlite3.Row
    return connection


async def _run(fake: FakeTwilio, method: str, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, getattr(fake, method), *args)


async def _deliver_events(bridge: TwilioBridge, fake: FakeTwilio, sent: List[Any]) -> List[str]:
    """What the product's route does with each delivery the fake made (the fake cannot
    reach this process's route without a server, so the signed form is replayed here)."""
    from bot.twilio.channel import signature_valid

    results = []
    for delivery in sent:
        signed = sign(AUTH_TOKEN, delivery.url, delivery.params)
        assert signature_valid(AUTH_TOKEN, PUBLIC_URL, TASKROUTER_PATH, "", delivery.params,
                               signed)
        results.append(await bridge.accept_task_event(delivery.params, delivery.token))
    await bridge.idle()
    return results


def test_flex_config_is_checked() -> None:
    FlexConfig().check()  # plain Conversations: nothing needed
    with pytest.raises(ValueError, match="TWILIO_FLEX_MODE"):
        FlexConfig(mode="flex").check()
    with pytest.raises(ValueError, match="WORKSPACE_SID"):
        FlexConfig(mode="interactions", workflow_sid="WW" + "0" * 32).check()
    with pytest.raises(ValueError, match="WORKFLOW_SID"):
        FlexConfig(mode="interactions", workspace_sid="WS" + "0" * 32,
                   workflow_sid="WS" + "0" * 32).check()
    assert ticket_expression("T-000012") == 'ticket == "T-000012"'
    assert ticket_expression("T-000012", "widget:cust-anna") == \
        'ticket == "T-000012" and conversation_id == "widget:cust-anna"'
    assert ticket_expression("T-000012", 'widget:"x"') == 'ticket == "T-000012"'
    with pytest.raises(ValueError):
        ticket_expression('T" or 1 == "1')


async def test_plain_mode_makes_no_flex_calls(bridge: Bridge, fake_twilio: FakeTwilio,
                                              config: Any) -> None:
    bridge_, _ = bridge
    handed = await hand_off(config.support_db_url)
    assert await bridge_.on_handoff(handed["conversation_id"], handed["reference"])
    sid = fake_twilio.conversation(handed["conversation_id"])["sid"]
    assert fake_twilio.task_for_conversation(sid) is None
    assert fake_twilio.count_requests("POST", "/v1/Interactions") == 0


async def test_handoff_becomes_a_flex_interaction_and_comes_back(
        flex: Any, fake_twilio: FakeTwilio, flex_config: TwilioConfig) -> None:
    bridge, published, _store = flex
    fake_twilio.configure_event_callback(flex_config.taskrouter_url)
    handed = await hand_off(flex_config.support_db_url)
    assert await bridge.on_handoff(handed["conversation_id"], handed["reference"]) is True
    conversation = fake_twilio.conversation(handed["conversation_id"])
    sid = conversation["sid"]

    # the Interaction: the customer's Conversation as the channel, routed to our workflow
    [form] = fake_twilio.requests_to("POST", "/v1/Interactions")
    channel, routing = json.loads(form["Channel"][0]), json.loads(form["Routing"][0])
    assert channel == {"type": "chat", "initiated_by": "api",
                       "properties": {"media_channel_sid": sid}}
    route = routing["properties"]
    assert (route["workspace_sid"], route["workflow_sid"], route["task_channel_unique_name"]) \
        == (fake_twilio.workspace_sid, fake_twilio.workflow_sid, "chat")
    attributes = route["attributes"]
    assert attributes["ticket"] == handed["reference"]
    assert (attributes["category"], attributes["priority"]) == ("SHIPPING", "high")
    assert attributes["triage"]["confidence"] == 0.93
    assert attributes["customerName"] == attributes["name"] == "Anna Schmidt"
    assert attributes["context"]["screen"] == "orders"
    assert attributes["transcript_url"] == \
        f"{PUBLIC_URL}/webhooks/agent/#/t/{handed['reference']}"
    task = fake_twilio.task_for_conversation(sid)
    assert task is not None and task["assignment_status"] == "pending"
    with _db(flex_config.support_db_url) as db:
        assert db.execute("SELECT status FROM tickets WHERE reference = ?",
                          (handed["reference"],)).fetchone()[0] == "assigned"

    # the agent accepts: the customer sees the worker's friendly name, not the identity
    worker = fake_twilio.add_worker("Maria Lopez", "maria.lopez@northwind.example")
    sent = await _run(fake_twilio, "accept_task", task["sid"], worker)
    assert [d.params["EventType"] for d in sent] == ["reservation.created",
                                                     "reservation.accepted"]
    assert await _deliver_events(bridge, fake_twilio, sent) == [True, True]
    claimed = [e for t, e in published if t == "ticket.claimed"]
    assert [e["agent_name"] for e in claimed] == ["Maria Lopez"]
    _message, hook = await _run(fake_twilio, "agent_says", sid,
                                "maria.lopez@northwind.example", "Hi Anna, I'm on it.")
    assert hook and hook[0].params["Author"] == "maria.lopez@northwind.example"
    assert await bridge.accept_webhook(hook[0].params, hook[0].token)
    await bridge.idle()
    [message] = [e["message"] for t, e in published if t == "agent.message"]
    assert message["sender_name"] == "Maria Lopez"
    assert "@" not in json.dumps([e for _t, e in published])
    assert [t for t, _e in published].count("ticket.claimed") == 1, "told once who joined"
    fetched = fake_twilio.count_requests("GET", f"/Workers/{worker}")
    assert fetched == 1

    # wrap-up (Flex closes the Conversation without a Conversations webhook) resolves once
    sent = await _run(fake_twilio, "wrap_up_task", task["sid"])
    assert [d.params["EventType"] for d in sent] == ["task.wrapup"]
    assert fake_twilio.conversation(sid)["state"] == "closed"
    sent += await _run(fake_twilio, "complete_task", task["sid"])
    assert await _deliver_events(bridge, fake_twilio, sent) == [True, True]
    assert await _deliver_events(bridge, fake_twilio, sent) == [False, False]  # redelivered
    resolved = [e for t, e in published if t == "ticket.resolved"]
    assert [(e["ticket"], e["agent_name"]) for e in resolved] == [
        (handed["reference"], "Maria Lopez")]
    with _db(flex_config.support_db_url) as db:
        assert db.execute("SELECT status FROM tickets WHERE reference = ?",
                          (handed["reference"],)).fetchone()[0] == "resolved"
        results = [r[0] for r in db.execute(
            "SELECT result FROM twilio_inbox WHERE kind = 'taskrouter' ORDER BY id")]
        assert results == ["ignored", "accepted", "resolved", "already_closed"]


async def test_a_lost_answer_creates_no_second_interaction(
        flex: Any, fake_twilio: FakeTwilio, flex_config: TwilioConfig) -> None:
    bridge, _published, _store = flex
    before = fake_twilio.count_requests("POST", "/v1/Interactions")
    fake_twilio.fail(1, 500, method="POST", path_contains="/v1/Interactions", after=True)
    handed = await hand_off(flex_config.support_db_url)
    assert await bridge.on_handoff(handed["conversation_id"], handed["reference"]) is True
    sid = fake_twilio.conversation(handed["conversation_id"])["sid"]
    assert fake_twilio.count_requests("POST", "/v1/Interactions") == before + 1
    tasks = [t for t in fake_twilio.tasks.values()
             if json.loads(t["attributes"]).get("conversationSid") == sid]
    assert len(tasks) == 1, "the retry found the task of the lost answer"
    # through every 5xx try: a dead letter, replayed once
    fake_twilio.fail(3, 503, method="POST", path_contains="/v1/Interactions")
    again = await hand_off(flex_config.support_db_url)
    assert await bridge.on_handoff(again["conversation_id"], again["reference"]) is False
    [letter] = await bridge.store.dead_letters()
    _view, delivered = await bridge.replay(letter.id)
    assert delivered
    sid2 = fake_twilio.conversation(again["conversation_id"])["sid"]
    assert fake_twilio.task_for_conversation(sid2) is not None


async def test_canceled_task_resolves_and_foreign_events_are_ignored(
        flex: Any, fake_twilio: FakeTwilio, flex_config: TwilioConfig) -> None:
    bridge, published, _store = flex
    fake_twilio.configure_event_callback(flex_config.taskrouter_url,
                                         ["task.canceled", "reservation.accepted"])
    handed = await hand_off(flex_config.support_db_url)
    await bridge.on_handoff(handed["conversation_id"], handed["reference"])
    sid = fake_twilio.conversation(handed["conversation_id"])["sid"]
    task = fake_twilio.task_for_conversation(sid)
    sent = await _run(fake_twilio, "cancel_task", task["sid"])
    assert [d.params["TaskCanceledReason"] for d in sent] == ["Task TTL Exceeded"]
    await _deliver_events(bridge, fake_twilio, sent)
    resolved = [e for t, e in published if t == "ticket.resolved"]
    assert [e["agent_name"] for e in resolved] == ["our support team"]
    base = dict(sent[0].params)
    assert await bridge.handle_task_event({**base, "WorkspaceSid": "WS" + "0" * 32}) \
        == "other_workspace"
    foreign = {**base, "TaskSid": "WT" + "9" * 32}  # a task that is not stored with a link
    assert await bridge.handle_task_event({**foreign, "TaskAttributes": json.dumps(
        {"from": "+4930"})}) == "not_ours"
    assert await bridge.handle_task_event({**foreign, "TaskAttributes": json.dumps(
        {"origin": "support-bot", "ticket": "T-999999"})}) == "unknown_ticket"
    # our task is known by its SID, whatever its attributes say now
    assert await bridge.handle_task_event({**base, "TaskAttributes": "{}"}) == "already_closed"


async def test_customer_leaving_closes_the_interaction_channel(
        flex: Any, fake_twilio: FakeTwilio, flex_config: TwilioConfig) -> None:
    bridge, _published, _store = flex
    handed = await hand_off(flex_config.support_db_url)
    await bridge.on_handoff(handed["conversation_id"], handed["reference"])
    sid = fake_twilio.conversation(handed["conversation_id"])["sid"]
    task = fake_twilio.task_for_conversation(sid)
    worker = fake_twilio.add_worker("Ben Okafor", "ben@northwind.example")
    await _run(fake_twilio, "accept_task", task["sid"], worker)
    await bridge._customer_left(handed["conversation_id"])
    assert fake_twilio.task_for_conversation(sid)["assignment_status"] == "wrapping"
    assert fake_twilio.conversation(sid)["state"] == "closed"
    channel_posts = fake_twilio.requests_to("POST", "/Channels/")
    assert [f["Status"] for f in channel_posts] == [["closed"]]


class _Request:
    """What the channel's route reads of a Sanic request."""

    def __init__(self, path: str, params: Dict[str, str], headers: Dict[str, str]) -> None:
        from urllib.parse import urlencode

        self.body = urlencode(params).encode()
        self.headers = headers
        self.path = path
        self.query_string = ""
        self.remote_addr = self.ip = "127.0.0.1"
        self.args: Dict[str, Any] = {}


async def test_taskrouter_route_checks_signatures_and_stores(
        flex_config: TwilioConfig, fake_twilio: FakeTwilio) -> None:
    from bot.twilio.channel import TwilioConversationsInput

    channel = TwilioConversationsInput(flex_config)
    params = {"EventType": "task.completed", "Sid": "EV" + "1" * 32,
              "WorkspaceSid": fake_twilio.workspace_sid, "TaskSid": "WT" + "2" * 32,
              "TaskAttributes": json.dumps({"origin": "support-bot", "ticket": "T-1"}),
              "Blank": ""}
    good = sign(AUTH_TOKEN, flex_config.taskrouter_url, params)
    try:
        forged = await channel._taskrouter(_Request(TASKROUTER_PATH, params,
                                                    {"X-Twilio-Signature": "Zm9yZ2Vk"}))
        assert forged.status == 403
        ok = await channel._taskrouter(_Request(TASKROUTER_PATH, params, {
            "X-Twilio-Signature": good, "I-Twilio-Idempotency-Token": "tok-1"}))
        assert (ok.status, json.loads(ok.body)) == (200, {"ok": True, "duplicate": False})
        again = await channel._taskrouter(_Request(TASKROUTER_PATH, params, {
            "X-Twilio-Signature": good, "I-Twilio-Idempotency-Token": "tok-2"}))
        assert json.loads(again.body)["duplicate"] is True  # the same event SID
        with _db(flex_config.support_db_url) as db:
            assert db.execute("SELECT count(*) FROM twilio_inbox WHERE kind = 'taskrouter'")\
                .fetchone()[0] == 1
        plain = TwilioConversationsInput(replace(flex_config, flex=FlexConfig()))
        off = await plain._taskrouter(_Request(TASKROUTER_PATH, params,
                                               {"X-Twilio-Signature": good}))
        assert off.status == 404
        await plain.close()
    finally:
        await channel.close()


def _results(url: str) -> List[str]:
    with _db(url) as db:
        return [r[0] for r in db.execute(
            "SELECT result FROM twilio_inbox WHERE kind = 'taskrouter' ORDER BY id")]


async def test_sids_are_stored_and_a_transfer_resolves_nothing(
        flex: Any, fake_twilio: FakeTwilio, flex_config: TwilioConfig, capsys: Any) -> None:
    bridge, published, store = flex
    fake_twilio.configure_event_callback(flex_config.taskrouter_url)
    handed = await hand_off(flex_config.support_db_url)
    assert await bridge.on_handoff(handed["conversation_id"], handed["reference"]) is True
    sid = fake_twilio.conversation(handed["conversation_id"])["sid"]
    first = fake_twilio.task_for_conversation(sid)
    attributes = json.loads(first["attributes"])
    link = await store.link_for_ticket(handed["reference"])
    assert (link.flex_interaction_sid, link.flex_channel_sid, link.flex_task_sid) == (
        attributes["flexInteractionSid"], attributes["flexInteractionChannelSid"], first["sid"])
    for key in (first["sid"], link.flex_interaction_sid, link.flex_channel_sid, sid,
                handed["reference"]):
        assert [found.id for found in await store.find_links(key)] == [link.id]

    maria = fake_twilio.add_worker("Maria Lopez", "maria.lopez@northwind.example")
    await _deliver_events(bridge, fake_twilio,
                          await _run(fake_twilio, "accept_task", first["sid"], maria))
    # Maria transfers the chat to Ben: a new task for the same Interaction channel
    new_sid, sent = await _run(fake_twilio, "transfer_task", first["sid"], None, "Senior")
    assert [d.params["EventType"] for d in sent] == ["task.created", "task.wrapup"]
    await _deliver_events(bridge, fake_twilio, sent)
    assert (await store.link_for_ticket(handed["reference"])).flex_task_sid == new_sid
    assert fake_twilio.conversation(sid)["state"] == "active"
    ben = fake_twilio.add_worker("Ben Okafor", "ben.okafor@northwind.example")
    await _deliver_events(bridge, fake_twilio, await _run(fake_twilio, "accept_task", new_sid,
                                                          ben))
    assert [(t, e["agent_name"]) for t, e in published
            if t in ("ticket.claimed", "ticket.transferred")] == [
        ("ticket.claimed", "Maria Lopez"), ("ticket.transferred", "Ben Okafor")]
    _message, hook = await _run(fake_twilio, "agent_says", sid, "ben.okafor@northwind.example",
                                "Ben here, I have your order open.")
    assert await bridge.accept_webhook(hook[0].params, hook[0].token)
    await bridge.idle()
    assert [e["message"]["sender_name"] for t, e in published if t == "agent.message"] == [
        "Ben Okafor"]
    # Maria finishes her wrap-up: the old task completes, the chat goes on with Ben
    await _deliver_events(bridge, fake_twilio,
                          await _run(fake_twilio, "complete_task", first["sid"]))
    assert not [e for t, e in published if t == "ticket.resolved"]
    with _db(flex_config.support_db_url) as db:
        assert db.execute("SELECT status FROM tickets WHERE reference = ?",
                          (handed["reference"],)).fetchone()[0] == "assigned"
    # Ben ends the chat: resolved once, by Ben
    await _deliver_events(bridge, fake_twilio, await _run(fake_twilio, "wrap_up_task", new_sid))
    await _deliver_events(bridge, fake_twilio, await _run(fake_twilio, "complete_task", new_sid))
    assert [(e["ticket"], e["agent_name"]) for t, e in published if t == "ticket.resolved"] == [
        (handed["reference"], "Ben Okafor")]
    assert _results(flex_config.support_db_url)[-9:] == [
        "ignored", "accepted",  # Maria's reservation
        "transferred", "superseded",  # the new task; Maria's task wrapping up
        "ignored", "accepted",  # Ben's reservation
        "superseded",  # Maria's task completed
        "resolved", "already_closed"]  # Ben's wrap-up and completion

    # the operator command finds the chat by its task (or any other SID)
    from bot.twilio.links import main

    capsys.readouterr()
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, main, ["--url", flex_config.support_db_url,
                                                   new_sid]) == 0
    [shown] = json.loads(capsys.readouterr().out)
    assert (shown["ticket"], shown["state"], shown["flex_task_sid"], shown["last_agent"]) == (
        handed["reference"], "closed", new_sid, "Ben Okafor")
    assert shown["flex_interaction_sid"] == link.flex_interaction_sid
    assert await loop.run_in_executor(None, main, ["--url", flex_config.support_db_url,
                                                   "WT" + "0" * 32]) == 1


async def test_a_transfer_whose_old_task_ends_first_or_an_agent_leaving(
        flex: Any, fake_twilio: FakeTwilio, flex_config: TwilioConfig) -> None:
    bridge, published, store = flex
    fake_twilio.configure_event_callback(flex_config.taskrouter_url)
    handed = await hand_off(flex_config.support_db_url)
    await bridge.on_handoff(handed["conversation_id"], handed["reference"])
    sid = fake_twilio.conversation(handed["conversation_id"])["sid"]
    first = fake_twilio.task_for_conversation(sid)
    maria = fake_twilio.add_worker("Maria Lopez", "maria@northwind.example")
    await _deliver_events(bridge, fake_twilio,
                          await _run(fake_twilio, "accept_task", first["sid"], maria))
    new_sid, sent = await _run(fake_twilio, "transfer_task", first["sid"], None, "Everyone",
                               True)
    assert [d.params["EventType"] for d in sent] == ["task.wrapup", "task.created"]
    await _deliver_events(bridge, fake_twilio, sent)
    assert _results(flex_config.support_db_url)[-2:] == ["transferred", "ignored"]
    assert (await store.link_for_ticket(handed["reference"])).flex_task_sid == new_sid

    # the new agent leaves the chat without ending it (nobody else has it yet): wrapping
    # with the Interaction channel open resolves nothing; its completion does
    ben = fake_twilio.add_worker("Ben Okafor", "ben@northwind.example")
    accepted = await _run(fake_twilio, "accept_task", new_sid, ben)
    await _deliver_events(bridge, fake_twilio, accepted)
    fake_twilio.tasks[new_sid]["assignment_status"] = "wrapping"
    left = {**accepted[-1].params, "EventType": "task.wrapup", "Sid": "EV" + "3" * 32,
            "TaskAssignmentStatus": "wrapping"}
    assert await bridge.handle_task_event(left) == "agent_left"
    assert not [e for t, e in published if t == "ticket.resolved"]
    done = await _run(fake_twilio, "complete_task", new_sid)
    await _deliver_events(bridge, fake_twilio, done)
    assert [e["agent_name"] for t, e in published if t == "ticket.resolved"] == ["Ben Okafor"]


async def test_a_renamed_worker_is_shown_with_the_new_name_after_the_ttl(
        flex: Any, fake_twilio: FakeTwilio, flex_config: TwilioConfig) -> None:
    bridge, published, _store = flex
    bridge.workers.ttl = 0.3
    fake_twilio.configure_event_callback(flex_config.taskrouter_url)
    handed = await hand_off(flex_config.support_db_url)
    await bridge.on_handoff(handed["conversation_id"], handed["reference"])
    sid = fake_twilio.conversation(handed["conversation_id"])["sid"]
    task = fake_twilio.task_for_conversation(sid)
    worker = fake_twilio.add_worker("maria.lopez@northwind.example", "maria.lopez@northwind.example")
    fake_twilio.workers[worker]["attributes"] = json.dumps(  # SSO: no full_name yet
        {"contact_uri": "client:maria.lopez@northwind.example"})
    await _deliver_events(bridge, fake_twilio, await _run(fake_twilio, "accept_task",
                                                          task["sid"], worker))

    async def says(text: str) -> str:
        _m, hook = await _run(fake_twilio, "agent_says", sid, "maria.lopez@northwind.example",
                              text)
        assert await bridge.accept_webhook(hook[0].params, hook[0].token)
        await bridge.idle()
        return [e["message"]["sender_name"] for t, e in published if t == "agent.message"][-1]

    assert await says("Hello!") == "maria.lopez"  # an e-mail-like name: the part before @
    fake_twilio.rename_worker(worker, "Maria López")
    assert await says("One moment.") == "maria.lopez"  # cached
    await asyncio.sleep(0.35)
    assert await says("Found it.") == "Maria López"
    assert fake_twilio.count_requests("GET", f"/Workers/{worker}") == 2
