"""The telephony hot path at Temporal's own cost (v7), as behaviour.

A usage report's ledger row is written in the report's own workflow task (a local
activity), so the answer comes with the row already in the ledger; a database that is
locked or slow costs one answer a sliver of its time, then the ordinary activity writes,
and nothing is lost or written twice. The API sends plain Updates to running workflows
and starts one (update-with-start) only when none runs.

How fast any of this is, is for ``bench/`` to print; these tests assert what happens.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path

import pytest
from sqlmodel import select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import Replayer

import activities.ledger
from overtime.db import session_scope
from overtime.models import UsageEntry
from overtime.sandbox import strict_workflow_runner, workflow_runner
from overtime.temporal import data_converter_for
from tests.conftest import Api, eventually
from tests.db_locks import table_locked
from tests.test_replay import RECORDING
from workflows.account import AccountWorkflow
from workflows.invoice import InvoiceWorkflow
from workflows.types import workflow_id_for

STARTER_INCLUDED = 100 * 60


def ledger_rows(database_url: str, account: str) -> list[UsageEntry]:
    with session_scope(database_url) as session:
        return list(session.exec(select(UsageEntry).where(UsageEntry.account_id == account)))


async def history_events(client: Client, account: str) -> list[object]:
    handle = client.get_workflow_handle(workflow_id_for(account))
    return [event async for event in handle.fetch_history_events()]


def activities_scheduled(events: list[object], name: str) -> int:
    return sum(
        1
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED  # type: ignore[attr-defined]
        and e.activity_task_scheduled_event_attributes.activity_type.name == name  # type: ignore[attr-defined]
    )


async def replays(api: Api, client: Client, account: str, name: str) -> None:
    """The run's history replays on this code, under both runners: a local activity that
    failed or timed out reaches the workflow in another shape on replay than live. With
    ``OVERTIME_RECORD_HISTORIES`` set it is kept for tests/test_replay.py as well."""
    history = await client.get_workflow_handle(workflow_id_for(account)).fetch_history()
    record_to = os.environ.get("OVERTIME_RECORD_HISTORIES")
    if record_to:
        out = Path(record_to) / f"{RECORDING}-{name}-run0.json"
        out.write_text(json.dumps(history.to_json_dict(), indent=1))
    for runner in (workflow_runner(), strict_workflow_runner()):
        replayer = Replayer(
            workflows=[AccountWorkflow, InvoiceWorkflow],
            data_converter=data_converter_for(api.settings),
            workflow_runner=runner,
        )
        await replayer.replay_workflow(history)


def local_activity_markers(events: list[object]) -> int:
    return sum(
        1
        for e in events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED  # type: ignore[attr-defined]
        and e.marker_recorded_event_attributes.marker_name == "core_local_activity"  # type: ignore[attr-defined]
    )


async def test_a_report_is_answered_with_its_row_already_in_the_ledger(
    api: Api, temporal_client: Client
) -> None:
    account = await api.create_account()
    calls = [f"call-{n}" for n in range(5)]
    for call_id in calls:
        assert (await api.authorize(account, call_id))["allowed"]
        answer = await api.usage(account, call_id, 30)
        assert answer == {"recorded": True, "duplicate": False}
        events = await history_events(temporal_client, account)
        if activities_scheduled(events, "record_usage") == 0:
            # Written in the report's own workflow task: there before the answer left.
            assert call_id in {
                row.call_id for row in ledger_rows(api.settings.database_url, account)
            }
    events = await history_events(temporal_client, account)
    assert local_activity_markers(events) >= len(calls)
    rows = ledger_rows(api.settings.database_url, account)
    assert sorted(row.call_id for row in rows) == calls
    assert sum(row.billed_included_seconds for row in rows) == 5 * 30
    # A repeated report is a duplicate and writes nothing.
    assert await api.usage(account, calls[0], 30) == {"recorded": True, "duplicate": True}
    assert len(ledger_rows(api.settings.database_url, account)) == len(calls)


async def test_a_locked_ledger_never_holds_a_call_back_and_loses_nothing(
    api: Api, temporal_client: Client
) -> None:
    """The ledger table locked (a hung database) while calls are asked for and reported:
    every request is answered on its first try, and once the lock goes every report has
    its row, once, with the totals the account shows."""
    account = await api.create_account()
    assert (await api.enable(account, limit_minutes=30)).status_code == 200
    url = api.settings.database_url
    calls = [f"locked-{n}" for n in range(6)]
    with table_locked(url, "usage_entry", writes_only=True):
        for call_id in calls:
            asked = await api.telephony.post(
                "/v1/calls/authorize",
                json={"account_id": account, "call_id": call_id, "request_id": uuid.uuid4().hex},
            )
            assert asked.status_code == 200, asked.text
            assert asked.json()["allowed"]
            reported = await api.telephony.post(
                "/v1/calls/usage",
                json={
                    "account_id": account,
                    "call_id": call_id,
                    "seconds": 45,
                    "request_id": uuid.uuid4().hex,
                },
            )
            assert reported.status_code == 200, reported.text
            assert reported.json() == {"recorded": True, "duplicate": False}
        # Held in the account's state, not lost: the ordinary activity retries meanwhile.
        assert (await api.state(account))["unwritten_usage"] == len(calls)
        await asyncio.sleep(1.0)
    await eventually(lambda: len(ledger_rows(url, account)) == len(calls), timeout=60)
    rows = ledger_rows(url, account)
    assert sorted(row.call_id for row in rows) == sorted(calls)
    state = await api.state(account)
    assert (
        sum(r.billed_included_seconds + r.billed_extra_seconds for r in rows)
        == state["used_seconds"]
    )
    # The ordinary activity took over after the first local write timed out.
    events = await history_events(temporal_client, account)
    assert activities_scheduled(events, "record_usage") >= 1
    await replays(api, temporal_client, account, "ledger-locked")


async def test_a_local_write_that_fails_fast_hands_its_rows_to_the_ordinary_activity(
    api: Api, temporal_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database refuses the local write at once (an error, not a time-out): the rows
    go through the ordinary activity, the account keeps answering, and the run replays."""
    refusing = {"on": True}
    commit = activities.ledger._GroupCommit._commit

    def refused_once(self: activities.ledger._GroupCommit, batches: list) -> list:  # type: ignore[type-arg]
        if refusing["on"]:
            refusing["on"] = False
            raise RuntimeError("connection refused (the database is restarting)")
        return commit(self, batches)

    monkeypatch.setattr(activities.ledger._GroupCommit, "_commit", refused_once)
    account = await api.create_account()
    for call_id in ("refused", "after"):
        assert (await api.authorize(account, call_id))["allowed"]
        assert await api.usage(account, call_id, 20) == {"recorded": True, "duplicate": False}
    url = api.settings.database_url
    await eventually(lambda: len(ledger_rows(url, account)) == 2, timeout=30)
    assert (await api.state(account))["unwritten_usage"] == 0
    events = await history_events(temporal_client, account)
    assert activities_scheduled(events, "record_usage") >= 1
    await replays(api, temporal_client, account, "ledger-refused")


async def test_an_account_whose_workflow_ended_is_started_again_by_its_next_call(
    api: Api, temporal_client: Client
) -> None:
    """Plain Updates go to running workflows; a workflow that is not running (here
    terminated by an operator) is started by the next request, which is answered."""
    account = await api.create_account()
    assert (await api.authorize(account, "before"))["allowed"]
    handle = temporal_client.get_workflow_handle(workflow_id_for(account))
    first_run = (await handle.describe()).run_id
    await handle.terminate(reason="test: an operator ended the run")
    assert (await handle.describe()).status == WorkflowExecutionStatus.TERMINATED
    answer = await api.authorize(account, "after")
    assert answer["allowed"]
    described = await handle.describe()
    assert described.status == WorkflowExecutionStatus.RUNNING
    assert described.run_id != first_run
