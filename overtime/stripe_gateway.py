"""The one narrow door to Stripe: customers, payment methods and the period invoice.

Everything else in Overtime (API, workflow activities) calls this module and never the
``stripe`` SDK, so what we rely on from Stripe is listed here and nowhere else, and the
test harness (``devstack.fake_stripe``) only has to fill the gaps this module uses.

Exactly-once invoicing rests on three layers, because each alone has a hole:

1. Every write carries an idempotency key derived from (account, period, step), so a
   retry within Stripe's 24 h key window replays the first answer instead of creating a
   second object; this also covers "Stripe did it but the answer was lost".
2. Before creating, we search by metadata (``account_id`` + ``period_key``), because
   keys expire after 24 h and a retry a day later would otherwise invoice twice. Search
   lags writes by up to a minute, which is exactly the window (1) covers.
3. Each step first reads the invoice and skips work already done (an invoice that is
   no longer a draft is not finalized again; a paid, void or still-processing invoice is
   not charged again). The one exception is an invoice the same call just created (its
   create not replayed): it holds exactly the lines that call added, so the call
   finalizes it without reading it, and the finalize's answer is the read.

SEPA debits: Stripe keeps the invoice ``open`` and its PaymentIntent ``processing`` for
days (up to 14 business days) before the debit succeeds or fails. We report that as
``status="processing"``: not paid, not failed, and never charged again while it lasts
(Stripe would refuse a second ``/pay`` anyway); dunning starts only once the PaymentIntent
reports a real failure (``requires_payment_method`` with ``last_payment_error``).

The invoice is created first (draft, ``pending_invoice_items_behavior=exclude``,
``auto_advance=false``) and its lines are then added *to that invoice*, so a crash between
the two never leaves a pending item that some other invoice would sweep up, and Stripe
never finalizes or charges on its own schedule: the workflow decides when.

Lines and VAT. Each line (one per extra-minute price; a plan change mid-period gives two)
is an invoice item with ``amount`` = the billing rules' ``cost_cents`` and a description
that states minutes, seconds and the price per minute. Not ``quantity`` = seconds ×
``unit_amount_decimal`` = price / 60: a per-second price such as 29/60 ct has no exact
12-decimal form, so Stripe's product can land on the other side of a half cent
(30 s × 0.483333333333 = 14.49999… ct → 14, where the rules bill 15 ct), and an invoice
that does not equal the ledger is refused (:class:`InvoiceMismatchError`). The VAT is a
Stripe Tax Rate on every item (``inclusive`` for a gross catalog, exclusive for a net
one), found again by our metadata key among the active tax rates (Stripe has no tax-rate
search; its list is consistent at once) before one is created, with an idempotency key.
Stripe computes the tax per line; what it computed is what we store and report.

Errors: a card decline while charging is a result (``status="payment_failed"``), not an
exception. A card that is declined already when it is attached (Stripe refuses e.g.
``pm_card_visa_chargeDeclined`` at attach and at SetupIntent confirmation) raises the
SDK's ``stripe.CardError`` from :meth:`StripeGateway.attach_default_payment_method`, and
nothing is stored as the customer's default.
Everything else raises the SDK's ``stripe.StripeError`` subclasses (or our
:class:`StripeGatewayError`); :func:`is_retryable` tells transient from permanent.

The client is a per-instance ``stripe.StripeClient``; no module-level ``stripe.api_key``
or ``api_base`` is touched, so test and production gateways can coexist in one process.
Calls are synchronous (the SDK's requests transport): call from sync activities or via
``asyncio.to_thread`` from async code.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

import stripe

if TYPE_CHECKING:
    from stripe.params import InvoiceItemCreateParams, TaxRateCreateParams

# "processing": open at Stripe while the payment (a SEPA debit) is being collected.
InvoiceStatus = Literal["draft", "open", "processing", "paid", "payment_failed", "void"]
# Statuses that must not be charged (again): settled, or a debit still under way.
NOT_CHARGEABLE: tuple[InvoiceStatus, ...] = ("paid", "void", "processing")

# Off-session retries are our workflow's decision (Temporal retry policy), but a short
# SDK retry on connection errors/5xx/409 with the same idempotency key is free and hides
# blips from the API's synchronous calls.
DEFAULT_MAX_NETWORK_RETRIES = 2
DEFAULT_TIMEOUT_SECONDS = 30.0
STRIPE_JS_URL = "https://js.stripe.com/v3/"

# Expanding the invoice's payments down to the PaymentIntent is how an open invoice
# tells "nothing tried yet" from "last attempt declined" from "SEPA debit processing".
_PAYMENT_EXPAND = ["payments.data.payment.payment_intent"]


class StripeGatewayError(Exception):
    """A Stripe answer that contradicts what we asked for; retrying will not help."""


class InvoiceMismatchError(StripeGatewayError):
    """The period's invoice already exists with different content (amount, currency)."""


