"""The committed Stripe schemas are what the installed stripe package says.

When the stripe package is upgraded (a new API version), this test fails and lists, per
Stripe class, every field added, removed or changed; after reading the list (and fixing
``devstack/fake_stripe/shapes.py`` and the product where needed) regenerate the snapshot:
``.venv/bin/python -m tests.contract.sdk_schemas --write``.
"""

from __future__ import annotations

import copy

import pytest
import stripe

from tests.contract.sdk_schemas import describe_changes, generate
from tests.contract.validate import load_snapshot

pytestmark = pytest.mark.sqlite_only  # no database here: one pass is enough


def test_snapshot_matches_the_installed_sdk() -> None:
    snapshot, current = load_snapshot(), generate()
    changes = describe_changes(snapshot, current)
    assert not changes, (
        f"stripe {stripe.VERSION} (API {stripe.api_version}) differs from the committed "
        f"schemas ({snapshot['x-stripe-sdk-version']}, API {snapshot['x-stripe-api-version']}):\n"
        + "\n".join(changes)
        + "\nregenerate with: .venv/bin/python -m tests.contract.sdk_schemas --write"
    )


def test_snapshot_records_its_origin() -> None:
    """Where the schemas came from, and for which SDK and API version (the one the
    product runs with: the gateway uses the SDK's own pinned API version)."""
    snapshot = load_snapshot()
    assert "tests/contract/sdk_schemas.py" in snapshot["x-source"]
    assert "not copied from the spec" in snapshot["x-source"]
    assert (snapshot["x-stripe-sdk-version"], snapshot["x-stripe-api-version"]) == (
        stripe.VERSION,
        stripe.api_version,
    ), "regenerate: .venv/bin/python -m tests.contract.sdk_schemas --write"


def test_the_generator_reads_the_sdk_annotations() -> None:
    """Spot checks against fields whose meaning the product relies on."""
    document = generate()
    invoice = document["$defs"]["invoice.Invoice"]
    assert {"amount_due", "subtotal", "lines", "livemode"} <= set(invoice["required"])
    assert "total_taxes" not in invoice["required"]  # Optional[List[TotalTax]]
    assert invoice["properties"]["amount_due"] == {"type": "integer"}
    assert "payments" not in invoice["required"]  # Optional: present only when expanded
    customer = invoice["properties"]["customer"]["anyOf"][0]
    assert customer["anyOf"][0] == {"type": "string"}  # ExpandableField: id or object
    assert customer["anyOf"][1] == {"$ref": "#/$defs/customer.Customer"}
    assert "account_balance" not in document["$defs"]["customer.Customer"]["properties"]
    assert "charges" not in document["$defs"]["payment_intent.PaymentIntent"]["properties"]
    status = document["$defs"]["payment_intent.PaymentIntent"]["properties"]["status"]
    assert "processing" in status.get("enum", status.get("x-known-values", []))


def test_the_diff_names_each_change() -> None:
    before = generate()
    after = copy.deepcopy(before)
    after["x-stripe-sdk-version"] = "99.0.0"
    intent = after["$defs"]["payment_intent.PaymentIntent"]
    del intent["properties"]["latest_charge"]
    intent["properties"]["new_field"] = {"type": "string"}
    intent["required"].append("new_field")
    intent["required"].remove("amount")
    del after["$defs"]["tax_rate.TaxRate.FlatAmount"]
    changes = describe_changes(before, after)
    assert "x-stripe-sdk-version: 16.1.0 -> 99.0.0" in changes
    assert "payment_intent.PaymentIntent: field 'latest_charge' removed" in changes
    added = "payment_intent.PaymentIntent: field 'new_field' added (required): "
    assert added + '{"type": "string"}' in changes
    assert "payment_intent.PaymentIntent: field 'amount' is now optional (nullable)" in changes
    assert "tax_rate.TaxRate.FlatAmount: class removed" in changes
