"""Chat with a running bot in the terminal: ``python -m bot.shell`` (``make shell``).

A small client, not a server: it talks to the Rasa server's authenticated API channel
(``POST /webhooks/api/webhook`` with ``Authorization: Bearer $SUPPORT_API_TOKEN``, see
``bot/channels/api.py``) and prints the bot's texts and buttons. ``scripts/run.sh shell``
starts the action server and the Rasa server in the background first (the same entry points
as ``make run``) and stops them when this exits (end of input or Ctrl-C).

Options: ``--url`` (default ``http://127.0.0.1:5005``), ``--sender`` (default
``shell-<random>``), ``--customer cust-anna`` (sent as ``metadata.customer.id``, so the
bot acts for that customer), ``--wait SECONDS`` (wait for the server to come up),
``--server-pid PID`` (while waiting, give up when that process has exited). Type the
number of a button to press it.
"""
from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, TextIO, Tuple
from urllib.parse import urlsplit

import requests

__all__ = ["format_replies", "main"]

DEFAULT_URL = "http://127.0.0.1:5005"
WEBHOOK_PATH = "/webhooks/api/webhook"
HEALTH_PATH = "/webhooks/api/"
REQUEST_TIMEOUT = 120.0
PROMPT = "you> "


Button = Tuple[str, str]


def format_replies(replies: List[Dict[str, Any]]) -> Tuple[List[str], List[Button]]:
    """The lines to print for the bot's replies, and the buttons in order.

    Args:
        replies: The API channel's answer (Rasa's REST shape).

    Returns:
        ``(lines, buttons)``: lines to print; buttons as ``(title, payload)``, numbered from
        1 in the lines.
    """
    lines: List[str] = []
    buttons: List[Button] = []
    for reply in replies:
        if reply.get("text"):
            lines.append(f"bot> {reply['text']}")
        for button in reply.get("buttons") or []:
            title = str(button.get("title") or button.get("payload") or "")
            buttons.append((title, str(button.get("payload") or title)))
            lines.append(f"     [{len(buttons)}] {title}")
        if reply.get("image"):
            lines.append(f"     (image: {reply['image']})")
        custom = reply.get("custom")
        if isinstance(custom, dict) and custom.get("format") == "markdown":
            # an FAQ answer: the text is its summary, the widget draws the whole article
            size = len(str(custom.get("markdown") or ""))
            lines.append(f"     (the widget also shows the whole article, {size} characters)")
        elif custom is not None:
            lines.append(f"     (custom: {custom})")
    if not lines:
        lines.append("bot> (no reply)")
    return lines, buttons


def _session(url: str) -> requests.Session:
    session = requests.Session()
    host = (urlsplit(url).hostname or "").lower()
    if host in ("localhost", "127.0.0.1", "::1"):
        session.trust_env = False  # never send a loopback call (and its token) to a proxy
    return session


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a child that exited but was not reaped yet
        finished, _ = os.waitpid(pid, os.WNOHANG)
        return finished == 0
    except ChildProcessError:
        return True


def _wait(session: requests.Session, url: str, seconds: float, pids: Sequence[int],
          out: TextIO) -> bool:
    deadline = time.monotonic() + seconds
    out.write(f"waiting for the bot at {url} ...\n")
    out.flush()
    while time.monotonic() < deadline:
        dead = [pid for pid in pids if not _alive(pid)]
        if dead:
            out.write(f"a server process ({', '.join(map(str, dead))}) exited during start-up; "
                      "see var/rasa.log and var/actions.log\n")
            return False
        try:
            if session.get(url + HEALTH_PATH, timeout=2).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.5)
    out.write(f"the bot did not answer within {seconds:.0f} s\n")
    return False


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot.shell",
        description="Chat with the bot through the authenticated API channel.")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"Rasa server (default {DEFAULT_URL})")
    parser.add_argument("--sender", help="conversation id (default shell-<random>)")
    parser.add_argument("--customer", help="customer id the bot acts for, e.g. cust-anna")
    parser.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                        help="wait up to SECONDS for the server first")
    parser.add_argument("--server-pid", type=int, action="append", default=[], metavar="PID",
                        help="while waiting, stop when this process exits (repeatable)")
    return parser


def main(argv: Optional[Sequence[str]] = None, stdin: TextIO = sys.stdin,
         out: TextIO = sys.stdout) -> int:
    """Run the chat loop until end of input or Ctrl-C.

    Args:
        argv: Command-line arguments (default ``sys.argv[1:]``).
        stdin: Where messages are read from.
        out: Where the conversation is printed.

    Returns:
        The exit status.
    """
    from bot.settings import get_settings

    args = _parser().parse_args(argv)
    # Ctrl-C ends the chat even when started with SIGINT ignored (e.g. from a background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    token = get_settings().api_token
    if not token:
        print("No API token: set SUPPORT_API_TOKEN (or SUPPORT_API_TOKEN_FILE), or run "
              "`make run` once to generate var/api_token.", file=sys.stderr)
        return 2
    url = args.url.rstrip("/")
    sender = args.sender or f"shell-{secrets.token_hex(4)}"
    session = _session(url)
    session.headers["Authorization"] = f"Bearer {token}"
    if args.wait and not _wait(session, url, args.wait, args.server_pid, out):
        return 1
    metadata = {"customer": {"id": args.customer}} if args.customer else None
    out.write(f"Chatting as {sender!r}"
              f"{f' for customer {args.customer!r}' if args.customer else ''}. "
              "Ctrl-D or Ctrl-C ends.\n")
    out.flush()
    buttons: List[Button] = []
    try:
        while True:
            if stdin is sys.stdin and out is sys.stdout:
                try:
                    line = input(PROMPT)
                except EOFError:
                    break
            else:
                out.write(PROMPT)
                out.flush()
                line = stdin.readline()
                if not line:
                    break
            message = line.strip()
            if not message:
                continue
            if message.isdigit() and 1 <= int(message) <= len(buttons):
                message = buttons[int(message) - 1][1]
            body: Dict[str, Any] = {"sender": sender, "message": message}
            if metadata:
                body["metadata"] = metadata
            try:
                answer = session.post(url + WEBHOOK_PATH, json=body, timeout=REQUEST_TIMEOUT)
            except requests.RequestException as error:
                out.write(f"(cannot reach the bot: {error})\n")
                continue
            if answer.status_code != 200:
                out.write(f"(the bot answered {answer.status_code}: {answer.text[:300]})\n")
                continue
            lines, buttons = format_replies(answer.json())
            out.write("\n".join(lines) + "\n")
            out.flush()
    except KeyboardInterrupt:
        pass
    out.write("\nbye\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
