"""Checks that a request sends only parameters the pinned SDK knows for its endpoint.

The SDK's ``stripe.params.*Params`` TypedDicts (generated from Stripe's OpenAPI spec,
like the resource classes) list what each endpoint accepts. A form or query key such as
``invoice_settings[default_payment_method]`` or ``expand[0]`` is followed through them
(nested TypedDicts, lists by index, free dicts such as ``metadata`` by any key), so a
parameter Stripe removed or never had is reported by name.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from typing import Any
from urllib.parse import parse_qsl

import stripe.params
import typing_extensions
from stripe._request_options import RequestOptions
from stripe._stripe_object import UntypedStripeObject

from tests.contract.recording import Exchange
from tests.contract.sdk_schemas import _hints

# Every route the product's gateway calls → the SDK's parameter class for it.
ROUTE_PARAMS: dict[str, str] = {
    "GET /v1/customers/search": "CustomerSearchParams",
    "POST /v1/customers": "CustomerCreateParams",
    "GET /v1/customers/{id}": "CustomerRetrieveParams",
    "POST /v1/customers/{id}": "CustomerUpdateParams",
    "GET /v1/customers/{id}/tax_ids": "CustomerTaxIdListParams",
    "POST /v1/customers/{id}/tax_ids": "CustomerTaxIdCreateParams",
    "GET /v1/tax_rates": "TaxRateListParams",
    "POST /v1/tax_rates": "TaxRateCreateParams",
    "POST /v1/setup_intents": "SetupIntentCreateParams",
    "GET /v1/payment_methods/{id}": "PaymentMethodRetrieveParams",
    "POST /v1/payment_methods/{id}/attach": "PaymentMethodAttachParams",
    "POST /v1/payment_methods/{id}/detach": "PaymentMethodDetachParams",
    "GET /v1/invoices/search": "InvoiceSearchParams",
    "POST /v1/invoices": "InvoiceCreateParams",
    "GET /v1/invoices/{id}": "InvoiceRetrieveParams",
    "POST /v1/invoiceitems": "InvoiceItemCreateParams",
    "POST /v1/invoices/{id}/finalize": "InvoiceFinalizeInvoiceParams",
    "POST /v1/invoices/{id}/pay": "InvoicePayParams",
}

# Request options (api_key, idempotency_key, …) are headers, never parameters.
_OPTIONS = frozenset(inspect.get_annotations(RequestOptions))


def unknown_parameters(exchange: Exchange) -> list[str]:
    """The keys of ``exchange``'s query or form body that its endpoint does not take
    (its route must be in ``ROUTE_PARAMS``)."""
    params_class = getattr(stripe.params, ROUTE_PARAMS[exchange.route])
    encoded = exchange.query if exchange.method in ("GET", "DELETE") else exchange.request_body
    unknown = []
    for key, _value in parse_qsl(encoded, keep_blank_values=True):
        if not _accepts(params_class, re.findall(r"[^\[\]]+", key), top=True):
            unknown.append(key)
    return unknown


def _accepts(hint: Any, parts: list[str], top: bool = False) -> bool:
    if not parts:
        return True
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    for option in typing.get_args(hint) if union else (hint,):
        origin, args = typing.get_origin(option), typing.get_args(option)
        base = origin or option
        if typing_extensions.is_typeddict(option):
            fields, name = _hints(option), parts[0]
            allowed = name in fields and not (top and name in _OPTIONS)
            if allowed and _accepts(fields[name], parts[1:]):
                return True
        elif base in (list, typing.List) and parts[0].isdigit():  # noqa: UP006
            if _accepts(args[0], parts[1:]):
                return True
        elif base in (dict, typing.Dict):  # noqa: UP006
            if _accepts(args[1], parts[1:]):
                return True
        elif inspect.isclass(base) and issubclass(base, UntypedStripeObject):
            return True
    return False
