"""The month-end close report as CSV: one line per account period.

The same file goes to finance with the close email (``activities.close``) and is served
by ``GET /v1/reports/close/{period}?format=csv`` (``starter.report_routes``).
"""

from __future__ import annotations

import csv
import io

from sqlmodel import Session, col, select

from overtime.models import CloseReportLine

CSV_FIELDS = (
    "account_id",
    "period_start",
    "extra_seconds",
    "amount_cents",
    "invoice_status",
    "stripe_invoice_id",
    "stopped_at_limit",
    "mismatch",
)


def csv_filename(period: str) -> str:
    """``overtime-close-2026-11.csv``: the attachment's and the download's name."""
    return f"overtime-close-{period}.csv"


def report_csv(session: Session, period: str) -> str:
    """The report's lines for ``period``, ordered by account, as CSV text."""
    rows = session.exec(
        select(CloseReportLine)
        .where(CloseReportLine.period == period)
        .order_by(col(CloseReportLine.account_id), col(CloseReportLine.id))
    ).all()
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_FIELDS)
    for row in rows:
        writer.writerow(
            [
                row.account_id,
                row.period_start.isoformat() if row.period_start else "",
                row.extra_seconds,
                row.amount_cents,
                row.invoice_status or "",
                row.stripe_invoice_id or "",
                "yes" if row.stopped_at_limit else "no",
                row.mismatch or "",
            ]
        )
    return out.getvalue()
