"""Payment news reaches the invoice's workflow by Stripe's webhook; the reconcile is the net.

A SEPA debit stays ``processing`` at Stripe and settles later, with no request of ours to
answer it: only an event or our periodic re-read can tell. The fake Stripe settles a
debit after ``sepa_processing_seconds`` and sends its events as Stripe does (signed, at
least once, sometimes twice and out of order). Accounts of ``patient_api`` re-read an
unpaid invoice only every ten minutes, so what their workflow learns within seconds came
by webhook. (A debit that succeeds: ``tests/test_webhook_delivery.py``.)

And the news keeps every wait honest: a webhook during a dunning wait never moves the
retry from the time the email named, and a payment method added while a debit is
processing never makes the workflow re-read Stripe in a loop (``NEWS_PATCH``).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator

from sqlmodel import select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from devstack.fake_stripe import FakeStripe
from overtime.db import session_scope
from overtime.models import Invoice
from tests.conftest import Api, eventually
from tests.test_invoicing import account_with_extra_minutes, invoice_with_status
from workflows.invoice import InvoiceWorkflow

# Long enough that the test sees the debit processing, and tells a new payment method
# during it, on a loaded machine.
PROCESSING_SECONDS = 6.0


@contextlib.contextmanager
def debits_processing_for(fake: FakeStripe, seconds: float) -> Iterator[None]:
    previous = fake.sepa_processing_seconds
    fake.sepa_processing_seconds = seconds
    try:
        yield
    finally:
        fake.sepa_processing_seconds = previous


def _row(api: Api, account: str) -> Invoice:
    with session_scope(api.settings.resolved_database_url()) as session:
        return session.exec(select(Invoice).where(Invoice.account_id == account)).one()


async def _invoice_workflow(client: Client, account: str) -> WorkflowHandle:
    runs = [
        wf async for wf in client.list_workflows(f"WorkflowId STARTS_WITH 'invoice-{account}-'")
    ]
    assert len(runs) == 1, runs
    return client.get_workflow_handle(runs[0].id)


async def _history_counts(handle: WorkflowHandle) -> tuple[Counter[str], int]:
    """Activities scheduled by name, and signals received, in the workflow's history."""
    activities: Counter[str] = Counter()
    signals = 0
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            activities[event.activity_task_scheduled_event_attributes.activity_type.name] += 1
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            signals += 1
    return activities, signals


def _pay_requests(fake: FakeStripe, stripe_invoice_id: str) -> int:
    """Every /pay Stripe received for the invoice, refused ones included."""
    path = f"/v1/invoices/{stripe_invoice_id}/pay"
    return sum(1 for r in fake.request_log if r.method == "POST" and r.path == path)


async def test_a_failed_debit_is_known_by_webhook_and_dunning_keeps_its_times(
    patient_api: Api, api: Api, fake_stripe: FakeStripe, temporal_client: Client
) -> None:
    # ``api`` is the stack's webhook receiver: conftest forwards the fake's events to it.
    with debits_processing_for(fake_stripe, PROCESSING_SECONDS):
        account = await account_with_extra_minutes(patient_api, "pm_failed_de", 60, locale="de")
        # First the debit is on its way: open, shown as being collected, not failed.
        processing = await invoice_with_status(patient_api, account, "processing")
        assert _row(patient_api, account).failure_code is None
        # Then Stripe fails it and says so (invoice.payment_failed); no re-read is due.
        failed = await invoice_with_status(patient_api, account, "payment_failed")
    assert failed["stripe_invoice_id"] == processing["stripe_invoice_id"]
    assert _row(patient_api, account).failure_code == "generic_decline"

    # Dunning (2 s, 2 s in tests) retries the same debit, which fails again each time,
    # until extra minutes are suspended. Stripe's webhooks came during every wait, and
    # yet each attempt's next-attempt time was recorded once: the retry stayed when the
    # email said it would be.
    async def suspended() -> bool:
        return (await patient_api.state(account))["payment_overdue"] is True

    await eventually(suspended, timeout=3 * PROCESSING_SECONDS + 30)
    handle = await _invoice_workflow(temporal_client, account)
    activities, signals = await _history_counts(handle)
    charges = activities["pay_invoice"]
    assert charges == 3  # the first debit and two retries
    assert signals >= charges, "the webhooks reached the workflow"
    assert activities["record_next_attempt"] == charges
    # Never a charge while a debit was processing: every /pay Stripe saw was one of ours.
    assert _pay_requests(fake_stripe, processing["stripe_invoice_id"]) == charges


async def test_a_new_payment_method_during_a_debit_is_no_loop_and_no_second_debit(
    patient_api: Api, api: Api, fake_stripe: FakeStripe, temporal_client: Client
) -> None:
    # ``api`` is the stack's webhook receiver: conftest forwards the fake's events to it.
    with debits_processing_for(fake_stripe, PROCESSING_SECONDS):
        account = await account_with_extra_minutes(patient_api, "pm_success_de", 60)
        row = await invoice_with_status(patient_api, account, "processing")
        handle = await _invoice_workflow(temporal_client, account)
        # Told of a new payment method (an admin's retry, a stale page) while Stripe
        # processes the debit: the workflow must neither charge nor spin.
        for _ in range(3):
            await handle.signal(InvoiceWorkflow.payment_method_updated)
        paid = await invoice_with_status(patient_api, account, "paid")
    assert paid["stripe_invoice_id"] == row["stripe_invoice_id"]
    activities, signals = await _history_counts(handle)
    assert activities["pay_invoice"] == 1
    # Each re-read was woken by a signal (a webhook or one of ours), never by a loop.
    assert 1 <= activities["refresh_invoice"] <= signals
    assert _pay_requests(fake_stripe, row["stripe_invoice_id"]) == 1


async def test_with_webhooks_lost_the_reconcile_still_settles(
    short_api: Api, api: Api, fake_stripe: FakeStripe
) -> None:
    # short_api's accounts re-read unpaid invoices every 2 s (the test settings).
    fake_stripe.stop_forwarding()
    try:
        account = await account_with_extra_minutes(short_api, "pm_success_de", 60, locale="de")
        invoice = await invoice_with_status(short_api, account, "paid")
        assert invoice["amount_cents"] > 0
    finally:
        fake_stripe.forward_webhooks(
            f"{api.base_url}/v1/stripe/webhook", api.settings.stripe_webhook_secret
        )
    assert _row(short_api, account).status == "paid"
