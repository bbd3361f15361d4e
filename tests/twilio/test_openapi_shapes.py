"""Every response shape the fake serves, checked against Twilio's official OpenAPI files, so
the fake cannot drift from Twilio (issue 15).

The specs are vendored from https://github.com/twilio/twilio-oai (MIT, ``LICENSE`` next to
them) under ``tests/fixtures/twilio-oai/``, trimmed to the paths the product uses by
``trim.py`` there (the full files are 0.5-0.9 MB each). For each endpoint the product calls
(Conversations, Participants, Messages, scoped Webhooks; Flex Interactions and their
channels; TaskRouter workspace, tasks and workers) the fake's answer must have the status
the spec documents, exactly the schema's properties (none missing, none extra), every
``required`` field, and values of the documented type (nullable, enum, pattern, length,
``date-time`` and ``uri`` formats), recursively (list pages and their ``meta``).
"""
from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import aiohttp
import pytest

from tests.twilio.conftest import ACCOUNT_SID, AUTH_TOKEN
from tests.twilio.fake_twilio import FakeTwilio

SPECS = Path(__file__).resolve().parents[1] / "fixtures" / "twilio-oai"
CONVERSATIONS, FLEX, TASKROUTER = ("twilio_conversations_v1.json", "twilio_flex_v1.json",
                                   "twilio_taskrouter_v1.json")


def _spec(name: str) -> Dict[str, Any]:
    return json.loads((SPECS / name).read_text())


class Shape:
    """Checks JSON values against one OpenAPI document's schemas."""

    def __init__(self, spec: Dict[str, Any]) -> None:
        self.spec = spec
        self.errors: List[str] = []

    def resolve(self, schema: Dict[str, Any]) -> Dict[str, Any]:
        while "$ref" in schema:
            schema = self.spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        return schema

    def check(self, value: Any, schema: Dict[str, Any], where: str) -> None:
        schema = self.resolve(schema)
        if value is None:
            if not schema.get("nullable") and "type" in schema:
                self.errors.append(f"{where}: null, but not nullable")
            return
        kind = schema.get("type")
        if kind == "object" or "properties" in schema:
            if not isinstance(value, dict):
                self.errors.append(f"{where}: {type(value).__name__}, expected object")
                return
            properties = schema.get("properties")
            if properties is None:  # a free-form object (uri-map, JSON attributes)
                return
            for extra in sorted(set(value) - set(properties)):
                self.errors.append(f"{where}.{extra}: not in Twilio's schema")
            for missing in sorted(set(properties) - set(value)):
                self.errors.append(f"{where}.{missing}: missing (Twilio always sends it)")
            for name in schema.get("required", []):
                if name not in value:
                    self.errors.append(f"{where}.{name}: required")
            for name, sub in properties.items():
                if name in value:
                    self.check(value[name], sub, f"{where}.{name}")
        elif kind == "array":
            if not isinstance(value, list):
                self.errors.append(f"{where}: {type(value).__name__}, expected array")
                return
            for index, item in enumerate(value):
                self.check(item, schema.get("items", {}), f"{where}[{index}]")
        elif kind == "string":
            self._string(value, schema, where)
        elif kind == "integer":
            if not isinstance(value, int) or isinstance(value, bool):
                self.errors.append(f"{where}: {value!r} is not an integer")
        elif kind == "number":
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                self.errors.append(f"{where}: {value!r} is not a number")
        elif kind == "boolean":
            if not isinstance(value, bool):
                self.errors.append(f"{where}: {value!r} is not a boolean")

    def _string(self, value: Any, schema: Dict[str, Any], where: str) -> None:
        if not isinstance(value, str):
            self.errors.append(f"{where}: {value!r} is not a string")
            return
        if "enum" in schema and value not in schema["enum"]:
            self.errors.append(f"{where}: {value!r} not one of {schema['enum']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            self.errors.append(f"{where}: {value!r} does not match {schema['pattern']}")
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength",
                                                                                10 ** 9):
            self.errors.append(f"{where}: length {len(value)} outside the schema's bounds")
        if schema.get("format") == "date-time":
            try:
                datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                self.errors.append(f"{where}: {value!r} is not an ISO 8601 date-time")
        if schema.get("format") == "uri" and not value.startswith("https://"):
            self.errors.append(f"{where}: {value!r} is not an https URI")


