"""OVERTIME_ENV=production: the real processes refuse to start with a dev secret.

The API (``python -m starter.serve``) and the worker (``python -m worker``) are started as
a deployment starts them, with the repository's public development defaults: each exits
non-zero within seconds, naming every unsafe variable on stderr and no secret value.
Which configurations pass is checked on ``overtime.production`` directly (no production
stack is needed for that).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from itsdangerous import TimestampSigner
from pydantic import ValidationError
from temporalio.api.common.v1 import Payload

from overtime.production import (
    Problem,
    production_problems,
    production_warnings,
    require_production_ready,
)
from overtime.settings import Settings
from overtime.temporal import EncryptionCodec, codec_for, is_refused
from starter.web.config import DEV_SESSION_SECRET, WebSettings
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0

DEV_PAYLOAD_KEY = Settings.model_fields["payload_key"].default
# Every variable whose development default is public, and the switches a dev stack has.
DEV_DEFAULT_VARIABLES = {
    "OVERTIME_ADMIN_EMAIL",
    "OVERTIME_SMTP_HOST",
    "OVERTIME_ADMIN_TOKEN",
    "OVERTIME_TELEPHONY_TOKEN",
    "OVERTIME_PAYLOAD_KEY",
    "OVERTIME_PAYLOAD_KEY_ID",
    "OVERTIME_WEBHOOK_SECRET",
    "STRIPE_WEBHOOK_SECRET",
    "STRIPE_API_KEY",
    "STRIPE_PUBLISHABLE_KEY",
    "OVERTIME_STRIPE_API_BASE",
    "OVERTIME_ADMIN_PASSWORD",
    "OVERTIME_WEB_SESSION_SECRET",
    "OVERTIME_WEB_HTTPS_ONLY",
}
PUBLIC_VALUES = (
    "dev-admin-token",
    "dev-telephony-token",
    "dev-webhook-secret",
    "whsec_overtime_local",
    "sk_test_overtime_local",
    "dev-admin-password",
    DEV_SESSION_SECRET,
    Settings.model_fields["payload_key"].default,
)


def strong_env() -> dict[str, str]:
    """A production environment with a strong, distinct secret everywhere."""
    return {
        "OVERTIME_ENV": "production",
        "OVERTIME_ADMIN_TOKEN": secrets.token_urlsafe(32),
        "OVERTIME_TELEPHONY_TOKEN": secrets.token_urlsafe(32),
        "OVERTIME_WEBHOOK_SECRET": secrets.token_urlsafe(32),
        "OVERTIME_PAYLOAD_KEY": base64.b64encode(os.urandom(32)).decode(),
        "OVERTIME_PAYLOAD_KEY_ID": "prod-2026-12",
        "OVERTIME_ADMIN_EMAIL": "ops@example.com",
        "OVERTIME_ADMIN_PASSWORD": secrets.token_urlsafe(18),
        "OVERTIME_WEB_SESSION_SECRET": secrets.token_urlsafe(48),
        "OVERTIME_WEB_HTTPS_ONLY": "true",
        "OVERTIME_SMTP_HOST": "smtp.example.com",
        "OVERTIME_SMTP_PORT": "587",
        "OVERTIME_MAIL_FROM": "Overtime <billing@example.com>",
        "OVERTIME_TRUSTED_PROXIES": '["172.28.80.10"]',
        "OVERTIME_PUBLIC_URL": "https://billing.example.com",
        "OVERTIME_DATABASE_URL": "postgresql+psycopg2://overtime:x@db/overtime",
        "STRIPE_API_KEY": "sk_live_" + secrets.token_urlsafe(24),
        "STRIPE_PUBLISHABLE_KEY": "pk_live_" + secrets.token_urlsafe(24),
        "STRIPE_WEBHOOK_SECRET": "whsec_" + secrets.token_urlsafe(24),
        "OVERTIME_LEGAL_COMPANY": "Safina AI GmbH",
        "OVERTIME_LEGAL_ADDRESS": "Beispielweg 2, 80331 München",
        "OVERTIME_LEGAL_REGISTER": "Amtsgericht München, HRB 123456",
        "OVERTIME_LEGAL_VAT_ID": "DE123456789",
    }


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without anyone's OVERTIME_* or Stripe settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OVERTIME_", "STRIPE_"))}
    env.update(extra)
    return env


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Build (Settings, WebSettings) from exactly the environment given, as a process does."""
    for key in list(os.environ):
        if key.startswith(("OVERTIME_", "STRIPE_")):
            monkeypatch.delenv(key)

    def build(env: dict[str, str]) -> tuple[Settings, WebSettings]:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return Settings(), WebSettings()

    yield build


