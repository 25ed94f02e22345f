"""Ledger activities: the account workflow's writes to the database.

Each is idempotent, so Temporal may retry it after a crash at any point, and the
workflow's outboxes may even run one twice at the same time (an undelivered item is
carried over a continue-as-new while its first attempt is still running): usage rows are
unique per (account, call id), a closed period per (account, period start), and a
settings change per (account, change id). Inserts skip rows that exist instead of failing
on the unique constraint, so a concurrent duplicate commits nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, insert, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from temporalio import activity

from overtime.db import as_utc, session_scope, table_of
from overtime.models import Account, ClosedPeriod, SettingsChange, UsageEntry
from overtime.observability import SECONDS_BILLED, count_in_activity
from workflows.types import (
    CallLookup,
    CallsLookup,
    PeriodClose,
    SettingsChangeRecord,
    SettledCallsPage,
    SettledCallsQuery,
    UsageBatch,
)

log = logging.getLogger(__name__)

USAGE_TABLE = table_of(UsageEntry)
HISTORY_TABLE = table_of(SettingsChange)
ACCOUNT_TABLE = table_of(Account)
CLOSED_TABLE = table_of(ClosedPeriod)
# Threads for the settled-call look-ups only (see find_recorded_calls).
_LOOKUP_THREADS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ledger-lookup")


@dataclass
class LedgerActivities:
    database_url: str

    @activity.defn
    def record_usage(self, batch: UsageBatch) -> int:
        """Insert the batch's ledger rows that are not there yet; returns rows written."""
        with session_scope(self.database_url) as session:
            [written] = _insert_usage(session, [batch])
            session.commit()
        return _count_fresh(batch, written)

    @activity.defn
    async def record_usage_now(self, batch: UsageBatch) -> int:
        """``record_usage`` as a local activity, in the workflow task of the report itself.

        The account workflow runs it right after answering a usage report, so the row is
        written without a second workflow task and an activity task of its own. It runs
        on threads of its own (like the look-ups), and the batches that wait meanwhile,
        of any account, go to the database together in one transaction (group commit):
        one commit for many reports, which is what the database's write rate is made of.
        """
        return await self._group_commit.write(batch)

    @property
    def _group_commit(self) -> _GroupCommit:
        # One per event loop (a worker has one; tests may run several in turn).
        key = (self.database_url, asyncio.get_running_loop())
        commit = _GROUP_COMMITS.get(key)
        if commit is None:
            commit = _GROUP_COMMITS[key] = _GroupCommit(self.database_url)
        return commit

    @activity.defn
    def find_recorded_call(self, lookup: CallLookup) -> bool:
        with session_scope(self.database_url) as session:
            row = session.exec(
                select(UsageEntry.id).where(
                    UsageEntry.account_id == lookup.account_id,
                    UsageEntry.call_id == lookup.call_id,
                )
            ).first()
        return row is not None

    @activity.defn
    async def find_recorded_calls(self, lookup: CallsLookup) -> list[str]:
        """The call ids of ``lookup`` that the ledger holds.

        It stands in front of telephony answers (a local activity with a sub-second
        timeout), so it runs on threads of its own: a backlog of slow SMTP or Stripe
        activities in the worker's activity executor can never delay it.
        """
        return await asyncio.get_running_loop().run_in_executor(
            _LOOKUP_THREADS, self._recorded, lookup
        )

    def _recorded(self, lookup: CallsLookup) -> list[str]:
        with session_scope(self.database_url) as session:
            return list(
                session.exec(
                    select(UsageEntry.call_id).where(
                        UsageEntry.account_id == lookup.account_id,
                        col(UsageEntry.call_id).in_(lookup.call_ids),
                    )
                )
            )

    @activity.defn
    def settled_call_ids(self, query: SettledCallsQuery) -> SettledCallsPage:
        """One page of the call ids the ledger holds for an account, in row order."""
        with session_scope(self.database_url) as session:
            rows = session.exec(
                select(UsageEntry.id, UsageEntry.call_id)
                .where(
                    UsageEntry.account_id == query.account_id, col(UsageEntry.id) > query.after_id
                )
                .order_by(col(UsageEntry.id))
                .limit(query.limit + 1)
            ).all()
        page = rows[: query.limit]
        return SettledCallsPage(
            call_ids=[call_id for _, call_id in page],
            # A row read back always has its id; the model types it Optional for inserts.
            last_id=cast(int, page[-1][0]) if page else query.after_id,
            more=len(rows) > query.limit,
        )

    @activity.defn
    def record_settings_change(self, change: SettingsChangeRecord) -> None:
        """One history row per change, and the account row mirror at the newest version."""
        history = dict(
            account_id=change.account_id,
            change_id=change.change_id,
            actor=change.actor,
            changed_at=change.changed_at,
            old_enabled=change.old.enabled,
            old_limit_cents=change.old.limit_cents,
            old_limit_minutes=change.old.limit_minutes,
            new_enabled=change.new.enabled,
            new_limit_cents=change.new.limit_cents,
            new_limit_minutes=change.new.limit_minutes,
            kind=change.kind,
            detail=change.detail,
            reason=change.reason,
        )
        mirror: dict[str, object] = dict(
            extra_enabled=change.new.enabled,
            limit_cents=change.new.limit_cents,
            limit_minutes=change.new.limit_minutes,
        )
        # v5 records carry the plan and thresholds in force after the change too.
        if change.plan is not None:
            mirror["plan"] = change.plan
        if change.alert_percents is not None:
            mirror["alert_percents"] = ",".join(str(p) for p in change.alert_percents)
        if change.change_id is None:
            # The older workflow's records have no id. The activity's own id is unique per
            # change and stable across its retries (two changes in one workflow task share
            # a timestamp, so the time of change cannot tell them apart).
            info = activity.info()
            history["change_id"] = f"v2:{info.workflow_run_id}:{info.activity_id}"
        with session_scope(self.database_url) as session:
            insert_new(session, HISTORY_TABLE, [history], ("account_id", "change_id"))
            account = ACCOUNT_TABLE.c
            if change.version > 0:
                # One conditional UPDATE, so even concurrent executions of an older and a
                # newer change leave the row at the newer one: what the workflow enforces.
                session.connection().execute(
                    update(ACCOUNT_TABLE)
                    .where(
                        account.account_id == change.account_id,
                        account.settings_version < change.version,
                    )
                    .values(**mirror, settings_version=change.version)
                )
            else:
                # Records from the workflow version without settings versions: as before,
                # the last write wins.
                session.connection().execute(
                    update(ACCOUNT_TABLE)
                    .where(account.account_id == change.account_id)
                    .values(**mirror)
                )
            session.commit()

    @activity.defn
    def close_period(self, close: PeriodClose) -> None:
        """Write the closed period's totals, and check them against the ledger."""
        row = dict(
            account_id=close.account_id,
            plan=close.plan,
            period_start=close.period_start,
            period_end=close.period_end,
            included_used_seconds=close.included_used_seconds,
            extra_used_seconds=close.extra_used_seconds,
            extra_cost_cents=close.extra_cost_cents,
            excess_seconds=close.excess_seconds,
            calls_recorded=close.calls_recorded,
            extra_minute_price_cents=close.extra_minute_price_cents,
            limit_cents=close.limit_cents,
            stopped_at_limit=close.stopped_at_limit,
            closed_at=activity.info().current_attempt_scheduled_time,
        )
        with session_scope(self.database_url) as session:
            # A retry, or a concurrent execution, finds the row written: the same totals.
            insert_new(session, CLOSED_TABLE, [row], ("account_id", "period_start"))
            session.commit()
            included, extra, calls = ledger_totals(session, close.account_id, close.period_start)
        if (included, extra, calls) != (
            close.included_used_seconds,
            close.extra_used_seconds,
            close.calls_recorded,
        ):
            # The workflow is the source of truth; a mismatch is a bug to investigate,
            # not a reason to hold the period open. The month-end report lists it too.
            log.error(
                "ledger mismatch for %s period %s: ledger=%s workflow=%s",
                close.account_id,
                as_utc(close.period_start).isoformat(),
                (included, extra, calls),
                (close.included_used_seconds, close.extra_used_seconds, close.calls_recorded),
            )


