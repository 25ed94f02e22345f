"""What makes a process unsafe for production, and the refusal to start with it.

Every secret has a development default so that ``make run`` works on a fresh machine;
those defaults are in this repository, so anyone can sign a session cookie, call the
admin API or decrypt payloads with them. With ``OVERTIME_ENV=production`` the API
(``starter.api.app_from_env``) and the worker (``python -m worker``) call
:func:`require_production_ready` before they connect to anything, and exit non-zero with
one line per problem, naming the variable (never its value). In development the same
list is logged once as a warning.

The staging fake Stripe is an explicit opt-in: ``OVERTIME_STAGING_FAKE_STRIPE=true``
together with an explicitly set ``OVERTIME_STRIPE_API_BASE``; without both, production
talks to Stripe itself and needs a real key.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
import re
from dataclasses import dataclass
from email.utils import parseaddr
from itertools import combinations
from urllib.parse import urlsplit

from overtime.settings import Settings
from starter.web.config import DEV_SESSION_SECRET, WebSettings

log = logging.getLogger("overtime.production")

# Tokens and passwords shorter than this are guessable or were typed by hand.
MIN_SECRET_CHARS = 16
# The session secret signs every customer's cookie: HMAC wants a long key.
MIN_SESSION_SECRET_CHARS = 32
PAYLOAD_KEY_BYTES = 32

# Public values beyond the settings' own defaults (which are read from the models, so a
# changed default is still recognised): the fake Stripe's own publishable key.
_EXTRA_PUBLIC_VALUES: dict[str, frozenset[str]] = {
    "STRIPE_PUBLISHABLE_KEY": frozenset({"pk_test_overtime"}),
    "OVERTIME_WEB_SESSION_SECRET": frozenset({DEV_SESSION_SECRET}),
}

# Good enough to catch a name, a typo or a missing domain; deliverability is the mail
# server's to judge.
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")
# The compose mail catcher's service name (docker-compose.yml, staging/debug profiles).
_COMPOSE_CATCHER = "mailcatcher"

GENERATE_HINT = (
    "Generate secrets with: python -c 'import secrets; print(secrets.token_urlsafe(32))'\n"
    "and the payload key with: "
    "python -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())'"
)


@dataclass(frozen=True)
class Problem:
    """One setting that is unsafe in production; ``reason`` never contains its value."""

    variable: str
    reason: str

    def __str__(self) -> str:
        return f"{self.variable}: {self.reason}"


def _public_values(
    variable: str, model: type[Settings] | type[WebSettings], field: str
) -> set[str]:
    values = set(_EXTRA_PUBLIC_VALUES.get(variable, frozenset()))
    default = model.model_fields[field].default
    if isinstance(default, str):
        values.add(default)
    return values


def _secret_problem(variable: str, value: str, public: set[str], min_chars: int) -> Problem | None:
    value = value.strip()
    if not value:
        return Problem(variable, "is missing or empty")
    if value in public:
        return Problem(variable, "is the public development default")
    if len(value) < min_chars:
        return Problem(variable, f"is too short (at least {min_chars} characters)")
    return None


def _payload_key_problems(settings: Settings) -> list[Problem]:
    problems = []
    key = settings.payload_key.strip()
    public_key = _public_values("OVERTIME_PAYLOAD_KEY", Settings, "payload_key")
    if not key:
        problems.append(Problem("OVERTIME_PAYLOAD_KEY", "is missing or empty"))
    elif key in public_key:
        problems.append(Problem("OVERTIME_PAYLOAD_KEY", "is the public development default"))
    elif not _is_key(key):
        problems.append(
            Problem("OVERTIME_PAYLOAD_KEY", f"is not base64 of {PAYLOAD_KEY_BYTES} bytes")
        )
    key_id = settings.payload_key_id.strip()
    if not key_id:
        problems.append(Problem("OVERTIME_PAYLOAD_KEY_ID", "is missing or empty"))
    elif key_id in _public_values("OVERTIME_PAYLOAD_KEY_ID", Settings, "payload_key_id"):
        # The id travels in every payload's metadata: the public id says "encrypted with
        # the public key" to anyone reading the history, and a new key must get a new id
        # so old histories stay readable through OVERTIME_PAYLOAD_OLD_KEYS.
        problems.append(
            Problem("OVERTIME_PAYLOAD_KEY_ID", "is the public development id; name your own key")
        )
    problems += _old_key_problems(settings, key_id, {_decoded(v) for v in public_key})
    return problems


def _old_key_problems(settings: Settings, key_id: str, public_keys: set[bytes]) -> list[Problem]:
    """Old keys decrypt incoming payloads too: a public one reopens the frontend.

    The codec decodes with every old key, so an Update encrypted with the public dev key
    under any of the old ids is accepted as if the worker had written it.
    """
    problems = []
    public_ids = _public_values("OVERTIME_PAYLOAD_KEY_ID", Settings, "payload_key_id")
    current = _decoded(settings.payload_key.strip())
    for old_id, old in settings.payload_old_keys.items():
        label = f"the key of id {old_id!r}"
        value = _decoded(old.strip())
        if old_id.strip() in public_ids:
            problems.append(
                Problem(
                    "OVERTIME_PAYLOAD_OLD_KEYS",
                    f"{label}: the public development id; a development history is not "
                    "worth reading in production",
                )
            )
        elif old_id.strip() == key_id:
            # The codec's table is by id: this entry would replace the current key.
            problems.append(
                Problem(
                    "OVERTIME_PAYLOAD_OLD_KEYS",
                    f"{label} is OVERTIME_PAYLOAD_KEY_ID's; an old key needs its old id",
                )
            )
        if not _is_key(old.strip()):
            problems.append(
                Problem(
                    "OVERTIME_PAYLOAD_OLD_KEYS",
                    f"{label} is not base64 of {PAYLOAD_KEY_BYTES} bytes",
                )
            )
        elif value in public_keys:
            problems.append(
                Problem(
                    "OVERTIME_PAYLOAD_OLD_KEYS",
                    f"{label} is the public development key: anyone could encrypt an "
                    "Update the worker accepts",
                )
            )
        elif value == current:
            problems.append(
                Problem(
                    "OVERTIME_PAYLOAD_OLD_KEYS",
                    f"{label} is the same value as OVERTIME_PAYLOAD_KEY; an old key is the "
                    "one it replaced",
                )
            )
    return problems


def _decoded(value: str) -> bytes:
    """The key's bytes (two spellings of one key are one key); b"" when not base64."""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return b""


