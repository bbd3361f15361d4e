"""The demo shop app that embeds the support widget (``python -m bot.demo``).

See :mod:`bot.demo.app` for the routes and ``docs/widget.md`` for embedding the widget
in a real app.
"""