def variables(problems: list[Problem]) -> set[str]:
    return {problem.variable for problem in problems}


# --- the real processes -------------------------------------------------------------------


def run_refused(argv: list[str], env: dict[str, str], tmp_path: Path) -> tuple[float, str]:
    env = {**env, "OVERTIME_DATA_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    result = subprocess.run(
        argv,
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=START_TIMEOUT,
    )
    elapsed = time.monotonic() - started
    assert result.returncode != 0, result.stderr.decode(errors="replace")
    return elapsed, result.stderr.decode(errors="replace")


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([sys.executable, "-m", "worker"], id="worker"),
        pytest.param(
            [sys.executable, "-m", "starter.serve", "--host", "127.0.0.1", "--port", "0"],
            id="api",
        ),
    ],
)
def test_production_with_dev_defaults_exits_naming_every_variable(
    argv: list[str], tmp_path: Path
) -> None:
    # No Temporal, no database: the refusal must come before anything connects.
    elapsed, stderr = run_refused(argv, clean_env(OVERTIME_ENV="production"), tmp_path)
    assert elapsed < 15, f"took {elapsed:.1f} s to refuse"
    assert "OVERTIME_ENV=production" in stderr
    lines = stderr.splitlines()
    for variable in DEV_DEFAULT_VARIABLES:
        assert any(line.strip().startswith(f"{variable}:") for line in lines), (
            f"{variable} not named on a line of its own:\n{stderr}"
        )
    for value in PUBLIC_VALUES:
        assert value not in stderr, "a secret value was printed"


def test_a_cookie_forged_with_the_public_session_secret_meets_no_server(
    tmp_path: Path,
) -> None:
    """The issue's attack: sign a customer's session with the secret in the repository.

    In production the API does not run with that secret at all: everything else strong,
    the session secret public, the process exits naming only OVERTIME_WEB_SESSION_SECRET,
    and the forged cookie finds no server to accept it.
    """
    port = free_port()
    env = clean_env(**{**strong_env(), "OVERTIME_WEB_SESSION_SECRET": DEV_SESSION_SECRET})
    argv = [sys.executable, "-m", "starter.serve", "--host", "127.0.0.1", "--port", str(port)]
    _, stderr = run_refused(argv, env, tmp_path)
    named = {line.strip().split(":", 1)[0] for line in stderr.splitlines() if line.startswith("  ")}
    assert named == {"OVERTIME_WEB_SESSION_SECRET"}, stderr
    assert DEV_SESSION_SECRET not in stderr
    forged = TimestampSigner(DEV_SESSION_SECRET).sign(
        base64.b64encode(json.dumps({"account_id": "victim", "csrf": "x"}).encode())
    )
    with pytest.raises(httpx.ConnectError):
        httpx.post(
            f"http://127.0.0.1:{port}/app/settings",
            cookies={"overtime_session": forged.decode()},
            data={"limit_eur": "9999"},
            timeout=2,
        )


def test_development_mode_starts_and_warns_with_the_same_defaults(
    configure: object, caplog: pytest.LogCaptureFixture
) -> None:
    settings, web = configure({})  # type: ignore[operator]
    assert not settings.is_production
    with caplog.at_level(logging.WARNING, logger="overtime.production"):
        require_production_ready(settings, web)  # no exit
    [record] = [r for r in caplog.records if r.name == "overtime.production"]
    for variable in DEV_DEFAULT_VARIABLES:
        assert variable in record.getMessage()
    for value in PUBLIC_VALUES:
        assert value not in record.getMessage()


