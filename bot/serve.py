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
  (:mod:`bot.production`, plus an SQLite or missing tracker store in the endpoints file);
* with ``RASA_REUSE_PORT=true`` it binds its listening socket itself with ``SO_REUSEPORT``
  (and ``SO_REUSEADDR``) and hands it to Sanic, so several Rasa processes share one
  host:port and the kernel spreads new connections over them (``python -m bot.supervise``
  runs ``RASA_PROCESSES`` of them; docs/deployment.md "One Rasa process per core"). The
  socket is bound before the model is loaded but only *listens* once it is loaded (Sanic
  calls ``listen()`` after its ``before_server_start`` listeners), and the kernel hands
  connections only to listening sockets: a process that is (re)starting gets none.
"""
from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import socket
import sys
from typing import Any, Iterator, List, Optional, Sequence

from bot.settings import Settings, get_settings

__all__ = ["ReusePortUnavailable", "authorize_action_endpoint", "endpoint_problems", "main",
           "reuse_port_problems", "reuse_port_socket", "single_threaded_blas"]

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


class ReusePortUnavailable(OSError):
    """This system cannot share a listening port between processes (no ``SO_REUSEPORT``)."""


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEADDR`` and ``SO_REUSEPORT``,
    **not yet listening**.

    Sanic (through asyncio/uvloop ``create_server(sock=...)``) calls ``listen()`` when it
    starts serving, after Rasa has loaded the model. Until then the kernel gives this socket
    no connection: they all go to the processes of the group that already listen.

    Args:
        host: ``RASA_INTERFACE`` (an IPv4/IPv6 address or a host name).
        port: The shared port.

    Raises:
        ReusePortUnavailable: ``SO_REUSEPORT`` is missing or refused by the kernel.
        OSError: The address cannot be bound (e.g. held by a process without
            ``SO_REUSEPORT``, or by another user: Linux shares a port only between
            processes of the same effective user).
    """
    option = getattr(socket, "SO_REUSEPORT", None)
    if option is None or not sys.platform.startswith("linux"):
        # macOS and the BSDs have the option, but it does not spread connections there.
        raise ReusePortUnavailable(
            f"this platform ({sys.platform}) has no SO_REUSEPORT that spreads connections "
            "over processes (Linux 3.9+ has); several Rasa processes cannot share a port here. "
            "Unset RASA_REUSE_PORT and put a load balancer in front of one port per process.")
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        address: Any = (host, port)
    except ValueError:  # a host name
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, 1)
        except OSError as error:
            raise ReusePortUnavailable(
                f"the kernel refuses SO_REUSEPORT ({error.strerror or error}); several Rasa "
                "processes cannot share a port here. Unset RASA_REUSE_PORT.") from None
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def reuse_port_problems(settings: Settings, endpoints: Any) -> List[str]:
    """Why ``RASA_REUSE_PORT=true`` would be unsafe with this configuration.

    Processes that share a port share every conversation: each needs the Redis lock store
    (one message at a time per conversation across processes) and ``REDIS_URL`` (live
    frames between processes, no sticky sessions).
    """
    problems: List[str] = []
    lock_store = getattr(endpoints, "lock_store", None)
    kind = str(getattr(lock_store, "type", "") or "").lower() if lock_store else ""
    if kind in ("", "in_memory"):
        problems.append(
            "RASA_REUSE_PORT=true: the endpoints file has the in-memory lock store, which "
            "cannot stop two processes from answering one conversation at once; use the Redis "
            "lock store (deploy/endpoints.production.yml).")
    if not settings.redis_url:
        problems.append(
            "RASA_REUSE_PORT=true: REDIS_URL is not set, so live frames (agent replies, typing, "
            "receipts) would not reach sockets on the other processes; set REDIS_URL.")
    workers = os.environ.get("SANIC_WORKERS", "").strip()
    if workers not in ("", "1"):
        problems.append(
            f"RASA_REUSE_PORT=true with SANIC_WORKERS={workers}: run one process per core with "
            "RASA_PROCESSES (python -m bot.supervise) instead of Sanic workers.")
    return problems


