"""The fake Stripe pays invoices the way Stripe does (``devstack.fake_stripe.payments``).

Driven with the real stripe SDK over HTTP, as ``overtime.stripe_gateway`` drives it: test
payment-method ids with Stripe's documented meanings (https://docs.stripe.com/testing),
one PaymentIntent per invoice created at finalisation and reused by every attempt, SEPA
debits that stay ``processing`` and settle on a timer, and the events of each transition.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
import stripe

from devstack.fake_stripe import FakeStripe
from overtime.stripe_gateway import InvoiceResult, StripeGateway

# The fake Stripe alone: no database; the PostgreSQL pass would repeat it unchanged.
pytestmark = pytest.mark.sqlite_only

SEPA_SECONDS = 1.5  # margins for a loaded CI machine (2 cores, 3 test processes)
SEPA_DELAYED_SECONDS = 5.0
EXPAND = ["payments.data.payment.payment_intent"]

# (test id, error code, decline code): refused already when attached.
DECLINED_AT_ATTACH = [
    ("pm_card_visa_chargeDeclined", "card_declined", "generic_decline"),
    ("pm_card_chargeDeclined", "card_declined", "generic_decline"),  # legacy alias
    ("pm_card_visa_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
    ("pm_card_visa_chargeDeclinedLostCard", "card_declined", "lost_card"),
    ("pm_card_visa_chargeDeclinedStolenCard", "card_declined", "stolen_card"),
    ("pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card"),
    ("pm_card_chargeDeclinedIncorrectCvc", "incorrect_cvc", "incorrect_cvc"),
    ("pm_card_chargeDeclinedProcessingError", "processing_error", "processing_error"),
]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeStripe]:
    with FakeStripe(
        sepa_processing_seconds=SEPA_SECONDS, sepa_delayed_processing_seconds=SEPA_DELAYED_SECONDS
    ) as harness:
        yield harness


@pytest.fixture
def client(fake: FakeStripe) -> stripe.StripeClient:
    return stripe.StripeClient(
        fake.secret_key, base_addresses={"api": fake.api_base}, max_network_retries=0
    )


@pytest.fixture
def gateway(fake: FakeStripe) -> StripeGateway:
    return StripeGateway(fake.secret_key, api_base=fake.api_base)


def new_customer(client: stripe.StripeClient) -> str:
    return client.v1.customers.create(params={"email": f"{uuid.uuid4().hex[:8]}@example.com"}).id


def customer_paying_with(client: stripe.StripeClient, test_id: str) -> tuple[str, str]:
    """A customer whose invoice default is ``test_id``; returns (customer, method id)."""
    customer = new_customer(client)
    method = client.v1.payment_methods.attach(test_id, params={"customer": customer})
    client.v1.customers.update(
        customer, params={"invoice_settings": {"default_payment_method": method.id}}
    )
    return customer, method.id


def open_invoice(client: stripe.StripeClient, customer: str, amount: int = 1990) -> stripe.Invoice:
    invoice = client.v1.invoices.create(
        params={"customer": customer, "auto_advance": False, "currency": "eur"}
    )
    if amount:
        client.v1.invoice_items.create(
            params={
                "customer": customer,
                "invoice": invoice.id,
                "amount": amount,
                "currency": "eur",
            }
        )
    return client.v1.invoices.finalize_invoice(invoice.id, params={"expand": EXPAND})


def the_intent(invoice: stripe.Invoice) -> stripe.PaymentIntent:
    assert invoice.payments is not None
    assert len(invoice.payments.data) == 1  # one invoice_payment for all attempts
    intent = invoice.payments.data[0].payment.payment_intent
    assert isinstance(intent, stripe.PaymentIntent)
    return intent


def retrieve(client: stripe.StripeClient, invoice_id: str) -> stripe.Invoice:
    return client.v1.invoices.retrieve(invoice_id, params={"expand": EXPAND})


def pay(client: stripe.StripeClient, invoice_id: str, **params: Any) -> stripe.Invoice:
    return client.v1.invoices.pay(
        invoice_id, params={"off_session": True, "expand": EXPAND, **params}
    )


def attached_cards(client: stripe.StripeClient, customer: str) -> list[str]:
    listed = client.v1.payment_methods.list(params={"customer": customer, "type": "card"})
    return [method.id for method in listed.data]


def events_for(fake: FakeStripe, object_id: str) -> list[str]:
    return [
        event["type"] for event in fake.events if event["data"]["object"].get("id") == object_id
    ]


def wait_for(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s")
        time.sleep(0.05)


# --- test payment methods -------------------------------------------------------------


@pytest.mark.parametrize(("test_id", "code", "decline_code"), DECLINED_AT_ATTACH)
def test_declining_cards_are_refused_at_attach(
    client: stripe.StripeClient, test_id: str, code: str, decline_code: str
) -> None:
    customer = new_customer(client)
    with pytest.raises(stripe.CardError) as refused:
        client.v1.payment_methods.attach(test_id, params={"customer": customer})
    assert refused.value.http_status == 402
    assert refused.value.code == code
    error = refused.value.error
    assert error is not None
    assert error.type == "card_error"
    assert error.decline_code == decline_code
    assert error.doc_url == f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    assert error.message
    assert attached_cards(client, customer) == []


@pytest.mark.parametrize(
    ("test_id", "code", "decline_code"), [DECLINED_AT_ATTACH[0], DECLINED_AT_ATTACH[5]]
)
def test_setup_intent_with_a_declining_card_keeps_waiting_for_a_method(
    client: stripe.StripeClient, test_id: str, code: str, decline_code: str
) -> None:
    customer = new_customer(client)
    setup = client.v1.setup_intents.create(
        params={"customer": customer, "allowed_payment_method_types": ["card", "sepa_debit"]}
    )
    with pytest.raises(stripe.CardError) as refused:
        client.v1.setup_intents.confirm(setup.id, params={"payment_method": test_id})
    assert refused.value.code == code
    assert refused.value.error is not None
    assert refused.value.error.decline_code == decline_code
    shown = refused.value.error.setup_intent
    assert shown is not None and shown.status == "requires_payment_method"

    again = client.v1.setup_intents.retrieve(setup.id)
    assert again.status == "requires_payment_method"
    assert again.last_setup_error is not None
    assert (again.last_setup_error.code, again.last_setup_error.decline_code) == (
        code,
        decline_code,
    )
    assert attached_cards(client, customer) == []

    # The customer tries another card on the same SetupIntent: that one is saved.
    done = client.v1.setup_intents.confirm(setup.id, params={"payment_method": "pm_card_visa"})
    assert done.status == "succeeded"
    # (localstripe omits the null field; fake_stripe.shapes may add it)
    assert client.v1.setup_intents.retrieve(setup.id).to_dict().get("last_setup_error") is None
    assert attached_cards(client, customer) == [done.payment_method]


def test_browser_setup_with_a_declining_card_number(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    """The Stripe.js stand-in confirms with the publishable key and the typed card."""
    customer = new_customer(client)
    setup = client.v1.setup_intents.create(params={"customer": customer})
    answer = requests.post(
        f"{fake.api_base}/v1/setup_intents/{setup.id}/confirm",
        json={
            "key": fake.publishable_key,
            "use_stripe_sdk": True,
            "client_secret": setup.client_secret,
            "payment_method_data": {
                "type": "card",
                "card": {
                    "number": "4000000000009995",
                    "exp_month": "12",
                    "exp_year": "2034",
                    "cvc": "123",
                },
                "billing_details": {"address": {"postal_code": "10115"}},
            },
        },
        timeout=10,
    )
    assert answer.status_code == 402
    error = answer.json()["error"]
    assert (error["type"], error["code"], error["decline_code"]) == (
        "card_error",
        "card_declined",
        "insufficient_funds",
    )
    assert error["setup_intent"]["status"] == "requires_payment_method"
    seen = client.v1.setup_intents.retrieve(setup.id)
    assert seen.last_setup_error is not None
    assert seen.last_setup_error.decline_code == "insufficient_funds"
    assert attached_cards(client, customer) == []


@pytest.mark.parametrize(
    "removed", ["pm_sepa_debit", "pm_sepa_debit_DE", "pm_sepa_debit_failed", "pm_no_such_thing"]
)
def test_ids_stripe_does_not_have_are_unknown(client: stripe.StripeClient, removed: str) -> None:
    customer = new_customer(client)
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.payment_methods.attach(removed, params={"customer": customer})
    assert missing.value.http_status == 404
    assert missing.value.code == "resource_missing"


def test_pay_with_a_card_declined_at_attach(client: stripe.StripeClient) -> None:
    customer, _ = customer_paying_with(client, "pm_card_visa")
    invoice = open_invoice(client, customer)
    with pytest.raises(stripe.CardError) as declined:
        pay(client, invoice.id, payment_method="pm_card_visa_chargeDeclinedStolenCard")
    assert declined.value.code == "card_declined"
    assert declined.value.error is not None
    assert declined.value.error.decline_code == "stolen_card"
    after = retrieve(client, invoice.id)
    assert after.status == "open"
    intent = the_intent(after)
    assert intent.status == "requires_payment_method"
    assert intent.last_payment_error is not None
    assert intent.last_payment_error.decline_code == "stolen_card"
    assert len(attached_cards(client, customer)) == 1  # only the visa


def test_customer_fail_card_attaches_and_every_charge_fails(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    customer, method = customer_paying_with(client, "pm_card_chargeCustomerFail")
    assert attached_cards(client, customer) == [method]
    invoice = open_invoice(client, customer)
    first = the_intent(invoice)
    assert first.status == "requires_payment_method" and first.last_payment_error is None
    for _ in range(2):
        with pytest.raises(stripe.CardError) as declined:
            pay(client, invoice.id)
        assert declined.value.code == "card_declined"
        assert declined.value.error is not None
        assert declined.value.error.decline_code == "generic_decline"
        assert declined.value.error.payment_intent is not None
        assert declined.value.error.payment_intent.id == first.id
    after = retrieve(client, invoice.id)
    assert (after.status, after.attempt_count) == ("open", 2)
    intent = the_intent(after)
    assert intent.id == first.id
    error = intent.last_payment_error
    assert error is not None
    assert (error.type, error.code, error.decline_code) == (
        "card_error",
        "card_declined",
        "generic_decline",
    )
    assert error.message and error.doc_url
    assert error.payment_method is not None and error.payment_method.id == method
    assert events_for(fake, invoice.id).count("invoice.payment_failed") == 2
    assert events_for(fake, first.id).count("payment_intent.payment_failed") == 2


def test_authentication_required_fails_off_session(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    customer, _ = customer_paying_with(client, "pm_card_authenticationRequired")
    invoice = open_invoice(client, customer)
    with pytest.raises(stripe.CardError) as declined:
        pay(client, invoice.id)
    assert declined.value.code == "authentication_required"
    assert retrieve(client, invoice.id).status == "open"
    assert "invoice.payment_action_required" in events_for(fake, invoice.id)


# --- the invoice's PaymentIntent ------------------------------------------------------


def test_one_payment_intent_from_finalisation_through_every_attempt(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    customer, _ = customer_paying_with(client, "pm_card_chargeCustomerFail")
    invoice = open_invoice(client, customer, amount=2500)
    intent = the_intent(invoice)
    assert (intent.status, intent.amount, intent.currency, intent.customer) == (
        "requires_payment_method",
        2500,
        "eur",
        customer,
    )
    assert intent.payment_method_types == ["card", "sepa_debit"]
    with pytest.raises(stripe.CardError):
        pay(client, invoice.id)

    # The customer saves a working card and the invoice is paid with it.
    good = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer})
    paid = pay(client, invoice.id, payment_method=good.id)
    assert paid.status == "paid" and paid.amount_paid == 2500
    settled = the_intent(paid)
    assert settled.id == intent.id
    assert (settled.status, settled.amount_received, settled.payment_method) == (
        "succeeded",
        2500,
        good.id,
    )
    assert settled.last_payment_error is None
    assert paid.payments is not None and paid.payments.data[0].status == "paid"

    assert client.v1.payment_intents.retrieve(intent.id).status == "succeeded"
    # One charge per attempt, newest first; the intent points at the latest.
    charges = client.v1.charges.list(params={"customer": customer}).data
    assert [(c.status, c.payment_intent, c.amount) for c in charges] == [
        ("succeeded", intent.id, 2500),
        ("failed", intent.id, 2500),
    ]
    assert settled.latest_charge == charges[0].id
    assert charges[1].failure_code == "card_declined"
    assert client.v1.charges.retrieve(charges[1].id).outcome is not None
    listed = client.v1.payment_intents.list(params={"customer": customer})
    assert [i.id for i in listed.data] == [intent.id]

    assert events_for(fake, intent.id) == [
        "payment_intent.created",
        "payment_intent.payment_failed",
        "payment_intent.succeeded",
    ]
    assert events_for(fake, invoice.id) == [
        "invoice.created",
        "invoice.finalized",
        "invoice.payment_failed",
        "invoice.paid",
        "invoice.payment_succeeded",
    ]
    payment_paid = [e for e in fake.events if e["type"] == "invoice_payment.paid"]
    assert [e["data"]["object"]["invoice"] for e in payment_paid].count(invoice.id) == 1


def test_events_carry_the_invoice_as_get_returns_it(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    customer, _ = customer_paying_with(client, "pm_card_mastercard")
    invoice = open_invoice(client, customer)
    pay(client, invoice.id)
    current = client.v1.invoices.retrieve(invoice.id).to_dict()
    paid_event = next(
        e
        for e in fake.events
        if e["type"] == "invoice.paid" and e["data"]["object"]["id"] == invoice.id
    )
    shown = paid_event["data"]["object"]
    assert shown["status"] == current["status"] == "paid"
    assert "payments" not in shown  # unexpanded, as GET without expand
    assert shown["amount_paid"] == current["amount_paid"]


def test_list_merges_localstripes_own_payment_intents(client: stripe.StripeClient) -> None:
    customer, method = customer_paying_with(client, "pm_card_visa")
    own = client.v1.payment_intents.create(
        params={"amount": 700, "currency": "eur", "customer": customer, "payment_method": method}
    )
    invoice = open_invoice(client, customer)
    listed = client.v1.payment_intents.list(params={"customer": customer})
    assert {i.id for i in listed.data} == {own.id, the_intent(invoice).id}
    assert all(i.customer == customer for i in listed.data)


def test_zero_invoice_is_paid_at_finalisation_without_an_intent(
    client: stripe.StripeClient,
) -> None:
    customer, _ = customer_paying_with(client, "pm_card_visa")
    invoice = open_invoice(client, customer, amount=0)
    assert invoice.status == "paid"
    assert invoice.payments is not None and invoice.payments.data == []


def test_voiding_cancels_the_payment_intent(fake: FakeStripe, client: stripe.StripeClient) -> None:
    customer, _ = customer_paying_with(client, "pm_card_visa")
    invoice = open_invoice(client, customer)
    intent = the_intent(invoice)
    client.v1.invoices.void_invoice(invoice.id)
    canceled = client.v1.payment_intents.retrieve(intent.id)
    assert (canceled.status, canceled.cancellation_reason) == ("canceled", "void_invoice")
    assert "invoice.voided" in events_for(fake, invoice.id)
    assert "payment_intent.canceled" in events_for(fake, intent.id)


def test_marking_uncollectible_is_announced(fake: FakeStripe, client: stripe.StripeClient) -> None:
    customer, _ = customer_paying_with(client, "pm_card_visa")
    invoice = open_invoice(client, customer)
    client.v1.invoices.mark_uncollectible(invoice.id)
    assert "invoice.marked_uncollectible" in events_for(fake, invoice.id)


# --- SEPA -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("test_id", "delayed", "failure_code"),
    [
        ("pm_success_de", False, None),
        ("pm_successDelayed_de", True, None),
        ("pm_failed_de", False, "generic_decline"),
        ("pm_failedDelayed_de", True, "generic_decline"),
        ("pm_insufficientFunds_de", False, "insufficient_funds"),
        ("pm_exceedsWeeklyVolumeLimit_de", False, "charge_exceeds_source_limit"),
        ("pm_exceedsWeeklyTransactionLimit_de", False, "charge_exceeds_weekly_limit"),
        ("pm_sepaDebit_failed_de", False, "generic_decline"),  # the newer spelling
    ],
)
def test_sepa_debit_processing_then_settled(
    fake: FakeStripe,
    client: stripe.StripeClient,
    test_id: str,
    delayed: bool,
    failure_code: str | None,
) -> None:
    customer, method = customer_paying_with(client, test_id)
    invoice = open_invoice(client, customer)
    started = time.monotonic()
    pending = pay(client, invoice.id)
    assert pending.status == "open"
    intent = the_intent(pending)
    assert intent.status == "processing"
    assert events_for(fake, intent.id)[-1] == "payment_intent.processing"
    assert client.v1.charges.retrieve(str(intent.latest_charge)).status == "pending"

    if delayed:  # past the ordinary debits' time, a delayed one is still processing
        time.sleep(SEPA_SECONDS + 0.3)
        assert client.v1.payment_intents.retrieve(intent.id).status == "processing"
    # Settled by the timer, events included, without anybody reading the invoice.
    expected_event = "invoice.paid" if failure_code is None else "invoice.payment_failed"
    wait_for(lambda: expected_event in events_for(fake, invoice.id), SEPA_DELAYED_SECONDS + 5)
    took = time.monotonic() - started
    if delayed:
        assert took >= SEPA_DELAYED_SECONDS - 0.1
    else:
        assert SEPA_SECONDS - 0.1 <= took < SEPA_DELAYED_SECONDS

    after = retrieve(client, invoice.id)
    settled = the_intent(after)
    assert settled.id == intent.id
    charges = client.v1.charges.list(params={"customer": customer}).data
    assert [c.status for c in charges] == ["succeeded" if failure_code is None else "failed"]
    if failure_code is None:
        assert (after.status, settled.status) == ("paid", "succeeded")
        assert "invoice.payment_succeeded" in events_for(fake, invoice.id)
    else:
        assert (after.status, settled.status) == ("open", "requires_payment_method")
        error = settled.last_payment_error
        assert error is not None
        assert (error.code, error.decline_code) == (failure_code, failure_code)
        assert error.payment_method is not None and error.payment_method.id == method


def test_second_pay_refused_while_processing(client: stripe.StripeClient) -> None:
    customer, _ = customer_paying_with(client, "pm_successDelayed_de")
    invoice = open_invoice(client, customer)
    pay(client, invoice.id)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        pay(client, invoice.id)
    assert refused.value.http_status == 400
    assert refused.value.code == "invoice_payment_intent_requires_action"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.void_invoice(invoice.id)
    assert retrieve(client, invoice.id).attempt_count == 1


def test_a_typed_test_iban_behaves_like_its_id(client: stripe.StripeClient) -> None:
    customer = new_customer(client)
    method = client.v1.payment_methods.create(
        params={
            "type": "sepa_debit",
            "sepa_debit": {"iban": "DE65 3704 0044 0002 2222 27"},
            "billing_details": {"name": "Jenny Rosen", "email": "jenny@example.com"},
        }
    )
    client.v1.payment_methods.attach(method.id, params={"customer": customer})
    invoice = open_invoice(client, customer)
    assert the_intent(pay(client, invoice.id, payment_method=method.id)).status == "processing"
    wait_for(
        lambda: the_intent(retrieve(client, invoice.id)).status == "requires_payment_method",
        SEPA_SECONDS + 5,
    )
    error = the_intent(retrieve(client, invoice.id)).last_payment_error
    assert error is not None and error.decline_code == "insufficient_funds"


def test_reading_after_the_due_time_shows_the_settled_state(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    customer, _ = customer_paying_with(client, "pm_success_de")
    invoice = open_invoice(client, customer)
    pay(client, invoice.id)
    time.sleep(SEPA_SECONDS + 0.1)
    assert retrieve(client, invoice.id).status == "paid"


# --- what the product's gateway makes of it -----------------------------------------


def period_invoice(gateway: StripeGateway, test_id: str) -> tuple[InvoiceResult, str]:
    account = f"acc_{uuid.uuid4().hex[:12]}"
    customer = gateway.ensure_customer(account, f"{account}@example.com")
    gateway.attach_default_payment_method(customer, test_id)
    draft = gateway.create_period_invoice(
        customer_id=customer,
        account_id=account,
        period_key="P1",
        extra_seconds=600,
        unit_price_cents=25,
        amount_cents=250,
        description="Extra minutes 10 min x 0.25 EUR",
        period_start=datetime(2026, 1, 1, tzinfo=UTC),
        period_end=datetime(2026, 2, 1, tzinfo=UTC),
    )
    opened = gateway.finalize_invoice(draft.invoice_id, f"{account}:finalize")
    assert opened.status == "open"
    return gateway.pay_invoice(draft.invoice_id, f"{account}:pay:1"), draft.invoice_id


@pytest.mark.parametrize(
    ("test_id", "status", "failure_code"),
    [
        ("pm_card_visa", "paid", None),
        ("pm_card_mastercard", "paid", None),
        ("pm_card_chargeCustomerFail", "payment_failed", "card_declined"),
        ("pm_card_authenticationRequired", "payment_failed", "authentication_required"),
    ],
)
def test_gateway_results_for_cards(
    gateway: StripeGateway, test_id: str, status: str, failure_code: str | None
) -> None:
    result, invoice_id = period_invoice(gateway, test_id)
    assert (result.status, result.failure_code) == (status, failure_code)
    assert gateway.retrieve_invoice(invoice_id).status == status


@pytest.mark.parametrize(
    ("test_id", "settled", "failure_code"),
    [
        ("pm_success_de", "paid", None),
        ("pm_failed_de", "payment_failed", "generic_decline"),
        ("pm_insufficientFunds_de", "payment_failed", "insufficient_funds"),
    ],
)
def test_gateway_results_for_sepa(
    gateway: StripeGateway, test_id: str, settled: str, failure_code: str | None
) -> None:
    result, invoice_id = period_invoice(gateway, test_id)
    assert (result.status, result.failure_code) == ("processing", None)
    # Asked again while processing: no second debit.
    assert gateway.pay_invoice(invoice_id, "another-key").status == "processing"
    wait_for(lambda: gateway.retrieve_invoice(invoice_id).status != "processing", 5)
    final = gateway.retrieve_invoice(invoice_id)
    assert (final.status, final.failure_code) == (settled, failure_code)


def test_gateway_refuses_to_save_a_declining_card(gateway: StripeGateway) -> None:
    account = f"acc_{uuid.uuid4().hex[:12]}"
    customer = gateway.ensure_customer(account, f"{account}@example.com")
    with pytest.raises(stripe.CardError) as declined:
        gateway.attach_default_payment_method(customer, "pm_card_visa_chargeDeclined")
    assert declined.value.code == "card_declined"
    assert gateway.default_payment_method(customer) is None
