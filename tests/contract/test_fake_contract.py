"""The fake answers the gateway's calls in Stripe's shapes (issue 14's contract test).

Every ``StripeGateway`` method is driven against ``devstack.fake_stripe`` exactly as the
product calls it, through a recording HTTP client, and every answer it got (successes,
declines, 404s, idempotency and validation errors) is checked against the schema of its
``object`` generated from the pinned stripe SDK (``stripe_schemas.json``): required
fields present and of the right type, enums within their values, expanded objects
checked as themselves, and no field the SDK does not know (``customer.account_balance``,
``payment_intent.charges`` and the like). The gateway's requests are checked too: every
parameter it sends must be one the SDK's ``*Params`` class for that endpoint knows. A few
calls the browser (Stripe.js), support or Stripe's dashboard make are driven through a
plain SDK client on the same recorder.
"""

from __future__ import annotations

import inspect
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import stripe

from devstack.fake_stripe import FakeStripe
from overtime.stripe_gateway import PeriodLine, StripeGateway
from tests.contract.recording import Exchange, Recorder
from tests.contract.request_params import ROUTE_PARAMS, unknown_parameters
from tests.contract.validate import Validator, load_snapshot
from tests.test_stripe_gateway import customer_with, new_account

pytestmark = pytest.mark.sqlite_only  # no database here: one pass is enough

SEARCH_LAG = 0.3  # short, but on: the gateway must converge while search trails writes


class TrackedGateway:
    """The gateway, noting which of its public methods the test called."""

    def __init__(self, gateway: StripeGateway, called: set[str]) -> None:
        self._gateway, self._called = gateway, called

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._gateway, name)
        if callable(value):
            self._called.add(name)
        return value


CALLED: set[str] = set()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeStripe]:
    options: dict[str, Any] = {"search_visibility_delay": SEARCH_LAG}
    accepted = inspect.signature(FakeStripe).parameters
    for knob in ("sepa_processing_seconds", "sepa_delayed_processing_seconds"):
        if knob in accepted:  # settle SEPA debits quickly in this test
            options[knob] = 0.5
    with FakeStripe(**options) as harness:
        yield harness


@pytest.fixture(scope="module")
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator(load_snapshot())


@pytest.fixture(scope="module")
def gateway(fake: FakeStripe, recorder: Recorder) -> Any:
    with recorder.patched():
        real = StripeGateway(fake.secret_key, api_base=fake.api_base, max_network_retries=0)
    return TrackedGateway(real, CALLED)


@pytest.fixture(scope="module")
def raw(fake: FakeStripe, recorder: Recorder) -> stripe.StripeClient:
    """What the browser (Stripe.js), support or the dashboard would call."""
    return stripe.StripeClient(
        fake.secret_key,
        base_addresses={"api": fake.api_base},
        http_client=recorder.http_client(),
        max_network_retries=0,
    )


@pytest.fixture(autouse=True)
def _fresh_recording(recorder: Recorder) -> None:
    recorder.take()


def problems_of(exchanges: list[Exchange], validator: Validator) -> list[str]:
    """Every schema problem, once per (route, status, problem), with how often seen; and
    for the gateway's own requests, every parameter its endpoint does not take."""
    seen: dict[tuple[str, int, str], int] = defaultdict(int)
    for exchange in exchanges:
        if exchange.source == "gateway":
            if exchange.route not in ROUTE_PARAMS:
                problem = "<request>: a route new to the gateway; add it to ROUTE_PARAMS"
                seen[(exchange.route, exchange.status, problem)] += 1
            else:
                for key in unknown_parameters(exchange):
                    problem = f"<request>: sends {key!r}, which the SDK does not know"
                    seen[(exchange.route, exchange.status, problem)] += 1
        if exchange.body is None:
            seen[(exchange.route, exchange.status, "<body>: not JSON")] += 1
            continue
        for problem in validator.check_body(exchange.body):
            seen[(exchange.route, exchange.status, problem)] += 1
    return [
        f"{route} -> {status}: {problem}" + (f" (x{count})" if count > 1 else "")
        for (route, status, problem), count in sorted(seen.items())
    ]


