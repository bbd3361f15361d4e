"""The widget channel across a Rasa server restart, and with the action server down.

These tests stop and start servers, so they run on a bot of their own.
"""
from __future__ import annotations

from typing import Any, Iterator

import pytest

from tests.widget.conftest import WidgetClient, new_user, token_for
from tests.widget.test_widget_channel import GREETING, rows, wait_for

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def restart_bot(bot_factory: Any) -> Iterator[Any]:
    bot = bot_factory.start("widget-restart")
    yield bot
    bot.stop()


async def test_conversation_resumes_after_a_server_restart(restart_bot: Any) -> None:
    user = new_user()
    token = token_for(user)
    client = await WidgetClient.connect(restart_bot, token)
    before = await client.turn("hi")
    assert [m["text"] for m in before["replies"]] == [GREETING]
    history_before = rows(restart_bot, f"widget:{user}")

    restart_bot.restart_rasa()
    assert await client.close_code(timeout=60) in (1001, 1006, 1011, 1000)

    again = await WidgetClient.connect(restart_bot, token)  # e.g. the app restarted too
    replayed = [await again.expect("message") for _ in history_before]
    assert [m["message"]["id"] for m in replayed] == [r["id"] for r in history_before]
    assert [m["message"]["text"] for m in replayed] == ["hi", GREETING]
    turn = await again.turn("thanks")
    assert turn["replies"], "the bot answers after the restart"
    tracker = restart_bot.tracker(f"widget:{user}")
    assert [e["text"] for e in tracker["events"] if e["event"] == "user"] == ["hi", "thanks"]
    await again.close()


async def test_dead_action_server_gives_a_notice_and_loses_nothing(restart_bot: Any) -> None:
    user = new_user()
    client = await WidgetClient.connect(restart_bot, token_for(user))
    restart_bot.stop_actions()
    try:
        ack = await client.say("I want to cancel my order")  # needs a custom action
        error = await client.expect("error", lambda f: f["code"] == "bot_unavailable")
        assert error["client_id"] == ack["message"]["client_id"]
        notice = await client.expect("message", lambda f: f["message"]["sender"] == "system")
        assert notice["message"]["text"].startswith("Sorry, I couldn't answer that just now.")
        stored = rows(restart_bot, f"widget:{user}")
        # retried (WIDGET_TURN_ATTEMPTS), then failed: the notice says so (issue 13)
        assert [(r["sender"], r["status"]) for r in stored] == [
            ("customer", "failed"), ("system", "sent")]
    finally:
        restart_bot.start_actions()
    turn = await client.turn("hi")
    assert [m["text"] for m in turn["replies"]] == [GREETING]
    await wait_for(lambda: rows(restart_bot, f"widget:{user}")[-1]["sender"] == "bot")
    await client.close()
