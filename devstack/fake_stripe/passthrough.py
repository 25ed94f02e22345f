"""Requests localstripe serves itself, with the gaps between it and Stripe filled.

What the proxy changes on the way in: test payment-method ids become real localstripe
PaymentMethods (``payment_methods.py``); a SetupIntent confirm's ``mandate_data`` is
checked (``customer_acceptance.type``) and dropped (400 in localstripe);
``payment_method_types`` on PaymentIntent and SetupIntent writes is refused as the pinned
API version does, and ``allowed_payment_method_types`` is renamed for localstripe; a
customer's ``tax_exempt`` is kept by the proxy (refused by localstripe); Stripe's paging
parameters on a customer's ``tax_ids`` list are dropped (refused by localstripe).

On the way out: customers are indexed for search and remembered when deleted; detaching
a PaymentMethod clears it as the customer's default, and a SetupIntent that succeeds
attaches its PaymentMethod to its customer, as at Stripe (localstripe does neither); the
brand of every card created is remembered (localstripe labels every card ``visa``).
"""

from __future__ import annotations

import re
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from devstack.fake_stripe.cards import MAGIC_PAYMENT_METHODS, brand_for
from devstack.fake_stripe.customers import INDEXED_CUSTOMER_FIELDS
from devstack.fake_stripe.wire import (
    INTERNAL_AUTHORIZATION,
    Ctx,
    Reply,
    StripeApiError,
    json_reply,
)

if TYPE_CHECKING:
    from devstack.fake_stripe.proxy import Emulator


