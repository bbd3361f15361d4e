"""Fixtures for the browser tests: the real bot, the demo shop app and headless Chromium.

* ``widget_stack`` (module): a bot from ``bot_factory`` with the widget channel, a shared
  ``WIDGET_JWT_SECRET`` and the demo app's origin allowed, plus the demo app
  (``python -m bot.demo``) on a free port, reading the bot's orders database.
* ``browser`` (module): one headless Chromium (Debian's ``/usr/bin/chromium``) for the module.
* ``phone`` / ``desktop``: a fresh browser context per test (390x844 with touch, 1280x800).

Chromium missing: the tests are skipped with the reason, or fail when ``CI=true``.
"""
from __future__ import annotations

import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest
import requests

from tests.servers import (
    HOST,
    PYTHON,
    ROOT,
    BotServers,
    _popen,
    _stop,
    free_port,
    tail,
    unavailable,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = ROOT / "test-output" / "screenshots"
DEMO_STARTUP_TIMEOUT = 30.0

PHONE: Dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
    "user_agent": (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0 Mobile Safari/537.36"
    ),
}
DESKTOP: Dict[str, Any] = {"viewport": {"width": 1280, "height": 800}}


@dataclass
class WidgetStack:
    """The running bot and demo app of a browser test module."""

    bot: BotServers
    demo_url: str
    demo_log: Path
    secret: str

    def logs(self) -> str:
        """Log tails of the bot and the demo app, for failure messages."""
        return f"{self.bot.logs()}\n--- demo app log ({self.demo_log}) ---\n{tail(self.demo_log)}"


@pytest.fixture(scope="module")
def chromium() -> Path:
    """The Chromium binary, or a skip (a failure when CI=true) when it is missing."""
    if not CHROMIUM.is_file():
        unavailable(
            f"{CHROMIUM} is missing: install it with "
            "`DEBIAN_FRONTEND=noninteractive apt-get install -y chromium`"
        )
    return CHROMIUM


@pytest.fixture(scope="module")
def widget_stack(chromium: Path, bot_factory: Any) -> Iterator[WidgetStack]:
    """Start the bot (widget channel) and the demo app that embeds the widget."""
    secret = secrets.token_urlsafe(48)  # 64 characters: well over the 32 bytes required
    demo_port = free_port()
    demo_url = f"http://{HOST}:{demo_port}"
    bot = bot_factory.start(
        "browser",
        env={"WIDGET_JWT_SECRET": secret, "WIDGET_ALLOWED_ORIGINS": demo_url},
    )
    demo_log = bot.var_dir.parent / "demo.log"
    env = {
        **bot.env,
        "DEMO_HOST": HOST,
        "DEMO_PORT": str(demo_port),
        "WIDGET_PUBLIC_URL": bot.rasa_url,
        "WIDGET_JWT_SECRET": secret,
    }
    demo = _popen([str(PYTHON), "-m", "bot.demo"], env, demo_log)
    stack = WidgetStack(bot=bot, demo_url=demo_url, demo_log=demo_log, secret=secret)
    try:
        _wait_for_demo(demo, stack)
        yield stack
    finally:
        _stop(demo)


def _wait_for_demo(process: subprocess.Popen, stack: WidgetStack) -> None:
    deadline = time.monotonic() + DEMO_STARTUP_TIMEOUT
    with requests.Session() as http:
        http.trust_env = False
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"The demo app exited with {process.returncode}.\n{stack.logs()}",
                    pytrace=False,
                )
            try:
                if http.get(f"{stack.demo_url}/api/me", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"The demo app did not start.\n{stack.logs()}", pytrace=False)
            time.sleep(0.3)


#: The demo app chats in the customer's own language (Anna German, Chloé French): the
#: tests read English unless they say otherwise (the login screen's "Chat language").
ENGLISH_CHAT = "try { localStorage.setItem('demo:chat-language', 'en'); } catch (e) {}"


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[Any]:
    """One headless Chromium for the module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def phone(browser: Any, widget_stack: WidgetStack) -> Iterator[Any]:
    """A phone-sized browser context (390x844, touch) for one test."""
    context = browser.new_context(base_url=widget_stack.demo_url, **PHONE)
    context.add_init_script(ENGLISH_CHAT)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def desktop(browser: Any, widget_stack: WidgetStack) -> Iterator[Any]:
    """A desktop-sized browser context (1280x800) for one test."""
    context = browser.new_context(base_url=widget_stack.demo_url, **DESKTOP)
    context.add_init_script(ENGLISH_CHAT)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Where the tests save screenshots (``make clean`` removes test-output/)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
