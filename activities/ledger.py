"""Ledger activities: the account workflow's writes to the database.

Each is idempotent, so Temporal may retry it after a crash at any point: usage rows are
unique per (account, call id), a closed period is unique per (account, period start),
and a settings change is keyed by (account, time of change).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import select
from temporalio import activity

from overtime.db import as_utc, session_scope
from overtime.models import Account, ClosedPeriod, SettingsChange, UsageEntry
from overtime.observability import SECONDS_BILLED, count_in_activity
from workflows.types import CallLookup, PeriodClose, SettingsChangeRecord, UsageBatch

log = logging.getLogger(__name__)


@dataclass
class LedgerActivities:
    database_url: str

    @activity.defn
    def record_usage(self, batch: UsageBatch) -> int:
        """Insert the batch's ledger rows that are not there yet; returns rows written."""
        call_ids = [record.call_id for record in batch.records]
        with session_scope(self.database_url) as session:
            existing = set(
                session.exec(
                    select(UsageEntry.call_id).where(
                        UsageEntry.account_id == batch.account_id,
                        UsageEntry.call_id.in_(call_ids),  # type: ignore[attr-defined]
                    )
                )
            )
            fresh = [r for r in batch.records if r.call_id not in existing]
            for record in fresh:
                session.add(
                    UsageEntry(
                        account_id=batch.account_id,
                        call_id=record.call_id,
                        period_start=batch.period_start,
                        reported_seconds=record.reported_seconds,
                        granted_seconds=record.granted_seconds,
                        billed_included_seconds=record.billed_included_seconds,
                        billed_extra_seconds=record.billed_extra_seconds,
                        excess_seconds=record.excess_seconds,
                        late=record.late,
                        recorded_at=record.recorded_at,
                    )
                )
            session.commit()
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
    def record_settings_change(self, change: SettingsChangeRecord) -> None:
        with session_scope(self.database_url) as session:
            account = session.get(Account, change.account_id)
            already = session.exec(
                select(SettingsChange.id).where(
                    SettingsChange.account_id == change.account_id,
                    SettingsChange.changed_at == change.changed_at,
                )
            ).first()
            if already is None:
                session.add(
                    SettingsChange(
                        account_id=change.account_id,
                        actor=change.actor,
                        changed_at=change.changed_at,
                        old_enabled=change.old.enabled,
                        old_limit_cents=change.old.limit_cents,
                        old_limit_minutes=change.old.limit_minutes,
                        new_enabled=change.new.enabled,
                        new_limit_cents=change.new.limit_cents,
                        new_limit_minutes=change.new.limit_minutes,
                    )
                )
            if account is not None:
                account.extra_enabled = change.new.enabled
                account.limit_cents = change.new.limit_cents
                account.limit_minutes = change.new.limit_minutes
                session.add(account)
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
