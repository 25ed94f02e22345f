"""AccountWorkflow: one long-running workflow per account and billing period.

It holds the period's live usage (a :class:`billing.account_state.PeriodState`), answers
call authorisations and usage reports through a batched Update, applies settings changes
through a validated Update, hands notices, webhooks, ledger rows, settings history and
closed periods to activities, sleeps on a durable timer until the period ends, closes the
period, and continues as new.

Nothing slow stands between a request and its answer: every side effect goes to an
outbox in the state, and background loops deliver each outbox through idempotent
activities. A hand-over (continue-as-new, period close) never waits for them: whatever
is still undelivered travels in the state to the next run, which delivers it. The only
I/O an Update may wait for, each cut off well inside the telephony timeout: the rare
settled-call look-up (see :meth:`PeriodState.needs_ledger_lookup`), and the ledger row
of a usage report, written in the report's own workflow task (a local activity, grouped
with other accounts' rows into one commit) unless the database was slow or down a moment
ago (then the ordinary activity writes it, out of the answer's way).

Determinism: time comes from ``workflow.now()``, all billing arithmetic from the pure
``billing`` package (passed through the sandbox), all I/O from activities. Runs started
before this version (no ``TRUST_PATCH`` marker) keep their own code to the end of the
run: :mod:`workflows.legacy.account_v2`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    is_cancelled_exception,
)
from temporalio.exceptions import (
    TimeoutError as LocalActivityTimeout,
)
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    # billing.settled too: PeriodState's type hints name its classes, and the sandbox
    # resolves them only in modules passed through by name.
    import billing.settled  # noqa: F401
    from activities.ledger import LedgerActivities
    from activities.notifications import NotificationActivities
    from billing.account_state import (
        REASON_EXPIRED,
        REASON_UNAVAILABLE,
        PeriodState,
        alerts_problem,
    )
    from billing.rules import (
        BillingRuleError,
        LimitBounds,
        period_containing,
        period_key,
        validate_settings,
    )
    from workflows.invoice import InvoiceWorkflow
    from workflows.legacy.account_v2 import LegacyAccountRun
    from workflows.types import (
        AUTHORIZE,
        MAX_REASON_LENGTH,
        PAYMENT_ACTORS,
        SETTINGS_ACTORS,
        TELEPHONY_ACTORS,
        USAGE,
        AbandonedRequests,
        AccountSnapshot,
        AccountWorkflowInput,
        AlertsChange,
        CallsLookup,
        InvoiceInput,
        InvoiceLine,
        InvoiceOverdue,
        NoticeDelivery,
        PaymentMethodChange,
        PlanChange,
        ServiceEventDelivery,
        SettingsChange,
        SettingsChangeRecord,
        SettledCallsQuery,
        TelephonyBatch,
        TelephonyRequest,
        TelephonyResult,
        UsageBatch,
        actor_problem,
        invoice_workflow_id,
    )

# Activities retry until they succeed: an SMTP or database outage delays a notice or a
# ledger write, it never drops one. Each activity is idempotent (see activities/); one
# that can never succeed (a recipient refused for good) records the failure and returns.
RETRY_FOREVER = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
)
# A database write or an SMTP send takes well under a second; a worker that dies
# mid-activity hands its work to another after this long.
ACTIVITY_TIMEOUT = timedelta(seconds=10)
# The settled-call look-up stands in front of an answer: it gets a fraction of the
# telephony timeout, and a slow database makes that one answer "unavailable" (503).
LOOKUP_TIMEOUT = timedelta(milliseconds=600)
# Clock skew allowed between the API host (which sets a request's deadline) and the
# Temporal server (whose time workflow.now() is). Abandoned requests are refused by id
# (AbandonedRequests), the deadline only catches what no signal could report.
DEADLINE_SLACK = timedelta(seconds=10)
LEDGER_BATCH = 500
# A usage report's ledger row is written in the report's own workflow task (a local
# activity, v7): it holds that task's answer back for as long as the write takes, so it
# gets a sliver of the telephony timeout. One that fails or is late hands the rows to the
# ordinary activity, and the run writes through that alone for a while: a slow or absent
# database costs one late answer per account and pause, never a blocked account.
LOCAL_WRITE_TIMEOUT = timedelta(milliseconds=300)
LOCAL_WRITE_PAUSE = timedelta(seconds=30)

# How a local activity that did not succeed reaches the workflow: ActivityError around
# the cause while running, but the bare cause (ApplicationError, TimeoutError) when a
# raising activity fails fast and whenever its marker is replayed. Catching only the
# first would fail the flush loop (or the Update) and make the replay nondeterministic.
LOCAL_ACTIVITY_FAILED = (ActivityError, ApplicationError, LocalActivityTimeout)

# Rejection types the API understands (see starter/dispatcher.py).
RETRY_LATER = "retry_later"
PAYMENT_METHOD_REQUIRED = "payment_method_required"
INVALID_ACTOR = "invalid_actor"
INVOICING_PATCH = "stripe-invoicing"
# Settled calls are final, side effects never block, grants lapse once (v3).
TRUST_PATCH = "trust-v3"
# Confirmation emails and payment-method history entries (v5). Plan changes and alert
# thresholds need no marker: their Updates never reach a run of an older version's code.
CUSTOMER_PATCH = "customer-v5"
# Ledger rows written by a local activity in the report's own workflow task (v7).
HOT_PATH_PATCH = "hot-path-v7"
INVALID_ALERTS = "invalid_alerts"
UNKNOWN_PLAN = "unknown_plan"
INVALID_REASON = "invalid_reason"
# The overdue invoice of a v2 InvoiceWorkflow, whose signal names none.
LEGACY_INVOICE = "unnamed-invoice"


@workflow.defn
class AccountWorkflow:
    @workflow.init
    def __init__(self, input: AccountWorkflowInput) -> None:
        self._input = input
        self._legacy: LegacyAccountRun | None = None
        if not workflow.patched(TRUST_PATCH):
            self._legacy = LegacyAccountRun(input)
            return
        if input.state is not None:
            self._state = input.state
        else:
            start, end = period_containing(
                workflow.now(),
                timezone=input.profile.timezone,
                period_seconds=input.profile.period_seconds,
                anchor=input.profile.created_at,
            )
            self._state = PeriodState.open(
                input.profile.account_id,
                input.plan,
                input.settings,
                start,
                end,
                new_account=input.new_account,
            )
            self._state.settings_version = input.settings_version
            self._state.event_salt = f"{str(workflow.uuid4())[:8]}-"
            if input.alert_percents is not None:
                self._state.alert_percents = sorted(set(input.alert_percents))
        if workflow.patched(CUSTOMER_PATCH):
            self._state.confirmations = True
        self._write_ledger_locally = workflow.patched(HOT_PATH_PATCH)
        self._local_writes_resume = workflow.now()
        if self._state.payment_overdue and not self._state.overdue_invoices:
            # Suspended by an invoice under v2, which did not name it: stays suspended until
            # that invoice's workflow reports it paid (its bare payment_overdue signal).
            self._state.overdue_invoices = [LEGACY_INVOICE]
        self._draining = False
        self._updates_this_run = 0
        self._signals_this_run = 0

    # --- main loop --------------------------------------------------------------------

    @workflow.run
    async def run(self, input: AccountWorkflowInput) -> None:
        if self._legacy is not None:
            return await self._legacy.run(input)
        state = self._state
        delay = (state.period_end - workflow.now()).total_seconds()
        period_timer = asyncio.ensure_future(asyncio.sleep(max(delay, 0)))
        background = [
            asyncio.ensure_future(loop())
            for loop in (
                self._flush_ledger_forever,
                self._deliver_events_forever,
                self._deliver_notices_forever,
                self._flush_settings_forever,
                self._flush_closes_forever,
                self._complete_settled_filter,
            )
        ]
        await workflow.wait_condition(lambda: period_timer.done() or self._continue_as_new_due())

        # Hand over: no new Updates (the API retries them against the next run), every
        # running handler finished. Undelivered side effects are not waited for: they
        # travel in the state and the next run delivers them.
        self._draining = True
        await workflow.wait_condition(workflow.all_handlers_finished)
        next_state = state
        if period_timer.done():
            if state.extra_cost_cents > 0:  # a period that costs 0 ct gets no invoice
                await self._start_invoicing()
            next_start = state.period_end
            _, next_end = period_containing(
                next_start,
                timezone=input.profile.timezone,
                period_seconds=input.profile.period_seconds,
                anchor=input.profile.created_at,
            )
            next_state = state.next_period(next_start, next_end, workflow.now())
        else:
            period_timer.cancel()
        for task in background:
            task.cancel()
        workflow.continue_as_new(
            AccountWorkflowInput(
                profile=input.profile,
                plan=next_state.plan,
                settings=next_state.settings,
                config=input.config,
                state=next_state,
            )
        )

    def _continue_as_new_due(self) -> bool:
        config = self._input.config
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or self._updates_this_run >= config.max_updates_per_run
            or self._signals_this_run >= config.max_signals_per_run
            or info.get_current_history_length() >= config.max_history_events
        )

    # --- outboxes: one loop each, oldest first, removed only once delivered ---------------

    async def _drain(
        self, pending: Callable[[], list[Any]], deliver: Callable[[Any], Awaitable[Any]]
    ) -> None:
        while True:
            await workflow.wait_condition(lambda: bool(pending()))
            await deliver(pending()[0])
            del pending()[0]

    async def _run_activity(self, activity: Any, arg: Any) -> Any:
        return await workflow.execute_activity_method(
            activity, arg, start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=RETRY_FOREVER
        )

    async def _flush_ledger_forever(self) -> None:
        state = self._state
        while True:
            await workflow.wait_condition(lambda: bool(state.unflushed))
            rows = state.unflushed[:LEDGER_BATCH]
            batch = UsageBatch(state.account_id, state.period_start, state.period_end, rows)
            if not (self._write_ledger_locally and await self._wrote_locally(batch)):
                await self._run_activity(LedgerActivities.record_usage, batch)
            del state.unflushed[: len(rows)]  # new rows were only appended behind them

    async def _wrote_locally(self, batch: UsageBatch) -> bool:
        """Write ``batch`` in this workflow task; False when the ordinary activity must.

        Saves a usage report the second workflow task and the activity task that the
        ordinary activity costs (half the report's work for Temporal).
        """
        if workflow.now() < self._local_writes_resume:
            return False
        try:
            await workflow.execute_local_activity_method(
                LedgerActivities.record_usage_now,
                batch,
                start_to_close_timeout=LOCAL_WRITE_TIMEOUT,
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        except LOCAL_ACTIVITY_FAILED as err:
            if is_cancelled_exception(err):
                raise  # the loop is being stopped (hand-over): the rows travel in the state
            self._local_writes_resume = workflow.now() + LOCAL_WRITE_PAUSE
            workflow.logger.warning(
                "ledger write in the workflow task failed; the ordinary activity writes",
                extra={"account_id": batch.account_id, "rows": len(batch.records)},
            )
            return False
        return True

    async def _deliver_events_forever(self) -> None:
        state = self._state
        await self._drain(
            lambda: state.outbox_events,
            lambda event: self._run_activity(
                NotificationActivities.send_service_event,
                ServiceEventDelivery(
                    state.account_id, event.period_start or state.period_start, event
                ),
            ),
        )

    async def _deliver_notices_forever(self) -> None:
        state, profile = self._state, self._input.profile
        await self._drain(
            lambda: state.outbox_notices,
            lambda notice: self._run_activity(
                NotificationActivities.send_notice,
                NoticeDelivery(
                    profile,
                    state.plan,
                    notice.period_start or state.period_start,
                    notice.period_end or state.period_end,
                    notice,
                ),
            ),
        )

    async def _flush_settings_forever(self) -> None:
        state = self._state
        await self._drain(
            lambda: state.outbox_settings,
            lambda entry: self._run_activity(
                LedgerActivities.record_settings_change,
                SettingsChangeRecord(
                    state.account_id,
                    entry.actor,
                    entry.old,
                    entry.new,
                    entry.changed_at,
                    change_id=entry.change_id,
                    version=entry.version,
                    kind=entry.kind,
                    detail=entry.detail,
                    reason=entry.reason,
                    plan=entry.plan,
                    alert_percents=entry.alert_percents,
                ),
            ),
        )

    async def _flush_closes_forever(self) -> None:
        state = self._state

        async def write(close: Any) -> None:
            # After the period's own ledger rows, so that the totals check finds them all.
            await workflow.wait_condition(
                lambda: all(r.period_start != close.period_start for r in state.unflushed)
            )
            await self._run_activity(LedgerActivities.close_period, close)

        await self._drain(lambda: state.outbox_closes, write)

    async def _complete_settled_filter(self) -> None:
        """A state from a version without the settled-call filter: load the ledger's ids."""
        settled = self._state.settled
        while not settled.complete:
            page = await self._run_activity(
                LedgerActivities.settled_call_ids,
                SettledCallsQuery(self._state.account_id, after_id=settled.loaded_after_id),
            )
            for call_id in page.call_ids:
                settled.add(call_id)
            settled.loaded_after_id = page.last_id  # a hand-over goes on from here
            settled.complete = not page.more

    async def _start_invoicing(self) -> None:
        """Hand the closed period to its own InvoiceWorkflow, which outlives this run.

        The child's id is derived from account and period, so the invoice is started
        once; it runs on while this workflow continues into the next period.
        """
        state, config = self._state, self._input.config
        await workflow.start_child_workflow(
            InvoiceWorkflow.run,
            InvoiceInput(
                profile=self._input.profile,
                period_start=state.period_start,
                period_end=state.period_end,
                extra_seconds=state.extra_used_seconds,
                unit_price_cents=state.plan.extra_minute_price_cents,
                amount_cents=state.extra_cost_cents,
                currency=config.currency,
                dunning_schedule_seconds=list(config.dunning_schedule_seconds),
                reconcile_interval_seconds=config.reconcile_interval_seconds,
                stripe_task_queue=config.stripe_task_queue,
                # One line per price when a plan change repriced part of the period.
                lines=[
                    InvoiceLine(p.seconds, p.unit_price_cents, p.cost_cents, p.plan)
                    for p in state.priced_usage()
                ]
                if state.earlier_prices
                else [],
            ),
            id=invoice_workflow_id(state.account_id, period_key(state.period_start)),
            parent_close_policy=ParentClosePolicy.ABANDON,
        )

    # --- telephony: authorisations and usage reports ------------------------------------

    @workflow.update
    async def telephony(self, batch: TelephonyBatch) -> list[TelephonyResult]:
        if self._legacy is not None:
            return await self._legacy.telephony(batch)
        self._updates_this_run += 1
        if batch.abandoned:
            self._state.abandon(
                batch.abandoned,
                workflow.now(),
                grace_seconds=self._input.config.grant_grace_seconds,
            )
        # One ledger look-up for every id of the batch that needs one, before any answer.
        unknown = sorted(
            {r.call_id for r in batch.requests if self._state.needs_ledger_lookup(r.call_id)}
        )
        in_ledger = await self._settled_in_ledger(unknown) if unknown else set()
        return [self._answer(request, unknown, in_ledger) for request in batch.requests]

    def _answer(
        self, request: TelephonyRequest, looked_up: list[str], in_ledger: set[str] | None
    ) -> TelephonyResult:
        state, config = self._state, self._input.config
        call_id = request.call_id
        if (
            request.kind == AUTHORIZE
            and request.deadline is not None
            and workflow.now() > request.deadline + DEADLINE_SLACK
        ):
            # The API stopped waiting long ago: a grant now would reach nobody.
            return TelephonyResult(AUTHORIZE, call_id, allowed=False, reason=REASON_EXPIRED)
        settled_before = False
        if call_id in looked_up:
            if in_ledger is None:  # the ledger did not answer in time
                return TelephonyResult(
                    request.kind, call_id, allowed=False, reason=REASON_UNAVAILABLE
                )
            settled_before = call_id in in_ledger
        if request.kind == AUTHORIZE:
            grant = state.authorize(
                call_id,
                workflow.now(),
                chunk_seconds=config.grant_chunk_seconds,
                grace_seconds=config.grant_grace_seconds,
                request_id=request.request_id,
                deadline=request.deadline,
                settled_before=settled_before,
            )
            return TelephonyResult(
                AUTHORIZE,
                call_id,
                allowed=grant.allowed,
                granted_seconds=grant.granted_seconds if grant.allowed else None,
                reason=grant.reason,
            )
        assert request.seconds is not None  # the validator guarantees it
        settlement = state.settle(
            call_id, request.seconds, workflow.now(), settled_before=settled_before
        )
        return TelephonyResult(USAGE, call_id, recorded=True, duplicate=settlement.duplicate)

    async def _settled_in_ledger(self, call_ids: list[str]) -> set[str] | None:
        """Which of ``call_ids`` the ledger holds; None when it did not answer in time.

        (A call another batch settled while this one waited is found by ``settle`` and
        ``authorize`` themselves: they check the recent settlements again.)
        """
        try:
            found: list[str] = await workflow.execute_local_activity_method(
                LedgerActivities.find_recorded_calls,
                CallsLookup(self._state.account_id, call_ids),
                start_to_close_timeout=LOOKUP_TIMEOUT,
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        except LOCAL_ACTIVITY_FAILED as err:
            if is_cancelled_exception(err):
                raise
            return None
        return set(found)

    @telephony.validator
    def _validate_telephony(self, batch: TelephonyBatch) -> None:
        # Before the legacy delegate: validators add no commands, so legacy runs get the
        # check as well without a patch.
        _require_actor(batch.actor, TELEPHONY_ACTORS, people=False)
        if self._legacy is not None:
            return self._legacy.validate_telephony(batch)
        self._refuse_while_draining()
        for request in batch.requests:
            if request.kind not in (AUTHORIZE, USAGE) or not request.call_id:
                raise ApplicationError(f"bad telephony request {request!r}", type="invalid")
            if request.kind == USAGE and (request.seconds is None or request.seconds < 0):
                raise ApplicationError("usage needs seconds >= 0", type="invalid")

    # Signal arguments default to None: a signal sent without any (the frontend accepts
    # that from anyone who reaches it) would otherwise raise a TypeError in the handler,
    # which fails the workflow task on every replay and wedges the account for good. A
    # signal whose argument does not convert (not encrypted, see overtime/temporal.py)
    # never reaches a handler: the SDK drops it with a log line.
    @workflow.signal
    def abandon(self, abandoned: AbandonedRequests | None = None) -> None:
        """From the API: it answered these requests 503; their grants hold no room."""
        if abandoned is None:
            return _ignore_empty_signal("abandon")
        if self._legacy is not None:
            return
        self._signals_this_run += 1
        self._state.abandon(
            abandoned.requests,
            workflow.now(),
            grace_seconds=self._input.config.grant_grace_seconds,
        )

    def _refuse_while_draining(self) -> None:
        if self._draining:
            raise ApplicationError("period closing or run handing over", type=RETRY_LATER)

    # --- settings -------------------------------------------------------------------------

    @workflow.update
    async def change_settings(self, change: SettingsChange) -> AccountSnapshot:
        if self._legacy is not None:
            return await self._legacy.change_settings(change)
        self._updates_this_run += 1
        state = self._state
        if not state.already_applied(change.change_id):
            state.change_settings(
                change.settings,
                workflow.now(),
                actor=change.actor,
                change_id=change.change_id,
                reason=change.reason,
            )
        return self.snapshot()

    @change_settings.validator
    def _validate_settings(self, change: SettingsChange) -> None:
        _require_actor(change.actor, SETTINGS_ACTORS, people=True)
        if self._legacy is not None:
            return self._legacy.validate_settings(change)
        self._refuse_while_draining()
        _require_reason(change.reason)
        if self._state.already_applied(change.change_id):
            return  # a retry of a change that was applied: answered with today's state
        # The plan's rules first: a free plan is told it is not eligible, not to add a
        # payment method it could not use. (Validators record nothing: order is free.)
        config = self._input.config
        try:
            validate_settings(
                change.settings,
                self._state.plan,
                LimitBounds(config.max_limit_cents, config.max_limit_minutes),
            )
        except BillingRuleError as err:
            raise ApplicationError(err.detail, type=err.code) from err
        if change.settings.enabled and not self._state.payment_method_on_file:
            raise ApplicationError(
                "add a payment method before enabling extra minutes",
                type=PAYMENT_METHOD_REQUIRED,
            )

    # --- payment -------------------------------------------------------------------------

    @workflow.update
    async def payment_method(self, change: PaymentMethodChange) -> AccountSnapshot:
        if self._legacy is not None:
            return await self._legacy.payment_method(change)
        self._updates_this_run += 1
        state = self._state
        if not state.already_applied(change.change_id):
            state.set_payment_method(
                change.on_file,
                workflow.now(),
                actor=change.actor,
                change_id=change.change_id,
                method_label=change.method_label,
                reason=change.reason,
            )
        return self.snapshot()

    @payment_method.validator
    def _validate_payment_method(self, change: PaymentMethodChange) -> None:
        _require_actor(change.actor, PAYMENT_ACTORS, people=True)
        if self._legacy is not None:
            return self._legacy.validate_payment_method(change)
        self._refuse_while_draining()
        _require_reason(change.reason)
        label = change.method_label
        if label is not None and (not isinstance(label, str) or not 0 < len(label) <= 64):
            raise ApplicationError("method_label: 1 to 64 characters", type="invalid")

    # --- alert thresholds and plan ------------------------------------------------------

    @workflow.update
    async def change_alerts(self, change: AlertsChange) -> AccountSnapshot:
        return self._apply_once(
            "alerts",
            change.change_id,
            lambda change_id: self._state.change_alerts(
                change.percents,
                workflow.now(),
                actor=change.actor,
                change_id=change_id,
                reason=change.reason,
            ),
        )

    @change_alerts.validator
    def _validate_alerts(self, change: AlertsChange) -> None:
        if not self._new_change("alerts", change.actor, change.change_id, change.reason):
            return
        problem = alerts_problem(change.percents)
        if problem is not None:
            raise ApplicationError(problem, type=INVALID_ALERTS)

    @workflow.update
    async def change_plan(self, change: PlanChange) -> AccountSnapshot:
        return self._apply_once(
            "plan",
            change.change_id,
            lambda change_id: self._state.change_plan(
                change.plan,
                workflow.now(),
                actor=change.actor,
                change_id=change_id,
                reason=change.reason,
            ),
        )

    @change_plan.validator
    def _validate_plan(self, change: PlanChange) -> None:
        if not self._new_change("plan", change.actor, change.change_id, change.reason):
            return
        plan = change.plan
        figures = (plan.monthly_fee_cents, plan.included_minutes, plan.extra_minute_price_cents)
        if (
            not isinstance(plan.plan, str)
            or not plan.plan
            or any(isinstance(f, bool) or not isinstance(f, int) or f < 0 for f in figures)
            or (plan.is_paid and plan.extra_minute_price_cents <= 0)
        ):
            raise ApplicationError(f"not a plan of the catalog: {plan!r}"[:200], type=UNKNOWN_PLAN)

    def _apply_once(
        self, kind: str, change_id: str | None, apply: Callable[[str | None], None]
    ) -> AccountSnapshot:
        """A plan or threshold change: applied unless this change id already was."""
        if self._legacy is not None:  # the validator refuses these; never reached
            raise ApplicationError("not supported by this run", type=RETRY_LATER)
        self._updates_this_run += 1
        own_id = _of_kind(kind, change_id)
        if not self._state.already_applied(own_id):
            apply(own_id)
        return self.snapshot()

    def _new_change(self, kind: str, actor: object, change_id: str | None, reason: object) -> bool:
        """The checks every plan or threshold change passes first; False for a retry of
        one already applied (answered with today's state, nothing checked again)."""
        _require_actor(actor, SETTINGS_ACTORS, people=True)
        self._refuse_legacy()
        self._refuse_while_draining()
        if self._state.already_applied(_of_kind(kind, change_id)):
            return False
        _require_reason(reason)
        return True

    def _refuse_legacy(self) -> None:
        if self._legacy is not None:
            # A v2 run knows no such change; its next run (soon: a period end or a
            # hand-over) does. The API retries "retry_later" rejections.
            raise ApplicationError("this run predates the change", type=RETRY_LATER)

    @workflow.signal
    def payment_overdue(self, overdue: bool | None = None) -> None:
        """From an InvoiceWorkflow started before per-invoice overdue signals existed."""
        if overdue is None:
            return _ignore_empty_signal("payment_overdue")
        if self._legacy is not None:
            return self._legacy.payment_overdue(overdue)
        self._signals_this_run += 1
        self._state.set_invoice_overdue(LEGACY_INVOICE, overdue, workflow.now())

    @workflow.signal
    def invoice_overdue(self, news: InvoiceOverdue | None = None) -> None:
        """From InvoiceWorkflow: its dunning ended unpaid, or it got paid (or voided)."""
        if news is None:
            return _ignore_empty_signal("invoice_overdue")
        if self._legacy is not None:
            return self._legacy.payment_overdue(news.overdue)
        self._signals_this_run += 1
        self._state.set_invoice_overdue(news.invoice_key, news.overdue, workflow.now())

    # --- queries --------------------------------------------------------------------------

    @workflow.query
    def snapshot(self, at: datetime | None = None) -> AccountSnapshot:
        """The live state; reservations as of ``at`` (the asker's clock), else of the
        last workflow task."""
        if self._legacy is not None:
            return self._legacy.snapshot()
        state = self._state
        return AccountSnapshot(
            account_id=state.account_id,
            period_start=state.period_start,
            period_end=state.period_end,
            plan=state.plan.plan,
            included_seconds=state.plan.included_seconds,
            used_seconds=state.included_used_seconds + state.extra_used_seconds,
            extra_seconds=state.extra_used_seconds,
            extra_cost_cents=state.extra_cost_cents,
            enabled=state.settings.enabled,
            limit_cents=state.settings.limit_cents,
            limit_minutes=state.settings.limit_minutes,
            extra_allowed_seconds=state.extra_allowed_seconds,
            reserved_seconds=state.reserved_seconds(at or workflow.now()),
            accepting_calls=state.accepting_calls,
            stop_reason=state.stop_reason,
            excess_seconds=state.excess_seconds,
            calls_recorded=state.calls_recorded,
            run_updates=self._updates_this_run,
            payment_method_on_file=state.payment_method_on_file,
            payment_overdue=state.payment_overdue,
            undelivered_notices=len(state.outbox_notices),
            undelivered_events=len(state.outbox_events),
            unwritten_usage=len(state.unflushed),
            alert_percents=list(state.alert_percents),
            extra_minute_price_cents=state.plan.extra_minute_price_cents,
            monthly_fee_cents=state.plan.monthly_fee_cents,
            included_used_seconds=state.included_used_seconds,
            priced_usage=state.priced_usage(),
            settings_version=state.settings_version,
        )


def _require_actor(actor: object, names: frozenset[str], *, people: bool) -> None:
    """Refuse (reject the Update: nothing recorded) a change that names nobody we know."""
    problem = actor_problem(actor, names, people)
    if problem is not None:
        raise ApplicationError(problem, type=INVALID_ACTOR)


def _of_kind(kind: str, change_id: str | None) -> str | None:
    """Change ids of plan and threshold changes, apart from the others': an id a client
    reuses for another kind of change is a new change, not a silent no-op."""
    return f"{kind}:{change_id}" if change_id is not None else None


def _require_reason(reason: object) -> None:
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON_LENGTH):
        raise ApplicationError(
            f"reason: text of at most {MAX_REASON_LENGTH} characters", type=INVALID_REASON
        )


def _ignore_empty_signal(name: str) -> None:
    workflow.logger.warning("ignored a %s signal without an argument", name)
