"""The Stripe gateway against the real localstripe behind ``devstack.fake_stripe``.

Nothing here is mocked: every call goes through the stripe SDK over HTTP to the harness,
which charges through localstripe's PaymentIntents, so declines really decline. Each test
uses fresh account ids, so they share one harness and stay independent.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TypeVar

import pytest
import stripe

from devstack.fake_stripe import FakeStripe, RequestRecord
from overtime.stripe_gateway import (
    InvoiceMismatchError,
    InvoiceResult,
    StripeGateway,
    StripeGatewayError,
    is_retryable,
)

T = TypeVar("T")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeStripe]:
    with FakeStripe() as harness:
        yield harness


@pytest.fixture
def gateway(fake: FakeStripe) -> Iterator[StripeGateway]:
    fake.clear_faults()
    # Search is consistent here unless a test sets Stripe's lag (the fake's default is a
    # lag; the tests that are about it set their own).
    fake.search_visibility_delay = 0.0
    yield StripeGateway(fake.secret_key, api_base=fake.api_base)
    fake.clear_faults()
    fake.search_visibility_delay = 0.0


@pytest.fixture
def strict_gateway(fake: FakeStripe) -> StripeGateway:
    """No SDK retries: each injected fault reaches the caller, as Temporal would see it."""
    return StripeGateway(fake.secret_key, api_base=fake.api_base, max_network_retries=0)


@pytest.fixture
def raw(fake: FakeStripe) -> stripe.StripeClient:
    """A plain SDK client for looking behind the gateway (charges, lines)."""
    return stripe.StripeClient(fake.secret_key, base_addresses={"api": fake.api_base})


def new_account() -> str:
    return f"acc_{uuid.uuid4().hex[:12]}"


def customer_with(gateway: StripeGateway, payment_method: str | None) -> tuple[str, str]:
    account = new_account()
    customer = gateway.ensure_customer(account, f"{account}@example.com")
    if payment_method is not None:
        gateway.attach_default_payment_method(customer, payment_method)
    return account, customer


def period_invoice(
    gateway: StripeGateway,
    account: str,
    customer: str,
    amount: int = 1234,
    period: str = "P1",
    *,
    description: str = "Extra minutes 49.4 min x 0.25 EUR",
    finalize_key: str | None = None,
) -> InvoiceResult:
    return gateway.create_period_invoice(
        customer_id=customer,
        account_id=account,
        period_key=period,
        extra_seconds=2962,
        unit_price_cents=25,
        amount_cents=amount,
        description=description,
        period_start=datetime(2026, 1, 1, tzinfo=UTC),
        period_end=datetime(2026, 2, 1, tzinfo=UTC),
        finalize_key=finalize_key,
    )


def keyed(fake: FakeStripe, path: str, key: str) -> list[RequestRecord]:
    """The POSTs to ``path`` that carried idempotency key ``key``, in order."""
    return [r for r in fake.requests("POST", path) if r.idempotency_key == key]


def pay_calls(fake: FakeStripe, invoice_id: str) -> int:
    """How many ``/pay`` requests reached the fake for this invoice."""
    return len(fake.requests("POST", f"/v1/invoices/{invoice_id}/pay"))


def payments(raw: stripe.StripeClient, customer: str) -> list[tuple[str, int]]:
    """(status, amount_received) of the customer's PaymentIntents. Stripe makes one per
    invoice when it is finalised and confirms it again on every attempt, so money taken
    twice would show as a second intent or an amount_received above the invoice's."""
    found = raw.v1.payment_intents.list(params={"customer": customer, "limit": 100})
    return [(intent.status, intent.amount_received) for intent in found.data]


# --- customers and payment methods ----------------------------------------------------


def test_customer_is_created_once_per_account(fake: FakeStripe, gateway: StripeGateway) -> None:
    account = new_account()
    first = gateway.ensure_customer(account, "one@example.com")
    again = gateway.ensure_customer(account, "one@example.com")
    fresh_instance = StripeGateway(fake.secret_key, api_base=fake.api_base)
    assert fresh_instance.ensure_customer(account, "one@example.com") == first
    assert again == first
    creations = keyed(fake, "/v1/customers", f"customer:{account}")
    # While search lags (the fake's default, like Stripe's) later calls replay the key.
    assert [(r.status, r.object_id) for r in creations] == [(200, first)] * len(creations)
    assert [r.replayed for r in creations] == [False] + [True] * (len(creations) - 1)


