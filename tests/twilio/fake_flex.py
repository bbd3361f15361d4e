"""The Flex half of the local fake Twilio (mixed into :class:`tests.twilio.fake_twilio.FakeTwilio`).

* Flex v1 Interactions (``flex-api.twilio.com``): ``POST /v1/Interactions`` (answers 200, as
  Twilio's OpenAPI says) with ``Channel`` (``type``, ``initiated_by``,
  ``properties.media_channel_sid`` = an existing Conversation) and ``Routing``
  (``properties.workspace_sid`` / ``workflow_sid`` / ``task_channel_unique_name`` /
  ``attributes``): an Interaction (``KD``), its channel (``UO``) and a TaskRouter task
  (``WT``) whose attributes are the routing attributes plus what Flex adds
  (``conversationSid``, ``flexInteractionSid``, ``flexInteractionChannelSid``,
  ``channelType``). ``GET /v1/Interactions/{KD}``, ``GET .../Channels``,
  ``GET|POST .../Channels/{UO}`` (``Status=closed|wrapup``: the tasks wrap up, ``closed``
  closes the Conversation).
* TaskRouter v1 (``taskrouter.twilio.com``): ``GET|POST /v1/Workspaces/{WS}`` (the
  ``EventCallbackUrl`` and ``EventsFilter``), ``GET .../Tasks`` (``AssignmentStatus``,
  ``EvaluateTaskAttributes`` with ``key == "value"`` terms joined by ``and``),
  ``GET|POST .../Tasks/{WT}`` (``AssignmentStatus``), ``GET .../Workers`` and
  ``GET .../Workers/{WK}``.
* What Flex agents do (:meth:`FlexFake.add_worker`, :meth:`accept_task`,
  :meth:`wrap_up_task`, :meth:`complete_task`, :meth:`cancel_task`) changes the task and
  sends the workspace's **event callbacks** (``task.created``, ``reservation.created``,
  ``reservation.accepted``, ``task.wrapup``, ``task.completed``, ``task.canceled``),
  form-encoded and signed like every Twilio webhook, filtered by ``EventsFilter``.
  Flex's wrap-up closes the Conversation *without* firing its webhooks (a REST change
  without ``X-Twilio-Webhook-Enabled``): only the TaskRouter events tell the bot.
"""
from __future__ import annotations

import json
import re
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Tuple

__all__ = ["FlexFake", "TwilioError", "iso", "now", "sid"]

FLEX_HOST = "https://flex-api.twilio.com"
TASKROUTER_HOST = "https://taskrouter.twilio.com"
TASKROUTER_MAX_PAGE_SIZE = 1000
CHANNEL_TYPES = ("voice", "sms", "email", "web", "whatsapp", "chat", "messenger", "gbm")
EVENT_DESCRIPTIONS = {
    "task.created": "Task {task} created",
    "reservation.created": "Reservation {reservation} created for Worker {worker}",
    "reservation.accepted": "Reservation {reservation} accepted by Worker {worker}",
    "task.wrapup": "Task {task} wrapping up",
    "task.completed": "Task {task} completed",
    "task.canceled": "Task {task} canceled",
}


