"""SQLModel tables. Constraints live in the schema, not only in code.

Times are stored in UTC through :class:`UTCDateTime` and read back aware, on SQLite and
PostgreSQL alike.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime stored as UTC on every database.

    SQLite keeps no offset: without this, 10:00+01:00 would be stored as 10:00 and read
    back as 10:00 UTC. Naive values are refused rather than guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_column(nullable: bool = False, index: bool = False) -> Column[datetime]:
    return Column(UTCDateTime(), nullable=nullable, index=index)


def big_column() -> Column[int]:
    """Seconds and cents that are sums, or could grow past 2^31: 64-bit. 2^31 seconds are
    68 years of talk, a month of some 830 calls around the clock on one account, and the
    close report adds up every account's periods."""
    return Column(BigInteger(), nullable=False)


def big() -> Any:
    return Field(sa_column=big_column())


class Plan(SQLModel, table=True):
    """A copy of the catalog (config/plans.toml), refreshed at start-up for reporting."""

    plan: str = Field(primary_key=True, max_length=64)
    monthly_fee_cents: int = Field(ge=0)
    included_minutes: int = Field(ge=0)
    extra_minute_price_cents: int = Field(ge=0)


class Account(SQLModel, table=True):
    # Ids are unique whatever their case (SEC-A1 and sec-a1 would be one customer to a
    # person reading a log or an invoice); look-ups stay exact. Migration 0006.
    __table_args__ = (Index("uq_account_id_lower", text("lower(account_id)"), unique=True),)
    account_id: str = Field(primary_key=True, max_length=128)
    email: str = Field(max_length=320)
    plan: str = Field(max_length=64)
    locale: str = Field(default="de", max_length=8)
    timezone: str = Field(default="Europe/Berlin", max_length=64)
    created_at: datetime = Field(sa_column=utc_column())
    period_seconds: int | None = None
    # Mirror of the workflow's settings, written by the settings-change activity; the
    # workflow is authoritative, this copy seeds a workflow that has to be re-created.
    extra_enabled: bool = False
    limit_cents: int | None = None
    limit_minutes: int | None = None
    # The workflow's settings version the mirror above was written from: a delayed or
    # repeated write of an older change never moves the row back.
    settings_version: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # Stripe: the customer is created once; the default payment method is mirrored here.
    stripe_customer_id: str | None = Field(default=None, max_length=64)
    payment_method_id: str | None = Field(default=None, max_length=64)
    payment_method_type: str | None = Field(default=None, max_length=32)  # card | sepa_debit
    payment_method_brand: str | None = Field(default=None, max_length=32)
    payment_method_last4: str | None = Field(default=None, max_length=4)
    payment_method_bank: str | None = Field(default=None, max_length=32)
    # Warning thresholds in percent of the limit, comma-separated ("50,75,90"): a mirror of
    # the workflow's, written by the settings activity like the limit above.
    alert_percents: str = Field(
        default="90", max_length=64, sa_column_kwargs={"server_default": "90"}
    )
    # Extra addresses every notice also goes to (comma-separated), besides ``email``. Only
    # the database has them: the notification activity reads them when it sends.
    alert_recipients: str = Field(
        default="", sa_column=Column(Text(), nullable=False, server_default="")
    )
    # An EU business customer's VAT id ("ATU12345678"), migration 0010: with one from
    # another EU state than ours, invoices are reverse charge (no German VAT, the note
    # "Steuerschuldnerschaft des Leistungsempfängers"); see overtime/invoice_text.py.
    vat_id: str | None = Field(default=None, max_length=32)
    # The customer settings last written to Stripe (customer id, Stripe locale, reverse-
    # charge VAT id; activities/invoicing.py), migration 0013: equal to the account's now,
    # the invoice run sends Stripe no customer read or write. None: not known, sync.
    stripe_customer_synced: str | None = Field(default=None, max_length=160)


class SettingsChange(SQLModel, table=True):
    __tablename__ = "settings_change"
    __table_args__ = (UniqueConstraint("account_id", "change_id", name="uq_settings_change_once"),)
    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(index=True, max_length=128)
    # One history row per change request; None on rows written before change ids.
    change_id: str | None = Field(default=None, max_length=128)
    actor: str = Field(max_length=320)
    changed_at: datetime = Field(sa_column=utc_column())
    old_enabled: bool
    old_limit_cents: int | None = None
    old_limit_minutes: int | None = None
    new_enabled: bool
    new_limit_cents: int | None = None
    new_limit_minutes: int | None = None
    # What changed: "extra_minutes" (the columns above), "plan", "alerts" or
    # "payment_method", whose old → new is in ``detail`` ("starter → business").
    kind: str = Field(
        default="extra_minutes", max_length=32, sa_column_kwargs={"server_default": "extra_minutes"}
    )
    detail: str | None = Field(default=None, sa_column=Column(Text(), nullable=True))
    # Why an admin made the change (asked for by the admin console), for the audit trail.
    reason: str | None = Field(default=None, sa_column=Column(Text(), nullable=True))


