"""Every notice email, built in one place: a notice's figures in, the message out.

The notification activity (``activities.notifications.send_notice``) and the admin
console's resend (``starter.web.admin``) both turn :class:`Figures` into the email here,
and take its headers and Message-ID from here; the month-end close's finance email
(``activities.close``) is written here as well. Templates and SMTP are
:mod:`overtime.mailer`'s; numbers and dates are :mod:`overtime.formatting`'s.

The two senders do not know the same things. The activity has the notice as it was
raised: the threshold crossed, the plan it speaks of, the payment method, the invoice's
tax breakdown (:class:`NoticeRecord`). The resend has only the stored ``notification``
row and the period's figures as they are now: without a record, the email states those
figures and the templates fall back to their defaults for the rest (the 90 % wording,
"cost of limit"), as resent notices always read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from billing.account_state import PLAN_CHANGED
from billing.rules import period_key
from overtime import formatting, mailer

if TYPE_CHECKING:
    from overtime.models import CloseReport
    from overtime.settings import Settings

# The finance team reads the close report in German, whatever the accounts' languages.
FINANCE_LANGUAGE = "de"


# A notice about the period's figures can be sent again with the figures as they are now.
# A confirmation of one change (a plan change, a new payment method) means something only
# with what changed, which the notification row does not keep: it is not resent.
NOT_RESENDABLE = frozenset({"plan_changed", "payment_method_changed"})


def resendable(kind: str) -> bool:
    return kind not in NOT_RESENDABLE


@dataclass(frozen=True)
class Figures:
    """What a notice email states about the period, whoever sends it."""

    kind: str
    locale: str  # the account's, in any form formatting.language reads
    timezone: str  # the account's: the period and dates are written in it
    period_start: datetime
    period_end: datetime
    extra_seconds: int
    extra_cost_cents: int
    limit_cents: int | None
    # The limit in minutes when the customer set it so; None writes the limit in EUR.
    limit_minutes: int | None
    price_cents: int  # per extra minute
    link: str | None  # the hosted invoice, for invoice emails
    final: bool  # the last payment attempt failed
    cause: str | None  # why extra minutes were switched off


@dataclass(frozen=True)
class NoticeRecord:
    """What only the notice as it was raised knows (the activity has it, a resend not)."""

    percent: int  # the threshold crossed
    # What a EUR limit buys, as the notice computed it (None: from the limit and price).
    extra_allowed_seconds: int | None
    alert_percents: Sequence[int]  # the account's thresholds
    monthly_fee_cents: int
    included_minutes: int
    extra_available: bool  # a paid plan: extra minutes can be bought
    plan: str | None  # the plan the notice speaks of (catalog id)
    old_plan: str | None  # a plan change's previous plan
    method: str | None  # the payment method's label; None: "a new payment method"
    changed_at: datetime  # when the notice was raised
    # Invoice emails: overtime.invoice_mail.invoice_email_context's keys.
    invoice: Mapping[str, object] = field(default_factory=dict)


def notice_email(
    settings: Settings, figures: Figures, record: NoticeRecord | None = None
) -> mailer.RenderedEmail:
    """The notice's subject, text and HTML in the account's language."""
    locale = formatting.language(figures.locale)
    return mailer.render(figures.kind, locale, _context(settings, figures, record, locale))


def notice_headers(kind: str, account_id: str, *, resent: bool = False) -> dict[str, str]:
    """The headers every notice carries; the account id is for the operator's bounce
    handling (mail clients do not show it)."""
    headers = {"X-Overtime-Notice": kind, "X-Overtime-Account": account_id}
    if resent:
        headers["X-Overtime-Resent"] = "true"
    return headers


def notice_message_id(kind: str, period_start: datetime, notice_key: str, account_id: str) -> str:
    """The same Message-ID for every copy of one notice, so a mail system recognises a
    retry's duplicate; digests keep the key and account id out of what customers see."""
    key_digest = hashlib.sha256(notice_key.encode()).hexdigest()[:16]
    account_digest = hashlib.sha256(account_id.encode()).hexdigest()[:12]
    return f"<{kind}.{period_key(period_start)}.{key_digest}.{account_digest}@overtime>"


def resend_message_id(kind: str, period_start: datetime, resend_id: str, account_id: str) -> str:
    """A resent notice is a new message: its own id, never the original's."""
    return f"<{kind}.{period_key(period_start)}.resend-{resend_id}.{account_id}@overtime>"


