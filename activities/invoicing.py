"""Invoicing activities: the only code that charges money, through the Stripe gateway.

Exactly once, whatever fails: every Stripe call carries an idempotency key derived from
account, period and step, and because Stripe forgets keys after 24 hours (a worker may
be down longer) each step first looks for what an earlier attempt created (metadata
search in Stripe, the ``invoice`` row in our database). They run on the Stripe task
queue, whose worker is rate-limited below Stripe's request limit.

What the invoice says: one line per extra-minute price (``InvoiceInput.lines``; a plan
change mid-period gives two), each in the account's language (``overtime.invoice_text``)
with the amount the billing rules computed; VAT from the catalog's ``[tax]`` terms as a
Stripe Tax Rate on every line. The ``invoice`` row mirrors what Stripe computed:
``amount_cents`` the lines' sum at catalog prices, ``net_cents`` and ``tax_cents`` (their
sum is what is charged), and ``next_attempt_at`` while a failed payment awaits its retry.

``status`` is the gateway's :data:`~overtime.stripe_gateway.InvoiceStatus`, including
``processing`` while a SEPA debit is being collected (days at Stripe): such an invoice is
unpaid but not failed, so it is neither charged again nor dunned until Stripe reports the
debit's outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from billing.rules import period_key
from overtime import formatting, invoice_text
from overtime.catalog import TaxTerms, load_tax
from overtime.db import session_scope
from overtime.models import Account, Invoice
from overtime.observability import INVOICES, count_in_activity
from overtime.stripe_gateway import (
    InvoiceResult,
    PeriodLine,
    StripeGateway,
    is_retryable,
)
from workflows.types import ChargeRequest, InvoiceInput, InvoiceLine, InvoiceState

log = logging.getLogger(__name__)

# Error type the workflow's retry policy does not retry: Stripe refused the request
# itself (invalid, unauthorised), so sending it again cannot help.
REJECTED = "StripeRequestRejected"


def _default_tax() -> TaxTerms:
    from overtime.settings import get_settings  # the process's settings, read once

    return load_tax(get_settings().plans_file)


@dataclass(frozen=True)
class NextAttempt:
    """When the next automatic payment attempt of a period's invoice is due (None: none
    is planned any more); written by the invoice workflow after a failed payment."""

    account_id: str
    period_start: datetime
    next_attempt_at: datetime | None


@dataclass
class InvoicingActivities:
    database_url: str
    gateway_factory: Callable[[], StripeGateway]
    # The catalog's VAT terms ([tax] in plans.toml); by default the process settings'.
    tax: TaxTerms = field(default_factory=_default_tax)

    @activity.defn
    def create_invoice(self, request: InvoiceInput) -> InvoiceState:
        """Find or create the period's finalised invoice (a line per price, with VAT)."""
        account_id = request.profile.account_id
        key = period_key(request.period_start)
        gateway = self.gateway_factory()
        with session_scope(self.database_url) as session:
            account = session.get(Account, account_id)
            if account is None:
                raise ApplicationError(f"no account {account_id}", type=REJECTED)
            existing = self._row(session, account_id, request.period_start)
        # The language the customer reads now (the web app may have changed it since
        # the workflow started), in the account's time zone.
        locale = formatting.language(account.locale or request.profile.locale)
        timezone = account.timezone or request.profile.timezone
        lines = [
            PeriodLine(
                seconds=line.seconds,
                unit_price_cents=line.unit_price_cents,
                amount_cents=line.amount_cents,
                description=invoice_text.line_description(
                    seconds=line.seconds,
                    unit_price_cents=line.unit_price_cents,
                    period_start=request.period_start,
                    period_end=request.period_end,
                    timezone=timezone,
                    locale=locale,
                    plan=line.plan if len(request.lines) > 1 else "",
                ),
                plan=line.plan,
            )
            for line in _lines(request)
        ]
        reverse_vat_id = self._reverse_charge_vat_id(account)
        reverse = reverse_vat_id is not None
        try:
            customer_id = account.stripe_customer_id or gateway.ensure_customer(
                account_id, request.profile.email
            )
            # The customer's language and VAT settings at Stripe, written only when they
            # differ from what this account last wrote (no request at all otherwise);
            # also when the VAT id is gone: Stripe must stop printing "Reverse charge".
            synced = _synced(customer_id, invoice_text.stripe_locale(locale), reverse_vat_id)
            writes = account.stripe_customer_synced != synced
            if writes:
                gateway.sync_customer(
                    customer_id, locale=invoice_text.stripe_locale(locale), vat_id=reverse_vat_id
                )
        except Exception as err:
            raise _classified(err) from err
        if writes:  # outside the Stripe errors: a database error is retried as such
            self._record_synced(account_id, customer_id, request.profile.locale, synced)
        try:
            tax_rate_id = (
                None
                if reverse
                else gateway.ensure_tax_rate(
                    percentage=self.tax.rate_percent,
                    inclusive=self.tax.inclusive,
                    display_name=self.tax.display_name,
                    country=self.tax.country,
                    jurisdiction=self.tax.jurisdiction,
                )
            )
            # create_period_invoice looks for what an earlier attempt made (metadata
            # search), completes a half-made one and finalizes it (a no-op once it is
            # open), so it is safe to call again.
            invoice = gateway.create_period_invoice(
                customer_id=customer_id,
                account_id=account_id,
                period_key=key,
                extra_seconds=request.extra_seconds,
                unit_price_cents=request.unit_price_cents,
                amount_cents=request.amount_cents,
                description=lines[0].description,
                period_start=request.period_start,
                period_end=request.period_end,
                lines=lines,
                tax_rate_id=tax_rate_id,
                footer=invoice_text.reverse_charge_note(locale) if reverse else None,
                finalize_key=f"{account_id}:{key}:finalize",
            )
        except Exception as err:
            raise _classified(err) from err
        if invoice.amount_cents != request.amount_cents:
            # Never charge what the ledger does not say: stop and let a human look.
            raise ApplicationError(
                f"invoice {invoice.invoice_id} is {invoice.amount_cents} ct, "
                f"the period's extra minutes cost {request.amount_cents} ct",
                type=REJECTED,
            )
        self._store(request, invoice, existing_id=existing.id if existing else None)
        return _state(invoice)

    @activity.defn
    def pay_invoice(self, charge: ChargeRequest) -> InvoiceState:
        """Charge the invoice off-session; a decline is a result, not an error. A debit
        still processing is not charged again: the result says ``processing``.

        No read of its own first: the gateway's ``pay_invoice`` reads the invoice and
        sends no ``/pay`` for one that is paid, void or processing
        (:data:`~overtime.stripe_gateway.NOT_CHARGEABLE`)."""
        gateway = self.gateway_factory()
        try:
            invoice = gateway.pay_invoice(
                charge.stripe_invoice_id,
                f"{charge.account_id}:{period_key(charge.period_start)}:pay:{charge.attempt}",
            )
        except Exception as err:
            raise _classified(err) from err
        self._update(charge, invoice, attempts=charge.attempt + 1)
        return _state(invoice)

    @activity.defn
    def record_next_attempt(self, news: NextAttempt) -> None:
        """Mirror the dunning schedule's next attempt (the web app and the email show it)."""
        with session_scope(self.database_url) as session:
            row = self._row(session, news.account_id, news.period_start)
            if row is None or row.status not in ("payment_failed", "open"):
                return  # paid or void meanwhile: no attempt is due
            row.next_attempt_at = news.next_attempt_at
            row.updated_at = datetime.now(UTC)
            session.add(row)
            session.commit()

    @activity.defn
    def refresh_invoice(self, charge: ChargeRequest) -> InvoiceState:
        """Re-read the invoice from Stripe (after a webhook, or to reconcile a lost one)."""
        try:
            invoice = self.gateway_factory().retrieve_invoice(charge.stripe_invoice_id)
        except Exception as err:
            raise _classified(err) from err
        self._update(charge, invoice, attempts=None)
        return _state(invoice)

    # --- the database mirror ------------------------------------------------------------

    def _reverse_charge_vat_id(self, account: Account) -> str | None:
        """The account's VAT id when its invoices are reverse charge, else None. Only with
        net prices: a gross catalog's amounts contain German VAT, and taking it out would
        charge other than the ledger says."""
        vat_id = invoice_text.normalise_vat_id(account.vat_id)
        if self.tax.inclusive or not invoice_text.is_reverse_charge(vat_id, self.tax.country):
            return None
        return vat_id

    def _record_synced(
        self, account_id: str, customer_id: str, fallback_locale: str, synced: str
    ) -> None:
        """Remember the customer settings just written to Stripe, unless the account's
        changed since they were read: then forget them (None), so that the next run
        writes them again. Of two runs of one account that overlap across a change, the
        one that wrote the older settings so records nothing; only when its write reaches
        Stripe after the other's and its record lands before the other's (milliseconds)
        would the record name settings Stripe no longer has, until the next change. What
        is at stake is the PDF's language and its "Reverse charge" line, never an amount:
        the VAT is the invoice lines' tax rates, chosen per run from the account row."""
        with session_scope(self.database_url) as session:
            account = session.get(Account, account_id)
            if account is None:
                return
            locale = invoice_text.stripe_locale(account.locale or fallback_locale)
            now = _synced(customer_id, locale, self._reverse_charge_vat_id(account))
            account.stripe_customer_synced = synced if now == synced else None
            session.add(account)
            session.commit()

    def _row(self, session: Session, account_id: str, period_start: datetime) -> Invoice | None:
        return session.exec(
            select(Invoice).where(
                Invoice.account_id == account_id, Invoice.period_start == period_start
            )
        ).first()

    def _store(
        self, request: InvoiceInput, invoice: InvoiceResult, existing_id: int | None
    ) -> None:
        now = datetime.now(UTC)
        with session_scope(self.database_url) as session:
            row = session.get(Invoice, existing_id) if existing_id else None
            if row is None:
                row = Invoice(
                    account_id=request.profile.account_id,
                    period_start=request.period_start,
                    period_end=request.period_end,
                    extra_seconds=request.extra_seconds,
                    unit_price_cents=request.unit_price_cents,
                    amount_cents=request.amount_cents,
                    currency=request.currency,
                    created_at=now,
                    updated_at=now,
                )
            row.stripe_invoice_id = invoice.invoice_id
            row.status = invoice.status
            row.hosted_invoice_url = invoice.hosted_invoice_url
            row.net_cents, row.tax_cents = invoice.net_cents, invoice.tax_cents
            row.updated_at = now
            session.add(row)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()  # a concurrent attempt stored it: same invoice

    def _update(self, charge: ChargeRequest, invoice: InvoiceResult, attempts: int | None) -> None:
        with session_scope(self.database_url) as session:
            row = self._row(session, charge.account_id, charge.period_start)
            if row is None:
                return
            row.status = invoice.status
            row.failure_code = invoice.failure_code
            row.hosted_invoice_url = invoice.hosted_invoice_url or row.hosted_invoice_url
            if invoice.status != "payment_failed":
                row.next_attempt_at = None  # paid, void or being collected: nothing is due
            if attempts is not None:
                row.attempts = max(row.attempts, attempts)
            row.updated_at = datetime.now(UTC)
            session.add(row)
            session.commit()