class UsageEntry(SQLModel, table=True):
    """The usage ledger: one row per call; the call id is unique per account."""

    __tablename__ = "usage_entry"
    __table_args__ = (
        UniqueConstraint("account_id", "call_id", name="uq_usage_account_call"),
        CheckConstraint(
            "reported_seconds >= 0 AND billed_included_seconds >= 0 "
            "AND billed_extra_seconds >= 0 AND excess_seconds >= 0",
            name="ck_usage_non_negative",
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(index=True, max_length=128)
    call_id: str = Field(max_length=128)
    period_start: datetime = Field(sa_column=utc_column(index=True))
    reported_seconds: int = big()
    granted_seconds: int = big()
    billed_included_seconds: int = big()
    billed_extra_seconds: int = big()
    excess_seconds: int = big()  # flagged: reported beyond the grant or the limit, not billed
    late: bool = False  # authorised in an earlier period, billed in this one
    recorded_at: datetime = Field(sa_column=utc_column())


class Notification(SQLModel, table=True):
    """Every notice sent; the unique key makes a retried activity send it only once."""

    __table_args__ = (
        UniqueConstraint("account_id", "period_start", "notice_key", name="uq_notice_once"),
    )
    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(index=True, max_length=128)
    kind: str = Field(max_length=64)
    notice_key: str = Field(max_length=128)
    to: str = Field(max_length=320)
    subject: str = Field(max_length=256)
    period_start: datetime = Field(sa_column=utc_column())
    sent_at: datetime = Field(sa_column=utc_column())  # when sent, or when given up
    # sent | failed (it can never be delivered: refused for good, or too old to retry) |
    # partial (some recipients have it, a retry is sending to the rest).
    status: str = Field(default="sent", max_length=16, sa_column_kwargs={"server_default": "sent"})
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # What the customer got (the plain-text part), so the notices page can show it; None
    # for notices sent before it was kept (migration 0012).
    body: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # Every address that has it, comma-separated (``to`` is the account's own): a retry
    # after a partial failure sends only to the addresses not listed here.
    recipients: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class WebhookDelivery(SQLModel, table=True):
    __tablename__ = "webhook_delivery"
    event_id: str = Field(primary_key=True, max_length=256)
    account_id: str = Field(index=True, max_length=128)
    event: str = Field(max_length=64)
    reason: str | None = None
    status_code: int | None = None  # None: no webhook URL configured
    delivered_at: datetime = Field(sa_column=utc_column())  # or when given up
    # delivered | skipped (no webhook URL) | failed (refused for good, or too old).
    status: str = Field(
        default="delivered", max_length=16, sa_column_kwargs={"server_default": "delivered"}
    )
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class ClosedPeriod(SQLModel, table=True):
    __tablename__ = "closed_period"
    __table_args__ = (
        UniqueConstraint("account_id", "period_start", name="uq_closed_period"),
        CheckConstraint(
            "extra_used_seconds >= 0 AND extra_cost_cents >= 0", name="ck_closed_non_negative"
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(index=True, max_length=128)
    plan: str = Field(max_length=64)
    period_start: datetime = Field(sa_column=utc_column())
    period_end: datetime = Field(sa_column=utc_column())
    included_used_seconds: int = big()
    extra_used_seconds: int = big()
    extra_cost_cents: int = big()
    excess_seconds: int = big()
    calls_recorded: int = big()
    extra_minute_price_cents: int
    limit_cents: int | None = None
    stopped_at_limit: bool = False
    closed_at: datetime = Field(sa_column=utc_column())


class Invoice(SQLModel, table=True):
    """One Stripe invoice per account and period with extra minutes; never two."""

    __table_args__ = (
        UniqueConstraint("account_id", "period_start", name="uq_invoice_period"),
        CheckConstraint("amount_cents >= 0 AND extra_seconds >= 0", name="ck_invoice_amounts"),
    )
    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(index=True, max_length=128)
    period_start: datetime = Field(sa_column=utc_column())
    period_end: datetime = Field(sa_column=utc_column())
    extra_seconds: int = big()
    unit_price_cents: int
    amount_cents: int = big()
    currency: str = Field(default="eur", max_length=3)
    # paid | open (awaiting collection) | processing (a SEPA debit being collected, days)
    # | payment_failed | void | draft; see overtime.stripe_gateway.InvoiceStatus
    status: str = Field(default="draft", max_length=32)
    stripe_invoice_id: str | None = Field(default=None, max_length=64, index=True)
    hosted_invoice_url: str | None = None
    failure_code: str | None = Field(default=None, max_length=64)
    attempts: int = 0
    created_at: datetime = Field(sa_column=utc_column())
    updated_at: datetime = Field(sa_column=utc_column())
    # Tax (migration 0010), as Stripe computed it: ``amount_cents`` stays the billing
    # rules' extra cost at catalog prices (net or gross, see [tax] in plans.toml);
    # ``net_cents`` + ``tax_cents`` is what the customer is charged (``total_cents``).
    # Rows from before 0010: net = amount, tax = 0.
    net_cents: int = Field(
        default=0, sa_column=Column(BigInteger(), nullable=False, server_default="0")
    )
    tax_cents: int = Field(
        default=0, sa_column=Column(BigInteger(), nullable=False, server_default="0")
    )
    # When the next automatic payment attempt is due after a failed one (dunning);
    # None when none is planned (paid, not failed, or after the last attempt).
    next_attempt_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))

    @property
    def total_cents(self) -> int:
        """What the customer pays: net plus VAT (for a gross catalog, ``amount_cents``)."""
        return self.net_cents + self.tax_cents


class StripeEvent(SQLModel, table=True):
    """Stripe webhook events already handled (Stripe may deliver one several times)."""

    __tablename__ = "stripe_event"
    event_id: str = Field(primary_key=True, max_length=128)
    type: str = Field(max_length=64)
    received_at: datetime = Field(sa_column=utc_column())


class CloseReport(SQLModel, table=True):
    """The month-end close: totals of every period that closed in a calendar month."""

    __tablename__ = "close_report"
    period: str = Field(primary_key=True, max_length=7)  # "2026-11"
    created_at: datetime = Field(sa_column=utc_column())
    accounts: int
    extra_seconds: int = big()
    invoiced_cents: int = big()
    paid_cents: int = big()
    failed_cents: int = big()
    pending_cents: int = big()
    accounts_stopped_at_limit: int
    mismatches: int


class CloseReportLine(SQLModel, table=True):
    """One closed account period in a close report, or one mismatch found."""

    __tablename__ = "close_report_line"
    id: int | None = Field(default=None, primary_key=True)
    period: str = Field(index=True, max_length=7)
    account_id: str = Field(max_length=128)
    period_start: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    extra_seconds: int = Field(default=0, sa_column=big_column())
    amount_cents: int = Field(default=0, sa_column=big_column())
    invoice_status: str | None = Field(default=None, max_length=32)
    stripe_invoice_id: str | None = Field(default=None, max_length=64)
    stopped_at_limit: bool = False
    mismatch: str | None = None  # what does not add up, in words


# --- the web app (starter/web) ------------------------------------------------------------


class WebLogin(SQLModel, table=True):
    """A customer's web-app login: the email they sign in with and an Argon2id hash.

    Set by an admin (``PUT /v1/accounts/{id}/password``). ``session_epoch`` grows with
    every password change; sessions carry the epoch they were opened in, so a new
    password signs every other browser out.
    """

    __tablename__ = "web_login"
    __table_args__ = (UniqueConstraint("email", name="uq_web_login_email"),)
    account_id: str = Field(primary_key=True, max_length=128)
    email: str = Field(max_length=320)  # lower-cased
    password_hash: str = Field(max_length=256)
    session_epoch: int = 0
    updated_at: datetime = Field(sa_column=utc_column())


class WebLoginFailure(SQLModel, table=True):
    """Failed sign-ins, for the login throttle (shared by every API process)."""

    __tablename__ = "web_login_failure"
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(index=True, max_length=400)  # "email:<address>" or "ip:<address>"
    failed_at: datetime = Field(sa_column=utc_column(index=True))


class WebSession(SQLModel, table=True):
    """A web session, server-side (starter/web/sessions.py). The browser's cookie holds a
    random id; the table holds only its HMAC (a copied database opens no sessions), so
    deleting the row ends the session at once (logout, an admin, a new password)."""

    __tablename__ = "web_session"
    id_hash: str = Field(primary_key=True, max_length=64)
    kind: str = Field(max_length=16)  # "anonymous" | "customer" | "admin"
    email: str | None = Field(default=None, max_length=320)
    account_id: str | None = Field(default=None, max_length=128, index=True)
    csrf: str | None = Field(default=None, max_length=64)
    lang: str | None = Field(default=None, max_length=8)
    data: str = Field(default="{}", sa_column=Column(Text, nullable=False))  # other keys, JSON
    created_at: datetime = Field(sa_column=utc_column())
    last_seen: datetime = Field(sa_column=utc_column())
    expires_at: datetime = Field(sa_column=utc_column(index=True))


class WebLoginCode(SQLModel, table=True):
    """One-time sign-in codes, emailed to the owner once an account has had too many
    failed sign-ins and the right password was given. Stored as an HMAC; single use."""

    __tablename__ = "web_login_code"
    id: int | None = Field(default=None, primary_key=True)
    login_key: str = Field(index=True, max_length=64)  # HMAC of the lower-cased email
    code_hash: str = Field(max_length=64)
    attempts: int = 0
    created_at: datetime = Field(sa_column=utc_column())
    expires_at: datetime = Field(sa_column=utc_column())


class WorkerHeartbeat(SQLModel, table=True):
    """A running worker process says it is alive (overtime/worker_heartbeat.py): one row
    per worker process and task queue it serves, its ``seen_at`` renewed every few
    seconds while it reaches Temporal. ``/healthz`` reads it (starter/health.py): Temporal
    lists a dead worker's pollers for minutes, and an idle live one's last poll ages to a
    minute, so the pollers alone cannot tell a stopped worker within seconds."""

    __tablename__ = "worker_heartbeat"
    worker_id: str = Field(primary_key=True, max_length=255)
    task_queue: str = Field(primary_key=True, max_length=255)
    started_at: datetime = Field(sa_column=utc_column())
    seen_at: datetime = Field(sa_column=utc_column(index=True))
    # Set by a graceful stop, so /healthz names it at once; a crash leaves it null and
    # the row simply ages. Kept (not deleted) so the table stays non-empty: an empty one
    # means workers older than the heartbeat, judged by their polls alone.
    stopped_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class AdminAction(SQLModel, table=True):
    """An operator's action on an account that is not a settings change (resending a
    notice, retrying a payment, ending web sessions, setting a password), with the reason
    the console asked for: the audit trail beside ``settings_change.reason``."""

    __tablename__ = "admin_action"
    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(index=True, max_length=128)
    actor: str = Field(max_length=255)  # "admin:<email>"
    # resend_notice | retry_payment | end_sessions | set_password | change_limit
    action: str = Field(max_length=32)
    target: str | None = Field(default=None, max_length=128)  # "notice 12", "invoice 3"
    reason: str = Field(sa_column=Column(Text(), nullable=False))
    outcome: str = Field(default="", sa_column=Column(Text(), nullable=False, server_default=""))
    created_at: datetime = Field(sa_column=utc_column(index=True))


class CustomerToken(SQLModel, table=True):
    """The mobile app's bearer tokens (starter/customer_tokens.py), stored as an HMAC only.

    One sign-in with the password starts a *family*: its access tokens (minutes) and its
    rotating refresh tokens (days). A used refresh token keeps its row (``used_at``) until
    it expires, so presenting it again is recognised as theft and ends the whole family.
    ``login_epoch`` is the login's ``session_epoch`` at sign-in: a new password ends every
    family at once, as it ends the web sessions.
    """

    __tablename__ = "customer_token"
    token_hash: str = Field(primary_key=True, max_length=64)
    kind: str = Field(max_length=16)  # "access" | "refresh"
    family_id: str = Field(index=True, max_length=32)
    account_id: str = Field(index=True, max_length=128)
    login_epoch: int
    created_at: datetime = Field(sa_column=utc_column())
    expires_at: datetime = Field(sa_column=utc_column(index=True))
    # The family's absolute end: rotation never carries a sign-in past it.
    family_expires_at: datetime = Field(sa_column=utc_column())
    used_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    revoked_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class StripeRateWindow(SQLModel, table=True):
    """Stripe requests granted in one time window, shared by every worker and API process
    (overtime/stripe_rate.py): one row per limiter name and window, ``used`` taken one
    request at a time by an atomic upsert that never passes the window's cap. Rows older
    than a few minutes are deleted."""

    __tablename__ = "stripe_rate_window"
    name: str = Field(primary_key=True, max_length=64)
    # The window's start, ms since the epoch (100 ms windows at rates ≥ 10/s).
    window_start_ms: int = Field(
        sa_column=Column(BigInteger(), primary_key=True, autoincrement=False)
    )
    used: int
