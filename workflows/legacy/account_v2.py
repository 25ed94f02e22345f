"""AccountWorkflow as it ran before ``TRUST_PATCH`` (v2), kept so its runs replay.

A run started by that version has no ``trust-v3`` marker in its history; the workflow
(:mod:`workflows.account`) then hands every handler to this class for the rest of the
run, which behaves exactly as v2 did (the same commands in the same order). The run's
continue-as-new starts the next run on today's code. Its billing rules are frozen beside
it in :mod:`billing.legacy.account_state_v2`.

Delete both once no v2 run is open (``temporal workflow list --query
"ExecutionStatus='Running' AND StartTime < '<deploy time>'"`` is empty) together with
the v1/v2 histories in tests/histories/, and call ``workflow.deprecate_patch``.
"""

from __future__ import annotations

import asyncio
from dataclasses import fields
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.ledger import LedgerActivities
    from activities.notifications import NotificationActivities
    from billing.legacy.account_state_v2 import PeriodState
    from billing.rules import (
        BillingRuleError,
        ExtraMinutesSettings,
        LimitBounds,
        limit_as_cents,
        period_containing,
        period_key,
        validate_settings,
    )
    from workflows.invoice import InvoiceWorkflow
    from workflows.types import (
        AUTHORIZE,
        USAGE,
        AccountSnapshot,
        AccountWorkflowInput,
        CallLookup,
        InvoiceInput,
        NoticeDelivery,
        PaymentMethodChange,
        PeriodClose,
        ServiceEventDelivery,
        SettingsChange,
        SettingsChangeRecord,
        TelephonyBatch,
        TelephonyResult,
        UsageBatch,
        invoice_workflow_id,
    )
    from workflows.types import PeriodState as CurrentPeriodState

if TYPE_CHECKING:
    # Today's classes, for the casts below: v2's records and notices are frozen copies
    # with the same fields, so they travel as the same JSON.
    from billing.account_state import Notice, ServiceEvent, UsageRecord

# Activities retry until they succeed: an SMTP or database outage delays a notice or a
# ledger write, it never drops one. Each activity is idempotent (see activities/).
RETRY_FOREVER = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
)
# A database write or an SMTP send takes well under a second; a worker that dies
# mid-activity hands its work to another after this long.
ACTIVITY_TIMEOUT = timedelta(seconds=10)

# Rejection types the API understands (see starter/dispatcher.py).
RETRY_LATER = "retry_later"
PAYMENT_METHOD_REQUIRED = "payment_method_required"
INVOICING_PATCH = "stripe-invoicing"


def _as_v2(state: CurrentPeriodState) -> PeriodState:
    """Today's state type, as read from a v2 run's input, in v2's own class (v2's
    ``recent_call_ids`` was always empty at a hand-over)."""
    values: dict[str, Any] = {
        f.name: getattr(state, f.name, {}) for f in fields(PeriodState) if f.init
    }
    return PeriodState(**values)


