"""Times as Twilio and our transcripts write them, read back as aware UTC datetimes.

Used by the bridge (transcript lines it imports into a Conversation) and by its store (the
time of a handoff's last transcript line); below both, so neither imports the other for it.
:func:`parse_time` stays importable from :mod:`bot.twilio.bridge` too.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

__all__ = ["parse_time"]


def parse_time(value: Any) -> Optional[datetime]:
    """An ISO 8601 time (``Z`` or offset; naive = UTC) or a datetime, as aware UTC."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value.strip():
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)
