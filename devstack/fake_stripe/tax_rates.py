"""Tax rates, and the tax of an invoice line, as Stripe computes them with Tax Rates.

localstripe's TaxRate refuses ``country`` and ``tax_type`` and taxes inclusive rates as if
exclusive, so the proxy owns tax rates: create, retrieve, update of the mutable fields
only (``percentage`` and ``inclusive`` are fixed for good), list filtered by ``active``
and ``inclusive``; like Stripe there is no ``/v1/tax_rates/search``. Tax is per line, on
the line's amount, rounded half up to the cent: exclusive rates add
``round(amount × p/100)``, inclusive rates contain ``amount - round(amount / (1 + p/100))``.
An inactive rate is refused for new items, at most one inclusive rate and ten rates per
line (https://docs.stripe.com/billing/taxes/tax-rates, https://docs.stripe.com/api/tax_rates).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from devstack.fake_stripe.wire import (
    Ctx,
    Json,
    Reply,
    StripeApiError,
    as_bool,
    as_decimal,
    as_int,
    cents,
    check_params,
    json_reply,
    merge_metadata,
    missing,
    new_id,
    unix_now,
)


def line_tax(amount: int, rate: Json, percentage: Decimal) -> Json:
    """One tax rate on one line, the way Stripe computes Tax Rates (see the module docstring)."""
    if rate["inclusive"]:
        tax = amount - cents(Decimal(amount) * 100 / (100 + percentage))
        taxable = amount - tax
    else:
        tax, taxable = cents(Decimal(amount) * percentage / 100), amount
    return {
        "amount": tax,
        "tax_behavior": "inclusive" if rate["inclusive"] else "exclusive",
        "tax_rate_details": {"tax_rate": rate["id"]},
        "taxability_reason": "standard_rated",
        "taxable_amount": taxable,
        "type": "tax_rate_details",
    }


_TAX_TYPES = {
    "amusement_tax",
    "communications_tax",
    "gst",
    "hst",
    "igst",
    "jct",
    "lease_tax",
    "pst",
    "qst",
    "retail_delivery_fee",
    "rst",
    "sales_tax",
    "service_tax",
    "vat",
}
_TAX_RATE_MUTABLE = {
    "active",
    "country",
    "description",
    "display_name",
    "jurisdiction",
    "metadata",
    "state",
    "tax_type",
    "expand",
}


class TaxRates:
    """The proxy's tax rates; used on its event loop only."""

    def __init__(self) -> None:
        self.rates: dict[str, Json] = {}
        self.percentages: dict[str, Decimal] = {}  # exact, as given (JSON has floats)

    def tax_rate(self, rate_id: Any, param: str = "tax_rates") -> Json:
        rate = self.rates.get(str(rate_id))
        if rate is None:
            raise missing("tax_rate", str(rate_id), param)
        return rate

    def _tax_rate_fields(self, params: Json, rate: Json) -> None:
        """Validate and apply the fields a create or an update may set."""
        if "display_name" in params:
            name = params["display_name"]
            if not isinstance(name, str) or not name.strip() or len(name) > 50:
                raise StripeApiError(
                    400, "display_name must be 1 to 50 characters.", param="display_name"
                )
            rate["display_name"] = name
        if "active" in params:
            rate["active"] = bool(as_bool(params["active"], "active"))
        if "country" in params:
            country = params["country"]
            if country == "":
                rate["country"] = None
            elif not isinstance(country, str) or not re.fullmatch(r"[A-Za-z]{2}", country):
                raise StripeApiError(
                    400, f"Invalid country: {country} (ISO 3166-1 alpha-2).", param="country"
                )
            else:
                rate["country"] = country.upper()
        for name in ("description", "jurisdiction", "state"):
            if name in params:
                value = params[name]
                if not isinstance(value, str) or len(value) > 500:
                    raise StripeApiError(400, f"Invalid {name}.", param=name)
                rate[name] = value or None
        if "tax_type" in params:
            if params["tax_type"] not in _TAX_TYPES:
                raise StripeApiError(
                    400, f"Invalid tax_type: {params['tax_type']}", param="tax_type"
                )
            rate["tax_type"] = params["tax_type"]
        if "metadata" in params:
            rate["metadata"] = merge_metadata(rate["metadata"], params["metadata"])

    async def create_tax_rate(self, ctx: Ctx) -> Reply:
        params = ctx.params
        check_params(params, _TAX_RATE_MUTABLE | {"display_name", "inclusive", "percentage"})
        for required in ("display_name", "inclusive", "percentage"):
            if required not in params:
                raise StripeApiError(400, f"Missing required param: {required}.", param=required)
        inclusive = as_bool(params["inclusive"], "inclusive")
        percentage = as_decimal(params["percentage"], "percentage", 4)
        if not Decimal(0) <= percentage <= Decimal(100):
            raise StripeApiError(400, "percentage must be between 0 and 100.", param="percentage")
        rate: Json = {
            "id": new_id("txr_"),
            "object": "tax_rate",
            "active": True,
            "country": None,
            "created": unix_now(),
            "description": None,
            "display_name": "",
            "effective_percentage": float(percentage),
            "flat_amount": None,
            "inclusive": bool(inclusive),
            "jurisdiction": None,
            "jurisdiction_level": None,
            "livemode": False,
            "metadata": {},
            "percentage": float(percentage),
            "rate_type": "percentage",
            "state": None,
            "tax_type": None,
        }
        self._tax_rate_fields(params, rate)
        self.rates[rate["id"]] = rate
        self.percentages[rate["id"]] = percentage
        return json_reply(200, rate)

    async def retrieve_tax_rate(self, ctx: Ctx, id: str) -> Reply:
        return json_reply(200, self.tax_rate(id, "id"))

    async def update_tax_rate(self, ctx: Ctx, id: str) -> Reply:
        rate = self.tax_rate(id, "id")
        # percentage and inclusive are fixed for good: Stripe refuses them here.
        check_params(ctx.params, _TAX_RATE_MUTABLE)
        updated = dict(rate)
        self._tax_rate_fields(ctx.params, updated)
        rate.update(updated)
        return json_reply(200, rate)

    async def list_tax_rates(self, ctx: Ctx) -> Reply:
        params = ctx.query
        check_params(
            params,
            {
                "active",
                "inclusive",
                "created",
                "limit",
                "starting_after",
                "ending_before",
                "expand",
            },
        )
        limit = as_int(params.get("limit"), "limit") or 10
        if not 1 <= limit <= 100:
            raise StripeApiError(400, "limit must be between 1 and 100.", param="limit")
        rates = sorted(self.rates.values(), key=lambda r: (r["created"], r["id"]), reverse=True)
        for name in ("active", "inclusive"):
            if name in params:
                wanted = as_bool(params[name], name)
                rates = [r for r in rates if r[name] == wanted]
        ids = [r["id"] for r in rates]
        if params.get("starting_after"):
            if params["starting_after"] not in self.rates:
                raise missing("tax_rate", str(params["starting_after"]), "starting_after")
            if params["starting_after"] in ids:
                rates = rates[ids.index(params["starting_after"]) + 1 :]
        elif params.get("ending_before") in ids:
            rates = rates[: ids.index(params["ending_before"])][-limit:]
        return json_reply(
            200,
            {
                "object": "list",
                "url": "/v1/tax_rates",
                "data": rates[:limit],
                "has_more": len(rates) > limit,
            },
        )

    def usable_rates(self, rate_ids: Any, param: str) -> list[str]:
        """Tax rate ids for a new item or invoice: existing, active, at most one inclusive
        and at most ten, as Stripe allows."""
        if rate_ids in (None, ""):
            return []
        if not isinstance(rate_ids, list):
            raise StripeApiError(400, f"Invalid array: {param}", param=param)
        rates = [self.tax_rate(rate_id, param) for rate_id in rate_ids]
        for rate in rates:
            if not rate["active"]:
                raise StripeApiError(
                    400,
                    f"Tax rate {rate['id']} is inactive and cannot be applied.",
                    param=param,
                )
        if sum(1 for rate in rates if rate["inclusive"]) > 1:
            raise StripeApiError(
                400, "You can only apply one inclusive tax rate per line.", param=param
            )
        if len(rates) > 10:
            raise StripeApiError(400, "At most 10 tax rates per line.", param=param)
        return [rate["id"] for rate in rates]

    def line_taxes(self, amount: int, rate_ids: list[str]) -> list[Json]:
        return [
            line_tax(amount, self.rates[rate_id], self.percentages[rate_id]) for rate_id in rate_ids
        ]
