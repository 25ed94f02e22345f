"""Replay: running workflows must survive every code change.

``tests/histories/*.json`` are histories recorded from earlier versions of
AccountWorkflow (authorisations, usage, notices, limit changes, continue-as-new and a
period close). Each must replay without a non-determinism error against today's code.
A change that breaks one needs ``workflow.patched()``, not a new recording.

To record fresh histories from the current code (after a deliberate, patched change),
run ``OVERTIME_RECORD_HISTORIES=tests/histories pytest tests/test_replay.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from overtime.sandbox import SANDBOX_CODE_CACHED, strict_workflow_runner, workflow_runner
from overtime.settings import Settings
from overtime.temporal import ENCODING, data_converter_for
from tests.conftest import SHORT_PERIOD_SECONDS, Api, eventually
from workflows.account import AccountWorkflow
from workflows.invoice import InvoiceWorkflow
from workflows.types import (
    AbandonedRequest,
    AbandonedRequests,
    InvoiceOverdue,
    PaymentMethodChange,
    workflow_id_for,
)

# Temporal histories: what is replayed does not depend on the database; the PostgreSQL
# pass would repeat it unchanged.
pytestmark = pytest.mark.sqlite_only

HISTORIES = Path(__file__).parent / "histories"
# Prefix of histories recorded now; earlier generations keep their names (v1: before
# invoicing was patched in; v2: before TRUST_PATCH, replayed by workflows/legacy/; v3:
# before the Update validators checked the actor and empty signals were ignored, which
# changed no command, so v3 replays on today's code unpatched; v4: before alert thresholds,
# plan changes and the confirmation notices (CUSTOMER_PATCH) and the invoice's next-attempt
# record (NEXT_ATTEMPT_PATCH); v5: before the invoice's waits kept their meaning when news
# came (NEWS_PATCH): v5-invoice-sepa replays the re-read loop of a processing debit told of
# a new payment method, v5-invoice-declined a dunning wait cut short by webhooks); v6:
# before usage rows were written by a local activity in the report's own workflow task
# (HOT_PATH_PATCH). v7-ledger-locked and v7-ledger-refused (recorded by
# tests/test_hot_path.py) hold local writes that timed out and that failed fast; v7: before
# an unpaid invoice's run continued as new (BOUNDED_PATCH). v8-invoice-continued (recorded
# by tests/test_invoice_history.py) holds an invoice's first run and one that was handed a
# state.
RECORDING = "v8"


def recorded_histories() -> list[Path]:
    return sorted(HISTORIES.glob("*.json"))


def recorded_without_encryption(history: WorkflowHistory) -> bool:
    """v1 ran before payload encryption: its start input (and all else) is plain JSON."""
    started = history.events[0].workflow_execution_started_event_attributes
    return started.input.payloads[0].metadata.get("encoding") != ENCODING


@pytest.mark.parametrize("path", recorded_histories(), ids=lambda p: p.stem)
async def test_recorded_history_replays(path: Path, settings: Settings) -> None:
    history = WorkflowHistory.from_json(path.stem, json.loads(path.read_text()))
    # Plain payloads are refused unless the migration switch is on, which is what a
    # deployment that ran without encryption sets until its old runs have ended.
    plaintext = recorded_without_encryption(history)
    converter = data_converter_for(
        settings.model_copy(update={"payload_accept_plaintext": plaintext})
    )
    # The production runner (overtime/sandbox.py), then the SDK's strict sandbox: it keeps
    # the restricted-module checks on the workflow source that production passes through.
    for runner in (workflow_runner(), strict_workflow_runner()):
        replayer = Replayer(
            workflows=[AccountWorkflow, InvoiceWorkflow],
            data_converter=converter,
            workflow_runner=runner,
        )
        await replayer.replay_workflow(history)
    if plaintext:
        # Without the switch such a run cannot go on (its start input is refused).
        strict = Replayer(
            workflows=[AccountWorkflow, InvoiceWorkflow],
            data_converter=data_converter_for(settings),
            workflow_runner=workflow_runner(),
        )
        result = await strict.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is not None


def test_the_sandbox_compiles_its_code_strings_once() -> None:
    """overtime/sandbox.py patches the SDK's private sandbox runner; an SDK upgrade that
    moves it must be noticed here, not as a slower worker."""
    assert SANDBOX_CODE_CACHED


def test_histories_are_recorded() -> None:
    assert len(recorded_histories()) >= 2, "tests/histories/ must hold recorded histories"


async def test_live_histories_replay(
    api: Api,
    short_api: Api,
    busy_api: Api,
    temporal_env: WorkflowEnvironment,
    temporal_client: Client,
    settings: Settings,
) -> None:
    """Every run of a busy scenario replays: limits, notices, hand-over and close."""
    account = await busy_api.create_account()
    assert (await busy_api.enable(account, limit_minutes=3)).status_code == 200
    await busy_api.call(account, "big", 6000)
    for i in range(6):
        await busy_api.call(account, f"extra-{i}", 40)
    await busy_api.enable(account, limit_minutes=5)
    await busy_api.call(account, "after-raise", 60)
    # v3's own handlers: a re-ask of a settled call, an abandoned grant, an overdue invoice.
    assert (await busy_api.authorize(account, "after-raise"))["reason"] == "call_ended"
    handle = temporal_client.get_workflow_handle(workflow_id_for(account))
    await busy_api.authorize(account, "abandoned")
    await handle.signal(
        AccountWorkflow.abandon,
        AbandonedRequests([AbandonedRequest("abandoned", "no-such-request")]),
    )
    await handle.signal(AccountWorkflow.invoice_overdue, InvoiceOverdue("invoice-x", True))
    await handle.signal(AccountWorkflow.invoice_overdue, InvoiceOverdue("invoice-x", False))
    await busy_api.usage(account, "abandoned", 10)
    # v5: alert thresholds, a plan change there and back, a payment method named.
    alerts = await busy_api.admin.put(
        f"/v1/accounts/{account}/alerts", json={"thresholds": [50, 75, 90]}
    )
    assert alerts.status_code == 200, alerts.text
    assert (
        await busy_api.admin.put(f"/v1/accounts/{account}/plan", json={"plan": "business"})
    ).status_code == 200
    await busy_api.call(account, "on-business", 30)
    await handle.execute_update(
        AccountWorkflow.payment_method,
        PaymentMethodChange(True, "admin", method_label="Visa •••• 4242"),
    )
    assert (
        await busy_api.admin.put(f"/v1/accounts/{account}/plan", json={"plan": "starter"})
    ).status_code == 200

    short_account = await short_api.create_account()
    assert (await short_api.enable(short_account, limit_minutes=30)).status_code == 200
    await short_api.call(short_account, "p1", 6000)
    await short_api.call(short_account, "p1-extra", 45)
    await short_api.authorize(short_account, "spanning")
    first = (await short_api.state(short_account))["period_start"]

    async def rolled() -> bool:
        return (await short_api.state(short_account))["period_start"] != first

    await eventually(rolled, timeout=SHORT_PERIOD_SECONDS * 3)
    await short_api.usage(short_account, "spanning", 100)

    async def invoiced() -> bool:
        found = (await short_api.admin.get(f"/v1/accounts/{short_account}/invoices")).json()
        return bool(found) and found[0]["status"] == "paid"

    await eventually(invoiced, timeout=20)

    # A SEPA debit: the invoice waits while Stripe processes it, and a new payment method
    # is announced meanwhile (before NEWS_PATCH that woke the wait at once, again and
    # again, until the debit settled).
    sepa_account = await short_api.create_account()
    assert (await short_api.add_payment_method(sepa_account, "pm_success_de")).status_code == 200
    assert (await short_api.enable(sepa_account, limit_minutes=30)).status_code == 200
    await short_api.call(sepa_account, "p1", 6000)
    await short_api.call(sepa_account, "p1-extra", 45)

    async def debit_processing() -> str | None:
        found = (await short_api.admin.get(f"/v1/accounts/{sepa_account}/invoices")).json()
        if found and found[0]["status"] in ("processing", "paid"):
            return str(found[0]["period_start"])
        return None

    await eventually(debit_processing, timeout=SHORT_PERIOD_SECONDS * 4)
    sepa_invoices = [
        wf
        async for wf in temporal_client.list_workflows(
            f"WorkflowId STARTS_WITH 'invoice-{sepa_account}-'"
        )
    ]
    assert len(sepa_invoices) == 1
    await temporal_client.get_workflow_handle(sepa_invoices[0].id).signal(
        InvoiceWorkflow.payment_method_updated
    )

    async def debit_paid() -> bool:
        found = (await short_api.admin.get(f"/v1/accounts/{sepa_account}/invoices")).json()
        return bool(found) and found[0]["status"] == "paid"

    await eventually(debit_paid, timeout=30)
    # The whole history, up to the workflow's end.
    await asyncio.wait_for(temporal_client.get_workflow_handle(sepa_invoices[0].id).result(), 30)

    # A card that attaches but declines every charge: dunning, whose waits Stripe's
    # invoice.payment_failed webhooks cut short, suspension, then a good card pays.
    declined = await short_api.create_account()
    added = await short_api.add_payment_method(declined, "pm_card_chargeCustomerFail")
    assert added.status_code == 200, added.text
    assert (await short_api.enable(declined, limit_minutes=30)).status_code == 200
    await short_api.call(declined, "p1", 6000)
    await short_api.call(declined, "p1-extra", 45)

    async def overdue() -> bool:
        return (await short_api.state(declined)).get("payment_overdue") is True

    await eventually(overdue, timeout=SHORT_PERIOD_SECONDS * 4 + 30)
    assert (await short_api.add_payment_method(declined, "pm_card_visa")).status_code == 200
    declined_invoices = [
        wf
        async for wf in temporal_client.list_workflows(
            f"WorkflowId STARTS_WITH 'invoice-{declined}-'"
        )
    ]
    assert len(declined_invoices) == 1
    await asyncio.wait_for(
        temporal_client.get_workflow_handle(declined_invoices[0].id).result(), 30
    )

    client = temporal_env.client
    replayers = [
        Replayer(
            workflows=[AccountWorkflow, InvoiceWorkflow],
            data_converter=data_converter_for(settings),
            workflow_runner=runner,
        )
        for runner in (workflow_runner(), strict_workflow_runner())  # see above
    ]
    record_to = os.environ.get("OVERTIME_RECORD_HISTORIES")
    replayed = 0
    recorded_names: list[str] = []
    for name, query, at_least in (
        ("limits-and-continue-as-new", f"WorkflowId = '{workflow_id_for(account)}'", 2),
        ("period-close", f"WorkflowId = '{workflow_id_for(short_account)}'", 2),
        ("invoice", f"WorkflowId STARTS_WITH 'invoice-{short_account}-'", 1),
        ("invoice-sepa", f"WorkflowId STARTS_WITH 'invoice-{sepa_account}-'", 1),
        ("invoice-declined", f"WorkflowId STARTS_WITH 'invoice-{declined}-'", 1),
    ):
        runs = [wf async for wf in client.list_workflows(query)]
        assert len(runs) >= at_least, name  # account workflows continued as new
        for index, run in enumerate(sorted(runs, key=lambda r: r.start_time)):
            history = await client.get_workflow_handle(run.id, run_id=run.run_id).fetch_history()
            for replayer in replayers:
                await replayer.replay_workflow(history)
            replayed += 1
            recorded_names.append(f"{name}-run{index}")
            if record_to:
                out = Path(record_to) / f"{RECORDING}-{name}-run{index}.json"
                out.write_text(json.dumps(history.to_json_dict(), indent=1))
    assert replayed >= 5, recorded_names