def ledger_totals(
    session: Session, account_id: str, period_start: datetime
) -> tuple[int, int, int]:
    """(included seconds, extra seconds, calls) the ledger holds for one period."""
    row = session.exec(
        select(
            func.coalesce(func.sum(UsageEntry.billed_included_seconds), 0),
            func.coalesce(func.sum(UsageEntry.billed_extra_seconds), 0),
            func.count(col(UsageEntry.id)),
        ).where(UsageEntry.account_id == account_id, UsageEntry.period_start == period_start)
    ).one()
    return int(row[0]), int(row[1]), int(row[2])


def insert_new(
    session: Session, table: Table, rows: list[dict[str, Any]], unique: tuple[str, ...]
) -> list[bool]:
    """Insert the rows whose ``unique`` key is not taken yet; True for each one written.

    SQLite and PostgreSQL skip a taken key in the statement itself (ON CONFLICT DO
    NOTHING), which also holds against a concurrent transaction inserting the same key;
    other databases get a savepoint per row.
    """
    dialect = session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        insert_for = sqlite.insert if dialect == "sqlite" else postgresql.insert
        statement = insert_for(table).on_conflict_do_nothing(index_elements=list(unique))
        connection = session.connection()
        return [connection.execute(statement, row).rowcount == 1 for row in rows]
    written = []
    for row in rows:
        try:
            with session.begin_nested():
                session.connection().execute(insert(table), row)
            written.append(True)
        except IntegrityError:
            written.append(False)
    return written


