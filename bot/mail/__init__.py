"""Email to customers: ticket confirmations, "you have a reply", transcripts (docs/email.md).

* :mod:`bot.mail.models`: the ``mail_outbox`` and ``mail_optouts`` tables (migration 0010).
* :mod:`bot.mail.outbox`: staging an email in the caller's transaction (the support and
  agent stores call it in the same transaction as the ticket or the reply they store).
* :mod:`bot.mail.tokens`: signed unsubscribe tokens.
* :mod:`bot.mail.compose`: the messages (texts from ``data/messages.yml``, plain + HTML).
* :mod:`bot.mail.store`: opt-outs, transcript requests and outbox queries.
* :mod:`bot.mail.sender`: the task that delivers the outbox over SMTP (aiosmtplib).
* :mod:`bot.mail.channel`: the Rasa input channel with the unsubscribe routes that runs
  the sender in the Rasa server (``/webhooks/mail/``).
"""
