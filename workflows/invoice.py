"""InvoiceWorkflow: one period's extra minutes turned into exactly one paid invoice.

Started by AccountWorkflow as a child when a period with extra minutes closes (workflow
id ``invoice-<account>-<period>``, so a second start is impossible), and left running
when the account workflow continues as new. Its Stripe activities run on their own task
queue, rate-limited below Stripe's request limit, so a month-end with thousands of
closes queues up instead of failing.

Dunning: a declined charge sends a ``payment_failed`` email and is retried on the
configured schedule (or at once when the customer adds a new payment method); after the
last attempt the account's extra minutes are suspended until the invoice is paid. Since
``NEXT_ATTEMPT_PATCH`` the time of the next attempt is written to the invoice row before
the email goes out (the email and the web app show it), and the retry waits until that
time, however long the email took. SEPA's
days-long pending state (``processing``: the invoice is open, its debit under way) waits
for Stripe's outcome: a webhook first, or the periodic reconciliation read if the webhook
was lost. It is never charged again meanwhile, whatever payment method is added
(``NEWS_PATCH``: a method added meanwhile is used at once if the debit fails); dunning
starts only after a debit really failed.

An invoice can stay unpaid for months (re-read every reconcile interval all the while):
since ``BOUNDED_PATCH`` its run continues as new past ``InvoiceInput.max_history_events``
(2,000, ~45 days of six-hourly reads), handing the next run where it stood
(``InvoiceResume``: the invoice, the attempt, whether the failure was noticed and the
account suspended, pending news), so the history stays bounded and nothing is charged,
emailed or suspended twice. Signals address the workflow id, so webhooks and new payment
methods reach whichever run is current.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import NoReturn

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.invoicing import InvoicingActivities, NextAttempt
    from activities.notifications import NotificationActivities
    from billing.account_state import INVOICE, PAYMENT_FAILED, Notice
    from billing.rules import PlanTerms
    from workflows.types import (
        ChargeRequest,
        InvoiceInput,
        InvoiceOverdue,
        InvoiceResume,
        InvoiceState,
        NoticeDelivery,
        PaymentEvent,
        workflow_id_for,
    )

# Rate limits, 5xx and network errors are retried with backoff; declines and invalid
# requests come back as results (payment_failed), never as blind retries.
STRIPE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    non_retryable_error_types=["StripeRequestRejected"],
)
NOTICE_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=60))
# The account is told which invoice is overdue, so that paying one of two overdue
# invoices does not lift the suspension (before: a bare "payment_overdue" bool).
OVERDUE_PER_INVOICE_PATCH = "overdue-per-invoice"
# After a failed payment, record when the next attempt is due (invoice.next_attempt_at)
# and retry at exactly that time (before: the wait started after the email was sent).
NEXT_ATTEMPT_PATCH = "invoice-next-attempt-at"
# Waits that end on Stripe's news (a webhook) keep their meaning (before: the flag of a new
# payment method was never cleared while an invoice was open, so a SEPA debit in flight
# was re-read from Stripe in a loop until it settled; and every event during a dunning
# wait recorded the next attempt anew, so the retry moved later than the email said).
# Since: the next attempt's time is fixed once per attempt; a new payment method pays an
# open invoice at once, waits for a processing debit's outcome, and is used at once if
# that debit fails.
NEWS_PATCH = "invoice-news-waits"
# An invoice left unpaid (dunning over, or a debit that never settles) re-reads Stripe every
# reconcile interval for as long as it stays unpaid: its history grew without bound. Since:
# past ``InvoiceInput.max_history_events`` (or when Temporal suggests it) the run continues
# as new, carrying where the invoice stood (``InvoiceResume``). Asked only when a hand-over
# is due, so a run recorded before (which never handed over) replays unpatched; asked under
# a new id at each due check (``_hand_over_patched``), so such a run, taken over past the
# bound, still hands over at its first check after the replay.
BOUNDED_PATCH = "invoice-continue-as-new"
STRIPE_TIMEOUT = timedelta(seconds=60)


@workflow.defn
class InvoiceWorkflow:
    def __init__(self) -> None:
        self._events: list[PaymentEvent] = []
        self._new_payment_method = False
        # A payment method added while a debit was processing: used at once if it fails.
        self._method_after_debit = False
        # The attempt whose failure was noticed (next attempt recorded, email sent) and when
        # its retry is due; a wait cut short by an event resumes towards the same time.
        self._noticed_attempt: int | None = None
        self._retry_due: datetime | None = None
        self._status: str = "draft"
        self._hand_over_checks = 0  # due hand-overs asked of the patch in this run

    @workflow.run
    async def run(self, input: InvoiceInput) -> InvoiceState:
        if input.resume is not None:  # a run that continued as new: go on where it stood
            resume = input.resume
            invoice = resume.invoice
            attempt, suspended = resume.attempt, resume.suspended
            self._noticed_attempt, self._retry_due = resume.noticed_attempt, resume.retry_due
            self._new_payment_method = resume.new_payment_method
            self._method_after_debit = resume.method_after_debit
            self._events = list(resume.events)
            self._status = invoice.status
        else:
            invoice = await workflow.execute_activity_method(
                InvoicingActivities.create_invoice,
                input,
                task_queue=input.stripe_task_queue,
                start_to_close_timeout=STRIPE_TIMEOUT,
                retry_policy=STRIPE_RETRY,
            )
            invoice = await self._charge(input, invoice, attempt=0)
            await self._notify(input, invoice, INVOICE, key="period")
            attempt = 0
            suspended = False
        while invoice.status != "paid" and invoice.status != "void":
            # Between two steps nothing is in flight (signal handlers only append), so the
            # loop's whole knowledge is in its locals and fields: hand it over here.
            if self._hand_over_due(input) and self._hand_over_patched():
                self._continue_as_new(input, invoice, attempt=attempt, suspended=suspended)
            if invoice.status == "payment_failed":
                final = attempt >= len(input.dunning_schedule_seconds)
                if workflow.patched(NEWS_PATCH) and self._noticed_attempt == attempt:
                    due = self._retry_due  # woken by news: the retry stays when it was
                else:
                    due = None
                    if workflow.patched(NEXT_ATTEMPT_PATCH):
                        due = await self._record_next_attempt(input, attempt, final)
                    await self._notify(
                        input, invoice, PAYMENT_FAILED, key=f"attempt-{attempt}", final=final
                    )
                    self._noticed_attempt, self._retry_due = attempt, due
                if self._method_after_debit:  # added while the failed debit was processing
                    self._method_after_debit = False
                    self._new_payment_method = True
                if final and not suspended:
                    suspended = True
                    await self._signal_account(input, overdue=True)
                wait: float | None = None if final else input.dunning_schedule_seconds[attempt]
                if due is not None:  # the time the email names, however long it took
                    # At least a second: a timer of zero is no timer at all.
                    wait = max(1.0, (due - workflow.now()).total_seconds())
                retry_now = await self._wait_for_news(input, wait)
                if retry_now or (not final and not self._events):
                    attempt += 1
                    self._new_payment_method = False
                    invoice = await self._charge(input, invoice, attempt=attempt)
                    continue
            else:  # open or processing: a SEPA debit in flight, or awaiting collection
                if workflow.patched(NEWS_PATCH) and self._new_payment_method:
                    self._new_payment_method = False
                    if invoice.status == "processing":
                        # Charging now would be a second debit: only Stripe's news can
                        # settle this one, and the new method is used if it fails.
                        self._method_after_debit = True
                    else:  # open, nothing in flight: the new method (or a retry) pays now
                        attempt += 1
                        invoice = await self._charge(input, invoice, attempt=attempt)
                        continue
                await self._wait_for_news(input, input.reconcile_interval_seconds)
            invoice = await self._apply_news(input, invoice)
        if suspended:
            await self._signal_account(input, overdue=False)
        self._status = invoice.status
        return invoice

    @staticmethod
    def _hand_over_due(input: InvoiceInput) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= input.max_history_events
        )

    def _hand_over_patched(self) -> bool:
        """``workflow.patched(BOUNDED_PATCH)``, under a new id at each due check.

        The SDK remembers a patch's answer for the rest of a run. A run started before the
        patch and already past the bound when a new worker replays it answers no at every
        due check of the replay; under a single id its first live check would get that
        remembered no, and the run would grow for ever. Under its own id, the first live
        check answers yes, writes its marker and hands over; a later replay finds that
        marker at that check. A run started since asks once: its first check hands over.
        """
        checks = self._hand_over_checks
        self._hand_over_checks += 1
        return workflow.patched(BOUNDED_PATCH if checks == 0 else f"{BOUNDED_PATCH}:{checks}")

    def _continue_as_new(
        self, input: InvoiceInput, invoice: InvoiceState, *, attempt: int, suspended: bool
    ) -> NoReturn:
        runs = input.resume.runs + 1 if input.resume is not None else 1
        workflow.logger.info(
            "unpaid invoice continues as new",
            extra={"account_id": input.profile.account_id, "runs": runs},
        )
        workflow.continue_as_new(
            replace(
                input,
                resume=InvoiceResume(
                    invoice=invoice,
                    attempt=attempt,
                    suspended=suspended,
                    noticed_attempt=self._noticed_attempt,
                    retry_due=self._retry_due,
                    new_payment_method=self._new_payment_method,
                    method_after_debit=self._method_after_debit,
                    events=list(self._events),
                    runs=runs,
                ),
            )
        )

    async def _charge(
        self, input: InvoiceInput, invoice: InvoiceState, attempt: int
    ) -> InvoiceState:
        result: InvoiceState = await workflow.execute_activity_method(
            InvoicingActivities.pay_invoice,
            ChargeRequest(
                input.profile.account_id, input.period_start, invoice.stripe_invoice_id, attempt
            ),
            task_queue=input.stripe_task_queue,
            start_to_close_timeout=STRIPE_TIMEOUT,
            retry_policy=STRIPE_RETRY,
        )
        self._status = result.status
        return result

    async def _record_next_attempt(
        self, input: InvoiceInput, attempt: int, final: bool
    ) -> datetime | None:
        """Write when the next automatic attempt is due (None after the last one)."""
        due = (
            None
            if final
            else workflow.now() + timedelta(seconds=input.dunning_schedule_seconds[attempt])
        )
        await workflow.execute_activity_method(
            InvoicingActivities.record_next_attempt,
            NextAttempt(input.profile.account_id, input.period_start, due),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=NOTICE_RETRY,
        )
        return due

    async def _wait_for_news(self, input: InvoiceInput, seconds: float | None) -> bool:
        """Wait for a webhook event, a new payment method or the timeout.

        Returns True when a new payment method asks for an immediate retry. Without a
        timeout (dunning exhausted) the invoice is still re-read every reconcile interval.
        """
        timeout = seconds if seconds is not None else input.reconcile_interval_seconds
        try:
            await workflow.wait_condition(
                lambda: bool(self._events) or self._new_payment_method,
                timeout=timedelta(seconds=timeout),
            )
        except TimeoutError:
            pass
        return self._new_payment_method and not self._events

    async def _apply_news(self, input: InvoiceInput, invoice: InvoiceState) -> InvoiceState:
        """Take Stripe's word for the invoice's state: a fresh read, never the event alone."""
        self._events.clear()
        result: InvoiceState = await workflow.execute_activity_method(
            InvoicingActivities.refresh_invoice,
            ChargeRequest(
                input.profile.account_id, input.period_start, invoice.stripe_invoice_id, -1
            ),
            task_queue=input.stripe_task_queue,
            start_to_close_timeout=STRIPE_TIMEOUT,
            retry_policy=STRIPE_RETRY,
        )
        self._status = result.status
        return result

    async def _notify(
        self,
        input: InvoiceInput,
        invoice: InvoiceState,
        kind: str,
        *,
        key: str,
        final: bool = False,
    ) -> None:
        await workflow.execute_activity_method(
            NotificationActivities.send_notice,
            NoticeDelivery(
                profile=input.profile,
                plan=PlanTerms("", 0, 0, input.unit_price_cents),
                period_start=input.period_start,
                period_end=input.period_end,
                notice=Notice(
                    kind=kind,
                    key=f"{kind}:{key}",
                    limit_cents=None,
                    extra_seconds=input.extra_seconds,
                    extra_cost_cents=invoice.amount_cents,
                    created_at=workflow.now(),
                    link=invoice.hosted_invoice_url,
                    final=final,
                ),
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=NOTICE_RETRY,
        )

    async def _signal_account(self, input: InvoiceInput, *, overdue: bool) -> None:
        handle = workflow.get_external_workflow_handle(workflow_id_for(input.profile.account_id))
        if workflow.patched(OVERDUE_PER_INVOICE_PATCH):
            news = InvoiceOverdue(invoice_key=workflow.info().workflow_id, overdue=overdue)
            await handle.signal("invoice_overdue", news)
        else:
            await handle.signal("payment_overdue", overdue)

    @workflow.signal
    def stripe_event(self, event: PaymentEvent | None = None) -> None:
        # None: a signal sent without an argument; a TypeError here would fail the
        # workflow task on every replay (see AccountWorkflow.abandon).
        if event is None:
            workflow.logger.warning("ignored a stripe_event signal without an argument")
            return
        self._events.append(event)

    @workflow.signal
    def payment_method_updated(self) -> None:
        self._new_payment_method = True

    @workflow.query
    def status(self) -> str:
        return self._status