def _insert_usage(session: Session, batches: list[UsageBatch]) -> list[list[bool]]:
    """Insert the batches' rows that are not there yet; for each batch, True per row written.

    A row that is there with other figures is brought to this batch's: a local activity
    writes before its workflow task is durable, so a worker that dies between the two
    leaves a row from a settlement the workflow makes again (the Update is delivered
    once more) with a later clock. The batch written last comes from the durable state.
    """
    rows = [
        dict(
            account_id=batch.account_id,
            call_id=record.call_id,
            # Rows carried past their period's close keep their own period.
            period_start=record.period_start or batch.period_start,
            reported_seconds=record.reported_seconds,
            granted_seconds=record.granted_seconds,
            billed_included_seconds=record.billed_included_seconds,
            billed_extra_seconds=record.billed_extra_seconds,
            excess_seconds=record.excess_seconds,
            late=record.late,
            recorded_at=record.recorded_at,
        )
        for batch in batches
        for record in batch.records
    ]
    written = insert_new(session, USAGE_TABLE, rows, ("account_id", "call_id"))
    for row, new in zip(rows, written, strict=True):
        if not new:
            _correct_figures(session, row)
    per_batch, at = [], 0
    for batch in batches:
        per_batch.append(written[at : at + len(batch.records)])
        at += len(batch.records)
    return per_batch


_FIGURES = (
    "period_start",
    "reported_seconds",
    "granted_seconds",
    "billed_included_seconds",
    "billed_extra_seconds",
    "excess_seconds",
    "late",
)


def _correct_figures(session: Session, row: dict[str, Any]) -> None:
    """The row of an existing call id, set to ``row``'s figures if they differ (rare: see
    ``_insert_usage``; a duplicate write of the same figures changes nothing)."""
    usage = USAGE_TABLE.c
    changed = session.connection().execute(
        update(USAGE_TABLE)
        .where(
            usage.account_id == row["account_id"],
            usage.call_id == row["call_id"],
            or_(*(usage[name].is_distinct_from(row[name]) for name in _FIGURES)),
        )
        .values(**{name: row[name] for name in (*_FIGURES, "recorded_at")})
    )
    if changed.rowcount:
        log.warning(
            "ledger row of %s call %s set to the durable settlement's figures",
            row["account_id"],
            row["call_id"],
        )


def _count_fresh(batch: UsageBatch, written: list[bool]) -> int:
    # Only rows this execution wrote: a duplicate execution must not count twice.
    fresh = [record for record, new in zip(batch.records, written, strict=True) if new]
    count_in_activity(
        SECONDS_BILLED, sum(r.billed_included_seconds for r in fresh), kind="included"
    )
    count_in_activity(SECONDS_BILLED, sum(r.billed_extra_seconds for r in fresh), kind="extra")
    return len(fresh)


class _GroupCommit:
    """Usage batches of concurrent local activities, written in one transaction each round.

    While one round commits, the batches that arrive queue for the next; each caller gets
    its own batch's outcome. A round that fails fails every batch in it (each workflow
    then writes its rows through the ordinary activity): nothing is half written, since
    the round is one transaction.
    """

    def __init__(self, database_url: str) -> None:
        self._database_url = database_url
        self._waiting: list[tuple[UsageBatch, asyncio.Future[int]]] = []
        self._rounds_task: asyncio.Task[None] | None = None

    async def write(self, batch: UsageBatch) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.append((batch, future))
        if self._rounds_task is None or self._rounds_task.done():
            self._rounds_task = asyncio.create_task(self._rounds())
        return await future

    async def _rounds(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            round_ = self._waiting[:_ROUND_BATCHES]
            del self._waiting[:_ROUND_BATCHES]
            batches = [batch for batch, _ in round_]
            try:
                outcomes: list[list[bool] | BaseException] = list(
                    await loop.run_in_executor(_WRITE_THREAD, self._commit, batches)
                )
            except Exception as err:
                if len(batches) == 1:
                    outcomes = [err]
                else:
                    # One batch the database refuses must not fail the others: each on
                    # its own, so that only the one that cannot be written fails.
                    outcomes = await loop.run_in_executor(_WRITE_THREAD, self._one_by_one, batches)
            for (batch, future), outcome in zip(round_, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    if not future.done():
                        future.set_exception(outcome)
                    continue
                # Counted even when its waiter stopped waiting (the local activity timed
                # out): the rows are written, and the ordinary activity after it finds them.
                fresh = _count_fresh(batch, outcome)
                if not future.done():
                    future.set_result(fresh)

    def _one_by_one(self, batches: list[UsageBatch]) -> list[list[bool] | BaseException]:
        outcomes: list[list[bool] | BaseException] = []
        for batch in batches:
            try:
                outcomes.append(self._commit([batch])[0])
            except Exception as err:
                outcomes.append(err)
        return outcomes

    def _commit(self, batches: list[UsageBatch]) -> list[list[bool]]:
        with session_scope(self._database_url) as session:
            written = _insert_usage(session, batches)
            session.commit()
        return written


# One writer thread: rounds are sequential anyway (each waits for the one before), and a
# single writer is what SQLite allows. At most this many batches per transaction.
_WRITE_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-write")
_ROUND_BATCHES = 200
_GROUP_COMMITS: dict[tuple[str, asyncio.AbstractEventLoop], _GroupCommit] = {}
