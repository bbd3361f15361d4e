"""Tests of bot.messages and data/messages.yml against the actions that use them.

The message keys and the values the actions pass are read from the source of
``actions/*.py`` (``say(dispatcher, "<key>", ..., name=value)`` and
``text("<key>", name=value)``), including computed keys: conditional expressions,
local variables, class attributes (``question = "confirm_cancel"``) and f-string
families such as ``order_status_{status}``, whose values are enumerated here.
"""
from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, FrozenSet, Iterator, List, Optional, Set, Tuple

import pytest

from bot.twilio.voice import NOTICE_STATUSES
from bot.twilio.voice_store import REFUSAL_KINDS
from bot.messages import Message, MessageError, Messages, load_messages
from bot.orders import ORDER_STATUSES, REFUND_STATUSES
from bot.support.models import PRIORITIES
from tests.unit.actions_helpers import PROJECT_ROOT, domain

ACTIONS_DIR = PROJECT_ROOT / "actions"
CHANNELS_DIR = PROJECT_ROOT / "bot" / "channels"
MESSAGES_FILE = PROJECT_ROOT / "data" / "messages.yml"


def _ask_slots() -> Tuple[str, ...]:
    from actions.prompts import _Ask

    return tuple(cls.slot for cls in _Ask.__subclasses__())


#: f-string key families: the constant prefix -> every value the formatted part takes.
FAMILIES: Dict[str, Tuple[str, ...]] = {
    "order_status_": ORDER_STATUSES,
    "order_label_": ORDER_STATUSES,
    "refund_status_": REFUND_STATUSES,
    "reply_within_": PRIORITIES,
    "ask_": _ask_slots(),
    "callback_call_": tuple(sorted(NOTICE_STATUSES)),
    "callback_limit_": REFUSAL_KINDS,
}


@dataclass(frozen=True)
class Use:
    """One ``say``/``text`` call in the actions."""

    where: str
    keys: FrozenSet[str]
    values: FrozenSet[str]  # keyword arguments passed (besides ``buttons``)
    open_values: bool  # a ``**mapping`` is passed as well


class _KeyResolver:
    """Resolves the key expression of a call to the message keys it can take."""

    def __init__(self, tree: ast.Module, where: str) -> None:
        self.tree = tree
        self.where = where

    def resolve(self, node: ast.AST, function: Optional[ast.AST]) -> Set[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        if isinstance(node, ast.IfExp):
            return self.resolve(node.body, function) | self.resolve(node.orelse, function)
        if isinstance(node, ast.JoinedStr):
            return self._family(node)
        if isinstance(node, ast.Name) and function is not None:
            return self._local(node.id, function)
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
        ):
            return self._class_attribute(node.attr)
        raise AssertionError(f"{self.where}: cannot work out the message key {ast.dump(node)}")

    def _family(self, node: ast.JoinedStr) -> Set[str]:
        parts = node.values
        if not (
            len(parts) == 2
            and isinstance(parts[0], ast.Constant)
            and isinstance(parts[1], ast.FormattedValue)
        ):
            raise AssertionError(f"{self.where}: unsupported f-string key {ast.unparse(node)}")
        prefix = parts[0].value
        if prefix not in FAMILIES:
            raise AssertionError(
                f"{self.where}: unknown key family {ast.unparse(node)}: add it to FAMILIES"
            )
        return {prefix + value for value in FAMILIES[prefix]}

    def _local(self, name: str, function: ast.AST) -> Set[str]:
        keys: Set[str] = set()
        for node in ast.walk(function):
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets
            ):
                keys |= self.resolve(node.value, function)
        if not keys:
            raise AssertionError(f"{self.where}: no assignment to {name!r}")
        return keys

    def _class_attribute(self, name: str) -> Set[str]:
        keys: Set[str] = set()
        for cls in (n for n in ast.walk(self.tree) if isinstance(n, ast.ClassDef)):
            for statement in cls.body:
                if (
                    isinstance(statement, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == name for t in statement.targets)
                    and isinstance(statement.value, ast.Constant)
                    and statement.value.value
                ):
                    keys.add(statement.value.value)
        if not keys:
            raise AssertionError(f"{self.where}: no class attribute {name!r}")
        return keys


def _functions(tree: ast.Module) -> Iterator[Tuple[Optional[ast.AST], ast.Call]]:
    """Every call with its innermost enclosing function."""

    def visit(node: ast.AST, function: Optional[ast.AST]) -> Iterator[Tuple[Optional[ast.AST], ast.Call]]:
        for child in ast.iter_child_nodes(node):
            inner = child if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            if isinstance(child, ast.Call):
                yield inner, child
            yield from visit(child, inner)

    yield from visit(tree, None)


