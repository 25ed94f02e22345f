"""A local Stripe for tests and the demo stack: the real localstripe behind a gap-filling proxy.

``FakeStripe`` (``server.py``) starts localstripe 1.15.10 as a child process on a free
loopback port and an aiohttp proxy (own thread, own event loop) in front of it. Clients,
including ``overtime.stripe_gateway`` and the browser stand-in for Stripe.js, talk only to
the proxy (``fake.api_base``). Most requests pass through unchanged; the proxy fills only
the gaps the gateway relies on, and keeps real semantics there (declines decline, unknown
ids 404, state lives as long as the server). Run standalone (demo stack, compose's staging
profile): ``python -m devstack.fake_stripe --port 8420``.

Gaps measured with stripe 16.1.0 (API 2026-10-28.endive). Each behaviour below names the
module that emulates it, the Stripe documentation it follows and the test that checks it
(docs/stripe-emulation.md has the same list as a table). ``tests/contract`` validates every
answer, success or error, against JSON Schemas generated from the installed stripe SDK's
classes (``sdk_schemas.py``, snapshot ``stripe_schemas.json``), and every parameter the
gateway sends against the SDK's ``*Params`` classes (``request_params.py``).

Emulated behaviours
-------------------

* **Object shapes of the pinned API version** (``shapes.py``): every JSON body leaving the
  proxy passes ``conform`` (fields Stripe removed dropped, fields it always sends filled,
  ``latest_charge`` unexpanded), error bodies ``conform_error`` (``resource_missing`` +
  ``param`` on 404s, ``doc_url``, ``request_log_url``; every answer has a ``Request-Id``).
  Docs: https://docs.stripe.com/upgrades, https://docs.stripe.com/api/errors,
  https://docs.stripe.com/error-codes, https://docs.stripe.com/api/pagination,
  https://docs.stripe.com/expand. Checked: ``tests/contract/test_fake_contract.py`` (all),
  ``test_emulated_behaviours.py::test_a_404_names_resource_missing_and_links_its_docs``.
* **Idempotency keys** (``idempotency.py``; localstripe ignores them): replay with
  ``Idempotent-Replayed: true``, 400 ``idempotency_error`` for other parameters, 409 while
  in flight, refused requests (a validation 400/404 naming its ``param``, a 401) not
  stored. Docs: https://docs.stripe.com/api/idempotent_requests,
  https://docs.stripe.com/error-low-level#idempotency. Checked:
  ``test_stripe_gateway.py::test_lost_answer_is_replayed_not_repeated``,
  ``::test_sdk_retry_reuses_the_idempotency_key``,
  ``test_fake_contract.py::test_error_bodies``,
  ``::test_a_key_that_failed_validation_can_be_used_again``,
  ``test_emulated_behaviours.py::test_a_validation_error_is_not_kept_under_its_key``; the
  409 has no test.
* **Test payment-method ids and cards** (``cards.py``, ``payment_methods.py``): Stripe's
  documented ids become real localstripe PaymentMethods of that card or IBAN (others, e.g.
  ``pm_sepa_debit``, are 404); outcomes follow the number or IBAN, so typed test numbers
  behave like their ids; card brands are corrected (localstripe says ``visa``). Docs:
  https://docs.stripe.com/testing. Checked:
  ``test_fake_stripe_payments.py::test_ids_stripe_does_not_have_are_unknown``,
  ``::test_a_typed_test_iban_behaves_like_its_id``,
  ``test_stripe_gateway.py::test_attach_test_card_becomes_default``; brands:
  ``test_invoicing.py::test_enabling_needs_a_payment_method_and_removing_it_disables``.
* **Declines at attach** (``payment_methods.py``): the decline table's cards are refused by
  ``/attach`` and SetupIntent confirm with a 402 ``card_error`` (``code``,
  ``decline_code``, ``doc_url``), nothing attached, the SetupIntent left
  ``requires_payment_method`` with ``last_setup_error``. Docs:
  https://docs.stripe.com/testing#declined-payments, https://docs.stripe.com/declines/codes.
  Checked: ``test_fake_stripe_payments.py::test_declining_cards_are_refused_at_attach``,
  ``::test_setup_intent_with_a_declining_card_keeps_waiting_for_a_method``,
  ``test_fake_contract.py::test_decline_at_attach``.
* **Declines at charge time** (``payments.py``): ``pm_card_chargeCustomerFail`` fails every
  charge, ``pm_card_authenticationRequired`` every off-session one; the invoice stays open,
  its PaymentIntent ``requires_payment_method`` with ``last_payment_error``. Docs:
  https://docs.stripe.com/testing#declined-payments. Checked:
  ``test_fake_stripe_payments.py::test_customer_fail_card_attaches_and_every_charge_fails``,
  ``::test_authentication_required_fails_off_session``,
  ``test_fake_contract.py::test_declined_charges``.
* **The invoice's PaymentIntent and charges** (``payments.py``, ``payment_objects.py``;
  localstripe cannot confirm a PaymentIntent twice): created at finalisation, one
  ``invoice_payment``, confirmed by every ``/pay``, one Charge per attempt, served by
  ``GET /v1/payment_intents[/{id}]`` and ``GET /v1/charges[/{id}]`` merged with
  localstripe's own; a zero invoice is paid at finalisation without one; voiding cancels
  it. Docs: https://docs.stripe.com/invoicing/partial-payments,
  https://docs.stripe.com/changelog/basil/2025-03-31/add-support-for-multiple-partial-payments-on-invoices.
  Checked: ``test_fake_stripe_payments.py``
  ``::test_one_payment_intent_from_finalisation_through_every_attempt``,
  ``::test_zero_invoice_is_paid_at_finalisation_without_an_intent``,
  ``::test_voiding_cancels_the_payment_intent``.
* **SEPA debits stay processing** (``payments.py``): for ``sepa_processing_seconds`` (the
  "Delayed" IBANs: ``sepa_delayed_processing_seconds``), settled by a timer on the proxy's
  loop, with events, whether or not anybody reads; a second ``/pay`` meanwhile is a 400.
  Docs: https://docs.stripe.com/testing#sepa-direct-debit,
  https://docs.stripe.com/payments/sepa-debit. Checked:
  ``test_fake_stripe_payments.py::test_sepa_debit_processing_then_settled``,
  ``::test_second_pay_refused_while_processing``,
  ``test_stripe_gateway.py::test_sepa_debit_processing_then_paid_is_charged_once``,
  ``::test_sepa_debit_processing_then_failing_is_charged_once``.
* **Standalone invoices** (``invoices.py``, ``invoice_items.py``, ``invoice_lifecycle.py``;
  localstripe 404s them without a subscription): draft, items, finalize, pay, void, mark
  uncollectible, delete a draft, list, ``/lines``, search, ``payments`` expandable to the
  PaymentIntent; items priced per unit (``quantity`` × ``unit_amount_decimal``). Docs:
  https://docs.stripe.com/api/invoices, https://docs.stripe.com/api/invoices/search.
  Checked: ``test_stripe_gateway.py::test_period_invoice_create_finalize_pay``,
  ``test_fake_contract.py::test_invoice_create_finalize_pay``, ``::test_void_and_delete``,
  per-unit items: ``test_invoice_tax.py::test_fake_stripe_tax_rates_and_items_behave_like_stripe``.
* **Hosted invoice page** (``hosted_page.py``): ``hosted_invoice_url`` leads to a stand-in
  page on the proxy, so demo links lead somewhere; not Stripe's page. Checked only that the
  URL is set and mailed: ``test_invoicing.py::test_card_invoice_paid_once_and_equal_to_the_ledger``.
* **Tax rates and VAT** (``tax_rates.py``; localstripe refuses ``country``/``tax_type`` and
  taxes inclusive rates as exclusive): proxy-owned rates, tax per line rounded half up,
  ``total_taxes``, ``total_excluding_tax``. Docs:
  https://docs.stripe.com/billing/taxes/tax-rates,
  https://docs.stripe.com/invoicing/taxes/tax-rates. Checked:
  ``test_invoice_tax.py::test_tax_is_rounded_per_line_as_stripe_does``,
  ``::test_fake_stripe_tax_rates_and_items_behave_like_stripe``,
  ``test_fake_contract.py::test_tax_rates``.
* **Customer ``tax_exempt`` and tax ids** (``customers.py``, ``passthrough.py``): kept by
  the proxy, copied to new invoices; Stripe's paging on a customer's ``tax_ids`` accepted.
  Docs: https://docs.stripe.com/tax/invoicing/tax-ids, https://docs.stripe.com/api/tax_ids.
  Checked: ``test_invoice_tax.py::test_eu_business_with_a_vat_id_gets_a_reverse_charge_invoice``,
  ``test_fake_contract.py::test_customers``.
* **Search** (``search.py``, ``customers.py``, ``invoices.py``; customer search is a 404 in
  localstripe): Stripe's query language on the fields Stripe supports (others a 400), and
  its lag: an object is found ``search_visibility_delay`` seconds after it was written
  (``DEFAULT_SEARCH_VISIBILITY_DELAY``). Docs: https://docs.stripe.com/search (query
  language, query fields per resource, data freshness). Checked:
  ``test_emulated_behaviours.py::test_stripes_query_fields_are_accepted``,
  ``::test_other_query_fields_are_stripes_400``, ``::test_search_trails_writes_by_default``,
  ``test_stripe_gateway.py::test_customer_converges_while_search_lags``,
  ``::test_period_invoice_created_once_while_search_lags``.
* **Events and webhooks** (``events.py``, ``webhook_controls.py``): ``GET /v1/events[/{id}]``
  with Stripe's filters and paging; forwarding like ``stripe listen --forward-to``: signed,
  at least once with backoff, out of order, sometimes twice, from a seeded RNG. Docs:
  https://docs.stripe.com/api/events, https://docs.stripe.com/webhooks,
  https://docs.stripe.com/stripe-cli. Checked: ``test_fake_stripe_webhooks.py`` (all),
  ``test_webhooks_first.py``, ``test_fake_contract.py::test_events``.
* **Payment-method lists** (``payment_methods.py``, ``localstripe_patches.py``): every type,
  ``type`` optional, newest first. Docs:
  https://docs.stripe.com/api/payment_methods/customer_list,
  https://docs.stripe.com/api/payment_methods/list. Checked:
  ``test_fake_contract.py::test_payment_method_lists``.
* **``payment_method_types`` no longer writable** (``passthrough.py``): a 400
  ``payment_method_types_no_longer_supported`` on PaymentIntent and SetupIntent writes;
  ``allowed_payment_method_types`` takes its place. Docs:
  https://docs.stripe.com/changelog/endive/2026-09-30/removes-the-payment-method-types-parameter-from-payment-intents-and-setup-intents.
  Checked: ``test_emulated_behaviours.py::test_payment_method_types_is_no_longer_writable``.
* **SetupIntents** (``passthrough.py``, ``payment_methods.py``): confirm with
  ``mandate_data`` (checked, then dropped: a 400 in localstripe); success attaches the
  method to the SetupIntent's customer. Docs:
  https://docs.stripe.com/payments/sepa-debit/set-up-payment,
  https://docs.stripe.com/api/setup_intents/confirm. Checked:
  ``test_stripe_gateway.py::test_setup_intent_confirmed_like_the_browser``,
  ``test_fake_contract.py::test_setup_intents_as_the_browser_confirms_them``.
* **Detaching** (``passthrough.py``) clears the customer's default payment method. Docs:
  https://docs.stripe.com/api/payment_methods/detach. Checked:
  ``test_stripe_gateway.py::test_detach_is_idempotent``,
  ``test_fake_contract.py::test_attach_detach_and_default``.
* **Deleted customers** (``customers.py``) read as ``{id, object, deleted}``, not a 404.
  Docs: https://docs.stripe.com/api/customers/delete. Checked:
  ``test_emulated_behaviours.py::test_a_deleted_customer_reads_as_deleted``.
* **Faults** (``faults.py``): ``inject_faults`` (5xx, 429, a dropped connection, an answer
  lost after the work) and ``inject_delay``; never stored under an idempotency key;
  ``request_log`` for "one invoice, one charge" assertions. Docs:
  https://docs.stripe.com/error-low-level, https://docs.stripe.com/rate-limits. Checked:
  ``test_stripe_gateway.py::test_injected_fault_is_retryable_and_retry_invoices_once``,
  ``::test_timeout_and_dropped_connection_are_retryable``.
* **Process hygiene and speed** (``localstripe_patches.py``, ``localstripe_main.py``,
  ``backend.py``): no shared pickle file, loopback only, the child ends with its parent;
  the store indexed by type and customer search by an index, so benchmark sizes stay
  linear. Not Stripe behaviour; checked:
  ``test_stripe_gateway.py::test_start_and_stop_are_idempotent_and_leave_nothing_behind``,
  ``::test_harness_as_async_context_manager``; speed by the benchmarks under ``bench/``.

Stripe.js: localstripe serves a stand-in at ``{api_base}/js.stripe.com/v3/``; the proxy
passes it (and everything else outside ``/v1/``) through. It derives its API base from its
own ``src``, so loading it from the proxy keeps the browser on the proxy.

Not filled (the gateway does not use them): Prices, billing meters, subscriptions through
the proxy's invoice store, customer.* events, confirming or changing an invoice's
PaymentIntent directly (400; pay the invoice), refunds. Known differences: idempotency keys
never expire (Stripe prunes them after 24 hours); ``GET /v1/payment_methods`` needs
``customer``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devstack.fake_stripe.cards import MAGIC_PAYMENT_METHODS
    from devstack.fake_stripe.cli import main
    from devstack.fake_stripe.faults import RequestRecord
    from devstack.fake_stripe.search import SEARCHABLE_FIELDS
    from devstack.fake_stripe.server import (
        DEFAULT_PUBLISHABLE_KEY,
        DEFAULT_SEARCH_VISIBILITY_DELAY,
        FakeStripe,
    )
    from devstack.fake_stripe.wire import StripeApiError

__all__ = [
    "DEFAULT_PUBLISHABLE_KEY",
    "DEFAULT_SEARCH_VISIBILITY_DELAY",
    "MAGIC_PAYMENT_METHODS",
    "SEARCHABLE_FIELDS",
    "FakeStripe",
    "RequestRecord",
    "StripeApiError",
    "main",
]

# Imported on first use, not here: localstripe's child process runs
# ``python -m devstack.fake_stripe.localstripe_main``, which imports this package first and
# needs none of the proxy (aiohttp client, the stripe SDK) to start.
_HOMES = {
    "DEFAULT_PUBLISHABLE_KEY": "server",
    "DEFAULT_SEARCH_VISIBILITY_DELAY": "server",
    "FakeStripe": "server",
    "MAGIC_PAYMENT_METHODS": "cards",
    "RequestRecord": "faults",
    "SEARCHABLE_FIELDS": "search",
    "StripeApiError": "wire",
    "main": "cli",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