def _context(
    settings: Settings, figures: Figures, record: NoticeRecord | None, locale: str
) -> dict[str, object]:
    def url(page: str) -> str:
        return mailer.app_url(settings, page)

    context: dict[str, object] = {
        **mailer.base_context(settings),
        "extra_minutes": formatting.minutes(figures.extra_seconds, locale),
        "cost": formatting.money(figures.extra_cost_cents, locale),
        "limit": formatting.limit(figures.limit_cents, figures.limit_minutes, locale),
        "price": formatting.money(figures.price_cents, locale),
        "period": formatting.period(
            figures.period_start, figures.period_end, figures.timezone, locale
        ),
        "settings_url": url("plan" if figures.kind == PLAN_CHANGED else "extra-minutes"),
        "payment_url": url("payment"),
        "invoices_url": url("invoices"),
        "plan_url": url("plan"),
        "alerts_url": url("alerts"),
        "link": figures.link,
        "final": figures.final,
        "cause": figures.cause,
    }
    if record is None:
        return context  # the templates' defaults stand in for the rest
    return {
        **context,
        "usage": formatting.usage_of_limit(
            extra_seconds=figures.extra_seconds,
            extra_cost_cents=figures.extra_cost_cents,
            limit_cents=figures.limit_cents,
            limit_minutes=figures.limit_minutes,
            locale=locale,
        ),
        "limit_equivalent": _limit_equivalent(figures, record, locale),
        "percent": record.percent,
        "thresholds": ", ".join(str(p) for p in record.alert_percents),
        "fee": formatting.money(record.monthly_fee_cents, locale),
        "included": record.included_minutes,
        "extra_available": record.extra_available,
        "plan_name": _plan_name(record.plan),
        "old_plan_name": _plan_name(record.old_plan),
        "method": record.method or _generic_method(locale),
        "changed_at": formatting.date_time(record.changed_at, figures.timezone, locale),
        **record.invoice,
    }


def _plan_name(plan: str | None) -> str:
    return (plan or "–").replace("_", " ").title()


def _generic_method(locale: str) -> str:
    return "eine neue Zahlungsmethode" if locale == "de" else "a new payment method"


def _limit_equivalent(figures: Figures, record: NoticeRecord, locale: str) -> str:
    """What the limit amounts to in the other unit: its EUR value for a minutes limit,
    the minutes it buys for a EUR limit."""
    if figures.limit_minutes is not None and figures.limit_cents is not None:
        money = formatting.money(figures.limit_cents, locale)
        return f"entspricht {money}" if locale == "de" else f"{money}"
    seconds = record.extra_allowed_seconds
    if seconds is None and figures.limit_cents is not None and figures.price_cents:
        seconds = figures.limit_cents * 60 // figures.price_cents
    if not seconds:
        return ""
    minutes = formatting.minutes(seconds, locale)
    return f"entspricht {minutes} Minuten" if locale == "de" else f"{minutes} minutes"


# --- the finance team's month-end close report -------------------------------------------


def close_report_email(report: CloseReport) -> mailer.TextEmail:
    """The close report's summary for finance (the CSV goes with it as an attachment)."""

    def euros(cents: int) -> str:
        return formatting.money(cents, FINANCE_LANGUAGE)

    return mailer.TextEmail(
        subject=(
            f"Month-end close {report.period}: {euros(report.invoiced_cents)} invoiced, "
            f"{report.mismatches} mismatches"
        ),
        text=(
            f"Month-end close for {report.period}\n\n"
            f"Accounts: {report.accounts}\n"
            f"Extra minutes: {formatting.minutes(report.extra_seconds, 'en')}\n"
            f"Invoiced: {euros(report.invoiced_cents)}\n"
            f"Paid: {euros(report.paid_cents)}\n"
            f"Failed: {euros(report.failed_cents)}\n"
            f"Pending: {euros(report.pending_cents)}\n"
            f"Accounts stopped at their limit: {report.accounts_stopped_at_limit}\n"
            f"Mismatches: {report.mismatches}\n\nThe CSV has one line per account period.\n"
        ),
    )


def close_report_message_id(period: str) -> str:
    """One Message-ID per month: a retried send is recognisably the same message."""
    return f"<close-report.{period}@overtime>"
