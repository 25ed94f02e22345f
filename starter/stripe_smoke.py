"""``overtime stripe-smoke``: one billing period through Stripe test mode, the product's way.

A person with a Stripe test key (``STRIPE_API_KEY=sk_test_…``) runs this to see that what
our tests assume of Stripe is what Stripe does. Every billing step goes through
:class:`overtime.stripe_gateway.StripeGateway`, the product's one door to Stripe, with the
same settings the API and the worker read (``overtime/settings.py``), so without
``STRIPE_API_KEY`` it walks the local fake Stripe (``OVERTIME_STRIPE_API_BASE``) instead.

The walk, one printed line per step (step, result, time, Stripe ids):

* a customer for a fresh account id ``smoke-<UTC time>-<random>`` (runs never collide),
  its invoice settings, and the catalog's tax rate;
* a SetupIntent confirmed with ``pm_card_visa`` and made the default, then a period
  invoice with one line: created, finalized, paid;
* a card that attaches but fails every charge (``pm_card_chargeCustomerFail``): the
  invoice ends ``payment_failed`` with a failure code; after a good card, a retry pays it;
* a card declined already at attach (``pm_card_visa_chargeDeclined``), both the way the
  API attaches and the way the web app's SetupIntent does: a ``card_error``, nothing saved;
* SEPA Direct Debit (``pm_success_de``): the payment is ``processing`` first and is polled
  until paid; with ``--sepa-failure`` also ``pm_failed_de`` until ``payment_failed``;
* with ``--events``: each invoice's ``invoice.*`` events in Stripe's event list, the ones a
  webhook endpoint (``stripe listen --forward-to``) receives;
* the clean-up: open invoices voided, the customer deleted (not with ``--keep``).

What the browser does in the web app (confirming the SetupIntent with Stripe.js) and the
clean-up (voiding open invoices, deleting the customer) are not the gateway's business;
they use a plain ``stripe.StripeClient`` with the same key and address.

Any result other than Stripe's documented one stops the walk with exit code 1 and says
what Stripe answered; a live key (``sk_live_…``) is refused before any request.
"""

from __future__ import annotations

import re
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TextIO

import stripe
from pydantic import ValidationError

from overtime import invoice_text
from overtime.catalog import load_tax
from overtime.payments import gateway_for
from overtime.settings import Settings
from overtime.stripe_gateway import InvoiceResult, StripeGateway, StripeGatewayError

if TYPE_CHECKING:
    from stripe.params import SetupIntentConfirmParams

# The CLI's exit codes (starter/cli/exits.py), with the meaning they have for this command.
EXIT_OK = 0
EXIT_UNEXPECTED = 1  # Stripe answered something other than its documented behaviour
EXIT_USAGE = 2  # refused to run: a live key, or settings that do not parse
EXIT_UNREACHABLE = 3  # Stripe (or the fake) could not be reached

# Stripe's test payment methods (https://docs.stripe.com/testing).
GOOD_CARD = "pm_card_visa"
CHARGE_FAILS_CARD = "pm_card_chargeCustomerFail"  # attaches; every charge is declined
DECLINED_AT_ATTACH_CARD = "pm_card_visa_chargeDeclined"  # refused when attached
SEPA_SUCCESS = "pm_success_de"  # processing, then succeeded
SEPA_FAILURE = "pm_failed_de"  # processing, then requires_payment_method

# One period's extra minutes: 10 min at 0.29 EUR, the starter plan's price.
SMOKE_SECONDS = 600
SMOKE_PRICE_CENTS = 29
SMOKE_AMOUNT_CENTS = 290

DEFAULT_SEPA_TIMEOUT_SECONDS = 300.0
SEPA_POLL_SECONDS = 1.0
# Stripe raises events within seconds; the events list may lag a little behind.
DEFAULT_EVENTS_TIMEOUT_SECONDS = 60.0

