"""All runtime settings, read from the environment in one place.

Every setting has an embedded default so that ``make run`` works with no
configuration. ``.env.example`` documents each variable. Nothing is read at
import time: call :func:`get_settings` (cached) where a value is needed.
"""
from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Optional, Tuple

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def _optional_dir(name: str, default: Path) -> Optional[Path]:
    """A directory setting that ``off`` (or ``none``, ``false``, ``0``) switches off."""
    value = _env(name, str(default))
    if value.strip().lower() in ("off", "none", "false", "0"):
        return None
    return Path(value).expanduser().resolve()


@dataclass(frozen=True)
class Settings:
    """Resolved settings. Paths are absolute, URLs are SQLAlchemy URLs."""

    var_dir: Path
    support_db_url: str
    orders_db_url: str
    business_tz: str
    business_hours: str
    # --- public holidays and closed days of the support team (bot/business_hours.py) ---
    holidays_country: Optional[str]  # ISO code for the `holidays` package; None: no holidays
    holidays_subdiv: Optional[str]  # its subdivision (state, region); None: nationwide
    closed_dates: Tuple[Tuple[date, str], ...]  # extra closed days with their names ("" unnamed)
    default_customer_tz: str
    default_phone_region: str
    data_dir: Path
    triage_file: Path
    faq_dir: Path
    embedding_model_dir: Path
    embedding_cache_dir: Optional[Path]
    widget_jwt_algorithm: str
    widget_jwt_secret: Optional[str]
    widget_jwt_public_key: Optional[str]
    widget_jwt_audience: Optional[str]
    widget_jwt_issuer: Optional[str]
    widget_jwt_leeway: float
    widget_allowed_origins: Tuple[str, ...]
    widget_max_message_chars: int
    widget_max_frame_bytes: int
    widget_rate_messages: int
    widget_rate_window: float
    widget_max_connections: int
    widget_typing_interval: float
    widget_auth_timeout: float
    widget_token_warning: float
    widget_public_url: str
    demo_host: str
    demo_port: int
    demo_token_ttl: int
    # --- agent console (bot/agent_console, docs/agent-console.md) ---
    agent_session_ttl: int
    agent_metrics_token: Optional[str]
    agent_audit_poll_interval: float
    agent_canned_file: Path
    agent_login_rate: int
    notify_webhook_url: Optional[str] = None
    notify_webhook_secret: Optional[str] = None
    # --- Twilio Conversations bridge (bot/twilio, docs/twilio.md) ---
    twilio_account_sid: Optional[str] = None
    twilio_auth_token: Optional[str] = None
    twilio_public_url: Optional[str] = None
    twilio_api_base: Optional[str] = None
    twilio_bot_identity: str = "support-bot"
    twilio_timeout: float = 10.0
    twilio_max_attempts: int = 5
    twilio_backoff_base: float = 0.5
    twilio_backoff_max: float = 30.0
    twilio_poll_interval: float = 1.0
    twilio_catchup_seconds: int = 3600
    twilio_webhook_filters: Tuple[str, ...] = (
        "onMessageAdded", "onConversationUpdated", "onConversationStateUpdated")
    twilio_handoff_delay: float = 1.0
    # --- Twilio Flex (bot/twilio/flex.py, docs/twilio.md "Flex") ---
    twilio_flex_mode: str = "conversations"  # or "interactions": handoffs become Flex tasks
    twilio_flex_workspace_sid: Optional[str] = None
    twilio_flex_workflow_sid: Optional[str] = None
    twilio_flex_task_channel: str = "chat"
    twilio_flex_worker_cache_seconds: float = 300.0  # worker friendly names kept this long
    # --- Twilio webhook inbox and Retry-After (bot/twilio/inbox.py, docs/twilio.md) ---
    twilio_inbox_max_attempts: int = 8
    twilio_inbox_backoff_base: float = 1.0
    twilio_inbox_backoff_max: float = 300.0
    twilio_inbox_lease: float = 60.0
    twilio_inbox_poll: float = 1.0
    twilio_inbox_drain_timeout: float = 10.0
    twilio_retry_after_max: float = 60.0
    # --- Twilio Voice call-backs (bot/twilio/voice.py, docs/twilio.md "Voice") ---
    twilio_voice_from: Optional[str] = None
    support_line_number: Optional[str] = None
    twilio_callback_poll: float = 5.0
    twilio_callback_max_late: int = 900
    twilio_callback_stale: int = 120
    twilio_callback_greeting: str = (
        "Hello, this is the call-back you booked with Northwind Support. "
        "Please hold while we connect you to an agent.")
    # --- trust boundary (docs/security.md) ---
    support_env: str = "development"
    rasa_interface: str = "127.0.0.1"
    actions_host: str = "127.0.0.1"
    action_server_token: Optional[str] = None
    action_server_max_body: int = 8 * 1024 * 1024
    api_token: Optional[str] = None
    widget_jwt_max_ttl: int = 3600
    widget_preauth_per_ip: int = 10
    widget_frame_rate: float = 5.0
    widget_frame_burst: int = 30
    # --- widget turns and sockets (issue 13, docs/widget-protocol.md#delivery-guarantees) ---
    widget_drain_seconds: float = 20.0
    widget_turn_lease: float = 30.0
    widget_turn_attempts: int = 3
    widget_turn_backoff: float = 2.0
    widget_turn_concurrency: int = 8
    widget_send_queue: int = 256
    widget_send_timeout: float = 10.0
    callback_countries: Tuple[str, ...] = ("DE", "AT", "CH", "FR", "GB")
    callback_max_open_per_customer: int = 2
    callback_max_per_customer_day: int = 3
    callback_max_per_number_day: int = 3
    callback_max_per_day: int = 200
    twilio_callback_max_concurrent: int = 2
    agent_login_account_failures: int = 5
    agent_login_backoff_max: float = 900.0
    agent_trusted_proxies: Tuple[str, ...] = ()
    limiter_max_keys: int = 10000
    # --- email to customers (bot/mail, docs/email.md; issue 16) ---
    mail: Optional["MailSettings"] = None  # None only in Settings built by hand (tests)
    # --- Web Push to agents (bot/push, docs/agent-console.md "Push"; issue 16) ---
    push: Optional["PushSettings"] = None  # None only in Settings built by hand (tests)
    # --- photos and PDFs in the chat (bot/attachments, docs/widget-protocol.md; issue 16) ---
    attachments: Optional["AttachmentSettings"] = None  # None only in Settings built by hand
    # --- live events across processes (bot/live.py, bot/live_redis.py; issue 14) ---
    redis_url: Optional[str] = None  # REDIS_URL: the bus is Redis pub/sub; None: in-process
    live_prefix: str = "northwind"  # REDIS_KEY_PREFIX: channel and presence key prefix
    # --- one Rasa process per core on one port (bot/serve.py, bot/supervise.py; issue 14) ---
    rasa_reuse_port: bool = False  # RASA_REUSE_PORT: bind with SO_REUSEPORT (share the port)
    rasa_processes: int = 1  # RASA_PROCESSES: Rasa processes bot.supervise runs (default: cores)
    rasa_tracker_cache: int = 1000  # RASA_TRACKER_CACHE: conversations kept (bot/tracker_cache.py)
    db_pool_size: int = 10  # SUPPORT_DB_POOL_SIZE: PostgreSQL connections kept per engine
    db_pool_overflow: int = 10  # SUPPORT_DB_POOL_OVERFLOW: and opened beyond them at peaks

    @property
    def production(self) -> bool:
        """True in the production configuration (``SUPPORT_ENV=production``)."""
        return self.support_env == "production"