@dataclass(frozen=True)
class PeriodLine:
    """One invoice line: extra seconds at one price, and the text the customer reads."""

    seconds: int
    unit_price_cents: int
    amount_cents: int  # billing.rules.cost_cents(seconds, unit_price_cents)
    description: str
    plan: str = ""


@dataclass(frozen=True)
class PaymentMethodInfo:
    """What the web app shows and billing needs of a saved payment method."""

    id: str
    type: str  # "card" | "sepa_debit"
    brand: str | None  # cards: "visa", "mastercard", ...
    last4: str | None
    bank_code: str | None  # SEPA: the bank code part of the IBAN


@dataclass(frozen=True)
class InvoiceResult:
    """Our view of one Stripe invoice; ``status`` is one of :data:`InvoiceStatus`."""

    invoice_id: str
    status: InvoiceStatus
    # The lines' sum (Stripe's ``subtotal``): the billing rules' amount at catalog prices,
    # net for a net catalog, VAT included for a gross one.
    amount_cents: int
    currency: str
    hosted_invoice_url: str | None
    failure_code: str | None  # "card_declined", "authentication_required", ...
    tax_cents: int = 0  # the VAT Stripe computed (sum of ``total_taxes``)
    total_cents: int = 0  # what is charged (``amount_due``): subtotal + exclusive VAT
    net_cents: int = 0  # ``total_excluding_tax``


