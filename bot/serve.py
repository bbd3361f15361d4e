"""The Rasa server without a secret on its command line: ``python -m bot.serve``.

``python -m bot.serve --model models/support.tar.gz --credentials credentials.yml
--endpoints endpoints.yml --port 5005`` does what ``rasa run --enable-api --auth-token ...``
did, through Rasa's own serving code (:func:`rasa.core.run.serve_application`), with these
differences (docs/deployment.md, docs/security.md):

* the HTTP API token comes from ``RASA_TOKEN`` (or ``RASA_TOKEN_FILE``, else
  ``var/rasa_token``), never from ``argv`` (which every local user can read in
  ``/proc/<pid>/cmdline``); without one the server refuses to start;
* it listens on ``RASA_INTERFACE`` (default ``127.0.0.1``), not on every interface;
* every call to the action server carries ``Authorization: Bearer <ACTION_SERVER_TOKEN>``:
  the header is added to the action endpoint Rasa read from the endpoints file, so the
  secret is in no file that is committed;
* action-server responses are checked against Rasa's schema by a validator built once
  (:mod:`bot.action_validation`), not rebuilt for every call;
* with ``SUPPORT_ENV=production`` it refuses to start on a demo default
  (:mod:`bot.production`, plus an SQLite or missing tracker store in the endpoints file).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, List, Optional, Sequence

from bot.settings import Settings, get_settings

__all__ = ["authorize_action_endpoint", "endpoint_problems", "main"]

DEFAULT_PORT = 5005


def authorize_action_endpoint(endpoints: Any, token: str) -> None:
    """Make Rasa send the action-server secret with every action call.

    :class:`rasa.utils.endpoints.EndpointConfig` adds its ``headers`` to each request it
    makes (``request()`` merges them last, so nothing else overrides the header).

    Args:
        endpoints: The :class:`rasa.core.utils.AvailableEndpoints` read from the file.
        token: ``ACTION_SERVER_TOKEN``.

    Raises:
        ValueError: The endpoints file configures no action endpoint.
    """
    action = getattr(endpoints, "action", None)
    if action is None or not action.url:
        raise ValueError("the endpoints file has no action_endpoint (url: .../webhook)")
    headers = {key: value for key, value in (action.headers or {}).items()
               if key.lower() != "authorization"}
    headers["Authorization"] = f"Bearer {token}"
    action.headers = headers


def endpoint_problems(endpoints: Any) -> List[str]:
    """Demo defaults of an endpoints file, for a production start.

    Args:
        endpoints: The :class:`rasa.core.utils.AvailableEndpoints`.

    Returns:
        One line per problem, naming ``RASA_ENDPOINTS``.
    """
    problems: List[str] = []
    tracker_store = getattr(endpoints, "tracker_store", None)
    if tracker_store is None:
        problems.append(
            "RASA_ENDPOINTS: the endpoints file has no tracker_store (conversations would be "
            "kept in memory); use deploy/endpoints.production.yml.")
    elif str(tracker_store.kwargs.get("dialect", "")).lower() == "sqlite" or (
        str(tracker_store.url or "").lower().startswith("sqlite")
    ):
        problems.append(
            "RASA_ENDPOINTS: the tracker store is SQLite (the embedded endpoints.yml); use "
            "deploy/endpoints.production.yml (PostgreSQL).")
    return problems


def _refuse(message: str) -> int:
    print(f"Rasa server: refusing to start: {message}", file=sys.stderr, flush=True)
    return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot.serve",
        description="Run the Rasa server (HTTP API on, token from RASA_TOKEN) on RASA_INTERFACE.")
    parser.add_argument("--model", required=True, help="trained model (models/support.tar.gz)")
    parser.add_argument("--credentials", required=True, help="channels (credentials.yml)")
    parser.add_argument("--endpoints", required=True,
                        help="endpoints file (endpoints.yml or deploy/endpoints.production.yml)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port (default {DEFAULT_PORT}; Procfile: $RASA_PORT)")
    return parser


def _configure_logging() -> None:
    """What ``rasa`` (``rasa/__main__.py``) sets up before running a command."""
    import rasa.utils.io
    from rasa.utils.common import configure_logging_and_warnings
    from rasa.utils.log_utils import configure_structlog
    from rasa.utils.tensorflow import environment as tf_env

    configure_logging_and_warnings(None, None, warn_only_once=True, filter_repeated_logs=True)
    tf_env.setup_tf_environment()
    tf_env.check_deterministic_ops()
    rasa.utils.io.configure_colored_logging(None)
    configure_structlog(None)


def _serve(settings: Settings, args: argparse.Namespace, token: str, endpoints: Any) -> None:
    import rasa.core.run

    from bot import action_validation, multi_request, resilience

    action_validation.install()  # Rasa's per-call schema check, built once (issue 14)
    resilience.install()  # tracker/lock stores ride out short service outages (issue 13)
    multi_request.install()  # each request of a message that asks several things (issue 12)

    rasa.core.run.serve_application(
        model_path=args.model,
        credentials=args.credentials,
        interface=settings.rasa_interface,
        port=args.port,
        auth_token=token,
        enable_api=True,
        endpoints=endpoints,
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Check the configuration, then run the Rasa server until stopped.

    Args:
        argv: Command-line arguments (default ``sys.argv[1:]``); no secrets among them.

    Returns:
        The exit status (2: refused to start).
    """
    from bot.production import enforce_production, rasa_token

    from bot.startup import exit_on_bad_configuration

    args = _parser().parse_args(argv)
    exit_on_bad_configuration("Rasa server")
    settings = get_settings()
    token = rasa_token(settings)
    if not token:
        return _refuse(
            "no token for the HTTP API. Set RASA_TOKEN (or RASA_TOKEN_FILE) in the environment, "
            f"or create {settings.var_dir / 'rasa_token'} (`make run` does); it is never "
            "taken from the command line.")
    action_token = settings.action_server_token
    if not action_token:
        return _refuse(
            "no ACTION_SERVER_TOKEN, the secret the action server requires. Set "
            "ACTION_SERVER_TOKEN (or ACTION_SERVER_TOKEN_FILE), or create "
            f"{settings.var_dir / 'action_server_token'} (`make run` does).")
    for name, path in (("--model", args.model), ("--credentials", args.credentials),
                       ("--endpoints", args.endpoints)):
        if not os.path.isfile(path):
            return _refuse(f"{name} {path}: no such file.")

    from rasa.core.utils import AvailableEndpoints
    from rasa.shared.exceptions import RasaException

    try:
        endpoints = AvailableEndpoints.read_endpoints(args.endpoints)
        authorize_action_endpoint(endpoints, action_token)
    except (RasaException, ValueError) as error:
        return _refuse(f"{args.endpoints}: {error}")
    enforce_production(settings, "Rasa server", endpoint_problems(endpoints))

    _configure_logging()
    sys.path.insert(1, os.getcwd())  # like `rasa`: custom components next to the project
    _serve(settings, args, token, endpoints)
    return 0


if __name__ == "__main__":
    sys.exit(main())
