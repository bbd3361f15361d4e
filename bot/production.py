"""Refuse to run production on a demo default (docs/deployment.md, docs/security.md).

``make run`` is a development launcher: it generates secrets into ``var/``, starts the demo
shop (a token issuer) and seeds demo agent accounts. None of that may leak into a production
start. With ``SUPPORT_ENV=production`` the entry points (``bot/serve.py``,
``bot/action_server.py``) call :func:`enforce_production`, which stops the process with a
list of problems, each naming the setting to change:

* a secret (``RASA_TOKEN``, ``ACTION_SERVER_TOKEN``, ``SUPPORT_API_TOKEN``,
  ``WIDGET_JWT_SECRET``, ``AGENT_METRICS_TOKEN``) read from the ``var/`` file ``make run``
  generates instead of being given explicitly (``NAME`` or ``NAME_FILE``);
* a secret shorter than 32 bytes, equal to another one, or equal to a value committed in
  this repository (the test secrets, the ``change-me`` placeholders of the example env
  files...);
* ``WIDGET_JWT_AUDIENCE`` / ``WIDGET_JWT_ISSUER`` unset, ``WIDGET_ALLOWED_ORIGINS`` on
  localhost, no widget key;
* SQLite databases (``SUPPORT_DB_URL`` / ``ORDERS_DB_URL`` unset), a committed database
  password, ``TWILIO_API_BASE`` set (the test fake);
* agent push without its VAPID key pair (``VAPID_PRIVATE_KEY`` and the matching
  ``VAPID_PUBLIC_KEY``) or ``VAPID_SUBJECT`` (``PUSH_ENABLED=false`` goes without push);
* the demo agent accounts (``demo-agent``, ``demo-admin``) in the support database.

``python -m bot.production`` runs the same checks as a pre-flight (exit status 1 on
problems). Demo-only programs (the demo shop, ``scripts/seed_agents.py``) call
:func:`refuse_in_production`. Nothing here runs at import time.
"""
from __future__ import annotations

import asyncio
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from bot.settings import PROJECT_ROOT, Settings, _secret

__all__ = [
    "DEMO_AGENT_USERNAMES",
    "MIN_SECRET_BYTES",
    "check_production",
    "demo_agent_problems",
    "enforce_production",
    "production_problems",
    "rasa_token",
    "refuse_in_production",
]

#: The agent accounts ``scripts/seed_agents.py`` creates for ``make run``.
DEMO_AGENT_USERNAMES: Tuple[str, ...] = ("demo-agent", "demo-admin")
#: The shortest secret accepted in production.
MIN_SECRET_BYTES = 32
#: Exit status of a refused start.
EXIT_REFUSED = 2

#: Committed values that must never be a production secret, also when the files that
#: contain them (tests/, the example env files) are not deployed. The repository scan in
#: :func:`_committed_in` finds every other committed value.
_KNOWN_PUBLIC_VALUES: FrozenSet[str] = frozenset({
    "change-me", "changeme", "secret", "password", "guest", "admin", "rasa", "token",
    # tests/servers.py, tests/browser, tests/agent_console, tests/twilio, bench/
    "test-widget-secret-0123456789abcdefghijklmnopqrstuvwxyz",
    "demo-app-test-secret-0123456789abcdef0123456789",
    "test-metrics-token-0123456789",
    "test-twilio-auth-token-0123456789",
    "bench-widget-secret-" + "x" * 32,
})
#: Example env files whose values are public (relative to the project root).
_EXAMPLE_ENV_FILES: Tuple[str, ...] = (".env.example", "deploy/production.env.example")
#: Where committed text lives; everything else (``.venv``, ``var``, ``models``) is skipped.
_SKIP_DIRS: FrozenSet[str] = frozenset({
    ".git", ".venv", "venv", "var", "models", "results", "test-output", "__pycache__",
    ".pytest_cache", ".rasa", "node_modules", ".mypy_cache",
})
_TEXT_SUFFIXES: FrozenSet[str] = frozenset({
    ".py", ".md", ".yml", ".yaml", ".example", ".sh", ".js", ".html", ".css", ".json",
    ".txt", ".ini", ".toml", ".cfg", ".mako", ".production",
})
_TEXT_NAMES: FrozenSet[str] = frozenset({"Makefile", "Procfile", ".gitignore"})
_MAX_SCANNED_BYTES = 4 * 1024 * 1024
_LOOPBACK_HOSTS: FrozenSet[str] = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0"})