def _synced(customer_id: str, stripe_locale: str, reverse_vat_id: str | None) -> str:
    """The record of the customer settings written to Stripe (``stripe_customer_synced``):
    which customer, its ``preferred_locales`` entry, and the VAT id of a reverse-charge
    customer (empty: ``tax_exempt="none"``). Ids and locales contain no ``|``."""
    return f"{customer_id}|{stripe_locale}|{reverse_vat_id or ''}"


def _lines(request: InvoiceInput) -> list[InvoiceLine]:
    """The invoice's lines: the workflow's, or one from the period's totals (periods
    without a plan change, and invoices started before lines existed)."""
    if request.lines:
        return list(request.lines)
    return [InvoiceLine(request.extra_seconds, request.unit_price_cents, request.amount_cents)]


def _state(invoice: InvoiceResult) -> InvoiceState:
    """What the workflow sees; ``amount_cents`` is what the customer pays (VAT
    included), which the invoice and payment emails show."""
    count_in_activity(INVOICES, status=invoice.status)
    return InvoiceState(
        stripe_invoice_id=invoice.invoice_id,
        status=invoice.status,
        amount_cents=invoice.total_cents,
        hosted_invoice_url=invoice.hosted_invoice_url,
        failure_code=invoice.failure_code,
    )


def _classified(err: Exception) -> Exception:
    """Transient Stripe trouble is retried by Temporal; anything else is final."""
    if is_retryable(err):
        return err
    return ApplicationError(f"Stripe refused the request: {err}", type=REJECTED, non_retryable=True)