# --- which configurations pass ----------------------------------------------------------


def test_strong_distinct_secrets_pass(configure: object) -> None:
    settings, web = configure(strong_env())  # type: ignore[operator]
    assert settings.is_production
    assert production_problems(settings, web) == []
    require_production_ready(settings, web)  # does not exit
    assert settings.stripe_api_base is None  # a live key talks to Stripe itself
    assert production_warnings(settings, web) == []


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("OVERTIME_ADMIN_TOKEN", "dev-admin-token", "public development default"),
        ("OVERTIME_ADMIN_TOKEN", "", "missing"),
        ("OVERTIME_ADMIN_TOKEN", "short-token", "too short"),
        ("OVERTIME_TELEPHONY_TOKEN", "dev-telephony-token", "public development default"),
        ("OVERTIME_WEBHOOK_SECRET", "dev-webhook-secret", "public development default"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_overtime_local", "public development default"),
        ("OVERTIME_ADMIN_PASSWORD", "dev-admin-password", "public development default"),
        ("OVERTIME_ADMIN_PASSWORD", "hunter2hunter2", "too short"),
        ("OVERTIME_WEB_SESSION_SECRET", DEV_SESSION_SECRET, "public development default"),
        ("OVERTIME_WEB_SESSION_SECRET", "a" * 31, "too short"),
        ("OVERTIME_PAYLOAD_KEY", Settings.model_fields["payload_key"].default, "public"),
        ("OVERTIME_PAYLOAD_KEY", base64.b64encode(os.urandom(16)).decode(), "32 bytes"),
        ("OVERTIME_PAYLOAD_KEY", "not base64 at all!" * 3, "32 bytes"),
        ("OVERTIME_PAYLOAD_KEY_ID", "dev-1", "public development id"),
        ("STRIPE_PUBLISHABLE_KEY", "pk_test_overtime_local", "public development default"),
        ("STRIPE_API_KEY", "not-a-stripe-key-at-all", "not a Stripe secret key"),
        ("OVERTIME_CODEC_ALLOW_LOOPBACK", "true", "must be false"),
        ("OVERTIME_WEB_HTTPS_ONLY", "false", "must be true"),
        ("OVERTIME_TRUSTED_PROXIES", '["0.0.0.0/0"]', "from everyone"),
        ("OVERTIME_PAYLOAD_OLD_KEYS", '{"old-1": "dG9vLXNob3J0"}', "32 bytes"),
        # The public dev key accepted as an old key: under any id, and its id alone.
        ("OVERTIME_PAYLOAD_OLD_KEYS", json.dumps({"old-1": DEV_PAYLOAD_KEY}), "public"),
        (
            "OVERTIME_PAYLOAD_OLD_KEYS",
            json.dumps({"dev-1": base64.b64encode(os.urandom(32)).decode()}),
            "public development id",
        ),
        # The current id again would replace the current key in the codec's table.
        (
            "OVERTIME_PAYLOAD_OLD_KEYS",
            json.dumps({"prod-2026-12": base64.b64encode(os.urandom(32)).decode()}),
            "OVERTIME_PAYLOAD_KEY_ID's",
        ),
        ("OVERTIME_ADMIN_EMAIL", "admin@overtime.local", "public development default"),
        ("OVERTIME_ADMIN_EMAIL", "ADMIN@overtime.local", "public development default"),
        ("OVERTIME_ADMIN_EMAIL", "admin", "not an email address"),
        ("OVERTIME_ADMIN_EMAIL", "ops@localhost", "not an email address"),
        ("OVERTIME_SMTP_HOST", "mailcatcher", "compose mail catcher"),
        ("OVERTIME_ALLOWED_HOSTS", '["billing.example.com", "*"]', "contains '*'"),
    ],
)
def test_each_weakness_is_refused_by_name(
    configure: object, variable: str, value: str, reason: str
) -> None:
    settings, web = configure({**strong_env(), variable: value})  # type: ignore[operator]
    problems = production_problems(settings, web)
    assert variables(problems) == {variable}, problems
    assert reason in problems[0].reason
    with pytest.raises(SystemExit) as exit_info:
        require_production_ready(settings, web)
    message = str(exit_info.value.code)
    assert f"  {variable}: " in message
    if len(value) >= 8:
        assert value not in message, "the refusal printed the secret"


