"""Payment methods as Stripe treats them: test ids, declines at attach, SetupIntents.

* **Test ids** (localstripe re-creates ``pm_card_visa`` on every read and 404s the rest):
  an id of ``cards.MAGIC_PAYMENT_METHODS`` is replaced, in the path and in
  ``payment_method`` / ``default_payment_method`` parameters, by a real localstripe
  PaymentMethod built from the matching test card or IBAN, memoised per (test id,
  customer) (``materialise``).
* **Brands**: localstripe labels every card ``visa``; the brand of every card seen being
  created is remembered and corrected in answers (``decorate``).
* **Declines at attach**: the cards of Stripe's decline table are refused by
  ``/attach``, by a SetupIntent confirm (also the Stripe.js stand-in's typed card number)
  with a 402 ``card_error``; nothing is attached and the SetupIntent stays
  ``requires_payment_method`` with ``last_setup_error``.
* **Lists**: ``GET /v1/payment_methods?customer=`` and
  ``GET /v1/customers/{id}/payment_methods`` list every type (``type`` optional), newest
  first, as Stripe does (localstripe insists on ``type=card``).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from devstack.fake_stripe.cards import (
    CARD_EXPIRY,
    MAGIC_PAYMENT_METHODS,
    StripeTestCard,
    card_error,
    card_for_number,
    card_of,
)
from devstack.fake_stripe.wire import (
    Ctx,
    Json,
    Reply,
    StripeApiError,
    as_int,
    check_params,
    internal_ctx,
    json_reply,
    missing,
)

if TYPE_CHECKING:
    from devstack.fake_stripe.proxy import Emulator

_PAYMENT_METHOD_LIST_PARAMS = {"type", "limit", "starting_after", "expand", "allow_redisplay"}


class PaymentMethods:
    """Test ids, corrected brands, refused attaches; used on the proxy's event loop only."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.magic: dict[tuple[str, str | None], str] = {}  # (test id, customer) → pm_...
        self.card_brands: dict[str, str] = {}
        self.setup_errors: dict[str, Json] = {}  # SetupIntent id → last_setup_error

    async def materialise(self, ctx: Ctx, magic: str, customer: Any) -> str:
        """The real localstripe PaymentMethod standing in for a Stripe test id."""
        key = (magic, customer if isinstance(customer, str) else None)
        if key in self.magic:
            return self.magic[key]
        spec = MAGIC_PAYMENT_METHODS[magic]
        body: Json
        if isinstance(spec, StripeTestCard):
            body = {"type": "card", "card": {"number": spec.number, **CARD_EXPIRY}}
        else:
            body = {
                "type": "sepa_debit",
                "sepa_debit": {"iban": spec.iban},
                "billing_details": {"name": "Jenny Rosen", "email": "jenny@example.com"},
            }
        created = await self.emulator.backend_json(ctx, "POST", "/v1/payment_methods", params=body)
        if isinstance(spec, StripeTestCard):
            self.card_brands[created["id"]] = spec.brand
        self.magic[key] = created["id"]
        return str(created["id"])

    async def list_payment_methods(self, ctx: Ctx) -> Reply:
        """``GET /v1/payment_methods?customer=…[&type=…]``; ``type`` is optional, as in
        Stripe (localstripe insists on ``type=card``). A customer is required here: the
        fake keeps no payment methods that belong to nobody worth listing."""
        params = ctx.query
        check_params(params, _PAYMENT_METHOD_LIST_PARAMS | {"customer"})
        customer = params.get("customer")
        if not isinstance(customer, str) or not customer:
            raise StripeApiError(400, "Missing required param: customer.", param="customer")
        return await self.payment_method_page(ctx, customer, params, "/v1/payment_methods")

    async def list_customer_payment_methods(self, ctx: Ctx, id: str) -> Reply:
        """``GET /v1/customers/{id}/payment_methods[?type=…]``."""
        check_params(ctx.query, _PAYMENT_METHOD_LIST_PARAMS)
        return await self.payment_method_page(
            ctx, id, ctx.query, f"/v1/customers/{id}/payment_methods"
        )

    async def payment_method_page(self, ctx: Ctx, customer: str, params: Json, url: str) -> Reply:
        if customer in self.emulator.customers.deleted:
            raise missing("customer", customer, "customer")
        limit = as_int(params.get("limit"), "limit") or 10
        if not 1 <= limit <= 100:
            raise StripeApiError(400, "limit must be between 1 and 100", param="limit")
        query = {"customer": customer, "limit": str(limit)}
        for name in ("type", "starting_after"):
            if params.get(name):
                query[name] = str(params[name])
        reply = await self.emulator.backend_call(
            ctx, "GET", "/v1/payment_methods", query=urlencode(query)
        )
        payload = reply.json()
        if reply.status != 200 or payload is None:
            return reply
        payload["url"] = url
        payload["data"] = self.decorate(payload["data"])
        return json_reply(200, payload)

    def decorate(self, payload: Any) -> Any:
        """Correct the card brands localstripe reports (always "visa"), wherever they
        appear."""
        if not self.card_brands:
            return payload
        if isinstance(payload, list):
            return [self.decorate(item) for item in payload]
        if not isinstance(payload, dict):
            return payload
        fixed = {k: self.decorate(v) for k, v in payload.items()}
        object_id = str(fixed.get("id"))
        brand = self.card_brands.get(object_id)
        if (
            fixed.get("object") == "payment_method"
            and brand
            and isinstance(fixed.get("card"), dict)
        ):
            fixed["card"] = {**fixed["card"], "brand": brand, "display_brand": brand}
        return fixed

    async def attach_payment_method(self, ctx: Ctx, id: str) -> Reply | None:
        """Cards of Stripe's decline table are refused at attach; the rest pass through."""
        spec = MAGIC_PAYMENT_METHODS.get(id)
        card: StripeTestCard | None = spec if isinstance(spec, StripeTestCard) else None
        method: Json | None = None
        if spec is None:
            reply = await self.emulator.backend_call(
                internal_ctx(ctx), "GET", f"/v1/payment_methods/{id}"
            )
            method = reply.json() if reply.status == 200 else None
            card = card_of(method) if method is not None else None
        if card is None or card.attach_decline is None:
            return None
        raise card_error(
            card.attach_decline, payment_method=self.decorate(method) if method else None
        )

    async def confirm_setup_intent(self, ctx: Ctx, id: str) -> Reply | None:
        """A declining card leaves the SetupIntent ``requires_payment_method`` with
        ``last_setup_error`` (localstripe would cancel it) and attaches nothing."""
        params = ctx.params
        card: StripeTestCard | None = None
        method: Json | None = None
        data = params.get("payment_method_data")
        chosen = params.get("payment_method")
        if isinstance(data, dict) and isinstance(data.get("card"), dict):
            card = card_for_number(data["card"].get("number"))
        elif isinstance(chosen, str) and chosen in MAGIC_PAYMENT_METHODS:
            spec = MAGIC_PAYMENT_METHODS[chosen]
            card = spec if isinstance(spec, StripeTestCard) else None
        elif isinstance(chosen, str):
            reply = await self.emulator.backend_call(
                internal_ctx(ctx), "GET", f"/v1/payment_methods/{chosen}"
            )
            method = reply.json() if reply.status == 200 else None
            card = card_of(method) if method is not None else None
        reply = await self.emulator.backend_call(
            internal_ctx(ctx), "GET", f"/v1/setup_intents/{id}"
        )
        intent = reply.json()
        if reply.status != 200 or intent is None:
            return None  # localstripe's answer (404) is the right one
        secret = params.get("client_secret")
        if secret is not None and secret != intent.get("client_secret"):
            return None  # localstripe refuses a wrong client secret
        if card is None or card.attach_decline is None:
            self.setup_errors.pop(id, None)
            if isinstance(chosen, str) and chosen in MAGIC_PAYMENT_METHODS:
                # The test id becomes a PaymentMethod of the SetupIntent's customer (not
                # one shared by every confirm without a customer parameter).
                real = await self.materialise(ctx, chosen, intent.get("customer"))
                forwarded = {**params, "payment_method": real}
                return await self.emulator.passthrough.forward(
                    replace(
                        ctx,
                        params=forwarded,
                        raw_body=json.dumps(forwarded).encode(),
                        content_type="application/json",
                    )
                )
            return None
        shown = self.decorate(method) if method else None
        error = card.attach_decline.error(payment_method=shown)
        self.setup_errors[id] = error
        intent = {
            **intent,
            "status": "requires_payment_method",
            "payment_method": None,
            "next_action": None,
            "last_setup_error": error,
        }
        raise card_error(card.attach_decline, setup_intent=intent, payment_method=shown)

    async def retrieve_setup_intent(self, ctx: Ctx, id: str) -> Reply | None:
        error = self.setup_errors.get(id)
        if error is None:
            return None
        reply: Reply = await self.emulator.passthrough.forward(ctx)
        intent = reply.json()
        if reply.status != 200 or intent is None:
            return reply
        return json_reply(200, {**intent, "last_setup_error": error})