@dataclass(frozen=True)
class _Secret:
    """One secret setting: its variable, its value and the ``var/`` file ``make run`` writes."""

    name: str
    value: Optional[str]
    var_file: Optional[str]


def rasa_token(settings: Settings) -> Optional[str]:
    """The token of Rasa's HTTP API: ``RASA_TOKEN``, ``RASA_TOKEN_FILE`` or ``var/rasa_token``.

    Read like every other secret of :mod:`bot.settings` (environment first, then the file).

    Args:
        settings: The process settings (for ``var_dir``).

    Returns:
        The token, or None when none is configured.
    """
    return _secret("RASA_TOKEN", settings.var_dir / "rasa_token")


def _secrets(settings: Settings) -> List[_Secret]:
    widget_secret = settings.widget_jwt_secret if settings.widget_jwt_algorithm == "HS256" else None
    return [
        _Secret("RASA_TOKEN", rasa_token(settings), "rasa_token"),
        _Secret("ACTION_SERVER_TOKEN", settings.action_server_token, "action_server_token"),
        _Secret("SUPPORT_API_TOKEN", settings.api_token, "api_token"),
        _Secret("WIDGET_JWT_SECRET", widget_secret, "widget_jwt_secret"),
        _Secret("AGENT_METRICS_TOKEN", settings.agent_metrics_token, "agent_metrics_token"),
        _Secret("TWILIO_AUTH_TOKEN", settings.twilio_auth_token, None),
        _Secret("SUPPORT_NOTIFY_SECRET", settings.notify_webhook_secret, None),
        _Secret("VAPID_PRIVATE_KEY", settings.push.vapid_private_key
                if settings.push and settings.push.stage else None, "vapid_private_key"),
        _Secret("MAIL_UNSUBSCRIBE_SECRET", settings.mail.unsubscribe_secret
                if settings.mail and settings.mail.enabled else None, "mail_unsubscribe_secret"),
    ]


def _from_var_file(
    secret: _Secret, settings: Settings, environ: Mapping[str, str]
) -> Optional[Path]:
    """The generated ``var/`` file a secret was read from, or None if it was given explicitly."""
    if secret.value is None or secret.var_file is None:
        return None
    if environ.get(secret.name, "").strip():
        return None
    default = (settings.var_dir / secret.var_file).resolve()
    file_name = environ.get(f"{secret.name}_FILE", "").strip()
    if file_name and Path(file_name).expanduser().resolve() != default:
        return None
    return default


def _env_file_values(path: Path) -> Dict[str, str]:
    values: Dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return values
    for line in lines:
        match = re.match(r"^\s*([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            values[match.group(1)] = match.group(2).strip().strip("'\"")
    return values


def _url_password(url: str) -> Optional[str]:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def _public_values(root: Path) -> FrozenSet[str]:
    """Passwords and secrets that are public: built in, plus those of the example env files."""
    values = set(_KNOWN_PUBLIC_VALUES)
    for relative in _EXAMPLE_ENV_FILES:
        for name, value in _env_file_values(root / relative).items():
            if not value:
                continue
            if re.search(r"PASSWORD|SECRET|TOKEN", name):
                values.add(value)
            password = _url_password(value) if "://" in value else None
            if password:
                values.add(password)
    return frozenset(values)


def _committed_files(root: Path, skip: Iterable[Path]) -> Iterable[Path]:
    skipped = {path.resolve() for path in skip}
    for directory, dirs, files in os.walk(root):
        here = Path(directory)
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and (here / d).resolve() not in skipped)
        for name in sorted(files):
            path = here / name
            if name == ".env" or name.endswith(".env"):
                continue  # local configuration (git-ignored), not committed
            if path.suffix not in _TEXT_SUFFIXES and name not in _TEXT_NAMES:
                continue
            if path.resolve() in skipped:
                continue
            yield path


