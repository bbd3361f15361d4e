/* Northwind agent console: a single page, plain JS, no build step.
 * Every server-provided string is rendered with textContent (never innerHTML); rich text
 * (FAQ articles in bot messages) arrives as JSON "blocks" drawn with DOM APIs.
 * Routes: #/login, #/inbox, #/t/<ticket reference>, #/dashboard.
 * API and live frames: docs/agent-console.md. */
(function () {
  'use strict';

  const BASE = location.pathname.replace(/[^/]*$/, ''); // .../webhooks/agent/
  const TOKEN_KEY = 'agentConsole.token';
  const SVG = 'http://www.w3.org/2000/svg';
  const TYPING_EVERY_MS = 1500;
  const TYPING_IDLE_MS = 3000;

  const state = {
    token: localStorage.getItem(TOKEN_KEY),
    agent: null,
    inbox: [],
    filters: { state: 'queued,assigned', category: '' },
    detail: null, // the open ticket
    canned: null,
    agents: null,
    ws: null,
    wsRetry: 0,
    audio: null,
    typingTimer: null,
    typingSentAt: 0,
    customerTypingTimer: null,
    seenTickets: new Set(),
  };

  // ------------------------------------------------------------------ DOM helpers

  function h(tag, attrs, children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value == null || value === false) continue;
      if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
      else if (key === 'class') el.className = value;
      else el.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of [].concat(children == null ? [] : children)) {
      if (child == null || child === false) continue;
      el.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function s(tag, attrs, children) {
    const el = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, String(value));
    for (const child of [].concat(children || [])) {
      el.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  // Rich text of bot messages (FAQ articles): JSON "blocks" from the server
  // (bot/richtext.py), drawn with DOM APIs and text nodes. Links open only http(s)/mailto.
  const RICH_DEPTH = 12;

  function safeHref(href) {
    if (typeof href !== 'string' || /[\s\u0000-\u001f]/.test(href)) return null;
    try {
      const url = new URL(href);
      if (url.protocol === 'mailto:') return url.pathname ? url.href : null;
      return (url.protocol === 'https:' || url.protocol === 'http:') && url.hostname ? url.href : null;
    } catch (e) {
      return null;
    }
  }

  function richSpans(list, depth) {
    const out = [];
    for (const sp of Array.isArray(list) ? list : []) {
      if (!sp || typeof sp !== 'object') continue;
      const kids = () => (depth < RICH_DEPTH ? richSpans(sp.content, depth + 1) : []);
      if (sp.type === 'text') out.push(String(sp.text == null ? '' : sp.text));
      else if (sp.type === 'break') out.push(h('br'));
      else if (sp.type === 'code') out.push(h('code', {}, String(sp.text == null ? '' : sp.text)));
      else if (sp.type === 'strong' || sp.type === 'em') out.push(h(sp.type, {}, kids()));
      else if (sp.type === 'link') {
        const href = safeHref(sp.href);
        out.push(href ? h('a', { href, target: '_blank', rel: 'noopener noreferrer' }, kids()) : h('span', {}, kids()));
      }
    }
    return out;
  }

  function richBlocks(list, depth) {
    const out = [];
    if (depth > RICH_DEPTH) return out;
    for (const b of Array.isArray(list) ? list : []) {
      if (!b || typeof b !== 'object') continue;
      if (b.type === 'paragraph') out.push(h('p', {}, richSpans(b.content, 0)));
      else if (b.type === 'heading') {
        const level = Math.min(6, Math.max(1, Math.floor(Number(b.level)) || 1) + 3);
        out.push(h('h' + level, { class: 'ac-rich-h' }, richSpans(b.content, 0)));
      } else if (b.type === 'list') {
        const start = Math.floor(Number(b.start));
        out.push(h(b.ordered ? 'ol' : 'ul', { start: b.ordered && start > 1 ? start : null },
          (Array.isArray(b.items) ? b.items : []).map((item) => h('li', {}, richBlocks(item, depth + 1)))));
      } else if (b.type === 'quote') out.push(h('blockquote', {}, richBlocks(b.blocks, depth + 1)));
      else if (b.type === 'code') out.push(h('pre', {}, h('code', {}, String(b.text == null ? '' : b.text))));
      else if (b.type === 'rule') out.push(h('hr'));
      else if (b.type === 'table') {
        const row = (cells, tag) => h('tr', {}, (Array.isArray(cells) ? cells : []).map((c) =>
          h(tag, tag === 'th' ? { scope: 'col' } : {}, richSpans(c, 0))));
        out.push(h('div', { class: 'ac-rich-table', role: 'region', 'aria-label': 'Table', tabindex: '0' },
          h('table', {}, [
            Array.isArray(b.header) && b.header.length ? h('thead', {}, row(b.header, 'th')) : null,
            h('tbody', {}, (Array.isArray(b.rows) ? b.rows : []).map((r) => row(r, 'td'))),
          ])));
      }
    }
    return out;
  }

  /** A message's rich content, folded under its text (what the customer's widget shows). */
  function richPart(message) {
    if (!Array.isArray(message.blocks) || !message.blocks.length) return null;
    const body = h('div', { class: 'ac-rich' }, richBlocks(message.blocks, 0));
    return message.text ? h('details', { class: 'ac-rich-more' }, [h('summary', {}, 'Read more'), body]) : body;
  }

  const $ = (sel, root) => (root || document).querySelector(sel);
  const main = () => $('#ac-main');

  function toast(text, error) {
    const box = $('#ac-toast');
    box.textContent = text;
    box.classList.toggle('ac-error', !!error);
    box.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { box.hidden = true; }, error ? 8000 : 4000);
  }

  function ago(iso) {
    if (!iso) return '';
    const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (seconds < 60) return Math.round(seconds) + ' s';
    if (seconds < 3600) return Math.round(seconds / 60) + ' min';
    if (seconds < 86400) return (seconds / 3600).toFixed(1) + ' h';
    return Math.round(seconds / 86400) + ' d';
  }

  function clock(iso) {
    return iso ? new Date(iso).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) : '';
  }

  function duration(seconds) {
    if (seconds == null) return '–';
    if (seconds < 60) return Math.round(seconds) + ' s';
    if (seconds < 3600) return (seconds / 60).toFixed(1) + ' min';
    return (seconds / 3600).toFixed(1) + ' h';
  }

  const pct = (rate) => (rate == null ? '–' : Math.round(rate * 100) + ' %');

  // ------------------------------------------------------------------ API

  class ApiError extends Error {
    constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  }

  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (state.token) headers.Authorization = 'Bearer ' + state.token;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let response;
    try {
      response = await fetch(BASE + 'api/' + path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiError(0, 'network', 'The server cannot be reached. Check your connection.');
    }
    let data = {};
    try { data = await response.json(); } catch (e) { data = {}; }
    if (!response.ok) {
      const error = (data && data.error) || {};
      const failure = new ApiError(response.status, error.code || 'error',
        error.message || ('Request failed (' + response.status + ').'));
      if (response.status === 401 && path !== 'login') signedOut(failure.code === 'expired'
        ? 'Your session has expired. Please log in again.' : 'Please log in.');
      throw failure;
    }
    return data;
  }

  function signedOut(message) {
    state.token = null;
    state.agent = null;
    localStorage.removeItem(TOKEN_KEY);
    if (state.ws) { state.ws.onclose = null; state.ws.close(); state.ws = null; }
    $('#ac-nav').hidden = true;
    setBadge(0);
    renderLogin(message);
  }

  // ------------------------------------------------------------------ notifications

  function unlockAudio() {
    try {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      if (Ctx && !state.audio) state.audio = new Ctx();
      if (state.audio && state.audio.state === 'suspended') state.audio.resume();
    } catch (e) { /* no audio */ }
  }

  function beep() {
    const ctx = state.audio;
    if (!ctx) return;
    try {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = 'sine';
      osc.frequency.value = 880;
      gain.gain.setValueAtTime(0.0001, ctx.currentTime);
      gain.gain.exponentialRampToValueAtTime(0.2, ctx.currentTime + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, ctx.currentTime + 0.25);
      osc.connect(gain).connect(ctx.destination);
      osc.start();
      osc.stop(ctx.currentTime + 0.3);
    } catch (e) { /* ignore */ }
  }

  function askNotificationPermission() {
    if ('Notification' in window && Notification.permission === 'default') {
      try { Notification.requestPermission().catch(() => {}); } catch (e) { /* old API */ }
    }
  }

  function notifyNewTicket(ticket) {
    window.__acNotified = (window.__acNotified || 0) + 1; // for tests and debugging
    beep();
    toast('New ticket ' + ticket.reference + ': ' + ticket.summary);
    if ('Notification' in window && Notification.permission === 'granted' && document.hidden) {
      try {
        const note = new Notification('New support ticket ' + ticket.reference,
          { body: ticket.summary, tag: ticket.reference });
        note.onclick = () => { window.focus(); location.hash = '#/t/' + ticket.reference; };
      } catch (e) { /* some mobile browsers need a service worker */ }
    }
  }

  function setBadge(count) {
    const badge = $('#ac-badge');
    badge.hidden = !count;
    badge.textContent = String(count);
    badge.setAttribute('aria-label', count + ' tickets need attention');
    document.title = (count ? '(' + count + ') ' : '') + 'Agent console · Northwind Support';
    try {
      if (count && navigator.setAppBadge) navigator.setAppBadge(count).catch(() => {});
      else if (!count && navigator.clearAppBadge) navigator.clearAppBadge().catch(() => {});
    } catch (e) { /* unsupported */ }
  }

  function updateBadge() {
    const queued = state.inbox.filter((i) => i.state === 'queued').length;
    const unread = state.inbox.reduce((n, i) => n + (i.unread || 0), 0);
    setBadge(queued + unread);
  }

  // ------------------------------------------------------------------ live socket

  function connect() {
    if (!state.token || state.ws) return;
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + BASE + 'ws';
    const ws = new WebSocket(url);
    state.ws = ws;
    const conn = $('#ac-conn');
    ws.onopen = () => ws.send(JSON.stringify({ type: 'hello', token: state.token }));
    ws.onmessage = (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      onFrame(frame);
    };
    ws.onclose = (event) => {
      state.ws = null;
      if (event.code === 4001 || event.code === 4002) {
        signedOut(event.code === 4002 ? 'Your session has expired. Please log in again.'
          : 'Please log in again.');
        return;
      }
      conn.textContent = 'Offline: reconnecting…';
      state.wsRetry = Math.min(state.wsRetry + 1, 6);
      setTimeout(connect, 500 * 2 ** state.wsRetry);
    };
  }

  function sendFrame(frame) {
    if (state.ws && state.ws.readyState === 1) state.ws.send(JSON.stringify(frame));
  }

  let inboxTimer = null;
  function refreshInboxSoon() {
    clearTimeout(inboxTimer);
    inboxTimer = setTimeout(() => loadInbox().catch(() => {}), 200);
  }

  function onFrame(frame) {
    const open = state.detail;
    const here = open && frame.conversation_id === open.conversation_id;
    switch (frame.type) {
      case 'welcome':
        state.wsRetry = 0;
        $('#ac-conn').textContent = '';
        refreshInboxSoon();
        break;
      case 'ticket': {
        const ticket = frame.ticket;
        if (frame.action === 'handoff.recorded' && !state.seenTickets.has(frame.audit_id)) {
          state.seenTickets.add(frame.audit_id);
          notifyNewTicket(ticket);
        }
        refreshInboxSoon();
        if (open && open.ticket.reference === ticket.reference
          && (open.ticket.status !== ticket.status || open.ticket.assignee_id !== ticket.assignee_id)) {
          reloadDetail();
        }
        break;
      }
      case 'customer.message':
        if (here) {
          addMessage(frame.message);
          showCustomerTyping(false);
          markRead();
        }
        refreshInboxSoon();
        break;
      case 'agent.message':
        if (here) addMessage(frame.message);
        refreshInboxSoon();
        break;
      case 'customer.typing':
        if (here) showCustomerTyping(frame.state === 'start');
        break;
      case 'customer.read':
        if (here) (frame.ids || []).forEach((id) => setStatus(id, 'read'));
        break;
      case 'agent.read':
        refreshInboxSoon();
        break;
      case 'rating.created':
        if (here) toast('The customer rated this chat ' + frame.score + '/5.');
        break;
      case 'conversation.ended':
        if (here) addDivider('The customer ended the chat.');
        break;
      case 'logged_out':
        signedOut('You logged out.');
        break;
      default:
        break;
    }
  }

  // ------------------------------------------------------------------ router

  function route() {
    if (!state.token) { renderLogin(); return; }
    const hash = location.hash || '#/inbox';
    document.querySelectorAll('[data-nav]').forEach((a) => {
      a.classList.toggle('active', hash.startsWith('#/' + a.dataset.nav));
    });
    const match = /^#\/t\/([A-Za-z0-9_-]+)$/.exec(hash);
    if (match) renderTicket(match[1]);
    else if (hash === '#/dashboard') renderDashboard();
    else renderInbox();
  }

  async function start() {
    $('#ac-logout').addEventListener('click', async () => {
      try { await api('POST', 'logout', {}); } catch (e) { /* signed out anyway */ }
      signedOut('You logged out.');
    });
    document.addEventListener('click', unlockAudio, { once: true });
    window.addEventListener('hashchange', route);
    if (state.token) {
      try {
        state.agent = (await api('GET', 'me')).agent;
      } catch (e) {
        if (e.status !== 401) toast(e.message, true);
        return;
      }
      loggedIn();
    } else {
      renderLogin();
    }
  }

  function loggedIn() {
    $('#ac-nav').hidden = false;
    connect();
    route();
  }

  // ------------------------------------------------------------------ login

  function renderLogin(message) {
    const error = h('p', { class: 'ac-error-text', role: 'alert' }, message || '');
    const user = h('input', { name: 'username', autocomplete: 'username', required: true,
      autocapitalize: 'none', spellcheck: 'false' });
    const pass = h('input', { name: 'password', type: 'password', autocomplete: 'current-password',
      required: true });
    const button = h('button', { type: 'submit', class: 'ac-btn ac-primary' }, 'Log in');
    const form = h('form', { class: 'ac-card ac-login', 'aria-label': 'Log in' }, [
      h('h2', {}, 'Agent console'),
      h('label', { class: 'ac-field' }, [h('span', {}, 'Username'), user]),
      h('label', { class: 'ac-field' }, [h('span', {}, 'Password'), pass]),
      error, button,
    ]);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      unlockAudio();
      askNotificationPermission();
      button.disabled = true;
      error.textContent = '';
      try {
        const data = await api('POST', 'login', { username: user.value, password: pass.value });
        state.token = data.token;
        state.agent = data.agent;
        localStorage.setItem(TOKEN_KEY, data.token);
        pass.value = '';
        if (!location.hash || location.hash === '#/login') location.hash = '#/inbox';
        loggedIn();
      } catch (e) {
        error.textContent = e.message;
        button.disabled = false;
      }
    });
    main().replaceChildren(form);
    user.focus();
  }

  // ------------------------------------------------------------------ inbox

  async function loadInbox() {
    const params = new URLSearchParams({ state: state.filters.state });
    if (state.filters.category) params.set('category', state.filters.category);
    const data = await api('GET', 'inbox?' + params);
    state.inbox = data.tickets;
    updateBadge();
    const list = $('#ac-inbox');
    if (list) drawInbox(list);
    return data;
  }

  function renderInbox() {
    state.detail = null;
    const categories = ['', 'ORDER', 'SHIPPING', 'RETURN', 'REFUND', 'PAYMENT', 'ACCOUNT',
      'PRODUCT', 'CONTACT', 'COMPLAINT', 'OTHER'];
    const stateSelect = h('select', { 'aria-label': 'State', id: 'ac-filter-state', onchange: (e) => {
      state.filters.state = e.target.value; loadInbox().catch((err) => toast(err.message, true));
    } }, [['queued,assigned', 'Open'], ['queued', 'Queued'], ['assigned', 'Assigned'],
      ['resolved', 'Resolved'], ['all', 'All']].map(([value, label]) =>
      h('option', { value, selected: state.filters.state === value }, label)));
    const categorySelect = h('select', { 'aria-label': 'Category', id: 'ac-filter-category',
      onchange: (e) => { state.filters.category = e.target.value;
        loadInbox().catch((err) => toast(err.message, true)); } },
    categories.map((c) => h('option', { value: c, selected: state.filters.category === c },
      c ? c.charAt(0) + c.slice(1).toLowerCase() : 'All categories')));
    const list = h('ul', { class: 'ac-list', id: 'ac-inbox', 'aria-label': 'Tickets',
      'aria-live': 'polite' });
    main().replaceChildren(h('section', {}, [
      h('div', { class: 'ac-filters' }, [stateSelect, categorySelect]), list]));
    drawInbox(list);
    loadInbox().catch((e) => toast(e.message, true));
  }

  function drawInbox(list) {
    if (!state.inbox.length) {
      list.replaceChildren(h('li', { class: 'ac-empty' }, 'No tickets. New ones appear here.'));
      return;
    }
    list.replaceChildren(...state.inbox.map((item) => {
      const t = item.ticket;
      return h('li', {}, h('a', {
        class: 'ac-item', href: '#/t/' + t.reference, 'data-priority': t.priority,
        'data-ticket': t.reference, 'data-state': item.state,
      }, [
        h('div', { class: 'ac-item-top' }, [
          h('span', {}, item.customer_name || item.customer_id || 'Customer'),
          item.unread ? h('span', { class: 'ac-unread', 'aria-label': item.unread + ' unread' },
            String(item.unread)) : null,
        ]),
        h('div', { class: 'ac-item-sub' }, [
          h('span', { class: 'ac-chip ac-state-' + item.state }, item.state),
          h('span', { class: 'ac-chip' }, t.category),
          h('span', {}, t.priority),
          h('span', {}, t.reference),
          h('span', { title: item.waiting_since }, 'waiting ' + ago(item.waiting_since)),
          item.assignee ? h('span', {}, '→ ' + item.assignee.display_name) : null,
        ]),
        h('div', { class: 'ac-item-last' }, item.last_message || t.summary),
      ]));
    }));
  }

  // ------------------------------------------------------------------ conversation

  async function renderTicket(reference) {
    main().replaceChildren(h('p', { class: 'ac-empty' }, 'Loading ' + reference + '…'));
    try {
      state.detail = await api('GET', 'tickets/' + encodeURIComponent(reference));
    } catch (e) {
      main().replaceChildren(h('div', { class: 'ac-card' }, [
        h('p', { class: 'ac-error-text' }, e.message), h('a', { href: '#/inbox' }, 'Back to the inbox')]));
      return;
    }
    if (!state.canned) api('GET', 'canned').then((d) => { state.canned = d.responses; drawCanned(); })
      .catch(() => {});
    if (!state.agents) api('GET', 'agents').then((d) => { state.agents = d.agents; drawActions(); })
      .catch(() => {});
    drawTicket();
    markRead();
  }

  async function reloadDetail() {
    if (!state.detail) return;
    try {
      state.detail = await api('GET', 'tickets/' + state.detail.ticket.reference);
      drawTicket();
    } catch (e) {
      if (e.status === 403) { toast(e.message, true); location.hash = '#/inbox'; }
    }
  }

  function drawTicket() {
    const d = state.detail;
    // keep the agent's draft (and focus) across redraws caused by live updates
    const previous = $('#ac-reply-text');
    const draft = previous && previous.dataset.ticket === d.ticket.reference ? previous.value : '';
    const hadFocus = previous && document.activeElement === previous;
    const t = d.ticket;
    const log = h('div', { class: 'ac-log', id: 'ac-log', role: 'log', 'aria-label': 'Conversation' });
    const typing = h('p', { class: 'ac-typing', id: 'ac-typing', 'aria-live': 'polite' });
    const box = h('textarea', { id: 'ac-reply-text', rows: 2, 'aria-label': 'Reply to the customer',
      placeholder: d.can_act ? 'Type your reply…' : 'Claim the ticket to reply', disabled: !d.can_act,
      maxlength: 4000, 'data-ticket': t.reference });
    box.value = draft;
    const send = h('button', { type: 'submit', class: 'ac-btn ac-primary', disabled: !d.can_act }, 'Send');
    const form = h('form', { class: 'ac-reply', 'aria-label': 'Reply' }, [attachButton(d), box, send]);
    box.addEventListener('input', () => agentTyping(true));
    box.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
    });
    form.addEventListener('submit', (e) => { e.preventDefault(); sendReply(box, send); });

    const customer = d.customer || {};
    const side = h('aside', { class: 'ac-side' }, [
      h('section', { class: 'ac-card', 'aria-label': 'Customer' }, [
        h('h3', {}, 'Customer'),
        kv([['Name', customer.name], ['Email', customer.email || t.contact_email],
          ['Phone', customer.phone], ['Locale', customer.locale], ['Time zone', customer.timezone],
          ['Id', customer.id]]),
        h('h3', {}, 'App context'), kv(Object.entries(d.context || {})),
        h('h3', {}, 'Recent orders'),
        kv((d.recent_orders || []).map((o) => ['#' + o.number,
          o.status.replace(/_/g, ' ') + ' · ' + String(o.placed_at || '').slice(0, 10) + ' · €' + o.total_eur
          + (o.refund_status && o.refund_status !== 'none' ? ' · refund ' + o.refund_status : '')])),
      ]),
      h('section', { class: 'ac-card', 'aria-label': 'Triage' }, [
        h('h3', {}, 'Triage'),
        kv([['Category', d.triage.category || t.category],
          ['Confidence', d.triage.confidence != null ? Math.round(d.triage.confidence * 100) + ' %' : null],
          ['Priority', t.priority], ['Summary', t.summary]]),
        h('h3', {}, 'Collected by the bot'), kv(Object.entries(d.slots || {})),
      ]),
      h('section', { class: 'ac-card', 'aria-label': 'Suggested answers' }, [
        h('h3', {}, 'Suggested answers (FAQ)'),
        d.suggestions.length ? h('ul', { class: 'ac-suggest', id: 'ac-suggest' }, d.suggestions.map((item) =>
          h('li', {}, h('button', { type: 'button', disabled: !d.can_act,
            onclick: () => insert(item.summary || item.snippet) }, [
            h('strong', {}, item.title), h('span', { class: 'ac-small' }, ' ' + (item.summary || item.snippet)),
          ])))) : h('p', { class: 'ac-small' }, 'No matching FAQ article.'),
      ]),
      h('section', { class: 'ac-card', 'aria-label': 'Canned responses' }, [
        h('h3', {}, 'Canned responses'), h('ul', { class: 'ac-canned', id: 'ac-canned' }),
      ]),
    ]);

    main().replaceChildren(h('div', { class: 'ac-conv' }, [
      h('section', { class: 'ac-card' }, [
        h('div', { class: 'ac-conv-head' }, [
          h('h1', {}, (customer.name || 'Customer') + ' · ' + t.reference),
          h('span', { class: 'ac-chip ac-state-' + d.state, id: 'ac-ticket-state' }, d.state),
          h('span', { class: 'ac-chip' }, t.category),
          d.assignee ? h('span', { class: 'ac-small' }, 'Agent: ' + d.assignee.display_name) : null,
        ]),
        h('div', { class: 'ac-actions', id: 'ac-actions' }),
      ]),
      h('section', { class: 'ac-card' }, [log, typing, form]),
      side,
    ]));
    for (const line of d.transcript || []) {
      log.appendChild(h('div', { class: 'ac-msg', 'data-sender': line.author === 'customer' ? 'customer' : 'bot',
        'data-source': 'transcript' }, [line.text, h('span', { class: 'ac-msg-meta' },
        (line.author === 'customer' ? 'Customer' : 'Bot') + ' · ' + clock(line.at))]));
    }
    if ((d.transcript || []).length) log.appendChild(h('p', { class: 'ac-divider' }, 'Handed to a person'));
    for (const message of d.messages || []) addMessage(message, true);
    log.scrollTop = log.scrollHeight;
    drawActions();
    drawCanned();
    if (hadFocus && !box.disabled) box.focus();
  }

  function kv(pairs) {
    const rows = pairs.filter(([, v]) => v != null && v !== '');
    if (!rows.length) return h('p', { class: 'ac-small' }, '–');
    return h('dl', { class: 'ac-kv' }, rows.flatMap(([k, v]) => [
      h('dt', {}, String(k).replace(/_/g, ' ')),
      h('dd', {}, typeof v === 'object' ? JSON.stringify(v) : String(v))]));
  }

  function drawActions() {
    const bar = $('#ac-actions');
    const d = state.detail;
    if (!bar || !d) return;
    const buttons = [];
    if (d.state === 'queued') {
      buttons.push(h('button', { type: 'button', class: 'ac-btn ac-primary', id: 'ac-claim',
        onclick: (e) => act(e.target, 'claim', {}) }, 'Claim'));
    }
    if (d.can_act) {
      const others = (state.agents || []).filter((a) => a.id !== (d.assignee && d.assignee.id) && a.active);
      const pick = h('select', { 'aria-label': 'Transfer to', id: 'ac-transfer-to' },
        [h('option', { value: '' }, 'Transfer to…')].concat(others.map((a) =>
          h('option', { value: a.id }, a.display_name + (a.online ? ' (online)' : '')))));
      buttons.push(pick, h('button', { type: 'button', class: 'ac-btn', id: 'ac-transfer', onclick: (e) => {
        if (!pick.value) { toast('Choose an agent first.', true); return; }
        act(e.target, 'transfer', { agent_id: Number(pick.value) });
      } }, 'Transfer'));
      const note = h('input', { class: 'ac-input', id: 'ac-resolve-note', placeholder: 'Resolution note (optional)',
        'aria-label': 'Resolution note', maxlength: 2000 });
      buttons.push(note, h('button', { type: 'button', class: 'ac-btn ac-danger', id: 'ac-resolve',
        onclick: (e) => act(e.target, 'resolve', { note: note.value }) }, 'Resolve'));
    }
    bar.replaceChildren(...buttons, h('a', { href: '#/inbox', class: 'ac-btn' }, 'Inbox'));
  }

  async function act(button, action, body) {
    const reference = state.detail.ticket.reference;
    button.disabled = true;
    try {
      await api('POST', 'tickets/' + reference + '/' + action, body);
      toast({ claim: 'You claimed ', transfer: 'Transferred ', resolve: 'Resolved ' }[action] + reference + '.');
      if (action === 'transfer' && state.agent.role !== 'admin') { location.hash = '#/inbox'; return; }
      await reloadDetail();
      refreshInboxSoon();
    } catch (e) {
      toast(e.message, true); // e.g. "TKT-… was already claimed by Maria."
      button.disabled = false;
      if (e.status === 409) reloadDetail();
    }
  }

  function drawCanned() {
    const list = $('#ac-canned');
    const d = state.detail;
    if (!list || !d || !state.canned) return;
    const category = d.ticket.category;
    const sorted = state.canned.slice().sort((a, b) =>
      (b.category === category) - (a.category === category));
    const name = ((d.customer && d.customer.name) || '').split(' ')[0] || 'there';
    list.replaceChildren(...sorted.map((c) => h('li', {}, h('button', { type: 'button', disabled: !d.can_act,
      'data-canned': c.id, onclick: () => insert(c.text.replace(/\{customer_name\}/g, name)
        .replace(/\{agent_name\}/g, state.agent.display_name)) }, c.title))));
  }

  function insert(text) {
    const box = $('#ac-reply-text');
    if (!box || box.disabled) return;
    box.value = box.value ? box.value.replace(/\s*$/, ' ') + text : text;
    box.focus();
    agentTyping(true);
  }

  function addMessage(message, initial) {
    const log = $('#ac-log');
    if (!log || !message) return;
    if (log.querySelector('[data-id="' + message.id + '"]')) { setStatus(message.id, message.status); return; }
    const mine = message.sender === 'agent';
    const who = message.sender === 'customer' ? 'Customer' : mine ? (message.sender_name || 'Agent')
      : message.sender === 'bot' ? 'Bot' : '';
    const meta = h('span', { class: 'ac-msg-meta' }, [who + ' · ' + clock(message.created_at)]);
    if (mine) meta.appendChild(h('span', { class: 'ac-ticks', 'data-status': message.status,
      'aria-label': message.status }, ' ' + ticks(message.status)));
    log.appendChild(h('div', { class: 'ac-msg', 'data-sender': message.sender, 'data-id': message.id },
      [message.text, richPart(message), attachmentPart(message), meta]));
    if (!initial) log.scrollTop = log.scrollHeight;
  }

  // ------------------------------------------------------------------ attachments
  // Photos and PDFs (docs/agent-console.md, "Attachments"): fetched with the session token
  // into blob: URLs (an <img src> cannot send the Authorization header); an upload is the
  // raw file to tickets/<ref>/attachments, then a reply naming it.

  const blobs = new Map();
  function attachmentUrl(ref, thumb) {
    const key = ref.id + (thumb ? ':t' : '');
    if (!blobs.has(key)) {
      const made = fetch(BASE + 'api/attachments/' + encodeURIComponent(ref.id) + (thumb ? '/thumb' : ''), {
        headers: { Authorization: 'Bearer ' + state.token },
      }).then(async (response) => {
        if (!response.ok) throw new Error('HTTP ' + response.status);
        return URL.createObjectURL(await response.blob());
      });
      made.catch(() => blobs.delete(key));
      blobs.set(key, made);
    }
    return blobs.get(key);
  }

  async function openAttachment(ref) {
    try {
      const url = await attachmentUrl(ref, false);
      const a = h('a', { href: url, target: '_blank', rel: 'noopener', download: ref.kind === 'pdf' ? ref.name : null });
      document.body.appendChild(a);
      a.click();
      a.remove();
    } catch (e) {
      toast('The file could not be opened.', true);
    }
  }

  function attachmentPart(message) {
    const refs = Array.isArray(message.attachments) ? message.attachments.filter((r) => r && typeof r.id === 'string') : [];
    if (!refs.length) return null;
    return h('div', { class: 'ac-atts' }, refs.map((ref) => {
      const name = String(ref.name || 'file');
      if (ref.kind === 'image' && ref.thumb) {
        const img = h('img', { class: 'ac-att-thumb', alt: name });
        attachmentUrl(ref, true).then((url) => { img.src = url; }, () => img.classList.add('ac-att-missing'));
        return h('button', { type: 'button', class: 'ac-att ac-att-image', 'aria-label': 'Open ' + name, onclick: () => openAttachment(ref) }, [img]);
      }
      return h('button', { type: 'button', class: 'ac-att ac-att-file', onclick: () => openAttachment(ref) },
        [(ref.kind === 'pdf' ? 'PDF · ' : '') + name + ' (' + Math.max(1, Math.round((ref.size || 0) / 1024)) + ' KB)']);
    }));
  }

  function attachButton(d) {
    const input = h('input', { type: 'file', class: 'ac-file', hidden: true,
      accept: 'image/jpeg,image/png,image/webp,image/gif,application/pdf' });
    const button = h('button', { type: 'button', class: 'ac-btn ac-attach', disabled: !d.can_act,
      'aria-label': 'Send a photo or PDF', title: 'Send a photo or PDF' },
    [s('svg', { viewBox: '0 0 24 24', width: 22, height: 22, 'aria-hidden': 'true', focusable: 'false' }, [
      s('path', { fill: 'currentColor', d: 'M16.5 6v11.5a4 4 0 0 1-8 0V5a2.5 2.5 0 0 1 5 0v10.5a1 1 0 0 1-2 0V6H10v9.5a2.5 2.5 0 0 0 5 0V5a4 4 0 0 0-8 0v12.5a5.5 5.5 0 0 0 11 0V6h-1.5z' })])]);
    button.addEventListener('click', () => input.click());
    input.addEventListener('change', () => {
      const file = input.files && input.files[0];
      input.value = '';
      if (file) sendFile(file, button);
    });
    return h('span', { class: 'ac-attach-wrap' }, [input, button]);
  }

  async function sendFile(file, button) {
    const reference = state.detail.ticket.reference;
    button.disabled = true;
    try {
      let response;
      try {
        response = await fetch(BASE + 'api/tickets/' + encodeURIComponent(reference) + '/attachments?name=' + encodeURIComponent(file.name || ''), {
          method: 'POST', body: file,
          headers: { Authorization: 'Bearer ' + state.token, 'Content-Type': 'application/octet-stream' },
        });
      } catch (e) {
        throw new ApiError(0, 'network', 'The server cannot be reached. Check your connection.');
      }
      const data = await response.json().catch(() => ({}));
      if (!response.ok) throw new ApiError(response.status, 'refused', (data.error && data.error.message) || 'The file could not be sent.');
      const clientId = (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random()).slice(0, 64);
      const sent = await api('POST', 'tickets/' + reference + '/reply', { attachments: [data.attachment.id], client_id: clientId });
      addMessage(sent.message);
    } catch (e) {
      toast(e.message, true);
    } finally {
      button.disabled = false;
    }
  }

  function ticks(status) {
    return status === 'read' ? '✓✓ Read' : status === 'delivered' ? '✓✓' : '✓';
  }

  function setStatus(id, status) {
    const el = document.querySelector('#ac-log [data-id="' + id + '"] .ac-ticks');
    if (!el) return;
    const rank = { sent: 0, delivered: 1, read: 2 };
    if ((rank[status] || 0) < (rank[el.dataset.status] || 0)) return;
    el.dataset.status = status;
    el.setAttribute('aria-label', status);
    el.textContent = ' ' + ticks(status);
  }

  function addDivider(text) {
    const log = $('#ac-log');
    if (log) log.appendChild(h('p', { class: 'ac-divider' }, text));
  }

  function showCustomerTyping(on) {
    const box = $('#ac-typing');
    if (!box) return;
    box.textContent = on ? ((state.detail.customer && state.detail.customer.name) || 'The customer') + ' is typing…' : '';
    clearTimeout(state.customerTypingTimer);
    if (on) state.customerTypingTimer = setTimeout(() => { box.textContent = ''; }, 8000);
  }

  function agentTyping(active) {
    const d = state.detail;
    if (!d || !d.can_act) return;
    const now = Date.now();
    if (active && now - state.typingSentAt > TYPING_EVERY_MS) {
      state.typingSentAt = now;
      sendFrame({ type: 'typing', ticket: d.ticket.reference, state: 'start' });
    }
    clearTimeout(state.typingTimer);
    const stop = () => {
      state.typingSentAt = 0;
      sendFrame({ type: 'typing', ticket: d.ticket.reference, state: 'stop' });
    };
    if (active) state.typingTimer = setTimeout(stop, TYPING_IDLE_MS);
    else stop();
  }

  async function sendReply(box, button) {
    const text = box.value.trim();
    if (!text) return;
    const reference = state.detail.ticket.reference;
    const clientId = (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random()).slice(0, 64);
    button.disabled = true;
    try {
      const data = await api('POST', 'tickets/' + reference + '/reply', { text, client_id: clientId });
      box.value = '';
      agentTyping(false);
      addMessage(data.message);
    } catch (e) {
      toast(e.message, true);
    } finally {
      button.disabled = false;
      box.focus();
    }
  }

  let reading = false;
  async function markRead() {
    const d = state.detail;
    if (!d || reading || document.hidden) return;
    const customer = [...document.querySelectorAll('#ac-log .ac-msg[data-sender=customer][data-id]')];
    if (!customer.length) return;
    const upTo = Number(customer[customer.length - 1].dataset.id);
    if (d.readUpTo && d.readUpTo >= upTo) return;
    reading = true;
    try {
      await api('POST', 'tickets/' + d.ticket.reference + '/read', { up_to: upTo });
      d.readUpTo = upTo;
    } catch (e) { /* not critical */ } finally { reading = false; }
  }
  document.addEventListener('visibilitychange', () => { if (!document.hidden) markRead(); });

  // ------------------------------------------------------------------ dashboard
  // Figures come from GET /api/metrics (SQL aggregates; definitions in docs/agent-console.md,
  // "Figures"). null means "no data" and is shown as "–", never as 0.

  const csatText = (c) => (c.average == null ? '–' : c.average.toFixed(2) + ' / 5');

  // the targets the team quotes (sent by the server with the figures: m.targets)
  const TARGET_TEXT = {
    resolution: (t) => 'under ' + Math.round(t.value / 60) + ' min',
    csat: (t) => 'above ' + t.value + ' / 5',
    self_service: (t) => 'at least ' + pct(t.value),
  };

  function targetLine(name, t) {
    if (!t) return null;
    const state = t.met == null ? 'none' : (t.met ? 'met' : 'missed');
    const verdict = t.met == null ? 'no data yet' : (t.met ? 'met ✓' : 'not met ✗');
    return h('small', { class: 'ac-target', 'data-target': name, 'data-met': state },
      'Target ' + TARGET_TEXT[name](t) + ': ' + verdict);
  }

  function figureTable(label, keyName, rows, columns) {
    return h('div', { class: 'ac-table-wrap' }, h('table', { class: 'ac-table', 'aria-label': label }, [
      h('thead', {}, h('tr', {}, [h('th', { scope: 'col' }, keyName)].concat(
        columns.map(([title]) => h('th', { scope: 'col' }, title))))),
      h('tbody', {}, rows.map(([key, b]) => h('tr', { ['data-' + keyName.toLowerCase()]: key }, [
        h('th', { scope: 'row' }, key)].concat(columns.map(([, id, show]) => h('td', { 'data-figure': id }, show(b))))))),
    ]));
  }

  async function renderDashboard(days) {
    state.detail = null;
    days = days || 30;
    main().replaceChildren(h('p', { class: 'ac-empty' }, 'Loading figures…'));
    let m;
    try { m = await api('GET', 'metrics?days=' + days); } catch (e) {
      main().replaceChildren(h('p', { class: 'ac-error-text' }, e.message)); return;
    }
    const range = h('select', { 'aria-label': 'Period', onchange: (e) => renderDashboard(Number(e.target.value)) },
      [7, 30, 90].map((n) => h('option', { value: n, selected: n === days }, 'Last ' + n + ' days')));
    const targets = m.targets || {};
    const kpi = (label, value, id, target) => h('div', { class: 'ac-kpi', 'data-kpi': id }, [
      h('b', {}, value), h('span', {}, label), target ? targetLine(target, targets[target]) : null]);
    const csat = m.csat;
    const categories = Object.entries(m.by_category || {});
    const daysList = Object.entries(m.by_day || {});
    const count = (n) => (n == null ? '–' : String(n));
    main().replaceChildren(h('section', { id: 'ac-dashboard' }, [
      h('div', { class: 'ac-filters' }, [range]),
      h('div', { class: 'ac-kpis' }, [
        kpi('Avg resolution time (' + m.resolution.count + ' resolved)', duration(m.resolution.average_seconds), 'resolution-avg', 'resolution'),
        kpi('Median resolution time', duration(m.resolution.median_seconds), 'resolution-median'),
        kpi('Avg first response (' + m.first_response.count + ')', duration(m.first_response.average_seconds), 'first-response-avg'),
        kpi('Median first response', duration(m.first_response.median_seconds), 'first-response-median'),
        kpi('CSAT (' + csat.count + ' ratings)', csatText(csat), 'csat', 'csat'),
        kpi('Self-service rate (' + m.self_served + ' of ' + m.conversations + ')', pct(m.self_service_rate), 'self-service', 'self_service'),
        kpi('Handoff rate (' + m.handoffs + ')', pct(m.handoff_rate), 'handoff'),
        kpi('Questions (chat sessions)', String(m.conversations), 'conversations'),
      ]),
      h('section', { class: 'ac-card' }, [h('h3', {}, 'By category'),
        categories.length ? figureTable('Figures by category', 'Category', categories, [
          ['Tickets', 'tickets', (b) => count(b.tickets)],
          ['Handoffs', 'handoffs', (b) => count(b.handoffs)],
          ['Avg resolution', 'resolution-avg', (b) => duration(b.resolution.average_seconds)],
          ['Median resolution', 'resolution-median', (b) => duration(b.resolution.median_seconds)],
          ['Avg first response', 'first-response-avg', (b) => duration(b.first_response.average_seconds)],
          ['CSAT', 'csat', (b) => (b.csat.average == null ? '–' : b.csat.average.toFixed(2) + ' (' + b.csat.count + ')')],
        ]) : h('p', { class: 'ac-small' }, 'No tickets yet.')]),
      h('section', { class: 'ac-card' }, [h('h3', {}, 'By day (UTC)'),
        daysList.length ? figureTable('Figures by day', 'Day', daysList, [
          ['Questions', 'conversations', (b) => count(b.conversations)],
          ['Self-service', 'self-service', (b) => pct(b.self_service_rate)],
          ['Handoffs', 'handoffs', (b) => count(b.handoffs)],
          ['Avg resolution', 'resolution-avg', (b) => duration(b.resolution.average_seconds)],
          ['CSAT', 'csat', (b) => (b.csat.average == null ? '–' : b.csat.average.toFixed(2) + ' (' + b.csat.count + ')')],
        ]) : h('p', { class: 'ac-small' }, 'No data yet.')]),
      h('section', { class: 'ac-card' }, [h('h3', {}, 'Rating distribution'),
        barChart([1, 2, 3, 4, 5].map((n) => [n + '★', csat.distribution[String(n)] || 0]), (v) => String(v))]),
      h('section', { class: 'ac-card' }, [h('h3', {}, 'Resolution time by category (average)'),
        categories.length ? barChart(categories.map(([c, b]) => [c, b.resolution.average_seconds]), duration)
          : h('p', { class: 'ac-small' }, 'No tickets yet.')]),
      h('section', { class: 'ac-card' }, [h('h3', {}, 'CSAT by category'),
        categories.length ? barChart(categories.map(([c, b]) => [c, b.csat.average]), (v) => (v == null ? '–' : v.toFixed(2)))
          : h('p', { class: 'ac-small' }, 'No ratings yet.')]),
      h('section', { class: 'ac-card' }, [h('h3', {}, 'Questions and handoffs by day'),
        daysList.length ? dayChart(daysList) : h('p', { class: 'ac-small' }, 'No conversations yet.')]),
      h('section', { class: 'ac-card' }, [h('h3', {}, 'Self-service rate by day'),
        daysList.length ? lineChart(daysList.map(([d, b]) => [d.slice(5), b.self_service_rate])) : null]),
    ]));
  }

  // rows: [label, value or null]; null draws no bar and the label "–"
  function barChart(rows, format) {
    const width = 340;
    const rowH = 26;
    const max = Math.max(1e-9, ...rows.map(([, v]) => v || 0));
    const svg = s('svg', { class: 'ac-chart', viewBox: '0 0 ' + width + ' ' + (rows.length * rowH + 4), role: 'img' });
    rows.forEach(([label, value], i) => {
      const y = i * rowH + 2;
      const w = value == null ? 0 : Math.max(1, (value / max) * (width - 150));
      svg.appendChild(s('text', { x: 0, y: y + 15 }, String(label)));
      if (value != null) svg.appendChild(s('rect', { class: 'ac-bar-a', x: 90, y: y + 3, width: w, height: rowH - 10, rx: 3 }));
      svg.appendChild(s('text', { x: 95 + w, y: y + 15 }, value == null ? '–' : format(value)));
    });
    svg.setAttribute('aria-label', rows.map(([l, v]) => l + ': ' + (v == null ? '–' : format(v))).join(', '));
    return svg;
  }

  function dayChart(daysList) {
    const width = 340; const height = 140; const pad = 20;
    const max = Math.max(1, ...daysList.map(([, b]) => b.conversations || 0));
    const slot = (width - pad) / daysList.length;
    const svg = s('svg', { class: 'ac-chart', viewBox: '0 0 ' + width + ' ' + (height + 18), role: 'img',
      'aria-label': daysList.map(([d, b]) => d + ': ' + b.conversations + ' questions, ' + b.handoffs + ' handed off').join('; ') });
    daysList.forEach(([day, b], i) => {
      const x = pad + i * slot;
      const w = Math.max(2, slot / 2 - 2);
      const hc = ((b.conversations || 0) / max) * height;
      const hh = ((b.handoffs || 0) / max) * height;
      svg.appendChild(s('rect', { class: 'ac-bar-a', x, y: height - hc, width: w, height: hc }));
      svg.appendChild(s('rect', { class: 'ac-bar-b', x: x + w + 1, y: height - hh, width: w, height: hh }));
      if (daysList.length <= 10 || i % Math.ceil(daysList.length / 8) === 0) {
        svg.appendChild(s('text', { x, y: height + 14 }, day.slice(5)));
      }
    });
    svg.appendChild(s('text', { x: 0, y: 10 }, String(max)));
    return h('div', {}, [svg, h('p', { class: 'ac-small' }, 'Blue: questions · orange: handed to a person')]);
  }

  function lineChart(points) {
    const width = 340; const height = 100;
    const usable = points.filter(([, v]) => v != null);
    if (!usable.length) return h('p', { class: 'ac-small' }, '–');
    const step = usable.length > 1 ? (width - 30) / (usable.length - 1) : 0;
    const coords = usable.map(([, v], i) => [20 + i * step, height - v * (height - 10)]);
    const svg = s('svg', { class: 'ac-chart', viewBox: '0 0 ' + width + ' ' + (height + 18), role: 'img',
      'aria-label': usable.map(([d, v]) => d + ': ' + pct(v)).join(', ') });
    svg.appendChild(s('polyline', { class: 'ac-line', points: coords.map((c) => c.join(',')).join(' ') }));
    coords.forEach(([x, y], i) => {
      svg.appendChild(s('circle', { cx: x, cy: y, r: 3, class: 'ac-bar-a' }));
      if (usable.length <= 10) svg.appendChild(s('text', { x: x - 12, y: height + 14 }, usable[i][0]));
    });
    svg.appendChild(s('text', { x: 0, y: 10 }, '100%'));
    return svg;
  }

  // waiting times in the inbox age while it is open
  setInterval(() => { const list = $('#ac-inbox'); if (list && !document.hidden) drawInbox(list); }, 30000);

  start();
}());