# The invoice events a webhook endpoint receives for each walked invoice (what the
# product's webhook handler acts on, starter/payments.py), by the walk's outcome.
EVENTS_BY_OUTCOME = {
    "paid": ("invoice.finalized", "invoice.paid"),
    "declined_then_paid": ("invoice.finalized", "invoice.payment_failed", "invoice.paid"),
    "payment_failed": ("invoice.finalized", "invoice.payment_failed"),
}


def _live_key(key: str) -> bool:
    return key.startswith(("sk_live_", "rk_live_"))


@dataclass(frozen=True)
class SmokeOptions:
    keep: bool = False  # leave the customer and its invoices in Stripe
    sepa_failure: bool = False  # also walk a SEPA debit that fails after processing
    sepa_timeout_seconds: float = DEFAULT_SEPA_TIMEOUT_SECONDS
    account_id: str | None = None  # default: smoke-<UTC time>-<random>
    events: bool = False  # also check the invoice events Stripe raised (GET /v1/events)
    events_timeout_seconds: float = DEFAULT_EVENTS_TIMEOUT_SECONDS


class SmokeFailure(Exception):
    """A step's result is not Stripe's documented one; ``message`` says what Stripe answered."""

    def __init__(self, step: str, message: str, exit_code: int = EXIT_UNEXPECTED) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.message = message
        self.exit_code = exit_code


@dataclass
class Outcome:
    """What a step prints: its result and the Stripe ids it touched."""

    result: str
    ids: list[str] = field(default_factory=list)


def _error_details(error: stripe.StripeError) -> dict[str, Any]:
    """The ``error`` object of Stripe's JSON answer ({} when it has none)."""
    body = error.json_body if isinstance(error.json_body, dict) else {}
    details = body.get("error")
    return details if isinstance(details, dict) else {}


def describe_stripe_error(error: stripe.StripeError) -> str:
    """Stripe's answer in one line: status, type/code (decline code), message, request id."""
    details = _error_details(error)
    kind = details.get("type") or type(error).__name__
    code = error.code or details.get("code")
    text = f"HTTP {error.http_status} {kind}" if error.http_status else kind
    if code:
        text += f"/{code}"
    decline = details.get("decline_code")
    if decline:
        text += f" ({decline})"
    message = details.get("message") or error.user_message or str(error)
    text += f": {message}"
    if error.request_id:
        text += f" [request {error.request_id}]"
    return text


def _status_text(result: InvoiceResult) -> str:
    if result.failure_code:
        return f"{result.status} ({result.failure_code})"
    return result.status


def _invoice_text(result: InvoiceResult) -> str:
    return f"{result.invoice_id} {_status_text(result)}"