def assert_stripe_shaped(
    recorder: Recorder, validator: Validator, *expected_statuses: int
) -> list[Exchange]:
    exchanges = recorder.take()
    assert exchanges, "the scenario made no request"
    problems = problems_of(exchanges, validator)
    assert not problems, "requests or answers not in Stripe's shape:\n" + "\n".join(problems)
    statuses = {e.status for e in exchanges}
    for status in expected_statuses:
        assert status in statuses, f"expected a {status} answer among {sorted(statuses)}"
    return exchanges


def period_invoice(
    gateway: Any, account: str, customer: str, *, tax_rate: str | None = None, period: str = "P1"
) -> Any:
    return gateway.create_period_invoice(
        customer_id=customer,
        account_id=account,
        period_key=period,
        extra_seconds=3000,
        unit_price_cents=25,
        amount_cents=1250,
        description="Extra minutes",
        period_start=datetime(2026, 1, 1, tzinfo=UTC),
        period_end=datetime(2026, 2, 1, tzinfo=UTC),
        lines=[
            PeriodLine(1800, 25, 750, "30 min x 0.25 EUR", plan="basic"),
            PeriodLine(1200, 25, 500, "20 min x 0.25 EUR", plan="pro"),
        ],
        tax_rate_id=tax_rate,
    )