class _PacedRequestsClient(stripe.RequestsClient):
    """The SDK's requests transport, taking a slot of the request budget before each
    request. The SDK's retry loop (``request_with_retries``) calls ``request`` once per
    attempt, so a retry is paced as the first try was: every request Stripe counts passes
    here, and nothing else in Overtime sends any."""

    def __init__(self, before_request: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._before_request = before_request

    def request(self, *args: Any, **kwargs: Any) -> Any:
        self._before_request()
        return super().request(*args, **kwargs)

    def request_stream(self, *args: Any, **kwargs: Any) -> Any:
        self._before_request()
        return super().request_stream(*args, **kwargs)


class StripeGateway:
    """All Stripe access of Overtime. One instance per configuration; thread-safe."""

    def __init__(
        self,
        api_key: str,
        api_base: str | None = None,
        publishable_key: str = "pk_test_overtime",
        currency: str = "eur",
        *,
        max_network_retries: int = DEFAULT_MAX_NETWORK_RETRIES,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        before_request: Callable[[], None] | None = None,
    ) -> None:
        """``before_request`` is called before every HTTP request to Stripe, the SDK's
        network retries included, and may block: the shared request budget
        (``overtime.stripe_rate.StripeRateLimiter.gate``). None: requests go unpaced."""
        self._api_base = api_base.rstrip("/") if api_base else None
        self._tax_rates: dict[str, str] = {}  # metadata key → id; rates are never edited
        self._publishable_key = publishable_key
        self._currency = currency.lower()
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": self._api_base} if self._api_base else None,
            max_network_retries=max_network_retries,
            http_client=_PacedRequestsClient(before_request, timeout=timeout_seconds)
            if before_request is not None
            else stripe.RequestsClient(timeout=timeout_seconds),
        )

    @property
    def publishable_key(self) -> str:
        return self._publishable_key

    @property
    def currency(self) -> str:
        return self._currency

    @property
    def stripe_js_url(self) -> str:
        """Stripe.js for the browser: the real one, or the fake's stand-in (same origin
        as the fake API, which is where the stand-in sends its requests)."""
        if self._api_base is None:
            return STRIPE_JS_URL
        return f"{self._api_base}/js.stripe.com/v3/"

    # --- customers ----------------------------------------------------------------------

    def ensure_customer(self, account_id: str, email: str) -> str:
        """The Stripe customer id for an account, created on first use.

        Found by ``metadata['account_id']`` first; created with the idempotency key
        ``customer:{account_id}`` so concurrent or retried first calls converge on one
        customer while the search index has not caught up yet. The create's parameters are
        the same for every caller (the metadata only): a key reused with other parameters
        is Stripe's ``idempotency_error``, and within search's lag a second call may carry
        another email (the customer just changed it). The email is set by an update, which
        a replayed create (answering with the first caller's customer) also gets.
        """
        found = self._client.v1.customers.search(
            params={"query": _metadata_query(account_id=account_id), "limit": 10}
        )
        customers = sorted(found.data, key=lambda c: (c.created, c.id))
        if customers:
            customer = customers[0]
            if customer.email != email:  # receipts and dunning mails go to the current one
                self._client.v1.customers.update(customer.id, params={"email": email})
            return customer.id
        created = self._client.v1.customers.create(
            params={"metadata": {"account_id": account_id}},
            options={"idempotency_key": f"customer:{account_id}"},
        )
        if created.email != email:
            self._client.v1.customers.update(created.id, params={"email": email})
        return created.id

    def sync_customer(self, customer_id: str, *, locale: str, vat_id: str | None) -> None:
        """Write the customer's invoice settings as the account has them, in one write
        (plus the VAT id: a list, and a create once):

        * ``preferred_locales`` = ``[locale]`` (a Stripe locale such as "de-DE"): Stripe
          writes the invoice PDF, receipts and hosted page in it;
        * ``vat_id`` (an EU VAT id for reverse charge, or None): recorded as an ``eu_vat``
          tax id (added, never removed: old invoices keep naming theirs) and
          ``tax_exempt="reverse"`` (Stripe prints "Reverse charge"), else ``"none"``.

        Written without reading first: both fields are set to absolute values, so writing
        what Stripe already has changes nothing and a retry writes the same again. The
        caller remembers what it wrote (``Account.stripe_customer_synced``) and calls this
        only when the account's settings differ from it; a read to compare would cost the
        one request the write costs. The tax id is looked up first because a second
        ``tax_ids.create`` would add a duplicate.

        Not parameters of the create in ``ensure_customer``: that create's idempotency key
        must replay for every caller (the payment page creates customers without knowing a
        locale), so its parameters never vary.
        """
        if vat_id:
            known = self._client.v1.customers.tax_ids.list(customer_id, params={"limit": 100})
            if not any(tax_id.value == vat_id for tax_id in known.data):
                self._client.v1.customers.tax_ids.create(
                    customer_id, params={"type": "eu_vat", "value": vat_id}
                )
        self._client.v1.customers.update(
            customer_id,
            params={"preferred_locales": [locale], "tax_exempt": "reverse" if vat_id else "none"},
        )

    # --- VAT ------------------------------------------------------------------------------

    def ensure_tax_rate(
        self,
        *,
        percentage: Decimal,
        inclusive: bool,
        display_name: str,
        country: str,
        jurisdiction: str | None = None,
    ) -> str:
        """The id of the active Stripe Tax Rate with these terms, created on first use.

        Found by ``metadata['overtime_tax']`` among the active rates of that kind (a
        list, which Stripe keeps consistent at once, unlike search); created with an
        idempotency key from the same terms, so concurrent first calls converge. A
        rate's percentage and inclusiveness cannot change in Stripe: other terms make
        another rate, the old one stays on the invoices that used it.
        """
        number = format(percentage.normalize(), "f")
        key = (
            f"{country}:{number}:{'inclusive' if inclusive else 'exclusive'}:"
            f"{display_name}:{jurisdiction or ''}"
        )
        cached = self._tax_rates.get(key)
        if cached is not None:
            return cached
        found = []
        for rate in self._client.v1.tax_rates.list(
            params={"active": True, "inclusive": inclusive, "limit": 100}
        ).auto_paging_iter():
            metadata = rate.metadata.to_dict() if rate.metadata is not None else {}
            if metadata.get("overtime_tax") == key and Decimal(str(rate.percentage)) == percentage:
                found.append(rate)
        if found:
            rate_id = sorted(found, key=lambda r: (r.created, r.id))[0].id
        else:
            params: TaxRateCreateParams = {
                "display_name": display_name,
                # The exact decimal ("7.5", not a float's repr); the form encoding is the same.
                "percentage": number,  # type: ignore[typeddict-item]
                "inclusive": inclusive,
                "country": country,
                "tax_type": "vat",
                "metadata": {"overtime_tax": key},
            }
            if jurisdiction:
                params["jurisdiction"] = jurisdiction
            rate_id = self._client.v1.tax_rates.create(
                params=params, options={"idempotency_key": f"tax_rate:{key}"}
            ).id
        self._tax_rates[key] = rate_id
        return rate_id

    # --- payment methods ----------------------------------------------------------------

    def create_setup_intent(self, customer_id: str, account_id: str) -> str:
        """A SetupIntent for saving a card or SEPA mandate for later off-session charges;
        returns the client secret the browser confirms with Stripe.js."""
        intent = self._client.v1.setup_intents.create(
            params={
                "customer": customer_id,
                # Not payment_method_types: since API 2026-09-30.endive that is a 400
                # (payment_method_types_no_longer_supported); the allowed list filters.
                "allowed_payment_method_types": ["card", "sepa_debit"],
                "usage": "off_session",
                "metadata": {"account_id": account_id},
            }
        )
        if not intent.client_secret:
            raise StripeGatewayError(f"SetupIntent {intent.id} came without a client secret")
        return intent.client_secret

    def attach_default_payment_method(
        self, customer_id: str, payment_method_id: str
    ) -> PaymentMethodInfo:
        """Attach (unless a confirmed SetupIntent already did) and make it the default
        for invoices. Returns the method actually stored: Stripe's test ids such as
        ``pm_card_visa`` resolve to a new id.

        A card its issuer declines raises ``stripe.CardError`` (402, ``code`` and
        ``error.decline_code`` tell why) before anything changed: the default is set
        only after a successful attach."""
        method: stripe.PaymentMethod | None
        try:
            method = self._client.v1.payment_methods.retrieve(payment_method_id)
        except stripe.InvalidRequestError:
            method = None  # let attach report the real problem
        if method is None or _id(method.customer) != customer_id:
            method = self._client.v1.payment_methods.attach(
                payment_method_id, params={"customer": customer_id}
            )
        self._client.v1.customers.update(
            customer_id, params={"invoice_settings": {"default_payment_method": method.id}}
        )
        return _payment_method_info(method)

    def detach_payment_method(self, payment_method_id: str) -> None:
        """Detach; a method that is already detached counts as done."""
        method = self._client.v1.payment_methods.retrieve(payment_method_id)
        if method.customer is None:
            return
        self._client.v1.payment_methods.detach(payment_method_id)

    def default_payment_method(self, customer_id: str) -> PaymentMethodInfo | None:
        customer = self._client.v1.customers.retrieve(
            customer_id, params={"expand": ["invoice_settings.default_payment_method"]}
        )
        if getattr(customer, "deleted", False):
            return None
        settings = customer.invoice_settings
        method: Any = settings.default_payment_method if settings is not None else None
        if method is None:
            return None
        if isinstance(method, str):
            method = self._client.v1.payment_methods.retrieve(method)
        return _payment_method_info(method)

    # --- the period invoice ---------------------------------------------------------------

    def find_period_invoice(self, account_id: str, period_key: str) -> InvoiceResult | None:
        """The invoice of (account, period) by metadata search, or None.

        Search trails writes by up to about a minute; within that window callers are
        protected by the idempotency keys, not by this lookup. A draft found here can
        still lack its line if a ``create_period_invoice`` call was interrupted, so code
        that means to invoice should call ``create_period_invoice`` (find-or-create and
        complete) rather than act on this result.
        """
        invoice = self._find_period_invoice(account_id, period_key)
        return None if invoice is None else self.retrieve_invoice(invoice.id)

    def create_period_invoice(
        self,
        *,
        customer_id: str,
        account_id: str,
        period_key: str,
        extra_seconds: int,
        unit_price_cents: int,
        amount_cents: int,
        description: str,
        period_start: datetime | None = None,
        period_end: datetime | None = None,
        lines: Sequence[PeriodLine] = (),
        tax_rate_id: str | None = None,
        footer: str | None = None,
        finalize_key: str | None = None,
    ) -> InvoiceResult:
        """The draft invoice with the period's extra-minute lines; idempotent. With
        ``finalize_key``: finalized too (the key of :meth:`finalize_invoice`), open.

        ``amount_cents`` is the billing rules' rounded total: the lines' sum (Stripe's
        subtotal), to which Stripe adds an exclusive ``tax_rate_id`` or in which it
        shows an inclusive one. ``lines`` (one per price) must add up to it; without
        them the invoice has one line, ``description``, of ``extra_seconds`` at
        ``unit_price_cents``. Seconds and prices are recorded in each line's metadata for
        support and reconciliation. Calling again returns the same invoice and adds only
        missing lines; an existing invoice with a different amount or currency raises
        :class:`InvoiceMismatchError` rather than charging something the billing rules
        did not compute. ``footer`` (the reverse-charge note) is set when the invoice is
        created.

        Requests: a search, then for a new invoice its create, one per line and (with
        ``finalize_key``) the finalize, whose answer is the invoice with Stripe's totals:
        an invoice this call created holds exactly the lines it added, which add up to
        ``amount_cents``, so no read is needed before or after finalizing. An invoice
        found by the search or replayed by the create's key is an earlier attempt's and is
        read again (a replay is a snapshot from before its lines; search trails writes),
        completed, checked and then finalized.
        """
        if amount_cents <= 0:
            raise ValueError("a period invoice needs a positive amount")
        if extra_seconds < 0 or unit_price_cents < 0:
            raise ValueError("extra_seconds and unit_price_cents cannot be negative")
        if not lines:
            lines = [PeriodLine(extra_seconds, unit_price_cents, amount_cents, description)]
        if sum(line.amount_cents for line in lines) != amount_cents or any(
            min(line.seconds, line.unit_price_cents, line.amount_cents) < 0 for line in lines
        ):
            raise ValueError("invoice lines must be non-negative and add up to amount_cents")
        metadata = {"account_id": account_id, "period_key": period_key}
        invoice = self._find_period_invoice(account_id, period_key)
        created_here = False
        # The invoice as Stripe has it now (expanded like retrieve_invoice), while it is.
        current: stripe.Invoice | None = None
        if invoice is None:
            invoice = self._client.v1.invoices.create(
                params={
                    "customer": customer_id,
                    "currency": self._currency,
                    "collection_method": "charge_automatically",
                    "auto_advance": False,
                    "pending_invoice_items_behavior": "exclude",
                    "metadata": metadata,
                    **({"footer": footer} if footer else {}),
                },
                options={"idempotency_key": f"{account_id}:{period_key}:invoice"},
            )
            if _replayed(invoice):
                # The search has not caught up yet (Stripe's lags up to a minute) and the
                # key replayed the first answer: a snapshot from before the lines were
                # added and the invoice finalized. Act on the invoice as it is now.
                invoice = current = self._retrieve(invoice.id)
            else:
                created_here = True
        present = (
            _period_lines(invoice, account_id, period_key) if invoice.status == "draft" else None
        )
        for index, line in enumerate(lines):
            if present is None or index in present or line.amount_cents == 0:
                continue  # not a draft any more, already added, or nothing to bill
            item_params: InvoiceItemCreateParams = {
                "customer": customer_id,
                "invoice": invoice.id,
                "amount": line.amount_cents,
                "currency": self._currency,
                "description": line.description,
                "metadata": {
                    **metadata,
                    "line": str(index),
                    "extra_seconds": str(line.seconds),
                    "unit_price_cents": str(line.unit_price_cents),
                    **({"plan": line.plan} if line.plan else {}),
                },
            }
            if tax_rate_id is not None:
                item_params["tax_rates"] = [tax_rate_id]
            if period_start is not None and period_end is not None:
                item_params["period"] = {
                    "start": int(period_start.timestamp()),
                    "end": int(period_end.timestamp()),
                }
            # Line 0 keeps the key of the one-line invoices from before lines existed.
            suffix = "" if index == 0 else f":{index}"
            self._client.v1.invoice_items.create(
                params=item_params,
                options={"idempotency_key": f"{account_id}:{period_key}:invoiceitem{suffix}"},
            )
            current = None  # a line more than the last read showed
        if created_here and finalize_key is not None:
            # Ours from its first request: its lines are the ones just added (each create
            # succeeded), so its amount is amount_cents > 0 and it is still a draft; a
            # concurrent attempt carries the same keys and gets these answers replayed.
            # The amount is checked all the same, on what finalizing answered.
            return self._checked(
                self._finalize(invoice.id, finalize_key), account_id, period_key, amount_cents
            )
        if current is None:  # found by search (which trails writes), or lines added since
            current = self._retrieve(invoice.id)
        result = self._checked(_invoice_result(current), account_id, period_key, amount_cents)
        if finalize_key is not None and current.status == "draft":
            return self._finalize(invoice.id, finalize_key)  # its amount was just checked
        return result

    def _checked(
        self, result: InvoiceResult, account_id: str, period_key: str, amount_cents: int
    ) -> InvoiceResult:
        """``result``, unless its amount or currency is not what the billing rules say."""
        if result.amount_cents != amount_cents or result.currency != self._currency:
            raise InvoiceMismatchError(
                f"invoice {result.invoice_id} for {account_id}/{period_key} is "
                f"{result.amount_cents} {result.currency}, expected {amount_cents} "
                f"{self._currency}"
            )
        return result

    def finalize_invoice(self, invoice_id: str, idempotency_key: str) -> InvoiceResult:
        """Draft → open (Stripe assigns the number and hosted page); no-op otherwise."""
        current = self._retrieve(invoice_id)
        if current.status != "draft":
            return _invoice_result(current)
        if current.amount_due <= 0:
            # Our drafts are never empty unless create_period_invoice was interrupted
            # between creating the invoice and adding its line. Finalizing would settle
            # it as paid at 0 for good; refuse so the caller completes it first.
            raise StripeGatewayError(
                f"invoice {invoice_id} has no amount yet; call create_period_invoice first"
            )
        return self._finalize(invoice_id, idempotency_key)

    def _finalize(self, invoice_id: str, idempotency_key: str) -> InvoiceResult:
        """Finalize a draft the caller knows to be complete; its answer is the invoice
        (expanded like :meth:`retrieve_invoice`), so nothing is read after it."""
        try:
            finalized = self._client.v1.invoices.finalize_invoice(
                invoice_id,
                params={"auto_advance": False, "expand": _PAYMENT_EXPAND},
                options={"idempotency_key": idempotency_key},
            )
        except stripe.InvalidRequestError:
            current = self._retrieve(invoice_id)
            if current.status != "draft":  # someone else finalized it meanwhile
                return _invoice_result(current)
            raise
        return _invoice_result(finalized)

    def pay_invoice(self, invoice_id: str, idempotency_key: str) -> InvoiceResult:
        """Charge the customer's default payment method off-session, at most once.

        Use a new ``idempotency_key`` per deliberate attempt (for example after the
        customer replaced a declined card): the same key replays the first outcome.
        A decline returns ``payment_failed`` with ``failure_code``; so does a customer
        without a default method (``no_payment_method``), because that is also dunning,
        not an error. SEPA debits return ``processing`` for days; calling again
        meanwhile does not charge again (no ``/pay`` is sent).

        Requests: one read (the invoice with its PaymentIntents and its customer, whose
        default payment method it names, expanded) and the ``/pay``; a decline adds a read.
        """
        current = self._client.v1.invoices.retrieve(
            invoice_id, params={"expand": [*_PAYMENT_EXPAND, "customer"]}
        )
        if current.status in ("paid", "void", "uncollectible"):
            return _invoice_result(current)
        intent = _latest_payment_intent(current)
        if intent is not None and intent.status == "processing":
            return _invoice_result(current)  # "processing": the debit is under way
        if current.default_payment_method is None and current.customer is not None:
            if not self._has_default_method(current.customer):
                return _replace_status(
                    _invoice_result(current), "payment_failed", "no_payment_method"
                )
        try:
            paid = self._client.v1.invoices.pay(
                invoice_id,
                params={"off_session": True, "expand": _PAYMENT_EXPAND},
                options={"idempotency_key": idempotency_key},
            )
        except stripe.CardError as decline:
            after = _invoice_result(self._retrieve(invoice_id))
            if after.status in NOT_CHARGEABLE:
                return after
            return _replace_status(after, "payment_failed", decline.code or "card_declined")
        except stripe.InvalidRequestError:
            after = _invoice_result(self._retrieve(invoice_id))
            # Paid by a concurrent attempt, or a concurrent attempt's debit is now
            # processing (Stripe refuses /pay then: invoice_payment_intent_requires_action).
            if after.status in NOT_CHARGEABLE:
                return after
            raise
        return _invoice_result(paid)

    def retrieve_invoice(self, invoice_id: str) -> InvoiceResult:
        return _invoice_result(self._retrieve(invoice_id))

    def _has_default_method(self, customer: Any) -> bool:
        """Whether the invoice's customer (expanded: a Customer, or deleted) has a default
        payment method for invoices, as :meth:`default_payment_method` would say."""
        if isinstance(customer, str):  # not expanded after all: ask Stripe
            return self.default_payment_method(customer) is not None
        if getattr(customer, "deleted", False):
            return False
        settings = getattr(customer, "invoice_settings", None)
        return settings is not None and settings.default_payment_method is not None

    # --- internals ----------------------------------------------------------------------

    def _retrieve(self, invoice_id: str) -> stripe.Invoice:
        return self._client.v1.invoices.retrieve(invoice_id, params={"expand": _PAYMENT_EXPAND})

    def _find_period_invoice(self, account_id: str, period_key: str) -> stripe.Invoice | None:
        found = self._client.v1.invoices.search(
            params={
                "query": _metadata_query(account_id=account_id, period_key=period_key),
                "limit": 100,
            }
        )
        if not found.data:
            return None
        # Normally one. If ever more, the first non-void one is the one all retries
        # converged on; a void one alone means someone cancelled it on purpose.
        ranked = sorted(
            found.data, key=lambda i: (i.status in ("void", "uncollectible"), i.created, i.id)
        )
        return ranked[0]


