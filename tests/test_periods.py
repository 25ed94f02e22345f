"""Period rollover, late reports and continue-as-new, on real short periods."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import select
from temporalio.testing import WorkflowEnvironment

from activities.ledger import ledger_totals
from overtime.db import as_utc, session_scope
from overtime.models import ClosedPeriod, UsageEntry
from tests.conftest import SHORT_PERIOD_SECONDS, Api, eventually
from workflows.types import workflow_id_for


def closed_periods(api: Api, account: str) -> list[ClosedPeriod]:
    with session_scope(api.settings.resolved_database_url()) as session:
        return list(
            session.exec(
                select(ClosedPeriod)
                .where(ClosedPeriod.account_id == account)
                .order_by(ClosedPeriod.period_start)  # type: ignore[arg-type]
            )
        )


def usage_row(api: Api, account: str, call_id: str) -> UsageEntry | None:
    with session_scope(api.settings.resolved_database_url()) as session:
        return session.exec(
            select(UsageEntry).where(
                UsageEntry.account_id == account, UsageEntry.call_id == call_id
            )
        ).first()


async def test_period_rollover_closes_resets_and_carries_running_calls(short_api: Api) -> None:
    api = short_api
    account = await api.create_account()
    first = await api.state(account)
    start = datetime.fromisoformat(first["period_start"])
    end = datetime.fromisoformat(first["period_end"])
    assert (end - start).total_seconds() == SHORT_PERIOD_SECONDS
    assert first["period_start"].endswith("+01:00")  # Europe/Berlin in November

    assert await api.call(api_account := account, "done-in-p1", 90) == 90
    assert (await api.authorize(api_account, "spans-boundary"))["granted_seconds"] == 300

    async def rolled_over() -> dict | None:
        state = await api.state(account)
        return state if state["period_start"] != first["period_start"] else None

    second = await eventually(rolled_over, timeout=SHORT_PERIOD_SECONDS * 3)
    assert second["period_start"] == first["period_end"]
    assert second["used_seconds"] == 0  # counters reset
    assert second["reserved_seconds"] == 300  # the running call keeps its grant
    assert second["accepting_calls"] is True

    closed = await eventually(lambda: closed_periods(api, account))
    assert as_utc(closed[0].period_start) == start
    assert (closed[0].included_used_seconds, closed[0].calls_recorded) == (90, 1)
    with session_scope(api.settings.resolved_database_url()) as session:
        assert ledger_totals(session, account, closed[0].period_start) == (90, 0, 1)

    # The call that spanned the boundary reports late: billed now, flagged late.
    assert await api.usage(account, "spans-boundary", 200) == {"recorded": True, "duplicate": False}
    # A repeat of a call settled in the closed period is found in the ledger.
    assert await api.usage(account, "done-in-p1", 90) == {"recorded": True, "duplicate": True}
    state = await api.state(account)
    if state["period_start"] == second["period_start"]:
        assert state["used_seconds"] == 200
    late = await eventually(lambda: usage_row(api, account, "spans-boundary"))
    assert late.late is True
    assert as_utc(late.period_start) == datetime.fromisoformat(second["period_start"])
    assert usage_row(api, account, "done-in-p1").reported_seconds == 90


async def test_continue_as_new_mid_period_keeps_every_count(
    busy_api: Api, temporal_env: WorkflowEnvironment
) -> None:
    api = busy_api
    account = await api.create_account()
    handle = temporal_env.client.get_workflow_handle(workflow_id_for(account))
    first_run = (await handle.describe()).run_id
    for i in range(30):  # 60 Updates: at least two hand-overs at 20 per run
        assert await api.call(account, f"c{i}", 10) == 10
    assert (await handle.describe()).run_id != first_run
    # Repeats of calls settled in earlier runs are found in the ledger.
    for i in (0, 1, 29):
        assert await api.usage(account, f"c{i}", 10) == {"recorded": True, "duplicate": True}
    state = await api.state(account)
    assert state["used_seconds"] == 300
    with session_scope(api.settings.resolved_database_url()) as session:
        rows = list(session.exec(select(UsageEntry).where(UsageEntry.account_id == account)))
    assert len(rows) == 30
