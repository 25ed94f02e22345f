"""What the period invoice says, in the customer's language: line texts, period, locale.

Pure functions (no I/O), used by the invoicing activity for the Stripe invoice lines and
by the notification emails, so the invoice and the emails describe a period the same way.

Line text, German and English::

    Zusätzliche Minuten (Starter): 26 Min. 36 Sek. × 0,39 €/Min., Zeitraum 01.11.–30.11.2026
    Extra minutes (Starter): 26 min 36 s × €0.39/min, period 1–30 Nov 2026

Minutes are written as minutes and seconds, not as decimal minutes, because seconds are
billed per second: "26,6 Min." could be 1,593 to 1,598 seconds, and × 0,39 € it would not
always give the cent amount on the line; minutes and seconds × price per minute, rounded
half up once, is exactly the line's amount (``billing.rules.cost_cents``).

The period is given by its days in the account's time zone; the last day is the day
before ``period_end`` (periods end at midnight: 1 Dec 00:00 → 30 Nov). A period that
does not end at midnight (test periods of minutes) ends on the day of its end.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from overtime.formatting import day_range, language, minutes_seconds, money

# Stripe's preferred_locales for our two languages: German as written in Germany,
# English with day-month dates and the euro sign in front, as in Britain.
STRIPE_LOCALES = {"de": "de-DE", "en": "en-GB"}


def stripe_locale(locale: str | None) -> str:
    """The Stripe customer's ``preferred_locales`` entry for an account's locale."""
    return STRIPE_LOCALES[language(locale)]


def period_days(period_start: datetime, period_end: datetime, timezone: str) -> tuple[date, date]:
    """First and last day of a period in ``timezone`` (see the module docstring)."""
    zone = ZoneInfo(timezone)
    first = period_start.astimezone(zone).date()
    last = (period_end.astimezone(zone) - timedelta(microseconds=1)).date()
    return first, max(first, last)


def period_text(period_start: datetime, period_end: datetime, timezone: str, locale: str) -> str:
    """``01.11.–30.11.2026`` / ``1–30 Nov 2026``, shortened where months or years agree."""
    return day_range(*period_days(period_start, period_end, timezone), locale)


def plan_label(plan: str) -> str:
    """A catalog plan id as a customer reads it: ``business`` → ``Business``."""
    return plan.replace("_", " ").replace("-", " ").title()


def line_description(
    *,
    seconds: int,
    unit_price_cents: int,
    period_start: datetime,
    period_end: datetime,
    timezone: str,
    locale: str,
    plan: str = "",
) -> str:
    """One invoice line: minutes and seconds × price per minute, and the period."""
    de = language(locale) == "de"
    label = "Zusätzliche Minuten" if de else "Extra minutes"
    if plan:
        label += f" ({plan_label(plan)})"
    price = money(unit_price_cents, locale) + ("/Min." if de else "/min")
    period = period_text(period_start, period_end, timezone, locale)
    period_word = "Zeitraum" if de else "period"
    return f"{label}: {minutes_seconds(seconds, locale)} × {price}, {period_word} {period}"


# EU member states by VAT id prefix (Greece is "EL"); reverse charge needs another one
# than the seller's.
EU_VAT_PREFIXES = frozenset(
    "AT BE BG CY CZ DE DK EE EL ES FI FR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK".split()
)


def normalise_vat_id(vat_id: str | None) -> str | None:
    """``de 123 456 789`` → ``DE123456789``; None (or "") stays None."""
    if not vat_id:
        return None
    return "".join(vat_id.split()).replace(".", "").replace("-", "").upper() or None


def is_reverse_charge(vat_id: str | None, seller_country: str) -> bool:
    """True for a business customer in another EU state with a VAT id of that state's
    shape (two letters and 2 to 13 letters or digits): § 13b UStG, Art. 196 VAT Directive.
    A German customer's VAT id changes nothing: a domestic sale carries German VAT."""
    normal = normalise_vat_id(vat_id)
    if normal is None or not re.fullmatch(r"[A-Z]{2}[0-9A-Z]{2,13}", normal):
        return False
    prefix = normal[:2]
    seller = "EL" if seller_country.upper() == "GR" else seller_country.upper()
    return prefix in EU_VAT_PREFIXES and prefix != seller


def reverse_charge_note(locale: str) -> str:
    """The invoice note an EU business customer with a VAT id gets (§ 13b UStG)."""
    if language(locale) == "de":
        return (
            "Steuerschuldnerschaft des Leistungsempfängers (Reverse Charge, § 13b UStG): "
            "Die Umsatzsteuer schuldet der Leistungsempfänger."
        )
    return (
        "Reverse charge: VAT is payable by the recipient of the service (Art. 196 VAT Directive)."
    )