class Recorder:
    """Calls the fake with raw HTTP and keeps ``(spec, path template, method, status, body)``."""

    def __init__(self, fake: FakeTwilio, http: aiohttp.ClientSession) -> None:
        self.fake, self.http = fake, http
        self.seen: List[Tuple[str, str, str, int, Any]] = []

    async def call(self, spec: str, template: str, method: str, path: str,
                   data: Optional[Dict[str, str]] = None) -> Any:
        async with self.http.request(method, self.fake.base_url + path, data=data) as answer:
            text = await answer.text()
            body = json.loads(text) if text else None
        assert answer.status < 300, (method, path, answer.status, body)
        self.seen.append((spec, template, method.lower(), answer.status, body))
        return body


async def _exercise(fake: FakeTwilio) -> List[Tuple[str, str, str, int, Any]]:
    """Every endpoint the product (and the fake's Flex side) uses, once each."""
    auth = aiohttp.BasicAuth(ACCOUNT_SID, AUTH_TOKEN)
    async with aiohttp.ClientSession(auth=auth) as http:
        r = Recorder(fake, http)
        c, conv = CONVERSATIONS, "/v1/Conversations"
        made = await r.call(c, conv, "POST", conv, {
            "UniqueName": "shape:check", "FriendlyName": "Anna · T-1",
            "Attributes": json.dumps({"ticket": "T-1"})})
        sid = made["sid"]
        one = f"{conv}/{{Sid}}"
        await r.call(c, conv, "GET", f"{conv}?PageSize=5")
        await r.call(c, one, "GET", f"{conv}/{sid}")
        await r.call(c, one, "POST", f"{conv}/{sid}", {"FriendlyName": "renamed"})
        parts = f"{conv}/{{ConversationSid}}/Participants"
        participant = await r.call(c, parts, "POST", f"{conv}/{sid}/Participants",
                                   {"Identity": "cust-anna"})
        await r.call(c, parts, "GET", f"{conv}/{sid}/Participants")
        await r.call(c, parts + "/{Sid}", "GET",
                     f"{conv}/{sid}/Participants/{participant['sid']}")
        messages = f"{conv}/{{ConversationSid}}/Messages"
        message = await r.call(c, messages, "POST", f"{conv}/{sid}/Messages",
                               {"Author": "cust-anna", "Body": "Where is my parcel?"})
        await r.call(c, messages, "GET", f"{conv}/{sid}/Messages")
        await r.call(c, messages + "/{Sid}", "GET", f"{conv}/{sid}/Messages/{message['sid']}")
        hooks = f"{conv}/{{ConversationSid}}/Webhooks"
        hook = await r.call(c, hooks, "POST", f"{conv}/{sid}/Webhooks", {
            "Target": "webhook", "Configuration.Url": "http://127.0.0.1:9/x",
            "Configuration.Method": "POST", "Configuration.Filters": "onMessageAdded"})
        await r.call(c, hooks, "GET", f"{conv}/{sid}/Webhooks")
        await r.call(c, hooks + "/{Sid}", "GET", f"{conv}/{sid}/Webhooks/{hook['sid']}")

        f = FLEX
        interaction = await r.call(f, "/v1/Interactions", "POST", "/v1/Interactions", {
            "Channel": json.dumps({"type": "chat", "initiated_by": "api",
                                   "properties": {"media_channel_sid": sid}}),
            "Routing": json.dumps({"properties": {
                "workspace_sid": fake.workspace_sid, "workflow_sid": fake.workflow_sid,
                "task_channel_unique_name": "chat",
                "attributes": {"ticket": "T-1", "origin": "support-bot"}}})})
        kd = interaction["sid"]
        await r.call(f, "/v1/Interactions/{Sid}", "GET", f"/v1/Interactions/{kd}")
        chans = "/v1/Interactions/{InteractionSid}/Channels"
        listed = await r.call(f, chans, "GET", f"/v1/Interactions/{kd}/Channels")
        uo = listed["channels"][0]["sid"]
        await r.call(f, chans + "/{Sid}", "GET", f"/v1/Interactions/{kd}/Channels/{uo}")

        t, ws = TASKROUTER, f"/v1/Workspaces/{fake.workspace_sid}"
        await r.call(t, "/v1/Workspaces/{Sid}", "GET", ws)
        tasks = "/v1/Workspaces/{WorkspaceSid}/Tasks"
        found = await r.call(t, tasks, "GET",
                             f"{ws}/Tasks?EvaluateTaskAttributes=ticket%20%3D%3D%20%22T-1%22")
        wt = found["tasks"][0]["sid"]
        await r.call(t, tasks + "/{Sid}", "GET", f"{ws}/Tasks/{wt}")
        worker = fake.add_worker("Maria Lopez", "maria@northwind.example")
        workers = "/v1/Workspaces/{WorkspaceSid}/Workers"
        await r.call(t, workers, "GET", f"{ws}/Workers")
        await r.call(t, workers + "/{Sid}", "GET", f"{ws}/Workers/{worker}")
        await r.call(t, "/v1/Workspaces/{Sid}", "POST", ws,
                     {"EventCallbackUrl": "https://support.example/webhooks/x"})
        fake.workspace["event_callback_url"] = None

        # changes last: they close things
        await r.call(t, tasks + "/{Sid}", "POST", f"{ws}/Tasks/{wt}",
                     {"AssignmentStatus": "canceled", "Reason": "shape check"})
        await r.call(f, chans + "/{Sid}", "POST", f"/v1/Interactions/{kd}/Channels/{uo}",
                     {"Status": "closed"})
        await r.call(c, messages + "/{Sid}", "DELETE", f"{conv}/{sid}/Messages/{message['sid']}")
        await r.call(c, hooks + "/{Sid}", "DELETE", f"{conv}/{sid}/Webhooks/{hook['sid']}")
        await r.call(c, parts + "/{Sid}", "DELETE",
                     f"{conv}/{sid}/Participants/{participant['sid']}")
        await r.call(c, one, "DELETE", f"{conv}/{sid}")
        return r.seen