def test_the_dev_stripe_key_names_both_key_and_fake(configure: object) -> None:
    # The dev key keeps the fake Stripe's base URL: both are named.
    env = {**strong_env(), "STRIPE_API_KEY": "sk_test_overtime_local"}
    settings, web = configure(env)  # type: ignore[operator]
    assert variables(production_problems(settings, web)) == {
        "STRIPE_API_KEY",
        "OVERTIME_STRIPE_API_BASE",
    }


def test_one_secret_used_twice_is_refused(configure: object) -> None:
    env = strong_env()
    env["OVERTIME_TELEPHONY_TOKEN"] = env["OVERTIME_ADMIN_TOKEN"]
    settings, web = configure(env)  # type: ignore[operator]
    [problem] = production_problems(settings, web)
    assert problem.variable == "OVERTIME_TELEPHONY_TOKEN"
    assert "same value as OVERTIME_ADMIN_TOKEN" in problem.reason


def test_a_real_key_sent_to_another_base_is_refused(configure: object) -> None:
    env = {**strong_env(), "OVERTIME_STRIPE_API_BASE": "http://fake-stripe:8420"}
    settings, web = configure(env)  # type: ignore[operator]
    [problem] = production_problems(settings, web)
    assert problem.variable == "OVERTIME_STRIPE_API_BASE"
    assert "OVERTIME_STAGING_FAKE_STRIPE" in problem.reason


def test_the_staging_fake_stripe_is_an_explicit_opt_in(configure: object) -> None:
    staging = {
        **strong_env(),
        "OVERTIME_STAGING_FAKE_STRIPE": "true",
        "OVERTIME_STRIPE_API_BASE": "http://fake-stripe:8420",
        "STRIPE_API_KEY": "sk_test_overtime_local",
        "STRIPE_PUBLISHABLE_KEY": "pk_test_overtime_local",
    }
    settings, web = configure(staging)  # type: ignore[operator]
    assert production_problems(settings, web) == []
    assert settings.stripe_api_base == "http://fake-stripe:8420"
    assert "OVERTIME_STAGING_FAKE_STRIPE" in variables(production_warnings(settings, web))


def test_the_staging_flag_alone_names_no_fake(configure: object) -> None:
    env = {**strong_env(), "OVERTIME_STAGING_FAKE_STRIPE": "true", "STRIPE_API_KEY": "sk_test_x"}
    settings, web = configure(env)  # type: ignore[operator]
    assert variables(production_problems(settings, web)) == {"OVERTIME_STRIPE_API_BASE"}


def test_a_live_key_is_never_sent_to_the_staging_fake(configure: object) -> None:
    env = {
        **strong_env(),
        "OVERTIME_STAGING_FAKE_STRIPE": "true",
        "OVERTIME_STRIPE_API_BASE": "http://fake-stripe:8420",
    }
    settings, web = configure(env)  # type: ignore[operator]
    [problem] = production_problems(settings, web)
    assert problem.variable == "STRIPE_API_KEY" and "live key" in problem.reason


def test_the_legal_footers_placeholder_is_a_warning_in_production(configure: object) -> None:
    env = {k: v for k, v in strong_env().items() if k != "OVERTIME_LEGAL_REGISTER"}
    settings, web = configure(env)  # type: ignore[operator]
    assert production_problems(settings, web) == []
    assert variables(production_warnings(settings, web)) == {"OVERTIME_LEGAL_REGISTER"}


def test_accepting_plaintext_payloads_is_a_loud_warning_not_a_refusal(
    configure: object, caplog: pytest.LogCaptureFixture
) -> None:
    # Allowed while a deployment that ran without encryption migrates its histories.
    settings, web = configure({**strong_env(), "OVERTIME_PAYLOAD_ACCEPT_PLAINTEXT": "true"})  # type: ignore[operator]
    assert production_problems(settings, web) == []
    with caplog.at_level(logging.WARNING, logger="overtime.production"):
        require_production_ready(settings, web)
    assert any("OVERTIME_PAYLOAD_ACCEPT_PLAINTEXT" in r.getMessage() for r in caplog.records)


