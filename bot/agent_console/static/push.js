/* Northwind agent console: push notifications on this device (docs/agent-console.md "Push").
 * The header's "Notifications" button: on asks the browser's permission, registers the
 * service worker (sw.js, scope: the console), subscribes with the server's VAPID public key
 * and POSTs the subscription to api/push/subscription (which also turns the agent's push
 * setting on); off deletes this device (api/push/unsubscribe) and turns the setting off
 * (api/push/settings), for every device of the agent. */
(function () {
  'use strict';

  const BASE = location.pathname.replace(/[^/]*$/, ''); // .../webhooks/agent/
  const TOKEN_KEY = 'agentConsole.token';
  const button = document.getElementById('ac-push');
  const nav = document.getElementById('ac-nav');
  const supported = 'serviceWorker' in navigator && 'PushManager' in window &&
    'Notification' in window && window.isSecureContext;
  const state = { server: null, on: false, busy: false, error: '' };
  window.__acPush = state; // for tests and debugging

  if (!button) return;

  function say(text, error) {
    const box = document.getElementById('ac-toast');
    if (!box) return;
    box.textContent = text;
    box.classList.toggle('ac-error', !!error);
    box.hidden = false;
    clearTimeout(say.timer);
    say.timer = setTimeout(() => { box.hidden = true; }, 6000);
  }

  async function api(method, path, body) {
    const headers = { Accept: 'application/json',
      Authorization: 'Bearer ' + (localStorage.getItem(TOKEN_KEY) || '') };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const response = await fetch(BASE + 'api/' + path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    let data = {};
    try { data = await response.json(); } catch (e) { data = {}; }
    if (!response.ok) {
      throw new Error((data.error && data.error.message) || ('Request failed (' + response.status + ').'));
    }
    return data;
  }

  function keyBytes(base64url) {
    const text = base64url.replace(/-/g, '+').replace(/_/g, '/');
    const raw = atob(text + '='.repeat((4 - (text.length % 4)) % 4));
    return Uint8Array.from(raw, (c) => c.charCodeAt(0));
  }

  function draw() {
    button.textContent = state.on ? 'Notifications: on' : 'Notifications: off';
    button.setAttribute('aria-pressed', String(state.on));
    button.disabled = state.busy;
  }

  async function deviceSubscription() {
    const registration = await navigator.serviceWorker.getRegistration(BASE);
    return registration ? registration.pushManager.getSubscription() : null;
  }

  async function refresh() {
    if (!localStorage.getItem(TOKEN_KEY)) return;
    try {
      state.server = await api('GET', 'push');
    } catch (e) { return; }
    button.hidden = !supported || !state.server.available;
    if (button.hidden) return;
    let subscription = null;
    try { subscription = await deviceSubscription(); } catch (e) { subscription = null; }
    state.on = !!(state.server.enabled && subscription && Notification.permission === 'granted');
    draw();
  }

  async function turnOn() {
    const permission = await Notification.requestPermission();
    if (permission !== 'granted') {
      throw new Error('Notifications are blocked for this site: allow them in the browser settings.');
    }
    await navigator.serviceWorker.register(BASE + 'sw.js', { scope: BASE });
    // subscribe needs an active worker: wait for it (the page is inside its scope)
    const registration = await navigator.serviceWorker.ready;
    let subscription = await registration.pushManager.getSubscription();
    if (subscription && subscription.options && subscription.options.applicationServerKey) {
      const current = new Uint8Array(subscription.options.applicationServerKey);
      const wanted = keyBytes(state.server.public_key);
      if (current.length !== wanted.length || current.some((b, i) => b !== wanted[i])) {
        await subscription.unsubscribe(); // made with an older server key
        subscription = null;
      }
    }
    if (!subscription) {
      subscription = await registration.pushManager.subscribe({
        userVisibleOnly: true, applicationServerKey: keyBytes(state.server.public_key) });
    }
    state.server = await api('POST', 'push/subscription', { subscription: subscription.toJSON() });
    state.on = true;
    say('Notifications are on: new tickets and transfers to you reach this device.');
  }

  async function turnOff() {
    let subscription = null;
    try { subscription = await deviceSubscription(); } catch (e) { subscription = null; }
    if (subscription) {
      await api('POST', 'push/unsubscribe', { endpoint: subscription.endpoint });
      try { await subscription.unsubscribe(); } catch (e) { /* deleted on the server anyway */ }
    }
    state.server = await api('POST', 'push/settings', { enabled: false });
    state.on = false;
    say('Notifications are off.');
  }

  button.addEventListener('click', async () => {
    if (state.busy) return;
    state.busy = true;
    state.error = '';
    draw();
    try {
      if (!state.server) state.server = await api('GET', 'push');
      if (state.on) await turnOff(); else await turnOn();
    } catch (e) {
      state.error = (e && e.message) || String(e);
      say('Notifications could not be changed: ' + state.error, true);
    } finally {
      state.busy = false;
      draw();
    }
  });

  if (supported) {
    navigator.serviceWorker.addEventListener('message', (event) => {
      const data = event.data || {};
      if (data.type === 'open' && typeof data.ticket === 'string' && /^[A-Za-z0-9_-]+$/.test(data.ticket)) {
        location.hash = '#/t/' + data.ticket;
      }
    });
  }
  // The nav is shown once the agent is logged in (console.js): read the setting then.
  if (nav) {
    new MutationObserver(() => { if (!nav.hidden) refresh(); })
      .observe(nav, { attributes: true, attributeFilter: ['hidden'] });
    if (!nav.hidden) refresh();
  }
})();