def _committed_in(
    secrets: Mapping[str, str], root: Path, skip: Iterable[Path]
) -> Dict[str, Path]:
    """For each secret found verbatim in a committed text file: the first such file."""
    found: Dict[str, Path] = {}
    wanted = {name: value.encode() for name, value in secrets.items() if len(value) >= 8}
    if not wanted:
        return found
    for path in _committed_files(root, skip):
        try:
            if path.stat().st_size > _MAX_SCANNED_BYTES:
                continue
            content = path.read_bytes()
        except OSError:
            continue
        for name, value in wanted.items():
            if name not in found and value in content:
                found[name] = path
        if len(found) == len(wanted):
            break
    return found


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _secret_problems(
    settings: Settings, environ: Mapping[str, str], root: Path
) -> List[str]:
    problems: List[str] = []
    secrets = [s for s in _secrets(settings) if s.value is not None]
    public = _public_values(root)
    skip = [settings.var_dir]
    for secret in secrets:
        explicit_file = environ.get(f"{secret.name}_FILE", "").strip()
        if explicit_file:
            skip.append(Path(explicit_file).expanduser())
    committed = _committed_in(
        {s.name: s.value for s in secrets if s.value not in public}, root, skip)
    for secret in secrets:
        value = secret.value or ""
        generated = _from_var_file(secret, settings, environ)
        if generated is not None:
            problems.append(
                f"{secret.name}: read from {generated}, the development secret `make run` "
                f"generates; set {secret.name} (or {secret.name}_FILE) explicitly to a new "
                "random value.")
        if value in public:
            problems.append(
                f"{secret.name}: is a value committed in this repository (an example or test "
                "value); set a new random value.")
        elif secret.name in committed:
            problems.append(
                f"{secret.name}: appears in the committed file "
                f"{_relative(committed[secret.name], root)}; set a new random value.")
        if len(value.encode()) < MIN_SECRET_BYTES:
            problems.append(
                f"{secret.name}: is {len(value.encode())} bytes long; use at least "
                f"{MIN_SECRET_BYTES} random bytes (python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))').")
    seen: Dict[str, str] = {}
    for secret in secrets:
        if secret.value in seen:
            problems.append(
                f"{secret.name}: has the same value as {seen[secret.value]}; every secret "
                "must be different.")
        else:
            seen[secret.value or ""] = secret.name
    return problems


def _password_problems(
    settings: Settings, environ: Mapping[str, str], root: Path
) -> List[str]:
    problems: List[str] = []
    public = _public_values(root)
    for name in ("RASA_DB_PASSWORD", "REDIS_PASSWORD", "RABBITMQ_PASSWORD"):
        value = environ.get(name, "")
        if value and value in public:
            problems.append(
                f"{name}: is a value committed in this repository ({value!r}); set the real "
                "password.")
    for name, url in (("SUPPORT_DB_URL", settings.support_db_url),
                      ("ORDERS_DB_URL", settings.orders_db_url)):
        password = _url_password(url)
        if password and password in public:
            problems.append(
                f"{name}: its password is a value committed in this repository; set the real "
                "password.")
    return problems


def _origin_is_local(origin: str) -> bool:
    if origin.strip() == "*":
        return True
    try:
        host = (urlsplit(origin).hostname or "").lower()
    except ValueError:
        return False
    return host in _LOOPBACK_HOSTS or host.endswith(".localhost") or host.startswith("127.")


