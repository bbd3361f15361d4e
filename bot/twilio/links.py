"""Operator command: find the Twilio link of a ticket, a conversation or any Twilio SID.

Usage::

    python -m bot.twilio.links T-000123            # a ticket reference
    python -m bot.twilio.links widget:cust-anna    # our conversation id (all its handoffs)
    python -m bot.twilio.links WT…|KD…|UO…|CH…     # a task, Interaction, channel, Conversation

Prints the links as JSON (newest first): the Conversation SID, participant and webhook SIDs,
state, last agent and, in Flex mode, the Interaction (``flex_interaction_sid``), its channel
(``flex_channel_sid``) and the TaskRouter task now working the chat (``flex_task_sid``; a
transfer moves it to the new task). Exit status: 0 when found, 1 when nothing matches,
2 on bad input.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import List, Optional

__all__ = ["main"]


async def _run(args: argparse.Namespace) -> int:
    from bot.settings import get_settings
    from bot.twilio.store import TwilioStore

    key = args.key.strip()
    if not key or len(key) > 255:
        print("Give a ticket reference, a conversation id or a Twilio SID.", file=sys.stderr)
        return 2
    store = TwilioStore.from_url(args.url or get_settings().support_db_url)
    try:
        await store.create_schema()
        links = await store.find_links(key)
    finally:
        await store.dispose()
    if not links:
        print(f"No Twilio link for {key!r}.", file=sys.stderr)
        return 1
    print(json.dumps([link.to_json() for link in links], indent=2, ensure_ascii=False))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m bot.twilio.links",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=None, help="database URL (default: SUPPORT_DB_URL)")
    parser.add_argument("key", help="ticket reference, conversation id, or a CH/KD/UO/WT SID")
    return asyncio.run(_run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
