"""Paying emulated invoices the way Stripe does: the invoice's PaymentIntent, its
charges, SEPA debits that stay ``processing``.

* **One PaymentIntent per invoice**, created when the invoice is finalised (amount due,
  ``payment_method_types`` card and sepa_debit) and confirmed again by every ``/pay``, so the
  invoice has exactly one ``invoice_payment``. A failed attempt is a 402 ``card_error`` (as
  Stripe does since 2017-12-14) and leaves it ``requires_payment_method`` with
  ``last_payment_error``; a SEPA attempt leaves it ``processing`` (the invoice stays
  ``open``, another ``/pay`` is refused) until a timer on the proxy's event loop settles it
  after ``sepa_processing_seconds`` (the "Delayed" test IBANs:
  ``sepa_delayed_processing_seconds``), events included, whether or not anybody reads; a
  read after the due time settles it too. These intents live here, not in localstripe
  (which cannot confirm a PaymentIntent twice), and are served by
  ``GET /v1/payment_intents/{id}`` and ``GET /v1/payment_intents`` (merged with
  localstripe's own intents); changing one directly is refused (pay the invoice).
* **Every attempt makes one Charge** (``latest_charge``; ``pending`` while a debit
  processes, then ``succeeded`` or ``failed`` with ``failure_code``), served by
  ``GET /v1/charges/{id}`` and ``GET /v1/charges`` (merged with localstripe's own), so
  "charged once" stays countable.
* **Events** (``invoice.*``, ``invoice_payment.paid``, ``payment_intent.*``) go to the
  emulator's ``events`` bus at each transition, with the object as an unexpanded GET shows
  it.

What each test card or IBAN does is in ``cards.py``; the objects' shapes in
``payment_objects.py``.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from devstack.fake_stripe.cards import (
    AUTHENTICATION_REQUIRED,
    Decline,
    card_error,
    card_of,
    iban_of,
)
from devstack.fake_stripe.invoice_model import Invoice, Payment
from devstack.fake_stripe.payment_objects import InvoiceCharge, InvoiceIntent
from devstack.fake_stripe.wire import (
    Ctx,
    Json,
    Reply,
    StripeApiError,
    as_int,
    check_params,
    internal_ctx,
    json_reply,
    new_id,
    unix_now,
)

if TYPE_CHECKING:
    from devstack.fake_stripe.proxy import Emulator


class InvoicePayments:
    """The proxy's invoice PaymentIntents and everything that moves them; one per emulator,
    used only on the proxy's event loop."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.intents: dict[str, InvoiceIntent] = {}
        self.charges: dict[str, InvoiceCharge] = {}
        self.sepa_processing_seconds = 1.0
        self.sepa_delayed_processing_seconds = 6.0
        self._settling: set[asyncio.Task[None]] = set()

    def emit(self, ctx: Ctx | None, type_: str, obj: Json) -> None:
        events = getattr(self.emulator, "events", None)
        if events is None:  # the event bus is not wired in (yet)
            return
        events.emit(
            type_,
            obj,
            request_id=getattr(ctx, "request_id", None),
            idempotency_key=getattr(ctx, "idempotency_key", None),
        )

    async def emit_invoice(self, ctx: Ctx | None, type_: str, invoice: Invoice) -> None:
        self.emit(
            ctx, type_, await self.emulator.invoices.invoice_json(internal_ctx(ctx), invoice, [])
        )

    def intent_of(self, invoice: Invoice) -> InvoiceIntent | None:
        if not invoice.payments:
            return None
        return self.intents.get(invoice.payments[0].payment_intent)

    def processing(self, invoice: Invoice) -> bool:
        intent = self.intent_of(invoice)
        return intent is not None and intent.status == "processing"

    def payment_json(self, invoice: Invoice, payment: Payment, expand_intent: bool) -> Json:
        """One ``invoice_payment`` of ``invoice.payments.data``."""
        intent: Any = payment.payment_intent
        if expand_intent and intent in self.intents:
            intent = self.intents[intent].json()
        return {
            "id": payment.id,
            "object": "invoice_payment",
            "amount_paid": payment.amount if payment.status == "paid" else None,
            "amount_requested": payment.amount,
            "created": payment.created,
            "currency": invoice.currency,
            "invoice": invoice.id,
            "is_default": True,
            "livemode": False,
            "payment": {"type": "payment_intent", "payment_intent": intent},
            "status": payment.status,
            "status_transitions": {
                "canceled_at": payment.canceled_at,
                "paid_at": payment.paid_at,
            },
        }

    # -- the invoice's PaymentIntent -------------------------------------------------------

    def open_intent(self, ctx: Ctx | None, invoice: Invoice) -> None:
        """At finalisation: the PaymentIntent every attempt will confirm."""
        intent_id = new_id("pi_")
        intent = InvoiceIntent(
            id=intent_id,
            invoice=invoice.id,
            customer=invoice.customer,
            amount=invoice.total,
            currency=invoice.currency,
            created=unix_now(),
            client_secret=f"{intent_id}_secret_{new_id('')}",
        )
        self.intents[intent_id] = intent
        invoice.payments = [Payment(new_id("inpay_"), intent_id, invoice.total, intent.created)]
        self.emit(ctx, "payment_intent.created", intent.json())

    async def confirm(self, ctx: Ctx, invoice: Invoice, method: Json) -> None:
        """One payment attempt with ``method`` (a localstripe PaymentMethod, read just now);
        raises the 402 of a decline after recording it."""
        intent = self.intent_of(invoice)
        if intent is None:  # an invoice finalised before it had an amount cannot get here
            raise StripeApiError(400, "This invoice has no payment to attempt.")
        invoice.attempt_count += 1
        intent.attempt += 1
        intent.payment_method = str(method["id"])
        intent.method = method
        intent.last_payment_error = None
        charge = InvoiceCharge(
            id=new_id("ch_"),
            payment_intent=intent.id,
            customer=invoice.customer,
            amount=intent.amount,
            currency=intent.currency,
            created=unix_now(),
            method=method,
            status="pending",
        )
        self.charges[charge.id] = charge
        intent.latest_charge = charge.id
        if method.get("type") == "sepa_debit":
            iban = iban_of(method)
            delayed = iban is not None and iban.delayed
            delay = (
                self.sepa_delayed_processing_seconds if delayed else self.sepa_processing_seconds
            )
            intent.status = "processing"
            intent.settles_at = time.monotonic() + delay
            intent.settle_failure = iban.failure if iban is not None else None
            asyncio.get_running_loop().call_later(
                max(delay, 0.0), self._settle_later, intent.id, intent.attempt
            )
            self.emit(ctx, "payment_intent.processing", intent.json())
            return
        card = card_of(method)
        decline = card.decline if card is not None else None
        if decline is None:
            await self._succeeded(ctx, invoice, intent)
            return
        await self._failed(ctx, invoice, intent, decline)
        if decline is AUTHENTICATION_REQUIRED:
            await self.emit_invoice(ctx, "invoice.payment_action_required", invoice)
        raise card_error(
            decline, charge=charge.id, payment_intent=intent.json(), payment_method=method
        )

    async def _succeeded(self, ctx: Ctx | None, invoice: Invoice, intent: InvoiceIntent) -> None:
        now = unix_now()
        intent.status, intent.amount_received = "succeeded", intent.amount
        self._settle_charge(intent, "succeeded", None)
        payment = invoice.payments[0]
        payment.status, payment.paid_at = "paid", now
        invoice.state, invoice.paid_at = "paid", now
        self.emit(ctx, "payment_intent.succeeded", intent.json())
        self.emit(ctx, "invoice_payment.paid", self.payment_json(invoice, payment, False))
        await self.emit_invoice(ctx, "invoice.paid", invoice)
        await self.emit_invoice(ctx, "invoice.payment_succeeded", invoice)

    async def _failed(
        self, ctx: Ctx | None, invoice: Invoice, intent: InvoiceIntent, decline: Decline
    ) -> None:
        intent.status = "requires_payment_method"
        self._settle_charge(intent, "failed", decline)
        intent.last_payment_error = decline.error(
            charge=intent.latest_charge, payment_method=intent.method
        )
        self.emit(ctx, "payment_intent.payment_failed", intent.json())
        await self.emit_invoice(ctx, "invoice.payment_failed", invoice)

    def _settle_charge(self, intent: InvoiceIntent, status: str, failure: Decline | None) -> None:
        charge = self.charges.get(intent.latest_charge or "")
        if charge is not None:
            charge.status, charge.failure = status, failure

    def _settle_later(self, intent_id: str, attempt: int) -> None:
        """The SEPA timer (proxy loop): settle, with events, even if nobody reads."""
        intent = self.intents.get(intent_id)
        if intent is None or intent.attempt != attempt or intent.status != "processing":
            return
        task = asyncio.ensure_future(self._settle(intent))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def settle_due(self, invoice: Invoice) -> None:
        """On every read: a debit past its due time has settled, timer or not."""
        intent = self.intent_of(invoice)
        if (
            intent is not None
            and intent.status == "processing"
            and intent.settles_at is not None
            and intent.settles_at <= time.monotonic()
        ):
            await self._settle(intent)

    async def _settle(self, intent: InvoiceIntent) -> None:
        # No await before the state changes: the timer and a reader cannot both settle,
        # and no lock is taken (readers call this while holding the invoice's lock).
        invoice = self.emulator.invoices.by_id.get(intent.invoice)
        if intent.status != "processing" or invoice is None:
            return
        intent.settles_at = None
        if intent.settle_failure is None:
            await self._succeeded(None, invoice, intent)
        else:
            await self._failed(None, invoice, intent, intent.settle_failure)

    async def cancel(self, ctx: Ctx, invoice: Invoice, reason: str | None) -> None:
        """Void or paid out of band: the PaymentIntent is canceled, its payment too."""
        intent = self.intent_of(invoice)
        if intent is None:
            return
        now = unix_now()
        payment = invoice.payments[0]
        if payment.status == "open":
            payment.status, payment.canceled_at = "canceled", now
        if intent.status not in ("succeeded", "canceled"):
            intent.status, intent.canceled_at, intent.cancellation_reason = "canceled", now, reason
            intent.settles_at = None
            self.emit(ctx, "payment_intent.canceled", intent.json())

    # -- routes --------------------------------------------------------------------------

    async def retrieve_intent(self, ctx: Ctx, id: str) -> Reply | None:
        intent = self.intents.get(id)
        if intent is None:
            return None  # localstripe's own PaymentIntents
        invoice = self.emulator.invoices.by_id.get(intent.invoice)
        if invoice is not None:
            await self.settle_due(invoice)
        return json_reply(200, intent.json())

    async def refuse_write(self, ctx: Ctx, id: str) -> Reply | None:
        if id not in self.intents:
            return None
        raise StripeApiError(
            400,
            "Changing an invoice's PaymentIntent directly is not emulated by fake_stripe; "
            "pay, void or mark the invoice instead.",
        )

    async def list_payment_intents(self, ctx: Ctx) -> Reply:
        params = ctx.query
        check_params(
            params, {"customer", "created", "limit", "starting_after", "ending_before", "expand"}
        )
        await self._settle_all_due()
        found = [intent.json() for intent in self.intents.values()]
        # localstripe cannot filter its PaymentIntents: all of them, filtered here.
        found += await self._backend_list(ctx, "/v1/payment_intents", {})
        return self._list_reply("/v1/payment_intents", params, found)

    async def _settle_all_due(self) -> None:
        for intent in list(self.intents.values()):
            invoice = self.emulator.invoices.by_id.get(intent.invoice)
            if invoice is not None:
                await self.settle_due(invoice)

    async def retrieve_charge(self, ctx: Ctx, id: str) -> Reply | None:
        charge = self.charges.get(id)
        if charge is None:
            return None  # localstripe's own charges
        invoice = self.emulator.invoices.by_id.get(self._invoice_of_charge(charge))
        if invoice is not None:
            await self.settle_due(invoice)
        return json_reply(200, charge.json())

    def _invoice_of_charge(self, charge: InvoiceCharge) -> str:
        intent = self.intents.get(charge.payment_intent)
        return intent.invoice if intent is not None else ""

    async def list_charges(self, ctx: Ctx) -> Reply:
        params = ctx.query
        check_params(
            params,
            {
                "customer",
                "payment_intent",
                "created",
                "limit",
                "starting_after",
                "ending_before",
                "expand",
            },
        )
        await self._settle_all_due()
        customer = params.get("customer")
        # localstripe filters charges by customer itself (and knows no payment_intent filter).
        found = [charge.json() for charge in self.charges.values()]
        found += await self._backend_list(
            ctx, "/v1/charges", {"customer": customer} if customer else {}
        )
        if params.get("payment_intent"):
            found = [c for c in found if c.get("payment_intent") == params["payment_intent"]]
        return self._list_reply("/v1/charges", params, found)

    def _list_reply(self, url: str, params: Json, found: list[Json]) -> Reply:
        """One page of a Stripe list over ``found`` (newest first)."""
        limit = as_int(params.get("limit"), "limit") or 10
        if not 1 <= limit <= 100:
            raise StripeApiError(400, "limit must be between 1 and 100.", param="limit")
        customer = params.get("customer")
        if customer:
            found = [o for o in found if o.get("customer") == customer]
        found = [o for o in found if _created_matches(params.get("created"), o)]
        # Newest first; within a second, the later made first (``found`` is in creation order).
        found = sorted(reversed(found), key=lambda o: int(o.get("created") or 0), reverse=True)
        ids = [o["id"] for o in found]
        if params.get("starting_after") in ids:
            found = found[ids.index(params["starting_after"]) + 1 :]
        elif params.get("ending_before") in ids:
            found = found[: ids.index(params["ending_before"])][-limit:]
        return json_reply(
            200,
            {"object": "list", "url": url, "data": found[:limit], "has_more": len(found) > limit},
        )

    async def _backend_list(self, ctx: Ctx, path: str, filters: dict[str, str]) -> list[Json]:
        """All of a localstripe list (paged through), brands corrected."""
        found: list[Json] = []
        after: str | None = None
        while True:
            query = urlencode(
                {**filters, "limit": "100", **({"starting_after": after} if after else {})}
            )
            page = await self.emulator.backend_json(ctx, "GET", path, query=query)
            found.extend(self.emulator.methods.decorate(page.get("data") or []))
            if not page.get("has_more") or not page.get("data"):
                return found
            after = str(page["data"][-1]["id"])


def _created_matches(condition: Any, obj: Json) -> bool:
    """Stripe's ``created`` list filter: an exact time or ``gt``/``gte``/``lt``/``lte``."""
    if condition is None:
        return True
    created = int(obj.get("created") or 0)
    if not isinstance(condition, dict):
        return str(created) == str(condition)
    checks = {
        "gt": lambda bound: created > bound,
        "gte": lambda bound: created >= bound,
        "lt": lambda bound: created < bound,
        "lte": lambda bound: created <= bound,
    }
    return all(checks[op](int(value)) for op, value in condition.items() if op in checks)
