"""Hand conversations to Twilio Conversations (Flex or a custom Conversations client).

* :mod:`bot.twilio.channel`: the Rasa input channel ``TwilioConversationsInput``
  (webhooks under ``/webhooks/twilio_conversations/``; inert without credentials).
* :mod:`bot.twilio.bridge`: the work: handoff → Conversation with the transcript,
  customer messages → Twilio, webhooks → the customer's widget, reliable delivery.
* :mod:`bot.twilio.client`: the async Twilio REST client (the real ``twilio`` library on
  an aiohttp transport whose base URL can be redirected, e.g. to a local fake in tests).
* :mod:`bot.twilio.store`: the tables of this integration and its ``do_*`` writes.
* :mod:`bot.twilio.deadletters`: the operator command (``list``/``show``/``replay``) for
  outgoing operations that failed.
* :mod:`bot.twilio.inbox`: the webhook inbox (verified webhooks stored before the 200,
  processed from the table with retries, dead letters and ``replay``).
* :mod:`bot.twilio.voice` / :mod:`bot.twilio.voice_store`: call-backs placed with Twilio
  Voice (persistent scheduler, call status webhooks, the widget's "End call").
* :mod:`bot.twilio.timestamps`: ISO times from Twilio and transcripts (bridge and store).

Setup and flow: ``docs/twilio.md``.
"""
