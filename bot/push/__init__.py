"""Web Push notifications to agents: new and transferred tickets (docs/agent-console.md "Push").

* :mod:`bot.push.keys`: the VAPID key pair (checks; ``python -m bot.push.keys generate``).
* :mod:`bot.push.models`: ``push_subscriptions``, ``push_preferences``, ``push_outbox``
  (migration 0013).
* :mod:`bot.push.outbox`: staging notifications in the transaction of the handoff or
  transfer (an ``after_insert`` hook on the audit log, :mod:`bot.support.models`).
* :mod:`bot.push.store`: the agent's setting and devices (subscribe, unsubscribe).
* :mod:`bot.push.sender`: the task that claims outbox rows and POSTs them, encrypted
  (RFC 8291, pywebpush) and signed (VAPID, RFC 8292), over aiohttp.
* :mod:`bot.push.routes`: the console's push routes and its service worker.
"""
