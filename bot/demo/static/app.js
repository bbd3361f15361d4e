/* Northwind demo shop: a tiny single-page app with hash routes that embeds the support
 * widget the way a real app would (docs/widget.md). All text goes through textContent. */
(function () {
  'use strict';
  const CONFIG = JSON.parse(document.getElementById('demo-config').textContent);
  const screenEl = document.getElementById('screen');
  const PRODUCTS = [
    { id: '1', name: 'Trail running shoes', price: 89.9, text: 'Light, grippy and waterproof. Sizes 36–47.' },
    { id: '2', name: 'Rain jacket', price: 129.0, text: 'Breathable three-layer shell with a packable hood.' },
    { id: '3', name: 'Merino socks, 3 pairs', price: 19.9, text: 'Soft, warm and odour resistant.' },
    { id: '4', name: 'Daypack 25 l', price: 69.0, text: 'Padded laptop sleeve and a rain cover.' },
  ];
  const STATUS = {
    processing: 'Processing', packed: 'Packed', shipped: 'Shipped', in_transit: 'In transit',
    delivered: 'Delivered', cancelled: 'Cancelled',
  };
  let customer = null;
  let customers = [];
  let chatStarted = false;

  function h(tag, attrs, kids) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value == null || value === false) continue;
      if (key === 'class') node.className = value;
      else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? '' : value);
    }
    for (const kid of [].concat(kids || [])) {
      if (kid != null) node.append(typeof kid === 'string' ? document.createTextNode(kid) : kid);
    }
    return node;
  }

  const euro = (n) => new Intl.NumberFormat('en-IE', { style: 'currency', currency: 'EUR' }).format(n);
  const cart = () => JSON.parse(localStorage.getItem('demo-cart') || '[]');
  const setCart = (items) => { localStorage.setItem('demo-cart', JSON.stringify(items)); renderCartCount(); };

  function route() {
    const parts = (location.hash.replace(/^#\/?/, '') || 'home').split('/');
    return { name: parts[0] || 'home', arg: parts[1] };
  }

  async function api(path, body) {
    const init = { credentials: 'same-origin', cache: 'no-store' };
    if (body !== undefined) {
      init.method = 'POST';
      init.headers = { 'Content-Type': 'application/json' };
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    const data = await res.json().catch(() => ({}));
    if (!res.ok) throw Object.assign(new Error((data.error && data.error.message) || res.statusText), { status: res.status });
    return data;
  }

  // ------------------------------------------------------------------ the chat widget

  /** The host app's token provider: the backend signs a fresh token for the session. */
  async function getToken() {
    try {
      return (await api('/api/token')).token;
    } catch (e) {
      return null;
    }
  }

  async function startChat() {
    if (chatStarted || !customer) return;
    if (!window.SupportWidget) {
      document.getElementById('chat-down').hidden = false;
      return;
    }
    const token = await getToken();
    if (!token || !customer) return;
    chatStarted = true;
    window.SupportWidget.init({
      server: CONFIG.widgetUrl,
      token,
      getToken,
      screen: route().name,
      hiddenScreens: ['checkout'],
      title: 'Northwind Support',
      // The chat speaks the customer's language (the token's locale: Anna de-DE, Chloé fr-FR,
      // Ben en-GB) unless a language was picked at login (sent as the app's locale).
      context: Object.assign({ app_version: CONFIG.appVersion, device: 'Web demo' },
        chatLanguage() ? { locale: chatLanguage() } : {}),
    });
  }

  function stopChat() {
    if (chatStarted && window.SupportWidget) window.SupportWidget.destroy();
    chatStarted = false;
  }

  function renderChatState() {
    const r = route().name;
    document.getElementById('chat-login').hidden = !!customer || r === 'checkout' || r === 'login';
  }

  // ------------------------------------------------------------------ screens

  function card(title, kids) {
    return h('section', { class: 'card' }, [title ? h('h2', {}, title) : null].concat(kids));
  }

  const screens = {
    home() {
      return [
        h('h1', {}, customer ? 'Hello, ' + customer.name.split(' ')[0] : 'Welcome to Northwind'),
        h('p', { class: 'lead' }, 'Outdoor gear, delivered.'),
        h('ul', { class: 'grid' }, PRODUCTS.map((p) => h('li', {}, h('a', { class: 'product', href: '#/product/' + p.id }, [
          h('span', { class: 'thumb', 'aria-hidden': 'true' }, p.name[0]),
          h('span', { class: 'pname' }, p.name),
          h('span', { class: 'price' }, euro(p.price)),
        ])))),
      ];
    },
    product(id) {
      const p = PRODUCTS.find((x) => x.id === id) || PRODUCTS[0];
      return [
        h('a', { class: 'back', href: '#/home' }, '← All products'),
        h('div', { class: 'hero', 'aria-hidden': 'true' }, p.name[0]),
        h('h1', {}, p.name),
        h('p', { class: 'price big' }, euro(p.price)),
        h('p', {}, p.text),
        h('button', {
          class: 'primary', type: 'button',
          onclick: (e) => { setCart(cart().concat([p.id])); e.target.textContent = 'Added ✓'; },
        }, 'Add to cart'),
      ];
    },
    orders() {
      if (!customer) return loginFirst('Log in to see your orders.');
      const list = h('ul', { class: 'orders', 'aria-busy': 'true' }, h('li', {}, 'Loading…'));
      api('/api/orders').then((data) => {
        list.textContent = '';
        list.removeAttribute('aria-busy');
        for (const o of data.orders) {
          list.append(h('li', { class: 'order', 'data-order': o.number }, [
            h('div', { class: 'order-head' }, [
              h('strong', {}, 'Order #' + o.number),
              o.status ? h('span', { class: 'pill pill-' + o.status }, STATUS[o.status] || o.status) : null,
            ]),
            o.items ? h('p', { class: 'muted' }, o.items.map((i) => i.qty + ' × ' + i.name).join(', ')) : null,
            o.placed_at ? h('p', { class: 'muted' }, 'Placed ' + new Date(o.placed_at).toLocaleDateString() +
              (o.total_eur ? ' · ' + euro(Number(o.total_eur)) : '') + (o.carrier ? ' · ' + o.carrier : '')) : null,
          ]));
        }
        if (!data.orders.length) list.append(h('li', {}, 'No orders yet.'));
      }).catch((e) => { list.textContent = 'Orders could not be loaded: ' + e.message; });
      return [h('h1', {}, 'Your orders'), list,
        h('p', { class: 'muted' }, 'Questions about an order? Tap the chat button.')];
    },
    cart() {
      const items = cart().map((id) => PRODUCTS.find((p) => p.id === id)).filter(Boolean);
      const total = items.reduce((sum, p) => sum + p.price, 0);
      return [
        h('h1', {}, 'Cart'),
        items.length
          ? h('ul', { class: 'lines' }, items.map((p) => h('li', {}, [h('span', {}, p.name), h('span', {}, euro(p.price))])))
          : h('p', {}, 'Your cart is empty.'),
        h('p', { class: 'total' }, 'Total: ' + euro(total)),
        h('a', { class: 'primary button', href: '#/checkout' }, 'Go to checkout'),
      ];
    },
    checkout() {
      return [
        h('h1', {}, 'Checkout'),
        h('p', { class: 'muted' }, 'No chat button here: the checkout stays distraction-free.'),
        h('form', { class: 'form', onsubmit: (e) => { e.preventDefault(); setCart([]); location.hash = '#/orders'; } }, [
          h('label', {}, ['Name', h('input', { name: 'name', autocomplete: 'name', value: customer ? customer.name : '' })]),
          h('label', {}, ['Address', h('input', { name: 'address', autocomplete: 'street-address' })]),
          h('label', {}, ['Card number', h('input', { name: 'card', inputmode: 'numeric', autocomplete: 'cc-number' })]),
          h('button', { class: 'primary', type: 'submit' }, 'Place order (demo)'),
        ]),
      ];
    },
    login() {
      if (customer) {
        return [
          h('h1', {}, 'Account'),
          card(null, [
            h('p', {}, ['Logged in as ', h('strong', {}, customer.name), ' (' + customer.id + ')']),
            h('button', { class: 'secondary', type: 'button', id: 'logout', onclick: logout }, 'Log out'),
          ]),
        ];
      }
      return [
        h('h1', {}, 'Log in'),
        h('p', {}, 'Demo login: pick a customer. Their orders are in the demo order database, so the assistant can track, cancel or refund them.'),
        h('ul', { class: 'accounts' }, customers.map((c) => h('li', {}, h('button', {
          class: 'account', type: 'button', 'data-customer': c.id, onclick: () => login(c.id),
        }, [h('strong', {}, c.name), h('span', { class: 'muted' }, c.email)])))),
        h('label', { for: 'chat-language' }, 'Chat language'),
        h('select', {
          id: 'chat-language', onchange: (e) => { try { localStorage.setItem(LANGUAGE_KEY, e.target.value); } catch (err) { /* private mode */ } },
        }, [['', "The customer's own (Anna: Deutsch, Ben: English, Chloé: Français)"], ['en', 'English'],
          ['de', 'Deutsch'], ['fr', 'Français']].map(([value, label]) => {
          const option = h('option', { value }, label);
          if (value === chatLanguage()) option.selected = true;
          return option;
        })),
        helpSearch(),
      ];
    },
  };

  const LANGUAGE_KEY = 'demo:chat-language';

  /** The language picked at login ('' : the customer's own, from their token). */
  function chatLanguage() {
    try {
      return localStorage.getItem(LANGUAGE_KEY) || '';
    } catch (e) {
      return '';
    }
  }

  function loginFirst(text) {
    return [h('h1', {}, 'Please log in'), h('p', {}, text), h('a', { class: 'primary button', href: '#/login' }, 'Log in')];
  }

  /** Anonymous help search: the FAQ search route needs no token. */
  function helpSearch() {
    const results = h('ul', { class: 'help-results', 'aria-live': 'polite' });
    let timer = null;
    const input = h('input', {
      type: 'search', id: 'help-q', placeholder: 'e.g. refund, delivery time', autocomplete: 'off',
      oninput: () => {
        clearTimeout(timer);
        timer = setTimeout(async () => {
          const q = input.value.trim();
          results.textContent = '';
          if (q.length < 3) return;
          try {
            const res = await fetch(CONFIG.widgetUrl + '/webhooks/widget/faq/search?limit=3&q=' + encodeURIComponent(q));
            const data = await res.json();
            const hits = Array.isArray(data) ? data : data.results || data.articles || data.hits || [];
            for (const hit of hits) {
              results.append(h('li', {}, [h('strong', {}, String(hit.title || '')),
                h('p', { class: 'muted' }, String(hit.summary || hit.snippet || ''))]));
            }
          } catch (e) {
            results.append(h('li', {}, 'Help search is unavailable right now.'));
          }
        }, 250);
      },
    });
    return card('Help without logging in', [h('label', { for: 'help-q' }, 'Search help articles'), input, results]);
  }

  async function login(customerId) {
    const data = await api('/api/login', { customer_id: customerId });
    customer = data.customer;
    renderWho();
    await startChat();
    location.hash = '#/home';
  }

  async function logout() {
    await api('/api/logout', {});
    customer = null;
    stopChat(); // the widget forgets this user's queue and closes its connection
    renderWho();
    render();
  }

  function renderWho() {
    document.getElementById('who').textContent = customer ? customer.name : 'Not logged in';
    renderChatState();
  }

  function renderCartCount() {
    const n = cart().length;
    const el = document.getElementById('cart-count');
    el.textContent = String(n);
    el.hidden = !n;
  }

  function render() {
    const r = route();
    screenEl.textContent = '';
    screenEl.append(...(screens[r.name] || screens.home)(r.arg));
    document.body.dataset.screen = r.name;
    document.querySelectorAll('.tabs a').forEach((a) => {
      if (a.dataset.tab === r.name) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    });
    renderChatState();
    if (chatStarted) window.SupportWidget.setScreen(r.name);
  }

  window.addEventListener('hashchange', () => { render(); screenEl.focus({ preventScroll: true }); });

  (async function boot() {
    renderCartCount();
    try {
      const data = await api('/api/me');
      customer = data.customer;
      customers = data.customers;
    } catch (e) { /* the shop works without the account API */ }
    renderWho();
    render();
    await startChat();
  }());
}());
