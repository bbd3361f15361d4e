"""bot/production.py: which demo defaults a production start refuses, and how it says so.

``check_production`` gets settings read from a controlled environment (``monkeypatch``) and
that environment itself; every secret of the "good" environment is random per test, so no
value of it is committed (the repository scan would rightly flag one that is). Also
``bot/serve.py``'s endpoint checks and the action-endpoint header.
"""
from __future__ import annotations

import secrets
from pathlib import Path
from typing import Dict, Iterator, List, Sequence

import pytest

from bot.production import (
    DEMO_AGENT_USERNAMES,
    check_production,
    demo_agent_problems,
    enforce_production,
    production_problems,
    refuse_in_production,
)
from bot.settings import PROJECT_ROOT, Settings, get_settings, reset_settings_cache

#: Every variable check_production reads; cleared before each test.
_VARIABLES = (
    "SUPPORT_ENV", "SUPPORT_VAR_DIR", "SUPPORT_DB_URL", "ORDERS_DB_URL", "RASA_TOKEN",
    "ACTION_SERVER_TOKEN", "SUPPORT_API_TOKEN", "WIDGET_JWT_SECRET", "AGENT_METRICS_TOKEN",
    "TWILIO_AUTH_TOKEN", "SUPPORT_NOTIFY_SECRET", "WIDGET_JWT_ALGORITHM",
    "WIDGET_JWT_PUBLIC_KEY", "WIDGET_JWT_AUDIENCE", "WIDGET_JWT_ISSUER",
    "WIDGET_ALLOWED_ORIGINS", "TWILIO_API_BASE", "RASA_DB_PASSWORD", "REDIS_PASSWORD",
    "RABBITMQ_PASSWORD", "DEMO_PORT", "VAPID_PRIVATE_KEY", "VAPID_PUBLIC_KEY", "VAPID_SUBJECT",
    "PUSH_ENABLED", "MAIL_ENABLED", "SMTP_HOST", "MAIL_UNSUBSCRIBE_SECRET", "MAIL_PUBLIC_URL",
    "APP_LINK_BASE", "WIDGET_PUBLIC_URL",
)
_SECRETS = ("RASA_TOKEN", "ACTION_SERVER_TOKEN", "SUPPORT_API_TOKEN", "WIDGET_JWT_SECRET",
            "AGENT_METRICS_TOKEN")
PG_URL = "postgresql://rasa@db.internal:5432/rasa"


def _vapid_env() -> Dict[str, str]:
    from bot.push.keys import generate_pair

    private, public = generate_pair()
    return {"VAPID_PRIVATE_KEY": private, "VAPID_PUBLIC_KEY": public,
            "VAPID_SUBJECT": "mailto:ops@shop.example.com"}


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Dict[str, str]]:
    """A proper production environment (mutable: tests change it, then call ``check``)."""
    for name in _VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"{name}_FILE", raising=False)
    values = {
        "SUPPORT_ENV": "production",
        "SUPPORT_VAR_DIR": str(tmp_path / "var"),
        "SUPPORT_DB_URL": PG_URL,
        "ORDERS_DB_URL": PG_URL,
        "WIDGET_JWT_AUDIENCE": "northwind-support",
        "WIDGET_JWT_ISSUER": "https://shop.example.com",
        "WIDGET_ALLOWED_ORIGINS": "https://shop.example.com,https://www.shop.example.com",
        **{name: secrets.token_urlsafe(32) for name in _SECRETS},
        **_vapid_env(),
    }
    yield values
    reset_settings_cache()


