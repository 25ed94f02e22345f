"""Ledger activities executed twice, out of order, or at the same time write each row once.

The account workflow's outboxes deliver with a retry-forever policy and carry undelivered
items across continue-as-new, so one item's activity can run again while its first
execution is still going. These run the activities directly against the real database.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import BigInteger, delete, func, inspect
from sqlmodel import SQLModel, select
from temporalio.testing import ActivityEnvironment

from activities.ledger import LedgerActivities
from billing.account_state import PeriodClose, UsageRecord
from billing.rules import ExtraMinutesSettings
from overtime.db import engine_for, session_scope
from overtime.models import (
    Account,
    ClosedPeriod,
    CloseReportLine,
    Invoice,
    SettingsChange,
    UsageEntry,
)
from workflows.types import SettingsChangeRecord, UsageBatch

# Far from the months other tests close, so these rows never show up in their reports.
PERIOD_START = datetime(2031, 5, 1, tzinfo=UTC)
PERIOD_END = datetime(2031, 6, 1, tzinfo=UTC)
# Accounts made here have rows but no workflow; they are removed again afterwards, so
# that the admin console (which asks every account's workflow) never sees them.
DB_ONLY = "dbonly-"


def forget_accounts(database_url: str) -> None:
    """Delete the database-only accounts of these tests and every row they left."""
    with session_scope(database_url) as session:
        for model in (UsageEntry, SettingsChange, ClosedPeriod, Invoice, CloseReportLine):
            column = model.account_id  # type: ignore[attr-defined]
            session.exec(delete(model).where(column.startswith(DB_ONLY)))  # type: ignore[call-overload]
        session.exec(delete(Account).where(Account.account_id.startswith(DB_ONLY)))  # type: ignore[call-overload, attr-defined]
        session.commit()


@pytest.fixture(autouse=True, scope="module")
def _forget_accounts(database_url: str) -> Iterator[None]:
    yield
    forget_accounts(database_url)


def run(fn: Callable[[Any], Any], arg: Any) -> Any:
    return ActivityEnvironment().run(fn, arg)


def side_by_side(fn: Callable[[Any], Any], args: list[Any]) -> list[Any]:
    """Execute ``fn`` once per argument, all at the same time."""
    with ThreadPoolExecutor(max_workers=len(args)) as pool:
        return list(pool.map(lambda arg: run(fn, arg), args))


def new_account(database_url: str) -> str:
    account_id = f"{DB_ONLY}{uuid.uuid4().hex[:12]}"
    with session_scope(database_url) as session:
        session.add(
            Account(
                account_id=account_id,
                email=f"{account_id}@example.com",
                plan="starter",
                created_at=PERIOD_START,
            )
        )
        session.commit()
    return account_id


def usage_batch(account_id: str, calls: int) -> UsageBatch:
    records = [
        UsageRecord(
            call_id=f"call-{n}",
            reported_seconds=60,
            granted_seconds=300,
            billed_included_seconds=40,
            billed_extra_seconds=20,
            excess_seconds=0,
            late=False,
            recorded_at=PERIOD_START + timedelta(minutes=n),
        )
        for n in range(calls)
    ]
    return UsageBatch(account_id, PERIOD_START, PERIOD_END, records)


def test_concurrent_duplicate_usage_batches_write_each_call_once(database_url: str) -> None:
    ledger = LedgerActivities(database_url)
    account_id = new_account(database_url)
    batch = usage_batch(account_id, 50)
    written = side_by_side(ledger.record_usage, [batch] * 4)
    assert sum(written) == 50  # every row written by exactly one execution
    # A batch overlapping what is there writes only the new rows.
    bigger = usage_batch(account_id, 60)
    assert run(ledger.record_usage, bigger) == 10
    assert run(ledger.record_usage, bigger) == 0
    with session_scope(database_url) as session:
        rows, extra = session.exec(
            select(func.count(UsageEntry.id), func.sum(UsageEntry.billed_extra_seconds)).where(  # type: ignore[arg-type]
                UsageEntry.account_id == account_id
            )
        ).one()
    assert (rows, extra) == (60, 60 * 20)


async def test_grouped_local_writes_give_each_batch_its_own_outcome(database_url: str) -> None:
    """``record_usage_now`` (the local activity): batches of several accounts that wait at
    the same moment go to the database in one transaction, and each caller learns how
    many of its own rows it wrote; duplicates of a batch, in the same round or a later
    one, write nothing twice."""
    ledger = LedgerActivities(database_url)
    accounts = [new_account(database_url) for _ in range(3)]
    batches = [usage_batch(account, 10 * (n + 1)) for n, account in enumerate(accounts)]
    env = ActivityEnvironment()
    written = await asyncio.gather(
        *(env.run(ledger.record_usage_now, b) for b in [*batches, batches[0], batches[2]])
    )
    # The first of two identical batches in one round writes it; the second finds it.
    assert sorted(written) == sorted([10, 20, 30, 0, 0])
    assert await env.run(ledger.record_usage_now, usage_batch(accounts[1], 25)) == 5
    with session_scope(database_url) as session:
        for n, account in enumerate(accounts):
            rows = session.exec(
                select(func.count(UsageEntry.id)).where(UsageEntry.account_id == account)  # type: ignore[arg-type]
            ).one()
            assert rows == [10, 25, 30][n]


async def test_one_unwritable_batch_fails_alone_and_a_resettled_row_takes_the_last_figures(
    database_url: str,
) -> None:
    """A batch the database refuses (here a number no column holds) fails only its own
    local activity, not the others of its round. A row written again with other figures
    (a settlement the workflow made again after its task was lost) takes the new ones,
    and is not counted as a new row."""
    ledger = LedgerActivities(database_url)
    good, bad = new_account(database_url), new_account(database_url)
    poison = usage_batch(bad, 1)
    poison.records[0].reported_seconds = 2**70
    env = ActivityEnvironment()
    outcomes = await asyncio.gather(
        env.run(ledger.record_usage_now, usage_batch(good, 3)),
        env.run(ledger.record_usage_now, poison),
        return_exceptions=True,
    )
    assert outcomes[0] == 3
    assert isinstance(outcomes[1], Exception)
    again = usage_batch(good, 1)
    again.records[0].billed_included_seconds = 10
    again.records[0].billed_extra_seconds = 50
    assert await env.run(ledger.record_usage_now, again) == 0
    assert run(ledger.record_usage, again) == 0  # the same figures once more: nothing
    with session_scope(database_url) as session:
        row = session.exec(
            select(UsageEntry).where(UsageEntry.account_id == good, UsageEntry.call_id == "call-0")
        ).one()
        assert (row.billed_included_seconds, row.billed_extra_seconds) == (10, 50)
        assert not session.exec(select(UsageEntry).where(UsageEntry.account_id == bad)).all()


def change(account_id: str, version: int, limit_cents: int) -> SettingsChangeRecord:
    return SettingsChangeRecord(
        account_id=account_id,
        actor="customer:someone@example.com",
        old=ExtraMinutesSettings(True, limit_cents - 100),
        new=ExtraMinutesSettings(True, limit_cents),
        changed_at=PERIOD_START + timedelta(seconds=version),
        change_id=f"{account_id}:settings:{version}",
        version=version,
    )


def account_row(database_url: str, account_id: str) -> Account:
    with session_scope(database_url) as session:
        row = session.get(Account, account_id)
        assert row is not None
        return row


def history(database_url: str, account_id: str) -> list[SettingsChange]:
    with session_scope(database_url) as session:
        return list(
            session.exec(
                select(SettingsChange)
                .where(SettingsChange.account_id == account_id)
                .order_by(SettingsChange.changed_at)  # type: ignore[arg-type]
            )
        )


def test_settings_changes_out_of_order_leave_the_account_at_the_newest(
    database_url: str,
) -> None:
    ledger = LedgerActivities(database_url)
    account_id = new_account(database_url)
    v1, v2, v3 = (change(account_id, n, 1000 * n) for n in (1, 2, 3))
    for record in (v3, v1, v2, v3, v1):  # late, repeated, carried over
        run(ledger.record_settings_change, record)
    row = account_row(database_url, account_id)
    assert (row.settings_version, row.extra_enabled, row.limit_cents) == (3, True, 3000)
    assert [h.change_id for h in history(database_url, account_id)] == [
        v1.change_id,
        v2.change_id,
        v3.change_id,
    ]


def test_concurrent_settings_changes_keep_the_newest(database_url: str) -> None:
    ledger = LedgerActivities(database_url)
    account_id = new_account(database_url)
    records = [change(account_id, n, 1000 * n) for n in range(1, 9)]
    side_by_side(ledger.record_settings_change, records[::-1] + records)
    row = account_row(database_url, account_id)
    assert (row.settings_version, row.limit_cents) == (8, 8000)
    assert len(history(database_url, account_id)) == 8


def test_records_of_the_older_workflow_keep_their_behaviour(database_url: str) -> None:
    """No change id, version 0: deduped by time, and the mirror follows the last write."""
    ledger = LedgerActivities(database_url)
    account_id = new_account(database_url)
    legacy = change(account_id, 0, 2500)
    legacy.change_id = None
    run(ledger.record_settings_change, legacy)
    run(ledger.record_settings_change, legacy)
    row = account_row(database_url, account_id)
    assert (row.settings_version, row.limit_cents) == (0, 2500)
    assert len(history(database_url, account_id)) == 1


def test_a_period_closed_twice_at_once_is_written_once(database_url: str) -> None:
    ledger = LedgerActivities(database_url)
    account_id = new_account(database_url)
    close = PeriodClose(
        account_id=account_id,
        period_start=PERIOD_START,
        period_end=PERIOD_END,
        plan="starter",
        included_used_seconds=0,
        extra_used_seconds=0,
        extra_cost_cents=0,
        excess_seconds=0,
        calls_recorded=0,
        extra_minute_price_cents=39,
        limit_cents=None,
        stopped_at_limit=False,
    )
    side_by_side(ledger.close_period, [close] * 4)
    with session_scope(database_url) as session:
        count = session.exec(
            select(func.count(ClosedPeriod.id)).where(ClosedPeriod.account_id == account_id)  # type: ignore[arg-type]
        ).one()
    assert count == 1


def test_sums_of_seconds_and_cents_are_64_bit(database_url: str) -> None:
    """Beside the schema test (types not compared there): the widened columns are BIGINT
    where the database tells the types apart, and every model column migrated."""
    engine = engine_for(database_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        type_differences = [d for d in compare_metadata(context, SQLModel.metadata)]
    if engine.dialect.name == "postgresql":
        assert type_differences == []
        columns = {c["name"]: c["type"] for c in inspect(engine).get_columns("closed_period")}
        assert isinstance(columns["extra_cost_cents"], BigInteger)
    # A total beyond 2^31 round-trips on every database.
    account_id = new_account(database_url)
    huge = 3 * 2**31
    with session_scope(database_url) as session:
        session.add(
            ClosedPeriod(
                account_id=account_id,
                plan="starter",
                period_start=PERIOD_START,
                period_end=PERIOD_END,
                included_used_seconds=0,
                extra_used_seconds=huge,
                extra_cost_cents=huge,
                excess_seconds=0,
                calls_recorded=0,
                extra_minute_price_cents=39,
                closed_at=PERIOD_END,
            )
        )
        session.commit()
        stored = session.exec(
            select(ClosedPeriod.extra_cost_cents).where(ClosedPeriod.account_id == account_id)
        ).one()
    assert stored == huge