def is_retryable(error: BaseException) -> bool:
    """True for failures a later identical call can fix (rate limits, Stripe 5xx,
    idempotency conflicts, network trouble); False for requests Stripe rejected on
    their merits (declines, invalid or unauthorised requests) and our own checks."""
    if isinstance(error, stripe.APIConnectionError | stripe.RateLimitError):
        return True
    if isinstance(
        error,
        stripe.CardError
        | stripe.InvalidRequestError
        | stripe.AuthenticationError
        | stripe.PermissionError
        | stripe.SignatureVerificationError,
    ):
        return False
    if isinstance(error, stripe.StripeError):  # APIError, IdempotencyError, v2 errors
        status = error.http_status
        if isinstance(error, stripe.APIError) and status is None:
            return True  # an unparsable answer: treat like a broken connection
        return status is not None and (status >= 500 or status in (409, 429))
    return isinstance(error, ConnectionError | TimeoutError)


# --- mapping helpers ------------------------------------------------------------------


def _metadata_query(**pairs: str) -> str:
    """A Stripe search query matching all metadata pairs."""
    return " AND ".join(f"metadata['{key}']:{_quote(value)}" for key, value in pairs.items())


def _quote(value: str) -> str:
    """A search-query string literal; account ids come from our API, so escape them."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _replayed(obj: stripe.StripeObject) -> bool:
    """True when Stripe answered from its idempotency store (``Idempotent-Replayed``)."""
    response = getattr(obj, "last_response", None)
    headers = getattr(response, "headers", None) or {}
    value = headers.get("Idempotent-Replayed") or headers.get("idempotent-replayed")
    return value == "true"


def _id(value: Any) -> str | None:
    """An expandable field's id, whether it came expanded or not."""
    if value is None or isinstance(value, str):
        return value
    return str(value.id)