def collect_uses() -> List[Use]:
    uses: List[Use] = []
    paths = [*sorted(ACTIONS_DIR.glob("*.py")), *sorted(CHANNELS_DIR.glob("*.py")),
             *sorted((PROJECT_ROOT / "bot" / "twilio").glob("*.py")),
             *sorted((PROJECT_ROOT / "bot" / "mail").glob("*.py")),
             *sorted((PROJECT_ROOT / "bot" / "attachments").glob("*.py"))]
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function, call in _functions(tree):
            if not isinstance(call.func, ast.Name) or call.func.id not in ("say", "text", "notice"):
                continue
            position = 1 if call.func.id == "say" else 0
            if path.name == "common.py" and function is not None and getattr(
                function, "name", ""
            ) in ("say", "text"):
                continue  # the helpers themselves
            where = f"{path.parent.name}/{path.name}:{call.lineno}"
            assert len(call.args) > position, f"{where}: {call.func.id}() without a key"
            keys = _KeyResolver(tree, where).resolve(call.args[position], function)
            names = {k.arg for k in call.keywords if k.arg is not None} - {"buttons", "locale"}
            splat = any(k.arg is None for k in call.keywords)
            uses.append(Use(where, frozenset(keys), frozenset(names), splat))
    return uses


USES = collect_uses()
MESSAGES = Messages.load(MESSAGES_FILE)


def _use_id(use: Use) -> str:
    return f"{use.where}:{'|'.join(sorted(use.keys))[:60]}"


def test_the_collector_sees_the_calls_and_key_families() -> None:
    keys = {key for use in USES for key in use.keys}

    assert len(USES) >= 50
    assert {
        "order_status_in_transit", "refund_status_rejected", "reply_within_urgent",
        "ask_callback_time", "confirm_refund", "order_not_found_in_account",
        "clarify_no_suggestions", "handoff_queued_closed", "talk_to_person_button",
        "refund_unpaid", "time_closed",
    } <= keys


@pytest.mark.parametrize("use", USES, ids=_use_id)
def test_every_key_the_actions_use_exists(use: Use) -> None:
    missing = sorted(key for key in use.keys if key not in MESSAGES.entries)

    assert missing == [], f"{use.where}: no message {missing} in data/messages.yml"


@pytest.mark.parametrize("use", USES, ids=_use_id)
def test_every_message_renders_with_the_values_the_code_passes(use: Use) -> None:
    values = {name: f"<{name}>" for name in use.values}
    for key in sorted(use.keys):
        message = MESSAGES.get(key)
        if not use.open_values:
            assert message.placeholders <= use.values, (
                f"{use.where}: {key!r} needs {sorted(message.placeholders - use.values)}"
            )
        rendered = message.render(**values)
        assert "{" not in rendered and "}" not in rendered, f"{key}: {rendered!r}"


def test_every_message_is_used_by_the_actions() -> None:
    used = {key for use in USES for key in use.keys}

    assert sorted(set(MESSAGES.entries) - used) == []


def test_no_message_uses_a_placeholder_no_action_passes() -> None:
    passed: Dict[str, Set[str]] = {}
    for use in USES:
        for key in use.keys:
            passed.setdefault(key, set()).update(use.values)

    unknown = {
        key: sorted(message.placeholders - passed.get(key, set()))
        for key, message in MESSAGES.entries.items()
        if message.placeholders - passed.get(key, set())
    }
    assert unknown == {}


def test_load_messages_reads_the_project_file() -> None:
    messages = load_messages()

    assert messages.entries == MESSAGES.entries
    assert messages.text("order_not_found_in_account", number="104233") == (
        "I couldn't find an order #104233 in your account. Please check the number and send it "
        "again."
    )


def test_leading_and_trailing_spaces_of_fragments_are_kept() -> None:
    """Fragments are glued into other texts, so their spaces matter."""
    assert MESSAGES.text("handoff_upset_prefix") == "I'm sorry about this. "
    assert MESSAGES.text("order_tracking_code", code="X1") == " (tracking number X1)"
    assert MESSAGES.text("order_expected", date="Tuesday 24 November") == (
        " Expected delivery: Tuesday 24 November."
    )
    assert MESSAGES.text("refund_amount", amount="59.90") == " of €59.90"
    assert MESSAGES.text("ask_order_number_hint").startswith(" If you can't find it")


def test_folded_texts_have_no_line_breaks() -> None:
    assert [key for key, m in MESSAGES.entries.items() if "\n" in m.text] == []


# ----------------------------------------------------------------- buttons