def _int(name: str, default: int, minimum: int = 1) -> int:
    raw = _env(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}.") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}.")
    return value


def _float(name: str, default: float, minimum: float = 0.0) -> float:
    raw = _env(name, str(default))
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}.") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}.")
    return value


def _bounded_float(name: str, default: float, minimum: float, maximum: float) -> float:
    value = _float(name, default, minimum)
    if value > maximum:
        raise ValueError(f"{name} must be at most {maximum:g}, got {value:g}.")
    return value


def _secret(name: str, file_default: Path) -> Optional[str]:
    """A secret from the environment, else from ``file_default`` (written by ``make run``)."""
    value = os.environ.get(name, "").strip()
    if value:
        return value
    file_name = os.environ.get(f"{name}_FILE", "").strip()
    path = Path(file_name) if file_name else file_default
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _pem(name: str) -> Optional[str]:
    """A PEM key given inline or as a path to a file."""
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    if "-----BEGIN" in value:
        return value.replace("\\n", "\n")
    try:
        return Path(value).read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"{name}: cannot read the key file {value!r}: {error}") from None


def _choice(name: str, default: str, choices: Tuple[str, ...]) -> str:
    value = _env(name, default).strip().lower()
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}.")
    return value


def _list(name: str, default: str) -> Tuple[str, ...]:
    return tuple(item.strip() for item in _env(name, default).split(",") if item.strip())


