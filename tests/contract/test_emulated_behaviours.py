"""The fake's search and error behaviours that the contract test relies on, one by one:
search lags by default and accepts only Stripe's query fields; errors carry Stripe's
codes and links; a deleted customer reads as deleted."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import stripe

from devstack.fake_stripe import DEFAULT_SEARCH_VISIBILITY_DELAY, FakeStripe

pytestmark = pytest.mark.sqlite_only  # no database here: one pass is enough


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeStripe]:
    with FakeStripe() as harness:  # the defaults, as every test gets them
        yield harness


@pytest.fixture(scope="module")
def client(fake: FakeStripe) -> stripe.StripeClient:
    return stripe.StripeClient(
        fake.secret_key, base_addresses={"api": fake.api_base}, max_network_retries=0
    )


def test_search_trails_writes_by_default(fake: FakeStripe, client: stripe.StripeClient) -> None:
    assert fake.search_visibility_delay == DEFAULT_SEARCH_VISIBILITY_DELAY >= 1.0
    # A longer lag than the default here, so that a loaded machine cannot outrun it.
    lag = 3.0
    fake.search_visibility_delay = lag
    try:
        tag = uuid.uuid4().hex
        customer = client.v1.customers.create(params={"metadata": {"tag": tag}})
        invoice = client.v1.invoices.create(
            params={"customer": customer.id, "metadata": {"tag": tag}}
        )
        written = time.monotonic()  # both are older than this
        query = {"query": f"metadata['tag']:'{tag}'"}
        assert client.v1.customers.search(params=query).data == []  # read-after-write misses
        assert client.v1.invoices.search(params=query).data == []
        assert client.v1.customers.list(params={"limit": 100}).data  # lists are consistent
        time.sleep(max(0.0, written + lag + 0.1 - time.monotonic()))
        assert [c.id for c in client.v1.customers.search(params=query).data] == [customer.id]
        assert [i.id for i in client.v1.invoices.search(params=query).data] == [invoice.id]
    finally:
        fake.search_visibility_delay = DEFAULT_SEARCH_VISIBILITY_DELAY


@pytest.mark.parametrize(
    ("resource", "query"),
    [
        ("customers", "email:'a@example.com' AND name:'A' AND phone:'1' AND created>1"),
        ("customers", "metadata['account_id']:'x'"),
        ("invoices", "status:'open' AND currency:'eur' AND total>100 AND customer:'cus_x'"),
        ("invoices", "number:'X-1' OR receipt_number:'1' OR subscription:'sub_x'"),
        ("invoices", "last_finalization_error_code:'x' AND created<=5"),
    ],
)
def test_stripes_query_fields_are_accepted(
    client: stripe.StripeClient, resource: str, query: str
) -> None:
    service = client.v1.customers if resource == "customers" else client.v1.invoices
    assert service.search(params={"query": query}).data == []


@pytest.mark.parametrize(
    ("resource", "field"),
    [("customers", "description"), ("customers", "id"), ("invoices", "amount_due")],
)
def test_other_query_fields_are_stripes_400(
    client: stripe.StripeClient, resource: str, field: str
) -> None:
    service = client.v1.customers if resource == "customers" else client.v1.invoices
    with pytest.raises(stripe.InvalidRequestError) as refused:
        service.search(params={"query": f"{field}:'x'"})
    assert refused.value.http_status == 400
    assert refused.value.param == "query"
    assert f"'{field}' is an unsupported search field for resource '{resource}'" in str(
        refused.value.user_message
    )


def test_a_404_names_resource_missing_and_links_its_docs(fake: FakeStripe) -> None:
    for path in ("/v1/invoices/in_missing000000000000", "/v1/customers/cus_missing00000000"):
        answer = httpx.get(fake.api_base + path, auth=(fake.secret_key, ""))
        assert answer.status_code == 404
        error = answer.json()["error"]
        assert (error["type"], error["code"], error["param"]) == (
            "invalid_request_error",
            "resource_missing",
            "id",
        )
        assert error["doc_url"] == "https://stripe.com/docs/error-codes/resource-missing"
        request_id = answer.headers["Request-Id"]
        assert request_id.startswith("req_") and request_id in error["request_log_url"]


def test_a_deleted_customer_reads_as_deleted(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(params={"email": "gone@example.com"})
    client.v1.customers.delete(customer.id)
    again = client.v1.customers.retrieve(customer.id)
    assert again.to_dict() == {"id": customer.id, "object": "customer", "deleted": True}


def test_a_validation_error_is_not_kept_under_its_key(fake: FakeStripe) -> None:
    """https://docs.stripe.com/api/idempotent_requests: results are saved only once the
    endpoint began executing."""
    key = {"Idempotency-Key": uuid.uuid4().hex}
    auth = (fake.secret_key, "")
    url = fake.api_base + "/v1/customers"
    refused = httpx.post(url, data={"tax_exempt": "sometimes"}, headers=key, auth=auth)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "tax_exempt"
    created = httpx.post(url, data={"tax_exempt": "none"}, headers=key, auth=auth)
    assert created.status_code == 200 and created.json()["object"] == "customer"
    replayed = httpx.post(url, data={"tax_exempt": "none"}, headers=key, auth=auth)
    assert replayed.headers.get("Idempotent-Replayed") == "true"
    assert replayed.json()["id"] == created.json()["id"]


def test_payment_method_types_is_no_longer_writable(client: stripe.StripeClient) -> None:
    """API 2026-09-30.endive: https://docs.stripe.com/changelog/endive/2026-09-30/
    removes-the-payment-method-types-parameter-from-payment-intents-and-setup-intents"""
    customer = client.v1.customers.create()
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.setup_intents.create(
            params={"customer": customer.id, "payment_method_types": ["card"]}
        )
    assert refused.value.code == "payment_method_types_no_longer_supported"
    assert refused.value.param == "payment_method_types"
    intent = client.v1.setup_intents.create(
        params={"customer": customer.id, "allowed_payment_method_types": ["card", "sepa_debit"]}
    )
    assert intent.payment_method_types == ["card", "sepa_debit"]  # read-only, still shown
