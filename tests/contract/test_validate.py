"""The validator finds what the contract test exists to find (so a green contract test
means the shapes are right, not that nothing was checked)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.contract.recording import Exchange
from tests.contract.request_params import unknown_parameters
from tests.contract.validate import Validator, load_snapshot

pytestmark = pytest.mark.sqlite_only

TAX_RATE: dict[str, Any] = {
    "id": "txr_1",
    "object": "tax_rate",
    "active": True,
    "country": "DE",
    "created": 1700000000,
    "description": None,
    "display_name": "USt.",
    "effective_percentage": None,
    "flat_amount": None,
    "inclusive": False,
    "jurisdiction": None,
    "jurisdiction_level": None,
    "livemode": False,
    "metadata": {},
    "percentage": 19.0,
    "rate_type": "percentage",
    "state": None,
    "tax_type": "vat",
}


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator(load_snapshot())


def test_a_correct_object_passes(validator: Validator) -> None:
    assert validator.check_body(TAX_RATE) == []


def test_missing_null_unknown_and_enum_problems_are_named(validator: Validator) -> None:
    rate = copy.deepcopy(TAX_RATE)
    del rate["inclusive"]
    rate["livemode"] = None
    rate["account_balance"] = 0
    rate["tax_type"] = 7
    rate["metadata"] = {"k": 1}
    assert sorted(validator.check_body(rate)) == [
        "tax_rate.account_balance: not a field of stripe.TaxRate (unknown or removed)",
        "tax_rate.inclusive: required field missing",
        "tax_rate.livemode: expected boolean, got null",
        "tax_rate.metadata['k']: expected string, got 1",
        "tax_rate.tax_type: expected string, got 7",
    ]


def test_objects_inside_lists_events_and_errors_are_checked(validator: Validator) -> None:
    broken = {k: v for k, v in TAX_RATE.items() if k != "percentage"}
    listing = {"object": "list", "url": "/v1/tax_rates", "has_more": False, "data": [broken]}
    assert validator.check_body(listing) == ["list.data[0].percentage: required field missing"]
    event = {
        "id": "evt_1",
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": 1700000000,
        "data": {"object": broken},
        "livemode": False,
        "pending_webhooks": 0,
        "request": {"id": None, "idempotency_key": None},
        "type": "tax_rate.created",
    }
    assert validator.check_body(event) == ["event.data.object.percentage: required field missing"]
    error = {"error": {"type": "card_error", "code": "card_declined", "payment_intent": broken}}
    problems = validator.check_body(error)
    assert "error.error.payment_intent.object: expected 'payment_intent', got \"tax_rate\"" in (
        problems
    )


def test_an_expanded_field_is_checked_as_its_object(validator: Validator) -> None:
    item = {
        "id": "inpay_1",
        "object": "invoice_payment",
        "amount_paid": None,
        "amount_requested": 100,
        "created": 1700000000,
        "currency": "eur",
        "invoice": "in_1",
        "is_default": True,
        "livemode": False,
        "payment": {"type": "payment_intent", "payment_intent": "pi_1"},
        "status": "open",
        "status_transitions": {"canceled_at": None, "paid_at": None},
    }
    assert validator.check_body(item) == []
    item["payment"]["payment_intent"] = {"id": "pi_1", "object": "payment_intent"}
    problems = validator.check_body(item)
    assert "invoice_payment.payment.payment_intent.amount: required field missing" in problems
    assert "invoice_payment.payment.payment_intent.status: required field missing" in problems


def test_an_unknown_body_is_a_problem(validator: Validator) -> None:
    assert validator.check_body({"object": "coupon"}) == [
        "<body>: not a Stripe object we have a schema for: object coupon"
    ]


def _request(method: str, route_path: str, encoded: str) -> Exchange:
    query, body = (encoded, "") if method == "GET" else ("", encoded)
    return Exchange(method, route_path, query, body, 200, {}, "gateway")


def test_request_parameters_are_followed_through_the_sdk_params() -> None:
    known = _request(
        "POST",
        "/v1/customers/cus_1234567890",
        "invoice_settings%5Bdefault_payment_method%5D=pm_1&metadata%5Banything%5D=x"
        "&preferred_locales%5B0%5D=de-DE&tax_exempt=reverse&expand%5B0%5D=tax_ids",
    )
    assert unknown_parameters(known) == []
    removed = _request(
        "POST", "/v1/customers", "email=a%40example.com&account_balance=5&api_key=sk_x"
    )
    assert unknown_parameters(removed) == ["account_balance", "api_key"]
    nested = _request(
        "POST",
        "/v1/invoiceitems",
        "period%5Bstart%5D=1&period%5Bend%5D=2&period%5Bmiddle%5D=3&tax_rates%5B0%5D=txr_1",
    )
    assert unknown_parameters(nested) == ["period[middle]"]
    search = _request("GET", "/v1/invoices/search", "query=status%3A%27open%27&limit=100")
    assert unknown_parameters(search) == []