_NONE_WORDS = ("none", "off", "no", "false", "0")


def _holiday_region() -> Tuple[Optional[str], Optional[str]]:
    """``SUPPORT_HOLIDAYS_COUNTRY`` / ``SUPPORT_HOLIDAYS_SUBDIV``, checked against ``holidays``.

    ``none`` (or ``off``) switches holidays off (country) or asks for nationwide holidays
    only (subdivision). The subdivision defaults to ``BE`` (Berlin) for ``DE``, else none.
    A subdivision may be given by code or name, in any case (``be``, ``Berlin``).
    """
    raw_country = _env("SUPPORT_HOLIDAYS_COUNTRY", "DE").strip()
    if raw_country.lower() in _NONE_WORDS:
        return None, None
    import holidays  # only here: importing it takes a while

    country = raw_country.upper()
    try:
        calendar = holidays.country_holidays(country, years=[])
    except (NotImplementedError, AttributeError):
        raise ValueError(
            f"SUPPORT_HOLIDAYS_COUNTRY must be a country code the holidays package knows "
            f"(e.g. DE, AT, GB, FR) or 'none', got {raw_country!r}."
        ) from None
    raw_subdiv = _env("SUPPORT_HOLIDAYS_SUBDIV", "BE" if country == "DE" else "none").strip()
    if raw_subdiv.lower() in _NONE_WORDS:
        return country, None
    names = {code.lower(): code for code in calendar.subdivisions}
    names.update(
        {alias.lower(): code for alias, code in getattr(calendar, "subdivisions_aliases", {}).items()}
    )
    subdiv = names.get(raw_subdiv.lower())
    if subdiv is None:
        known = ", ".join(calendar.subdivisions) or "none"
        raise ValueError(
            f"SUPPORT_HOLIDAYS_SUBDIV: {country} has no subdivision {raw_subdiv!r}; use one of "
            f"{known}, or 'none' for nationwide holidays only."
        )
    return country, subdiv


_CLOSED_DATE = re.compile(r"(?P<day>\d{4}-\d{2}-\d{2})(?:\s+(?P<name>.+))?")


def _closed_dates() -> Tuple[Tuple[date, str], ...]:
    """``SUPPORT_CLOSED_DATES``: ``2026-12-24 Christmas Eve, 2026-12-31`` (name optional)."""
    found: dict[date, str] = {}
    for item in _list("SUPPORT_CLOSED_DATES", ""):
        match = _CLOSED_DATE.fullmatch(item)
        try:
            day = date.fromisoformat(match["day"]) if match else None
        except ValueError:
            day = None
        if day is None:
            raise ValueError(
                f"SUPPORT_CLOSED_DATES: {item!r} is not a date YYYY-MM-DD, optionally followed "
                "by a name (e.g. '2026-12-24 Christmas Eve'); separate dates with commas."
            )
        found[day] = (match["name"] or "").strip()
    return tuple(sorted(found.items()))


def _bool(name: str, default: bool) -> bool:
    raw = _env(name, "true" if default else "false").strip().lower()
    if raw in ("true", "1", "yes", "on"):
        return True
    if raw in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, got {raw!r}.")