class Passthrough:
    """The forwarding path of every request no emulated route answers."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    async def forward(self, ctx: Ctx) -> Reply:
        """Send ``ctx`` to localstripe with the gaps filled; fix up what it answers."""
        path = ctx.path
        params = ctx.params
        modified = False

        found = re.fullmatch(r"/v1/payment_methods/(pm_\w+)(/attach|/detach)?", path)
        if found and found.group(1) in MAGIC_PAYMENT_METHODS:
            customer = params.get("customer") if found.group(2) == "/attach" else None
            real = await self.emulator.methods.materialise(ctx, found.group(1), customer)
            path = f"/v1/payment_methods/{real}{found.group(2) or ''}"

        customer_in_path = re.fullmatch(r"/v1/customers/(cus_\w+)", path)
        customer_hint = customer_in_path.group(1) if customer_in_path else params.get("customer")
        if isinstance(params.get("payment_method"), str) and params["payment_method"] in (
            MAGIC_PAYMENT_METHODS
        ):
            params = {
                **params,
                "payment_method": await self.emulator.methods.materialise(
                    ctx, params["payment_method"], customer_hint
                ),
            }
            modified = True
        settings = params.get("invoice_settings")
        if isinstance(settings, dict) and settings.get("default_payment_method") in (
            MAGIC_PAYMENT_METHODS
        ):
            real = await self.emulator.methods.materialise(
                ctx, settings["default_payment_method"], customer_hint
            )
            params = {**params, "invoice_settings": {**settings, "default_payment_method": real}}
            modified = True
        if re.fullmatch(r"/v1/setup_intents/\w+/confirm", path) and "mandate_data" in params:
            mandate = params["mandate_data"]
            acceptance = mandate.get("customer_acceptance") if isinstance(mandate, dict) else None
            if not isinstance(acceptance, dict) or acceptance.get("type") not in (
                "online",
                "offline",
            ):
                raise StripeApiError(
                    400, "Invalid mandate_data.customer_acceptance", param="mandate_data"
                )
            params = {k: v for k, v in params.items() if k != "mandate_data"}
            modified = True
        intent_write = re.fullmatch(r"/v1/(setup|payment)_intents(/\w+(/confirm)?)?", path)
        if ctx.method == "POST" and intent_write and "payment_method_types" in params:
            raise StripeApiError(
                400,
                "payment_method_types is no longer supported on this API version; use "
                "allowed_payment_method_types or excluded_payment_method_types "
                "(https://docs.stripe.com/changelog/endive/2026-09-30/removes-the-payment-"
                "method-types-parameter-from-payment-intents-and-setup-intents).",
                code="payment_method_types_no_longer_supported",
                param="payment_method_types",
            )
        if ctx.method == "POST" and intent_write and "allowed_payment_method_types" in params:
            # The pinned API's name for the list; localstripe knows only the old one.
            params = dict(params)
            params["payment_method_types"] = params.pop("allowed_payment_method_types")
            modified = True

        exempt: str | None = None
        is_customer = re.fullmatch(r"/v1/customers(/cus_\w+)?", path)
        if is_customer and ctx.method == "POST" and "tax_exempt" in params:
            exempt = params["tax_exempt"]
            if exempt not in ("none", "exempt", "reverse"):
                raise StripeApiError(400, f"Invalid tax_exempt: {exempt}", param="tax_exempt")
            params = {k: v for k, v in params.items() if k != "tax_exempt"}
            modified = True

        detaching = re.fullmatch(r"/v1/payment_methods/(pm_\w+)/detach", path)
        detached_from: str | None = None
        if detaching and ctx.method == "POST":
            before = await self.emulator.backend_call(
                ctx, "GET", f"/v1/payment_methods/{detaching[1]}"
            )
            detached_from = (before.json() or {}).get("customer")

        query = ctx.query_string
        if ctx.method == "GET" and re.fullmatch(r"/v1/customers/cus_\w+/tax_ids", path):
            # localstripe refuses Stripe's paging parameters here (a customer has a few
            # tax ids: the whole list is one page).
            query = ""
        if exempt is not None and not params and path != "/v1/customers":
            # Only tax_exempt changed: localstripe refuses an empty update.
            reply = await self.emulator.backend_call(ctx, "GET", path)
        elif modified:
            reply = await self.emulator.backend_call(
                ctx, ctx.method, path, params=params, query=query
            )
        else:
            reply = await self.emulator.backend_call(
                ctx,
                ctx.method,
                path,
                raw=ctx.raw_body or None,
                content_type=ctx.content_type,
                query=query,
            )
        payload = reply.json()
        if payload is None or reply.status != 200:
            return reply
        if ctx.method == "POST" and path == "/v1/customers":
            self.emulator.customers.seen_at[payload["id"]] = time.monotonic()
        customer_path = re.fullmatch(r"/v1/customers(/cus_\w+)?", path)
        if ctx.method == "POST" and customer_path and payload.get("object") == "customer":
            self.emulator.customers.index[payload["id"]] = {
                k: payload.get(k) for k in INDEXED_CUSTOMER_FIELDS
            }
        if ctx.method == "DELETE" and re.fullmatch(r"/v1/customers/cus_\w+", path):
            self.emulator.customers.index.pop(path.rsplit("/", 1)[1], None)
            self.emulator.customers.deleted.add(path.rsplit("/", 1)[1])
        if detaching and detached_from:
            # Stripe stops using a detached method as the customer's default; localstripe
            # keeps pointing at it.
            owner = await self.emulator.backend_json(ctx, "GET", f"/v1/customers/{detached_from}")
            settings = owner.get("invoice_settings") or {}
            if settings.get("default_payment_method") == detaching[1]:
                await self.emulator.backend_json(
                    ctx,
                    "POST",
                    f"/v1/customers/{detached_from}",
                    params={"invoice_settings": {"default_payment_method": ""}},
                )
        if ctx.method == "POST" and path == "/v1/payment_methods":
            card = params.get("card")
            if isinstance(card, dict) and isinstance(card.get("number"), str):
                self.emulator.methods.card_brands[payload["id"]] = brand_for(card["number"])
        if (
            re.fullmatch(r"/v1/setup_intents/\w+/confirm", path)
            and payload.get("status") == "succeeded"
            and payload.get("customer")
            and payload.get("payment_method")
        ):
            # Stripe attaches the method to the SetupIntent's customer; localstripe not.
            # The browser (Stripe.js) confirms with the publishable key, which may not
            # read or attach payment methods: these follow-up calls use a secret key.
            internal = replace(ctx, authorization=INTERNAL_AUTHORIZATION)
            method = await self.emulator.backend_json(
                internal, "GET", f"/v1/payment_methods/{payload['payment_method']}"
            )
            if method.get("customer") is None:
                await self.emulator.backend_json(
                    internal,
                    "POST",
                    f"/v1/payment_methods/{payload['payment_method']}/attach",
                    params={"customer": payload["customer"]},
                )
        data = params.get("payment_method_data")
        if isinstance(data, dict) and isinstance(data.get("card"), dict):
            number = data["card"].get("number")
            pm_id = payload.get("payment_method")
            if isinstance(number, str) and isinstance(pm_id, str):
                self.emulator.methods.card_brands[pm_id] = brand_for(number)
        if exempt is not None and payload.get("object") == "customer":
            self.emulator.customers.tax_exempt[str(payload["id"])] = exempt
        return json_reply(
            reply.status,
            self.emulator.customers.customer_view(self.emulator.methods.decorate(payload)),
        )
