"""Widget channel pieces that need no server: typing rate limit, frame decoding, config."""
from __future__ import annotations

from typing import Any, List

import pytest

from bot.channels.auth import TokenVerifier
from bot.channels.hub import Connection
from bot.channels.frames import decode_frame
from bot.channels.widget import WidgetConfig, WidgetInput
from bot.channels.widget_wire import ClientError
from bot.settings import reset_settings_cache


class Socket:
    def __init__(self) -> None:
        self.sent: List[str] = []

    async def send(self, data: str) -> None:
        self.sent.append(data)


def _channel(typing_interval: float = 2.0) -> WidgetInput:
    config = WidgetConfig(
        allowed_origins=("http://shop.test",), max_message_chars=100, max_frame_bytes=4096,
        rate_messages=5, rate_window=60, max_connections=2, typing_interval=typing_interval,
        auth_timeout=1, token_warning=60,
    )
    return WidgetInput(TokenVerifier("HS256", "k" * 40), config, "sqlite:///unused.db")


async def test_customer_typing_is_rate_limited_per_connection() -> None:
    channel = _channel(typing_interval=60)
    connection = Connection(Socket(), "u1", "widget:u1", 0)
    other = Connection(Socket(), "u1", "widget:u1", 0)
    for state in ("start", "start", "stop", "start", "start"):
        await channel._on_typing(connection, {"type": "typing", "state": state})
    await channel._on_typing(other, {"type": "typing", "state": "start"})
    assert [(c, s) for c, s, _ in channel.typing_events] == [
        ("widget:u1", "start"), ("widget:u1", "stop"), ("widget:u1", "start"),
        ("widget:u1", "start"),
    ]
    with pytest.raises(ClientError) as info:
        await channel._on_typing(connection, {"type": "typing", "state": "yes"})
    assert info.value.code == "bad_request"


def test_origin_allow_list() -> None:
    channel = _channel()
    assert channel._origin_allowed("http://shop.test")
    assert channel._origin_allowed("http://shop.test/")
    assert channel._origin_allowed(None)  # native apps send no Origin; the token still counts
    assert not channel._origin_allowed("http://shop.test.evil.com")
    assert not channel._origin_allowed("null")


@pytest.mark.parametrize(
    "raw, expected",
    [('{"type":"ping"}', {"type": "ping"}), (b'{"type":"ping"}', {"type": "ping"}),
     (b"\xff\xfe", None), ("{", None), ("", None)],
)
def test_decode(raw: Any, expected: Any) -> None:
    assert decode_frame(raw) == expected


def test_from_credentials_reads_settings_and_refuses_a_missing_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("SUPPORT_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("WIDGET_JWT_SECRET", raising=False)
    reset_settings_cache()
    try:
        with pytest.raises(ValueError, match="WIDGET_JWT_SECRET"):
            WidgetInput.from_credentials(None)
        (tmp_path / "widget_jwt_secret").write_text("f" * 48)  # what `make run` writes
        monkeypatch.setenv("WIDGET_RATE_MESSAGES", "7")
        reset_settings_cache()
        channel = WidgetInput.from_credentials({"allowed_origins": ["https://app.example/"]})
        assert channel.config.allowed_origins == ("https://app.example",)
        assert channel.config.rate_messages == 7
        monkeypatch.setenv("WIDGET_RATE_MESSAGES", "many")
        reset_settings_cache()
        with pytest.raises(ValueError, match="WIDGET_RATE_MESSAGES must be an integer"):
            WidgetInput.from_credentials(None)
    finally:
        reset_settings_cache()


async def test_at_most_turn_concurrency_turns_claim_and_run_at_once() -> None:
    """WIDGET_TURN_CONCURRENCY: the other turns wait unclaimed (no database connection held),
    in order, and every one runs; a conversation's turns still run one after the other."""
    import asyncio
    from types import SimpleNamespace

    config = WidgetConfig(
        allowed_origins=("http://shop.test",), max_message_chars=100, max_frame_bytes=4096,
        rate_messages=5, rate_window=60, max_connections=2, typing_interval=2,
        auth_timeout=1, token_warning=60, turn_concurrency=2,
    )
    channel = WidgetInput(TokenVerifier("HS256", "k" * 40), config, "sqlite:///unused.db")
    claimed: List[int] = []
    running: List[int] = []
    most = 0
    finished: List[int] = []

    class Chat:
        async def do_claim_turn(self, message_id: int, owner: str, lease: float) -> Any:
            if message_id in claimed:
                return None  # answered already
            claimed.append(message_id)
            return SimpleNamespace(message=SimpleNamespace(id=message_id), attempt=1,
                                   answered=False)

    async def chat() -> Chat:
        return Chat()

    async def run(customer: Any, claim: Any) -> None:
        nonlocal most
        running.append(claim.message.id)
        most = max(most, len(running))
        assert len(claimed) - len(finished) <= 2  # nothing claimed while waiting
        await asyncio.sleep(0.05)
        running.remove(claim.message.id)
        finished.append(claim.message.id)

    channel.chat = chat  # type: ignore[assignment]
    channel._run_claimed = run  # type: ignore[assignment]
    customers = [SimpleNamespace(conversation_id=f"widget:u{i % 5}") for i in range(6)]
    for number, customer in enumerate(customers, start=1):
        channel._queue_turn(customer, SimpleNamespace(id=number))
    await asyncio.wait_for(asyncio.gather(*list(channel._turn_tasks)), 5)
    assert sorted(finished) == [1, 2, 3, 4, 5, 6] and most == 2
    assert finished.index(1) < finished.index(6)  # widget:u0's two turns, in order


async def test_markdown_is_rendered_once_per_source_and_each_message_gets_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import bot.richtext
    from bot.channels import widget_output

    calls: List[str] = []
    real = bot.richtext.markdown_to_blocks

    def counting(source: str) -> Any:
        calls.append(source)
        return real(source)

    monkeypatch.setattr(bot.richtext, "markdown_to_blocks", counting)
    monkeypatch.setattr(widget_output, "_rendered", type(widget_output._rendered)())
    monkeypatch.setattr(widget_output, "RENDERED_KEPT", 2)
    extra = {"custom": {"format": "markdown", "markdown": "# Fees\n\n- none"}}
    first = await widget_output._render_markdown(extra)
    second = await widget_output._render_markdown(extra)
    assert calls == ["# Fees\n\n- none"]
    assert first == second and first["blocks"] == real("# Fees\n\n- none")
    assert first["blocks"] is not second["blocks"]
    first["blocks"].clear()  # one message's blocks changed: the next is whole
    assert (await widget_output._render_markdown(extra))["blocks"] == second["blocks"]
    for source in ("a", "b"):  # the oldest source is rendered again when it comes back
        await widget_output._render_markdown({"custom": {"format": "markdown", "markdown": source}})
    await widget_output._render_markdown(extra)
    assert calls == ["# Fees\n\n- none", "a", "b", "# Fees\n\n- none"]