def _payment_method_info(method: stripe.PaymentMethod) -> PaymentMethodInfo:
    if method.type == "card" and method.card is not None:
        return PaymentMethodInfo(
            id=method.id,
            type="card",
            brand=method.card.brand,
            last4=method.card.last4,
            bank_code=None,
        )
    if method.type == "sepa_debit" and method.sepa_debit is not None:
        return PaymentMethodInfo(
            id=method.id,
            type="sepa_debit",
            brand=None,
            last4=method.sepa_debit.last4,
            bank_code=method.sepa_debit.bank_code,
        )
    return PaymentMethodInfo(id=method.id, type=method.type, brand=None, last4=None, bank_code=None)


def _period_lines(invoice: stripe.Invoice, account_id: str, period_key: str) -> set[int]:
    """Which of the period's lines the invoice has (by the ``line`` metadata; a line
    from before multi-line invoices has none and is line 0)."""
    present: set[int] = set()
    for line in invoice.lines.auto_paging_iter() if invoice.lines.has_more else invoice.lines.data:
        metadata = line.metadata.to_dict() if line.metadata is not None else {}
        if metadata.get("account_id") == account_id and metadata.get("period_key") == period_key:
            with contextlib.suppress(ValueError):
                present.add(int(metadata.get("line", "0")))
    return present