def check_production(
    settings: Settings,
    environ: Optional[Mapping[str, str]] = None,
    root: Optional[Path] = None,
) -> List[str]:
    """The demo defaults a production start must not run on (no database access).

    Args:
        settings: The settings to check (whatever ``SUPPORT_ENV`` says).
        environ: The environment the settings were read from (default ``os.environ``); it
            tells a secret given explicitly from one read from a generated ``var/`` file,
            and holds the passwords Rasa reads (``RASA_DB_PASSWORD`` ...).
        root: The project tree whose committed values are public (default: this project).

    Returns:
        One line per problem, each starting with the variable to change; empty when fine.
    """
    environ = os.environ if environ is None else environ
    root = PROJECT_ROOT if root is None else root
    problems = _secret_problems(settings, environ, root)

    if settings.widget_jwt_algorithm == "HS256" and not settings.widget_jwt_secret:
        problems.append(
            "WIDGET_JWT_SECRET: not set; the widget channel cannot verify customer tokens "
            "(or use WIDGET_JWT_ALGORITHM=RS256 with WIDGET_JWT_PUBLIC_KEY).")
    if settings.widget_jwt_algorithm == "RS256" and not settings.widget_jwt_public_key:
        problems.append("WIDGET_JWT_PUBLIC_KEY: not set (WIDGET_JWT_ALGORITHM=RS256).")
    if not settings.widget_jwt_audience:
        problems.append(
            "WIDGET_JWT_AUDIENCE: not set; tokens signed for another service would be "
            "accepted. Set the aud claim the shop's backend puts in customer tokens.")
    if not settings.widget_jwt_issuer:
        problems.append(
            "WIDGET_JWT_ISSUER: not set; set the iss claim the shop's backend puts in "
            "customer tokens.")
    local = [o for o in settings.widget_allowed_origins if _origin_is_local(o)]
    if local:
        problems.append(
            f"WIDGET_ALLOWED_ORIGINS: allows {', '.join(local)} (the demo default); set the "
            "https origins of your web app.")

    for name, url in (("SUPPORT_DB_URL", settings.support_db_url),
                      ("ORDERS_DB_URL", settings.orders_db_url)):
        if url.lower().startswith("sqlite"):
            problems.append(
                f"{name}: {'not set, ' if not environ.get(name) else ''}a SQLite database "
                f"({url}); set a PostgreSQL URL (postgresql://user:password@host:5432/db).")
    problems.extend(_password_problems(settings, environ, root))

    if settings.twilio_api_base:
        problems.append(
            f"TWILIO_API_BASE: set ({settings.twilio_api_base}), which sends Twilio calls "
            "(with the auth token) to a test fake; unset it.")
    problems.extend(_push_problems(settings, environ))
    problems.extend(_mail_problems(settings))
    return problems


def _mail_problems(settings: Settings) -> List[str]:
    """Email to customers (bot/mail), when it is on: links that work and can't be forged."""
    mail = settings.mail
    if mail is None or not mail.enabled:
        return []
    problems: List[str] = []
    if not mail.unsubscribe_secret:
        problems.append(
            "MAIL_UNSUBSCRIBE_SECRET: not set; it signs the unsubscribe links in every email "
            "(or set MAIL_ENABLED=false).")
    for name, url in (("MAIL_PUBLIC_URL", mail.public_url),
                      ("APP_LINK_BASE", mail.app_link_base)):
        parts = urlsplit(url)
        if parts.scheme != "https" or _origin_is_local(f"https://{parts.hostname or ''}"):
            problems.append(
                f"{name}: {url!r}; emails link there, so set the public https address "
                f"({'this Rasa server' if name == 'MAIL_PUBLIC_URL' else 'the app'}).")
    if not mail.smtp_host:
        problems.append("SMTP_HOST: not set while MAIL_ENABLED=true; set your SMTP relay.")
    return problems


def _push_problems(settings: Settings, environ: Mapping[str, str]) -> List[str]:
    """Agent push (bot/push) needs its VAPID keys and a real contact, unless it is turned
    off explicitly (``PUSH_ENABLED=false``)."""
    from bot.push.keys import key_problems

    if environ.get("PUSH_ENABLED", "").strip().lower() in ("false", "0", "no", "off"):
        return []
    push = settings.push
    if push is None:
        return []
    problems = [f"{p} Or set PUSH_ENABLED=false (no push notifications to agents)."
                if p.startswith(("VAPID_PRIVATE_KEY: not set", "VAPID_PUBLIC_KEY: not set"))
                else p
                for p in key_problems(push.vapid_private_key, push.vapid_public_key,
                                      push.vapid_subject)]
    if not environ.get("VAPID_SUBJECT", "").strip():
        problems.append(
            "VAPID_SUBJECT: not set; push services contact this address about your pushes "
            "(mailto:ops@your-company.com or an https: URL).")
    return problems


