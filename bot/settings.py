"""All runtime settings, read from the environment in one place.

Every setting has an embedded default so that ``make run`` works with no
configuration. ``.env.example`` documents each variable. Nothing is read at
import time: call :func:`get_settings` (cached) where a value is needed.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


@dataclass(frozen=True)
class Settings:
    """Resolved settings. Paths are absolute, URLs are SQLAlchemy URLs."""

    var_dir: Path
    support_db_url: str
    orders_db_url: str
    business_tz: str
    business_hours: str
    default_customer_tz: str
    default_phone_region: str
    data_dir: Path
    triage_file: Path
    faq_dir: Path
    embedding_model_dir: Path


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the settings for this process (read once, then cached)."""
    var_dir = Path(_env("SUPPORT_VAR_DIR", str(PROJECT_ROOT / "var"))).resolve()
    data_dir = Path(_env("SUPPORT_DATA_DIR", str(PROJECT_ROOT / "data"))).resolve()
    return Settings(
        var_dir=var_dir,
        support_db_url=_env("SUPPORT_DB_URL", _sqlite_url(var_dir / "support.db")),
        orders_db_url=_env("ORDERS_DB_URL", _sqlite_url(var_dir / "orders.db")),
        business_tz=_env("BUSINESS_TZ", "Europe/Berlin"),
        business_hours=_env("BUSINESS_HOURS", "mon-fri 09:00-18:00, sat 10:00-14:00"),
        default_customer_tz=_env("DEFAULT_CUSTOMER_TZ", _env("BUSINESS_TZ", "Europe/Berlin")),
        default_phone_region=_env("DEFAULT_PHONE_REGION", "DE"),
        data_dir=data_dir,
        triage_file=Path(_env("TRIAGE_FILE", str(data_dir / "triage.yml"))).resolve(),
        faq_dir=Path(_env("FAQ_DIR", str(data_dir / "faq"))).resolve(),
        embedding_model_dir=Path(
            _env("EMBEDDING_MODEL_DIR", str(var_dir / "embeddings" / "all-MiniLM-L6-v2"))
        ).resolve(),
    )


def reset_settings_cache() -> None:
    """Forget cached settings (tests change the environment)."""
    get_settings.cache_clear()