def eventually(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


# --- customers, tax ids, tax rates ------------------------------------------------------


def test_customers(gateway: Any, recorder: Recorder, validator: Validator) -> None:
    account = new_account()
    customer = gateway.ensure_customer(account, "first@example.com")
    time.sleep(SEARCH_LAG + 0.1)  # found by search from now on
    assert gateway.ensure_customer(account, "second@example.com") == customer  # updates
    gateway.sync_customer(customer, locale="de-DE", vat_id="DE123456789")
    gateway.sync_customer(customer, locale="en-GB", vat_id=None)
    assert gateway.default_payment_method(customer) is None
    exchanges = assert_stripe_shaped(recorder, validator, 200)
    routes = {e.route for e in exchanges}
    assert {
        "GET /v1/customers/search",
        "POST /v1/customers",
        "POST /v1/customers/{id}",
        "GET /v1/customers/{id}/tax_ids",
        "POST /v1/customers/{id}/tax_ids",
    } <= routes


def test_tax_rates(gateway: Any, recorder: Recorder, validator: Validator) -> None:
    country = "DE"
    exclusive = gateway.ensure_tax_rate(
        percentage=Decimal("19"), inclusive=False, display_name="USt.", country=country
    )
    inclusive = gateway.ensure_tax_rate(
        percentage=Decimal("7"), inclusive=True, display_name="USt.", country=country
    )
    assert exclusive != inclusive
    assert_stripe_shaped(recorder, validator, 200)


# --- payment methods --------------------------------------------------------------------


def test_setup_intents_as_the_browser_confirms_them(
    gateway: Any, raw: stripe.StripeClient, recorder: Recorder, validator: Validator
) -> None:
    _, customer = customer_with(gateway, None)
    secret = gateway.create_setup_intent(customer, new_account())
    intent_id = secret.split("_secret_")[0]
    card = raw.v1.setup_intents.confirm(intent_id, params={"payment_method": "pm_card_visa"})
    assert card.status == "succeeded"
    saved = gateway.attach_default_payment_method(customer, str(card.payment_method))
    assert saved.type == "card"
    sepa_secret = gateway.create_setup_intent(customer, new_account())
    sepa = raw.v1.setup_intents.confirm(
        sepa_secret.split("_secret_")[0],
        params={
            "payment_method_data": {
                "type": "sepa_debit",
                "sepa_debit": {"iban": "DE89370400440532013000"},
                "billing_details": {"name": "Jenny Rosen", "email": "jenny@example.com"},
            },
            "mandate_data": {
                "customer_acceptance": {
                    "type": "online",
                    "online": {"ip_address": "127.0.0.1", "user_agent": "contract-test"},
                }
            },
        },
    )
    assert sepa.status in ("succeeded", "processing")
    assert_stripe_shaped(recorder, validator, 200)


@pytest.mark.parametrize("test_id", ["pm_card_visa", "pm_card_mastercard", "pm_success_de"])
def test_attach_detach_and_default(
    gateway: Any, test_id: str, recorder: Recorder, validator: Validator
) -> None:
    _, customer = customer_with(gateway, test_id)
    info = gateway.default_payment_method(customer)
    assert info is not None and info.id.startswith("pm_")
    gateway.detach_payment_method(info.id)
    gateway.detach_payment_method(info.id)  # already detached: a no-op
    assert gateway.default_payment_method(customer) is None
    assert_stripe_shaped(recorder, validator, 200)


def test_payment_method_lists(
    gateway: Any, raw: stripe.StripeClient, recorder: Recorder, validator: Validator
) -> None:
    _, customer = customer_with(gateway, "pm_card_visa")
    gateway.attach_default_payment_method(customer, "pm_success_de")
    sepa = raw.v1.payment_methods.list(params={"customer": customer, "type": "sepa_debit"})
    assert [m.type for m in sepa.data] == ["sepa_debit"]
    cards = raw.v1.customers.payment_methods.list(customer, params={"type": "card"})
    assert [m.type for m in cards.data] == ["card"]
    every = raw.v1.customers.payment_methods.list(customer)
    assert sorted(m.type for m in every.data) == ["card", "sepa_debit"]
    assert_stripe_shaped(recorder, validator, 200)


def test_decline_at_attach(gateway: Any, recorder: Recorder, validator: Validator) -> None:
    _, customer = customer_with(gateway, None)
    with pytest.raises(stripe.CardError) as declined:
        gateway.attach_default_payment_method(customer, "pm_card_visa_chargeDeclined")
    assert declined.value.code == "card_declined"
    error = declined.value.error
    assert error is not None and str(error.doc_url).endswith("/error-codes/card-declined")
    assert error.request_log_url
    assert_stripe_shaped(recorder, validator, 402)


# --- the period invoice -----------------------------------------------------------------


def test_invoice_create_finalize_pay(
    gateway: Any, raw: stripe.StripeClient, recorder: Recorder, validator: Validator
) -> None:
    account, customer = customer_with(gateway, "pm_card_visa")
    rate = gateway.ensure_tax_rate(
        percentage=Decimal("19"), inclusive=False, display_name="USt.", country="DE"
    )
    draft = period_invoice(gateway, account, customer, tax_rate=rate)
    assert draft.status == "draft"
    assert period_invoice(gateway, account, customer, tax_rate=rate) == draft  # idempotent
    time.sleep(SEARCH_LAG + 0.1)
    assert gateway.find_period_invoice(account, "P1") == draft
    opened = gateway.finalize_invoice(draft.invoice_id, f"{account}:P1:finalize")
    assert opened.status == "open"
    paid = gateway.pay_invoice(draft.invoice_id, f"{account}:P1:pay:1")
    assert paid.status == "paid"
    assert gateway.pay_invoice(draft.invoice_id, f"{account}:P1:pay:2").status == "paid"
    assert gateway.retrieve_invoice(draft.invoice_id) == paid
    raw.v1.invoices.line_items.list(draft.invoice_id)
    raw.v1.invoices.list(params={"customer": customer, "expand": ["data.payments"]})
    raw.v1.charges.list(params={"customer": customer})
    raw.v1.payment_intents.list(params={"customer": customer})
    assert_stripe_shaped(recorder, validator, 200)


@pytest.mark.parametrize(
    ("test_id", "failure"),
    [
        ("pm_card_chargeCustomerFail", "card_declined"),
        ("pm_card_authenticationRequired", "authentication_required"),
    ],
)
def test_declined_charges(
    gateway: Any, test_id: str, failure: str, recorder: Recorder, validator: Validator
) -> None:
    account, customer = customer_with(gateway, test_id)
    invoice = period_invoice(gateway, account, customer)
    gateway.finalize_invoice(invoice.invoice_id, f"{account}:P1:finalize")
    result = gateway.pay_invoice(invoice.invoice_id, f"{account}:P1:pay:1")
    assert (result.status, result.failure_code) == ("payment_failed", failure)
    again = gateway.retrieve_invoice(invoice.invoice_id)
    assert (again.status, again.failure_code) == ("payment_failed", failure)
    assert_stripe_shaped(recorder, validator, 200, 402)


def test_sepa_debit_processing_then_paid(
    gateway: Any, recorder: Recorder, validator: Validator
) -> None:
    account, customer = customer_with(gateway, "pm_success_de")
    invoice = period_invoice(gateway, account, customer)
    gateway.finalize_invoice(invoice.invoice_id, f"{account}:P1:finalize")
    first = gateway.pay_invoice(invoice.invoice_id, f"{account}:P1:pay:1")
    assert first.status == "processing"  # the debit's PaymentIntent, invoice still open
    settled = eventually(lambda: gateway.retrieve_invoice(invoice.invoice_id).status == "paid")
    assert settled, "the debit did not settle"
    assert_stripe_shaped(recorder, validator, 200)


def test_void_and_delete(
    gateway: Any, raw: stripe.StripeClient, recorder: Recorder, validator: Validator
) -> None:
    account, customer = customer_with(gateway, "pm_card_visa")
    invoice = period_invoice(gateway, account, customer)
    gateway.finalize_invoice(invoice.invoice_id, f"{account}:P1:finalize")
    raw.v1.invoices.void_invoice(invoice.invoice_id)
    assert gateway.retrieve_invoice(invoice.invoice_id).status == "void"
    draft = period_invoice(gateway, account, customer, period="P2")
    raw.v1.invoices.delete(draft.invoice_id)
    other = gateway.ensure_customer(new_account(), "gone@example.com")
    raw.v1.customers.delete(other)
    assert gateway.default_payment_method(other) is None  # a deleted customer
    exchanges = assert_stripe_shaped(recorder, validator, 200)
    assert any(isinstance(e.body, dict) and e.body.get("deleted") for e in exchanges)


# --- errors -----------------------------------------------------------------------------


def test_error_bodies(
    gateway: Any, raw: stripe.StripeClient, recorder: Recorder, validator: Validator
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as missing:
        gateway.retrieve_invoice("in_doesnotexist0000000000")
    assert (missing.value.code, missing.value.param) == ("resource_missing", "id")
    with pytest.raises(stripe.InvalidRequestError) as unknown_pm:
        raw.v1.payment_methods.retrieve("pm_sepa_debit")  # not one of Stripe's test ids
    assert unknown_pm.value.code == "resource_missing"
    key = f"contract:{uuid.uuid4().hex}"
    raw.v1.customers.create(params={"email": "a@example.com"}, options={"idempotency_key": key})
    with pytest.raises(stripe.IdempotencyError):
        raw.v1.customers.create(params={"email": "b@example.com"}, options={"idempotency_key": key})
    with pytest.raises(stripe.InvalidRequestError) as invalid:
        raw.v1.customers.search(params={"query": "description:'x'"})
    assert invalid.value.param == "query"
    assert_stripe_shaped(recorder, validator, 400, 404)


def test_a_key_that_failed_validation_can_be_used_again(
    gateway: Any, raw: stripe.StripeClient, recorder: Recorder, validator: Validator
) -> None:
    """Stripe does not store a 400 validation error under its idempotency key
    (https://docs.stripe.com/api/idempotent_requests): the corrected retry runs."""
    _, customer = customer_with(gateway, None)
    key = f"contract:{uuid.uuid4().hex}"
    with pytest.raises(stripe.InvalidRequestError):
        raw.v1.invoices.create(
            params={"customer": customer, "collection_method": "sometimes"},
            options={"idempotency_key": key},
        )
    created = raw.v1.invoices.create(
        params={"customer": customer, "collection_method": "charge_automatically"},
        options={"idempotency_key": key},
    )
    assert created.status == "draft"
    assert_stripe_shaped(recorder, validator, 200, 400)


def test_events(raw: stripe.StripeClient, recorder: Recorder, validator: Validator) -> None:
    events = raw.v1.events.list(params={"limit": 100})
    assert events.data, "the earlier scenarios emitted events"
    raw.v1.events.retrieve(events.data[0].id)
    assert_stripe_shaped(recorder, validator, 200)


def test_every_gateway_method_was_driven() -> None:
    """A new gateway method must be added to this contract test."""
    public = {
        name
        for name, member in inspect.getmembers(StripeGateway)
        if not name.startswith("_") and inspect.isfunction(member)
    }
    assert public - CALLED == set()
