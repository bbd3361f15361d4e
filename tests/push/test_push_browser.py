"""The console's notifications toggle in headless Chromium (Debian's, via Playwright),
against the real bot: it asks permission (granted to the context), registers the service
worker with the console's scope, subscribes with the server's VAPID key and POSTs the
subscription; a push delivered to that worker shows the ticket's notification; off deletes
the device.

Headless Chromium has no push service to talk to offline (``PushManager.subscribe`` needs
Google's FCM), so ``subscribe`` is wrapped: the real call is tried (its outcome is printed),
then the wrapper hands the page a subscription of a :class:`tests.push.conftest.Device`
at the local push service, with the key the page passed. Everything else is the browser's
own: the permission, the registration, the worker, its notification
(``ServiceWorker.deliverPushMessage`` over CDP) and the console's requests.
"""
from __future__ import annotations

import json
import time
from typing import Any

import pytest

from bot.push.keys import b64url_decode
from tests.agent_console.conftest import Console
from tests.browser.conftest import PHONE, browser, chromium  # noqa: F401 - fixtures by name
from tests.push.conftest import PushService, agent

pytestmark = pytest.mark.model

UI_MS = 20_000

WRAP_SUBSCRIBE = """
(() => {
  const device = %s;
  let current = null;
  window.__push = { probe: null, key: null };
  const real = PushManager.prototype.subscribe;
  PushManager.prototype.subscribe = async function (options) {
    window.__push.key = Array.from(new Uint8Array(options.applicationServerKey));
    try {
      const timeout = new Promise((_, no) => setTimeout(() => no(new Error('no answer in 5 s')), 5000));
      const sub = await Promise.race([real.call(this, options), timeout]);
      window.__push.probe = 'subscribed: ' + new URL(sub.endpoint).host;
      await sub.unsubscribe();
    } catch (e) { window.__push.probe = e.name + ': ' + e.message; }
    current = { endpoint: device.endpoint, options: { applicationServerKey: options.applicationServerKey },
      toJSON: () => device, unsubscribe: async () => { current = null; return true; } };
    return current;
  };
  PushManager.prototype.getSubscription = async function () { return current; };
})();
"""


def test_the_toggle_registers_the_worker_and_posts_the_subscription(
        browser: Any, embedded_bot: Any, push_service: PushService) -> None:  # noqa: F811
    from playwright.sync_api import expect

    console = Console(f"{embedded_bot.rasa_url}/webhooks/agent")
    who = agent(embedded_bot, None, "jana")
    device = push_service.device()
    public_key = console.call("GET", "/api/push", who["token"]).json()["public_key"]
    context = browser.new_context(base_url=embedded_bot.rasa_url, **PHONE)
    context.grant_permissions(["notifications"], origin=embedded_bot.rasa_url)
    context.add_init_script(f"localStorage.setItem('agentConsole.token', {json.dumps(who['token'])});")
    context.add_init_script(WRAP_SUBSCRIBE % json.dumps(device.subscription()))
    errors: list = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto("/webhooks/agent/")
        toggle = page.get_by_role("button", name="Notifications: off")
        expect(toggle).to_be_visible(timeout=UI_MS)
        expect(toggle).to_have_attribute("aria-pressed", "false")

        toggle.click()
        on = page.get_by_role("button", name="Notifications: on")
        expect(on).to_be_visible(timeout=UI_MS)
        expect(page.locator("#ac-toast")).to_contain_text("Notifications are on")
        probe = page.evaluate("window.__push.probe")
        print(f"\nreal PushManager.subscribe in headless Chromium: {probe}")
        assert page.evaluate("window.__push.key") == list(b64url_decode(public_key))
        scope = page.evaluate("navigator.serviceWorker.getRegistration('/webhooks/agent/')"
                              ".then(r => r && r.scope)")
        assert scope == f"{embedded_bot.rasa_url}/webhooks/agent/"
        assert page.evaluate("navigator.serviceWorker.ready.then(r => r.active.state)") == \
            "activated"
        state = console.call("GET", "/api/push", who["token"]).json()
        assert state["enabled"] is True and [d["service"] for d in state["devices"]] == [
            push_service.origin]

        # the subscription the page posted is the one the server pushes to
        assert console.call("POST", "/api/push/test", who["token"]).json() == {"queued": 1}
        [test] = push_service.wait_for(device)
        assert device.decrypt(test.body)["type"] == "test"

        # the worker shows a pushed ticket (delivered by the browser's DevTools protocol)
        cdp = context.new_cdp_session(page)
        registrations: list = []
        cdp.on("ServiceWorker.workerRegistrationUpdated",
               lambda event: registrations.extend(event["registrations"]))
        cdp.send("ServiceWorker.enable")
        deadline = time.monotonic() + 10
        while not registrations and time.monotonic() < deadline:
            page.wait_for_timeout(100)
        [registration] = [r for r in registrations if r["scopeURL"] == scope]
        payload = {"type": "ticket.new", "ticket": "T-424242", "subject": "Parcel never came",
                   "priority": "urgent", "category": "SHIPPING"}
        cdp.send("ServiceWorker.deliverPushMessage", {
            "origin": embedded_bot.rasa_url, "registrationId": registration["registrationId"],
            "data": json.dumps(payload)})
        notes = None
        deadline = time.monotonic() + 10
        while not notes and time.monotonic() < deadline:
            page.wait_for_timeout(100)
            notes = page.evaluate("""navigator.serviceWorker.ready
              .then(r => r.getNotifications())
              .then(list => list.map(n => ({title: n.title, body: n.body, tag: n.tag,
                                            data: n.data, sticky: n.requireInteraction})))""")
        assert notes == [{"title": "New ticket T-424242",
                          "body": "Parcel never came\nPriority: urgent · SHIPPING",
                          "tag": "T-424242", "data": {"ticket": "T-424242", "type": "ticket.new"},
                          "sticky": True}]

        # off: the device is deleted, the agent's setting is off
        on.click()
        expect(page.get_by_role("button", name="Notifications: off")).to_be_visible(timeout=UI_MS)
        state = console.call("GET", "/api/push", who["token"]).json()
        assert state == {**state, "enabled": False, "devices": []}
        assert errors == []
    finally:
        context.close()
