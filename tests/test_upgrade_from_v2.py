"""A run that continues from a v2 run's state (before the settled-call filter existed).

v2 handed over a ``PeriodState`` without ``settled``: the next run cannot know from memory
which call ids the ledger already holds. Until it has loaded them (a paged activity, in
the background), every unknown id is looked up; settled calls stay final either way.
"""

from __future__ import annotations

import json

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.converter import DataConverter

from billing.account_state import PeriodState
from overtime.settings import Settings
from starter.dispatcher import AccountDispatcher
from starter.services import AccountService
from tests.conftest import Api, eventually
from workflows.account import AccountWorkflow
from workflows.types import AccountWorkflowInput, workflow_id_for

# What v3 added to PeriodState; a v2 hand-over has none of it.
V3_FIELDS = (
    "settled",
    "recent_settled",
    "recent_change_ids",
    "abandoned_requests",
    "overdue_invoices",
    "settings_version",
    "outbox_settings",
    "outbox_closes",
)


async def test_a_state_from_v2_keeps_settled_calls_final(
    api: Api, temporal_client: Client, settings: Settings
) -> None:
    account = await api.create_account()
    assert (await api.enable(account, limit_minutes=10)).status_code == 200
    for i in range(3):
        await api.call(account, f"old-{i}", 30)
    handle = temporal_client.get_workflow_handle(workflow_id_for(account))

    async def in_ledger() -> bool:
        state = await handle.query(AccountWorkflow.snapshot)
        return state.unwritten_usage == 0 and state.calls_recorded == 3

    await eventually(in_ledger)

    # Replace the run by one that starts from a v2-shaped state: same totals, no filter,
    # no memory of recently settled ids.
    service = AccountService(settings, AccountDispatcher(temporal_client, settings.task_queue))
    start_input = await service.load(account)
    raw = json.loads(to_json(start_input))
    state = json.loads(to_json(await live_state(temporal_client, account, start_input)))
    for name in V3_FIELDS:
        state.pop(name, None)
    raw["state"] = state
    await handle.terminate("replaced by a v2-shaped run for the test")
    await temporal_client.start_workflow(
        "AccountWorkflow",
        raw,
        id=workflow_id_for(account),
        task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING,
    )

    for i in range(3):
        answer = await api.authorize(account, f"old-{i}")
        assert answer == {"allowed": False, "reason": "call_ended"}
        assert (await api.usage(account, f"old-{i}", 30))["duplicate"] is True
    assert (await api.authorize(account, "new-0"))["allowed"] is True
    assert (await api.usage(account, "new-0", 20))["duplicate"] is False
    after = await api.state(account)
    assert after["used_seconds"] == 3 * 30 + 20
    assert after["reserved_seconds"] == 0


def to_json(value: object) -> bytes:
    return DataConverter.default.payload_converter.to_payload(value).data


async def live_state(
    client: Client, account: str, start_input: AccountWorkflowInput
) -> PeriodState:
    """A PeriodState with the live run's totals, as v2 would have handed it over."""
    snap = await client.get_workflow_handle(workflow_id_for(account)).query(
        AccountWorkflow.snapshot
    )
    state = PeriodState.open(
        account,
        start_input.plan,
        start_input.settings,
        snap.period_start,
        snap.period_end,
    )
    state.included_used_seconds = snap.used_seconds - snap.extra_seconds
    state.extra_used_seconds = snap.extra_seconds
    state.calls_recorded = snap.calls_recorded
    state.payment_method_on_file = snap.payment_method_on_file
    return state
