"""Configuration from the environment (prefix ``OVERTIME_``), read once per process.

Every knob is documented in the README's configuration table; the dev defaults for
tokens and secrets are printed by ``make run`` so nobody has to guess them.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, computed_field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# One DNS label (RFC 1123, plus "_", which Docker service names use).
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def check_trusted_proxies(entries: list[str]) -> list[str]:
    """Each entry an IP address or a network (CIDR); anything else is refused.

    uvicorn's proxy-headers middleware takes any other string as a literal that no peer
    address ever equals ("nginx", "10.0.0.0/8x"): the proxy is then not trusted, every
    client looks like the proxy, and the per-address sign-in limit locks everyone out
    together. "*" would trust every peer, so anyone could claim any address. The one
    place for this rule: the Settings validator and the app's start (starter/edge.py,
    for settings built with model_copy, which skips validators) both call it.
    """
    checked = []
    for entry in entries:
        text = entry.strip()
        if text == "*":
            raise ValueError(
                "OVERTIME_TRUSTED_PROXIES: '*' trusts X-Forwarded-For from everyone; "
                "list the proxies' addresses"
            )
        try:
            if "/" in text:
                ipaddress.ip_network(text, strict=False)
            else:
                ipaddress.ip_address(text)
        except ValueError:
            raise ValueError(
                f"OVERTIME_TRUSTED_PROXIES: {text!r} is not an IP address or a CIDR network "
                "(host names are not resolved: give the proxy's address)"
            ) from None
        checked.append(text)
    return checked


def _check_allowed_host(entry: str) -> str:
    text = entry.strip().lower()
    if text == "*":
        return text  # any host: development only (overtime/production.py refuses it)
    try:
        ipaddress.ip_address(text.strip("[]"))
        return text.strip("[]")  # the Host check compares IPv6 without its brackets
    except ValueError:
        pass
    name = text.removeprefix("*.").removesuffix(".")
    if name and len(name) <= 253 and all(_HOST_LABEL.fullmatch(part) for part in name.split(".")):
        return text.removesuffix(".")
    raise ValueError(
        f"OVERTIME_ALLOWED_HOSTS: {entry!r} is not a host name, an IP address or *.domain "
        "(no scheme, port or path: the Host check compares names only)"
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OVERTIME_", extra="ignore")

    # --- deployment ------------------------------------------------------------------
    # "production" refuses to start while a secret is missing or a public dev default
    # (overtime/production.py names each); compose sets it, `make run` leaves the default.
    env: Literal["development", "production"] = "development"
    # Addresses or networks (CIDR) of the reverse proxies whose X-Forwarded-For is
    # believed; a request from anywhere else is its own client address.
    trusted_proxies: list[str] = []
    # Host headers the API answers (DNS rebinding); empty: the public_url's host and
    # the loopback names.
    allowed_hosts: list[str] = []

    # --- the HTTP server (starter/serve.py; the compose proxy has its own limits) ------
    http_limit_concurrency: int = Field(default=2048, ge=16)
    http_header_timeout_seconds: float = Field(default=10.0, gt=0)
    http_body_timeout_seconds: float = Field(default=10.0, gt=0)
    http_keep_alive_seconds: float = Field(default=5.0, gt=0)

    # --- admission control (API side) --------------------------------------------------
    # Telephony requests waiting for an answer, per API process and per account; beyond
    # either the API answers 503 overloaded with Retry-After at once. 256 per process is
    # about what one process answers within the 1 s telephony timeout (~330 requests/s
    # at best, BENCHMARKS.md): a request beyond it would only wait for its 503.
    admission_max_pending: int = Field(default=256, ge=1)
    admission_max_pending_per_account: int = Field(default=100, ge=1)
    admission_retry_after_seconds: int = Field(default=1, ge=1)

    # --- health --------------------------------------------------------------------------
    # Each dependency check of /healthz gives up after this long.
    health_timeout_seconds: float = Field(default=2.0, gt=0, le=2.0)
    # A worker counts as up when it polled the task queue this recently (a poll is held
    # up to a minute by the server, so less than ~70 s reports idle workers as down).
    health_worker_seen_seconds: float = Field(default=75.0, gt=0)
    # Each worker process writes a heartbeat row this often (overtime/worker_heartbeat.py);
    # /healthz calls the worker down when none is newer than 3 of these. The API and the
    # workers must share the value.
    worker_heartbeat_seconds: float = Field(default=5.0, gt=0, le=60)

    # --- processes and ports -------------------------------------------------------
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    data_dir: Path = Path("./var")
    temporal_host: str = "127.0.0.1"
    temporal_port: int = 7233
    temporal_ui_port: int = 8233
    temporal_namespace: str = "default"
    task_queue: str = "overtime"
    # Self-hosted clusters with TLS / mTLS, or Temporal Cloud (mTLS or an API key; an API
    # key switches TLS on unless temporal_tls is set to false, as Temporal's clients do).
    temporal_tls: bool = False
    temporal_tls_ca: str | None = None
    temporal_tls_cert: str | None = None
    temporal_tls_key: str | None = None
    temporal_api_key: str | None = None
    # Or a profile of Temporal's own client configuration (temporalio.envconfig: the TOML
    # file at TEMPORAL_CONFIG_FILE or ~/.config/temporalio/temporal.toml, then the
    # TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE / TEMPORAL_API_KEY / TEMPORAL_TLS_* variables,
    # as the temporal CLI reads them). When set, it replaces the temporal_* settings above.
    temporal_profile: str | None = None
    # Payload encryption (AES-256-GCM): base64 of 32 bytes. The dev default is public;
    # production sets its own. Old keys (id -> key) keep older histories readable.
    payload_key: str = "b3ZlcnRpbWUtZGV2LXBheWxvYWQta2V5LTMyYnl0ZXM="
    payload_key_id: str = "dev-1"
    payload_old_keys: dict[str, str] = {}
    # Payloads that are not encrypted are refused (a plain `temporal workflow update`
    # changes nothing); true only while migrating a deployment that ran without
    # encryption.
    payload_accept_plaintext: bool = False
    # The codec server decodes for a browser on this machine without a token: a
    # development switch (`make run` sets it), refused in production.
    codec_allow_loopback: bool = False
    # Origins (the Temporal Web UI's) that may call /codec from a browser. Empty: the UI on
    # this machine at OVERTIME_TEMPORAL_UI_PORT (127.0.0.1 and localhost), so a moved UI
    # port still decodes payloads (effective_codec_cors_origins).
    codec_cors_origins: list[str] = []

    # --- auth ----------------------------------------------------------------------
    admin_token: str = "dev-admin-token"
    telephony_token: str = "dev-telephony-token"

    # --- storage -------------------------------------------------------------------
    # Unset: a SQLite file in the data dir. PostgreSQL: postgresql+psycopg2://user@host/db
    database_url: str | None = None

    # --- billing -------------------------------------------------------------------
    # Unset: calendar months in the account's time zone. Set: periods of this many
    # seconds from the account's creation (demos and tests).
    period_seconds: int | None = Field(default=None, gt=0)
    default_timezone: str = "Europe/Berlin"
    default_locale: str = "de"
    plans_file: Path = PROJECT_ROOT / "config" / "plans.toml"
    grant_chunk_seconds: int = Field(default=300, gt=0)
    # A reservation whose call neither re-asks nor reports this long after its grant
    # ran out is released, so a lost "call ended" report cannot block the limit forever.
    grant_grace_seconds: int = Field(default=120, ge=0)
    max_limit_cents: int = 1_000_000  # 10,000 EUR
    max_limit_minutes: int = 100_000
    max_call_seconds: int = 86_400
    # Request bodies larger than this get 413 before they are read (the API's JSON bodies
    # are a few hundred bytes; the codec server's a few kB per payload).
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    currency: str = "eur"
    # Continue-as-new after this many Updates in one run (Temporal caps a run at 2,000).
    continue_as_new_after_updates: int = Field(default=1000, ge=10, le=1800)

    # --- product ---------------------------------------------------------------------
    # The assistant's name as customers know it (web app menu, email signatures).
    product_name: str = "Safina"
    public_url: str = "http://127.0.0.1:8000"

    # --- customer API for the mobile app (starter/customer_api.py) ---------------------
    # A bearer access token lives this long; the app refreshes it with its refresh token.
    customer_access_token_ttl_seconds: int = Field(default=900, ge=30, le=86_400)
    # A refresh token lives this long, renewed with every rotation (each is single use).
    customer_refresh_token_ttl_seconds: int = Field(default=30 * 86_400, ge=60)
    # However often it rotates, a sign-in ends this long after the password was given.
    customer_token_max_age_seconds: int = Field(default=90 * 86_400, ge=60)

    # --- notifications -------------------------------------------------------------
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    mail_from: str = "Overtime <billing@overtime.local>"
    # The name customers see as the sender ("Safina <billing@…>"): the address of
    # mail_from with this name in front. Empty: the product_name.
    mail_sender_name: str = ""
    # The legal footer of every email (Impressum, § 5 DDG): who sends it. The defaults are
    # placeholders for development; production sets its own.
    legal_company: str = "Safina GmbH (Entwicklung)"
    legal_address: str = "Musterstraße 1, 10115 Berlin"
    legal_register: str = "Amtsgericht Berlin-Charlottenburg, HRB 000000"
    legal_vat_id: str = "DE000000000"
    telephony_webhook_url: str | None = None
    webhook_secret: str = "dev-webhook-secret"
    # A notice or service event still undelivered this long after it was raised is
    # recorded as failed instead of retried for ever (the admin console shows it).
    delivery_give_up_seconds: int = Field(default=3 * 86_400, gt=0)

    # --- Stripe ---------------------------------------------------------------------------
    # Unset STRIPE_API_KEY: the local fake Stripe server (localstripe behind
    # devstack/fake_stripe.py) at stripe_api_base. Set: Stripe itself (test mode with an
    # sk_test_ key), unless OVERTIME_STRIPE_API_BASE says otherwise.
    stripe_api_key: str = Field(
        default="sk_test_overtime_local",
        validation_alias=AliasChoices("STRIPE_API_KEY", "OVERTIME_STRIPE_API_KEY"),
    )
    stripe_api_base: str | None = "http://127.0.0.1:8420"
    # Production talks to Stripe itself; a staging deployment may use the fake Stripe
    # only with this set AND OVERTIME_STRIPE_API_BASE set explicitly (overtime/production.py).
    staging_fake_stripe: bool = False
    stripe_publishable_key: str = Field(
        default="pk_test_overtime_local",
        validation_alias=AliasChoices("STRIPE_PUBLISHABLE_KEY", "OVERTIME_STRIPE_PUBLISHABLE_KEY"),
    )
    stripe_webhook_secret: str = Field(
        default="whsec_overtime_local",
        validation_alias=AliasChoices("STRIPE_WEBHOOK_SECRET", "OVERTIME_STRIPE_WEBHOOK_SECRET"),
    )
    # Stripe webhooks: how far a signature's timestamp may be from now, either way, and
    # how long the signal to the invoice workflow may take before the webhook answers
    # 503 (Stripe retries it); well below the time Stripe waits for an answer.
    stripe_webhook_tolerance_seconds: int = Field(default=300, ge=1)
    stripe_webhook_signal_timeout_seconds: float = Field(default=5.0, gt=0, le=10)
    # Stripe allows 100 requests/s live and 25 in test mode; every request to Stripe, from
    # all workers and API processes together, takes a slot of this budget (rounded down
    # to whole requests per second; below 1, one request per 1/rate s) shared through the
    # database (overtime/stripe_rate.py). Background work (the worker) gets 90 % of each
    # second, the API the rest and whatever the worker leaves.
    stripe_requests_per_second: float = Field(default=20.0, gt=0, le=10_000, allow_inf_nan=False)
    # Stripe calls one invoicing activity makes at most. No longer the throttle (the
    # limiter above counts requests; the worker's Temporal throttle starts activities at
    # the budget ÷ their mean, worker.STRIPE_MEAN_CALLS_PER_ACTIVITY): the most, for
    # capacity planning and bench_month_end.py. create_invoice makes 5 at month end (the
    # customer's settings written once, search, create, item, finalize; 4 once they are
    # synced), pay_invoice 2 (read, pay; 3 after a decline), refresh_invoice 1. More only
    # off that path: +1 per extra line, +2 for a new reverse-charge VAT id, a process's
    # first tax-rate look-up (+1, +2 the first time ever), an account without a customer
    # yet (+2 or +3), a retry of a half-made invoice (+1). tests/test_invoice_tax.py counts.
    stripe_calls_per_activity: int = Field(default=5, ge=1)
    dunning_schedule_seconds: list[int] = [3 * 86_400, 5 * 86_400, 7 * 86_400]
    reconcile_interval_seconds: int = Field(default=6 * 3600, gt=0)

    # --- month-end close ---------------------------------------------------------------
    finance_email: str = "finance@overtime.local"
    # The close waits this long for every account's period to close before it reports
    # the stragglers as mismatches.
    # 16 h: the close starts at 02:00 Berlin, and each account's month ends at midnight in
    # its own zone, up to 13:00 Berlin for UTC-12 (Los Angeles: 09:00).
    close_wait_seconds: int = Field(default=16 * 3600, ge=0)
    close_poll_seconds: int = Field(default=300, gt=0)

    # --- observability ----------------------------------------------------------------
    log_format: str = Field(default="json", pattern="^(json|text)$")
    log_level: str = "INFO"
    # Workflows a worker keeps in memory; accounts beyond it are replayed from history on
    # their next request. ~85-90 KiB of RSS each with the worker's runner
    # (overtime/sandbox.py; ~42 KiB of it Python objects, the rest the SDK core's run
    # state), so 10,000 cost ~0.9 GiB above an idle worker (bench/bench_memory.py).
    worker_max_cached_workflows: int = Field(default=10_000, ge=10)
    # The worker's Prometheus endpoint (SDK metrics and ours); 0 switches it off.
    worker_metrics_port: int = Field(default=9464, ge=0)
    # Where it listens: loopback by default; 0.0.0.0 in a container so it can be scraped.
    worker_metrics_host: str = "127.0.0.1"

    # --- per-account dispatch (API side) --------------------------------------------
    # Temporal allows 10 Updates in flight per workflow; each API process keeps at most
    # this many, coalescing everything else into batches.
    dispatch_max_in_flight: int = Field(default=2, ge=1, le=5)
    dispatch_max_batch: int = Field(default=100, ge=1, le=500)
    # Admin and web-app calls (settings, payment method, state) wait this long at most.
    dispatch_deadline_seconds: float = Field(default=20.0, gt=0)
    # Every telephony answer (authorize, usage) within this long: when the workflow cannot
    # answer in time (Temporal or the worker down, the account busy), the API answers
    # 503 unavailable with Retry-After, and an authorisation records nothing.
    telephony_timeout_seconds: float = Field(default=1.0, gt=0, le=30)

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies_are_addresses(cls, value: list[str]) -> list[str]:
        return check_trusted_proxies(value)

    @field_validator("allowed_hosts")
    @classmethod
    def _allowed_hosts_are_host_names(cls, value: list[str]) -> list[str]:
        return [_check_allowed_host(entry) for entry in value]

    @model_validator(mode="after")
    def _real_stripe_needs_no_fake(self) -> Settings:
        if (
            self.stripe_api_key != "sk_test_overtime_local"
            and "stripe_api_base" not in self.model_fields_set
        ):
            self.stripe_api_base = None  # a real key talks to Stripe itself
        return self

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    def effective_allowed_hosts(self) -> list[str]:
        if self.allowed_hosts:
            return self.allowed_hosts
        public = urlsplit(self.public_url).hostname or "127.0.0.1"
        return sorted({public, "127.0.0.1", "localhost", "::1"})

    def effective_codec_cors_origins(self) -> list[str]:
        if self.codec_cors_origins:
            return self.codec_cors_origins
        port = self.temporal_ui_port
        return [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]

    @property
    def stripe_task_queue(self) -> str:
        return f"{self.task_queue}-stripe"

    # mypy rejects a decorator over @property; pydantic documents this very ignore.
    @computed_field  # type: ignore[prop-decorator]
    @property
    def temporal_address(self) -> str:
        return f"{self.temporal_host}:{self.temporal_port}"

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'overtime.db').resolve()}"

    @property
    def mail_dir(self) -> Path:
        return self.data_dir / "mail"


@lru_cache
def get_settings() -> Settings:
    return Settings()
