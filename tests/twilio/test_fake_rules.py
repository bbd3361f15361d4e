"""The fake behaves like Twilio where the product depends on it (issue 15, steps 1 and 2).

* ``X-Twilio-Webhook-Enabled``: service-level (and scoped) webhooks fire for SDK actions and
  for REST actions that carry ``true`` only; the bridge sends ``true`` when it creates the
  Conversation and the participant and posts the customer's words, ``false`` for history.
* State rules and limits: closed → active is a 400 with Twilio's error JSON, bodies over 1,600
  characters, Conversation attributes over 16 KB and message attributes over 4 KB are 400,
  ``PageSize`` outside 1..100 (Conversations) or 1..1000 (TaskRouter) is 400,
  ``DELETE .../Messages/{Sid}`` answers 204.
* Webhook retries (docs "Webhooks: Connection Overrides"): a delivery whose connection fails
  is retried once by default (``rc=1``, ``rp=ct``), an answer slower than the 5 s limit or a
  5xx only with ``rp=rt``/``5xx``/``all``; every try has the same idempotency token.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator, Dict, List, Tuple

import aiohttp
import pytest
from aiohttp import web

from bot.twilio.bridge import TwilioBridge
from bot.twilio.client import TwilioApi
from tests.twilio.conftest import ACCOUNT_SID, AUTH_TOKEN, hand_off
from tests.twilio.fake_twilio import FakeTwilio

Bridge = Tuple[TwilioBridge, List[Tuple[str, Dict[str, Any]]]]


class Receiver:
    """A local webhook endpoint: records every POST; answers ``status`` or hangs ``delay`` s
    for the first ``bad`` requests."""

    def __init__(self) -> None:
        self.hits: List[Tuple[Dict[str, str], Dict[str, str]]] = []
        self.bad = 0
        self.status = 500
        self.delay = 0.0
        self.url = ""
        self._runner: Any = None

    async def handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.hits.append(({k: str(v) for k, v in form.items()}, dict(request.headers)))
        if self.bad > 0:
            self.bad -= 1
            if self.delay:
                await asyncio.sleep(self.delay)
            return web.Response(status=self.status)
        return web.json_response({"ok": True})

    def events(self) -> List[str]:
        return [form.get("EventType", "") for form, _h in self.hits]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hook = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", hook.handle)
    hook._runner = web.AppRunner(app, access_log=None)
    await hook._runner.setup()
    site = web.TCPSite(hook._runner, "127.0.0.1", 0)
    await site.start()
    hook.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/hook"  # type: ignore
    yield hook
    await hook._runner.cleanup()


@pytest.fixture
async def api(fake_twilio: FakeTwilio) -> AsyncIterator[TwilioApi]:
    client = TwilioApi(ACCOUNT_SID, AUTH_TOKEN, timeout=2.0, api_base=fake_twilio.base_url)
    yield client
    await client.close()


async def _settle(fake: FakeTwilio) -> None:
    await asyncio.get_running_loop().run_in_executor(None, fake.wait_background)


async def _raw(fake: FakeTwilio, method: str, path: str, data: Any = None,
               headers: Any = None) -> Tuple[int, Any]:
    async with aiohttp.ClientSession(auth=aiohttp.BasicAuth(ACCOUNT_SID, AUTH_TOKEN)) as http:
        async with http.request(method, fake.base_url + path, data=data,
                                headers=headers) as response:
            text = await response.text()
            return response.status, (json.loads(text) if text else None)


def _create_flags(fake: FakeTwilio) -> List[Any]:
    """``X-Twilio-Webhook-Enabled`` of every ``POST /v1/Conversations`` (None: absent)."""
    return [next((v for k, v in h.items() if k.lower() == "x-twilio-webhook-enabled"), None)
            for m, p, _f, h in fake.requests if m == "POST" and p == "/v1/Conversations"]


# ----------------------------------------------------------------- webhook flag


async def test_bridge_enables_webhooks_where_service_webhooks_are_expected(
        bridge: Bridge, fake_twilio: FakeTwilio, config: Any, receiver: Receiver) -> None:
    fake_twilio.set_service_webhook(receiver.url)
    try:
        bridge_, _published = bridge
        handed = await hand_off(config.support_db_url)
        assert await bridge_.on_handoff(handed["conversation_id"], handed["reference"])
        sid = fake_twilio.conversation(handed["conversation_id"])["sid"]
        await _settle(fake_twilio)
        assert _create_flags(fake_twilio)[-1] == "true"
        assert fake_twilio.webhook_flags("POST", f"{sid}/Participants") == ["true"]
        assert set(fake_twilio.webhook_flags("POST", f"{sid}/Messages")) == {"false"}
        mine = [(e, f.get("ConversationSid")) for (f, _h), e in zip(receiver.hits,
                                                                   receiver.events())]
        assert ("onConversationAdded", sid) in mine and ("onParticipantAdded", sid) in mine
        assert "onMessageAdded" not in receiver.events(), "the transcript is history"

        await bridge_.forward_customer_message(handed["conversation_id"],
                                               {"id": 777_001, "text": "Still there?"})
        await _settle(fake_twilio)
        added = [f for f, _h in receiver.hits if f.get("EventType") == "onMessageAdded"]
        assert [(f["Body"], f["Source"]) for f in added] == [("Still there?", "API")]
        # an agent writing in Flex (SDK) fires the service webhook without any header
        await asyncio.get_running_loop().run_in_executor(
            None, fake_twilio.agent_says, sid, "maria@northwind.example", "Hello!")
        assert [f["Body"] for f, _h in receiver.hits
                if f.get("EventType") == "onMessageAdded"][-1] == "Hello!"
    finally:
        fake_twilio.set_service_webhook(None)


async def test_rest_actions_without_the_header_fire_no_webhooks(
        api: TwilioApi, fake_twilio: FakeTwilio, receiver: Receiver) -> None:
    fake_twilio.set_service_webhook(receiver.url)
    try:
        quiet = await api.conversations.create_async(friendly_name="quiet")
        await api.conversations(quiet.sid).participants.create_async(identity="q-1")
        await api.conversations(quiet.sid).messages.create_async(author="q-1", body="hi")
        await _settle(fake_twilio)
        assert receiver.hits == []
        loud = await api.conversations.create_async(friendly_name="loud",
                                                    x_twilio_webhook_enabled="true")
        await api.conversations(loud.sid).participants.create_async(
            identity="l-1", x_twilio_webhook_enabled="true")
        await _settle(fake_twilio)
        assert receiver.events() == ["onConversationAdded", "onParticipantAdded"]
        assert _create_flags(fake_twilio)[-2:] == [None, "true"]
    finally:
        fake_twilio.set_service_webhook(None)


# ------------------------------------------------------------ state and limits


async def test_closed_conversations_stay_closed(api: TwilioApi, fake_twilio: FakeTwilio) -> None:
    made = await api.conversations.create_async(friendly_name="to close")
    await api.conversations(made.sid).update_async(state="inactive")
    await api.conversations(made.sid).update_async(state="active")  # allowed
    await api.conversations(made.sid).update_async(state="closed")
    status, body = await _raw(fake_twilio, "POST", f"/v1/Conversations/{made.sid}",
                              data={"State": "active"})
    assert status == 400
    assert set(body) == {"code", "message", "more_info", "status"} and body["status"] == 400
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{body['code']}"
    assert fake_twilio.conversation(made.sid)["state"] == "closed"
    status, _ = await _raw(fake_twilio, "POST", f"/v1/Conversations/{made.sid}",
                           data={"State": "closed"})
    assert status == 200  # closing again is no change
    status, _ = await _raw(fake_twilio, "POST", f"/v1/Conversations/{made.sid}",
                           data={"State": "archived"})
    assert status == 400


async def test_body_attribute_and_page_size_limits(api: TwilioApi,
                                                   fake_twilio: FakeTwilio) -> None:
    made = await api.conversations.create_async(friendly_name="limits")
    path = f"/v1/Conversations/{made.sid}/Messages"
    assert (await _raw(fake_twilio, "POST", path, data={"Body": "x" * 1600}))[0] == 201
    status, body = await _raw(fake_twilio, "POST", path, data={"Body": "x" * 1601})
    assert status == 400 and "1600" in body["message"]
    big = json.dumps({"pad": "y" * (4 * 1024)})
    assert (await _raw(fake_twilio, "POST", path, data={"Body": "a", "Attributes": big}))[0] \
        == 400
    huge = json.dumps({"pad": "z" * (16 * 1024)})
    assert (await _raw(fake_twilio, "POST", "/v1/Conversations",
                       data={"Attributes": huge}))[0] == 400
    fits = json.dumps({"pad": "z" * (16 * 1024 - 20)})
    assert (await _raw(fake_twilio, "POST", "/v1/Conversations",
                       data={"Attributes": fits}))[0] == 201
    assert (await _raw(fake_twilio, "POST", f"/v1/Conversations/{made.sid}",
                       data={"Attributes": huge}))[0] == 400
    assert (await _raw(fake_twilio, "POST", "/v1/Conversations",
                       data={"Attributes": "{not json"}))[0] == 400
    # PageSize: Conversations lists allow 1..100, TaskRouter lists 1..1000
    assert (await _raw(fake_twilio, "GET", "/v1/Conversations?PageSize=100"))[0] == 200
    status, body = await _raw(fake_twilio, "GET", "/v1/Conversations?PageSize=1001")
    assert status == 400 and body["code"] == 20001
    assert (await _raw(fake_twilio, "GET", "/v1/Conversations?PageSize=101"))[0] == 400
    assert (await _raw(fake_twilio, "GET", "/v1/Conversations?PageSize=0"))[0] == 400
    tasks = f"/v1/Workspaces/{fake_twilio.workspace_sid}/Tasks"
    assert (await _raw(fake_twilio, "GET", f"{tasks}?PageSize=1000"))[0] == 200
    assert (await _raw(fake_twilio, "GET", f"{tasks}?PageSize=1001"))[0] == 400
    page = await api.conversations.page_async(page_size=2)
    assert len(list(page)) <= 2  # the library's own paging still works


async def test_delete_message_answers_204(api: TwilioApi, fake_twilio: FakeTwilio) -> None:
    made = await api.conversations.create_async(friendly_name="delete")
    message = await api.conversations(made.sid).messages.create_async(author="a", body="oops")
    status, body = await _raw(fake_twilio, "DELETE",
                              f"/v1/Conversations/{made.sid}/Messages/{message.sid}")
    assert (status, body) == (204, None)
    assert fake_twilio.messages(made.sid) == []
    assert await api.conversations(made.sid).messages.create_async(author="a", body="b")
    assert (await _raw(fake_twilio, "DELETE",
                       f"/v1/Conversations/{made.sid}/Messages/IM{'0' * 32}"))[0] == 404


# -------------------------------------------------------------------- retries


async def _hooked(api: TwilioApi, url: str) -> str:
    made = await api.conversations.create_async(friendly_name="hooked")
    await api.conversations(made.sid).webhooks.create_async(
        target="webhook", configuration_url=url, configuration_method="POST",
        configuration_filters=["onMessageAdded"])
    return made.sid


async def test_webhook_retried_once_when_the_connection_fails(
        api: TwilioApi, fake_twilio: FakeTwilio) -> None:
    sid = await _hooked(api, "http://127.0.0.1:9/refused")
    _message, sent = await asyncio.get_running_loop().run_in_executor(
        None, fake_twilio.agent_says, sid, "maria", "anyone?")
    tries = fake_twilio.deliveries_to("127.0.0.1:9/refused")
    assert [d.status for d in tries] == [0, 0], "rc=1: one retry after a connect failure"
    assert len({d.token for d in tries}) == 1, "a retry has the same idempotency token"
    assert [d.params["RetryCount"] for d in tries] == ["0", "1"]
    assert len(sent) == 1


async def test_5xx_and_timeouts_retried_only_when_the_policy_says_so(
        api: TwilioApi, fake_twilio: FakeTwilio, receiver: Receiver) -> None:
    loop = asyncio.get_running_loop()
    sid = await _hooked(api, receiver.url)
    receiver.bad, receiver.status = 1, 500
    await loop.run_in_executor(None, fake_twilio.agent_says, sid, "maria", "one")
    assert len(receiver.hits) == 1, "default rp=ct: a 5xx answer is not retried"

    receiver.hits.clear()
    sid = await _hooked(api, receiver.url + "#rc=3&rp=5xx,rt")
    receiver.bad, receiver.status = 2, 503
    await loop.run_in_executor(None, fake_twilio.agent_says, sid, "maria", "two")
    assert len(receiver.hits) == 3 and receiver.bad == 0
    tokens = {h["I-Twilio-Idempotency-Token"] for _f, h in receiver.hits}
    assert len(tokens) == 1
    assert all("#" not in d.url for d in fake_twilio.deliveries_to(receiver.url))

    receiver.hits.clear()
    fake_twilio.webhook_timeout = 0.3  # Twilio waits 5 s; shortened for the test
    try:
        sid = await _hooked(api, receiver.url + "#rp=rt")
        receiver.bad, receiver.status, receiver.delay = 1, 200, 1.0
        await loop.run_in_executor(None, fake_twilio.agent_says, sid, "maria", "three")
        assert len(receiver.hits) == 2, "no answer in time, rp=rt: retried once"
        assert [d.status for d in fake_twilio.deliveries_to(receiver.url)][-2:] == [0, 200]
    finally:
        fake_twilio.webhook_timeout = 5.0
        receiver.delay = 0.0