def _latest_payment_intent(invoice: stripe.Invoice) -> stripe.PaymentIntent | None:
    """The PaymentIntent of the most recent attempt (needs ``_PAYMENT_EXPAND``)."""
    payments = invoice.payments.data if invoice.payments is not None else []
    latest = None
    for payment in sorted(payments, key=lambda p: p.created):  # stable: ties keep order
        intent = payment.payment.payment_intent
        if isinstance(intent, stripe.PaymentIntent):
            latest = intent
    return latest


def _invoice_result(invoice: stripe.Invoice) -> InvoiceResult:
    status: InvoiceStatus
    failure_code: str | None = None
    if invoice.status == "paid":
        status = "paid"
    elif invoice.status in ("void", "uncollectible"):
        status = "void"
    elif invoice.status == "draft":
        status = "draft"
    else:
        status = "open"
        intent = _latest_payment_intent(invoice)
        if intent is not None:
            error = intent.last_payment_error
            if intent.status == "processing":  # a SEPA debit, for days: wait, never retry
                status = "processing"
            elif error is not None and intent.status in ("requires_payment_method", "canceled"):
                status = "payment_failed"
                failure_code = error.code or error.decline_code or "payment_failed"
            elif intent.status == "requires_action":  # off-session: nobody to authenticate
                status = "payment_failed"
                failure_code = "authentication_required"
    if invoice.id is None:
        raise StripeGatewayError("Stripe returned an invoice without an id")
    taxes = invoice.total_taxes or []
    return InvoiceResult(
        invoice_id=invoice.id,
        status=status,
        amount_cents=int(invoice.subtotal),
        currency=invoice.currency,
        hosted_invoice_url=invoice.hosted_invoice_url,
        failure_code=failure_code,
        tax_cents=sum(int(tax.amount) for tax in taxes),
        total_cents=int(invoice.amount_due),
        net_cents=int(
            invoice.total_excluding_tax
            if invoice.total_excluding_tax is not None
            else invoice.total - sum(int(tax.amount) for tax in taxes)
        ),
    )


def _replace_status(
    result: InvoiceResult, status: InvoiceStatus, failure_code: str | None
) -> InvoiceResult:
    return replace(result, status=status, failure_code=failure_code)