async def demo_agent_problems(support_db_url: str) -> List[str]:
    """Problems for the demo agent accounts found active in the support database.

    A database without the agents table (not migrated yet) has none. An unreachable
    database is a problem too: the check cannot be made.

    Args:
        support_db_url: The support database (``SUPPORT_DB_URL``).

    Returns:
        One line per demo account (naming ``SUPPORT_DB_URL``), or the connection error.
    """
    import sqlalchemy as sa

    from bot import db

    if support_db_url.lower().startswith("sqlite"):
        database = sa.engine.make_url(support_db_url).database
        if not database or database == ":memory:" or not Path(database).exists():
            return []
    try:
        engine = db.make_engine(support_db_url)
    except Exception as error:  # noqa: BLE001 - reported as a problem
        return [f"SUPPORT_DB_URL: cannot open the database ({error})."]
    agents = sa.table("agents", sa.column("username"), sa.column("active"))
    try:
        async with engine.connect() as connection:
            has_table = await connection.run_sync(
                lambda sync: sa.inspect(sync).has_table("agents"))
            if not has_table:
                return []
            rows = await connection.execute(
                sa.select(agents.c.username)
                .where(agents.c.username.in_(DEMO_AGENT_USERNAMES))
                .where(agents.c.active == sa.true())
                .order_by(agents.c.username))
            found = [row[0] for row in rows]
    except Exception as error:  # noqa: BLE001 - reported as a problem
        return [f"SUPPORT_DB_URL: cannot check the support database for demo agent "
                f"accounts ({type(error).__name__}: {error})."]
    finally:
        await engine.dispose()
    return [
        f"SUPPORT_DB_URL: the support database has the demo agent account {username!r} "
        "(scripts/seed_agents.py, its password is in a file); delete or deactivate it."
        for username in found
    ]


async def production_problems(
    settings: Settings,
    environ: Optional[Mapping[str, str]] = None,
    root: Optional[Path] = None,
) -> List[str]:
    """:func:`check_production` plus :func:`demo_agent_problems` (reads the database)."""
    problems = check_production(settings, environ, root)
    problems.extend(await demo_agent_problems(settings.support_db_url))
    return problems


def _report(component: str, problems: Sequence[str]) -> None:
    lines = [
        f"{component}: refusing to start in production (SUPPORT_ENV=production): "
        f"{len(problems)} setting(s) still have a demo default. Change:",
        *(f"  - {problem}" for problem in problems),
        "See docs/deployment.md (deploy/production.env.example lists every variable).",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)


def enforce_production(
    settings: Settings, component: str, extra_problems: Sequence[str] = ()
) -> None:
    """In production, stop the process (exit status 2) when a demo default is found.

    Call it at start-up, before serving (it runs its own event loop for the database
    check, so not from inside a running loop). Does nothing unless ``settings.production``.

    Args:
        settings: The process settings.
        component: What is starting, for the message (``action server``, ``Rasa server``).
        extra_problems: Problems the caller found itself (e.g. in the endpoints file).

    Raises:
        SystemExit: With status 2 and the list of problems on stderr.
    """
    if not settings.production:
        return
    problems = list(extra_problems) + asyncio.run(production_problems(settings))
    if problems:
        _report(component, problems)
        raise SystemExit(EXIT_REFUSED)


def refuse_in_production(settings: Settings, component: str) -> None:
    """Stop a development-only program (the demo shop, the demo seeding) in production.

    Args:
        settings: The process settings.
        component: The program, for the message.

    Raises:
        SystemExit: With status 2 when ``SUPPORT_ENV=production``.
    """
    if settings.production:
        print(
            f"{component} is part of the development demo and never runs in production "
            "(SUPPORT_ENV=production). Production runs deploy/Procfile.production: the Rasa "
            "server and the action server only.",
            file=sys.stderr, flush=True)
        raise SystemExit(EXIT_REFUSED)


def main() -> int:
    """``python -m bot.production``: check the environment as a production start would."""
    from bot.settings import get_settings

    problems = asyncio.run(production_problems(get_settings()))
    if problems:
        _report("pre-flight check", problems)
        return 1
    print("production check: no demo defaults found")
    return 0


if __name__ == "__main__":
    sys.exit(main())
