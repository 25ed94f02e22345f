"""What the invoice and payment_failed emails say about the invoice, from its row.

The notification activity renders ``invoice`` and ``payment_failed`` notices; the notice
itself carries the amount due and the hosted invoice link, this adds what only the
``invoice`` row knows at send time: net, VAT and when the next automatic payment
attempt is due (written by the invoice workflow just before it sends the email).

    context.update(invoice_email_context(settings, account_id, period_start, locale, tz))

Keys (all present, None when unknown, so templates can test them):
``next_attempt`` ("04.12.2026, 14:30 Uhr" / "4 Dec 2026, 14:30", account's time zone),
``next_attempt_date`` ("04.12.2026" / "4 Dec 2026"), ``net``, ``tax``, ``total``
(money texts) and ``tax_breakdown`` (see :func:`tax_breakdown`).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlmodel import select

from overtime.catalog import TaxTerms, load_tax
from overtime.db import session_scope
from overtime.formatting import full_date, language, money
from overtime.models import Invoice

if TYPE_CHECKING:
    from overtime.settings import Settings


def attempt_date(moment: datetime, timezone: str, locale: str) -> str:
    """``04.12.2026`` / ``4 Dec 2026``: the day in the account's time zone."""
    return full_date(moment.astimezone(ZoneInfo(timezone)).date(), locale)


def attempt_time(moment: datetime, timezone: str, locale: str) -> str:
    """``04.12.2026, 14:30 Uhr`` / ``4 Dec 2026, 14:30``: the day, then the clock time
    (spelt out like this in the sentence, not the tables' ``04.12.2026 14:30``)."""
    local = moment.astimezone(ZoneInfo(timezone))
    day = attempt_date(moment, timezone, locale)
    return f"{day}, {local:%H:%M} Uhr" if language(locale) == "de" else f"{day}, {local:%H:%M}"


def tax_breakdown(net_cents: int, tax_cents: int, tax: TaxTerms, locale: str) -> str | None:
    """How the amount is made up: ``netto 10,37 € + 19 % MwSt. 1,97 €`` /
    ``net €10.37 + 19% VAT €1.97``, for a gross catalog ``inkl. 19 % MwSt. 2,52 €`` /
    ``incl. 19% VAT €2.52``; None for an invoice without VAT."""
    if tax_cents <= 0:
        return None
    de = language(locale) == "de"
    vat = f"{tax.rate_text('de')} {tax.display_name}" if de else f"{tax.rate_text('en')} VAT"
    if tax.inclusive:
        return f"{'inkl.' if de else 'incl.'} {vat} {money(tax_cents, locale)}"
    net = money(net_cents, locale)
    return f"{'netto' if de else 'net'} {net} + {vat} {money(tax_cents, locale)}"


def invoice_email_context(
    settings: Settings,
    account_id: str,
    period_start: datetime,
    locale: str,
    timezone: str,
) -> dict[str, object]:
    """The row's figures for the email (see the module docstring); all None without a row."""
    context: dict[str, object] = dict.fromkeys(
        ("next_attempt", "next_attempt_date", "net", "tax", "total", "tax_breakdown")
    )
    with session_scope(settings.resolved_database_url()) as session:
        row = session.exec(
            select(Invoice).where(
                Invoice.account_id == account_id, Invoice.period_start == period_start
            )
        ).first()
    if row is None:
        return context
    if row.next_attempt_at is not None and row.status == "payment_failed":
        context["next_attempt"] = attempt_time(row.next_attempt_at, timezone, locale)
        context["next_attempt_date"] = attempt_date(row.next_attempt_at, timezone, locale)
    if row.net_cents or row.tax_cents:  # rows from before 0010 have no breakdown
        context["net"] = money(row.net_cents, locale)
        context["tax"] = money(row.tax_cents, locale)
        context["total"] = money(row.total_cents, locale)
        context["tax_breakdown"] = tax_breakdown(
            row.net_cents, row.tax_cents, load_tax(settings.plans_file), locale
        )
    return context