def cpu_cores() -> int:
    """The cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class MailSettings:
    """Email to customers (``bot.mail``, docs/email.md)."""

    enabled: bool  # MAIL_ENABLED (default: on when SMTP_HOST is set)
    smtp_host: Optional[str]  # SMTP_HOST
    smtp_port: int  # SMTP_PORT
    smtp_user: Optional[str]  # SMTP_USER
    smtp_password: Optional[str]  # SMTP_PASSWORD or SMTP_PASSWORD_FILE
    smtp_starttls: str  # SMTP_STARTTLS: auto (if offered), true (required), false
    smtp_tls: bool  # SMTP_TLS: implicit TLS (port 465)
    smtp_timeout: float  # SMTP_TIMEOUT seconds per connection and command
    mail_from: str  # MAIL_FROM ("Northwind Support <support@example.com>")
    app_link_base: str  # APP_LINK_BASE: where the link back into the app points
    public_url: str  # MAIL_PUBLIC_URL: base of the unsubscribe link (this Rasa server)
    unsubscribe_secret: Optional[str]  # MAIL_UNSUBSCRIBE_SECRET(_FILE): signs unsubscribe links
    reply_delay: float  # MAIL_REPLY_DELAY: seconds before "you have a reply" is sent
    max_attempts: int  # MAIL_MAX_ATTEMPTS per email before it is marked failed
    backoff_base: float  # MAIL_BACKOFF_BASE: first retry after this many seconds (doubling)
    backoff_max: float  # MAIL_BACKOFF_MAX: longest wait between two tries
    poll_interval: float  # MAIL_POLL_INTERVAL: how often the sender looks for due emails
    lease: float  # MAIL_LEASE: seconds a sending process owns a claimed email


def _flag(name: str, default: bool) -> bool:
    raw = _env(name, "true" if default else "false").strip().lower()
    if raw not in ("true", "1", "yes", "on", "false", "0", "no", "off"):
        raise ValueError(f"{name} must be true or false, got {raw!r}.")
    return raw in ("true", "1", "yes", "on")


def _mail_settings(var_dir: Path, demo_port: int, public_url: str) -> MailSettings:
    host = os.environ.get("SMTP_HOST", "").strip() or None
    tls = _flag("SMTP_TLS", False)
    return MailSettings(
        enabled=_flag("MAIL_ENABLED", host is not None),
        smtp_host=host,
        smtp_port=_int("SMTP_PORT", 465 if tls else 587),
        smtp_user=os.environ.get("SMTP_USER", "").strip() or None,
        smtp_password=_secret("SMTP_PASSWORD", var_dir / "smtp_password"),
        smtp_starttls=_choice("SMTP_STARTTLS", "auto", ("auto", "true", "false")),
        smtp_tls=tls,
        smtp_timeout=_float("SMTP_TIMEOUT", 30.0, minimum=0.1),
        mail_from=_env("MAIL_FROM", "Northwind Support <support@northwind.example>").strip(),
        app_link_base=_env("APP_LINK_BASE", f"http://localhost:{demo_port}/").strip(),
        public_url=_env("MAIL_PUBLIC_URL", public_url).strip().rstrip("/"),
        unsubscribe_secret=_secret("MAIL_UNSUBSCRIBE_SECRET", var_dir / "mail_unsubscribe_secret"),
        reply_delay=_float("MAIL_REPLY_DELAY", 30.0),
        max_attempts=_int("MAIL_MAX_ATTEMPTS", 8),
        backoff_base=_float("MAIL_BACKOFF_BASE", 30.0, minimum=0.01),
        backoff_max=_float("MAIL_BACKOFF_MAX", 3600.0, minimum=0.01),
        poll_interval=_float("MAIL_POLL_INTERVAL", 2.0, minimum=0.05),
        lease=_float("MAIL_LEASE", 120.0, minimum=1.0),
    )


@dataclass(frozen=True)
class AttachmentSettings:
    """Photos and PDFs in the chat (``bot.attachments``, docs/widget-protocol.md)."""

    max_bytes: int  # ATTACHMENT_MAX_BYTES: largest upload (refused while it is read)
    max_pixels: int  # ATTACHMENT_MAX_PIXELS: largest image (width x height)
    thumb_px: int  # ATTACHMENT_THUMB_PX: longest side of a thumbnail
    upload_rate: int  # ATTACHMENT_UPLOAD_RATE: uploads per user (customer, agent) per minute
    storage: str  # ATTACHMENT_STORAGE: local (a directory) or s3 (an S3-compatible store)
    local_dir: Path  # ATTACHMENT_DIR: the local store's directory
    s3_bucket: Optional[str]  # ATTACHMENT_S3_BUCKET
    s3_prefix: str  # ATTACHMENT_S3_PREFIX: key prefix inside the bucket
    s3_endpoint_url: Optional[str]  # ATTACHMENT_S3_ENDPOINT_URL (MinIO, R2, ...; None: AWS)
    s3_region: Optional[str]  # ATTACHMENT_S3_REGION
    s3_access_key_id: Optional[str]  # ATTACHMENT_S3_ACCESS_KEY_ID (None: boto3's chain)
    s3_secret_access_key: Optional[str]  # ATTACHMENT_S3_SECRET_ACCESS_KEY(_FILE)


def _attachment_settings(var_dir: Path) -> AttachmentSettings:
    storage = _choice("ATTACHMENT_STORAGE", "local", ("local", "s3"))
    bucket = os.environ.get("ATTACHMENT_S3_BUCKET", "").strip() or None
    if storage == "s3" and bucket is None:
        raise ValueError("ATTACHMENT_STORAGE=s3 needs ATTACHMENT_S3_BUCKET.")
    return AttachmentSettings(
        max_bytes=_int("ATTACHMENT_MAX_BYTES", 10 * 1024 * 1024, minimum=1024),
        max_pixels=_int("ATTACHMENT_MAX_PIXELS", 40_000_000, minimum=10_000),
        thumb_px=_int("ATTACHMENT_THUMB_PX", 320, minimum=32),
        upload_rate=_int("ATTACHMENT_UPLOAD_RATE", 10),
        storage=storage,
        local_dir=Path(_env("ATTACHMENT_DIR", str(var_dir / "attachments"))).expanduser()
        .resolve(),
        s3_bucket=bucket,
        s3_prefix=_env("ATTACHMENT_S3_PREFIX", "attachments/").strip().lstrip("/"),
        s3_endpoint_url=os.environ.get("ATTACHMENT_S3_ENDPOINT_URL", "").strip() or None,
        s3_region=os.environ.get("ATTACHMENT_S3_REGION", "").strip() or None,
        s3_access_key_id=os.environ.get("ATTACHMENT_S3_ACCESS_KEY_ID", "").strip() or None,
        s3_secret_access_key=_secret("ATTACHMENT_S3_SECRET_ACCESS_KEY",
                                     var_dir / "attachment_s3_secret"),
    )


@dataclass(frozen=True)
class PushSettings:
    """Web Push notifications to agents (``bot.push``, docs/agent-console.md "Push")."""

    enabled: bool  # PUSH_ENABLED (default: on when both VAPID keys are set): this process sends
    stage: bool  # PUSH_ENABLED not false: handoffs and transfers queue pushes (any process)
    vapid_private_key: Optional[str]  # VAPID_PRIVATE_KEY(_FILE): raw P-256 key, base64url
    vapid_public_key: Optional[str]  # VAPID_PUBLIC_KEY(_FILE): uncompressed point, base64url
    vapid_subject: str  # VAPID_SUBJECT: mailto: or https: contact for the push services
    ttl: int  # PUSH_TTL: seconds a push service keeps an undelivered notification
    timeout: float  # PUSH_TIMEOUT: seconds per POST to a push service
    max_attempts: int  # PUSH_MAX_ATTEMPTS per notification before it is marked failed
    backoff_base: float  # PUSH_BACKOFF_BASE: first retry after this many seconds (doubling)
    backoff_max: float  # PUSH_BACKOFF_MAX: longest wait between two tries
    poll_interval: float  # PUSH_POLL_INTERVAL: how often the sender looks for due rows
    lease: float  # PUSH_LEASE: seconds a sending process owns a claimed row
    allowed_hosts: Tuple[str, ...]  # PUSH_ALLOWED_HOSTS: push service hosts (``*.`` prefix)


def _push_settings(var_dir: Path) -> PushSettings:
    private = _secret("VAPID_PRIVATE_KEY", var_dir / "vapid_private_key")
    public = _secret("VAPID_PUBLIC_KEY", var_dir / "vapid_public_key")
    return PushSettings(
        enabled=_flag("PUSH_ENABLED", bool(private and public)),
        stage=_flag("PUSH_ENABLED", True),
        vapid_private_key=private,
        vapid_public_key=public,
        vapid_subject=_env("VAPID_SUBJECT", "mailto:support@northwind.example").strip(),
        ttl=_int("PUSH_TTL", 3600, minimum=0),
        timeout=_float("PUSH_TIMEOUT", 10.0, minimum=0.1),
        max_attempts=_int("PUSH_MAX_ATTEMPTS", 5),
        backoff_base=_float("PUSH_BACKOFF_BASE", 5.0, minimum=0.01),
        backoff_max=_float("PUSH_BACKOFF_MAX", 600.0, minimum=0.01),
        poll_interval=_float("PUSH_POLL_INTERVAL", 2.0, minimum=0.05),
        lease=_float("PUSH_LEASE", 60.0, minimum=1.0),
        allowed_hosts=tuple(h.lower() for h in _list(
            "PUSH_ALLOWED_HOSTS", "fcm.googleapis.com,*.push.services.mozilla.com,"
            "*.notify.windows.com,*.push.apple.com")),
    )


def _redis_url() -> Optional[str]:
    """``REDIS_URL`` (``redis://[:password@]host:port/db``, ``rediss://`` or ``unix://``)."""
    value = os.environ.get("REDIS_URL", "").strip()
    if not value:
        return None
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(
            "REDIS_URL must start with redis://, rediss:// or unix:// "
            f"(e.g. redis://127.0.0.1:6379/1), not {value[:40]!r}")
    return value


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the settings for this process (read once, then cached)."""
    var_dir = Path(_env("SUPPORT_VAR_DIR", str(PROJECT_ROOT / "var"))).resolve()
    data_dir = Path(_env("SUPPORT_DATA_DIR", str(PROJECT_ROOT / "data"))).resolve()
    holiday_region = _holiday_region()
    return Settings(
        var_dir=var_dir,
        support_db_url=_env("SUPPORT_DB_URL", _sqlite_url(var_dir / "support.db")),
        orders_db_url=_env("ORDERS_DB_URL", _sqlite_url(var_dir / "orders.db")),
        business_tz=_env("BUSINESS_TZ", "Europe/Berlin"),
        business_hours=_env("BUSINESS_HOURS", "mon-fri 09:00-18:00, sat 10:00-14:00"),
        holidays_country=holiday_region[0],
        holidays_subdiv=holiday_region[1],
        closed_dates=_closed_dates(),
        default_customer_tz=_env("DEFAULT_CUSTOMER_TZ", _env("BUSINESS_TZ", "Europe/Berlin")),
        default_phone_region=_env("DEFAULT_PHONE_REGION", "DE"),
        data_dir=data_dir,
        triage_file=Path(_env("TRIAGE_FILE", str(data_dir / "triage.yml"))).resolve(),
        faq_dir=Path(_env("FAQ_DIR", str(data_dir / "faq"))).resolve(),
        embedding_model_dir=Path(
            _env("EMBEDDING_MODEL_DIR", str(var_dir / "embeddings" / "all-MiniLM-L6-v2"))
        ).resolve(),
        embedding_cache_dir=_optional_dir(
            "EMBEDDING_CACHE_DIR", var_dir / "embeddings" / "cache"
        ),
        widget_jwt_algorithm=_env("WIDGET_JWT_ALGORITHM", "HS256").upper(),
        widget_jwt_secret=_secret("WIDGET_JWT_SECRET", var_dir / "widget_jwt_secret"),
        widget_jwt_public_key=_pem("WIDGET_JWT_PUBLIC_KEY"),
        widget_jwt_audience=os.environ.get("WIDGET_JWT_AUDIENCE") or None,
        widget_jwt_issuer=os.environ.get("WIDGET_JWT_ISSUER") or None,
        widget_jwt_leeway=_bounded_float("WIDGET_JWT_LEEWAY", 30.0, 0.0, 60.0),
        widget_allowed_origins=tuple(
            origin.strip().rstrip("/")
            for origin in _env(
                "WIDGET_ALLOWED_ORIGINS",
                # default: the demo shop app of `make run`
                f"http://localhost:{_int('DEMO_PORT', 8080)},"
                f"http://127.0.0.1:{_int('DEMO_PORT', 8080)}",
            ).split(",")
            if origin.strip()
        ),
        widget_max_message_chars=_int("WIDGET_MAX_MESSAGE_CHARS", 2000),
        widget_max_frame_bytes=_int("WIDGET_MAX_FRAME_BYTES", 65536, minimum=1024),
        widget_rate_messages=_int("WIDGET_RATE_MESSAGES", 20),
        widget_rate_window=_float("WIDGET_RATE_WINDOW", 60.0, minimum=1.0),
        widget_max_connections=_int("WIDGET_MAX_CONNECTIONS", 5),
        widget_typing_interval=_float("WIDGET_TYPING_INTERVAL", 2.0),
        widget_auth_timeout=_bounded_float("WIDGET_AUTH_TIMEOUT", 5.0, 0.5, 30.0),
        widget_token_warning=_float("WIDGET_TOKEN_WARNING", 60.0),
        widget_public_url=_env("WIDGET_PUBLIC_URL", "http://localhost:5005").rstrip("/"),
        demo_host=_env("DEMO_HOST", "127.0.0.1"),
        demo_port=_int("DEMO_PORT", 8080),
        demo_token_ttl=_int("DEMO_TOKEN_TTL", 900, minimum=30),
        agent_session_ttl=_int("AGENT_SESSION_TTL", 8 * 3600),
        agent_metrics_token=_secret("AGENT_METRICS_TOKEN", var_dir / "agent_metrics_token"),
        agent_audit_poll_interval=_float("AGENT_AUDIT_POLL_INTERVAL", 1.0, minimum=0.1),
        agent_canned_file=Path(
            _env("AGENT_CANNED_FILE", str(data_dir / "canned_responses.yml"))
        ).resolve(),
        agent_login_rate=_int("AGENT_LOGIN_RATE", 10),
        notify_webhook_url=os.environ.get("SUPPORT_NOTIFY_URL") or None,
        redis_url=_redis_url(),
        live_prefix=_env("REDIS_KEY_PREFIX", "northwind").strip() or "northwind",
        rasa_reuse_port=_bool("RASA_REUSE_PORT", False),
        rasa_processes=_int("RASA_PROCESSES", cpu_cores()),
        notify_webhook_secret=os.environ.get("SUPPORT_NOTIFY_SECRET") or None,
        twilio_account_sid=os.environ.get("TWILIO_ACCOUNT_SID", "").strip() or None,
        twilio_auth_token=_secret("TWILIO_AUTH_TOKEN", var_dir / "twilio_auth_token"),
        twilio_public_url=(os.environ.get("TWILIO_PUBLIC_URL", "").strip().rstrip("/") or None),
        twilio_api_base=(os.environ.get("TWILIO_API_BASE", "").strip().rstrip("/") or None),
        twilio_bot_identity=_env("TWILIO_BOT_IDENTITY", "support-bot"),
        twilio_timeout=_float("TWILIO_TIMEOUT", 10.0, minimum=0.1),
        twilio_max_attempts=_int("TWILIO_MAX_ATTEMPTS", 5),
        twilio_backoff_base=_float("TWILIO_BACKOFF_BASE", 0.5),
        twilio_backoff_max=_float("TWILIO_BACKOFF_MAX", 30.0),
        twilio_poll_interval=_float("TWILIO_POLL_INTERVAL", 1.0, minimum=0.05),
        twilio_catchup_seconds=_int("TWILIO_CATCHUP_SECONDS", 3600, minimum=0),
        twilio_webhook_filters=tuple(
            name.strip() for name in _env(
                "TWILIO_WEBHOOK_FILTERS",
                "onMessageAdded,onConversationUpdated,onConversationStateUpdated").split(",")
            if name.strip()),
        twilio_handoff_delay=_float("TWILIO_HANDOFF_DELAY", 1.0),
        twilio_flex_mode=_env("TWILIO_FLEX_MODE", "conversations").strip().lower(),
        twilio_flex_workspace_sid=os.environ.get("TWILIO_FLEX_WORKSPACE_SID", "").strip() or None,
        twilio_flex_workflow_sid=os.environ.get("TWILIO_FLEX_WORKFLOW_SID", "").strip() or None,
        twilio_flex_task_channel=_env("TWILIO_FLEX_TASK_CHANNEL", "chat").strip(),
        twilio_flex_worker_cache_seconds=_float("TWILIO_FLEX_WORKER_CACHE_SECONDS", 300.0),
        twilio_inbox_max_attempts=_int("TWILIO_INBOX_MAX_ATTEMPTS", 8, minimum=1),
        twilio_inbox_backoff_base=_float("TWILIO_INBOX_BACKOFF_BASE", 1.0, minimum=0.01),
        twilio_inbox_backoff_max=_float("TWILIO_INBOX_BACKOFF_MAX", 300.0, minimum=0.01),
        twilio_inbox_lease=_float("TWILIO_INBOX_LEASE", 60.0, minimum=1.0),
        twilio_inbox_poll=_float("TWILIO_INBOX_POLL", 1.0, minimum=0.05),
        twilio_inbox_drain_timeout=_float("TWILIO_INBOX_DRAIN_TIMEOUT", 10.0, minimum=0.0),
        twilio_retry_after_max=_float("TWILIO_RETRY_AFTER_MAX", 60.0, minimum=0.0),
        twilio_voice_from=os.environ.get("TWILIO_VOICE_FROM", "").strip() or None,
        support_line_number=os.environ.get("SUPPORT_LINE_NUMBER", "").strip() or None,
        twilio_callback_poll=_float("TWILIO_CALLBACK_POLL", 5.0, minimum=0.05),
        twilio_callback_max_late=_int("TWILIO_CALLBACK_MAX_LATE", 900, minimum=0),
        twilio_callback_stale=_int("TWILIO_CALLBACK_STALE", 120, minimum=1),
        twilio_callback_greeting=_env(
            "TWILIO_CALLBACK_GREETING",
            "Hello, this is the call-back you booked with Northwind Support. "
            "Please hold while we connect you to an agent."),
        support_env=_choice("SUPPORT_ENV", "development", ("development", "production")),
        rasa_interface=_env("RASA_INTERFACE", "127.0.0.1"),
        actions_host=_env("ACTIONS_HOST", "127.0.0.1"),
        action_server_token=_secret("ACTION_SERVER_TOKEN", var_dir / "action_server_token"),
        action_server_max_body=_int("ACTION_SERVER_MAX_BODY", 8 * 1024 * 1024, minimum=65536),
        api_token=_secret("SUPPORT_API_TOKEN", var_dir / "api_token"),
        widget_jwt_max_ttl=_int("WIDGET_JWT_MAX_TTL", 3600, minimum=60),
        widget_preauth_per_ip=_int("WIDGET_MAX_PREAUTH_PER_IP", 10),
        widget_frame_rate=_float("WIDGET_FRAME_RATE", 5.0, minimum=0.1),
        widget_frame_burst=_int("WIDGET_FRAME_BURST", 30),
        widget_drain_seconds=_bounded_float("WIDGET_DRAIN_SECONDS", 20.0, 0.0, 600.0),
        widget_turn_lease=_bounded_float("WIDGET_TURN_LEASE", 30.0, 2.0, 3600.0),
        widget_turn_attempts=_int("WIDGET_TURN_ATTEMPTS", 3),
        widget_turn_backoff=_bounded_float("WIDGET_TURN_BACKOFF", 2.0, 0.0, 300.0),
        widget_turn_concurrency=_int("WIDGET_TURN_CONCURRENCY", 8),
        rasa_tracker_cache=_int("RASA_TRACKER_CACHE", 1000, minimum=0),
        db_pool_size=_int("SUPPORT_DB_POOL_SIZE", 10),
        db_pool_overflow=_int("SUPPORT_DB_POOL_OVERFLOW", 10, minimum=0),
        widget_send_queue=_int("WIDGET_SEND_QUEUE", 256, minimum=8),
        widget_send_timeout=_bounded_float("WIDGET_SEND_TIMEOUT", 10.0, 0.1, 300.0),
        callback_countries=tuple(c.upper() for c in _list("CALLBACK_COUNTRIES", "DE,AT,CH,FR,GB")),
        callback_max_open_per_customer=_int("CALLBACK_MAX_OPEN_PER_CUSTOMER", 2),
        callback_max_per_customer_day=_int("CALLBACK_MAX_PER_CUSTOMER_DAY", 3),
        callback_max_per_number_day=_int("CALLBACK_MAX_PER_NUMBER_DAY", 3),
        callback_max_per_day=_int("CALLBACK_MAX_PER_DAY", 200),
        twilio_callback_max_concurrent=_int("TWILIO_CALLBACK_MAX_CONCURRENT", 2),
        agent_login_account_failures=_int("AGENT_LOGIN_ACCOUNT_FAILURES", 5),
        agent_login_backoff_max=_float("AGENT_LOGIN_BACKOFF_MAX", 900.0, minimum=1.0),
        agent_trusted_proxies=_list("AGENT_TRUSTED_PROXIES", ""),
        limiter_max_keys=_int("LIMITER_MAX_KEYS", 10000, minimum=100),
        mail=_mail_settings(var_dir, _int("DEMO_PORT", 8080),
                            _env("WIDGET_PUBLIC_URL", "http://localhost:5005").rstrip("/")),
        push=_push_settings(var_dir),
        attachments=_attachment_settings(var_dir),
    )


def reset_settings_cache() -> None:
    """Forget cached settings (tests change the environment)."""
    get_settings.cache_clear()
