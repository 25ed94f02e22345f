"""Dataclasses exchanged between the API, the account workflow and its activities.

They travel through Temporal's JSON payload converter, so they hold only plain fields.
Changing a field is a workflow-versioning matter: add fields with defaults, never
rename or remove (replay tests in tests/histories/ guard this).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

# Re-exported (``X as X``, their home is billing.account_state): the dispatcher, the
# activities and the legacy run import them from here.
from billing.account_state import AbandonedRequest as AbandonedRequest
from billing.account_state import Notice, PricedUsage, ServiceEvent, UsageRecord
from billing.account_state import PeriodClose as PeriodClose
from billing.account_state import PeriodState as PeriodState
from billing.rules import ExtraMinutesSettings, PlanTerms

AUTHORIZE = "authorize"
USAGE = "usage"


def workflow_id_for(account_id: str) -> str:
    return f"account-{account_id}"


# --- who asked -----------------------------------------------------------------------
# Every state-changing Update names its actor (recorded in the settings history); the
# workflow's validators refuse one that names nobody it knows. Shapes: the admin API
# token ("admin"), a signed-in web user ("admin:<email>", "customer:<email>"), the
# workflow itself or tooling ("system"), Stripe ("stripe"), the telephony backend.
ADMIN_ACTOR = "admin"
SYSTEM_ACTOR = "system"
STRIPE_ACTOR = "stripe"
TELEPHONY_ACTOR = "telephony"
# A customer is named by the account's email address; the web admin by the configured
# OVERTIME_ADMIN_EMAIL, which nothing forces to be an address: one printable word.
_PEOPLE = {
    "customer": re.compile(r"[^\s@\x00-\x1f\x7f]+@[^\s@\x00-\x1f\x7f]+"),
    "admin": re.compile(r"[^\s\x00-\x1f\x7f]+"),
}
MAX_ACTOR_LENGTH = 300  # "customer:" and an email address (at most 254)


def actor_problem(actor: object, names: frozenset[str], people: bool) -> str | None:
    """Why ``actor`` may not ask for this Update (None: it may).

    ``names``: the plain actors allowed; ``people``: whether "admin:<email>" and
    "customer:<email>" are.
    """
    if not isinstance(actor, str) or not actor:
        return "the change names no actor"
    if len(actor) > MAX_ACTOR_LENGTH:
        return "the actor is too long"
    if actor in names:
        return None
    kind, sep, who = actor.partition(":")
    shape = _PEOPLE.get(kind)
    if people and sep and shape is not None and shape.fullmatch(who):
        return None
    return f"unknown actor {actor[:80]!r}"


SETTINGS_ACTORS = frozenset({ADMIN_ACTOR, SYSTEM_ACTOR})
PAYMENT_ACTORS = frozenset({ADMIN_ACTOR, SYSTEM_ACTOR, STRIPE_ACTOR})
TELEPHONY_ACTORS = frozenset({TELEPHONY_ACTOR})


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
    # The account row's settings version, for a workflow (re)created without a state:
    # its changes go on counting from there, so the account row keeps following them.
    settings_version: int = 0
    # Set only when the account is created: it has settled nothing, so no ledger ids
    # need loading (any other start without a state loads them first).
    new_account: bool = False
    # The account row's warning thresholds, for a workflow (re)created without a state.
    alert_percents: list[int] | None = None


@dataclass
class TelephonyRequest:
    """One authorisation or usage report; the API batches many into one Update."""

    kind: str  # AUTHORIZE | USAGE
    call_id: str
    seconds: int | None = None
    # Stable across every retry of this request (the API's own retries and, when the
    # telephony backend sends one, its HTTP retries): a retried authorisation gets the
    # grant it was given the first time instead of a second one.
    request_id: str | None = None
    # When the API stops waiting for the answer. Processed later, an authorisation
    # records nothing and answers ``expired`` (nobody is listening any more).
    deadline: datetime | None = None


@dataclass
class TelephonyResult:
    # reason (authorize): limit_reached | included_minutes_exhausted | payment_overdue |
    # call_ended (already settled); expired | unavailable: nothing was recorded, the API
    # answers 503 (see REASON_* in billing.account_state).
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
    # Requests of this account the API gave up on since its last batch (see
    # AbandonedRequests): applied before the requests are answered.
    abandoned: list[AbandonedRequest] = field(default_factory=list)
    # Only the telephony backend (through the API) asks; the default keeps batches from
    # an API process older than this field valid during a rolling deploy.
    actor: str = TELEPHONY_ACTOR


@dataclass
class AbandonedRequests:
    """Signal from the API: it gave up waiting for these requests (the caller got 503).

    A grant they made is taken back, and one processed after this signal grants nothing,
    so an answer that never reached the telephony backend holds no room.
    """

    requests: list[AbandonedRequest]


MAX_REASON_LENGTH = 500


@dataclass
class SettingsChange:
    settings: ExtraMinutesSettings
    actor: str  # SETTINGS_ACTORS, "admin:<email>" or "customer:<email>" (actor_problem)
    # One id per change request, stable across retries: applied once, recorded once.
    change_id: str | None = None
    # Why (an admin's words, for the audit trail: settings_change.reason).
    reason: str | None = None


@dataclass
class PaymentMethodChange:
    on_file: bool
    actor: str  # PAYMENT_ACTORS, "admin:<email>" or "customer:<email>"
    change_id: str | None = None
    # The method in words ("Visa •••• 4242"): the change goes into the settings history
    # and is confirmed by email. None: only whether one is on file (Stripe's webhooks).
    method_label: str | None = None
    reason: str | None = None


@dataclass
class AlertsChange:
    """The account's warning thresholds, in percent of the limit (see
    ``billing.account_state.alerts_problem``); the 100 % stop always notifies."""

    percents: list[int]
    actor: str  # as SettingsChange.actor
    change_id: str | None = None
    reason: str | None = None


@dataclass
class PlanChange:
    """Move the account to another plan of the catalog, at once (see
    ``PeriodState.change_plan`` for what that means for the current period)."""

    plan: PlanTerms
    actor: str  # as SettingsChange.actor
    change_id: str | None = None
    reason: str | None = None


@dataclass
class InvoiceOverdue:
    """Signal from an InvoiceWorkflow: its invoice is overdue (dunning ended unpaid), or
    no longer (paid or void). Extra minutes stay suspended while any invoice is overdue."""

    invoice_key: str  # the invoice workflow id
    overdue: bool


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
    # Side effects not delivered yet (a receiver or the database is down).
    undelivered_notices: int = 0
    undelivered_events: int = 0
    unwritten_usage: int = 0
    # v5: the thresholds, the price now in force and what makes up the period's cost.
    alert_percents: list[int] = field(default_factory=lambda: [90])
    extra_minute_price_cents: int = 0
    monthly_fee_cents: int = 0
    included_used_seconds: int = 0
    priced_usage: list[PricedUsage] = field(default_factory=list)
    settings_version: int = 0


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
    # The change's own id (one history row per change, however often it is retried) and
    # the workflow's settings version: the account row only ever moves to a newer one.
    change_id: str | None = None
    version: int = 0
    # v5: what changed (extra_minutes | plan | alerts | payment_method), in words, why;
    # and the plan and thresholds in force after the change (the account row mirrors them).
    kind: str = "extra_minutes"
    detail: str | None = None
    reason: str | None = None
    plan: str | None = None
    alert_percents: list[int] | None = None


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
class CallLookup:
    account_id: str
    call_id: str


@dataclass
class CallsLookup:
    """Which of these call ids the ledger holds (one look-up for a whole batch)."""

    account_id: str
    call_ids: list[str]


@dataclass
class SettledCallsQuery:
    """Every call id the ledger holds for an account (seeds the settled-call filter of a
    run that continued from a version without one)."""

    account_id: str
    after_id: int = 0  # ledger row id to continue after
    # Small pages: each result is a history event (up to 128 characters an id).
    limit: int = 1_000


@dataclass
class SettledCallsPage:
    call_ids: list[str]
    last_id: int
    more: bool


# --- invoicing ----------------------------------------------------------------------


def invoice_workflow_id(account_id: str, period_key: str) -> str:
    return f"invoice-{account_id}-{period_key}"


@dataclass
class InvoiceLine:
    """Extra seconds at one price (a period with a plan change has one line per price)."""

    seconds: int
    unit_price_cents: int
    amount_cents: int  # cost_cents(seconds, unit_price_cents): the lines add up exactly
    plan: str = ""


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
    # One line per price; empty: one line from extra_seconds × unit_price_cents (every
    # period without a plan change, and every invoice started before lines existed).
    lines: list[InvoiceLine] = field(default_factory=list)
    # An invoice left unpaid is re-read every reconcile interval for as long as it stays
    # unpaid: past this many events its run continues as new (~45 days of six-hourly
    # reads), far below Temporal's history warning at 10,240 events.
    max_history_events: int = 2_000
    # Set by a run that continued as new: where the invoice stood (None: a new invoice).
    resume: InvoiceResume | None = None


@dataclass
class InvoiceState:
    """The invoice as Stripe and our ledger see it (activity results, DB mirror)."""

    stripe_invoice_id: str
    status: str  # paid | open | processing (SEPA debit under way) | payment_failed | void | draft
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


@dataclass
class InvoiceResume:
    """An unpaid invoice's run handing over to the next (InvoiceWorkflow, BOUNDED_PATCH):
    everything its loop knows, so that the next run neither charges, emails nor suspends
    again what this one already did."""

    invoice: InvoiceState
    attempt: int
    suspended: bool
    # The attempt whose failure was noticed (next attempt recorded, email sent), and when
    # its retry is due.
    noticed_attempt: int | None = None
    retry_due: datetime | None = None
    new_payment_method: bool = False
    method_after_debit: bool = False
    # Webhook news that came while the run was handing over: the next run reads it first.
    events: list[PaymentEvent] = field(default_factory=list)
    runs: int = 1  # runs this invoice has had before the next one


# --- month-end close -----------------------------------------------------------------

CLOSE_SCHEDULE_ID = "month-end-close"


def close_workflow_id(period: str) -> str:
    return f"close-report-{period}"


@dataclass
class CloseInput:
    # "2026-11"; None: the month before the workflow started (scheduled runs).
    period: str | None = None
    timezone: str = "Europe/Berlin"
    wait_seconds: int = 16 * 3600  # see Settings.close_wait_seconds
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
