/*! Northwind support widget: in-app chat over the widget channel (docs/widget-protocol.md).
 * Plain JS (ES2019), no dependencies. Embedding: docs/widget.md.
 * Every sender's text is rendered with textContent, never as HTML; rich text (FAQ articles)
 * arrives as JSON "blocks" and is drawn with DOM APIs and text nodes too. */
(function (global) {
  'use strict';
  if (global.SupportWidget) return;

  const doc = global.document;
  const SCRIPT = doc.currentScript;
  const PREFIX = '/webhooks/widget';
  const STORE = 'supportwidget:v1:';
  const BACKOFF_MAX = 30000;
  const PING_EVERY = 20000;
  const DEAD_AFTER = 50000;
  const WELCOME_TIMEOUT = 15000;
  const SVG = 'http://www.w3.org/2000/svg';
  const ICONS = {
    chat: 'M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z',
    close: 'M6 6l12 12M18 6L6 18',
    send: 'M3 20l18-8L3 4v6l12 2-12 2z',
  };
  const RANK = { pending: 0, failed: 0, received: 1, processing: 1, sent: 1, delivered: 2, read: 3 };
  const STATUS_KEY = {
    pending: 'sending', failed: 'not_sent', received: 'sent', processing: 'sent', delivered: 'delivered', read: 'read',
  };
  /* Every string the widget shows, by language (docs/widget.md, "Language"). {name} is filled in.
   * The language: init's `locale`, else the app context's `locale`, else the token's `locale`
   * claim, else English; "de-DE" is German, a language not listed here is English. */
  const STRINGS = {
    en: {
      title: 'Support', bot_name: 'Assistant', you: 'You', agent: 'Support agent',
      sending: 'Sending', not_sent: 'Not sent', sent: 'Sent', delivered: 'Delivered', read: 'Read',
      connecting: 'Connecting\u2026', online: 'Online',
      offline: 'Offline \u2013 messages are sent when you are back online',
      unavailable: 'Chat unavailable', busy: 'Chat is open in too many places. Close it elsewhere and try again.',
      auth: 'Please sign in again to chat', try_again: 'Try again',
      open_chat: 'Open support chat', unread_one: '{n} unread message', unread_many: '{n} unread messages',
      close_chat: 'Close chat', end_chat: 'End chat', end_chat_q: 'End chat?', end_this_chat: 'End this chat?',
      cancel: 'Cancel', messages: 'Messages', show_earlier: 'Show earlier messages',
      suggested_replies: 'Suggested replies', help_articles: 'Help articles that may answer your question',
      type_message: 'Type your message', send_message: 'Send message', end_call: 'End call',
      call_bar: 'Call-back call', call_in_progress: 'Your call-back {ref} is in progress.',
      calling: 'We are calling you for your call-back {ref}.', call_not_ended: 'The call could not be ended.',
      back_to_chat: '\u2190 Back to chat', help_article: 'Help article', read_more: 'Read more', table: 'Table',
      loading: 'Loading\u2026', article_failed: 'This article could not be loaded. Please try again.',
      typing: '{who} is typing', too_fast: 'You are sending messages quickly. Waiting a moment before sending more.',
      too_long: 'That message is too long to send. Please shorten it.', not_sent_generic: 'That message could not be sent.',
      server_error: 'Something went wrong on our side. Please try again.',
      end_failed: 'The chat could not be ended. Please try again.',
      rate_chat: 'Rate this chat', how_was: 'How was your chat?', how_was_with: 'How was your chat with {agent}?',
      comment: 'Comment (optional)', rate_offline: 'You are offline. Please rate again when the chat is back.',
      send_rating: 'Send rating', star_one: '{n} star', star_many: '{n} stars',
      rating_not_saved: 'The rating could not be saved.', thanks_feedback: 'Thank you for your feedback.',
    },
    de: {
      title: 'Kundenservice', bot_name: 'Assistent', you: 'Sie', agent: 'Support-Mitarbeiter',
      sending: 'Wird gesendet', not_sent: 'Nicht gesendet', sent: 'Gesendet', delivered: 'Zugestellt', read: 'Gelesen',
      connecting: 'Verbinden\u2026', online: 'Online',
      offline: 'Offline \u2013 Nachrichten werden gesendet, sobald Sie wieder online sind',
      unavailable: 'Chat nicht verfügbar',
      busy: 'Der Chat ist an zu vielen Stellen geöffnet. Schließen Sie ihn dort und versuchen Sie es erneut.',
      auth: 'Bitte melden Sie sich erneut an, um zu chatten', try_again: 'Erneut versuchen',
      open_chat: 'Support-Chat öffnen', unread_one: '{n} ungelesene Nachricht', unread_many: '{n} ungelesene Nachrichten',
      close_chat: 'Chat schließen', end_chat: 'Chat beenden', end_chat_q: 'Chat beenden?',
      end_this_chat: 'Diesen Chat beenden?', cancel: 'Abbrechen', messages: 'Nachrichten',
      show_earlier: 'Frühere Nachrichten anzeigen', suggested_replies: 'Antwortvorschläge',
      help_articles: 'Hilfeartikel, die Ihre Frage beantworten könnten',
      type_message: 'Nachricht eingeben', send_message: 'Nachricht senden', end_call: 'Anruf beenden',
      call_bar: 'Rückruf', call_in_progress: 'Ihr Rückruf {ref} läuft.',
      calling: 'Wir rufen Sie für Ihren Rückruf {ref} an.', call_not_ended: 'Der Anruf konnte nicht beendet werden.',
      back_to_chat: '\u2190 Zurück zum Chat', help_article: 'Hilfeartikel', read_more: 'Weiterlesen', table: 'Tabelle',
      loading: 'Wird geladen\u2026',
      article_failed: 'Dieser Artikel konnte nicht geladen werden. Bitte versuchen Sie es erneut.',
      typing: '{who} schreibt', too_fast: 'Sie senden sehr schnell. Einen Moment, bevor weitere Nachrichten gesendet werden.',
      too_long: 'Diese Nachricht ist zu lang. Bitte kürzen Sie sie.',
      not_sent_generic: 'Diese Nachricht konnte nicht gesendet werden.',
      server_error: 'Bei uns ist etwas schiefgelaufen. Bitte versuchen Sie es erneut.',
      end_failed: 'Der Chat konnte nicht beendet werden. Bitte versuchen Sie es erneut.',
      rate_chat: 'Diesen Chat bewerten', how_was: 'Wie war Ihr Chat?', how_was_with: 'Wie war Ihr Chat mit {agent}?',
      comment: 'Kommentar (optional)', rate_offline: 'Sie sind offline. Bitte bewerten Sie erneut, wenn der Chat wieder da ist.',
      send_rating: 'Bewertung senden', star_one: '{n} Stern', star_many: '{n} Sterne',
      rating_not_saved: 'Die Bewertung konnte nicht gespeichert werden.', thanks_feedback: 'Danke für Ihre Rückmeldung.',
    },
    fr: {
      title: 'Assistance', bot_name: 'Assistant', you: 'Vous', agent: 'Conseiller',
      sending: 'Envoi\u2026', not_sent: 'Non envoyé', sent: 'Envoyé', delivered: 'Distribué', read: 'Lu',
      connecting: 'Connexion\u2026', online: 'En ligne',
      offline: 'Hors ligne \u2013 les messages partiront dès votre retour en ligne',
      unavailable: 'Chat indisponible',
      busy: 'Le chat est ouvert à trop d\u2019endroits. Fermez-le ailleurs et réessayez.',
      auth: 'Veuillez vous reconnecter pour discuter', try_again: 'Réessayer',
      open_chat: 'Ouvrir le chat d\u2019assistance', unread_one: '{n} message non lu', unread_many: '{n} messages non lus',
      close_chat: 'Fermer le chat', end_chat: 'Terminer le chat', end_chat_q: 'Terminer le chat ?',
      end_this_chat: 'Terminer ce chat ?', cancel: 'Annuler', messages: 'Messages',
      show_earlier: 'Afficher les messages précédents', suggested_replies: 'Réponses suggérées',
      help_articles: 'Articles d\u2019aide qui pourraient répondre à votre question',
      type_message: 'Saisissez votre message', send_message: 'Envoyer le message', end_call: 'Raccrocher',
      call_bar: 'Rappel téléphonique', call_in_progress: 'Votre rappel {ref} est en cours.',
      calling: 'Nous vous appelons pour votre rappel {ref}.', call_not_ended: 'L\u2019appel n\u2019a pas pu être terminé.',
      back_to_chat: '\u2190 Retour au chat', help_article: 'Article d\u2019aide', read_more: 'Lire la suite',
      table: 'Tableau', loading: 'Chargement\u2026',
      article_failed: 'Cet article n\u2019a pas pu être chargé. Veuillez réessayer.',
      typing: '{who} écrit', too_fast: 'Vous envoyez des messages très vite. Patientez un instant avant d\u2019en envoyer d\u2019autres.',
      too_long: 'Ce message est trop long. Veuillez le raccourcir.', not_sent_generic: 'Ce message n\u2019a pas pu être envoyé.',
      server_error: 'Un problème est survenu de notre côté. Veuillez réessayer.',
      end_failed: 'Le chat n\u2019a pas pu être terminé. Veuillez réessayer.',
      rate_chat: 'Évaluer ce chat', how_was: 'Comment s\u2019est passé votre chat ?',
      how_was_with: 'Comment s\u2019est passé votre chat avec {agent} ?',
      comment: 'Commentaire (facultatif)', rate_offline: 'Vous êtes hors ligne. Veuillez réévaluer quand le chat sera de retour.',
      send_rating: 'Envoyer l\u2019évaluation', star_one: '{n} étoile', star_many: '{n} étoiles',
      rating_not_saved: 'L\u2019évaluation n\u2019a pas pu être enregistrée.', thanks_feedback: 'Merci pour votre avis.',
    },
  };

  /** The widget's language for a locale tag ("de-DE" -> "de"), or null when it has none. */
  function langOf(value) {
    const m = /^\s*([A-Za-z]{2,3})(?:[-_][A-Za-z0-9]{1,8})*\s*$/.exec(typeof value === 'string' ? value : '');
    return m && STRINGS[m[1].toLowerCase()] ? m[1].toLowerCase() : (m ? 'en' : null);
  }

  function defaultServer() {
    try {
      const url = new URL(SCRIPT.src, global.location.href);
      return url.origin + url.pathname.replace(/\/webhooks\/widget\/widget\.js$/, '');
    } catch (e) {
      return '';
    }
  }

  /** Create an element; strings in `kids` become text nodes (never HTML). */
  function h(tag, attrs, kids) {
    const node = doc.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === false || value == null) continue;
      if (key === 'class') node.className = value;
      else if (key === 'text') node.textContent = value;
      else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const kid of [].concat(kids || [])) {
      if (kid != null) node.appendChild(typeof kid === 'string' ? doc.createTextNode(kid) : kid);
    }
    return node;
  }

  function icon(name) {
    const svg = doc.createElementNS(SVG, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('focusable', 'false');
    svg.setAttribute('class', 'sw-icon');
    const path = doc.createElementNS(SVG, 'path');
    path.setAttribute('d', ICONS[name]);
    svg.appendChild(path);
    return svg;
  }

  // ------------------------------------------------------------------ rich text (FAQ articles)
  // The server sends Markdown as "blocks" (bot/richtext.py, docs/widget-protocol.md); they are
  // drawn with DOM APIs, every text through a text node. Links open only http(s) and mailto.

  const RICH_DEPTH = 12;
  const ALIGN = ['left', 'center', 'right'];

  /** The link target if it may be opened (http/https with a host, mailto), else null. */
  function safeHref(href) {
    if (typeof href !== 'string' || /[\s\u0000-\u001f]/.test(href)) return null;
    try {
      const url = new URL(href);
      if (url.protocol === 'mailto:') return url.pathname ? url.href : null;
      return (url.protocol === 'https:' || url.protocol === 'http:') && url.hostname ? url.href : null;
    } catch (e) {
      return null; // relative or malformed: shown as text
    }
  }

  function richSpans(list, depth) {
    const out = [];
    for (const s of Array.isArray(list) ? list : []) {
      if (!s || typeof s !== 'object') continue;
      const kids = () => (depth < RICH_DEPTH ? richSpans(s.content, depth + 1) : []);
      if (s.type === 'text') out.push(String(s.text == null ? '' : s.text));
      else if (s.type === 'break') out.push(h('br'));
      else if (s.type === 'code') out.push(h('code', {}, String(s.text == null ? '' : s.text)));
      else if (s.type === 'strong' || s.type === 'em') out.push(h(s.type, {}, kids()));
      else if (s.type === 'link') {
        const href = safeHref(s.href);
        out.push(href ? h('a', { href, target: '_blank', rel: 'noopener noreferrer' }, kids()) : h('span', {}, kids()));
      }
    }
    return out;
  }

  function richTable(b) {
    const align = Array.isArray(b.align) ? b.align : [];
    const cell = (tag, content, i) => h(tag, {
      class: ALIGN.includes(align[i]) ? 'sw-align-' + align[i] : null, scope: tag === 'th' ? 'col' : null,
    }, richSpans(content, 0));
    const rows = (list, tag) => (Array.isArray(list) ? list : []).map((row) =>
      h('tr', {}, (Array.isArray(row) ? row : []).map((c, i) => cell(tag, c, i))));
    const head = Array.isArray(b.header) && b.header.length ? h('thead', {}, rows([b.header], 'th')) : null;
    // A wide table scrolls sideways inside its own box; the chat panel never does.
    return h('div', { class: 'sw-table', role: 'region', 'aria-label': 'Table', tabindex: '0' },
      h('table', {}, [head, h('tbody', {}, rows(b.rows, 'td'))]));
  }

  /** DOM nodes for blocks; a heading of level n becomes h(n + base - 1), at most h6. */
  function richBlocks(list, base, depth) {
    const out = [];
    if ((depth || 0) > RICH_DEPTH) return out;
    for (const b of Array.isArray(list) ? list : []) {
      if (!b || typeof b !== 'object') continue;
      const inner = (blocks) => richBlocks(blocks, base, (depth || 0) + 1);
      if (b.type === 'paragraph') out.push(h('p', {}, richSpans(b.content, 0)));
      else if (b.type === 'heading') {
        const level = Math.min(6, Math.max(1, Math.floor(Number(b.level)) || 1) + base - 1);
        out.push(h('h' + level, { class: 'sw-rich-h' }, richSpans(b.content, 0)));
      } else if (b.type === 'list') {
        const start = Math.floor(Number(b.start));
        out.push(h(b.ordered ? 'ol' : 'ul', { start: b.ordered && start > 1 ? start : null },
          (Array.isArray(b.items) ? b.items : []).map((item) => h('li', {}, inner(item)))));
      } else if (b.type === 'quote') out.push(h('blockquote', {}, inner(b.blocks)));
      else if (b.type === 'code') out.push(h('pre', {}, h('code', {}, String(b.text == null ? '' : b.text))));
      else if (b.type === 'rule') out.push(h('hr'));
      else if (b.type === 'table') out.push(richTable(b));
    }
    return out;
  }

  function uuid() {
    if (global.crypto && global.crypto.randomUUID) return global.crypto.randomUUID();
    const bytes = new Uint8Array(16);
    global.crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  /** The (unverified) claims of a JWT: only used for the storage key and the expiry. */
  function claims(token) {
    try {
      const part = String(token).split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      const json = decodeURIComponent(Array.from(atob(part), (c) =>
        '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join(''));
      return JSON.parse(json) || {};
    } catch (e) {
      return {};
    }
  }

  function load(key, fallback) {
    try {
      const raw = global.localStorage.getItem(STORE + key);
      return raw ? JSON.parse(raw) : fallback;
    } catch (e) {
      return fallback;
    }
  }

  function save(key, value) {
    try {
      if (value == null || (Array.isArray(value) && !value.length)) global.localStorage.removeItem(STORE + key);
      else global.localStorage.setItem(STORE + key, JSON.stringify(value));
    } catch (e) { /* storage full or disabled: the queue lives in memory only */ }
  }

  class Widget {
    constructor(opts) {
      this.opts = Object.assign({ hiddenScreens: ['checkout'] }, opts);
      this.server = String(this.opts.server || defaultServer()).replace(/\/+$/, '');
      this.context = Object.assign({}, this.opts.context || {});
      this.labels = [];
      this.lang = this.chooseLang(this.opts.token);
      if (this.opts.screen) this.context.screen = String(this.opts.screen);
      this.hidden = new Set((this.opts.hiddenScreens || []).map(String));
      this.token = null;
      this.user = null;
      this.messages = new Map(); // key ("id:42" or "c:<client_id>") -> message
      this.outbox = [];
      this.limits = { max_message_chars: 2000, typing_interval: 2 };
      this.session = null;
      this.lastId = null;
      this.readSent = 0;
      this.readLocal = 0;
      this.attempt = 0;
      this.state = 'connecting';
      this.hasMore = null;
      this.isOpen = false;
      this.destroyed = false;
      this.stopped = false;
      this.ws = null;
      this.welcomed = false;
      this.timers = {};
      this.seq = 0;
      this.pendingDelivered = new Set();
      this.onOnline = () => { if (!this.ws && !this.stopped) this.connect(); };
      this.onVisible = () => this.markRead();
      this.build();
      global.addEventListener('online', this.onOnline);
      doc.addEventListener('visibilitychange', this.onVisible);
      this.start(this.opts.token);
    }

    // ------------------------------------------------------------------ token and user

    async start(token) {
      if (!token) token = await this.fetchToken();
      if (this.destroyed) return;
      if (!token) return this.setState('auth');
      this.useToken(token);
      this.connect();
    }

    async fetchToken() {
      if (typeof this.opts.getToken !== 'function') return null;
      if (!this.refreshing) {
        this.refreshing = Promise.resolve()
          .then(() => this.opts.getToken())
          .then((t) => (t && typeof t === 'object' ? t.token : t) || null, () => null)
          .finally(() => { this.refreshing = null; });
      }
      return this.refreshing;
    }

    /** Adopt a token; a different user resets the conversation shown. */
    useToken(token) {
      const sub = claims(token).sub || 'anonymous';
      this.token = token;
      this.setLang(this.chooseLang(token));
      this.exp = Number(claims(token).exp) || 0;
      if (this.sub === sub) return false;
      if (this.sub) {
        this.reset(); // another user: drop what was shown, reconnect as them
        this.timers.switch = setTimeout(() => this.connect(), 0);
      }
      this.sub = sub;
      this.outbox = load('outbox:' + sub, []);
      for (const entry of this.outbox) this.upsert(this.localMessage(entry));
      return true;
    }

    reset() {
      this.closeSocket();
      this.messages.clear();
      this.log.textContent = '';
      this.outbox = [];
      this.lastId = null;
      this.readSent = this.readLocal = 0;
      this.hasMore = null;
      this.renderQuick();
      this.renderBadge();
    }

    setToken(token) {
      if (!token || this.destroyed) return;
      const switched = this.useToken(token);
      if (switched || !this.ws) {
        this.stopped = false;
        this.attempt = 0;
        if (!this.ws) this.connect();
      } else if (this.welcomed) {
        this.send({ type: 'auth', token });
      }
    }

    // ------------------------------------------------------------------ connection

    connect() {
      if (this.destroyed || this.ws || !this.token) return;
      clearTimeout(this.timers.retry);
      if (this.exp && this.exp * 1000 < Date.now() + 5000 && this.opts.getToken && !this.triedFresh) {
        this.triedFresh = true;
        this.fetchToken().then((t) => { if (t) this.useToken(t); this.connect(); });
        return;
      }
      this.triedFresh = false;
      this.setState(this.state === 'offline' ? 'offline' : 'connecting');
      let ws;
      try {
        ws = new WebSocket(this.server.replace(/^http/, 'ws') + PREFIX + '/ws');
      } catch (e) {
        return this.retry();
      }
      this.ws = ws;
      this.welcomed = false;
      clearTimeout(this.timers.welcome);
      this.timers.welcome = setTimeout(() => { // no welcome: a half-open or stuck connection
        if (ws === this.ws && !this.welcomed) this.closed(1006);
      }, WELCOME_TIMEOUT);
      ws.onopen = () => {
        this.lastFrame = Date.now();
        ws.send(JSON.stringify({ type: 'hello', token: this.token, after: this.lastId, context: this.context }));
      };
      ws.onmessage = (event) => {
        if (ws !== this.ws) return;
        this.lastFrame = Date.now();
        let frame;
        try {
          frame = JSON.parse(event.data);
        } catch (e) {
          return;
        }
        if (frame && typeof frame.type === 'string') this.handle(frame);
      };
      ws.onclose = (event) => { if (ws === this.ws) this.closed(event.code); };
      ws.onerror = () => {};
    }

    closeSocket() {
      clearInterval(this.timers.ping);
      clearTimeout(this.timers.welcome);
      clearTimeout(this.timers.retry);
      const ws = this.ws;
      this.ws = null;
      this.welcomed = false;
      if (ws) {
        ws.onclose = ws.onmessage = ws.onopen = null;
        try { ws.close(1000); } catch (e) { /* already closed */ }
      }
    }

    async closed(code) {
      this.closeSocket();
      this.showTyping(null);
      if (this.destroyed) return;
      if (code === 4003) return this.stop('unavailable');
      if (code === 4008) return this.stop('busy');
      if (code === 4001 || code === 4002) {
        const token = await this.fetchToken();
        if (this.destroyed) return;
        if (!token) return this.stop('auth');
        this.useToken(token);
      }
      this.retry();
    }

    stop(state) {
      this.stopped = true;
      this.setState(state);
    }

    retry() {
      if (this.destroyed || this.stopped) return;
      this.setState(this.attempt > 0 || !global.navigator.onLine ? 'offline' : 'connecting');
      const base = Math.min(BACKOFF_MAX, 1000 * 2 ** this.attempt);
      this.attempt += 1;
      clearTimeout(this.timers.retry);
      this.timers.retry = setTimeout(() => this.connect(), base / 2 + Math.random() * base / 2);
    }

    send(frame) {
      if (!this.ws || !this.welcomed || this.ws.readyState !== 1) return false;
      this.ws.send(JSON.stringify(frame));
      return true;
    }

    // ------------------------------------------------------------------ frames

    handle(frame) {
      switch (frame.type) {
        case 'welcome': return this.welcome(frame);
        case 'message': return frame.message && this.upsert(frame.message, true);
        case 'ack': return this.ack(frame);
        case 'receipt': return this.receipt(frame);
        case 'typing': return this.showTyping(frame.state === 'start' ? frame : null);
        case 'history':
          if (Array.isArray(frame.messages)) frame.messages.forEach((m) => this.upsert(m));
          this.hasMore = !!frame.has_more;
          this.moreBtn.disabled = false;
          return this.renderMore();
        case 'rating_request': return this.askRating(frame.session, frame.agent);
        case 'rated': return this.rated(frame);
        case 'auth_ok':
          if (frame.expires_at) this.exp = Number(frame.expires_at);
          return undefined;
        case 'token_expiring': return this.refreshAuth();
        case 'session_ended': return this.sessionEnded(frame);
        case 'call': return this.callState(frame);
        case 'error': return this.error(frame);
        default: return undefined;
      }
    }

    welcome(frame) {
      clearTimeout(this.timers.welcome);
      this.welcomed = true;
      this.attempt = 0;
      this.user = frame.user || null;
      Object.assign(this.limits, frame.limits || {});
      if (frame.session != null) this.session = frame.session;
      if (frame.expires_at) this.exp = Number(frame.expires_at);
      // Older messages exist before the replayed ones (only trusted on a fresh load).
      if (typeof frame.has_more === 'boolean' && this.hasMore === null) this.hasMore = frame.has_more;
      this.input.maxLength = this.limits.max_message_chars;
      this.callState(null); // an ongoing call-back call is sent again right after welcome
      this.setState('online');
      clearInterval(this.timers.ping);
      this.timers.ping = setInterval(() => {
        if (Date.now() - this.lastFrame > DEAD_AFTER && this.ws) {
          this.closed(1006); // no pong: the connection is dead (e.g. the phone went offline)
        } else {
          this.send({ type: 'ping' });
        }
      }, PING_EVERY);
      for (const entry of this.outbox) this.transmit(entry);
    }

    /** Answer token_expiring: get a fresh token from the host app and re-auth. At most one
     * refresh per 10 s (a token shorter-lived than the server's warning would loop). */
    async refreshAuth() {
      const wait = (this.refreshedAt || 0) + 10000 - Date.now();
      if (wait > 0) {
        clearTimeout(this.timers.refresh);
        this.timers.refresh = setTimeout(() => this.refreshAuth(), wait);
        return;
      }
      this.refreshedAt = Date.now();
      const token = await this.fetchToken();
      if (token && !this.destroyed) {
        this.useToken(token);
        this.send({ type: 'auth', token });
      }
    }

    ack(frame) {
      const entry = this.outbox.find((e) => e.client_id === frame.client_id);
      if (frame.message) this.upsert(Object.assign({}, frame.message, { client_id: frame.client_id }));
      if (entry) this.dropFromOutbox(entry.client_id);
    }

    receipt(frame) {
      const ids = new Set((frame.ids || []).map(Number));
      for (const msg of this.messages.values()) {
        if (msg.id != null && ids.has(Number(msg.id))) this.setStatus(msg, frame.status);
      }
    }

    error(frame) {
      const entry = frame.client_id && this.outbox.find((e) => e.client_id === frame.client_id);
      if (frame.code === 'invalid_token' || frame.code === 'token_expired') {
        if (this.ws) this.closed(4001);
      } else if (this.pendingRating && ['bad_request', 'not_ratable', 'already_rated'].includes(frame.code) && !frame.client_id) {
        const pending = this.pendingRating;
        this.pendingRating = null;
        pending.box.textContent = '';
        pending.box.appendChild(h('p', {}, String(frame.message || this.t('rating_not_saved'))));
      } else if (entry && frame.code === 'payload_not_offered') {
        // a stale quick reply (the bot has moved on): send the button's title as plain text
        delete entry.payload;
        save('outbox:' + this.sub, this.outbox);
        this.transmit(entry);
      } else if (entry && frame.code === 'not_stored') {
        // the server could not save it (its database was busy): still in the outbox, sent again
        const wait = Math.max(1, Number(frame.retry_after) || 2) * 1000;
        clearTimeout(this.timers.stored);
        this.timers.stored = setTimeout(() => this.outbox.forEach((e) => this.transmit(e)), wait);
      } else if (entry && frame.code === 'rate_limited') {
        const wait = Math.max(1, Number(frame.retry_after) || 5) * 1000;
        this.notice(this.t('too_fast'));
        clearTimeout(this.timers.rate);
        this.timers.rate = setTimeout(() => this.outbox.forEach((e) => this.transmit(e)), wait);
      } else if (entry && (frame.code === 'too_large' || frame.code === 'bad_request')) {
        this.dropFromOutbox(entry.client_id);
        const msg = this.messages.get('c:' + entry.client_id);
        if (msg) this.setStatus(msg, 'failed', true);
        this.notice(frame.code === 'too_large'
          ? this.t('too_long')
          : this.t('not_sent_generic'));
      } else if (frame.code === 'server_error') {
        this.notice(this.t('server_error'));
      } else if (frame.code === 'no_call' || frame.code === 'call_not_started' || frame.code === 'end_call_failed') {
        if (frame.code === 'no_call') this.callState(null);
        else this.endCallBtn.disabled = false;
        this.notice(String(frame.message || this.t('call_not_ended')));
      }
    }

    // ------------------------------------------------------------------ call-backs

    /** A `call` frame (Twilio Voice call-back): show "End call" while the call is being
     * placed or going on; null or state "ended" hides it. */
    callState(frame) {
      const active = !!frame && frame.state !== 'ended';
      this.call = active ? frame : null;
      this.callBar.hidden = !active;
      if (!active) return;
      this.callText.textContent = frame.state === 'in_progress'
        ? this.t('call_in_progress', { ref: frame.callback })
        : this.t('calling', { ref: frame.callback });
      this.endCallBtn.disabled = !frame.can_end;
    }

    endCall() {
      if (!this.call) return;
      if (this.send({ type: 'end_call', callback: this.call.callback })) this.endCallBtn.disabled = true;
    }

    sessionEnded(frame) {
      const ended = this.session;
      this.session = frame.session != null ? frame.session : ended;
      this.showTyping(null);
      const agents = [...this.messages.values()]
        .filter((m) => m.sender === 'agent' && (ended == null || m.session === ended));
      if (agents.length) this.askRating(ended, agents[agents.length - 1].sender_name);
    }

    // ------------------------------------------------------------------ messages

    localMessage(entry) {
      return {
        client_id: entry.client_id, sender: 'customer', text: entry.text,
        status: 'pending', created_at: entry.created_at, local: true,
        ...(entry.refs ? { attachments: entry.refs } : {}),
      };
    }

    transmit(entry) {
      this.send({ type: 'message', client_id: entry.client_id, text: entry.text, ...(entry.payload ? { payload: entry.payload } : {}), ...(entry.attachments ? { attachments: entry.attachments } : {}) });
    }

    dropFromOutbox(clientId) {
      this.outbox = this.outbox.filter((e) => e.client_id !== clientId);
      save('outbox:' + this.sub, this.outbox);
    }

    sendText(text, payload) {
      text = String(text || '').trim();
      if (!text || !this.sub || this.state === 'unavailable') return false;
      if (text.length > this.limits.max_message_chars) {
        this.notice(this.t('too_long'));
        return false;
      }
      const entry = { client_id: uuid(), text, created_at: new Date().toISOString() };
      if (payload) entry.payload = payload;
      this.outbox.push(entry);
      save('outbox:' + this.sub, this.outbox);
      this.upsert(this.localMessage(entry));
      this.typing(false);
      this.transmit(entry);
      this.scrollDown(true);
      return true;
    }

    // ------------------------------------------------------------------ attachments
    // A photo or PDF goes over HTTP (POST /attachments, raw body, the customer's token), not
    // the socket; the message that carries it is then an ordinary message frame naming the
    // upload (docs/widget-protocol.md, "Attachments"). Files are fetched with the token and
    // shown from blob: URLs (an <img src> cannot send the Authorization header).

    attachControl() {
      this.fileInput = h('input', {
        type: 'file', class: 'sw-file', hidden: true, tabindex: '-1', 'aria-hidden': 'true',
        accept: 'image/jpeg,image/png,image/webp,image/gif,application/pdf',
        onchange: () => {
          const file = this.fileInput.files && this.fileInput.files[0];
          this.fileInput.value = '';
          if (file) this.sendFile(file);
        },
      });
      const svg = doc.createElementNS(SVG, 'svg');
      svg.setAttribute('viewBox', '0 0 24 24');
      svg.setAttribute('aria-hidden', 'true');
      svg.setAttribute('class', 'sw-icon');
      const path = doc.createElementNS(SVG, 'path');
      path.setAttribute('d', 'M16.5 6v11.5a4 4 0 0 1-8 0V5a2.5 2.5 0 0 1 5 0v10.5a1 1 0 0 1-2 0V6H10v9.5a2.5 2.5 0 0 0 5 0V5a4 4 0 0 0-8 0v12.5a5.5 5.5 0 0 0 11 0V6h-1.5z');
      svg.appendChild(path);
      this.attachBtn = h('button', {
        type: 'button', class: 'sw-icon-btn sw-attach', 'aria-label': 'Send a photo or PDF',
        title: 'Send a photo or PDF', onclick: () => this.fileInput.click(),
      }, svg);
      return h('span', { class: 'sw-attach-wrap' }, [this.fileInput, this.attachBtn]);
    }

    async sendFile(file) {
      if (!this.sub || this.state === 'unavailable') return false;
      const max = this.limits.attachment_max_bytes || 10485760;
      if (file.size > max) {
        this.notice('Files can be at most ' + Math.round(max / 1048576 * 10) / 10 + ' MB.');
        return false;
      }
      this.attachBtn.disabled = true;
      this.attachBtn.classList.add('sw-busy');
      try {
        const res = await fetch(this.server + PREFIX + '/attachments?name=' + encodeURIComponent(file.name || ''), {
          method: 'POST', body: file, credentials: 'omit',
          headers: { Authorization: 'Bearer ' + this.token, 'Content-Type': 'application/octet-stream' },
        });
        const body = await res.json().catch(() => ({}));
        if (!res.ok) {
          this.notice((body.error && body.error.message) || 'The file could not be sent.');
          return false;
        }
        const ref = body.attachment;
        const entry = { client_id: uuid(), text: '', attachments: [ref.id], refs: [ref], created_at: new Date().toISOString() };
        this.outbox.push(entry);
        save('outbox:' + this.sub, this.outbox);
        this.upsert(this.localMessage(entry));
        this.transmit(entry);
        this.scrollDown(true);
        return true;
      } catch (e) {
        this.notice('The file could not be sent. Check your connection and try again.');
        return false;
      } finally {
        this.attachBtn.disabled = false;
        this.attachBtn.classList.remove('sw-busy');
      }
    }

    /** The bytes of an attachment (or its thumbnail) as a blob: URL, fetched once. */
    async attachmentUrl(ref, thumb) {
      this.blobs = this.blobs || new Map();
      const key = ref.id + (thumb ? ':t' : '');
      if (!this.blobs.has(key)) {
        this.blobs.set(key, (async () => {
          const res = await fetch(this.server + PREFIX + '/attachments/' + encodeURIComponent(ref.id) + (thumb ? '/thumb' : ''), {
            headers: { Authorization: 'Bearer ' + this.token }, credentials: 'omit',
          });
          if (!res.ok) throw new Error('HTTP ' + res.status);
          return URL.createObjectURL(await res.blob());
        })());
        this.blobs.get(key).catch(() => this.blobs.delete(key));
      }
      return this.blobs.get(key);
    }

    async openAttachment(ref) {
      try {
        const url = await this.attachmentUrl(ref, false);
        const a = h('a', { href: url, target: '_blank', rel: 'noopener', download: ref.kind === 'pdf' ? ref.name : null });
        this.root.appendChild(a);
        a.click();
        a.remove();
      } catch (e) {
        this.notice('The file could not be opened.');
      }
    }

    attachmentList(msg) {
      const refs = Array.isArray(msg.attachments) ? msg.attachments.filter((r) => r && typeof r.id === 'string') : [];
      if (!refs.length) return null;
      return h('div', { class: 'sw-atts' }, refs.map((ref) => {
        const name = String(ref.name || 'file');
        if (ref.kind === 'image' && ref.thumb) {
          const img = h('img', { class: 'sw-att-thumb', alt: name, width: ref.thumb_width || null, height: ref.thumb_height || null });
          this.attachmentUrl(ref, true).then((url) => { img.src = url; }, () => img.classList.add('sw-att-missing'));
          return h('button', { type: 'button', class: 'sw-att sw-att-image', 'aria-label': 'Open ' + name, onclick: () => this.openAttachment(ref) }, img);
        }
        const size = ref.size > 1048576 ? (Math.round(ref.size / 104857.6) / 10) + ' MB' : Math.max(1, Math.round((ref.size || 0) / 1024)) + ' KB';
        return h('button', { type: 'button', class: 'sw-att sw-att-file', onclick: () => this.openAttachment(ref) }, [
          h('span', { class: 'sw-att-kind', 'aria-hidden': 'true', text: ref.kind === 'pdf' ? 'PDF' : 'FILE' }),
          h('span', { class: 'sw-att-name', text: name }),
          h('span', { class: 'sw-att-size', text: size }),
        ]);
      }));
    }

    /** Insert or update a message (server object or local pending one). */
    upsert(raw, live) {
      if (!raw || typeof raw !== 'object') return;
      const hasId = raw.id != null;
      const key = hasId ? 'id:' + raw.id : 'c:' + raw.client_id;
      const localKey = raw.client_id ? 'c:' + raw.client_id : null;
      let msg = this.messages.get(key);
      if (!msg && hasId && localKey && this.messages.has(localKey)) {
        msg = this.messages.get(localKey); // our pending message got its id
        this.messages.delete(localKey);
        msg.node.remove();
        msg.node = null;
      }
      if (msg) {
        const status = RANK[raw.status] > RANK[msg.status] ? raw.status : msg.status;
        Object.assign(msg, raw, { status, local: !hasId && msg.local });
      } else {
        msg = Object.assign({}, raw, { seq: ++this.seq });
      }
      this.messages.set(key, msg);
      if (raw.client_id && hasId && this.outbox.some((e) => e.client_id === raw.client_id)) {
        this.dropFromOutbox(raw.client_id);
      }
      if (hasId) this.lastId = Math.max(this.lastId || 0, Number(raw.id));
      if (!msg.node) this.insert(msg);
      else this.paintStatus(msg);
      if (hasId && msg.sender !== 'customer') {
        if (msg.status === 'read') this.readLocal = Math.max(this.readLocal, msg.id);
        if (msg.status === 'sent') this.pendingDelivered.add(msg.id);
        if (live && msg.sender === (this.typingFrom || {}).sender) this.showTyping(null);
      }
      if (live || msg.sender === 'customer') this.scrollDown(false);
      this.flushDelivered();
      this.renderQuick();
      this.renderBadge();
      this.renderMore();
      this.markRead();
    }

    setStatus(msg, status, force) {
      if (!force && (RANK[status] == null || RANK[status] <= RANK[msg.status])) return;
      msg.status = status;
      this.paintStatus(msg);
    }

    order(msg) {
      return msg.id != null ? Number(msg.id) : 1e15 + msg.seq;
    }

    insert(msg) {
      const mine = msg.sender === 'customer';
      const system = msg.sender === 'system';
      const who = mine ? this.t('you') : msg.sender === 'agent' ? (msg.sender_name || this.t('agent')) : this.botName();
      const when = new Date(msg.created_at || Date.now());
      const time = h('time', { datetime: isNaN(when) ? null : when.toISOString(), title: isNaN(when) ? null : when.toLocaleString(this.dateLocale()) }, isNaN(when) ? '' : this.formatTime(when));
      const meta = h('div', { class: 'sw-meta' }, [time]);
      if (mine) {
        msg.tick = h('span', { class: 'sw-ticks', 'aria-hidden': 'true' });
        msg.tickText = h('span', { class: 'sw-sr' });
        meta.append(msg.tick, msg.tickText);
      }
      const rich = !mine && Array.isArray(msg.blocks) && msg.blocks.length ? msg.blocks : null;
      const node = h('div', {
        class: 'sw-msg sw-from-' + (system ? 'system' : mine ? 'customer' : msg.sender === 'agent' ? 'agent' : 'bot')
          + (rich ? ' sw-has-rich' : ''),
        'data-sender': msg.sender || 'bot',
      }, [
        system ? null : h('div', { class: 'sw-sender' }, who),
        h('div', { class: 'sw-bubble' }, [
          h('span', { class: 'sw-text', text: String(msg.text || '') }),
          this.attachmentList(msg),
          // the text is the short answer; the rich content (a FAQ article) unfolds below it
          rich && msg.text ? h('details', { class: 'sw-rich-more' }, [
            h('summary', {}, this.t('read_more')), h('div', { class: 'sw-rich' }, richBlocks(rich, 3)),
          ]) : rich ? h('div', { class: 'sw-rich' }, richBlocks(rich, 3)) : null,
        ]),
        meta,
      ]);
      node.swOrder = this.order(msg);
      node.swWho = system ? '' : who;
      msg.node = node;
      let after = this.log.lastElementChild;
      while (after && after.swOrder > node.swOrder) after = after.previousElementSibling;
      this.log.insertBefore(node, after ? after.nextElementSibling : this.log.firstElementChild);
      this.group(node);
      if (node.nextElementSibling) this.group(node.nextElementSibling);
      this.paintStatus(msg);
    }

    group(node) {
      const label = node.querySelector('.sw-sender');
      if (!label) return;
      const prev = node.previousElementSibling;
      // Grouped messages keep the sender for screen readers only.
      label.classList.toggle('sw-sr', !!prev && prev.swWho === node.swWho);
      node.classList.toggle('sw-grouped', !!prev && prev.swWho === node.swWho);
    }

    paintStatus(msg) {
      if (!msg.node) return;
      msg.node.setAttribute('data-status', msg.status || '');
      if (msg.id != null) msg.node.setAttribute('data-id', msg.id);
      if (!msg.tick) return;
      const status = msg.status || 'pending';
      msg.tick.setAttribute('data-status', status);
      msg.tick.textContent = status === 'pending' ? '\u25F7' : status === 'failed' ? '!' : RANK[status] >= 2 ? '\u2713\u2713' : '\u2713';
      msg.tickText.textContent = STATUS_KEY[status] ? this.t(STATUS_KEY[status]) : '';
    }

    formatTime(date) {
      const locale = this.dateLocale();
      const sameDay = date.toDateString() === new Date().toDateString();
      try {
        return date.toLocaleString(locale, sameDay
          ? { hour: '2-digit', minute: '2-digit' }
          : { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' });
      } catch (e) {
        return date.toLocaleTimeString();
      }
    }

    latest() {
      let best = null;
      for (const msg of this.messages.values()) if (!best || this.order(msg) > this.order(best)) best = msg;
      return best;
    }

    renderQuick() {
      const last = this.latest();
      const buttons = last && last.sender !== 'customer' && Array.isArray(last.buttons) ? last.buttons : [];
      const key = last ? last.id + ':' + buttons.length : '';
      if (this.quickKey === key) return;
      this.quickKey = key;
      this.quick.textContent = '';
      for (const button of buttons) {
        if (!button || !button.title) continue;
        this.quick.appendChild(h('button', {
          type: 'button', class: 'sw-chip',
          onclick: () => this.sendText(button.title, button.payload || null),
        }, String(button.title)));
      }
      this.quick.hidden = !this.quick.firstChild;
    }

    renderMore() {
      this.moreBtn.hidden = !(this.hasMore === true || (this.hasMore === null && this.messages.size >= 20));
    }

    showTyping(frame) {
      this.typingFrom = frame;
      clearTimeout(this.timers.typingOff);
      if (frame) {
        const who = frame.sender === 'agent' ? (frame.name || this.t('agent')) : this.botName();
        this.typingText.textContent = this.t('typing', { who });
        this.timers.typingOff = setTimeout(() => this.showTyping(null), 30000);
        this.scrollDown(false);
      }
      this.typingBox.hidden = !frame;
    }

    flushDelivered() {
      if (!this.pendingDelivered.size || !this.welcomed || this.timers.delivered) return;
      this.timers.delivered = setTimeout(() => { // one frame for a burst of messages
        this.timers.delivered = null;
        this.sendDelivered();
      }, 50);
    }

    sendDelivered() {
      if (!this.pendingDelivered.size) return;
      const ids = [...this.pendingDelivered];
      if (this.send({ type: 'delivered', ids })) {
        this.pendingDelivered.clear();
        ids.forEach((id) => { const m = this.messages.get('id:' + id); if (m) m.status = 'delivered'; });
      }
    }

    unread() {
      let n = 0;
      for (const msg of this.messages.values()) {
        if (msg.id != null && msg.sender !== 'customer' && msg.status !== 'read' && msg.id > this.readLocal) n += 1;
      }
      return n;
    }

    markRead() {
      if (!this.isOpen || doc.hidden || !this.article.hidden || this.lastId == null) return;
      this.readLocal = Math.max(this.readLocal, this.lastId);
      if (this.lastId > this.readSent && this.send({ type: 'read', up_to: this.lastId })) {
        this.readSent = this.lastId;
      }
      this.renderBadge();
    }

    renderBadge() {
      const n = this.unread();
      this.badge.textContent = n > 9 ? '9+' : String(n);
      this.badge.hidden = n === 0;
      this.fab.setAttribute('aria-label', this.t('open_chat') + (n ? ', ' + this.t(n > 1 ? 'unread_many' : 'unread_one', { n }) : ''));
    }

    notice(text) {
      this.noticeBox.textContent = text;
      this.noticeBox.hidden = !text;
      clearTimeout(this.timers.notice);
      if (text) this.timers.notice = setTimeout(() => { this.noticeBox.hidden = true; }, 8000);
    }

    setState(state) {
      this.state = state;
      const text = ['connecting', 'online', 'offline', 'unavailable', 'busy', 'auth'].includes(state)
        ? this.t(state) : '';
      this.status.textContent = text;
      this.root.setAttribute('data-state', state);
      this.retryBtn.hidden = state !== 'busy' && state !== 'auth';
      this.composer.classList.toggle('sw-disabled', state === 'unavailable');
    }

    typing(on) {
      clearTimeout(this.timers.typingIdle);
      const now = Date.now();
      if (on) {
        if (!this.typingSent && now - (this.typingAt || 0) > this.limits.typing_interval * 1000) {
          if (this.send({ type: 'typing', state: 'start' })) {
            this.typingSent = true;
            this.typingAt = now;
          }
        }
        this.timers.typingIdle = setTimeout(() => this.typing(false), 4000);
      } else if (this.typingSent) {
        this.typingSent = false;
        this.send({ type: 'typing', state: 'stop' });
      }
    }

    /** Keep the newest message in view, unless the customer scrolled up to read. */
    scrollDown(force) {
      if (force) this.stick = true;
      if (!this.stick) return;
      global.requestAnimationFrame(() => { this.scroller.scrollTop = this.scroller.scrollHeight; });
    }

    // ------------------------------------------------------------------ FAQ

    async suggest(text) {
      const q = text.trim();
      const seq = ++this.suggestSeq;
      if (this.suggestAbort) this.suggestAbort.abort();
      if (q.length < 3) return this.renderSuggestions([]);
      const ctrl = new AbortController();
      this.suggestAbort = ctrl;
      try {
        const data = await this.api('/faq/search?limit=3&q=' + encodeURIComponent(q.slice(0, 200)), { signal: ctrl.signal });
        if (seq !== this.suggestSeq) return undefined;
        const list = Array.isArray(data) ? data : data.results || data.articles || data.hits || data.items || [];
        this.renderSuggestions(list.map((x) => x.article ? Object.assign({}, x.article, x) : x));
      } catch (e) {
        if (seq === this.suggestSeq) this.renderSuggestions([]);
      }
      return undefined;
    }

    renderSuggestions(items) {
      this.suggestList.textContent = '';
      for (const item of items.slice(0, 3)) {
        if (!item || !item.id || !item.title) continue;
        this.suggestList.appendChild(h('li', {}, h('button', {
          type: 'button', class: 'sw-suggestion', 'data-article': item.id,
          onclick: () => this.openArticle(item.id, item.title),
        }, [
          h('span', { class: 'sw-suggestion-title' }, String(item.title)),
          item.snippet || item.summary ? h('span', { class: 'sw-suggestion-snippet' }, String(item.snippet || item.summary)) : null,
        ])));
      }
      const n = this.suggestList.children.length;
      this.suggestBox.hidden = !n;
      this.suggestLive.textContent = n ? n + (n > 1 ? ' help articles match' : ' help article matches') : '';
    }

    async openArticle(id, title) {
      this.articleTitle.textContent = title || '';
      this.articleBody.textContent = this.t('loading');
      this.articleSummary.textContent = '';
      this.article.hidden = false;
      this.chat.hidden = true;
      this.articleBack.focus();
      try {
        const data = await this.api('/faq/articles/' + encodeURIComponent(id));
        const art = data.article || data;
        this.articleTitle.textContent = art.title || title || '';
        this.articleSummary.textContent = art.summary || '';
        const blocks = Array.isArray(art.blocks) ? art.blocks.slice() : [];
        if (blocks.length && blocks[0] && blocks[0].type === 'heading' && Number(blocks[0].level) === 1) {
          blocks.shift(); // the article's own "# Title": already shown as the title
        }
        this.articleBody.textContent = '';
        this.articleBody.classList.toggle('sw-rich', blocks.length > 0);
        if (blocks.length) this.articleBody.append(...richBlocks(blocks, 4));
        else this.articleBody.textContent = art.body || '';
      } catch (e) {
        this.articleBody.textContent = this.t('article_failed');
      }
    }

    closeArticle() {
      this.article.hidden = true;
      this.chat.hidden = false;
      this.input.focus();
      this.markRead();
    }

    /** Call a REST route. FAQ calls go without the token: anonymous is allowed, and a plain
     * GET needs no CORS preflight. */
    async api(path, init, auth) {
      const headers = { Accept: 'application/json' };
      if (auth && this.token) headers.Authorization = 'Bearer ' + this.token;
      const res = await fetch(this.server + PREFIX + path, Object.assign({ headers, credentials: 'omit' }, init));
      if (!res.ok) throw new Error('HTTP ' + res.status);
      return res.json();
    }

    // ------------------------------------------------------------------ end chat and rating

    endChat() {
      this.confirmBar.hidden = true;
      if (!this.send({ type: 'end' })) {
        this.api('/session/end', { method: 'POST' }, true)
          .then((data) => this.sessionEnded(data || {}))
          .catch(() => this.notice(this.t('end_failed')));
      }
      this.input.focus();
    }

    askRating(session, agent) {
      // One rating per chat session: asked once, stored by the server once.
      this.ratingAsked = this.ratingAsked || new Set();
      if (session == null || this.ratingAsked.has(session)) return;
      this.ratingAsked.add(session);
      let score = 0;
      const box = h('div', { class: 'sw-rating', role: 'group', 'aria-label': this.t('rate_chat') }, [
        h('p', {}, agent ? this.t('how_was_with', { agent }) : this.t('how_was')),
      ]);
      const row = h('div', { class: 'sw-stars' });
      const stars = [];
      const comment = h('textarea', {
        class: 'sw-rating-comment', rows: '2', maxlength: '2000',
        'aria-label': this.t('comment'), placeholder: this.t('comment'),
      });
      const sendBtn = h('button', {
        type: 'button', class: 'sw-btn', disabled: true,
        onclick: () => {
          const frame = { type: 'rate', session, score };
          if (comment.value.trim()) frame.comment = comment.value.trim();
          if (!this.send(frame)) {
            this.notice(this.t('rate_offline'));
            return;
          }
          this.pendingRating = { box, session, score, agent };
          sendBtn.disabled = true;
        },
      }, this.t('send_rating'));
      for (let i = 1; i <= 5; i += 1) {
        const star = h('button', {
          type: 'button', class: 'sw-star', 'aria-pressed': 'false',
          'aria-label': this.t(i > 1 ? 'star_many' : 'star_one', { n: i }),
          onclick: () => {
            score = i;
            stars.forEach((b, n) => b.setAttribute('aria-pressed', String(n < i)));
            sendBtn.disabled = false;
          },
        }, '\u2605');
        stars.push(star);
        row.appendChild(star);
      }
      box.appendChild(row);
      box.appendChild(comment);
      box.appendChild(sendBtn);
      box.swOrder = (this.lastId || 0) + 0.5; // later messages go below it
      this.log.appendChild(box);
      this.scrollDown(true);
    }

    rated(frame) {
      const pending = this.pendingRating;
      this.pendingRating = null;
      if (!pending) return;
      const detail = { session: frame.session, rating: frame.score, agent: pending.agent || null };
      if (typeof this.opts.onRating === 'function') this.opts.onRating(detail);
      this.host.dispatchEvent(new CustomEvent('supportwidget:rating', { bubbles: true, composed: true, detail }));
      pending.box.textContent = '';
      pending.box.appendChild(h('p', {}, this.t('thanks_feedback')));
    }

    // ------------------------------------------------------------------ UI

    build() {
      const id = 'sw-' + Math.random().toString(36).slice(2, 8);
      this.badge = h('span', { class: 'sw-badge', 'aria-hidden': 'true', hidden: true }, '0');
      this.fab = h('button', {
        type: 'button', class: 'sw-fab', 'aria-haspopup': 'dialog', 'aria-controls': id,
        onclick: () => this.open(),
      }, [icon('chat'), this.badge]);
      this.label(this.fab, 'open_chat', ['aria-label']);

      this.status = h('p', { class: 'sw-status', role: 'status' });
      this.retryBtn = this.label(h('button', { type: 'button', class: 'sw-link', hidden: true, onclick: () => this.manualRetry() }), 'try_again');
      this.confirmBar = this.label(h('div', { class: 'sw-confirm', hidden: true, role: 'group' }, [
        this.label(h('span', {}), 'end_this_chat'),
        this.label(h('button', { type: 'button', class: 'sw-btn sw-danger', onclick: () => this.endChat() }), 'end_chat'),
        this.label(h('button', { type: 'button', class: 'sw-btn', onclick: () => { this.confirmBar.hidden = true; this.endBtn.focus(); } }), 'cancel'),
      ]), 'end_chat_q', ['aria-label']);
      this.endBtn = h('button', {
        type: 'button', class: 'sw-btn sw-end',
        onclick: () => { this.confirmBar.hidden = false; this.confirmBar.querySelector('button').focus(); },
      });
      this.label(this.endBtn, 'end_chat');
      const title = h('h2', { id: id + '-title', class: 'sw-title' }, this.opts.title ? String(this.opts.title) : '');
      if (!this.opts.title) this.label(title, 'title');
      const header = h('header', { class: 'sw-header' }, [
        h('div', { class: 'sw-heading' }, [title, this.status]),
        this.endBtn,
        this.label(h('button', { type: 'button', class: 'sw-icon-btn sw-close', onclick: () => this.close() }, icon('close')), 'close_chat', ['aria-label']),
      ]);

      this.log = this.label(h('div', { class: 'sw-log', role: 'log', 'aria-live': 'polite', 'aria-relevant': 'additions' }), 'messages', ['aria-label']);
      this.moreBtn = h('button', {
        type: 'button', class: 'sw-link sw-more', hidden: true,
        onclick: () => {
          let oldest = null;
          for (const m of this.messages.values()) if (m.id != null && (oldest == null || m.id < oldest)) oldest = m.id;
          this.moreBtn.disabled = true;
          if (!this.send({ type: 'history', before: oldest, limit: 50 })) this.moreBtn.disabled = false;
        },
      });
      this.label(this.moreBtn, 'show_earlier');
      this.typingText = h('span', {});
      this.typingBox = h('div', { class: 'sw-typing', role: 'status', hidden: true }, [
        h('span', { class: 'sw-dots', 'aria-hidden': 'true' }, [h('i'), h('i'), h('i')]), this.typingText,
      ]);
      this.scroller = h('div', { class: 'sw-scroll' }, [this.moreBtn, this.log, this.typingBox]);
      this.stick = true;
      this.scroller.addEventListener('scroll', () => {
        const el = this.scroller;
        this.stick = el.scrollHeight - el.scrollTop - el.clientHeight < 60;
      }, { passive: true });
      this.quick = this.label(h('div', { class: 'sw-quick', role: 'group', hidden: true }), 'suggested_replies', ['aria-label']);
      this.noticeBox = h('p', { class: 'sw-notice', role: 'alert', hidden: true });

      this.suggestList = h('ul', { class: 'sw-suggest-list' });
      this.suggestLive = h('span', { class: 'sw-sr', 'aria-live': 'polite' });
      this.suggestBox = h('div', { class: 'sw-suggest', hidden: true }, [
        this.label(h('p', { class: 'sw-suggest-head', id: id + '-sug' }), 'help_articles'),
        this.suggestList,
      ]);
      this.suggestList.setAttribute('aria-labelledby', id + '-sug');
      this.suggestSeq = 0;

      this.input = h('textarea', {
        class: 'sw-input', rows: 1, maxlength: this.limits.max_message_chars, autocomplete: 'off',
      });
      this.label(this.input, 'type_message', ['aria-label', 'placeholder']);
      this.input.addEventListener('input', () => {
        this.input.style.height = 'auto';
        this.input.style.height = Math.min(this.input.scrollHeight, 120) + 'px';
        this.typing(!!this.input.value.trim());
        clearTimeout(this.timers.suggest);
        this.timers.suggest = setTimeout(() => this.suggest(this.input.value), 250);
      });
      this.input.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
          e.preventDefault();
          this.submit();
        }
      });
      this.composer = h('form', { class: 'sw-composer', onsubmit: (e) => { e.preventDefault(); this.submit(); } }, [
        this.attachControl(),
        this.input,
        this.label(h('button', { type: 'submit', class: 'sw-icon-btn sw-send' }, icon('send')), 'send_message', ['aria-label']),
      ]);
      this.callText = h('span', { class: 'sw-call-text', role: 'status' });
      this.endCallBtn = h('button', {
        type: 'button', class: 'sw-btn sw-danger sw-end-call', onclick: () => this.endCall(),
      });
      this.label(this.endCallBtn, 'end_call', ['text', 'aria-label']);
      this.callBar = this.label(h('div', { class: 'sw-call', role: 'group', hidden: true }, [this.callText, this.endCallBtn]), 'call_bar', ['aria-label']);
      this.chat = h('div', { class: 'sw-chat' }, [this.callBar, this.scroller, this.quick, this.noticeBox, this.suggestBox, this.suggestLive, this.composer]);

      this.articleTitle = h('h3', { class: 'sw-article-title', tabindex: '-1' });
      this.articleSummary = h('p', { class: 'sw-article-summary' });
      this.articleBody = h('div', { class: 'sw-article-body' });
      this.articleBack = this.label(h('button', { type: 'button', class: 'sw-link', onclick: () => this.closeArticle() }), 'back_to_chat');
      this.article = this.label(h('section', { class: 'sw-article', hidden: true }, [
        this.articleBack, this.articleTitle, this.articleSummary, this.articleBody,
      ]), 'help_article', ['aria-label']);

      this.modal = h('div', {
        id, class: 'sw-modal', role: 'dialog', 'aria-modal': 'true', 'aria-labelledby': id + '-title', hidden: true,
      }, [header, this.confirmBar, h('div', { class: 'sw-row' }, this.retryBtn), this.chat, this.article]);
      this.modal.addEventListener('keydown', (e) => this.trapKeys(e));

      this.root = h('div', { class: 'sw-root', 'data-state': 'connecting', lang: this.lang }, [this.fab, this.modal]);
      // A shadow root keeps the host page's CSS out of the widget (and ours out of the page).
      // Hidden until the stylesheet has loaded, so no unstyled button flashes up.
      this.host = h('div', { id: 'support-widget', style: 'display:none', lang: this.lang });
      this.shadow = this.host.attachShadow({ mode: 'open' });
      const css = h('link', { rel: 'stylesheet', href: this.opts.css || this.server + PREFIX + '/widget.css' });
      const show = () => { this.host.style.display = ''; };
      css.addEventListener('load', show);
      css.addEventListener('error', show);
      this.shadow.append(css, this.root);
      const attach = () => { if (!this.destroyed) doc.body.appendChild(this.host); };
      if (doc.body) attach();
      else doc.addEventListener('DOMContentLoaded', attach, { once: true });
      this.applyScreen();
    }

    // ------------------------------------------------------------------ language

    /** The string `key` in the widget's language (English when missing), {names} filled in. */
    t(key, vars) {
      const text = (STRINGS[this.lang] || STRINGS.en)[key] || STRINGS.en[key] || key;
      return text.replace(/\{(\w+)\}/g, (all, name) => (vars && name in vars ? String(vars[name]) : all));
    }

    /** init's `locale`, else the app context's, else the token's `locale` claim, else English. */
    chooseLang(token) {
      return langOf(this.opts.locale) || langOf(this.context.locale)
        || (token ? langOf(claims(token).locale) : null) || 'en';
    }

    /** The locale for dates and times (Intl.DateTimeFormat): the full tag when there is one. */
    dateLocale() {
      const tags = [this.opts.locale, this.context.locale, this.token ? claims(this.token).locale : null];
      const tag = tags.find((v) => typeof v === 'string' && langOf(v) === this.lang);
      try {
        return Intl.DateTimeFormat.supportedLocalesOf([tag || this.lang]).length ? (tag || this.lang) : this.lang;
      } catch (e) {
        return this.lang;
      }
    }

    botName() {
      return this.opts.botName ? String(this.opts.botName) : this.t('bot_name');
    }

    /** Show `key` on `node` now and after a language change: as its text ('text') and/or
     * the attributes named in `attrs` (default: the text only). */
    label(node, key, attrs) {
      this.labels.push([node, key, attrs || ['text']]);
      this.applyLabel(node, key, attrs || ['text']);
      return node;
    }

    applyLabel(node, key, attrs) {
      const text = this.t(key);
      for (const attr of attrs) {
        if (attr === 'text') node.textContent = text;
        else if (attr) node.setAttribute(attr, text);
      }
    }

    setLang(lang) {
      if (!lang || lang === this.lang) return;
      this.lang = lang;
      if (!this.root) return;
      this.root.setAttribute('lang', lang);
      this.host.setAttribute('lang', lang);
      for (const [node, key, attrs] of this.labels) this.applyLabel(node, key, attrs);
      this.setState(this.state);
      this.renderBadge();
      for (const msg of this.messages.values()) if (msg.tick) this.paintStatus(msg);
    }

    submit() {
      if (this.sendText(this.input.value)) {
        this.input.value = '';
        this.input.style.height = '';
        this.renderSuggestions([]);
        this.suggestSeq += 1;
      }
      this.input.focus();
    }

    manualRetry() {
      this.stopped = false;
      this.attempt = 0;
      if (this.state === 'auth') this.start(null);
      else this.connect();
    }

    trapKeys(e) {
      if (e.key === 'Escape') {
        e.preventDefault();
        if (!this.article.hidden) this.closeArticle();
        else if (!this.confirmBar.hidden) this.confirmBar.hidden = true;
        else this.close();
        return;
      }
      if (e.key !== 'Tab') return;
      const items = [...this.modal.querySelectorAll('button, textarea, input, summary, [href], [tabindex]:not([tabindex="-1"])')]
        .filter((el) => !el.disabled && el.offsetParent !== null);
      if (!items.length) return;
      const first = items[0];
      const last = items[items.length - 1];
      const active = this.shadow.activeElement;
      if (e.shiftKey && (active === first || !this.modal.contains(active))) {
        e.preventDefault();
        last.focus();
      } else if (!e.shiftKey && active === last) {
        e.preventDefault();
        first.focus();
      }
    }

    applyScreen() {
      const hide = this.hidden.has(String(this.context.screen || ''));
      this.fab.hidden = hide || this.isOpen;
      this.root.setAttribute('data-screen', this.context.screen || '');
      if (hide && this.isOpen) this.close(true);
    }

    // ------------------------------------------------------------------ public API

    open() {
      if (this.destroyed || this.hidden.has(String(this.context.screen || ''))) return;
      if (!this.isOpen) this.returnFocus = doc.activeElement;
      this.isOpen = true;
      this.modal.hidden = false;
      this.fab.hidden = true;
      if (global.matchMedia && global.matchMedia('(max-width: 599px)').matches) {
        doc.documentElement.style.overflow = 'hidden'; // full screen: the page must not scroll
      }
      this.input.focus();
      this.scrollDown(true);
      this.markRead();
      if (!this.ws && !this.stopped) this.connect();
    }

    close(noFocus) {
      if (!this.isOpen) return;
      this.isOpen = false;
      this.modal.hidden = true;
      this.confirmBar.hidden = true;
      doc.documentElement.style.overflow = '';
      this.applyScreen();
      this.typing(false);
      if (!noFocus) (this.fab.hidden ? this.returnFocus : this.fab || this.returnFocus)?.focus?.();
    }

    setScreen(name) {
      this.setContext({ screen: name == null ? '' : String(name) });
    }

    setContext(obj) {
      if (!obj || typeof obj !== 'object') return;
      Object.assign(this.context, obj);
      if ('locale' in obj) this.setLang(this.chooseLang(this.token));
      this.applyScreen();
      this.send({ type: 'context', context: this.context });
    }

    destroy() {
      this.destroyed = true;
      this.closeSocket();
      Object.values(this.timers).forEach((t) => { clearTimeout(t); clearInterval(t); });
      global.removeEventListener('online', this.onOnline);
      doc.removeEventListener('visibilitychange', this.onVisible);
      doc.documentElement.style.overflow = '';
      if (this.sub) save('outbox:' + this.sub, null); // logout: nothing of this user stays behind
      this.host.remove();
    }
  }

  let instance = null;
  const call = (name) => (...args) => (instance ? instance[name](...args) : undefined);

  global.SupportWidget = {
    version: '1.0.0',
    /**
     * Start the widget. opts: {server, token, getToken, screen, hiddenScreens, context, title,
     * botName, onRating, css (stylesheet URL)}. Calling init again replaces the previous widget.
     */
    init(opts) {
      if (instance) instance.destroy();
      instance = new Widget(opts || {});
      return global.SupportWidget;
    },
    setScreen: call('setScreen'),
    setContext: call('setContext'),
    setToken: call('setToken'),
    open: call('open'),
    close: call('close'),
    destroy() {
      if (instance) instance.destroy();
      instance = null;
    },
    /** Connection state: connecting, online, offline, unavailable, busy, auth (or null). */
    get state() { return instance ? instance.state : null; },
  };
}(window));