@contextlib.contextmanager
def _sanic_serves_on(sock: socket.socket) -> Iterator[None]:
    """Make Rasa's ``app.run(host=..., port=..., ...)`` serve on ``sock`` instead.

    :func:`rasa.core.run.serve_application` builds the app and calls ``app.run`` itself;
    this replaces only the address of that one call (everything else Rasa passes, SSL,
    backlog, workers, is kept). This process runs one server, so patching the class for
    the duration of the call is enough.
    """
    from sanic import Sanic

    original = Sanic.run

    def run(app: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop("host", None)
        kwargs.pop("port", None)
        return original(app, *args, sock=sock, **kwargs)

    Sanic.run = run  # type: ignore[assignment]
    try:
        yield
    finally:
        Sanic.run = original  # type: ignore[assignment]


def _announce_listening(host: str, port: int) -> Any:
    """An ``after_server_start`` listener: one line once this process accepts connections
    (the supervisor, the tests and operators look for it; Rasa's own "up and running" line
    comes before the socket listens)."""

    async def listening(_app: Any, _loop: Any) -> None:
        print(f"Rasa server: process {os.getpid()} listening on {host}:{port} (SO_REUSEPORT)",
              file=sys.stderr, flush=True)

    return listening


async def _close_action_client(_app: Any, _loop: Any) -> None:
    """An ``after_server_stop`` listener: close the kept action-server connections."""
    from bot import action_client

    await action_client.close()


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


def _serve(settings: Settings, args: argparse.Namespace, token: str, endpoints: Any,
           sock: Optional[socket.socket] = None) -> None:
    import rasa.core.run

    from bot import (action_client, action_validation, event_broker, graph_runner,
                     multi_request, nlu_thread, resilience, rule_lookup, state_cache,
                     tracker_cache)

    action_validation.install()  # Rasa's per-call schema check, built once (issue 14)
    resilience.install()  # tracker/lock stores ride out short service outages (issue 13)
    tracker_cache.install()  # ...and the tracker store keeps current sessions (issue 14)
    multi_request.install()  # each request of a message that asks several things (issue 12)
    nlu_thread.install()  # the NLU graph in a worker thread, off the event loop (issue 14)
    event_broker.install()  # RabbitMQ publishing without a deep copy per event (issue 14)
    graph_runner.install()  # the model's graphs without dask's scheduler per run (issue 14)
    rule_lookup.install()  # the rule policy's matching without repeated decoding (issue 14)
    state_cache.install()  # ...and its conversation states built once per event (issue 14)
    action_client.install()  # action-server requests on kept connections (issue 14)

    serve = contextlib.nullcontext() if sock is None else _sanic_serves_on(sock)
    listeners = [] if sock is None else [
        (_announce_listening(settings.rasa_interface, args.port), "after_server_start")]
    listeners.append((_close_action_client, "after_server_stop"))
    with serve:
        rasa.core.run.serve_application(
            model_path=args.model,
            credentials=args.credentials,
            interface=settings.rasa_interface,
            port=args.port,
            auth_token=token,
            enable_api=True,
            endpoints=endpoints,
            server_listeners=listeners or None,
        )


#: The BLAS/OpenMP thread pools NumPy, SciPy and scikit-learn may start, and their size here.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def single_threaded_blas() -> None:
    """One BLAS thread, unless the environment says otherwise (call before NumPy loads).

    The NLU multiplies one message's small matrices at a time, which gains nothing from
    more threads, but NumPy's OpenBLAS starts a thread per core whose idle loop spins on
    ``sched_yield``: measured on the 2-core machine at 50 conversations (issue 14), that
    thread burnt half a core next to the Rasa process's event loop.
    """
    if "numpy" in sys.modules:
        return  # too late to matter; leave the environment as it is
    for name in BLAS_THREAD_VARIABLES:
        os.environ.setdefault(name, "1")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Check the configuration, then run the Rasa server until stopped.

    Args:
        argv: Command-line arguments (default ``sys.argv[1:]``); no secrets among them.

    Returns:
        The exit status (2: refused to start).
    """
    single_threaded_blas()
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

    sock = None
    if settings.rasa_reuse_port:
        problems = reuse_port_problems(settings, endpoints)
        if problems:
            return _refuse(" ".join(problems))
        try:
            sock = reuse_port_socket(settings.rasa_interface, args.port)
        except ReusePortUnavailable as error:
            return _refuse(str(error))
        except OSError as error:
            return _refuse(
                f"cannot bind {settings.rasa_interface}:{args.port} with SO_REUSEPORT: "
                f"{error.strerror or error}. Every process sharing the port must set "
                "RASA_REUSE_PORT=true and run as the same user.")

    _configure_logging()
    sys.path.insert(1, os.getcwd())  # like `rasa`: custom components next to the project
    _serve(settings, args, token, endpoints, sock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