class SmokeRun:
    """One walk through Stripe for one fresh account; ``run()`` returns the exit code."""

    def __init__(
        self,
        settings: Settings,
        options: SmokeOptions,
        *,
        out: TextIO | None = None,
        err: TextIO | None = None,
    ) -> None:
        self.settings = settings
        self.options = options
        self.out = out or sys.stdout  # looked up now: tests and pipes swap sys.stdout
        self.err = err or sys.stderr
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        self.account_id = options.account_id or f"smoke-{stamp}-{secrets.token_hex(2)}"
        self.gateway: StripeGateway = gateway_for(settings)
        # The browser's and the clean-up's calls: not the product's, so not the gateway's.
        base = settings.stripe_api_base
        self.client = stripe.StripeClient(
            settings.stripe_api_key,
            base_addresses={"api": base.rstrip("/")} if base else None,
            max_network_retries=2,
        )
        self.customer_id: str | None = None
        self.tax_rate_id: str | None = None
        self.started_at = int(time.time())
        self.outcomes: dict[str, str] = {}  # invoice id → EVENTS_BY_OUTCOME key

    # --- output -----------------------------------------------------------------------

    def _line(self, step: str, result: str, seconds: float, ids: list[str]) -> None:
        print(f"{step:<18} {result:<40} {seconds:6.2f} s  {' '.join(ids)}".rstrip(), file=self.out)
        self.out.flush()

    def _step(self, name: str, action: Callable[[], Outcome]) -> Outcome:
        """Run one step, print its line; a Stripe error becomes a :class:`SmokeFailure`."""
        started = time.monotonic()
        try:
            outcome = action()
        except SmokeFailure as failure:  # named after this step, whatever check raised it
            self._line(name, "FAILED", time.monotonic() - started, [])
            raise SmokeFailure(name, failure.message, failure.exit_code) from failure
        except stripe.APIConnectionError as error:
            self._line(name, "FAILED", time.monotonic() - started, [])
            raise SmokeFailure(
                name,
                f"cannot reach Stripe at {self._where()} ({_network_cause(error)})",
                EXIT_UNREACHABLE,
            ) from error
        except stripe.StripeError as error:
            self._line(name, "FAILED", time.monotonic() - started, [])
            raise SmokeFailure(name, f"Stripe answered {describe_stripe_error(error)}") from error
        except StripeGatewayError as error:  # an answer the gateway found contradictory
            self._line(name, "FAILED", time.monotonic() - started, [])
            raise SmokeFailure(name, f"the gateway refused Stripe's answer: {error}") from error
        self._line(name, outcome.result, time.monotonic() - started, outcome.ids)
        return outcome

    def _where(self) -> str:
        base = self.settings.stripe_api_base
        return base if base else "https://api.stripe.com"

    # --- the walk ---------------------------------------------------------------------

    def run(self) -> int:
        base = self.settings.stripe_api_base
        target = "Stripe (api.stripe.com)" if base is None else f"{base} (OVERTIME_STRIPE_API_BASE)"
        print(f"stripe-smoke: account {self.account_id} against {target}", file=self.out)
        started = time.monotonic()
        code = EXIT_OK
        try:
            self._walk()
        except SmokeFailure as failure:
            print(f"error: {failure.step}: {failure.message}", file=self.err, flush=True)
            code = failure.exit_code
        finally:
            self._cleanup()
        verdict = "all steps as Stripe documents" if code == EXIT_OK else "FAILED"
        print(f"stripe-smoke: {verdict} ({time.monotonic() - started:.1f} s)", file=self.out)
        return code

    def _walk(self) -> None:
        self._step("customer", self._customer)
        self._step("tax_rate", self._tax_rate)
        card = self._step("setup_intent", lambda: self._setup(GOOD_CARD)).ids[-1]
        self._step("default_method", lambda: self._make_default(card))
        invoice = self._invoice("card")
        self._step("pay", lambda: self._pay(invoice, "card:1", expect="paid"))
        self.outcomes[invoice.invoice_id] = "paid"

        self._step("attach_failing", lambda: self._make_default(CHARGE_FAILS_CARD))
        declined = self._invoice("decline")
        self._step(
            "pay_declined",
            lambda: self._pay(declined, "decline:1", expect="payment_failed"),
        )
        self._step("attach_good", lambda: self._make_default(GOOD_CARD))
        self._step("pay_retry", lambda: self._pay(declined, "decline:2", expect="paid"))
        self.outcomes[declined.invoice_id] = "declined_then_paid"

        self._step("attach_declined", self._attach_declined)
        self._step("setup_declined", self._setup_declined)

        self._sepa("sepa", SEPA_SUCCESS, expect="paid")
        if self.options.sepa_failure:
            self._sepa("sepa_fail", SEPA_FAILURE, expect="payment_failed")
        if self.options.events:
            self._step("events", self._await_events)

    def _customer(self) -> Outcome:
        email = f"{self.account_id}@example.com"
        customer_id = self.gateway.ensure_customer(self.account_id, email)
        self.customer_id = customer_id
        self.gateway.sync_customer(
            customer_id, locale=invoice_text.stripe_locale("de"), vat_id=None
        )
        customer = self.client.v1.customers.retrieve(customer_id)
        if customer.livemode:  # run_smoke refused live keys already; be sure anyway
            raise SmokeFailure("customer", f"{customer_id} is a live-mode customer")
        return Outcome("created", [customer_id])

    def _tax_rate(self) -> Outcome:
        tax = load_tax(self.settings.plans_file)
        self.tax_rate_id = self.gateway.ensure_tax_rate(
            percentage=tax.rate_percent,
            inclusive=tax.inclusive,
            display_name=tax.display_name,
            country=tax.country,
            jurisdiction=tax.jurisdiction,
        )
        kind = "inclusive" if tax.inclusive else "exclusive"
        return Outcome(f"{tax.rate_text('en')} {kind}", [self.tax_rate_id])

    def _setup(self, payment_method: str, *, sepa: bool = False) -> Outcome:
        """Create a SetupIntent the product's way and confirm it as the browser would."""
        assert self.customer_id is not None
        secret = self.gateway.create_setup_intent(self.customer_id, self.account_id)
        setup_id = secret.split("_secret_")[0]
        params: SetupIntentConfirmParams = {"payment_method": payment_method}
        if sepa:  # a SEPA mandate needs the customer's acceptance (Stripe.js sends it)
            params["mandate_data"] = {
                "customer_acceptance": {
                    "type": "online",
                    "online": {"ip_address": "127.0.0.1", "user_agent": "overtime-stripe-smoke"},
                }
            }
        intent = self.client.v1.setup_intents.confirm(setup_id, params=params)
        method = intent.payment_method
        method_id = method if isinstance(method, str) or method is None else method.id
        if intent.status != "succeeded" or not method_id:
            raise SmokeFailure(
                "setup_intent",
                f"{setup_id} confirmed with {payment_method} is {intent.status!r} "
                f"(payment method {method_id}), expected succeeded",
            )
        return Outcome(f"succeeded ({payment_method})", [setup_id, method_id])

    def _make_default(self, payment_method: str) -> Outcome:
        assert self.customer_id is not None
        info = self.gateway.attach_default_payment_method(self.customer_id, payment_method)
        what = " ".join(part for part in (info.type, info.brand, info.last4) if part)
        return Outcome(f"default: {what}", [info.id])

    def _invoice(self, label: str) -> InvoiceResult:
        """The period invoice (draft with one line, the tax rate), then finalized."""
        assert self.customer_id is not None and self.tax_rate_id is not None
        period_end = datetime.now(UTC).replace(microsecond=0)
        period_start = period_end - timedelta(days=30)
        description = invoice_text.line_description(
            seconds=SMOKE_SECONDS,
            unit_price_cents=SMOKE_PRICE_CENTS,
            period_start=period_start,
            period_end=period_end,
            timezone=self.settings.default_timezone,
            locale="de",
        )
        key = f"smoke-{label}"

        def create() -> Outcome:
            assert self.customer_id is not None
            draft = self.gateway.create_period_invoice(
                customer_id=self.customer_id,
                account_id=self.account_id,
                period_key=key,
                extra_seconds=SMOKE_SECONDS,
                unit_price_cents=SMOKE_PRICE_CENTS,
                amount_cents=SMOKE_AMOUNT_CENTS,
                description=description,
                period_start=period_start,
                period_end=period_end,
                tax_rate_id=self.tax_rate_id,
            )
            self._expect_status("invoice", draft, "draft")
            self._check_tax("invoice", draft)
            return Outcome(
                f"draft {draft.amount_cents} + tax {draft.tax_cents} = {draft.total_cents} "
                f"{draft.currency}",
                [draft.invoice_id],
            )

        invoice_id = self._step(f"invoice_{label}", create).ids[0]
        finalized: list[InvoiceResult] = []

        def finalize() -> Outcome:
            result = self.gateway.finalize_invoice(invoice_id, f"{self.account_id}:{key}:finalize")
            self._expect_status("finalize", result, "open")
            finalized.append(result)
            return Outcome("open", [invoice_id, *self._intent_ids(invoice_id)])

        self._step(f"finalize_{label}", finalize)
        return finalized[0]

    def _pay(self, invoice: InvoiceResult, attempt: str, *, expect: str) -> Outcome:
        result = self.gateway.pay_invoice(invoice.invoice_id, f"{self.account_id}:{attempt}")
        self._expect_status(f"pay {attempt}", result, expect)
        if expect == "payment_failed" and not result.failure_code:
            raise SmokeFailure(attempt, f"{invoice.invoice_id} failed without a failure code")
        return Outcome(
            _status_text(result), [invoice.invoice_id, *self._intent_ids(invoice.invoice_id)]
        )

    def _attach_declined(self) -> Outcome:
        """The API's attach with a card Stripe refuses: a card_error, the old default stays."""
        assert self.customer_id is not None
        before = self.gateway.default_payment_method(self.customer_id)
        try:
            info = self.gateway.attach_default_payment_method(
                self.customer_id, DECLINED_AT_ATTACH_CARD
            )
        except stripe.CardError as decline:
            after = self.gateway.default_payment_method(self.customer_id)
            if (after and after.id) != (before and before.id):
                raise SmokeFailure(
                    "attach_declined",
                    f"the default payment method changed to {after and after.id} "
                    "although the attach was declined",
                ) from decline
            return Outcome(_decline_text(decline), [after.id] if after else [])
        raise SmokeFailure(
            "attach_declined",
            f"{DECLINED_AT_ATTACH_CARD} attached as {info.id}; Stripe declines it at attach",
        )

    def _setup_declined(self) -> Outcome:
        """The web app's SetupIntent with the same card: 402, the intent wants a new method."""
        assert self.customer_id is not None
        secret = self.gateway.create_setup_intent(self.customer_id, self.account_id)
        setup_id = secret.split("_secret_")[0]
        try:
            intent = self.client.v1.setup_intents.confirm(
                setup_id, params={"payment_method": DECLINED_AT_ATTACH_CARD}
            )
        except stripe.CardError as decline:
            after = self.client.v1.setup_intents.retrieve(setup_id)
            if after.status != "requires_payment_method":
                raise SmokeFailure(
                    "setup_declined",
                    f"{setup_id} is {after.status!r} after the decline, expected "
                    "requires_payment_method",
                ) from decline
            return Outcome(_decline_text(decline), [setup_id])
        raise SmokeFailure(
            "setup_declined",
            f"{setup_id} confirmed with {DECLINED_AT_ATTACH_CARD} is {intent.status!r}; "
            "Stripe declines that card",
        )

    def _sepa(self, label: str, payment_method: str, *, expect: str) -> None:
        setup = self._step(f"setup_{label}", lambda: self._setup(payment_method, sepa=True))
        method = setup.ids[-1]
        self._step(f"default_{label}", lambda: self._make_default(method))
        invoice = self._invoice(label)
        self._step(f"pay_{label}", lambda: self._pay_processing(invoice, label))
        self._step(f"settled_{label}", lambda: self._await_settled(invoice, expect))
        self.outcomes[invoice.invoice_id] = expect

    def _pay_processing(self, invoice: InvoiceResult, label: str) -> Outcome:
        """A SEPA debit is not paid at once: the invoice stays open, its intent processing."""
        result = self.gateway.pay_invoice(invoice.invoice_id, f"{self.account_id}:{label}:1")
        intent_ids = self._intent_ids(invoice.invoice_id)
        status = self._intent_status(invoice.invoice_id)
        # The gateway says "processing" (or, reading an open invoice, "open" while the
        # intent is processing); the debit may settle any moment after the answer.
        processing = result.status == "processing" or (
            result.status == "open" and status == "processing"
        )
        if not processing:
            raise SmokeFailure(
                f"pay_{label}",
                f"{_invoice_text(result)}, payment intent {status!r}; a SEPA debit is "
                "processing first",
            )
        # Paying again while it processes must not start a second debit.
        again = self.gateway.pay_invoice(invoice.invoice_id, f"{self.account_id}:{label}:2")
        if again.status == "void" or self._intent_ids(invoice.invoice_id) != intent_ids:
            raise SmokeFailure(
                f"pay_{label}",
                f"a second pay while processing gave {_invoice_text(again)} with payment "
                f"intents {self._intent_ids(invoice.invoice_id)} (before: {intent_ids})",
            )
        text = "processing" if result.status == "processing" else "open (intent processing)"
        return Outcome(text, [invoice.invoice_id, *intent_ids])

    def _await_settled(self, invoice: InvoiceResult, expect: str) -> Outcome:
        deadline = time.monotonic() + self.options.sepa_timeout_seconds
        while True:
            result = self.gateway.retrieve_invoice(invoice.invoice_id)
            if result.status not in ("open", "processing"):
                break
            if time.monotonic() > deadline:
                raise SmokeFailure(
                    "settled",
                    f"{invoice.invoice_id} still {result.status} (intent "
                    f"{self._intent_status(invoice.invoice_id)!r}) after "
                    f"{self.options.sepa_timeout_seconds:g} s (--sepa-timeout)",
                )
            time.sleep(SEPA_POLL_SECONDS)
        self._expect_status("settled", result, expect)
        if expect == "payment_failed" and not result.failure_code:
            raise SmokeFailure("settled", f"{invoice.invoice_id} failed without a failure code")
        return Outcome(_status_text(result), [invoice.invoice_id])

    def _await_events(self) -> Outcome:
        """Each walked invoice's events, as Stripe lists (and webhooks deliver) them."""
        wanted = {
            (invoice_id, kind)
            for invoice_id, outcome in self.outcomes.items()
            for kind in EVENTS_BY_OUTCOME[outcome]
        }
        kinds = sorted({kind for _, kind in wanted})
        deadline = time.monotonic() + self.options.events_timeout_seconds
        while True:
            seen: dict[tuple[str, str], str] = {}
            listed = self.client.v1.events.list(
                params={"types": kinds, "created": {"gte": self.started_at - 5}, "limit": 100}
            )
            for event in listed.auto_paging_iter():
                subject = event.data.object.to_dict().get("id")
                seen.setdefault((str(subject), str(event.type)), str(event.id))
            missing = sorted(wanted - seen.keys())
            if not missing:
                break
            if time.monotonic() > deadline:
                names = ", ".join(f"{kind} of {invoice_id}" for invoice_id, kind in missing)
                raise SmokeFailure(
                    "events",
                    f"Stripe lists no {names} after {self.options.events_timeout_seconds:g} s",
                )
            time.sleep(SEPA_POLL_SECONDS)
        return Outcome(f"{len(wanted)} invoice events", [seen[key] for key in sorted(wanted)])

    # --- checks and look-ups -------------------------------------------------------------

    def _expect_status(self, step: str, result: InvoiceResult, expect: str) -> None:
        if result.status != expect:
            raise SmokeFailure(step, f"expected {expect}, Stripe says {_invoice_text(result)}")

    def _check_tax(self, step: str, result: InvoiceResult) -> None:
        tax = load_tax(self.settings.plans_file)
        expected_total = result.amount_cents + (0 if tax.inclusive else result.tax_cents)
        if result.amount_cents != SMOKE_AMOUNT_CENTS or result.total_cents != expected_total:
            raise SmokeFailure(
                step,
                f"{result.invoice_id}: subtotal {result.amount_cents}, tax {result.tax_cents}, "
                f"total {result.total_cents}; expected subtotal {SMOKE_AMOUNT_CENTS} and "
                f"total {expected_total}",
            )
        if tax.rate_percent > 0 and result.tax_cents <= 0:
            raise SmokeFailure(step, f"{result.invoice_id} carries no tax")

    def _payments(self, invoice_id: str) -> list[Any]:
        invoice = self.client.v1.invoices.retrieve(
            invoice_id, params={"expand": ["payments.data.payment.payment_intent"]}
        )
        payments = invoice.payments.data if invoice.payments is not None else []
        return sorted(payments, key=lambda p: p.created)

    def _intent_ids(self, invoice_id: str) -> list[str]:
        ids = []
        for payment in self._payments(invoice_id):
            intent = payment.payment.payment_intent
            if intent is not None:
                ids.append(intent if isinstance(intent, str) else intent.id)
        return ids

    def _intent_status(self, invoice_id: str) -> str | None:
        payments = self._payments(invoice_id)
        if not payments:
            return None
        intent = payments[-1].payment.payment_intent
        if intent is None or isinstance(intent, str):
            return None
        return str(intent.status)

    # --- clean-up --------------------------------------------------------------------------

    def _cleanup(self) -> None:
        """Void what is open, delete drafts and the customer; best effort, never fails."""
        if self.customer_id is None:
            return
        if self.options.keep:
            self._line("cleanup", "kept (--keep)", 0.0, [self.customer_id])
            return
        started = time.monotonic()
        done: dict[str, list[str]] = {"voided": [], "deleted": []}
        left: list[str] = []
        try:
            with self._tolerated(left, "the invoice list"):
                for invoice in self.client.v1.invoices.list(
                    params={"customer": self.customer_id, "limit": 100}
                ).auto_paging_iter():
                    with self._tolerated(left, str(invoice.id)):
                        if invoice.status == "draft":
                            self.client.v1.invoices.delete(str(invoice.id))
                            done["deleted"].append(str(invoice.id))
                        elif invoice.status == "open":
                            self.client.v1.invoices.void_invoice(str(invoice.id))
                            done["voided"].append(str(invoice.id))
            with self._tolerated(left, self.customer_id):
                self.client.v1.customers.delete(self.customer_id)
                done["deleted"].append(self.customer_id)
        finally:
            parts = [f"{what} {len(ids)}" for what, ids in done.items() if ids]
            if left:
                parts.append(f"left {len(left)}")
            self._line(
                "cleanup",
                ", ".join(parts) or "nothing to do",
                time.monotonic() - started,
                [*done["voided"], *done["deleted"], *left],
            )

    @contextmanager
    def _tolerated(self, left: list[str], what: str) -> Iterator[None]:
        """Note what could not be removed (and why, on stderr) and carry on."""
        try:
            yield
        except stripe.StripeError as error:
            left.append(what)
            print(
                f"warning: cleanup: {what} stays: {describe_stripe_error(error)}",
                file=self.err,
                flush=True,
            )


def _network_cause(error: stripe.APIConnectionError) -> str:
    """The SDK's "Network error: ..." part, without its paragraph of advice."""
    text = " ".join(str(error).split())
    found = re.search(r"Network error: (\w+)", text)
    return found.group(1) if found else text[:200]


def _decline_text(decline: stripe.CardError) -> str:
    details = _error_details(decline)
    code = decline.code or details.get("code") or "card_error"
    reason = details.get("decline_code")
    return f"declined {code}" + (f" ({reason})" if reason else "")


def run_smoke(
    options: SmokeOptions,
    *,
    settings: Settings | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """The command: refuse a live key, then walk; returns the exit code."""
    err = err or sys.stderr
    if settings is None:
        try:
            settings = Settings()
        except ValidationError as error:
            print(f"error: the settings do not parse: {error}", file=err, flush=True)
            return EXIT_USAGE
    if _live_key(settings.stripe_api_key):
        print(
            "error: STRIPE_API_KEY is a live key: stripe-smoke creates customers and charges "
            "cards, so it runs in test mode only. Use a test key (sk_test_…) from the "
            "Stripe dashboard's test mode.",
            file=err,
            flush=True,
        )
        return EXIT_USAGE
    return SmokeRun(settings, options, out=out, err=err).run()