def settings_for(values: Dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in _VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    reset_settings_cache()
    return get_settings()


def check(values: Dict[str, str], monkeypatch: pytest.MonkeyPatch,
          root: Path = PROJECT_ROOT) -> List[str]:
    return check_production(settings_for(values, monkeypatch), dict(values), root)


def named(problems: List[str], variable: str) -> List[str]:
    return [p for p in problems if p.startswith(f"{variable}:")]


# ---------------------------------------------------------------- the baseline


def test_a_proper_production_environment_passes(env: Dict[str, str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    assert check(env, monkeypatch) == []


def test_rs256_needs_no_shared_secret(env: Dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                      tmp_path: Path) -> None:
    key = tmp_path / "public.pem"
    key.write_text("-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n")
    del env["WIDGET_JWT_SECRET"]
    env.update(WIDGET_JWT_ALGORITHM="RS256", WIDGET_JWT_PUBLIC_KEY=str(key))
    assert check(env, monkeypatch) == []


def test_every_problem_starts_with_the_variable_to_change(
    env: Dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("SUPPORT_DB_URL", "ORDERS_DB_URL", "WIDGET_JWT_AUDIENCE", "WIDGET_JWT_ISSUER",
                 "WIDGET_ALLOWED_ORIGINS", *_SECRETS):
        del env[name]
    env["TWILIO_API_BASE"] = "http://127.0.0.1:9"
    problems = check(env, monkeypatch)
    assert problems
    assert all(p.split(":", 1)[0].isupper() for p in problems), problems


# ------------------------------------------------------------------- secrets


@pytest.mark.parametrize("name,file", [
    ("RASA_TOKEN", "rasa_token"), ("ACTION_SERVER_TOKEN", "action_server_token"),
    ("SUPPORT_API_TOKEN", "api_token"), ("WIDGET_JWT_SECRET", "widget_jwt_secret"),
    ("AGENT_METRICS_TOKEN", "agent_metrics_token"),
])
def test_a_secret_read_from_the_generated_var_file_is_refused(
    env: Dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, file: str
) -> None:
    var = tmp_path / "var"
    var.mkdir(exist_ok=True)
    (var / file).write_text(env.pop(name) + "\n")

    problems = named(check(env, monkeypatch), name)
    assert len(problems) == 1 and "make run" in problems[0], problems

    # NAME_FILE naming that very file is no better ...
    env[f"{name}_FILE"] = str(var / file)
    assert named(check(env, monkeypatch), name)
    # ... but a file given explicitly elsewhere is fine.
    elsewhere = tmp_path / "secrets" / file
    elsewhere.parent.mkdir()
    elsewhere.write_text(secrets.token_urlsafe(32))
    env[f"{name}_FILE"] = str(elsewhere)
    assert named(check(env, monkeypatch), name) == []


@pytest.mark.parametrize("value", [
    "change-me",
    "test-widget-secret-0123456789abcdefghijklmnopqrstuvwxyz",  # tests/servers.py
    "test-twilio-auth-token-0123456789",  # tests/twilio/conftest.py
])
@pytest.mark.parametrize("name", ["RASA_TOKEN", "ACTION_SERVER_TOKEN", "WIDGET_JWT_SECRET"])
def test_a_committed_value_is_refused(env: Dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                      tmp_path: Path, name: str, value: str) -> None:
    env[name] = value
    problems = named(check(env, monkeypatch), name)
    assert any("committed" in p for p in problems), problems
    # Also when the files holding them are not deployed (the built-in list).
    empty = tmp_path / "empty-root"
    empty.mkdir()
    assert any("committed" in p for p in named(check(env, monkeypatch, empty), name))


def test_the_test_bots_widget_secret_is_refused(env: Dict[str, str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.servers import WIDGET_TEST_SECRET

    env["WIDGET_JWT_SECRET"] = WIDGET_TEST_SECRET
    assert named(check(env, monkeypatch), "WIDGET_JWT_SECRET")


def test_any_value_found_in_a_committed_file_is_refused(
    env: Dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "howto.md").write_text(f"export SUPPORT_API_TOKEN={env['SUPPORT_API_TOKEN']}\n")
    problems = named(check(env, monkeypatch, root), "SUPPORT_API_TOKEN")
    assert len(problems) == 1 and "docs/howto.md" in problems[0], problems


@pytest.mark.parametrize("where", [".env", "var/api_token", ".venv/lib/x.py", "models/x.yml"])
def test_local_files_are_not_committed_files(
    env: Dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, where: str
) -> None:
    root = tmp_path / "repo"
    path = root / where
    path.parent.mkdir(parents=True)
    path.write_text(env["SUPPORT_API_TOKEN"])
    assert check(env, monkeypatch, root) == []


def test_a_short_secret_is_refused(env: Dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    env["ACTION_SERVER_TOKEN"] = secrets.token_hex(15)  # 30 bytes
    problems = named(check(env, monkeypatch), "ACTION_SERVER_TOKEN")
    assert len(problems) == 1 and "30 bytes" in problems[0], problems
    env["ACTION_SERVER_TOKEN"] = secrets.token_hex(16)  # 32 bytes
    assert check(env, monkeypatch) == []


def test_the_same_secret_twice_is_refused(env: Dict[str, str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    env["ACTION_SERVER_TOKEN"] = env["RASA_TOKEN"]
    problems = named(check(env, monkeypatch), "ACTION_SERVER_TOKEN")
    assert len(problems) == 1 and "RASA_TOKEN" in problems[0], problems


def test_optional_secrets_may_be_unset(env: Dict[str, str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    del env["SUPPORT_API_TOKEN"], env["AGENT_METRICS_TOKEN"]
    assert check(env, monkeypatch) == []


def test_optional_secrets_are_checked_when_set(env: Dict[str, str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    env.update(SUPPORT_NOTIFY_SECRET="short", TWILIO_AUTH_TOKEN="test-twilio-auth-token-0123456789")
    problems = check(env, monkeypatch)
    assert named(problems, "SUPPORT_NOTIFY_SECRET") and named(problems, "TWILIO_AUTH_TOKEN")


# -------------------------------------------------------------------- widget


def test_widget_without_a_key_is_refused(env: Dict[str, str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    del env["WIDGET_JWT_SECRET"]
    assert named(check(env, monkeypatch), "WIDGET_JWT_SECRET")
    env["WIDGET_JWT_ALGORITHM"] = "RS256"
    assert named(check(env, monkeypatch), "WIDGET_JWT_PUBLIC_KEY")


@pytest.mark.parametrize("name", ["WIDGET_JWT_AUDIENCE", "WIDGET_JWT_ISSUER"])
def test_unset_audience_or_issuer_is_refused(env: Dict[str, str],
                                             monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    del env[name]
    assert len(named(check(env, monkeypatch), name)) == 1


@pytest.mark.parametrize("origins", [
    None,  # the default: the demo shop on localhost
    "http://localhost:8080",
    "https://shop.example.com,http://127.0.0.1:3000",
    "*",
    "http://app.localhost",
])
def test_local_widget_origins_are_refused(env: Dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                          origins: str) -> None:
    if origins is None:
        del env["WIDGET_ALLOWED_ORIGINS"]
    else:
        env["WIDGET_ALLOWED_ORIGINS"] = origins
    assert len(named(check(env, monkeypatch), "WIDGET_ALLOWED_ORIGINS")) == 1


# ----------------------------------------------------------------- databases


@pytest.mark.parametrize("name", ["SUPPORT_DB_URL", "ORDERS_DB_URL"])
def test_sqlite_databases_are_refused(env: Dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                      tmp_path: Path, name: str) -> None:
    del env[name]
    problems = named(check(env, monkeypatch), name)
    assert len(problems) == 1 and "not set" in problems[0] and "SQLite" in problems[0]
    env[name] = f"sqlite:///{tmp_path / 'x.db'}"
    problems = named(check(env, monkeypatch), name)
    assert len(problems) == 1 and "not set" not in problems[0]


def test_committed_database_passwords_are_refused(env: Dict[str, str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    env["SUPPORT_DB_URL"] = "postgresql://rasa:change-me@db.internal:5432/rasa"
    env.update(RASA_DB_PASSWORD="change-me", RABBITMQ_PASSWORD="guest", REDIS_PASSWORD="")
    problems = check(env, monkeypatch)
    assert named(problems, "SUPPORT_DB_URL") and named(problems, "RASA_DB_PASSWORD")
    assert named(problems, "RABBITMQ_PASSWORD") and not named(problems, "REDIS_PASSWORD")
    assert "change-me" not in " ".join(named(problems, "SUPPORT_DB_URL"))


def test_the_twilio_fake_is_refused(env: Dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    env["TWILIO_API_BASE"] = "http://127.0.0.1:8999"
    assert len(named(check(env, monkeypatch), "TWILIO_API_BASE")) == 1


def _mail_env(env: Dict[str, str]) -> Dict[str, str]:
    env.update({"SMTP_HOST": "smtp.shop.example.com", "MAIL_PUBLIC_URL":
                "https://support.shop.example.com", "APP_LINK_BASE": "https://shop.example.com/app",
                "MAIL_UNSUBSCRIBE_SECRET": secrets.token_urlsafe(32)})
    return env


def test_email_with_its_own_secret_and_public_links_passes(
        env: Dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert check(_mail_env(env), monkeypatch) == []


def test_email_without_an_unsubscribe_secret_is_refused(
        env: Dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    env = _mail_env(env)
    del env["MAIL_UNSUBSCRIBE_SECRET"]
    problems = check(env, monkeypatch)
    assert [p.split(";")[0] for p in problems] == ["MAIL_UNSUBSCRIBE_SECRET: not set"]
    env["MAIL_ENABLED"] = "false"  # turned off explicitly: nothing is signed
    assert check(env, monkeypatch) == []


def test_a_weak_or_generated_unsubscribe_secret_is_refused(
        env: Dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = _mail_env(env)
    env["MAIL_UNSUBSCRIBE_SECRET"] = "short"
    assert len(named(check(env, monkeypatch), "MAIL_UNSUBSCRIBE_SECRET")) == 1
    del env["MAIL_UNSUBSCRIBE_SECRET"]  # what `make run` wrote into var/ in development
    (tmp_path / "var").mkdir(exist_ok=True)
    (tmp_path / "var" / "mail_unsubscribe_secret").write_text(secrets.token_urlsafe(32))
    [problem] = named(check(env, monkeypatch), "MAIL_UNSUBSCRIBE_SECRET")
    assert "the development secret" in problem


def test_email_links_to_localhost_are_refused(
        env: Dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    env = _mail_env(env)
    env["MAIL_PUBLIC_URL"] = "http://localhost:5005"
    del env["APP_LINK_BASE"]  # the demo shop's address
    problems = check(env, monkeypatch)
    assert [p.split(":")[0] for p in problems] == ["MAIL_PUBLIC_URL", "APP_LINK_BASE"]


# --------------------------------------------------------------- demo agents


async def _seed(url: str, usernames: List[str], deactivate: Sequence[str] = ()) -> None:
    from bot.support.agents import AgentStore

    store = AgentStore.from_url(url)
    try:
        await store.create_schema()
        for username in usernames:
            await store.do_create_agent(username, username, secrets.token_urlsafe(12))
        if deactivate:
            import sqlalchemy as sa

            from bot.support.models import Agent

            async with store.engine.begin() as connection:
                await connection.execute(
                    sa.update(Agent).where(Agent.username.in_(deactivate)).values(active=False))
    finally:
        await store.dispose()


async def test_demo_agent_accounts_are_refused(db_url: str) -> None:
    await _seed(db_url, ["maria", *DEMO_AGENT_USERNAMES])
    problems = await demo_agent_problems(db_url)
    assert len(problems) == 2, problems
    assert all(p.startswith("SUPPORT_DB_URL:") for p in problems)
    assert "'demo-agent'" in " ".join(problems) and "'demo-admin'" in " ".join(problems)


async def test_deactivated_demo_accounts_and_other_agents_are_fine(db_url: str) -> None:
    await _seed(db_url, ["maria", "demo-agent"], deactivate=["demo-agent"])
    assert await demo_agent_problems(db_url) == []


async def test_a_database_without_agents_table_is_fine(db_url: str) -> None:
    assert await demo_agent_problems(db_url) == []


async def test_a_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nothing" / "support.db"
    assert await demo_agent_problems(f"sqlite:///{path}") == []
    assert not path.parent.exists()


async def test_an_unreachable_database_is_a_problem() -> None:
    problems = await demo_agent_problems("postgresql://nobody@127.0.0.1:9/none")
    assert len(problems) == 1 and problems[0].startswith("SUPPORT_DB_URL:")


async def test_production_problems_adds_the_database_check(
    env: Dict[str, str], monkeypatch: pytest.MonkeyPatch, sqlite_url: str
) -> None:
    await _seed(sqlite_url, ["demo-admin"])
    env["SUPPORT_DB_URL"] = sqlite_url
    problems = await production_problems(settings_for(env, monkeypatch), dict(env))
    assert [p for p in problems if "demo-admin" in p]


# --------------------------------------------------------------- enforcement


def test_enforce_does_nothing_in_development(env: Dict[str, str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    env["SUPPORT_ENV"] = "development"
    del env["RASA_TOKEN"], env["SUPPORT_DB_URL"]
    enforce_production(settings_for(env, monkeypatch), "test")


def test_enforce_exits_with_the_list(env: Dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture) -> None:
    env["SUPPORT_DB_URL"] = "sqlite:///" + str(Path(env["SUPPORT_VAR_DIR"]) / "none.db")
    with pytest.raises(SystemExit) as stopped:
        enforce_production(settings_for(env, monkeypatch), "the widget",
                           ["RASA_ENDPOINTS: extra"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "the widget: refusing to start in production" in err
    assert "  - RASA_ENDPOINTS: extra" in err and "  - SUPPORT_DB_URL:" in err


def test_demo_programs_refuse_production(env: Dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stopped:
        refuse_in_production(settings_for(env, monkeypatch), "the demo shop")
    assert stopped.value.code == 2
    assert "the demo shop" in capsys.readouterr().err
    env["SUPPORT_ENV"] = "development"
    refuse_in_production(settings_for(env, monkeypatch), "the demo shop")


# ------------------------------------------------------- bot/serve.py helpers


def _endpoints(path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    from rasa.core.utils import AvailableEndpoints

    if path.name == "endpoints.production.yml":
        from tests.integration.test_production_config import _example_env

        for name, value in _example_env().items():
            monkeypatch.setenv(name, value)
    return AvailableEndpoints.read_endpoints(str(path))


def test_the_embedded_endpoints_file_is_refused_in_production(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bot.serve import endpoint_problems

    problems = endpoint_problems(_endpoints(PROJECT_ROOT / "endpoints.yml", monkeypatch))
    assert len(problems) == 1 and problems[0].startswith("RASA_ENDPOINTS:")
    production = PROJECT_ROOT / "deploy" / "endpoints.production.yml"
    assert endpoint_problems(_endpoints(production, monkeypatch)) == []


def test_the_action_endpoint_carries_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.serve import authorize_action_endpoint

    endpoints = _endpoints(PROJECT_ROOT / "endpoints.yml", monkeypatch)
    endpoints.action.headers = {"authorization": "Bearer old", "X-Other": "1"}
    authorize_action_endpoint(endpoints, "s3cret")
    assert endpoints.action.headers == {"X-Other": "1", "Authorization": "Bearer s3cret"}
    assert endpoints.action.copy().headers["Authorization"] == "Bearer s3cret"

    endpoints.action = None
    with pytest.raises(ValueError, match="action_endpoint"):
        authorize_action_endpoint(endpoints, "s3cret")


# ---------------------------------------------------------------- agent push (bot/push)

def test_production_needs_the_vapid_keys_unless_push_is_off(
        env: Dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VAPID_PRIVATE_KEY", "VAPID_PUBLIC_KEY", "VAPID_SUBJECT"):
        env.pop(name)
    problems = check(env, monkeypatch)
    assert [p.split(":")[0] for p in problems] == [
        "VAPID_PRIVATE_KEY", "VAPID_PUBLIC_KEY", "VAPID_SUBJECT"], problems
    assert "PUSH_ENABLED=false" in named(problems, "VAPID_PRIVATE_KEY")[0]
    env["PUSH_ENABLED"] = "false"
    assert check(env, monkeypatch) == []


def test_production_refuses_a_mismatched_or_generated_vapid_key(
        env: Dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env["VAPID_PUBLIC_KEY"] = _vapid_env()["VAPID_PUBLIC_KEY"]
    assert named(check(env, monkeypatch), "VAPID_PUBLIC_KEY") == [
        "VAPID_PUBLIC_KEY: is not the public key of VAPID_PRIVATE_KEY."]
    # the pair `make run` generates into var/ is a development key
    from bot.push.keys import main as keys_main

    var_dir = Path(env["SUPPORT_VAR_DIR"])
    assert keys_main(["generate", "--dir", str(var_dir)]) == 0
    assert oct((var_dir / "vapid_private_key").stat().st_mode & 0o777) == "0o600"
    for name in ("VAPID_PRIVATE_KEY", "VAPID_PUBLIC_KEY"):
        env.pop(name)
    problems = named(check(env, monkeypatch), "VAPID_PRIVATE_KEY")
    assert len(problems) == 1 and "the development secret `make run` generates" in problems[0]