class LegacyAccountRun:
    def __init__(self, input: AccountWorkflowInput) -> None:
        self._input = input
        if input.state is not None:
            self._state = _as_v2(input.state)
        else:
            start, end = period_containing(
                workflow.now(),
                timezone=input.profile.timezone,
                period_seconds=input.profile.period_seconds,
                anchor=input.profile.created_at,
            )
            self._state = PeriodState.open(
                input.profile.account_id, input.plan, input.settings, start, end
            )
        self._draining = False
        self._updates_this_run = 0
        self._signals_this_run = 0
        self._busy_activities = 0

    # --- main loop --------------------------------------------------------------------

    async def run(self, input: AccountWorkflowInput) -> None:
        state = self._state
        delay = (state.period_end - workflow.now()).total_seconds()
        period_timer = asyncio.ensure_future(asyncio.sleep(max(delay, 0)))
        background = [
            asyncio.ensure_future(self._flush_ledger_forever()),
            asyncio.ensure_future(self._deliver_outbox_forever()),
        ]
        await workflow.wait_condition(lambda: period_timer.done() or self._continue_as_new_due())

        # Drain before handing over: no new Updates (the API retries them against the
        # next run), every running handler finished, every ledger row and notice out.
        self._draining = True
        await workflow.wait_condition(workflow.all_handlers_finished)
        await workflow.wait_condition(self._idle)

        next_state = state
        if period_timer.done():
            await self._close_period()
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
        # Ledger rows of this run are in the database now; older duplicates are found there.
        next_state.recent_call_ids = {}
        workflow.continue_as_new(
            AccountWorkflowInput(
                profile=input.profile,
                plan=next_state.plan,
                settings=next_state.settings,
                config=input.config,
                state=cast("CurrentPeriodState", next_state),  # v2's class; same JSON fields
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

    def _idle(self) -> bool:
        state = self._state
        return (
            self._busy_activities == 0
            and not state.unflushed
            and not state.outbox_notices
            and not state.outbox_events
        )

    async def _flush_ledger_forever(self) -> None:
        state = self._state
        while True:
            await workflow.wait_condition(lambda: bool(state.unflushed))
            rows, state.unflushed = state.unflushed, []
            self._busy_activities += 1
            try:
                await workflow.execute_activity_method(
                    LedgerActivities.record_usage,
                    UsageBatch(
                        state.account_id,
                        state.period_start,
                        state.period_end,
                        cast("list[UsageRecord]", rows),
                    ),
                    start_to_close_timeout=ACTIVITY_TIMEOUT,
                    retry_policy=RETRY_FOREVER,
                )
            finally:
                self._busy_activities -= 1

    async def _deliver_outbox_forever(self) -> None:
        state = self._state
        profile = self._input.profile
        while True:
            await workflow.wait_condition(lambda: bool(state.outbox_notices or state.outbox_events))
            self._busy_activities += 1
            try:
                if state.outbox_events:
                    event = state.outbox_events[0]
                    await workflow.execute_activity_method(
                        NotificationActivities.send_service_event,
                        ServiceEventDelivery(
                            state.account_id, state.period_start, cast("ServiceEvent", event)
                        ),
                        start_to_close_timeout=ACTIVITY_TIMEOUT,
                        retry_policy=RETRY_FOREVER,
                    )
                    state.outbox_events.remove(event)
                else:
                    notice = state.outbox_notices[0]
                    await workflow.execute_activity_method(
                        NotificationActivities.send_notice,
                        NoticeDelivery(
                            profile,
                            state.plan,
                            state.period_start,
                            state.period_end,
                            cast("Notice", notice),
                        ),
                        start_to_close_timeout=ACTIVITY_TIMEOUT,
                        retry_policy=RETRY_FOREVER,
                    )
                    state.outbox_notices.remove(notice)
            finally:
                self._busy_activities -= 1

    async def _close_period(self) -> None:
        state = self._state
        await workflow.execute_activity_method(
            LedgerActivities.close_period,
            PeriodClose(
                account_id=state.account_id,
                period_start=state.period_start,
                period_end=state.period_end,
                plan=state.plan.plan,
                included_used_seconds=state.included_used_seconds,
                extra_used_seconds=state.extra_used_seconds,
                extra_cost_cents=state.extra_cost_cents,
                excess_seconds=state.excess_seconds,
                calls_recorded=state.calls_recorded,
                extra_minute_price_cents=state.plan.extra_minute_price_cents,
                limit_cents=limit_as_cents(state.settings, state.plan)
                if state.settings.enabled
                else None,
                stopped_at_limit=state.stop_reason == "limit_reached",
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY_FOREVER,
        )
        if workflow.patched(INVOICING_PATCH) and state.extra_used_seconds > 0:
            await self._start_invoicing()

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
            ),
            id=invoice_workflow_id(state.account_id, period_key(state.period_start)),
            parent_close_policy=ParentClosePolicy.ABANDON,
        )

    # --- telephony: authorisations and usage reports ------------------------------------

    async def telephony(self, batch: TelephonyBatch) -> list[TelephonyResult]:
        self._updates_this_run += 1
        state = self._state
        config = self._input.config
        results: list[TelephonyResult] = []
        for request in batch.requests:
            if request.kind == AUTHORIZE:
                grant = state.authorize(
                    request.call_id,
                    workflow.now(),
                    chunk_seconds=config.grant_chunk_seconds,
                    grace_seconds=config.grant_grace_seconds,
                )
                results.append(
                    TelephonyResult(
                        kind=AUTHORIZE,
                        call_id=request.call_id,
                        allowed=grant.allowed,
                        granted_seconds=grant.granted_seconds if grant.allowed else None,
                        reason=grant.reason,
                    )
                )
                continue
            assert request.seconds is not None  # the validator guarantees it
            duplicate = False
            if not state.is_known_call(request.call_id):
                # Not running here and not settled in this run: it may have been settled
                # in an earlier run or period, which the ledger knows.
                duplicate = await workflow.execute_local_activity_method(
                    LedgerActivities.find_recorded_call,
                    CallLookup(state.account_id, request.call_id),
                    start_to_close_timeout=timedelta(seconds=10),
                )
            if not duplicate:
                duplicate = state.settle(request.call_id, request.seconds, workflow.now()).duplicate
            results.append(
                TelephonyResult(
                    kind=USAGE, call_id=request.call_id, recorded=True, duplicate=duplicate
                )
            )
        return results

    def validate_telephony(self, batch: TelephonyBatch) -> None:
        if self._draining:
            raise ApplicationError("period closing or run handing over", type=RETRY_LATER)
        for request in batch.requests:
            if request.kind not in (AUTHORIZE, USAGE) or not request.call_id:
                raise ApplicationError(f"bad telephony request {request!r}", type="invalid")
            if request.kind == USAGE and (request.seconds is None or request.seconds < 0):
                raise ApplicationError("usage needs seconds >= 0", type="invalid")

    # --- settings -------------------------------------------------------------------------

    async def change_settings(self, change: SettingsChange) -> AccountSnapshot:
        self._updates_this_run += 1
        state = self._state
        old = state.settings
        now = workflow.now()
        state.change_settings(change.settings, now)
        await self._record_settings(old, change.settings, change.actor)
        return self.snapshot()

    async def _record_settings(
        self, old: ExtraMinutesSettings, new: ExtraMinutesSettings, actor: str
    ) -> None:
        self._busy_activities += 1
        try:
            await workflow.execute_activity_method(
                LedgerActivities.record_settings_change,
                SettingsChangeRecord(self._state.account_id, actor, old, new, workflow.now()),
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RETRY_FOREVER,
            )
        finally:
            self._busy_activities -= 1

    def validate_settings(self, change: SettingsChange) -> None:
        if self._draining:
            raise ApplicationError("period closing or run handing over", type=RETRY_LATER)
        if change.settings.enabled and not self._state.payment_method_on_file:
            raise ApplicationError(
                "add a payment method before enabling extra minutes",
                type=PAYMENT_METHOD_REQUIRED,
            )
        config = self._input.config
        try:
            validate_settings(
                change.settings,
                self._state.plan,
                LimitBounds(config.max_limit_cents, config.max_limit_minutes),
            )
        except BillingRuleError as err:
            raise ApplicationError(err.detail, type=err.code) from err

    # --- payment -------------------------------------------------------------------------

    async def payment_method(self, change: PaymentMethodChange) -> AccountSnapshot:
        self._updates_this_run += 1
        state = self._state
        old = state.settings
        now = workflow.now()
        if state.set_payment_method(change.on_file, now):
            await self._record_settings(old, ExtraMinutesSettings(enabled=False), change.actor)
        return self.snapshot()

    def validate_payment_method(self, change: PaymentMethodChange) -> None:
        if self._draining:
            raise ApplicationError("period closing or run handing over", type=RETRY_LATER)

    def payment_overdue(self, overdue: bool) -> None:
        """From InvoiceWorkflow: dunning ended unpaid (True), or the invoice got paid."""
        self._signals_this_run += 1
        self._state.set_payment_overdue(overdue, workflow.now())

    # --- queries --------------------------------------------------------------------------

    def snapshot(self) -> AccountSnapshot:
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
            reserved_seconds=state.reserved_seconds(workflow.now()),
            accepting_calls=state.accepting_calls,
            stop_reason=state.stop_reason,
            excess_seconds=state.excess_seconds,
            calls_recorded=state.calls_recorded,
            run_updates=self._updates_this_run,
            payment_method_on_file=state.payment_method_on_file,
            payment_overdue=state.payment_overdue,
        )