def _is_key(value: str) -> bool:
    try:
        return len(base64.b64decode(value, validate=True)) == PAYLOAD_KEY_BYTES
    except (binascii.Error, ValueError):
        return False


def _origin(url: str) -> str:
    # Only scheme and host: a URL could carry credentials in its user part.
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}" + (f":{parts.port}" if parts.port else "")


def _stripe_problems(settings: Settings) -> list[Problem]:
    problems = []
    key = settings.stripe_api_key.strip()
    publishable = settings.stripe_publishable_key.strip()
    base_explicit = "stripe_api_base" in settings.model_fields_set and bool(
        settings.stripe_api_base
    )
    if settings.staging_fake_stripe:
        if not base_explicit:
            problems.append(
                Problem(
                    "OVERTIME_STRIPE_API_BASE",
                    "must name the fake Stripe explicitly when OVERTIME_STAGING_FAKE_STRIPE "
                    "is true",
                )
            )
        if key.startswith(("sk_live_", "rk_live_")):
            problems.append(
                Problem(
                    "STRIPE_API_KEY",
                    "is a live key, and OVERTIME_STAGING_FAKE_STRIPE would send it to a fake",
                )
            )
        return problems
    public_key = _public_values("STRIPE_API_KEY", Settings, "stripe_api_key")
    if not key:
        problems.append(Problem("STRIPE_API_KEY", "is missing or empty"))
    elif key in public_key:
        problems.append(
            Problem(
                "STRIPE_API_KEY",
                "is the public development default (the fake Stripe's); set a Stripe key, "
                "or opt into the staging fake with OVERTIME_STAGING_FAKE_STRIPE=true",
            )
        )
    elif not key.startswith(("sk_", "rk_")):
        problems.append(Problem("STRIPE_API_KEY", "is not a Stripe secret key (sk_… or rk_…)"))
    if settings.stripe_api_base is not None:
        problems.append(
            Problem(
                "OVERTIME_STRIPE_API_BASE",
                f"sends Stripe calls to {_origin(settings.stripe_api_base)} instead of Stripe; "
                "unset it, or opt into a staging fake with OVERTIME_STAGING_FAKE_STRIPE=true",
            )
        )
    public_publishable = _public_values(
        "STRIPE_PUBLISHABLE_KEY", Settings, "stripe_publishable_key"
    )
    if not publishable:
        problems.append(Problem("STRIPE_PUBLISHABLE_KEY", "is missing or empty"))
    elif publishable in public_publishable:
        problems.append(Problem("STRIPE_PUBLISHABLE_KEY", "is the public development default"))
    elif not publishable.startswith("pk_"):
        problems.append(Problem("STRIPE_PUBLISHABLE_KEY", "is not a Stripe publishable key"))
    return problems