def _intent_of(payload: str, where: str) -> str:
    match = re.fullmatch(r"/(\w+)(\{.*\})?", payload)
    assert match, f"{where}: payload {payload!r} is not /intent or /intent{{...}}"
    if match.group(2):
        entities = json.loads(match.group(2))
        unknown = set(entities) - set(domain()["entities"])
        assert not unknown, f"{where}: payload {payload!r} names unknown entities {unknown}"
    return match.group(1)


BUTTONS = [
    (key, button["payload"]) for key, m in MESSAGES.entries.items() for button in m.buttons
]


@pytest.mark.parametrize(("key", "payload"), BUTTONS, ids=[f"{k}:{p}" for k, p in BUTTONS])
def test_every_button_payload_in_messages_names_a_domain_intent(key: str, payload: str) -> None:
    assert _intent_of(payload, key) in domain()["intents"]


def test_button_payloads_written_in_the_actions_name_domain_intents() -> None:
    found = []
    for path in sorted(ACTIONS_DIR.glob("*.py")):
        for match in re.finditer(r"\"payload\":\s*f?[\"'](/[^\"']*)", path.read_text("utf-8")):
            if not match.group(1).startswith("/{"):  # computed: /{article.intents[0]}
                found.append((path.name, match.group(1)))
    intents = {re.match(r"/(\w+)", payload).group(1) for _, payload in found}

    assert {"affirm", "deny", "contact_human_agent", "inform"} <= intents
    assert sorted(intents - set(domain()["intents"])) == []


# ------------------------------------------------------------- load errors


def write(tmp_path: Path, content: str) -> Path:
    path = tmp_path / "messages.yml"
    path.write_text(content, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("- just\n- a list\n", "expected a mapping with a 'messages' section"),
        ("version: 1\n", "expected a mapping with a 'messages' section"),
        ("messages: [a, b]\n", "expected a mapping with a 'messages' section"),
        ("messages:\n  hello: 3\n", "messages.hello: expected a text or a mapping with 'text'"),
        ("messages:\n  hello: {buttons: []}\n",
         "messages.hello: expected a text or a mapping with 'text'"),
        ("messages:\n  hello:\n    text: Hi\n    buttons:\n      - {title: Yes}\n",
         "messages.hello: each button needs a 'title' and a 'payload'"),
        ("messages:\n  hello:\n    text: Hi\n    buttons: [/affirm]\n",
         "messages.hello: each button needs a 'title' and a 'payload'"),
        ("messages:\n  hello: \"Hi {name\"\n",
         "messages.hello: bad placeholder: expected '}' before end of string"),
        ("messages:\n  hello: \"Hi } there\"\n",
         "messages.hello: bad placeholder: Single '}' encountered in format string"),
    ],
    ids=["list", "no-section", "section-not-mapping", "number", "no-text", "button-no-payload",
         "button-not-mapping", "open-brace", "lone-brace"],
)
def test_load_rejects_a_malformed_file(tmp_path: Path, content: str, problem: str) -> None:
    path = write(tmp_path, content)

    with pytest.raises(MessageError) as error:
        Messages.load(path)

    assert str(error.value) == f"{path}: {problem}"


def test_load_rejects_invalid_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "messages: [unclosed\n")

    with pytest.raises(MessageError) as error:
        Messages.load(path)

    assert str(error.value).startswith(f"{path}: cannot read messages: while parsing")


def test_load_rejects_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yml"

    with pytest.raises(MessageError) as error:
        Messages.load(path)

    assert str(error.value) == (
        f"{path}: cannot read messages: [Errno 2] No such file or directory: '{path}'"
    )


def test_load_parses_texts_and_buttons(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "messages:\n"
        "  plain: \"Hello {name}\"\n"
        "  folded: >\n    one\n    two\n"
        "  with_buttons:\n"
        "    text: Sure?\n"
        "    buttons:\n"
        "      - {title: \"Yes\", payload: /affirm, extra: ignored}\n",
    )

    messages = Messages.load(path)

    assert messages.entries == {
        "plain": Message("plain", "Hello {name}"),
        "folded": Message("folded", "one two"),
        "with_buttons": Message(
            "with_buttons", "Sure?", ({"title": "Yes", "payload": "/affirm"},)
        ),
    }
    assert messages.get("plain").placeholders == frozenset({"name"})


def test_render_without_a_value_and_an_unknown_key_raise() -> None:
    with pytest.raises(MessageError) as missing:
        MESSAGES.text("order_cancelled")
    with pytest.raises(MessageError) as unknown:
        MESSAGES.get("no_such_message")

    assert str(missing.value) == "message 'order_cancelled' needs ['number']"
    assert str(unknown.value) == "no message 'no_such_message' in messages.yml"
