"""The configuration check every process runs before it starts serving.

A wrong setting is found when a process starts, with one line that names the variable,
not when a customer hits it (an unparsable ``BUSINESS_HOURS`` used to fail inside the
handoff action). :func:`check_configuration` reads every setting (:func:`bot.settings.get_settings`),
builds what is derived from them (business hours with holidays, zones, call-back limits)
and loads the designers' files the action server reloads at run time (``triage.yml``,
``messages.yml``, ``forms.yml``, the FAQ articles), so a typo there is reported at start-up
too. :func:`exit_on_bad_configuration` turns a problem into that one line and exit status 2.
"""
from __future__ import annotations

import sys
from typing import Callable, List, Optional, Tuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class ConfigurationError(ValueError):
    """A setting or a designers' file is wrong; ``str()`` names the variable or file."""


def _settings_checks() -> List[Tuple[str, Callable[[], object]]]:
    from bot.business_hours import from_settings as business_hours
    from bot.faq import FaqIndex
    from bot.messages import load_messages
    from bot.prefill import load_form_config
    from bot.settings import get_settings
    from bot.triage import load_triage

    settings = get_settings()

    def zone(name: str, value: str) -> Callable[[], object]:
        def check() -> object:
            try:
                return ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ConfigurationError(
                    f"{name} must be an IANA time zone such as Europe/Berlin, got {value!r}."
                ) from None
        return check

    return [
        ("BUSINESS_TZ", zone("BUSINESS_TZ", settings.business_tz)),
        ("DEFAULT_CUSTOMER_TZ", zone("DEFAULT_CUSTOMER_TZ", settings.default_customer_tz)),
        ("BUSINESS_HOURS", business_hours),
        ("TRIAGE_FILE", lambda: load_triage(settings.triage_file)),
        ("SUPPORT_DATA_DIR (messages.yml)", lambda: load_messages()),
        ("SUPPORT_DATA_DIR (forms.yml)", lambda: load_form_config()),
        ("FAQ_DIR", lambda: FaqIndex.load(settings.faq_dir)),
    ]


def check_configuration() -> None:
    """Read and check every setting and designers' file.

    Raises:
        ConfigurationError: The first problem, naming the variable (or the file).
    """
    from bot.settings import get_settings

    try:
        get_settings()
    except ValueError as error:  # the settings' messages name their variable
        raise ConfigurationError(str(error)) from None
    for name, check in _settings_checks():
        try:
            check()
        except ConfigurationError:
            raise
        except (ValueError, OSError, LookupError) as error:
            raise ConfigurationError(f"{name}: {error}") from None


def exit_on_bad_configuration(process: str, check: Optional[Callable[[], None]] = None) -> None:
    """Run the check; on a problem print one line for ``process`` and exit with status 2."""
    try:
        (check or check_configuration)()
    except ConfigurationError as error:
        print(f"{process}: configuration error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
