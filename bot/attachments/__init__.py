"""Photos and PDFs in the chat (issue 16): uploads, storage, access, Twilio media.

A customer (widget) or an agent (console) uploads a file over HTTP; its type is sniffed from
its bytes, images are re-encoded without their metadata and get a thumbnail, the bytes go to
a :class:`~bot.attachments.storage.Storage` (a local directory, or an S3-compatible store)
and a row to ``attachments`` (migration 0011). The chat message that carries it is an
ordinary chat message whose ``extra.attachments`` names it (docs/widget-protocol.md,
"Attachments").

Module map:

* :mod:`bot.attachments.sniff`: the file type from its first bytes (magic numbers);
* :mod:`bot.attachments.images`: re-encoding and thumbnails (Pillow, in a worker thread);
* :mod:`bot.attachments.storage`: the storage interface, local directory and S3;
* :mod:`bot.attachments.models`: the ``attachments`` table;
* :mod:`bot.attachments.store`: its ``do_*`` functions and reads;
* :mod:`bot.attachments.service`: an upload from request body to stored attachment;
* :mod:`bot.attachments.http`: reading a body under the limit, serving a file safely;
* :mod:`bot.attachments.widget_routes`, :mod:`bot.attachments.console_routes`: the routes;
* :mod:`bot.attachments.twilio_media`: Twilio's Media Content Service, both ways.

Nothing happens at import time.
"""
