"""Standalone invoices, which the proxy owns (localstripe answers ``POST /v1/invoices``
without a subscription with a 404 "No upcoming invoices", ``collection_method`` /
``auto_advance`` with a 500, and knows no ``/finalize`` and no search).

Create (a draft; pending items excluded unless ``pending_invoice_items_behavior=include``),
retrieve, update, delete, list, ``/lines`` and ``/v1/invoices/search``, in Stripe's object
shape for the pinned API version, including the ``payments`` list (expandable down to
``payments.data.payment.payment_intent``), ``total_taxes``, ``customer_tax_exempt`` (copied
from the customer at creation) and ``footer``. Search trails writes as Stripe's does
(``search_visibility_delay``). Items: ``invoice_items.py``; finalize, pay, void, mark
uncollectible: ``invoice_lifecycle.py``; the PaymentIntent: ``payments.py``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from devstack.fake_stripe.cards import MAGIC_PAYMENT_METHODS
from devstack.fake_stripe.invoice_model import Invoice
from devstack.fake_stripe.search import search_filter, search_page
from devstack.fake_stripe.wire import (
    Ctx,
    Json,
    Reply,
    StripeApiError,
    as_bool,
    as_int,
    check_params,
    expand_list,
    json_reply,
    merge_metadata,
    missing,
    new_id,
    unix_now,
)

if TYPE_CHECKING:
    from devstack.fake_stripe.proxy import Emulator

_INVOICE_EXPANDABLE = {
    "payments",
    "payments.data.payment.payment_intent",
    "customer",
    "default_payment_method",
}


class Invoices:
    """The emulated invoices by id; used on the proxy's event loop only."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.by_id: dict[str, Invoice] = {}
        self.counter = 0  # invoices created or finalised: numbers stay unique

    def emulated(self, invoice_id: str) -> Invoice:
        invoice = self.by_id.get(invoice_id)
        if invoice is None:
            raise missing("invoice", invoice_id)
        return invoice

    async def create_invoice(self, ctx: Ctx) -> Reply | None:
        params = ctx.params
        if params.get("subscription"):
            return None  # localstripe's own subscription invoices
        check_params(
            params,
            {
                "customer",
                "currency",
                "collection_method",
                "auto_advance",
                "description",
                "metadata",
                "days_until_due",
                "due_date",
                "pending_invoice_items_behavior",
                "default_payment_method",
                "default_tax_rates",
                "footer",
                "expand",
            },
        )
        default_tax_rates = self.emulator.tax_rates.usable_rates(
            params.get("default_tax_rates"), "default_tax_rates"
        )
        customer_id = params.get("customer")
        if not isinstance(customer_id, str) or not customer_id:
            raise StripeApiError(400, "Missing required param: customer.", param="customer")
        customer = await self.emulator.customers.get_customer(ctx, customer_id)
        collection = params.get("collection_method", "charge_automatically")
        if collection not in ("charge_automatically", "send_invoice"):
            raise StripeApiError(400, "Invalid collection_method", param="collection_method")
        days_until_due = as_int(params.get("days_until_due"), "days_until_due")
        due_date = as_int(params.get("due_date"), "due_date")
        if collection == "send_invoice" and days_until_due is None and due_date is None:
            raise StripeApiError(
                400,
                "Invoices with collection_method=send_invoice need days_until_due or due_date.",
                param="days_until_due",
            )
        behavior = params.get("pending_invoice_items_behavior", "exclude")
        if behavior not in ("include", "exclude"):
            raise StripeApiError(
                400,
                "Invalid pending_invoice_items_behavior",
                param="pending_invoice_items_behavior",
            )
        default_pm = params.get("default_payment_method") or None
        if isinstance(default_pm, str) and default_pm in MAGIC_PAYMENT_METHODS:
            default_pm = await self.emulator.methods.materialise(ctx, default_pm, customer_id)
        self.counter += 1
        now = unix_now()
        invoice = Invoice(
            id=new_id("in_"),
            customer=customer_id,
            customer_email=customer.get("email"),
            customer_name=customer.get("name"),
            currency=str(params.get("currency") or customer.get("currency") or "eur").lower(),
            collection_method=collection,
            auto_advance=bool(as_bool(params.get("auto_advance"), "auto_advance")),
            description=params.get("description") or None,
            metadata=merge_metadata({}, params.get("metadata") or {}),
            created=now,
            seen_at=time.monotonic(),
            days_until_due=days_until_due,
            due_date=due_date,
            default_payment_method=default_pm,
            default_tax_rates=default_tax_rates,
            footer=params.get("footer") or None,
            customer_tax_exempt=self.emulator.customers.tax_exempt.get(customer_id, "none"),
        )
        self.by_id[invoice.id] = invoice
        if behavior == "include":
            pending = await self.emulator.backend_json(
                ctx,
                "GET",
                "/v1/invoiceitems",
                query=urlencode({"customer": customer_id, "limit": "100"}),
            )
            for item in pending["data"]:
                if item.get("invoice") is None and item.get("currency") == invoice.currency:
                    await self.emulator.items.attach_item(ctx, invoice, item)
        await self.emulator.payments.emit_invoice(ctx, "invoice.created", invoice)
        return await self.invoice_reply(ctx, invoice, expand_list(params))

    async def retrieve_invoice(self, ctx: Ctx, id: str) -> Reply | None:
        if id not in self.by_id:
            return None
        invoice = self.by_id[id]
        await self.refresh(ctx, invoice)
        return await self.invoice_reply(ctx, invoice, expand_list(ctx.query))

    async def update_invoice(self, ctx: Ctx, id: str) -> Reply | None:
        if id not in self.by_id:
            return None
        invoice = self.by_id[id]
        params = ctx.params
        check_params(
            params, {"metadata", "description", "auto_advance", "default_payment_method", "expand"}
        )
        async with invoice.lock:
            if "metadata" in params:
                invoice.metadata = merge_metadata(invoice.metadata, params["metadata"])
            if invoice.state != "draft" and (
                {"description", "default_payment_method"} & set(params)
            ):
                raise StripeApiError(
                    400,
                    "Finalized invoices can't be updated in this way.",
                    code="invoice_not_editable",
                )
            if "description" in params:
                invoice.description = params["description"] or None
            if "auto_advance" in params:
                invoice.auto_advance = bool(as_bool(params["auto_advance"], "auto_advance"))
            if "default_payment_method" in params:
                invoice.default_payment_method = params["default_payment_method"] or None
        return await self.invoice_reply(ctx, invoice, expand_list(params))

    async def delete_invoice(self, ctx: Ctx, id: str) -> Reply | None:
        if id not in self.by_id:
            return None
        invoice = self.by_id[id]
        async with invoice.lock:
            if invoice.state != "draft":
                raise StripeApiError(
                    400, "You can only delete draft invoices.", code="invoice_not_editable"
                )
            for line in invoice.lines:
                item_id = line["parent"]["invoice_item_details"]["invoice_item"]
                self.emulator.items.item_to_invoice.pop(item_id, None)
                await self.emulator.backend_call(ctx, "DELETE", f"/v1/invoiceitems/{item_id}")
            del self.by_id[id]
        return json_reply(200, {"id": id, "object": "invoice", "deleted": True})

    async def list_invoices(self, ctx: Ctx) -> Reply | None:
        params = ctx.query
        if params.get("subscription"):
            return None
        check_params(params, {"customer", "status", "limit", "starting_after", "expand"})
        limit = as_int(params.get("limit"), "limit") or 10
        invoices = sorted(self.by_id.values(), key=lambda i: (i.created, i.id), reverse=True)
        if params.get("customer"):
            invoices = [i for i in invoices if i.customer == params["customer"]]
        for invoice in invoices:
            await self.refresh(ctx, invoice)
        if params.get("status"):
            invoices = [i for i in invoices if i.state == params["status"]]
        if params.get("starting_after"):
            ids = [i.id for i in invoices]
            if params["starting_after"] in ids:
                invoices = invoices[ids.index(params["starting_after"]) + 1 :]
        expand = [e.removeprefix("data.") for e in expand_list(params)]
        data = [await self.invoice_json(ctx, i, expand) for i in invoices[:limit]]
        return json_reply(
            200,
            {
                "object": "list",
                "url": "/v1/invoices",
                "data": data,
                "has_more": len(invoices) > limit,
            },
        )

    async def search_invoices(self, ctx: Ctx) -> Reply:
        params = ctx.query
        check_params(params, {"query", "limit", "page", "expand"})
        if not params.get("query"):
            raise StripeApiError(400, "Missing required param: query.", param="query")
        horizon = time.monotonic() - self.emulator.search_visibility_delay
        expand = [e.removeprefix("data.") for e in expand_list(params)]
        candidates = []
        for invoice in list(self.by_id.values()):
            if invoice.seen_at > horizon:
                continue
            await self.refresh(ctx, invoice)
            candidates.append(await self.invoice_json(ctx, invoice, []))
        page = search_page(ctx.path, params, search_filter(params["query"], candidates, "invoices"))
        if expand:
            page["data"] = [
                await self.invoice_json(ctx, self.by_id[item["id"]], expand)
                for item in page["data"]
            ]
        return json_reply(200, page)

    async def invoice_lines(self, ctx: Ctx, id: str) -> Reply | None:
        if id not in self.by_id:
            return None
        invoice = self.by_id[id]
        return json_reply(
            200,
            {
                "object": "list",
                "url": f"/v1/invoices/{id}/lines",
                "data": [dict(line) for line in invoice.lines],
                "has_more": False,
            },
        )

    async def refresh(self, ctx: Ctx, invoice: Invoice) -> None:
        """Settle a SEPA debit whose time has come (its timer may not have run yet)."""
        await self.emulator.payments.settle_due(invoice)

    async def invoice_reply(self, ctx: Ctx, invoice: Invoice, expand: list[str]) -> Reply:
        return json_reply(200, await self.invoice_json(ctx, invoice, expand))

    async def invoice_json(self, ctx: Ctx, invoice: Invoice, expand: list[str]) -> Json:
        for path in expand:
            if path not in _INVOICE_EXPANDABLE:
                raise StripeApiError(
                    400, f"This property cannot be expanded ({path}).", param="expand"
                )
        total = invoice.total
        subtotal = invoice.subtotal
        all_tax = invoice.tax("exclusive") + invoice.tax("inclusive")
        paid = invoice.state == "paid"
        finalized = invoice.finalized_at is not None
        hosted = f"{self.emulator.public_base}/_fake/invoices/{invoice.id}" if finalized else None
        payload: Json = {
            "id": invoice.id,
            "object": "invoice",
            "account_country": "DE",
            "account_name": "Overtime (fake Stripe)",
            "amount_due": total,
            "amount_overpaid": 0,
            "amount_paid": total if paid else 0,
            "amount_remaining": 0 if paid else total,
            "amount_shipping": 0,
            "application": None,
            "attempt_count": invoice.attempt_count,
            "attempted": invoice.attempt_count > 0,
            "auto_advance": invoice.auto_advance,
            "automatic_tax": {
                "disabled_reason": None,
                "enabled": False,
                "liability": None,
                "provider": None,
                "status": None,
            },
            "automatically_finalizes_at": None,
            "billing_reason": "manual",
            "collection_method": invoice.collection_method,
            "confirmation_secret": None,
            "created": invoice.created,
            "currency": invoice.currency,
            "custom_fields": None,
            "customer": invoice.customer,
            "customer_address": None,
            "customer_email": invoice.customer_email,
            "customer_name": invoice.customer_name,
            "customer_phone": None,
            "customer_shipping": None,
            "customer_tax_exempt": invoice.customer_tax_exempt,
            "customer_tax_ids": [],
            "default_payment_method": invoice.default_payment_method,
            "default_source": None,
            "default_tax_rates": [
                dict(self.emulator.tax_rates.rates[r]) for r in invoice.default_tax_rates
            ],
            "description": invoice.description,
            "discounts": [],
            "due_date": invoice.due_date,
            "effective_at": invoice.finalized_at,
            "ending_balance": 0 if finalized else None,
            "footer": invoice.footer,
            "from_invoice": None,
            "hosted_invoice_url": hosted,
            "invoice_pdf": f"{hosted}?format=pdf" if hosted else None,
            "issuer": {"type": "self"},
            "last_finalization_error": None,
            "latest_revision": None,
            "lines": {
                "object": "list",
                "url": f"/v1/invoices/{invoice.id}/lines",
                "data": [dict(line) for line in invoice.lines],
                "has_more": False,
                "total_count": len(invoice.lines),
            },
            "livemode": False,
            "metadata": dict(invoice.metadata),
            "next_payment_attempt": None,
            "number": invoice.number,
            "on_behalf_of": None,
            "parent": None,
            "payment_settings": {
                "default_mandate": None,
                "payment_method_options": None,
                "payment_method_types": None,
            },
            "period_end": invoice.created,
            "period_start": invoice.created,
            "post_payment_credit_notes_amount": 0,
            "pre_payment_credit_notes_amount": 0,
            "receipt_number": None,
            "rendering": None,
            "shipping_cost": None,
            "shipping_details": None,
            "starting_balance": 0,
            "statement_descriptor": None,
            "status": invoice.state,
            "status_transitions": {
                "finalized_at": invoice.finalized_at,
                "marked_uncollectible_at": invoice.uncollectible_at,
                "paid_at": invoice.paid_at,
                "voided_at": invoice.voided_at,
            },
            "subtotal": subtotal,
            "subtotal_excluding_tax": subtotal - invoice.tax("inclusive"),
            "test_clock": None,
            "total": total,
            "total_discount_amounts": [],
            "total_excluding_tax": total - all_tax,
            "total_pretax_credit_amounts": [],
            "total_taxes": invoice.total_taxes(),
            "webhooks_delivered_at": invoice.created,
        }
        if "customer" in expand:
            payload["customer"] = self.emulator.methods.decorate(
                await self.emulator.customers.get_customer(ctx, invoice.customer)
            )
        if "default_payment_method" in expand and invoice.default_payment_method:
            payload["default_payment_method"] = self.emulator.methods.decorate(
                await self.emulator.backend_json(
                    ctx, "GET", f"/v1/payment_methods/{invoice.default_payment_method}"
                )
            )
        if "payments" in expand or "payments.data.payment.payment_intent" in expand:
            with_intents = "payments.data.payment.payment_intent" in expand
            payload["payments"] = {
                "object": "list",
                "url": "/v1/invoice_payments",
                "data": [
                    self.emulator.payments.payment_json(invoice, payment, with_intents)
                    for payment in invoice.payments
                ],
                "has_more": False,
            }
        return payload