# --- mail: the one-time sign-in codes must reach their owner --------------------------------


def test_unset_smtp_is_the_dev_mail_catcher_and_refused(configure: object) -> None:
    env = strong_env()
    del env["OVERTIME_SMTP_HOST"], env["OVERTIME_SMTP_PORT"]
    settings, web = configure(env)  # type: ignore[operator]
    [problem] = production_problems(settings, web)
    assert problem.variable == "OVERTIME_SMTP_HOST" and "mail catcher" in problem.reason


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_a_local_relay_is_a_warning_not_a_refusal(configure: object, host: str) -> None:
    settings, web = configure(
        {**strong_env(), "OVERTIME_SMTP_HOST": host, "OVERTIME_SMTP_PORT": "25"}
    )  # type: ignore[operator]
    assert production_problems(settings, web) == []
    assert variables(production_warnings(settings, web)) == {"OVERTIME_SMTP_HOST"}


def test_the_mail_catcher_is_for_staging_only(configure: object) -> None:
    staging = {
        **strong_env(),
        "OVERTIME_STAGING_FAKE_STRIPE": "true",
        "OVERTIME_STRIPE_API_BASE": "http://fake-stripe:8420",
        "STRIPE_API_KEY": "sk_test_staging",
        "OVERTIME_SMTP_HOST": "mailcatcher",
        "OVERTIME_SMTP_PORT": "1025",
    }
    settings, web = configure(staging)  # type: ignore[operator]
    assert production_problems(settings, web) == []
    assert "OVERTIME_SMTP_HOST" in variables(production_warnings(settings, web))


def test_the_dev_sender_is_a_warning(configure: object) -> None:
    env = {**strong_env(), "OVERTIME_MAIL_FROM": "Billing <BILLING@overtime.local>"}
    settings, web = configure(env)  # type: ignore[operator]
    assert production_problems(settings, web) == []
    assert variables(production_warnings(settings, web)) == {"OVERTIME_MAIL_FROM"}


# --- old payload keys decrypt what arrives: never a public or shared one -------------------


async def test_the_public_dev_key_as_an_old_key_is_refused(configure: object) -> None:
    """The attack: anyone encrypts an Update with the public key; the codec believes it."""
    env = {**strong_env(), "OVERTIME_PAYLOAD_OLD_KEYS": json.dumps({"legacy": DEV_PAYLOAD_KEY})}
    settings, web = configure(env)  # type: ignore[operator]
    # What it would let through: a payload the attacker encrypted with the public key
    # decodes as a real one with this configuration...
    attacker = EncryptionCodec("legacy", base64.b64decode(DEV_PAYLOAD_KEY))
    forged = await attacker.encode([Payload(metadata={"encoding": b"json/plain"}, data=b"{}")])
    [decoded] = await codec_for(settings).decode(forged)
    assert not is_refused(decoded) and decoded.data == b"{}"
    # ...so production refuses to start with it.
    problems = production_problems(settings, web)
    assert variables(problems) == {"OVERTIME_PAYLOAD_OLD_KEYS"}
    assert any("public development key" in p.reason for p in problems)
    with pytest.raises(SystemExit) as exit_info:
        require_production_ready(settings, web)
    assert DEV_PAYLOAD_KEY not in str(exit_info.value.code)


def test_an_old_key_that_is_another_secret_is_refused(configure: object) -> None:
    env = strong_env()
    # The current key again (a rotation that did not happen), in another spelling.
    same_key = base64.b64encode(base64.b64decode(env["OVERTIME_PAYLOAD_KEY"])).decode()
    env["OVERTIME_PAYLOAD_OLD_KEYS"] = json.dumps({"prod-2026-01": same_key})
    settings, web = configure(env)  # type: ignore[operator]
    [problem] = production_problems(settings, web)
    assert problem.variable == "OVERTIME_PAYLOAD_OLD_KEYS"
    assert "same value as OVERTIME_PAYLOAD_KEY" in problem.reason
    # A token pasted as an old key.
    admin_token = base64.b64encode(os.urandom(32)).decode()
    env = {
        **strong_env(),
        "OVERTIME_ADMIN_TOKEN": admin_token,
        "OVERTIME_PAYLOAD_OLD_KEYS": json.dumps({"prod-2026-01": admin_token}),
    }
    settings, web = configure(env)  # type: ignore[operator]
    [problem] = production_problems(settings, web)
    assert problem.variable == "OVERTIME_PAYLOAD_OLD_KEYS"
    assert "same value as OVERTIME_ADMIN_TOKEN" in problem.reason


