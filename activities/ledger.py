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
from typing import Any, cast

from sqlalchemy import Table, func, insert, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from temporalio import activity

from overtime.db import as_utc, session_scope
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

USAGE_TABLE = cast(Table, UsageEntry.__table__)
HISTORY_TABLE = cast(Table, SettingsChange.__table__)
ACCOUNT_TABLE = cast(Table, Account.__table__)
# Threads for the settled-call look-ups only (see find_recorded_calls).
_LOOKUP_THREADS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ledger-lookup")


@dataclass
class LedgerActivities:
    database_url: str

    @activity.defn
    def record_usage(self, batch: UsageBatch) -> int:
        """Insert the batch's ledger rows that are not there yet; returns rows written."""
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
            for record in batch.records
        ]
        with session_scope(self.database_url) as session:
            written = insert_new(session, USAGE_TABLE, rows, ("account_id", "call_id"))
            session.commit()
        # Only rows this execution wrote: a duplicate execution must not count twice.
        fresh = [record for record, new in zip(batch.records, written, strict=True) if new]
        count_in_activity(
            SECONDS_BILLED, sum(r.billed_included_seconds for r in fresh), kind="included"
        )
        count_in_activity(SECONDS_BILLED, sum(r.billed_extra_seconds for r in fresh), kind="extra")
        return len(fresh)

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
                        UsageEntry.call_id.in_(lookup.call_ids),  # type: ignore[attr-defined]
                    )
                )
            )

    @activity.defn
    def settled_call_ids(self, query: SettledCallsQuery) -> SettledCallsPage:
        """One page of the call ids the ledger holds for an account, in row order."""
        with session_scope(self.database_url) as session:
            rows = session.exec(
                select(UsageEntry.id, UsageEntry.call_id)
                .where(UsageEntry.account_id == query.account_id, UsageEntry.id > query.after_id)  # type: ignore[operator]
                .order_by(UsageEntry.id)  # type: ignore[arg-type]
                .limit(query.limit + 1)
            ).all()
        page = rows[: query.limit]
        return SettledCallsPage(
            call_ids=[call_id for _, call_id in page],
            last_id=page[-1][0] if page else query.after_id,
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
        with session_scope(self.database_url) as session:
            exists = session.exec(
                select(ClosedPeriod.id).where(
                    ClosedPeriod.account_id == close.account_id,
                    ClosedPeriod.period_start == close.period_start,
                )
            ).first()
            if exists is None:
                session.add(
                    ClosedPeriod(
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
                )
                try:
                    session.commit()
                except IntegrityError:
                    session.rollback()  # a concurrent execution wrote it: the same totals
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


def ledger_totals(session, account_id: str, period_start) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    """(included seconds, extra seconds, calls) the ledger holds for one period."""
    row = session.exec(
        select(
            func.coalesce(func.sum(UsageEntry.billed_included_seconds), 0),
            func.coalesce(func.sum(UsageEntry.billed_extra_seconds), 0),
            func.count(UsageEntry.id),  # type: ignore[arg-type]
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