class TwilioError(Exception):
    """Answered as Twilio's error JSON (``code``, ``message``, ``more_info``, ``status``)."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _json_param(one: Dict[str, str], name: str, required: bool = True) -> Dict[str, Any]:
    raw = one.get(name)
    if raw is None:
        if required:
            raise TwilioError(400, 20001, f"Missing required parameter {name} in the post body")
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise TwilioError(400, 20001, f"{name} must be a JSON object") from None
    if not isinstance(value, dict):
        raise TwilioError(400, 20001, f"{name} must be a JSON object")
    return value


def _matches(attributes: Dict[str, Any], expression: str) -> bool:
    """``key == "value" and other == 'x'`` (the subset of TaskRouter's expressions we use)."""
    for term in re.split(r"\s+and\s+", expression.strip(), flags=re.I):
        found = re.fullmatch(r"\s*([\w.]+)\s*==\s*(?:\"([^\"]*)\"|'([^']*)')\s*", term)
        if not found:
            raise TwilioError(400, 20001, f"Invalid EvaluateTaskAttributes {expression!r}")
        value: Any = attributes
        for part in found.group(1).split("."):
            value = value.get(part) if isinstance(value, dict) else None
        wanted = found.group(2) if found.group(2) is not None else found.group(3)
        if str(value) != wanted:
            return False
    return True


class FlexFake:
    """Flex Interactions + TaskRouter state and routes (needs FakeTwilio's plumbing)."""

    def __init__(self) -> None:
        self.workspace_sid = "WS" + "4" * 32
        self.workflow_sid = "WW" + "5" * 32
        self.task_queue_sid = "WQ" + "6" * 32
        self.chat_channel_sid = "TC" + "7" * 32
        self.workspace: Dict[str, Any] = {
            "sid": self.workspace_sid, "friendly_name": "Flex Task Assignment",
            "event_callback_url": None, "events_filter": None,
        }
        self.interactions: Dict[str, Dict[str, Any]] = {}
        self.interaction_channels: Dict[str, Dict[str, Any]] = {}
        self.tasks: Dict[str, Dict[str, Any]] = {}
        self.workers: Dict[str, Dict[str, Any]] = {}

    # ----------------------------------------------------------- test helpers

    def configure_event_callback(self, url: Optional[str],
                                 events: Optional[List[str]] = None) -> None:
        """As an operator does in *TaskRouter → Workspaces → Settings*: the Event Callback
        URL and the events to send (None: all)."""
        with self._lock:  # type: ignore[attr-defined]
            self.workspace["event_callback_url"] = url
            self.workspace["events_filter"] = ",".join(events) if events else None

    def add_worker(self, friendly_name: str, identity: str) -> str:
        """A Flex agent (worker) with the Flex identity ``identity``; returns its SID."""
        with self._lock:  # type: ignore[attr-defined]
            worker_sid = sid("WK")
            stamp = iso(now())
            self.workers[worker_sid] = {
                "account_sid": self.account_sid,  # type: ignore[attr-defined]
                "activity_name": "Available", "activity_sid": "WA" + "8" * 32,
                "attributes": json.dumps({"contact_uri": f"client:{identity}",
                                          "email": identity, "full_name": friendly_name,
                                          "routing": {"skills": []}}),
                "available": True, "date_created": stamp, "date_status_changed": stamp,
                "date_updated": stamp, "friendly_name": friendly_name, "sid": worker_sid,
                "workspace_sid": self.workspace_sid,
                "url": f"{TASKROUTER_HOST}/v1/Workspaces/{self.workspace_sid}/Workers/"
                       f"{worker_sid}",
                "links": {"channels": f"{TASKROUTER_HOST}/v1/Workspaces/{self.workspace_sid}"
                                      f"/Workers/{worker_sid}/Channels"},
                "_identity": identity,
            }
            return worker_sid

    def task_for_conversation(self, conversation_sid: str) -> Optional[Dict[str, Any]]:
        """The newest task routing this Conversation (a copy), if any."""
        with self._lock:  # type: ignore[attr-defined]
            found = [t for t in self.tasks.values()
                     if json.loads(t["attributes"]).get("conversationSid") == conversation_sid]
            return dict(found[-1]) if found else None

    def accept_task(self, task_sid: str, worker_sid: str) -> List[Any]:
        """The worker accepts the task's reservation: the worker joins the Conversation
        (Flex adds it), ``reservation.created`` and ``reservation.accepted`` are sent."""
        return self._submit(self._accept(task_sid, worker_sid))  # type: ignore[attr-defined]

    def wrap_up_task(self, task_sid: str) -> List[Any]:
        """The agent ends the chat: the task is ``wrapping``, the interaction channel and the
        Conversation ``closed`` (no Conversations webhook), ``task.wrapup`` is sent."""
        return self._submit(self._task_event(task_sid, "wrapping"))  # type: ignore[attr-defined]

    def complete_task(self, task_sid: str, reason: str = "Task completed") -> List[Any]:
        """The agent completes the wrap-up: ``task.completed``."""
        return self._submit(self._task_event(task_sid, "completed", reason))  # type: ignore

    def cancel_task(self, task_sid: str, reason: str = "Task TTL Exceeded") -> List[Any]:
        """Nobody took the task (or a supervisor cancelled it): ``task.canceled``."""
        return self._submit(self._task_event(task_sid, "canceled", reason))  # type: ignore

    def transfer_task(self, task_sid: str, worker_sid: Optional[str] = None,
                      queue: str = "Everyone", wrap_first: bool = False) -> Tuple[str, List[Any]]:
        """The agent transfers the chat (Flex's cold messaging transfer) to a worker (Known
        Agent Routing) or a queue: a NEW task for the same Interaction channel, with the
        old task's attributes plus ``transferTargetType``/``transferTargetSid``/
        ``transferQueueName``, and the old task wrapping up; the Interaction channel and the
        Conversation stay open. Sends ``task.created`` (new) and ``task.wrapup`` (old), in
        that order unless ``wrap_first``. Returns ``(new task SID, deliveries)``."""
        return self._submit(self._transfer(task_sid, worker_sid, queue, wrap_first))  # type: ignore

    def rename_worker(self, worker_sid: str, friendly_name: str) -> None:
        """An admin renames the worker (*TaskRouter → Workers*; ``full_name`` too)."""
        with self._lock:  # type: ignore[attr-defined]
            worker = self.workers[worker_sid]
            attributes = json.loads(worker["attributes"])
            attributes["full_name"] = friendly_name
            worker.update(friendly_name=friendly_name, attributes=json.dumps(attributes),
                          date_updated=iso(now()))

    # ------------------------------------------------------------ Interactions

    def _interactions_api(self, method: str, rest: List[str], one: Dict[str, str]) -> Tuple:
        if not rest:
            if method != "POST":
                raise TwilioError(405, 20004, "Method not allowed")
            return self._create_interaction(one)
        interaction = self.interactions.get(rest[0])
        if interaction is None:
            raise TwilioError(404, 20404, f"The requested resource /Interactions/{rest[0]} "
                                          "was not found")
        if len(rest) == 1 and method == "GET":
            return (200, _public(interaction))
        if len(rest) >= 2 and rest[1] == "Channels":
            base = f"/v1/Interactions/{interaction['sid']}/Channels"
            channels = [c for c in self.interaction_channels.values()
                        if c["interaction_sid"] == interaction["sid"]]
            if len(rest) == 2 and method == "GET":
                size = _size(one)
                return (200, {"channels": [_public(c) for c in channels[:size]],
                              "meta": _meta("channels", FLEX_HOST, base, size)})
            channel = self.interaction_channels.get(rest[2]) if len(rest) == 3 else None
            if channel is None or channel["interaction_sid"] != interaction["sid"]:
                raise TwilioError(404, 20404, "Interaction channel not found")
            if method == "GET":
                return (200, _public(channel))
            if method == "POST":
                status = one.get("Status")
                if status not in ("closed", "wrapup", "inactive"):
                    raise TwilioError(400, 20001, f"Invalid Status {status!r}")
                jobs = self._close_channel(channel, status)
                return (200, _public(channel), jobs)
        raise TwilioError(405, 20004, "Method not allowed")

    def _create_interaction(self, one: Dict[str, str]) -> Tuple:
        channel = _json_param(one, "Channel")
        routing = _json_param(one, "Routing", required=False)
        kind = channel.get("type")
        if kind not in CHANNEL_TYPES:
            raise TwilioError(400, 20001, f"Invalid channel type {kind!r}")
        if channel.get("initiated_by") not in ("api", "agent", "customer"):
            raise TwilioError(400, 20001, "Channel.initiated_by must be api, agent or customer")
        properties = channel.get("properties") or {}
        media_sid = properties.get("media_channel_sid")
        conversation = self._find(media_sid or "") if media_sid else None  # type: ignore
        if channel.get("initiated_by") == "api" and conversation is None:
            raise TwilioError(400, 20001, f"Channel.properties.media_channel_sid "
                                          f"{media_sid!r} is not a Conversation")
        route = routing.get("properties") or {}
        if route.get("workspace_sid") != self.workspace_sid:
            raise TwilioError(400, 20001, f"Unknown workspace {route.get('workspace_sid')!r}")
        if route.get("workflow_sid") != self.workflow_sid:
            raise TwilioError(400, 20001, f"Unknown workflow {route.get('workflow_sid')!r}")
        if route.get("task_channel_unique_name", "default") not in ("chat", "default", "sms",
                                                                     "email", "voice"):
            raise TwilioError(400, 20001, "Unknown task channel")
        interaction_sid, channel_sid = sid("KD"), sid("UO")
        url = f"{FLEX_HOST}/v1/Interactions/{interaction_sid}"
        interaction = {
            "sid": interaction_sid, "channel": {**channel, "sid": channel_sid},
            "routing": routing, "url": url,
            "links": {"channels": f"{url}/Channels"},
            "interaction_context_sid": one.get("InteractionContextSid"),
            "webhook_ttid": one.get("WebhookTtid"),
        }
        self.interactions[interaction_sid] = interaction
        channel_url = f"{url}/Channels/{channel_sid}"
        self.interaction_channels[channel_sid] = {
            "sid": channel_sid, "interaction_sid": interaction_sid, "type": kind,
            "status": "setup", "error_code": None, "error_message": None, "url": channel_url,
            "links": {"participants": f"{channel_url}/Participants",
                      "invites": f"{channel_url}/Invites",
                      "transfers": f"{channel_url}/Transfers"},
            "_media_channel_sid": media_sid,
        }
        attributes = {**dict(route.get("attributes") or {}), "channelType": kind,
                      "direction": "inbound", "conversationSid": media_sid,
                      "flexInteractionSid": interaction_sid,
                      "flexInteractionChannelSid": channel_sid}
        task = self._create_task(attributes, route.get("task_channel_unique_name", "chat"))
        self.interaction_channels[channel_sid]["status"] = "active"
        # as Twilio answers (the API overview's example): the task in routing.properties
        interaction["routing"] = {"properties": {
            **{k: task[k] for k in ("account_sid", "addons", "age", "assignment_status",
                                    "attributes", "priority", "reason", "sid",
                                    "task_channel_sid", "task_channel_unique_name",
                                    "timeout", "workflow_sid", "workspace_sid")},
            "queue_sid": task["task_queue_sid"],
            "queue_name": task["task_queue_friendly_name"],
            "workflow_name": task["workflow_friendly_name"],
            "date_created": int(task["_created"]), "date_updated": int(task["_created"]),
            "task_queue_entered_date": int(task["_created"]), "age_in_queue": 0,
            "assignmentCounter": 0, "routing_target": None}, "reservation": None}
        return (200, _public(interaction), [self._events("task.created", task)])

    def _close_channel(self, channel: Dict[str, Any], status: str) -> List[Any]:
        channel["status"] = "closed" if status == "closed" else "wrapup" \
            if status == "wrapup" else "inactive"
        jobs = []
        for task in self.tasks.values():
            if task["_channel_sid"] == channel["sid"] and task["assignment_status"] in (
                    "pending", "reserved", "assigned"):
                pending = task["assignment_status"] != "assigned"
                jobs.append(self._set_task(task, "canceled" if pending else "wrapping",
                                           "Interaction channel closed"))
        if status == "closed":
            conversation = self._find(channel["_media_channel_sid"] or "")  # type: ignore
            if conversation is not None and conversation["state"] != "closed":
                conversation["state"] = "closed"  # by Flex over REST: no webhooks
        return jobs

    # --------------------------------------------------------------- TaskRouter

    def _create_task(self, attributes: Dict[str, Any], channel_name: str) -> Dict[str, Any]:
        task_sid = sid("WT")
        stamp = iso(now())
        base = f"{TASKROUTER_HOST}/v1/Workspaces/{self.workspace_sid}/Tasks/{task_sid}"
        task = {
            "account_sid": self.account_sid,  # type: ignore[attr-defined]
            "age": 0, "assignment_status": "pending", "attributes": json.dumps(attributes),
            "addons": "{}", "date_created": stamp, "date_updated": stamp,
            "task_queue_entered_date": stamp, "priority": 0, "reason": None, "sid": task_sid,
            "task_queue_sid": self.task_queue_sid, "task_queue_friendly_name": "Everyone",
            "task_channel_sid": self.chat_channel_sid, "task_channel_unique_name": channel_name,
            "timeout": 86400, "workflow_sid": self.workflow_sid,
            "workflow_friendly_name": "Assign to Anyone", "workspace_sid": self.workspace_sid,
            "url": base, "links": {"task_queue": f"{TASKROUTER_HOST}/v1/Workspaces/"
                                                 f"{self.workspace_sid}/TaskQueues/"
                                                 f"{self.task_queue_sid}",
                                   "workflow": f"{TASKROUTER_HOST}/v1/Workspaces/"
                                               f"{self.workspace_sid}/Workflows/"
                                               f"{self.workflow_sid}",
                                   "workspace": f"{TASKROUTER_HOST}/v1/Workspaces/"
                                                f"{self.workspace_sid}",
                                   "reservations": f"{base}/Reservations"},
            "virtual_start_time": stamp, "ignore_capacity": False, "routing_target": None,
            "_channel_sid": attributes.get("flexInteractionChannelSid"), "_worker": None,
            "_created": time.time(),
        }
        self.tasks[task_sid] = task
        return task

    def _taskrouter_api(self, method: str, rest: List[str], one: Dict[str, str],
                        fields: Dict[str, List[str]]) -> Tuple:
        if not rest or rest[0] != self.workspace_sid:
            raise TwilioError(404, 20404, "Workspace not found")
        base = f"/v1/Workspaces/{self.workspace_sid}"
        if len(rest) == 1:
            if method == "POST":
                if "EventCallbackUrl" in one:
                    self.workspace["event_callback_url"] = one["EventCallbackUrl"] or None
                if "EventsFilter" in one:
                    self.workspace["events_filter"] = one["EventsFilter"] or None
            if method in ("GET", "POST"):
                return (200, self._workspace_resource())
        kind = rest[1] if len(rest) > 1 else ""
        if kind == "Tasks":
            if len(rest) == 2 and method == "GET":
                items = list(self.tasks.values())
                wanted = {status for value in fields.get("AssignmentStatus", [])
                          for status in value.split(",")}  # repeated or comma-separated
                if wanted:
                    items = [t for t in items if t["assignment_status"] in wanted]
                expression = one.get("EvaluateTaskAttributes")
                if expression:
                    items = [t for t in items if _matches(json.loads(t["attributes"]),
                                                          expression)]
                size = _size(one)
                return (200, {"tasks": [self._task_resource(t) for t in items[:size]],
                              "meta": _meta("tasks", TASKROUTER_HOST, f"{base}/Tasks", size)})
            task = self.tasks.get(rest[2]) if len(rest) == 3 else None
            if task is None:
                raise TwilioError(404, 20404, "Task not found")
            if method == "GET":
                return (200, self._task_resource(task))
            if method == "POST":
                jobs = []
                status = one.get("AssignmentStatus")
                if status:
                    allowed = {"pending": ("canceled",), "reserved": ("canceled",),
                               "assigned": ("wrapping", "completed"),
                               "wrapping": ("completed",)}
                    if status not in allowed.get(task["assignment_status"], ()):
                        raise TwilioError(400, 20001, f"Cannot change a "
                                                      f"{task['assignment_status']} task to "
                                                      f"{status}")
                    jobs.append(self._set_task(task, status, one.get("Reason")))
                if "Attributes" in one:
                    json.loads(one["Attributes"])
                    task["attributes"] = one["Attributes"]
                return (200, self._task_resource(task), jobs)
        if kind == "Workers":
            if len(rest) == 2 and method == "GET":
                size = _size(one)
                items = [_public(w) for w in self.workers.values()][:size]
                return (200, {"workers": items, "meta": _meta("workers", TASKROUTER_HOST,
                                                              f"{base}/Workers", size)})
            worker = self.workers.get(rest[2]) if len(rest) == 3 else None
            if worker is None:
                raise TwilioError(404, 20404, "Worker not found")
            if method == "GET":
                return (200, _public(worker))
        raise TwilioError(404, 20404, "Not found")

    def _workspace_resource(self) -> Dict[str, Any]:
        stamp = iso(now())
        url = f"{TASKROUTER_HOST}/v1/Workspaces/{self.workspace_sid}"
        return {"account_sid": self.account_sid,  # type: ignore[attr-defined]
                "date_created": stamp, "date_updated": stamp,
                "default_activity_name": "Offline", "default_activity_sid": "WA" + "9" * 32,
                "event_callback_url": self.workspace["event_callback_url"],
                "events_filter": self.workspace["events_filter"],
                "friendly_name": self.workspace["friendly_name"],
                "multi_task_enabled": True, "sid": self.workspace_sid,
                "timeout_activity_name": "Offline", "timeout_activity_sid": "WA" + "9" * 32,
                "prioritize_queue_order": "FIFO", "url": url,
                "links": {"tasks": f"{url}/Tasks", "workers": f"{url}/Workers"}}

    def _task_resource(self, task: Dict[str, Any]) -> Dict[str, Any]:
        shown = _public(task)
        shown["age"] = int(time.time() - task["_created"])
        return shown

    def _set_task(self, task: Dict[str, Any], status: str, reason: Optional[str]) -> Any:
        task["assignment_status"] = status
        task["reason"] = reason
        task["date_updated"] = iso(now())
        event = {"wrapping": "task.wrapup", "completed": "task.completed",
                 "canceled": "task.canceled"}[status]
        return self._events(event, task, reason=reason)

    async def _accept(self, task_sid: str, worker_sid: str) -> List[Any]:
        with self._lock:  # type: ignore[attr-defined]
            task, worker = self.tasks.get(task_sid), self.workers.get(worker_sid)
            if task is None or worker is None:
                raise KeyError(f"No task {task_sid} or worker {worker_sid}")
            if task["assignment_status"] != "pending":
                raise TwilioError(400, 20001, f"The task is {task['assignment_status']}")
            reservation = sid("WR")
            task["assignment_status"] = "assigned"
            task["_worker"] = worker_sid
            conversation_sid = json.loads(task["attributes"]).get("conversationSid")
            if conversation_sid and self._find(conversation_sid):  # type: ignore
                self._participants("POST", conversation_sid, [],  # type: ignore
                                   {"Identity": worker["_identity"],
                                    "Attributes": json.dumps({"member_type": "agent"})})
            jobs = [self._events("reservation.created", task, worker, reservation),
                    self._events("reservation.accepted", task, worker, reservation)]
        sent: List[Any] = []
        for job in jobs:
            sent += await job
        return sent

    async def _transfer(self, task_sid: str, worker_sid: Optional[str], queue: str,
                        wrap_first: bool) -> Tuple[str, List[Any]]:
        with self._lock:  # type: ignore[attr-defined]
            task = self.tasks.get(task_sid)
            if task is None:
                raise KeyError(f"No task {task_sid}")
            if task["assignment_status"] != "assigned":
                raise TwilioError(400, 20001, f"The task is {task['assignment_status']}")
            attributes = {**json.loads(task["attributes"]),
                          "transferTargetType": "worker" if worker_sid else "queue",
                          "transferTargetSid": worker_sid, "transferQueueName": queue,
                          "transferringWorkerSid": task["_worker"]}
            new = self._create_task(attributes, task["task_channel_unique_name"])
            created = self._events("task.created", new)
            wrapped = self._set_task(task, "wrapping", "Task transferred")
            jobs = [wrapped, created] if wrap_first else [created, wrapped]
        sent: List[Any] = []
        for job in jobs:
            sent += await job
        return new["sid"], sent

    async def _task_event(self, task_sid: str, status: str,
                          reason: Optional[str] = None) -> List[Any]:
        with self._lock:  # type: ignore[attr-defined]
            task = self.tasks.get(task_sid)
            if task is None:
                raise KeyError(f"No task {task_sid}")
            if status == "wrapping" and task["_channel_sid"]:
                channel = self.interaction_channels[task["_channel_sid"]]
                jobs = self._close_channel(channel, "closed")
            else:
                jobs = [self._set_task(task, status, reason)]
        sent: List[Any] = []
        for job in jobs:
            sent += await job
        return sent

    def _events(self, event: str, task: Dict[str, Any], worker: Optional[Dict[str, Any]] = None,
                reservation: Optional[str] = None, reason: Optional[str] = None) -> Any:
        """The coroutine sending ``event`` to the workspace's Event Callback URL (if it
        wants it); the parameters are read now."""
        moment = time.time()
        params: Dict[str, Any] = {
            "AccountSid": self.account_sid,  # type: ignore[attr-defined]
            "WorkspaceSid": self.workspace_sid,
            "WorkspaceName": self.workspace["friendly_name"], "EventType": event,
            "EventDescription": EVENT_DESCRIPTIONS[event].format(
                task=task["sid"], reservation=reservation,
                worker=worker["friendly_name"] if worker else ""),
            "ResourceType": "reservation" if event.startswith("reservation") else "task",
            "ResourceSid": reservation or task["sid"], "Sid": sid("EV"),
            "Timestamp": str(int(moment)), "TimestampMs": str(int(moment * 1000)),
            "EventDate": iso(now()), "TaskSid": task["sid"],
            "TaskAttributes": task["attributes"], "TaskAge": str(int(moment - task["_created"])),
            "TaskPriority": str(task["priority"]),
            "TaskAssignmentStatus": task["assignment_status"],
            "TaskChannelSid": task["task_channel_sid"],
            "TaskChannelUniqueName": task["task_channel_unique_name"],
            "TaskQueueSid": task["task_queue_sid"],
            "TaskQueueName": task["task_queue_friendly_name"],
            "WorkflowSid": task["workflow_sid"], "WorkflowName": task["workflow_friendly_name"],
        }
        if worker is None and task.get("_worker"):
            worker = self.workers.get(task["_worker"])
        if worker is not None:
            params.update({"WorkerSid": worker["sid"], "WorkerName": worker["friendly_name"],
                           "WorkerAttributes": worker["attributes"],
                           "WorkerActivityName": worker["activity_name"]})
        if reservation:
            params["ReservationSid"] = reservation
        if event == "task.completed":
            params["TaskCompletedReason"] = reason or "Task completed"
        if event == "task.canceled":
            params["TaskCanceledReason"] = reason or "Task canceled"
        url = self.workspace["event_callback_url"]
        wanted = self.workspace["events_filter"]
        selected = wanted is None or event in wanted.split(",")

        async def send() -> List[Any]:
            if not url or not selected:
                return []
            return [await self._deliver(url, params)]  # type: ignore[attr-defined]

        return send()


def _size(one: Dict[str, str]) -> int:
    from tests.twilio.fake_twilio import page_size

    return page_size(one, TASKROUTER_MAX_PAGE_SIZE)


def _meta(key: str, host: str, path: str, size: int) -> Dict[str, Any]:
    return {"page": 0, "page_size": size,
            "first_page_url": f"{host}{path}?PageSize={size}&Page=0",
            "previous_page_url": None, "url": f"{host}{path}?PageSize={size}&Page=0",
            "next_page_url": None, "key": key}


def _public(item: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in item.items() if not k.startswith("_")}
