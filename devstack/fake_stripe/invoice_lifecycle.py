"""An emulated invoice's way from draft to paid, void or uncollectible, as at Stripe.

``/finalize`` numbers the invoice and opens its PaymentIntent (a zero invoice is paid at
once, without one); ``/pay`` finalises a draft first and confirms that intent with the
chosen, the invoice's or the customer's default payment method (a test id of a card that
Stripe refuses to attach is charged, and declines, unattached); ``paid_out_of_band``
cancels the intent. A processing SEPA debit cannot be paid again or voided
(``invoice_payment_intent_requires_action``). Every step emits the ``invoice.*`` event
Stripe sends (``payments.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from devstack.fake_stripe.cards import MAGIC_PAYMENT_METHODS, StripeTestCard
from devstack.fake_stripe.invoice_model import Invoice
from devstack.fake_stripe.wire import (
    Ctx,
    Json,
    Reply,
    StripeApiError,
    as_bool,
    check_params,
    expand_list,
    missing,
    unix_now,
)

if TYPE_CHECKING:
    from devstack.fake_stripe.proxy import Emulator


class InvoiceLifecycle:
    """Finalize, pay, void, mark uncollectible; used on the proxy's event loop only."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    async def finalize_invoice(self, ctx: Ctx, id: str) -> Reply | None:
        if id not in self.emulator.invoices.by_id:
            return None
        invoice = self.emulator.invoices.by_id[id]
        check_params(ctx.params, {"auto_advance", "expand"})
        async with invoice.lock:
            if invoice.state != "draft":
                raise StripeApiError(
                    400,
                    "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
                    code="invoice_not_editable",
                )
            if "auto_advance" in ctx.params:
                invoice.auto_advance = bool(as_bool(ctx.params["auto_advance"], "auto_advance"))
            await self.finalize(ctx, invoice)
        return await self.emulator.invoices.invoice_reply(ctx, invoice, expand_list(ctx.params))

    async def finalize(self, ctx: Ctx, invoice: Invoice) -> None:
        self.emulator.invoices.counter += 1
        invoice.state = "open"
        invoice.finalized_at = unix_now()
        invoice.number = f"FAKE{invoice.customer[-6:].upper()}-{self.emulator.invoices.counter:04d}"
        if invoice.total == 0:  # Stripe settles zero invoices at finalization, no PaymentIntent
            invoice.state = "paid"
            invoice.paid_at = invoice.finalized_at
        else:  # the PaymentIntent every attempt confirms
            self.emulator.payments.open_intent(ctx, invoice)
        await self.emulator.payments.emit_invoice(ctx, "invoice.finalized", invoice)
        if invoice.state == "paid":
            await self.emulator.payments.emit_invoice(ctx, "invoice.paid", invoice)
            await self.emulator.payments.emit_invoice(ctx, "invoice.payment_succeeded", invoice)

    async def pay_invoice(self, ctx: Ctx, id: str) -> Reply | None:
        if id not in self.emulator.invoices.by_id:
            return None
        invoice = self.emulator.invoices.by_id[id]
        params = ctx.params
        check_params(
            params, {"off_session", "payment_method", "paid_out_of_band", "forgive", "expand"}
        )
        async with invoice.lock:
            await self.emulator.invoices.refresh(ctx, invoice)
            if invoice.state == "paid":
                raise StripeApiError(400, "Invoice is already paid", code="invoice_already_paid")
            if invoice.state == "void":
                raise StripeApiError(400, "You cannot pay a void invoice.")
            if invoice.state == "draft":
                await self.finalize(ctx, invoice)
                if invoice.state == "paid":
                    return await self.emulator.invoices.invoice_reply(
                        ctx, invoice, expand_list(params)
                    )
            if self.emulator.payments.processing(invoice):
                raise StripeApiError(
                    400,
                    "This invoice's payment is processing; it cannot be paid again until "
                    "that payment succeeds or fails.",
                    code="invoice_payment_intent_requires_action",
                )
            if as_bool(params.get("paid_out_of_band"), "paid_out_of_band"):
                await self.emulator.payments.cancel(ctx, invoice, None)
                invoice.state, invoice.paid_at, invoice.paid_out_of_band = "paid", unix_now(), True
                await self.emulator.payments.emit_invoice(ctx, "invoice.paid", invoice)
                return await self.emulator.invoices.invoice_reply(ctx, invoice, expand_list(params))
            payment_method = await self.payment_method_for(ctx, invoice, params)
            # Confirms the invoice's PaymentIntent; a decline raises its 402 once recorded.
            await self.emulator.payments.confirm(ctx, invoice, payment_method)
            return await self.emulator.invoices.invoice_reply(ctx, invoice, expand_list(params))

    async def payment_method_for(self, ctx: Ctx, invoice: Invoice, params: Json) -> Json:
        """The PaymentMethod to charge, as localstripe has it (brands corrected). A test id
        of a card Stripe refuses to attach is charged (and declines) unattached."""
        chosen = params.get("payment_method") or invoice.default_payment_method
        spec = MAGIC_PAYMENT_METHODS.get(chosen) if isinstance(chosen, str) else None
        if spec is not None:
            chosen = await self.emulator.methods.materialise(ctx, str(chosen), invoice.customer)
        if not chosen:
            customer = await self.emulator.customers.get_customer(ctx, invoice.customer)
            chosen = (customer.get("invoice_settings") or {}).get("default_payment_method")
            chosen = chosen or customer.get("default_source")
        if not chosen:
            raise StripeApiError(
                400,
                "This customer has no attached payment source or default payment method. "
                "Please consider adding a default payment method.",
            )
        method = await self.emulator.backend_call(ctx, "GET", f"/v1/payment_methods/{chosen}")
        payload = method.json()
        if method.status != 200 or payload is None:
            raise missing("payment_method", str(chosen), "payment_method")
        declines_at_attach = isinstance(spec, StripeTestCard) and spec.attach_decline is not None
        if payload.get("customer") != invoice.customer and not declines_at_attach:
            raise StripeApiError(
                400,
                f"The PaymentMethod {chosen} does not belong to the invoice's customer.",
                param="payment_method",
            )
        return dict(self.emulator.methods.decorate(payload))

    async def void_invoice(self, ctx: Ctx, id: str) -> Reply | None:
        if id not in self.emulator.invoices.by_id:
            return None
        invoice = self.emulator.invoices.by_id[id]
        async with invoice.lock:
            await self.emulator.invoices.refresh(ctx, invoice)
            if invoice.state not in ("open", "uncollectible"):
                raise StripeApiError(
                    400, f"You can only void open invoices; {id} is {invoice.state}."
                )
            if self.emulator.payments.processing(invoice):
                raise StripeApiError(
                    400,
                    f"You can't void {id} while its payment is processing.",
                    code="invoice_payment_intent_requires_action",
                )
            await self.emulator.payments.cancel(ctx, invoice, "void_invoice")
            invoice.state, invoice.voided_at = "void", unix_now()
            await self.emulator.payments.emit_invoice(ctx, "invoice.voided", invoice)
        return await self.emulator.invoices.invoice_reply(ctx, invoice, expand_list(ctx.params))

    async def mark_uncollectible(self, ctx: Ctx, id: str) -> Reply | None:
        if id not in self.emulator.invoices.by_id:
            return None
        invoice = self.emulator.invoices.by_id[id]
        async with invoice.lock:
            await self.emulator.invoices.refresh(ctx, invoice)
            if invoice.state != "open":
                raise StripeApiError(
                    400, f"You can only mark open invoices uncollectible; {id} is {invoice.state}."
                )
            invoice.state, invoice.uncollectible_at = "uncollectible", unix_now()
            await self.emulator.payments.emit_invoice(ctx, "invoice.marked_uncollectible", invoice)
        return await self.emulator.invoices.invoice_reply(ctx, invoice, expand_list(ctx.params))
