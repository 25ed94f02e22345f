"""Month-end close activities: who has not closed yet, the reconciliation, the report.

The reconciliation compares four records of the same money, for every account period
that closed in the month: the usage ledger (one row per call), the closed-period totals
the workflow wrote, our invoice mirror, and Stripe's invoice. Anything that does not add
up becomes a line with a ``mismatch`` text; the report is rebuilt from scratch on every
run, so a retried or repeated close never double counts.

A period belongs to the calendar month in which it ends in its account's own time zone
(the month of its last instant), not in the report's: a São Paulo account's November
period ends at 04:00 on 1 December in Berlin and is still a November period.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from temporalio import activity

from activities.ledger import ledger_totals
from billing.rules import month_label, month_window, period_containing
from overtime import mailer, notices
from overtime.close_report import csv_filename, report_csv
from overtime.db import as_utc, session_scope
from overtime.models import (
    Account,
    ClosedPeriod,
    CloseReport,
    CloseReportLine,
    Invoice,
    Notification,
)
from overtime.settings import Settings
from overtime.stripe_gateway import StripeGateway
from workflows.types import CloseRequest, CloseSummary

# Every time zone's month ends within this of the report zone's month end (UTC offsets
# run from -12 h to +14 h), so it bounds the rows worth reading.
ZONE_MARGIN = timedelta(days=1)
LAST_INSTANT = timedelta(microseconds=1)
FAILED = {"payment_failed"}
# "processing": a SEPA debit being collected (days at Stripe) is pending, not failed.
PENDING = {"open", "processing", "draft"}


@dataclass
class CloseActivities:
    settings: Settings
    gateway: StripeGateway

    @property
    def _db(self) -> str:
        return self.settings.resolved_database_url()

    @activity.defn
    def unclosed_accounts(self, request: CloseRequest) -> list[str]:
        """Calendar-month accounts whose period ending in this month (in their own time
        zone) has not closed yet."""
        _, report_end = month_window(request.period, request.timezone)
        pending = []
        with session_scope(self._db) as session:
            accounts = session.exec(
                select(Account).where(
                    col(Account.period_seconds).is_(None),
                    Account.created_at < report_end + ZONE_MARGIN,
                )
            ).all()
            for account in accounts:
                _, month_end = month_window(request.period, account.timezone)
                if as_utc(account.created_at) >= month_end:
                    continue  # created after its own month ended: nothing to close
                start, _ = period_containing(
                    month_end - LAST_INSTANT,  # the month's last instant, in its zone
                    timezone=account.timezone,
                    period_seconds=None,
                    anchor=account.created_at,
                )
                closed = session.exec(
                    select(ClosedPeriod.id).where(
                        ClosedPeriod.account_id == account.account_id,
                        ClosedPeriod.period_start == start,
                    )
                ).first()
                if closed is None:
                    pending.append(account.account_id)
        return pending

    @activity.defn
    def build_close_report(self, request: CloseRequest) -> CloseSummary:
        lines: list[CloseReportLine] = []
        with session_scope(self._db) as session:
            closed = _periods_of_month(session, request)
            for index, period in enumerate(closed):
                if index % 50 == 0:
                    activity.heartbeat(index)
                lines.append(self._reconcile(session, request.period, period))
        for account_id in request.unclosed_accounts:
            lines.append(
                CloseReportLine(
                    period=request.period,
                    account_id=account_id,
                    mismatch="period not closed by the report's deadline",
                )
            )
        summary = _summarise(request.period, lines)
        with session_scope(self._db) as session:
            session.exec(
                delete(CloseReportLine).where(col(CloseReportLine.period) == request.period)
            )
            existing = session.get(CloseReport, request.period)
            if existing is not None:
                session.delete(existing)
            session.flush()
            session.add(
                CloseReport(
                    period=request.period,
                    created_at=datetime.now(UTC),
                    accounts=summary.accounts,
                    extra_seconds=summary.extra_seconds,
                    invoiced_cents=summary.invoiced_cents,
                    paid_cents=summary.paid_cents,
                    failed_cents=summary.failed_cents,
                    pending_cents=summary.pending_cents,
                    accounts_stopped_at_limit=summary.accounts_stopped_at_limit,
                    mismatches=len(summary.mismatches),
                )
            )
            session.add_all(lines)
            session.commit()
        return summary

    def _reconcile(
        self, session: Session, report_period: str, period: ClosedPeriod
    ) -> CloseReportLine:
        problems: list[str] = []
        included, extra, calls = ledger_totals(session, period.account_id, period.period_start)
        if (included, extra, calls) != (
            period.included_used_seconds,
            period.extra_used_seconds,
            period.calls_recorded,
        ):
            problems.append(
                f"ledger {included}/{extra} s in {calls} calls, workflow "
                f"{period.included_used_seconds}/{period.extra_used_seconds} s in "
                f"{period.calls_recorded} calls"
            )
        invoice = session.exec(
            select(Invoice).where(
                Invoice.account_id == period.account_id,
                Invoice.period_start == period.period_start,
            )
        ).first()
        # The workflow invoices a period iff it costs something: a few extra seconds can
        # round to 0 ct (1 s on the business plan), and such a period has no invoice.
        if period.extra_cost_cents > 0 and invoice is None:
            problems.append("extra minutes but no invoice")
        if period.extra_cost_cents == 0 and invoice is not None:
            problems.append("an invoice for a period without extra cost")
        if invoice is not None:
            if invoice.amount_cents != period.extra_cost_cents:
                problems.append(
                    f"invoice {invoice.amount_cents} ct, period {period.extra_cost_cents} ct"
                )
            if invoice.stripe_invoice_id:
                problems.extend(self._against_stripe(invoice))
        return CloseReportLine(
            period=report_period,
            account_id=period.account_id,
            period_start=period.period_start,
            extra_seconds=period.extra_used_seconds,
            amount_cents=invoice.amount_cents if invoice else 0,
            invoice_status=invoice.status if invoice else None,
            stripe_invoice_id=invoice.stripe_invoice_id if invoice else None,
            stopped_at_limit=period.stopped_at_limit,
            mismatch="; ".join(problems) or None,
        )

    def _against_stripe(self, invoice: Invoice) -> list[str]:
        # One read per invoice; the gateway's limiter keeps it within Stripe's budget
        # beside the invoicing (overtime/stripe_rate.py), so no pacing of its own.
        assert invoice.stripe_invoice_id is not None
        stripe_invoice = self.gateway.retrieve_invoice(invoice.stripe_invoice_id)
        problems = []
        if stripe_invoice.amount_cents != invoice.amount_cents:
            problems.append(
                f"Stripe says {stripe_invoice.amount_cents} ct, we say {invoice.amount_cents} ct"
            )
        if stripe_invoice.status != invoice.status:
            problems.append(f"Stripe says {stripe_invoice.status}, we say {invoice.status}")
        return problems

    @activity.defn
    def send_close_report(self, request: CloseRequest) -> bool:
        """Email the report and its CSV to finance, once per period."""
        month_start, _ = month_window(request.period, request.timezone)
        key = f"close_report:{request.period}"
        with session_scope(self._db) as session:
            report = session.get(CloseReport, request.period)
            sent = session.exec(
                select(Notification.id).where(
                    Notification.account_id == "_finance", Notification.notice_key == key
                )
            ).first()
            if report is None or sent is not None:
                return False
            csv_text = report_csv(session, request.period)
        email = notices.close_report_email(report)
        mailer.send(
            host=self.settings.smtp_host,
            port=self.settings.smtp_port,
            sender=self.settings.mail_from,
            to=self.settings.finance_email,
            email=email,
            message_id=notices.close_report_message_id(request.period),
            attachments=[
                mailer.Attachment(
                    filename=csv_filename(request.period),
                    content=csv_text.encode(),
                    maintype="text",
                    subtype="csv",
                )
            ],
            # Well inside the activity's two minutes; a CSV of many lines takes a while.
            timeout=15,
        )
        with session_scope(self._db) as session:
            session.add(
                Notification(
                    account_id="_finance",
                    kind="close_report",
                    notice_key=key,
                    to=self.settings.finance_email,
                    subject=email.subject,
                    period_start=month_start,
                    sent_at=datetime.now(UTC),
                )
            )
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
        return True


def _periods_of_month(session: Session, request: CloseRequest) -> list[ClosedPeriod]:
    """The closed periods whose last instant falls in the report's month, each in its
    account's own time zone (the report's zone for a period without an account row)."""
    month_start, month_end = month_window(request.period, request.timezone)
    rows = session.exec(
        select(ClosedPeriod, Account.timezone)
        .join(Account, col(Account.account_id) == col(ClosedPeriod.account_id), isouter=True)
        .where(
            ClosedPeriod.period_end > month_start - ZONE_MARGIN,
            ClosedPeriod.period_end <= month_end + ZONE_MARGIN,
        )
        .order_by(col(ClosedPeriod.account_id), col(ClosedPeriod.period_start))
    ).all()
    return [
        period
        for period, timezone in rows
        if month_label(as_utc(period.period_end) - LAST_INSTANT, timezone or request.timezone)
        == request.period
    ]


def _summarise(period: str, lines: list[CloseReportLine]) -> CloseSummary:
    def cents(statuses: set[str]) -> int:
        return sum(line.amount_cents for line in lines if line.invoice_status in statuses)

    return CloseSummary(
        period=period,
        accounts=len({line.account_id for line in lines}),
        extra_seconds=sum(line.extra_seconds for line in lines),
        invoiced_cents=sum(line.amount_cents for line in lines),
        paid_cents=cents({"paid"}),
        failed_cents=cents(FAILED),
        pending_cents=cents(PENDING),
        accounts_stopped_at_limit=len({ln.account_id for ln in lines if ln.stopped_at_limit}),
        mismatches=[f"{line.account_id}: {line.mismatch}" for line in lines if line.mismatch],
    )
