"""The month-end close puts each period in its own account's calendar month.

A São Paulo account's November period ends at 04:00 on 1 December in Berlin, a Los
Angeles one at 09:00: both are November periods, and their October periods (which end on
1 November in Berlin) are not. The activities run directly against the real database.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select
from temporalio.testing import ActivityEnvironment

from activities.close import CloseActivities
from billing.rules import month_window
from overtime import formatting
from overtime.db import session_scope
from overtime.models import Account, ClosedPeriod, CloseReportLine, Invoice, UsageEntry
from overtime.settings import Settings
from tests.test_ledger_idempotency import DB_ONLY, forget_accounts
from workflows.types import CloseRequest

# A month of its own: no other test closes periods in it.
MONTH = "2029-11"
REPORT_ZONE = "Europe/Berlin"
CREATED = datetime(2029, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True, scope="module")
def _forget_accounts(database_url: str) -> Iterator[None]:
    yield
    forget_accounts(database_url)  # accounts without workflows: see test_ledger_idempotency


def new_account(database_url: str, timezone: str, period_seconds: int | None = None) -> str:
    account_id = f"{DB_ONLY}{uuid.uuid4().hex[:12]}"
    with session_scope(database_url) as session:
        session.add(
            Account(
                account_id=account_id,
                email=f"{account_id}@example.com",
                plan="business",
                timezone=timezone,
                created_at=CREATED,
                period_seconds=period_seconds,
            )
        )
        session.commit()
    return account_id


def close(
    database_url: str,
    account_id: str,
    start: datetime,
    end: datetime,
    *,
    extra_seconds: int = 0,
    cost_cents: int = 0,
) -> None:
    """A closed period, and ledger rows that agree with it."""
    with session_scope(database_url) as session:
        if extra_seconds:
            session.add(
                UsageEntry(
                    account_id=account_id,
                    call_id=f"call-{start.isoformat()}",
                    period_start=start,
                    reported_seconds=extra_seconds,
                    granted_seconds=extra_seconds,
                    billed_included_seconds=0,
                    billed_extra_seconds=extra_seconds,
                    excess_seconds=0,
                    recorded_at=start,
                )
            )
        session.add(
            ClosedPeriod(
                account_id=account_id,
                plan="business",
                period_start=start,
                period_end=end,
                included_used_seconds=0,
                extra_used_seconds=extra_seconds,
                extra_cost_cents=cost_cents,
                excess_seconds=0,
                calls_recorded=1 if extra_seconds else 0,
                extra_minute_price_cents=29,
                closed_at=end,
            )
        )
        session.commit()


def calendar_periods(database_url: str, account_id: str, timezone: str) -> None:
    """Close the account's October, November and December periods (its own months)."""
    for label in ("2029-10", MONTH, "2029-12"):
        start, end = month_window(label, timezone)
        close(database_url, account_id, start, end)


@pytest.fixture
def activities(database_url: str, tmp_path: Path) -> CloseActivities:
    # No Stripe calls: these invoices have no Stripe id.
    settings = Settings(data_dir=tmp_path, database_url=database_url)
    return CloseActivities(settings, gateway=None)  # type: ignore[arg-type]


def report(activities: CloseActivities) -> dict[str, list[tuple[datetime, str | None]]]:
    summary = ActivityEnvironment().run(
        activities.build_close_report, CloseRequest(MONTH, REPORT_ZONE)
    )
    assert summary.period == MONTH
    with session_scope(activities.settings.resolved_database_url()) as session:
        lines = session.exec(select(CloseReportLine).where(CloseReportLine.period == MONTH)).all()
    found: dict[str, list[tuple[datetime, str | None]]] = {}
    for line in lines:
        assert line.period_start is not None
        found.setdefault(line.account_id, []).append((line.period_start, line.mismatch))
    return found


def test_periods_land_in_their_own_accounts_month(
    database_url: str, activities: CloseActivities
) -> None:
    zones = ("America/Sao_Paulo", "America/Los_Angeles", "Europe/Berlin", "Asia/Tokyo")
    accounts = {zone: new_account(database_url, zone) for zone in zones}
    for zone, account_id in accounts.items():
        calendar_periods(database_url, account_id, zone)
    # Fixed-length periods around the month's end in São Paulo: the one that ends at
    # 23:59 local on 30 November is November's, the one ending at 00:01 December's.
    fixed = new_account(database_url, "America/Sao_Paulo", period_seconds=3600)
    sp_end = month_window(MONTH, "America/Sao_Paulo")[1]
    close(database_url, fixed, sp_end - timedelta(minutes=61), sp_end - timedelta(minutes=1))
    close(database_url, fixed, sp_end - timedelta(minutes=59), sp_end + timedelta(minutes=1))

    found = report(activities)
    for zone, account_id in accounts.items():
        start, _ = month_window(MONTH, zone)
        assert found[account_id] == [(start, None)], zone
    assert found[fixed] == [(sp_end - timedelta(minutes=61), None)]


def test_unclosed_accounts_are_judged_by_their_own_month(
    database_url: str, activities: CloseActivities
) -> None:
    tokyo = new_account(database_url, "Asia/Tokyo")
    los_angeles = new_account(database_url, "America/Los_Angeles")
    waiting = new_account(database_url, "America/Los_Angeles")
    for account_id, zone in ((tokyo, "Asia/Tokyo"), (los_angeles, "America/Los_Angeles")):
        start, end = month_window(MONTH, zone)
        close(database_url, account_id, start, end)
    pending = ActivityEnvironment().run(
        activities.unclosed_accounts, CloseRequest(MONTH, REPORT_ZONE)
    )
    assert tokyo not in pending and los_angeles not in pending
    assert waiting in pending


def test_a_period_that_costs_nothing_needs_no_invoice(
    database_url: str, activities: CloseActivities
) -> None:
    zone = "America/Sao_Paulo"
    rounded, unbilled, billed = (new_account(database_url, zone) for _ in range(3))
    start, end = month_window(MONTH, zone)
    # One extra second on the business plan costs 0 ct: the workflow invoices nothing.
    close(database_url, rounded, start, end, extra_seconds=1, cost_cents=0)
    close(database_url, unbilled, start, end, extra_seconds=120, cost_cents=58)
    close(database_url, billed, start, end, extra_seconds=120, cost_cents=58)
    with session_scope(database_url) as session:
        session.add(
            Invoice(
                account_id=billed,
                period_start=start,
                period_end=end,
                extra_seconds=120,
                unit_price_cents=29,
                amount_cents=58,
                status="paid",
                created_at=end,
                updated_at=end,
            )
        )
        session.commit()
    found = report(activities)
    assert found[rounded] == [(start, None)]
    assert found[billed] == [(start, None)]
    assert found[unbilled] == [(start, "extra minutes but no invoice")]


@pytest.mark.parametrize(
    ("cents", "text"),
    [(0, "0,00 €"), (5, "0,05 €"), (12345, "123,45 €"), (-5, "-0,05 €"), (-150, "-1,50 €")],
)
def test_euros(cents: int, text: str) -> None:
    assert formatting.money(cents, "de") == text
