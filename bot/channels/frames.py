"""Small helpers shared by the WebSocket channels (widget, agent console)."""
from __future__ import annotations

import json
from typing import Any

__all__ = ["decode_frame"]


def decode_frame(raw: Any) -> Any:
    """A WebSocket frame parsed as JSON; None when it is not UTF-8 JSON."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return None