def _catch_all_proxies(settings: Settings) -> list[str]:
    found = []
    for entry in settings.trusted_proxies:
        # "*" and malformed entries never get this far: Settings refuses them
        # (overtime.settings.check_trusted_proxies), in every environment.
        try:
            if ipaddress.ip_network(entry.strip(), strict=False).prefixlen == 0:
                found.append(entry)
        except ValueError:
            continue
    return found


def _is_loopback_host(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower().rstrip(".") == "localhost"


def _mail_problems(settings: Settings, web: WebSettings) -> list[Problem]:
    """After five wrong passwords the owner signs in with an emailed one-time code: mail
    that goes nowhere locks owners out, and the admin's address must be a real one."""
    problems = []
    admin_email = web.admin_email.strip()
    if admin_email.lower() in {
        v.lower() for v in _public_values("OVERTIME_ADMIN_EMAIL", WebSettings, "admin_email")
    }:
        problems.append(
            Problem("OVERTIME_ADMIN_EMAIL", "is the public development default; use a mailbox")
        )
    elif not _EMAIL.fullmatch(admin_email):
        problems.append(Problem("OVERTIME_ADMIN_EMAIL", "is not an email address"))
    defaults = (
        Settings.model_fields["smtp_host"].default,
        Settings.model_fields["smtp_port"].default,
    )
    if (settings.smtp_host.strip(), settings.smtp_port) == defaults:
        problems.append(
            Problem(
                "OVERTIME_SMTP_HOST",
                "is unset: mail would go to the development mail catcher "
                f"({defaults[0]}:{defaults[1]}); name your mail relay",
            )
        )
    elif (
        settings.smtp_host.strip().lower() == _COMPOSE_CATCHER and not settings.staging_fake_stripe
    ):
        # The compose mail catcher keeps every message: only a staging stack (the one
        # with the fake Stripe opt-in) may send there.
        problems.append(
            Problem(
                "OVERTIME_SMTP_HOST",
                "is the compose mail catcher: notices and one-time sign-in codes would reach "
                "no one; name your mail relay (staging: with OVERTIME_STAGING_FAKE_STRIPE)",
            )
        )
    return problems


def production_problems(settings: Settings, web: WebSettings) -> list[Problem]:
    """Every reason this configuration must not run in production, in a stable order."""
    secrets: list[tuple[str, str, type[Settings] | type[WebSettings], str, int]] = [
        ("OVERTIME_ADMIN_TOKEN", settings.admin_token, Settings, "admin_token", MIN_SECRET_CHARS),
        (
            "OVERTIME_TELEPHONY_TOKEN",
            settings.telephony_token,
            Settings,
            "telephony_token",
            MIN_SECRET_CHARS,
        ),
        (
            "OVERTIME_WEBHOOK_SECRET",
            settings.webhook_secret,
            Settings,
            "webhook_secret",
            MIN_SECRET_CHARS,
        ),
        (
            "STRIPE_WEBHOOK_SECRET",
            settings.stripe_webhook_secret,
            Settings,
            "stripe_webhook_secret",
            MIN_SECRET_CHARS,
        ),
        (
            "OVERTIME_ADMIN_PASSWORD",
            web.admin_password,
            WebSettings,
            "admin_password",
            MIN_SECRET_CHARS,
        ),
        (
            "OVERTIME_WEB_SESSION_SECRET",
            web.web_session_secret,
            WebSettings,
            "web_session_secret",
            MIN_SESSION_SECRET_CHARS,
        ),
    ]
    problems: list[Problem] = []
    for variable, value, model, field, min_chars in secrets:
        problem = _secret_problem(
            variable, value, _public_values(variable, model, field), min_chars
        )
        if problem is not None:
            problems.append(problem)
    problems += _payload_key_problems(settings)
    problems += _stripe_problems(settings)
    problems += _mail_problems(settings, web)

    # One leaked secret must not open a second door: a telephony token that is also the
    # admin token gives the telephony platform the admin API.
    distinct = [(variable, value.strip()) for variable, value, *_ in secrets]
    distinct.append(("OVERTIME_PAYLOAD_KEY", settings.payload_key.strip()))
    for (first, a), (second, b) in combinations(distinct, 2):
        if a and a == b:
            problems.append(
                Problem(second, f"is the same value as {first}; use a secret of its own")
            )
    for old_id, old in settings.payload_old_keys.items():
        for variable, value in distinct[:-1]:  # the current payload key: compared as bytes
            if old.strip() and old.strip() == value:
                problems.append(
                    Problem(
                        "OVERTIME_PAYLOAD_OLD_KEYS",
                        f"the key of id {old_id!r} is the same value as {variable}",
                    )
                )

    if settings.codec_allow_loopback:
        problems.append(
            Problem(
                "OVERTIME_CODEC_ALLOW_LOOPBACK",
                "must be false: it lets any local process decrypt payloads without a token",
            )
        )
    if not web.web_https_only:
        problems.append(
            Problem(
                "OVERTIME_WEB_HTTPS_ONLY", "must be true: session cookies would travel in clear"
            )
        )
    for entry in _catch_all_proxies(settings):
        problems.append(
            Problem(
                "OVERTIME_TRUSTED_PROXIES",
                f"{entry!r} trusts X-Forwarded-For from everyone; name the proxy's address",
            )
        )
    if "*" in settings.allowed_hosts:
        problems.append(
            Problem(
                "OVERTIME_ALLOWED_HOSTS",
                "contains '*': any Host is answered (DNS rebinding); list the public host name",
            )
        )
    return problems


def production_warnings(settings: Settings, web: WebSettings) -> list[Problem]:
    """Allowed in production, but worth a line in the log at every start."""
    del web  # the same signature as production_problems, for callers that pass both
    warnings: list[Problem] = []
    if settings.payload_accept_plaintext:
        # Not refused: a deployment that ran without encryption needs it while its old
        # histories replay. But it reopens the Temporal frontend to plain Updates.
        warnings.append(
            Problem(
                "OVERTIME_PAYLOAD_ACCEPT_PLAINTEXT",
                "is true: unencrypted payloads (a plain `temporal workflow update`) are "
                "accepted; switch it off once old histories are migrated",
            )
        )
    if settings.staging_fake_stripe and settings.stripe_api_base:
        warnings.append(
            Problem(
                "OVERTIME_STAGING_FAKE_STRIPE",
                f"payments go to the fake Stripe at {_origin(settings.stripe_api_base)} "
                "(staging only)",
            )
        )
    elif settings.stripe_api_key.strip().startswith(("sk_test_", "rk_test_")):
        warnings.append(Problem("STRIPE_API_KEY", "is a Stripe test-mode key: no real payments"))
    if not settings.database_url:
        warnings.append(
            Problem("OVERTIME_DATABASE_URL", "is unset: a SQLite file, for one host only")
        )
    placeholders = [
        f"OVERTIME_{name.upper()}"
        for name in ("legal_company", "legal_address", "legal_register", "legal_vat_id")
        if getattr(settings, name).strip() in ("", Settings.model_fields[name].default)
    ]
    # Every email carries the Impressum: the development placeholders must not reach
    # customers (not refused, so that a first start can be checked before it is set).
    warnings.extend(
        Problem(name, "is empty or the development placeholder of the emails' legal footer")
        for name in placeholders
    )
    if not settings.trusted_proxies:
        warnings.append(
            Problem(
                "OVERTIME_TRUSTED_PROXIES",
                "is empty: behind a reverse proxy every client looks like the proxy",
            )
        )
    if urlsplit(settings.public_url).scheme != "https":
        warnings.append(Problem("OVERTIME_PUBLIC_URL", "is not https: links in emails are not"))
    smtp_host = settings.smtp_host.strip()
    smtp_default = (
        Settings.model_fields["smtp_host"].default,
        Settings.model_fields["smtp_port"].default,
    )
    # Not refused: a local relay (postfix on 127.0.0.1:25) is a sound setup outside
    # containers; inside compose loopback is the container itself. "mailcatcher" gets here
    # only in staging (refused otherwise) and still keeps every message.
    if (smtp_host, settings.smtp_port) != smtp_default and (
        smtp_host.lower() == _COMPOSE_CATCHER or _is_loopback_host(smtp_host)
    ):
        warnings.append(
            Problem(
                "OVERTIME_SMTP_HOST",
                f"is {smtp_host!r}: make sure a relay there delivers mail (a mail catcher "
                "keeps notices and one-time sign-in codes from their recipients)",
            )
        )
    _, from_address = parseaddr(settings.mail_from)
    _, default_from = parseaddr(Settings.model_fields["mail_from"].default)
    if from_address.lower() == default_from.lower():
        warnings.append(
            Problem(
                "OVERTIME_MAIL_FROM",
                f"is the development sender {default_from}: mail servers reject or bin it",
            )
        )
    return warnings


def refusal_message(problems: list[Problem]) -> str:
    lines = [
        f"Overtime refuses to start with OVERTIME_ENV=production: {len(problems)} "
        "setting(s) unsafe (values are not shown):",
        *(f"  {problem}" for problem in problems),
        GENERATE_HINT,
    ]
    return "\n".join(lines)


def require_production_ready(settings: Settings, web: WebSettings | None = None) -> None:
    """Exit (SystemExit, non-zero, the message on stderr) if production is unsafe.

    In development the same problems are only logged, as one warning naming the variables.
    """
    web = web if web is not None else WebSettings()
    problems = production_problems(settings, web)
    if not settings.is_production:
        if problems:
            log.warning(
                "development mode (OVERTIME_ENV=development): public dev defaults and dev "
                "switches in use, refused with OVERTIME_ENV=production: %s",
                ", ".join(dict.fromkeys(p.variable for p in problems)),
            )
        return
    if problems:
        # SystemExit with a text exits 1 and prints the text on stderr, even before
        # logging is configured and from inside uvicorn's app factory.
        raise SystemExit(refusal_message(problems))
    for warning in production_warnings(settings, web):
        log.warning("production: %s", warning)
    log.info("production checks passed")
