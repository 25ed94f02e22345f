"""Invoice items on emulated invoices: priced per unit, taxed per line.

Items are still created in localstripe (its validation of customer, amount and currency
applies), then attached to the emulated invoice as lines. ``quantity`` ×
``unit_amount_decimal`` (a decimal string of at most 12 decimal places; the product rounded
half up to the cent) is refused together with ``amount`` (Stripe: "only one of amount,
unit_amount_decimal") or a ``quantity`` other than 1 beside ``amount``. A line's tax rates
are its own ``tax_rates``, else the invoice's ``default_tax_rates``; a pending item (no
invoice yet) keeps its rates until an invoice takes it. Only draft invoices take or lose
items.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from devstack.fake_stripe.invoice_model import Invoice
from devstack.fake_stripe.wire import (
    Ctx,
    Json,
    Reply,
    StripeApiError,
    as_decimal,
    as_int,
    cents,
    check_params,
    json_reply,
    new_id,
    unix_now,
)

if TYPE_CHECKING:
    from devstack.fake_stripe.proxy import Emulator


class InvoiceItems:
    """Which item is on which invoice; used on the proxy's event loop only."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.item_to_invoice: dict[str, str] = {}
        # Pending items (no invoice yet) keep their rates here until an invoice takes them.
        self.pending_item_rates: dict[str, list[str]] = {}

    async def attach_item(
        self,
        ctx: Ctx,
        invoice: Invoice,
        item: Json,
        *,
        tax_rates: list[str] | None = None,
        quantity: int = 1,
        unit_amount_decimal: Decimal | None = None,
    ) -> None:
        """Mark a localstripe invoice item as taken (so it is no longer pending) and add
        the line to our invoice, taxed by its own rates or else the invoice's defaults."""
        await self.emulator.backend_json(
            ctx, "POST", f"/v1/invoiceitems/{item['id']}", params={"invoice": invoice.id}
        )
        self.item_to_invoice[item["id"]] = invoice.id
        if tax_rates is None:
            tax_rates = self.pending_item_rates.pop(item["id"], None)
        rates = tax_rates or invoice.default_tax_rates
        amount = int(item["amount"])
        unit = unit_amount_decimal if unit_amount_decimal is not None else Decimal(amount)
        item["tax_rates"] = [self.emulator.tax_rates.rates[r] for r in tax_rates or []]
        item["quantity"] = quantity
        item["pricing"] = {
            "price_details": None,
            "type": "price_details",
            "unit_amount_decimal": str(unit),
        }
        invoice.lines.append(
            {
                "id": new_id("il_"),
                "object": "line_item",
                "amount": int(item["amount"]),
                "currency": item["currency"],
                "description": item.get("description"),
                "discount_amounts": [],
                "discountable": True,
                "discounts": [],
                "invoice": invoice.id,
                "livemode": False,
                "metadata": dict(item.get("metadata") or {}),
                "parent": {
                    "type": "invoice_item_details",
                    "invoice_item_details": {
                        "invoice_item": item["id"],
                        "proration": False,
                        "proration_details": {"credited_items": None},
                        "subscription": None,
                    },
                    "subscription_item_details": None,
                },
                "period": dict(item.get("period") or {"start": unix_now(), "end": unix_now()}),
                "pretax_credit_amounts": [],
                "pricing": {
                    "price_details": None,
                    "type": "price_details",
                    "unit_amount_decimal": str(unit),
                },
                "quantity": quantity,
                "subtotal": amount,
                "taxes": self.emulator.tax_rates.line_taxes(amount, rates),
            }
        )

    async def create_invoice_item(self, ctx: Ctx) -> Reply | None:
        params = ctx.params
        invoice_id = params.get("invoice")
        ours = {"period", "tax_rates", "quantity", "unit_amount_decimal"}
        if not invoice_id and not ours & set(params):
            return None  # a plain pending item: localstripe handles it as is
        check_params(
            params,
            {
                "customer",
                "amount",
                "currency",
                "description",
                "metadata",
                "period",
                "invoice",
                "expand",
                "tax_rates",
                "quantity",
                "unit_amount_decimal",
            },
        )
        tax_rates = self.emulator.tax_rates.usable_rates(params.get("tax_rates"), "tax_rates")
        quantity = as_int(params.get("quantity"), "quantity")
        if quantity is not None and quantity < 0:
            raise StripeApiError(400, "quantity must be 0 or more.", param="quantity")
        unit: Decimal | None = None
        if "unit_amount_decimal" in params:
            if "amount" in params:
                raise StripeApiError(
                    400,
                    "You may only specify one of these parameters: amount, unit_amount_decimal.",
                    param="unit_amount_decimal",
                )
            unit = as_decimal(params["unit_amount_decimal"], "unit_amount_decimal", 12)
            if unit < 0:
                raise StripeApiError(
                    400, "unit_amount_decimal must be 0 or more.", param="unit_amount_decimal"
                )
        elif "amount" in params and quantity not in (None, 1):
            raise StripeApiError(
                400,
                "When amount is given, quantity must be 1 (use unit_amount_decimal for a "
                "price per unit).",
                param="quantity",
            )
        invoice = None
        if invoice_id:
            invoice = self.emulator.invoices.emulated(str(invoice_id))
            if invoice.state != "draft":
                raise StripeApiError(
                    400,
                    f"You can only add invoice items to draft invoices; {invoice.id} is "
                    f"{invoice.state}.",
                    param="invoice",
                )
            if params.get("customer") not in (None, invoice.customer):
                raise StripeApiError(
                    400, "The invoice belongs to another customer.", param="customer"
                )
        forwarded: Json = {
            k: v
            for k, v in params.items()
            if k in ("customer", "amount", "currency", "description", "metadata")
        }
        if unit is not None:  # localstripe knows amounts only: Stripe's product, in cents
            forwarded["amount"] = cents(unit * (quantity if quantity is not None else 1))
        if invoice is not None:
            forwarded.setdefault("customer", invoice.customer)
            forwarded.setdefault("currency", invoice.currency)
            if str(forwarded["currency"]).lower() != invoice.currency:
                raise StripeApiError(
                    400,
                    f"The currency of the invoice item ({forwarded['currency']}) must match "
                    f"the invoice's ({invoice.currency}).",
                    param="currency",
                )
        period = params.get("period")
        if isinstance(period, dict):  # Stripe's period[start]/[end] is localstripe's period_*
            forwarded["period_start"] = period.get("start")
            forwarded["period_end"] = period.get("end")
        if invoice is None:
            reply = await self.emulator.backend_call(
                ctx, "POST", "/v1/invoiceitems", params=forwarded
            )
            pending = reply.json()
            if reply.status == 200 and pending is not None and tax_rates:
                self.pending_item_rates[str(pending["id"])] = tax_rates
            return reply
        async with invoice.lock:
            item = await self.emulator.backend_json(
                ctx, "POST", "/v1/invoiceitems", params=forwarded
            )
            await self.attach_item(
                ctx,
                invoice,
                item,
                tax_rates=tax_rates,
                quantity=quantity if quantity is not None else 1,
                unit_amount_decimal=unit,
            )
            item["invoice"] = invoice.id
        return json_reply(200, item)

    async def delete_invoice_item(self, ctx: Ctx, id: str) -> Reply | None:
        invoice_id = self.item_to_invoice.get(id)
        if invoice_id is None:
            return None
        invoice = self.emulator.invoices.by_id[invoice_id]
        async with invoice.lock:
            if invoice.state != "draft":
                raise StripeApiError(400, "You can only delete items of draft invoices.")
            invoice.lines = [
                line
                for line in invoice.lines
                if line["parent"]["invoice_item_details"]["invoice_item"] != id
            ]
            del self.item_to_invoice[id]
            return await self.emulator.backend_call(ctx, "DELETE", f"/v1/invoiceitems/{id}")
