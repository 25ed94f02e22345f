"""What the pages show, read from the database and the account workflows.

Database reads are synchronous (run them with ``run_in_threadpool``); live figures come
from :class:`starter.services.AccountService` (a Temporal query per account).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_
from sqlmodel import col, select
from starlette.concurrency import run_in_threadpool

from billing.account_state import WARNING_PERCENT
from billing.rules import ExtraMinutesSettings, PlanTerms, allowed_extra_seconds, limit_as_cents
from overtime.db import as_utc, session_scope
from overtime.models import (
    Account,
    AdminAction,
    Invoice,
    Notification,
    SettingsChange,
    UsageEntry,
    WebhookDelivery,
    WebLogin,
)
from starter.errors import ApiError
from starter.services import AccountService
from workflows.types import AccountSnapshot


def account(db: str, account_id: str) -> Account | None:
    with session_scope(db) as session:
        return session.get(Account, account_id)


def history(db: str, account_id: str, limit: int = 50) -> list[SettingsChange]:
    with session_scope(db) as session:
        return list(
            session.exec(
                select(SettingsChange)
                .where(SettingsChange.account_id == account_id)
                .order_by(col(SettingsChange.changed_at).desc(), col(SettingsChange.id).desc())
                .limit(limit)
            )
        )


def admin_actions(db: str, account_id: str, limit: int = 50) -> list[AdminAction]:
    with session_scope(db) as session:
        return list(
            session.exec(
                select(AdminAction)
                .where(AdminAction.account_id == account_id)
                .order_by(col(AdminAction.created_at).desc(), col(AdminAction.id).desc())
                .limit(limit)
            )
        )


def record_admin_action(
    db: str, account_id: str, actor: str, action: str, reason: str, target: str | None, outcome: str
) -> None:
    with session_scope(db) as session:
        session.add(
            AdminAction(
                account_id=account_id,
                actor=actor,
                action=action,
                target=target,
                reason=reason,
                outcome=outcome,
                created_at=datetime.now(UTC),
            )
        )
        session.commit()


def ledger(db: str, account_id: str, limit: int = 200) -> list[UsageEntry]:
    with session_scope(db) as session:
        return list(
            session.exec(
                select(UsageEntry)
                .where(UsageEntry.account_id == account_id)
                .order_by(col(UsageEntry.recorded_at).desc(), col(UsageEntry.id).desc())
                .limit(limit)
            )
        )


def notifications(db: str, account_id: str) -> list[Notification]:
    with session_scope(db) as session:
        return list(
            session.exec(
                select(Notification)
                .where(Notification.account_id == account_id)
                .order_by(col(Notification.sent_at).desc(), col(Notification.id).desc())
            )
        )


def failed_webhooks(db: str, account_id: str, limit: int = 50) -> list[WebhookDelivery]:
    """Service events the telephony webhook never took (refused for good, or too old)."""
    with session_scope(db) as session:
        return list(
            session.exec(
                select(WebhookDelivery)
                .where(
                    WebhookDelivery.account_id == account_id,
                    WebhookDelivery.status == "failed",
                )
                .order_by(col(WebhookDelivery.delivered_at).desc())
                .limit(limit)
            )
        )


def invoices(db: str, account_id: str) -> list[Invoice]:
    with session_scope(db) as session:
        return list(
            session.exec(
                select(Invoice)
                .where(Invoice.account_id == account_id)
                .order_by(col(Invoice.period_start).desc())
            )
        )


@dataclass
class FailedPayment:
    """An invoice whose charge was declined, as the customer is told about it."""

    invoice: Invoice
    # When Stripe is asked again on its own; None once no retry is left (or unknown).
    next_attempt_at: datetime | None
    # Dunning is over: extra minutes are suspended until this invoice is paid.
    overdue: bool

    @property
    def due_cents(self) -> int:
        """What the customer owes: with VAT once Stripe computed it (migration 0010)."""
        return self.invoice.total_cents if self.invoice.tax_cents else self.invoice.amount_cents


def failed_payments(db: str, account_id: str, dunning_schedule: list[int]) -> list[FailedPayment]:
    """Declined invoices, newest first.

    ``Invoice.next_attempt_at`` (migration 0010) tells when the next automatic attempt is
    due. Dunning is over when none is due and every attempt was made: the first charge
    plus one per scheduled retry (an empty date alone may be a row from before 0010, or
    one whose retry is being charged right now).
    """
    with session_scope(db) as session:
        rows = list(
            session.exec(
                select(Invoice)
                .where(Invoice.account_id == account_id, Invoice.status == "payment_failed")
                .order_by(col(Invoice.period_start).desc())
            )
        )
    result = []
    for row in rows:
        next_at = row.next_attempt_at
        # Rows charged before 0010 have no date: the attempts made decide for them.
        overdue = next_at is None and row.attempts > len(dunning_schedule)
        result.append(FailedPayment(row, as_utc(next_at) if next_at else None, overdue))
    return result


def accounts(db: str, query: str = "", plan: str = "", limit: int = 500) -> list[Account]:
    with session_scope(db) as session:
        statement = select(Account)
        if query:
            pattern = f"%{query.lower()}%"
            statement = statement.where(
                or_(
                    func.lower(Account.account_id).like(pattern),
                    func.lower(Account.email).like(pattern),
                )
            )
        if plan:
            statement = statement.where(Account.plan == plan)
        return list(session.exec(statement.order_by(col(Account.account_id)).limit(limit)))


def logins(db: str, account_ids: list[str]) -> set[str]:
    with session_scope(db) as session:
        return set(
            session.exec(
                select(WebLogin.account_id).where(col(WebLogin.account_id).in_(account_ids))
            )
        )


# --- usage per day --------------------------------------------------------------------------


@dataclass
class DayUsage:
    day: date
    included_seconds: int = 0
    extra_seconds: int = 0


def usage_per_day(
    db: str, account_id: str, period_start: datetime, period_end: datetime, zone: ZoneInfo
) -> list[DayUsage]:
    """Billed seconds per local calendar day of the period, from the usage ledger."""
    with session_scope(db) as session:
        rows = session.exec(
            select(
                UsageEntry.recorded_at,
                UsageEntry.billed_included_seconds,
                UsageEntry.billed_extra_seconds,
            ).where(UsageEntry.account_id == account_id, UsageEntry.period_start == period_start)
        ).all()
    first = period_start.astimezone(zone).date()
    # The end is exclusive: a period ending at midnight does not reach the next day.
    last = (period_end.astimezone(zone) - timedelta(microseconds=1)).date()
    days = {
        first + timedelta(days=n): DayUsage(first + timedelta(days=n))
        for n in range((last - first).days + 1)
    }
    for recorded_at, included, extra in rows:
        day = as_utc(recorded_at).astimezone(zone).date()
        entry = days.setdefault(day, DayUsage(day))
        entry.included_seconds += included
        entry.extra_seconds += extra
    return [days[d] for d in sorted(days)]


# --- the live figures a page shows --------------------------------------------------------


@dataclass
class Usage:
    """One account's period, ready to show (derived from the workflow's snapshot)."""

    snapshot: AccountSnapshot
    plan: PlanTerms
    included_used_seconds: int
    included_percent: float
    extra_percent: float  # of the limit; 0 when extra minutes are off
    limit_cents: int | None  # the limit in EUR terms (a minutes limit converted)
    warning: bool  # at or above 90 % and not yet stopped at the limit
    days: list[DayUsage] = field(default_factory=list)

    @property
    def stopped(self) -> bool:
        return not self.snapshot.accepting_calls


def usage(snapshot: AccountSnapshot, plan: PlanTerms) -> Usage:
    included_used = snapshot.used_seconds - snapshot.extra_seconds
    included_total = snapshot.included_seconds
    allowed = snapshot.extra_allowed_seconds
    extra_percent = min(100.0, snapshot.extra_seconds * 100 / allowed) if allowed else 0.0
    settings = ExtraMinutesSettings(snapshot.enabled, snapshot.limit_cents, snapshot.limit_minutes)
    limit_cents = limit_as_cents(settings, plan) if snapshot.enabled else None
    return Usage(
        snapshot=snapshot,
        plan=plan,
        included_used_seconds=included_used,
        included_percent=min(100.0, included_used * 100 / included_total)
        if included_total
        else 100.0,
        extra_percent=extra_percent,
        limit_cents=limit_cents,
        warning=bool(allowed)
        and snapshot.extra_seconds * 100 >= allowed * WARNING_PERCENT
        and snapshot.extra_seconds < allowed,
    )


async def live_usage(
    service: AccountService, db: str, account_id: str, *, with_days: bool = False
) -> Usage | None:
    """The account's live usage, or None when its workflow does not answer in time."""
    start_input = await service.load(account_id)
    try:
        snapshot = await asyncio.wait_for(service.snapshot(account_id), timeout=10)
    except (ApiError, TimeoutError):
        return None
    result = usage(snapshot, start_input.plan)
    if with_days:
        result.days = await run_in_threadpool(
            usage_per_day,
            db,
            account_id,
            snapshot.period_start,
            snapshot.period_end,
            ZoneInfo(start_input.profile.timezone),
        )
    return result


def limit_seconds(settings: ExtraMinutesSettings, plan: PlanTerms) -> int:
    return allowed_extra_seconds(settings, plan)
