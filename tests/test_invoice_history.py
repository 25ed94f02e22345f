"""An invoice left unpaid keeps a bounded history: its run continues as new.

An unpaid invoice (dunning over, or a SEPA debit that never settles) re-reads Stripe every
reconcile interval for as long as it stays unpaid; before ``BOUNDED_PATCH`` its history
grew by ~11 events per read, for ever. Here the InvoiceWorkflow is started the way the
account workflow starts it at period close, but with a hand-over after 60 events and a read
every second: it must hand over again and again, and across the runs charge, email and
suspend exactly as one run would (each failure noticed once, the account suspended once),
then be paid by a new card and lift the suspension. Every run replays, under both
sandboxes; with OVERTIME_RECORD_HISTORIES set the runs are recorded for later versions.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import select
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHistory
from temporalio.worker import Replayer

from billing.rules import cost_cents, period_key
from devstack.mail_catcher import MailCatcher
from overtime.db import session_scope
from overtime.models import Account, Invoice
from overtime.sandbox import strict_workflow_runner, workflow_runner
from overtime.settings import Settings
from overtime.temporal import data_converter_for
from tests.conftest import Api, WorkerControl, eventually
from tests.test_replay import RECORDING
from workflows.account import AccountWorkflow
from workflows.invoice import InvoiceWorkflow
from workflows.types import (
    AccountProfile,
    InvoiceInput,
    InvoiceState,
    invoice_workflow_id,
)

HAND_OVER_AFTER = 60  # events per run (the default is 2,000: ~45 days of six-hourly reads)
RUNS = 4  # runs to see before the customer pays
PERIOD = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))
EXTRA_SECONDS, PRICE = 90, 39


def profile_of(api: Api, account_id: str) -> AccountProfile:
    with session_scope(api.settings.resolved_database_url()) as session:
        account = session.get(Account, account_id)
        assert account is not None
        return AccountProfile(
            account_id=account.account_id,
            email=account.email,
            locale=account.locale,
            timezone=account.timezone,
            created_at=account.created_at,
            period_seconds=account.period_seconds,
        )


async def runs_of(client: Client, workflow_id: str) -> list:  # type: ignore[type-arg]
    found = [wf async for wf in client.list_workflows(f"WorkflowId = '{workflow_id}'")]
    return sorted(found, key=lambda run: run.start_time)


async def test_an_unpaid_invoice_continues_as_new_and_is_paid_once(
    api: Api, temporal_client: Client, settings: Settings, mail: MailCatcher
) -> None:
    account = await api.create_account(locale="en")
    added = await api.add_payment_method(account, "pm_card_chargeCustomerFail")
    assert added.status_code == 200, added.text
    amount = cost_cents(EXTRA_SECONDS, PRICE)
    workflow_id = invoice_workflow_id(account, period_key(PERIOD[0]))
    handle = await temporal_client.start_workflow(
        InvoiceWorkflow.run,
        InvoiceInput(
            profile=profile_of(api, account),
            period_start=PERIOD[0],
            period_end=PERIOD[1],
            extra_seconds=EXTRA_SECONDS,
            unit_price_cents=PRICE,
            amount_cents=amount,
            currency=settings.currency,
            dunning_schedule_seconds=[1],  # one retry, then suspended until paid
            reconcile_interval_seconds=1,
            stripe_task_queue=settings.stripe_task_queue,
            max_history_events=HAND_OVER_AFTER,
        ),
        id=workflow_id,
        task_queue=settings.task_queue,
    )

    async def handed_over() -> bool:
        return len(await runs_of(temporal_client, workflow_id)) >= RUNS

    await eventually(handed_over, timeout=120, interval=0.5)
    state = await api.state(account)
    assert state["payment_overdue"] is True
    assert await handle.query(InvoiceWorkflow.status) == "payment_failed"

    # A good card: the API tells the invoice's workflow (its latest run), which pays now.
    assert (await api.add_payment_method(account, "pm_card_visa")).status_code == 200
    paid: InvoiceState = await asyncio.wait_for(handle.result(), 60)
    assert paid.status == "paid"

    async def suspension_lifted() -> bool:
        return (await api.state(account))["payment_overdue"] is False

    await eventually(suspension_lifted)
    with session_scope(api.settings.resolved_database_url()) as session:
        rows = session.exec(select(Invoice).where(Invoice.account_id == account)).all()
    # One invoice, for the period's net amount, charged once (its total: net + VAT).
    assert [(r.status, r.amount_cents, r.net_cents) for r in rows] == [("paid", amount, amount)]
    assert rows[0].net_cents + rows[0].tax_cents == paid.amount_cents
    # One run's worth of emails, whatever the number of runs: the invoice, the first
    # failure, the last failure (suspension); none repeated by a later run.
    email = f"{account}@example.com"
    assert len(mail.with_notice(email, "invoice")) == 1
    failures = mail.with_notice(email, "payment_failed")
    assert len(failures) == 2, [m.subject for m in failures]

    runs = await runs_of(temporal_client, workflow_id)
    assert len(runs) >= RUNS
    assert [r.status for r in runs[:-1]] == [WorkflowExecutionStatus.CONTINUED_AS_NEW] * (
        len(runs) - 1
    )
    assert runs[-1].status == WorkflowExecutionStatus.COMPLETED
    replayers = [
        Replayer(
            workflows=[AccountWorkflow, InvoiceWorkflow],
            data_converter=data_converter_for(settings),
            workflow_runner=runner,
        )
        for runner in (workflow_runner(), strict_workflow_runner())
    ]
    record_to = os.environ.get("OVERTIME_RECORD_HISTORIES")
    for index, run in enumerate(runs):
        history = await temporal_client.get_workflow_handle(
            run.id, run_id=run.run_id
        ).fetch_history()
        # Bounded: the hand-over comes at the first step past the bound, and one step holds
        # at most a dunning attempt (next attempt, email, wait, charge) and the webhooks
        # Stripe sent meanwhile (a loaded CI machine saw 92 events in the first run).
        assert len(history.events) < 2 * HAND_OVER_AFTER, (index, len(history.events))
        for replayer in replayers:
            await replayer.replay_workflow(history)
        if record_to and index < 2:  # the first run, and one that was handed a state
            out = Path(record_to) / f"{RECORDING}-invoice-continued-run{index}.json"
            out.write_text(json.dumps(history.to_json_dict(), indent=1))


async def test_a_run_past_the_bound_from_before_the_patch_hands_over_once_taken_over(
    api: Api,
    temporal_client: Client,
    settings: Settings,
    worker: WorkerControl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run that grew past the bound under the code before ``BOUNDED_PATCH`` (here: that
    code's behaviour, no hand-over ever asked) and is then replayed by a worker with the
    patch answers no to every check of the replay, and hands over at its first live one."""
    account = await api.create_account(locale="en")
    added = await api.add_payment_method(account, "pm_card_chargeCustomerFail")
    assert added.status_code == 200, added.text
    workflow_id = invoice_workflow_id(account, period_key(PERIOD[1]))
    never = staticmethod(lambda _input: False)
    due = InvoiceWorkflow.__dict__["_hand_over_due"]
    monkeypatch.setattr(InvoiceWorkflow, "_hand_over_due", never)
    handle = await temporal_client.start_workflow(
        InvoiceWorkflow.run,
        InvoiceInput(
            profile=profile_of(api, account),
            period_start=PERIOD[1],
            period_end=PERIOD[1].replace(month=3),
            extra_seconds=EXTRA_SECONDS,
            unit_price_cents=PRICE,
            amount_cents=cost_cents(EXTRA_SECONDS, PRICE),
            currency=settings.currency,
            dunning_schedule_seconds=[],  # suspended at once, then re-read every second
            reconcile_interval_seconds=1,
            stripe_task_queue=settings.stripe_task_queue,
            max_history_events=HAND_OVER_AFTER,
        ),
        id=workflow_id,
        task_queue=settings.task_queue,
    )

    async def past_the_bound() -> bool:
        return (await handle.describe()).raw_description.workflow_execution_info.history_length > (
            HAND_OVER_AFTER + 30
        )

    await eventually(past_the_bound, timeout=120, interval=0.5)
    assert len(await runs_of(temporal_client, workflow_id)) == 1
    # A new worker with the patch: the run is replayed from its history, then goes on.
    await worker.stop()
    monkeypatch.setattr(InvoiceWorkflow, "_hand_over_due", due)
    await worker.start()

    async def handed_over() -> bool:
        return len(await runs_of(temporal_client, workflow_id)) >= 2

    await eventually(handed_over, timeout=60, interval=0.5)
    first = (await runs_of(temporal_client, workflow_id))[0]
    assert first.status == WorkflowExecutionStatus.CONTINUED_AS_NEW
    # Still one invoice, still unpaid, still the account suspended once; a good card pays.
    assert (await api.state(account))["payment_overdue"] is True
    assert (await api.add_payment_method(account, "pm_card_visa")).status_code == 200
    paid: InvoiceState = await asyncio.wait_for(handle.result(), 60)
    assert paid.status == "paid"


async def test_runs_recorded_before_the_hand_over_replay_past_the_bound(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    """A run started before ``BOUNDED_PATCH`` may already be past the bound when the new
    worker takes it over: replaying its loop must follow what it did (no hand-over), so
    the patch is asked only where a hand-over is due, and answers no in such a history."""
    monkeypatch.setattr(InvoiceWorkflow, "_hand_over_due", staticmethod(lambda _input: True))
    histories = Path(__file__).parent / "histories"
    replayer = Replayer(
        workflows=[AccountWorkflow, InvoiceWorkflow],
        data_converter=data_converter_for(settings),
        # The production runner passes the workflow package through, so the patched
        # method is the one the replay calls (the strict sandbox re-imports its own copy).
        workflow_runner=workflow_runner(),
    )
    for name in ("v7-invoice-declined-run0", "v7-invoice-sepa-run0", "v7-invoice-run0"):
        path = histories / f"{name}.json"
        history = WorkflowHistory.from_json(name, json.loads(path.read_text()))
        await replayer.replay_workflow(history)
