/* Northwind agent console: the service worker (served as /webhooks/agent/sw.js, scope: the
 * console). It only shows push notifications of new and transferred tickets and opens the
 * console on the ticket when one is clicked; it caches nothing.
 * Payload (JSON, decrypted by the browser): {type, ticket, subject, priority, category, by}.
 * docs/agent-console.md "Push". */
'use strict';

self.addEventListener('install', () => { self.skipWaiting(); });
self.addEventListener('activate', (event) => { event.waitUntil(self.clients.claim()); });

function describe(data) {
  const ref = typeof data.ticket === 'string' ? data.ticket : '';
  const priority = typeof data.priority === 'string' ? data.priority : '';
  let title = 'Northwind Agents';
  if (data.type === 'ticket.new') title = 'New ticket ' + ref;
  else if (data.type === 'ticket.transferred') title = 'Ticket ' + ref + ' transferred to you';
  const lines = [typeof data.subject === 'string' ? data.subject : ''];
  const facts = [];
  if (priority) facts.push('Priority: ' + priority);
  if (typeof data.category === 'string' && data.category) facts.push(data.category);
  if (typeof data.by === 'string' && data.by) facts.push('from ' + data.by);
  if (facts.length) lines.push(facts.join(' · '));
  return {
    title,
    options: {
      body: lines.filter(Boolean).join('\n'),
      tag: ref || 'northwind-agents',
      renotify: true,
      requireInteraction: priority === 'urgent',
      icon: 'static/icon.svg',
      data: { ticket: ref, type: data.type || '' },
    },
  };
}

self.addEventListener('push', (event) => {
  let data = {};
  try { data = event.data ? event.data.json() : {}; } catch (e) { data = {}; }
  if (!data || typeof data !== 'object') data = {};
  const note = describe(data);
  event.waitUntil(self.registration.showNotification(note.title, note.options));
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const ticket = (event.notification.data && event.notification.data.ticket) || '';
  const scope = self.registration.scope; // .../webhooks/agent/
  const url = scope + (ticket ? '#/t/' + encodeURIComponent(ticket) : '#/inbox');
  event.waitUntil((async () => {
    const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    for (const client of windows) {
      if (client.url.startsWith(scope)) {
        try { await client.focus(); } catch (e) { /* not allowed: still navigate */ }
        client.postMessage({ type: 'open', ticket });
        return;
      }
    }
    await self.clients.openWindow(url);
  })());
});
