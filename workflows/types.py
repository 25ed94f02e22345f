"""Dataclasses exchanged between the API, the account workflow and its activities.

They travel through Temporal's JSON payload converter, so they hold only plain fields.
Changing a field is a workflow-versioning matter: add fields with defaults, never
rename or remove (replay tests in tests/histories/ guard this).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from billing.account_state import Notice, PeriodState, ServiceEvent, UsageRecord
from billing.rules import ExtraMinutesSettings, PlanTerms

AUTHORIZE = "authorize"
USAGE = "usage"


def workflow_id_for(account_id: str) -> str:
    return f"account-{account_id}"


@dataclass
class AccountProfile:
    """Who the account is; fixed for the life of the workflow."""

    account_id: str
    email: str
    locale: str
    timezone: str
    created_at: datetime
    # None: calendar months in ``timezone``; else fixed periods of this many seconds.
    period_seconds: int | None = None


@dataclass
class BillingConfig:
    """Operational knobs the workflow needs, fixed per run (taken from Settings)."""

    grant_chunk_seconds: int = 300
    grant_grace_seconds: int = 120
    max_limit_cents: int = 1_000_000
    max_limit_minutes: int = 100_000
    # Continue-as-new well before Temporal's per-run caps (2,000 Updates,
    # 10,000 signals) and its history warning (10,240 events).
    max_updates_per_run: int = 1_000
    max_signals_per_run: int = 5_000
    max_history_events: int = 8_000
    # Invoicing (see InvoiceInput); currency of the catalog's prices.
    currency: str = "eur"
    stripe_task_queue: str = "overtime-stripe"
    dunning_schedule_seconds: list[int] = field(
        default_factory=lambda: [3 * 86_400, 5 * 86_400, 7 * 86_400]
    )
    reconcile_interval_seconds: int = 6 * 3600


@dataclass
class AccountWorkflowInput:
    profile: AccountProfile
    plan: PlanTerms
    settings: ExtraMinutesSettings
    config: BillingConfig = field(default_factory=BillingConfig)
    # Set on continue-as-new: the live period carried into the next run.
    state: PeriodState | None = None


@dataclass
class TelephonyRequest:
    """One authorisation or usage report; the API batches many into one Update."""

    kind: str  # AUTHORIZE | USAGE
    call_id: str
    seconds: int | None = None


@dataclass
class TelephonyResult:
    kind: str
    call_id: str
    allowed: bool | None = None
    granted_seconds: int | None = None
    reason: str | None = None
    recorded: bool | None = None
    duplicate: bool | None = None


@dataclass
class TelephonyBatch:
    requests: list[TelephonyRequest]


@dataclass
class SettingsChange:
    settings: ExtraMinutesSettings
    actor: str  # "admin", "customer:<email>", "system"


@dataclass
class PaymentMethodChange:
    on_file: bool
    actor: str


@dataclass
class AccountSnapshot:
    """The live state the admin API returns (``GET /v1/accounts/{id}/state``)."""

    account_id: str
    period_start: datetime
    period_end: datetime
    plan: str
    included_seconds: int
    used_seconds: int
    extra_seconds: int
    extra_cost_cents: int
    enabled: bool
    limit_cents: int | None
    limit_minutes: int | None
    extra_allowed_seconds: int
    reserved_seconds: int
    accepting_calls: bool
    stop_reason: str | None
    excess_seconds: int = 0
    calls_recorded: int = 0
    run_updates: int = 0
    payment_method_on_file: bool = False
    payment_overdue: bool = False


# --- activity inputs ----------------------------------------------------------------


@dataclass
class UsageBatch:
    account_id: str
    period_start: datetime
    period_end: datetime
    records: list[UsageRecord]


@dataclass
class SettingsChangeRecord:
    account_id: str
    actor: str
    old: ExtraMinutesSettings
    new: ExtraMinutesSettings
    changed_at: datetime


@dataclass
class NoticeDelivery:
    profile: AccountProfile
    plan: PlanTerms
    period_start: datetime
    period_end: datetime
    notice: Notice


@dataclass
class ServiceEventDelivery:
    account_id: str
    period_start: datetime
    event: ServiceEvent


@dataclass
class PeriodClose:
    account_id: str
    period_start: datetime
    period_end: datetime
    plan: str
    included_used_seconds: int
    extra_used_seconds: int
    extra_cost_cents: int
    excess_seconds: int
    calls_recorded: int
    extra_minute_price_cents: int
    limit_cents: int | None
    stopped_at_limit: bool


@dataclass
class CallLookup:
    account_id: str
    call_id: str


# --- invoicing ----------------------------------------------------------------------


def invoice_workflow_id(account_id: str, period_key: str) -> str:
    return f"invoice-{account_id}-{period_key}"


@dataclass
class InvoiceInput:
    """What the period's invoice must say; fixed when the period closes."""

    profile: AccountProfile
    period_start: datetime
    period_end: datetime
    extra_seconds: int
    unit_price_cents: int
    amount_cents: int
    currency: str = "eur"
    # Waits between failed charges before the next attempt; after the last, extra
    # minutes are suspended until the invoice is paid.
    dunning_schedule_seconds: list[int] = field(
        default_factory=lambda: [3 * 86_400, 5 * 86_400, 7 * 86_400]
    )
    # How often an unpaid invoice is re-read from Stripe, in case a webhook was lost.
    reconcile_interval_seconds: int = 6 * 3600
    stripe_task_queue: str = "overtime-stripe"


@dataclass
class InvoiceState:
    """The invoice as Stripe and our ledger see it (activity results, DB mirror)."""

    stripe_invoice_id: str
    status: str  # paid | open | payment_failed | void | draft
    amount_cents: int
    hosted_invoice_url: str | None = None
    failure_code: str | None = None


@dataclass
class ChargeRequest:
    account_id: str
    period_start: datetime
    stripe_invoice_id: str
    attempt: int


@dataclass
class PaymentEvent:
    """A Stripe webhook's news about an invoice, forwarded by the API."""

    event_id: str
    status: str  # paid | payment_failed | open | void
    failure_code: str | None = None


# --- month-end close -----------------------------------------------------------------

CLOSE_SCHEDULE_ID = "month-end-close"


def close_workflow_id(period: str) -> str:
    return f"close-report-{period}"


@dataclass
class CloseInput:
    # "2026-11"; None: the month before the workflow started (scheduled runs).
    period: str | None = None
    timezone: str = "Europe/Berlin"
    wait_seconds: int = 6 * 3600
    poll_seconds: int = 300


@dataclass
class CloseRequest:
    period: str
    timezone: str
    unclosed_accounts: list[str] = field(default_factory=list)


@dataclass
class CloseSummary:
    period: str
    accounts: int
    extra_seconds: int
    invoiced_cents: int
    paid_cents: int
    failed_cents: int
    pending_cents: int
    accounts_stopped_at_limit: int
    mismatches: list[str] = field(default_factory=list)