def test_a_real_old_key_passes(configure: object) -> None:
    old = base64.b64encode(os.urandom(32)).decode()
    env = {**strong_env(), "OVERTIME_PAYLOAD_OLD_KEYS": json.dumps({"prod-2026-01": old})}
    settings, web = configure(env)  # type: ignore[operator]
    assert production_problems(settings, web) == []


# --- trusted proxies and allowed hosts: a typo is refused, in every environment ------------


@pytest.mark.parametrize(
    "entry", ["nginx", "10.0.0.0/8x", "10.0.0.1/33", "172.28.80.10:8080", "*", ""]
)
def test_a_trusted_proxy_that_is_not_an_address_is_refused(configure: object, entry: str) -> None:
    # uvicorn would take it as a literal no peer equals: every client would then look
    # like the proxy and share one sign-in limit (a global lockout).
    with pytest.raises(ValidationError, match="OVERTIME_TRUSTED_PROXIES") as error:
        configure({"OVERTIME_TRUSTED_PROXIES": json.dumps(["172.28.80.10", entry])})  # type: ignore[operator]
    assert repr(entry.strip()) in str(error.value) or entry == "*"


def test_trusted_proxies_take_addresses_and_networks(configure: object) -> None:
    entries = ["172.28.80.10", "10.0.0.0/8", "10.1.2.3/16", "::1", "fd00::/8"]
    settings, _ = configure({"OVERTIME_TRUSTED_PROXIES": json.dumps(entries)})  # type: ignore[operator]
    assert settings.trusted_proxies == entries


@pytest.mark.parametrize(
    "entry",
    [
        "https://billing.example.com",
        "billing.example.com:443",
        "billing.example.com/app",
        "-bad.example.com",
        "a..b",
        "*.",
        "",
        "bill ing.example.com",
    ],
)
def test_an_allowed_host_that_is_not_a_host_name_is_refused(configure: object, entry: str) -> None:
    with pytest.raises(ValidationError, match="OVERTIME_ALLOWED_HOSTS"):
        configure({"OVERTIME_ALLOWED_HOSTS": json.dumps(["127.0.0.1", entry])})  # type: ignore[operator]


def test_allowed_hosts_take_names_addresses_and_subdomain_patterns(configure: object) -> None:
    entries = ["Billing.Example.com", "*.example.org", "127.0.0.1", "[::1]", "localhost", "api_1"]
    settings, _ = configure({"OVERTIME_ALLOWED_HOSTS": json.dumps(entries)})  # type: ignore[operator]
    assert settings.allowed_hosts == [
        "billing.example.com",
        "*.example.org",
        "127.0.0.1",
        "::1",
        "localhost",
        "api_1",
    ]
    # "*" is allowed in development (answer any Host) and refused in production above.
    settings, _ = configure({"OVERTIME_ALLOWED_HOSTS": '["*"]'})  # type: ignore[operator]
    assert settings.allowed_hosts == ["*"]


def test_the_api_does_not_start_with_a_proxy_name(tmp_path: Path) -> None:
    env = clean_env(**{**strong_env(), "OVERTIME_TRUSTED_PROXIES": '["nginx"]'})
    argv = [sys.executable, "-m", "starter.serve", "--host", "127.0.0.1", "--port", "0"]
    elapsed, stderr = run_refused(argv, env, tmp_path)
    assert elapsed < 15
    assert "OVERTIME_TRUSTED_PROXIES: 'nginx' is not an IP address" in stderr
