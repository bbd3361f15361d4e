"""Operator command for Twilio operations that failed after every retry.

Usage::

    python -m bot.twilio.deadletters list [--all] [--json]
    python -m bot.twilio.deadletters show ID
    python -m bot.twilio.deadletters replay ID

``replay`` runs the operation again with the same retries (the Twilio credentials of
``TWILIO_*`` are needed); an operation is delivered once (its key is recorded when it
succeeds, so replaying a delivered one sends nothing). Exit status: 0 on success, 1 when
the replay failed again, 2 on bad input (unknown id, not configured).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import List, Optional

__all__ = ["main"]


async def _run(args: argparse.Namespace) -> int:
    from bot.twilio.bridge import TwilioBridge, TwilioConfig
    from bot.twilio.store import TwilioStore

    config = TwilioConfig.from_settings()
    store = TwilioStore.from_url(args.url or config.support_db_url)
    try:
        await store.create_schema()
        if args.action == "list":
            letters = await store.dead_letters(status=None if args.all else "dead")
            if args.json:
                print(json.dumps([letter.to_json() for letter in letters], indent=2))
                return 0
            if not letters:
                print("No dead letters.")
                return 0
            print(f"{'ID':>5}  {'STATUS':8}  {'KIND':8}  {'TRIES':>5}  {'CREATED':20}  KEY / ERROR")
            for letter in letters:
                print(f"{letter.id:>5}  {letter.status:8}  {letter.kind:8}  "
                      f"{letter.attempts:>5}  {letter.created_at:%Y-%m-%d %H:%M:%S}  "
                      f"{letter.key}\n{'':>57}{letter.error[:100]}")
            return 0
        try:
            letter = await store.dead_letter(args.id)
        except LookupError as error:
            print(str(error), file=sys.stderr)
            return 2
        if args.action == "show":
            print(json.dumps(letter.to_json(), indent=2, ensure_ascii=False))
            return 0
        if not config.configured:
            print("Twilio is not configured: set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN.",
                  file=sys.stderr)
            return 2
        bridge = TwilioBridge(config, store)
        try:
            after, ok = await bridge.replay(letter.id)
        finally:
            await bridge.close()
        if ok:
            print(f"Dead letter {after.id} ({after.key}) delivered; status {after.status}.")
            return 0
        print(f"Dead letter {after.id} failed again: {after.error}", file=sys.stderr)
        return 1
    finally:
        await store.dispose()


def main(argv: Optional[List[str]] = None) -> int:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m bot.twilio.deadletters",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=None, help="database URL (default: SUPPORT_DB_URL)")
    sub = parser.add_subparsers(dest="action", required=True)
    listing = sub.add_parser("list", help="dead letters waiting for an operator")
    listing.add_argument("--all", action="store_true", help="include replayed ones")
    listing.add_argument("--json", action="store_true", help="JSON output")
    for name, text in (("show", "one dead letter in full"), ("replay", "deliver it again")):
        command = sub.add_parser(name, help=text)
        command.add_argument("id", type=int)
    return asyncio.run(_run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