def test_customer_converges_while_search_lags(fake: FakeStripe, gateway: StripeGateway) -> None:
    fake.search_visibility_delay = 60  # Stripe's search index trails writes
    account = new_account()
    first = gateway.ensure_customer(account, "lag@example.com")
    second = StripeGateway(fake.secret_key, api_base=fake.api_base).ensure_customer(
        account, "lag@example.com"
    )
    assert second == first
    replays = [r.replayed for r in keyed(fake, "/v1/customers", f"customer:{account}")]
    assert replays == [False, True]


def test_customer_converges_when_the_email_changes_while_search_lags(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    # The customer changes the address a moment after the first payment page: the second
    # call replays the first create (same key, same parameters, never an
    # idempotency_error) and the customer gets the new address.
    fake.search_visibility_delay = 60
    account = new_account()
    first = gateway.ensure_customer(account, "old@example.com")
    second = gateway.ensure_customer(account, "new@example.com")
    assert second == first
    raw = stripe.StripeClient(fake.secret_key, base_addresses={"api": fake.api_base})
    assert raw.v1.customers.retrieve(first).email == "new@example.com"
    replays = [r.replayed for r in keyed(fake, "/v1/customers", f"customer:{account}")]
    assert replays == [False, True]


@pytest.mark.parametrize(
    ("test_id", "brand", "last4"),
    [("pm_card_visa", "visa", "4242"), ("pm_card_mastercard", "mastercard", "4444")],
)
def test_attach_test_card_becomes_default(
    gateway: StripeGateway, test_id: str, brand: str, last4: str
) -> None:
    _, customer = customer_with(gateway, None)
    info = gateway.attach_default_payment_method(customer, test_id)
    assert (info.type, info.brand, info.last4, info.bank_code) == ("card", brand, last4, None)
    assert info.id.startswith("pm_") and info.id != test_id
    assert gateway.default_payment_method(customer) == info


@pytest.mark.parametrize(
    ("test_id", "code", "decline_code"),
    [
        ("pm_card_visa_chargeDeclined", "card_declined", "generic_decline"),
        ("pm_card_visa_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
        ("pm_card_visa_chargeDeclinedLostCard", "card_declined", "lost_card"),
        ("pm_card_visa_chargeDeclinedStolenCard", "card_declined", "stolen_card"),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card", None),
        ("pm_card_chargeDeclinedIncorrectCvc", "incorrect_cvc", None),
        ("pm_card_chargeDeclinedProcessingError", "processing_error", None),
    ],
)
def test_card_declined_at_attach_saves_nothing(
    gateway: StripeGateway,
    raw: stripe.StripeClient,
    test_id: str,
    code: str,
    decline_code: str | None,
) -> None:
    """Stripe refuses these cards already when they are attached (docs.stripe.com/testing,
    "Declined payments"): a CardError, and the customer has no payment method after it."""
    _, customer = customer_with(gateway, None)
    with pytest.raises(stripe.CardError) as declined:
        gateway.attach_default_payment_method(customer, test_id)
    assert declined.value.http_status == 402 and declined.value.code == code
    if decline_code is not None:
        assert declined.value.error is not None
        assert declined.value.error.decline_code == decline_code
    assert not is_retryable(declined.value)
    assert gateway.default_payment_method(customer) is None
    attached = raw.v1.payment_methods.list(params={"customer": customer, "type": "card"})
    assert list(attached.data) == []


def test_attach_sepa_debit(gateway: StripeGateway) -> None:
    _, customer = customer_with(gateway, None)
    info = gateway.attach_default_payment_method(customer, "pm_success_de")
    assert (info.type, info.brand, info.last4, info.bank_code) == (
        "sepa_debit",
        None,
        "3000",
        "37040044",
    )
    assert gateway.default_payment_method(customer) == info


def test_setup_intent_confirmed_like_the_browser(
    gateway: StripeGateway, raw: stripe.StripeClient
) -> None:
    account, customer = customer_with(gateway, None)
    assert gateway.default_payment_method(customer) is None
    secret = gateway.create_setup_intent(customer, account)
    intent_id = secret.split("_secret_")[0]
    intent = raw.v1.setup_intents.retrieve(intent_id)
    assert intent.payment_method_types == ["card", "sepa_debit"]
    assert intent.usage == "off_session"
    method = raw.v1.payment_methods.create(
        params={
            "type": "sepa_debit",
            "sepa_debit": {"iban": "DE89370400440532013000"},
            "billing_details": {"name": "Jenny Rosen", "email": "jenny@example.com"},
        }
    )
    confirmed = raw.v1.setup_intents.confirm(
        intent_id,
        params={
            "payment_method": method.id,
            "mandate_data": {
                "customer_acceptance": {
                    "type": "online",
                    "online": {"ip_address": "127.0.0.1", "user_agent": "pytest"},
                }
            },
        },
    )
    assert confirmed.status == "succeeded"
    info = gateway.attach_default_payment_method(customer, method.id)
    assert (info.id, info.type, info.last4) == (method.id, "sepa_debit", "3000")


def test_detach_is_idempotent(gateway: StripeGateway, raw: stripe.StripeClient) -> None:
    _, customer = customer_with(gateway, None)
    info = gateway.attach_default_payment_method(customer, "pm_card_visa")
    gateway.detach_payment_method(info.id)
    gateway.detach_payment_method(info.id)
    assert raw.v1.payment_methods.retrieve(info.id).customer is None
    assert gateway.default_payment_method(customer) is None


# --- the period invoice ---------------------------------------------------------------


def test_period_invoice_create_finalize_pay(
    fake: FakeStripe, gateway: StripeGateway, raw: stripe.StripeClient
) -> None:
    account, customer = customer_with(gateway, "pm_card_visa")
    draft = period_invoice(gateway, account, customer, amount=1234)
    assert (draft.status, draft.amount_cents, draft.currency) == ("draft", 1234, "eur")
    assert draft.hosted_invoice_url is None and draft.failure_code is None

    lines = raw.v1.invoices.line_items.list(draft.invoice_id).data
    assert [(line.amount, line.currency) for line in lines] == [(1234, "eur")]
    assert lines[0].metadata["extra_seconds"] == "2962"
    assert lines[0].metadata["unit_price_cents"] == "25"
    assert lines[0].period.start == int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())

    opened = gateway.finalize_invoice(draft.invoice_id, f"{account}:P1:finalize")
    assert opened.status == "open" and opened.hosted_invoice_url
    assert gateway.finalize_invoice(draft.invoice_id, f"{account}:P1:finalize") == opened

    paid = gateway.pay_invoice(draft.invoice_id, f"{account}:P1:pay:1")
    assert (paid.status, paid.amount_cents, paid.failure_code) == ("paid", 1234, None)
    assert gateway.pay_invoice(draft.invoice_id, f"{account}:P1:pay:2").status == "paid"
    assert payments(raw, customer) == [("succeeded", 1234)]
    assert pay_calls(fake, draft.invoice_id) == 1  # the second call read "paid" and stopped
    assert gateway.retrieve_invoice(draft.invoice_id) == paid


def made_by(fake: FakeStripe, call: Callable[[], T]) -> tuple[T, list[str]]:
    """What ``call`` returned, and the requests it made ("GET /v1/invoices/{id}")."""
    before = len(fake.request_log)
    result = call()
    return result, [f"{r.method} {path_shape(r.path)}" for r in fake.request_log[before:]]


def path_shape(path: str) -> str:
    """``/v1/invoices/in_123/pay`` → ``/v1/invoices/{id}/pay`` (Stripe's id prefixes)."""
    return "/".join(
        "{id}" if p.split("_")[0] in ID_PREFIXES and "_" in p else p for p in path.split("/")
    )


ID_PREFIXES = {"in", "cus", "pm", "ii", "pi", "txi", "txr", "ch", "seti"}


def test_invoice_created_and_finalized_without_reading_it_back(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    """An invoice this call created holds exactly the lines it added: finalizing answers
    with Stripe's totals, so there is no read before or after. The same call again (an
    activity retry, search caught up or not) reads the invoice and finalizes nothing."""
    account, customer = customer_with(gateway, "pm_card_visa")
    key = f"{account}:P1:finalize"

    def create() -> InvoiceResult:
        return period_invoice(gateway, account, customer, finalize_key=key)

    opened, made = made_by(fake, create)
    assert made == [
        "GET /v1/invoices/search",
        "POST /v1/invoices",
        "POST /v1/invoiceitems",
        "POST /v1/invoices/{id}/finalize",
    ]
    assert (opened.status, opened.amount_cents, opened.total_cents) == ("open", 1234, 1234)
    assert opened.hosted_invoice_url and opened == gateway.retrieve_invoice(opened.invoice_id)
    again, made = made_by(fake, create)
    assert again == opened
    assert made == ["GET /v1/invoices/search", "GET /v1/invoices/{id}"]
    fake.search_visibility_delay = 60  # within search's lag the create's key replays
    assert made_by(fake, create) == (
        opened,
        ["GET /v1/invoices/search", "POST /v1/invoices", "GET /v1/invoices/{id}"],
    )
    assert [r.replayed for r in keyed(fake, f"/v1/invoices/{opened.invoice_id}/finalize", key)] == [
        False
    ]


def test_half_made_invoice_is_completed_then_finalized(
    fake: FakeStripe, strict_gateway: StripeGateway
) -> None:
    account, customer = customer_with(strict_gateway, "pm_card_visa")
    fake.inject_faults(status=503, count=1, path_prefix="/v1/invoiceitems", method="POST")
    with pytest.raises(stripe.APIError):
        period_invoice(strict_gateway, account, customer)
    finalize_key = f"{account}:P1:finalize"
    completed = period_invoice(strict_gateway, account, customer, finalize_key=finalize_key)
    assert (completed.status, completed.amount_cents) == ("open", 1234)
    with pytest.raises(InvoiceMismatchError):  # checked before finalizing, as before
        period_invoice(
            strict_gateway,
            account,
            customer,
            999,
            description="Extra minutes",
            finalize_key=finalize_key,
        )


def test_retry_while_search_lags_acts_on_the_invoice_as_it_is_now(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    """A retry within Stripe's search lag: the create replays its first answer (a draft
    without lines); the gateway re-reads instead of adding the line again, so a line text
    that changed meanwhile (the customer switched language) is no idempotency error."""
    fake.search_visibility_delay = 60
    account, customer = customer_with(gateway, "pm_card_visa")
    first = period_invoice(gateway, account, customer)
    opened = gateway.finalize_invoice(first.invoice_id, f"{account}:P1:finalize")
    again = period_invoice(
        gateway, account, customer, description="Zusätzliche Minuten 49,4 Min. x 0,25 EUR"
    )
    assert again == opened
    replays = keyed(fake, "/v1/invoices", f"{account}:P1:invoice")
    assert [r.replayed for r in replays] == [False, True]
    items = keyed(fake, "/v1/invoiceitems", f"{account}:P1:invoiceitem")
    assert [r.replayed for r in items] == [False]


def test_period_invoice_is_created_once(fake: FakeStripe, gateway: StripeGateway) -> None:
    account, customer = customer_with(gateway, "pm_card_visa")
    first = period_invoice(gateway, account, customer)
    again = period_invoice(gateway, account, customer)
    other_process = period_invoice(
        StripeGateway(fake.secret_key, api_base=fake.api_base), account, customer
    )
    assert again == first and other_process == first
    # Later calls found the invoice by search and its line on it: one POST each, ever.
    invoices = keyed(fake, "/v1/invoices", f"{account}:P1:invoice")
    assert [(r.status, r.replayed, r.object_id) for r in invoices] == [
        (200, False, first.invoice_id)
    ]
    items = keyed(fake, "/v1/invoiceitems", f"{account}:P1:invoiceitem")
    assert [(r.status, r.replayed) for r in items] == [(200, False)]


def test_period_invoice_created_once_while_search_lags(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    account, customer = customer_with(gateway, "pm_card_visa")
    fake.search_visibility_delay = 60
    first = period_invoice(gateway, account, customer)
    assert gateway.find_period_invoice(account, "P1") is None  # not indexed yet
    again = period_invoice(gateway, account, customer)  # the idempotency key must hold
    assert again.invoice_id == first.invoice_id
    creations = keyed(fake, "/v1/invoices", f"{account}:P1:invoice")
    assert [(r.replayed, r.object_id) for r in creations] == [
        (False, first.invoice_id),
        (True, first.invoice_id),
    ]


def test_interrupted_create_is_completed_not_finalized_empty(
    fake: FakeStripe, strict_gateway: StripeGateway, raw: stripe.StripeClient
) -> None:
    account, customer = customer_with(strict_gateway, "pm_card_visa")
    fake.inject_faults(status=503, path_prefix="/v1/invoiceitems", method="POST")
    with pytest.raises(stripe.APIError) as raised:
        period_invoice(strict_gateway, account, customer)
    assert is_retryable(raised.value)
    half_done = strict_gateway.find_period_invoice(account, "P1")
    assert half_done is not None and (half_done.status, half_done.amount_cents) == ("draft", 0)
    with pytest.raises(StripeGatewayError) as refused:
        strict_gateway.finalize_invoice(half_done.invoice_id, f"{account}:P1:finalize")
    assert not is_retryable(refused.value)

    completed = period_invoice(strict_gateway, account, customer)
    assert (completed.invoice_id, completed.amount_cents) == (half_done.invoice_id, 1234)
    assert len(raw.v1.invoices.line_items.list(completed.invoice_id).data) == 1
    opened = strict_gateway.finalize_invoice(completed.invoice_id, f"{account}:P1:finalize")
    assert (opened.status, opened.amount_cents) == ("open", 1234)


def test_existing_invoice_with_other_amount_is_refused(gateway: StripeGateway) -> None:
    account, customer = customer_with(gateway, "pm_card_visa")
    period_invoice(gateway, account, customer, amount=1000)
    with pytest.raises(InvoiceMismatchError) as raised:
        period_invoice(gateway, account, customer, amount=2000)
    assert not is_retryable(raised.value)


def test_find_period_invoice_by_metadata(gateway: StripeGateway) -> None:
    account, customer = customer_with(gateway, "pm_card_visa")
    assert gateway.find_period_invoice(account, "P1") is None
    invoice = period_invoice(gateway, account, customer, period="P1")
    other = period_invoice(gateway, account, customer, period="P2", amount=99)
    assert gateway.find_period_invoice(account, "P1") == invoice
    assert gateway.find_period_invoice(account, "P2") == other
    assert gateway.find_period_invoice(new_account(), "P1") is None


# --- failed and pending payments ------------------------------------------------------


def test_declined_card_is_a_result_not_an_exception(
    fake: FakeStripe, gateway: StripeGateway, raw: stripe.StripeClient
) -> None:
    # Attaches fine, every charge declined (docs.stripe.com/testing: 4000000000000341).
    account, customer = customer_with(gateway, "pm_card_chargeCustomerFail")
    invoice = period_invoice(gateway, account, customer)
    gateway.finalize_invoice(invoice.invoice_id, f"{account}:P1:finalize")

    failed = gateway.pay_invoice(invoice.invoice_id, f"{account}:P1:pay:1")
    assert (failed.status, failed.failure_code) == ("payment_failed", "card_declined")
    assert gateway.retrieve_invoice(invoice.invoice_id) == failed
    # Same key: Stripe replays the decline, nothing is charged again.
    assert gateway.pay_invoice(invoice.invoice_id, f"{account}:P1:pay:1") == failed
    replays = keyed(fake, f"/v1/invoices/{invoice.invoice_id}/pay", f"{account}:P1:pay:1")
    assert [r.replayed for r in replays] == [False, True]
    assert payments(raw, customer) == [("requires_payment_method", 0)]

    gateway.attach_default_payment_method(customer, "pm_card_visa")
    paid = gateway.pay_invoice(invoice.invoice_id, f"{account}:P1:pay:2")
    assert (paid.status, paid.failure_code) == ("paid", None)
    # The invoice's one PaymentIntent, confirmed again with the new card.
    assert payments(raw, customer) == [("succeeded", 1234)]


def test_off_session_authentication_fails_the_attempt(gateway: StripeGateway) -> None:
    account, customer = customer_with(gateway, "pm_card_authenticationRequired")
    invoice = period_invoice(gateway, account, customer)
    failed = gateway.pay_invoice(invoice.invoice_id, f"{account}:P1:pay:1")
    assert (failed.status, failed.failure_code) == ("payment_failed", "authentication_required")
    assert gateway.retrieve_invoice(invoice.invoice_id).status == "payment_failed"


def test_missing_payment_method_is_a_failed_payment(
    fake: FakeStripe, gateway: StripeGateway, raw: stripe.StripeClient
) -> None:
    account, customer = customer_with(gateway, None)
    invoice = period_invoice(gateway, account, customer)
    result, made = made_by(
        fake, lambda: gateway.pay_invoice(invoice.invoice_id, f"{account}:P1:pay:1")
    )
    assert (result.status, result.failure_code) == ("payment_failed", "no_payment_method")
    assert pay_calls(fake, invoice.invoice_id) == 0
    assert made == ["GET /v1/invoices/{id}"]  # the customer came expanded on the invoice


def test_a_charge_reads_the_invoice_once(fake: FakeStripe, gateway: StripeGateway) -> None:
    """The invoice, its PaymentIntents and its customer's default method in one read,
    then ``/pay``; a SEPA debit in flight is one read and no ``/pay``."""
    account, customer = customer_with(gateway, "pm_card_visa")
    invoice = period_invoice(gateway, account, customer)
    gateway.finalize_invoice(invoice.invoice_id, f"{account}:P1:finalize")
    paid, made = made_by(
        fake, lambda: gateway.pay_invoice(invoice.invoice_id, f"{account}:P1:pay:0")
    )
    assert paid.status == "paid"
    assert made == ["GET /v1/invoices/{id}", "POST /v1/invoices/{id}/pay"]

    account, customer = customer_with(gateway, "pm_success_de")
    invoice = period_invoice(gateway, account, customer)
    assert gateway.pay_invoice(invoice.invoice_id, f"{account}:P1:pay:0").status == "processing"
    pending, made = made_by(
        fake, lambda: gateway.pay_invoice(invoice.invoice_id, f"{account}:P1:pay:1")
    )
    assert pending.status in ("processing", "paid")
    assert made == ["GET /v1/invoices/{id}"]


def test_customer_settings_written_in_one_request(fake: FakeStripe, gateway: StripeGateway) -> None:
    _, customer = customer_with(gateway, None)
    _, made = made_by(fake, lambda: gateway.sync_customer(customer, locale="de-DE", vat_id=None))
    assert made == ["POST /v1/customers/{id}"]
    client = stripe.StripeClient(fake.secret_key, base_addresses={"api": fake.api_base})
    written = client.v1.customers.retrieve(customer)
    assert (written.preferred_locales, written.tax_exempt) == (["de-DE"], "none")
    _, made = made_by(
        fake, lambda: gateway.sync_customer(customer, locale="de-DE", vat_id="ATU12345678")
    )
    assert made == [
        "GET /v1/customers/{id}/tax_ids",
        "POST /v1/customers/{id}/tax_ids",
        "POST /v1/customers/{id}",
    ]
    gateway.sync_customer(customer, locale="de-DE", vat_id="ATU12345678")  # a retry
    assert [t.value for t in client.v1.customers.tax_ids.list(customer).data] == ["ATU12345678"]
    assert client.v1.customers.retrieve(customer).tax_exempt == "reverse"


def settled(gateway: StripeGateway, invoice_id: str, timeout: float = 10) -> InvoiceResult:
    """The invoice once its debit is no longer processing (the fake settles on a timer)."""
    deadline = time.monotonic() + timeout
    result = gateway.retrieve_invoice(invoice_id)
    while result.status == "processing" and time.monotonic() < deadline:
        time.sleep(0.1)
        result = gateway.retrieve_invoice(invoice_id)
    return result


def test_sepa_debit_processing_then_paid_is_charged_once(
    fake: FakeStripe, gateway: StripeGateway, raw: stripe.StripeClient
) -> None:
    """Stripe keeps a SEPA debit processing for days; the fake for
    ``sepa_processing_seconds``. Meanwhile the invoice is "processing" and a further
    attempt (a new key, as the workflow's next attempt would have) sends no /pay."""
    account, customer = customer_with(gateway, "pm_success_de")
    invoice = period_invoice(gateway, account, customer, amount=777)
    pending = gateway.pay_invoice(invoice.invoice_id, f"{account}:P1:pay:1")
    assert (pending.status, pending.failure_code) == ("processing", None)
    assert gateway.retrieve_invoice(invoice.invoice_id).status == "processing"
    again = gateway.pay_invoice(invoice.invoice_id, f"{account}:P1:pay:2")
    assert again.status in ("processing", "paid")
    assert pay_calls(fake, invoice.invoice_id) == 1
    paid = settled(gateway, invoice.invoice_id)
    assert (paid.status, paid.amount_cents) == ("paid", 777)
    assert gateway.pay_invoice(invoice.invoice_id, f"{account}:P1:pay:3") == paid
    assert pay_calls(fake, invoice.invoice_id) == 1
    assert payments(raw, customer) == [("succeeded", 777)]


def test_sepa_debit_processing_then_failing_is_charged_once(
    fake: FakeStripe, gateway: StripeGateway, raw: stripe.StripeClient
) -> None:
    account, customer = customer_with(gateway, "pm_failed_de")
    invoice = period_invoice(gateway, account, customer)
    pending = gateway.pay_invoice(invoice.invoice_id, f"{account}:P1:pay:1")
    assert pending.status == "processing"
    assert gateway.pay_invoice(invoice.invoice_id, f"{account}:P1:pay:2").status in (
        "processing",
        "payment_failed",
    )
    result = settled(gateway, invoice.invoice_id)
    assert result.status == "payment_failed" and result.failure_code
    assert pay_calls(fake, invoice.invoice_id) == 1
    assert payments(raw, customer) == [("requires_payment_method", 0)]


# --- faults and retries ---------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 429])
def test_injected_fault_is_retryable_and_retry_invoices_once(
    fake: FakeStripe, strict_gateway: StripeGateway, status: int
) -> None:
    account, customer = customer_with(strict_gateway, "pm_card_visa")
    fake.inject_faults(status=status, count=1, path_prefix="/v1/invoices", method="POST")
    with pytest.raises(stripe.StripeError) as raised:
        period_invoice(strict_gateway, account, customer)
    assert raised.value.http_status == status
    assert is_retryable(raised.value)

    invoice = period_invoice(strict_gateway, account, customer)
    assert strict_gateway.find_period_invoice(account, "P1") == invoice
    creations = keyed(fake, "/v1/invoices", f"{account}:P1:invoice")
    assert [(r.status, r.injected) for r in creations] == [(status, "fault"), (200, None)]


def test_lost_answer_is_replayed_not_repeated(
    fake: FakeStripe, strict_gateway: StripeGateway, raw: stripe.StripeClient
) -> None:
    account, customer = customer_with(strict_gateway, "pm_card_visa")
    invoice = period_invoice(strict_gateway, account, customer)
    fake.inject_faults(
        status=502, path_prefix=f"/v1/invoices/{invoice.invoice_id}/pay", after_forward=True
    )
    with pytest.raises(stripe.APIError) as raised:
        strict_gateway.pay_invoice(invoice.invoice_id, f"{account}:P1:pay:1")
    assert is_retryable(raised.value)
    # The charge went through although we never heard back; the retry must not charge.
    paid = strict_gateway.pay_invoice(invoice.invoice_id, f"{account}:P1:pay:1")
    assert paid.status == "paid"
    assert payments(raw, customer) == [("succeeded", 1234)]


def test_sdk_retry_reuses_the_idempotency_key(fake: FakeStripe, gateway: StripeGateway) -> None:
    account, customer = customer_with(gateway, "pm_card_visa")
    fake.inject_faults(status=500, count=1, path_prefix="/v1/invoices", method="POST")
    invoice = period_invoice(gateway, account, customer)  # default gateway retries
    creations = keyed(fake, "/v1/invoices", f"{account}:P1:invoice")
    assert [(r.status, r.object_id) for r in creations] == [(500, None), (200, invoice.invoice_id)]


def test_timeout_and_dropped_connection_are_retryable(fake: FakeStripe) -> None:
    impatient = StripeGateway(
        fake.secret_key, api_base=fake.api_base, max_network_retries=0, timeout_seconds=0.3
    )
    account, customer = customer_with(impatient, "pm_card_visa")
    invoice = period_invoice(impatient, account, customer)
    fake.inject_delay(1.0, path_prefix=f"/v1/invoices/{invoice.invoice_id}")
    with pytest.raises(stripe.APIConnectionError) as timed_out:
        impatient.retrieve_invoice(invoice.invoice_id)
    assert is_retryable(timed_out.value)
    fake.inject_faults(status=0, path_prefix=f"/v1/invoices/{invoice.invoice_id}")
    with pytest.raises(stripe.APIConnectionError) as dropped:
        impatient.retrieve_invoice(invoice.invoice_id)
    assert is_retryable(dropped.value)
    assert impatient.retrieve_invoice(invoice.invoice_id) == invoice


def test_permanent_errors_are_not_retryable(fake: FakeStripe, gateway: StripeGateway) -> None:
    with pytest.raises(stripe.InvalidRequestError) as missing:
        gateway.retrieve_invoice("in_doesnotexist")
    assert missing.value.http_status == 404 and not is_retryable(missing.value)

    with pytest.raises(stripe.AuthenticationError) as unauthorised:
        StripeGateway("rk_wrong", api_base=fake.api_base).retrieve_invoice("in_x")
    assert not is_retryable(unauthorised.value)

    account, customer = customer_with(gateway, None)
    with pytest.raises(stripe.CardError) as declined:
        gateway.attach_default_payment_method(customer, "pm_card_visa_chargeDeclined")
    assert declined.value.code == "card_declined" and not is_retryable(declined.value)

    raw = stripe.StripeClient(fake.secret_key, base_addresses={"api": fake.api_base})
    raw.v1.customers.create(params={"email": "a@example.com"}, options={"idempotency_key": account})
    with pytest.raises(stripe.IdempotencyError) as reused:
        raw.v1.customers.create(
            params={"email": "b@example.com"}, options={"idempotency_key": account}
        )
    assert not is_retryable(reused.value)
    assert is_retryable(ConnectionResetError()) and not is_retryable(KeyError("x"))


# --- the harness itself ---------------------------------------------------------------


def test_stripe_js_stand_in_is_served(fake: FakeStripe) -> None:
    import urllib.request

    gateway = StripeGateway(fake.secret_key, api_base=fake.api_base)
    assert gateway.stripe_js_url == f"{fake.api_base}/js.stripe.com/v3/"
    with urllib.request.urlopen(gateway.stripe_js_url, timeout=5) as response:
        assert "confirmSepaDebitSetup" in response.read().decode()
    assert StripeGateway("sk_test_x").stripe_js_url == "https://js.stripe.com/v3/"


def test_start_and_stop_are_idempotent_and_leave_nothing_behind() -> None:
    harness = FakeStripe()
    harness.start()
    harness.start()
    pid = harness.backend_pid
    assert pid is not None
    customer = StripeGateway(harness.secret_key, api_base=harness.api_base).ensure_customer(
        "acc_lifecycle", "x@example.com"
    )
    assert customer.startswith("cus_")
    harness.stop()
    harness.stop()
    assert not harness.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_usable_from_async_code(fake: FakeStripe) -> None:
    gateway = StripeGateway(fake.secret_key, api_base=fake.api_base)
    account = new_account()
    ids = await asyncio.gather(
        *(asyncio.to_thread(gateway.ensure_customer, account, "a@example.com") for _ in range(3))
    )
    assert len(set(ids)) == 1


async def test_harness_as_async_context_manager() -> None:
    async with FakeStripe() as harness:
        gateway = StripeGateway(harness.secret_key, api_base=harness.api_base)
        customer = await asyncio.to_thread(gateway.ensure_customer, new_account(), "a@x.org")
        assert customer.startswith("cus_")
        pid = harness.backend_pid
    assert not harness.running and pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