@pytest.fixture(scope="module")
def answers() -> Iterator[List[Tuple[str, str, str, int, Any]]]:
    import asyncio

    with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as fake:
        yield asyncio.run(_exercise(fake))


def test_the_vendored_specs_are_twilios() -> None:
    assert (SPECS / "LICENSE").read_text().startswith("MIT License")
    for name in (CONVERSATIONS, FLEX, TASKROUTER):
        spec = _spec(name)
        assert spec["openapi"].startswith("3.") and "twilio" in spec["info"]["contact"]["email"]


def test_every_product_endpoint_was_exercised(answers: List[Tuple[str, str, str, int, Any]]
                                              ) -> None:
    trim = (SPECS / "trim.py").read_text()
    for name in (CONVERSATIONS, FLEX, TASKROUTER):
        for template in _spec(name)["paths"]:
            assert template in trim
            assert any(s == name and t == template for s, t, _m, _st, _b in answers), template


def test_fake_answers_match_the_openapi_schemas(answers: List[Tuple[str, str, str, int, Any]]
                                                ) -> None:
    problems: List[str] = []
    specs = {name: _spec(name) for name in (CONVERSATIONS, FLEX, TASKROUTER)}
    for name, template, method, status, body in answers:
        operation = specs[name]["paths"].get(template, {}).get(method)
        where = f"{method.upper()} {template} ({name})"
        if operation is None:
            problems.append(f"{where}: not in Twilio's API")
            continue
        documented = operation["responses"]
        if str(status) not in documented:
            problems.append(f"{where}: answered {status}, Twilio documents {sorted(documented)}")
            continue
        content = documented[str(status)].get("content")
        if content is None:
            if body is not None:
                problems.append(f"{where}: {status} has no body at Twilio")
            continue
        shape = Shape(specs[name])
        shape.check(body, content["application/json"]["schema"], where)
        problems += shape.errors
    assert not problems, "the fake drifted from Twilio:\n" + "\n".join(problems)


def test_the_checker_catches_drift() -> None:
    spec = _spec(CONVERSATIONS)
    schema = spec["paths"]["/v1/Conversations/{Sid}"]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"]
    shape = Shape(spec)
    shape.check({"sid": "XX1", "state": "open", "extra": 1}, schema, "conversation")
    text = "\n".join(shape.errors)
    assert "conversation.extra: not in Twilio's schema" in text
    assert "conversation.account_sid: missing" in text
    assert "does not match" in text and "not one of" in text
