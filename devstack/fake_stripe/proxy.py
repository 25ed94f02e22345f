"""The proxy in front of localstripe: one aiohttp handler for every request.

Per request, in this order: CORS preflight and non-API paths (Stripe.js stand-in, hosted
invoice pages) first; then an injected fault or delay (``faults.py``); then the
idempotency store (``idempotency.py``); then the API key (any ``sk_`` key, publishable keys
only where localstripe allows them); then the first emulated route that answers (the
table in ``Emulator._routes``), else localstripe through ``passthrough.py``. Every JSON
body leaving the proxy passes ``shapes.conform`` (errors ``shapes.conform_error``), and
every answer has a ``Request-Id``. localstripe's text 404/405 for unknown routes become
Stripe-shaped errors, so the SDK raises ``InvalidRequestError``, not a parse error.

All state lives on the proxy's event loop, in the components below, except the request
journal, which the test's thread reads (its own lock).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from devstack.fake_stripe.customers import Customers
from devstack.fake_stripe.events import EventBus, EventListError
from devstack.fake_stripe.faults import Fault, RequestJournal, injected_error
from devstack.fake_stripe.hosted_page import hosted_invoice_page
from devstack.fake_stripe.idempotency import IdempotencyStore
from devstack.fake_stripe.invoice_items import InvoiceItems
from devstack.fake_stripe.invoice_lifecycle import InvoiceLifecycle
from devstack.fake_stripe.invoices import Invoices
from devstack.fake_stripe.passthrough import Passthrough
from devstack.fake_stripe.payment_methods import PaymentMethods
from devstack.fake_stripe.payments import InvoicePayments
from devstack.fake_stripe.shapes import conform, conform_error
from devstack.fake_stripe.tax_rates import TaxRates
from devstack.fake_stripe.wire import (
    Ctx,
    Json,
    Reply,
    StripeApiError,
    json_reply,
    missing,
    new_id,
    parse_body,
    unflatten,
)

Handler = Callable[..., Awaitable[Reply | None]]
Route = tuple[str, re.Pattern[str], Handler]


class Emulator:
    """The proxy's request handling and state; lives entirely on the proxy's event loop
    except for the journal (faults, log) the public API touches from the test's thread."""

    def __init__(self, backend: str, public_base: str, search_visibility_delay: float) -> None:
        self.backend = backend
        self.public_base = public_base
        self.search_visibility_delay = search_visibility_delay
        self.session: aiohttp.ClientSession | None = None
        self.journal = RequestJournal()  # faults + log, shared with the caller's thread
        self.idempotency = IdempotencyStore()
        # Stripe's events (events.py): emit() at every change Stripe announces.
        self.events = EventBus()
        self.customers = Customers(self)
        self.methods = PaymentMethods(self)
        self.tax_rates = TaxRates()
        self.invoices = Invoices(self)
        self.items = InvoiceItems(self)
        self.lifecycle = InvoiceLifecycle(self)
        # Invoice PaymentIntents and charges, SEPA timers (payments.py).
        self.payments = InvoicePayments(self)
        self.passthrough = Passthrough(self)
        self.routes = self._routes()

    def _routes(self) -> list[Route]:
        """Emulated routes, first match wins; a handler answering None passes the request
        on (to localstripe, through ``passthrough``)."""
        customers, methods, tax_rates = self.customers, self.methods, self.tax_rates
        invoices, items, lifecycle, payments = (
            self.invoices,
            self.items,
            self.lifecycle,
            self.payments,
        )
        invoice = r"/v1/invoices/(?P<id>in_\w+)"
        table: list[tuple[str, str, Handler]] = [
            ("GET", r"/v1/events", self.list_events),
            ("GET", r"/v1/events/(?P<id>[^/]+)", self.retrieve_event),
            ("POST", r"/v1/tax_rates", tax_rates.create_tax_rate),
            ("GET", r"/v1/tax_rates", tax_rates.list_tax_rates),
            ("GET", r"/v1/tax_rates/(?P<id>txr_\w+)", tax_rates.retrieve_tax_rate),
            ("POST", r"/v1/tax_rates/(?P<id>txr_\w+)", tax_rates.update_tax_rate),
            ("GET", r"/v1/customers/search", customers.search_customers),
            ("GET", r"/v1/invoices/search", invoices.search_invoices),
            ("POST", r"/v1/invoices", invoices.create_invoice),
            ("GET", r"/v1/invoices", invoices.list_invoices),
            ("GET", invoice, invoices.retrieve_invoice),
            ("POST", invoice, invoices.update_invoice),
            ("DELETE", invoice, invoices.delete_invoice),
            ("GET", invoice + "/lines", invoices.invoice_lines),
            ("POST", invoice + "/finalize", lifecycle.finalize_invoice),
            ("POST", invoice + "/pay", lifecycle.pay_invoice),
            ("POST", invoice + "/void", lifecycle.void_invoice),
            ("POST", invoice + "/mark_uncollectible", lifecycle.mark_uncollectible),
            ("POST", r"/v1/invoiceitems", items.create_invoice_item),
            ("DELETE", r"/v1/invoiceitems/(?P<id>ii_\w+)", items.delete_invoice_item),
            ("GET", r"/v1/payment_methods", methods.list_payment_methods),
            (
                "GET",
                r"/v1/customers/(?P<id>cus_\w+)/payment_methods",
                methods.list_customer_payment_methods,
            ),
            ("GET", r"/v1/customers/(?P<id>cus_\w+)", customers.retrieve_deleted_customer),
            ("GET", r"/v1/payment_intents", payments.list_payment_intents),
            ("GET", r"/v1/payment_intents/(?P<id>pi_\w+)", payments.retrieve_intent),
            ("POST", r"/v1/payment_intents/(?P<id>pi_\w+)(/\w+)?", payments.refuse_write),
            ("GET", r"/v1/charges", payments.list_charges),
            ("GET", r"/v1/charges/(?P<id>ch_\w+)", payments.retrieve_charge),
            ("POST", r"/v1/payment_methods/(?P<id>pm_\w+)/attach", methods.attach_payment_method),
            ("POST", r"/v1/setup_intents/(?P<id>seti_\w+)/confirm", methods.confirm_setup_intent),
            ("GET", r"/v1/setup_intents/(?P<id>seti_\w+)", methods.retrieve_setup_intent),
        ]
        return [(method, re.compile(pattern), handler) for method, pattern, handler in table]

    # -- plumbing --------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        method, path = request.method, request.path
        idem_key = request.headers.get("Idempotency-Key")
        if method == "OPTIONS":  # CORS preflight from the Stripe.js stand-in
            return self.to_response(Reply(204, b"", "text/plain"), request)
        if not path.startswith("/v1/"):
            reply = await self.non_api(request, raw)
            self.journal.record(method, path, idem_key, reply)
            return self.to_response(reply, request)

        fault = self.journal.take_fault(method, path)
        delay = self.journal.take_delay(method, path)
        if delay:
            await asyncio.sleep(delay)
        if fault is not None and not fault.after_forward:
            return self.injected(request, fault, idem_key)

        ctx = Ctx(
            method=method,
            path=path,
            query_string=request.query_string,
            query=unflatten(list(request.query.items())),
            params=parse_body(raw) if method in ("POST", "DELETE") else {},
            raw_body=raw,
            content_type=request.headers.get("Content-Type", ""),
            authorization=request.headers.get("Authorization", ""),
        )
        scope = (ctx.authorization, idem_key) if idem_key and method != "GET" else None
        replayed = False
        if scope is not None:
            reply, replayed = await self.idempotency.run(scope, ctx, lambda: self.dispatch(ctx))
        else:
            reply = await self.dispatch(ctx)

        if fault is not None:  # after_forward: the work is done, the answer is lost
            return self.injected(request, fault, idem_key, after=True)
        self.journal.record(method, path, idem_key, reply, replayed=replayed)
        return self.to_response(reply, request)

    def to_response(self, reply: Reply, request: web.Request) -> web.Response:
        headers = dict(reply.headers)
        origin = request.headers.get("Origin")
        if origin:  # the Stripe.js stand-in calls us from the web app's origin
            headers["Access-Control-Allow-Origin"] = origin
            headers["Access-Control-Allow-Headers"] = "Content-Type, Accept"
            headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS, DELETE"
        mime, _, rest = reply.content_type.partition(";")
        charset = re.search(r"charset=([\w-]+)", rest)
        body = reply.body
        if request.path.startswith("/v1/"):
            # Stripe's shapes for the pinned API version (shapes.py),
            # whoever built the body: localstripe, the emulation or a stored replay.
            request_id = headers.setdefault("Request-Id", new_id("req_"))
            payload = reply.json()
            if payload is not None:
                if set(payload) == {"error"} and isinstance(payload["error"], dict):
                    payload = conform_error(payload, reply.status, request_id)
                else:
                    payload = conform(payload)
                body = json.dumps(payload, indent=2, sort_keys=True).encode()
        return web.Response(
            status=reply.status,
            body=body,
            content_type=mime.strip() or "application/octet-stream",
            charset=charset.group(1) if charset else None,
            headers=headers,
        )

    def injected(
        self, request: web.Request, fault: Fault, idem_key: str | None, after: bool = False
    ) -> web.StreamResponse:
        label = "fault-after" if after else "fault"
        if fault.status == 0:  # a dropped connection: the client sees no answer at all
            self.journal.record_raw(request.method, request.path, idem_key, 0, injected=label)
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)
        error = injected_error(fault.status)
        self.journal.record_raw(
            request.method, request.path, idem_key, fault.status, injected=label
        )
        return self.to_response(error.reply, request)

    async def dispatch(self, ctx: Ctx) -> Reply:
        if not self.authorized(ctx):
            return StripeApiError(
                401, "Invalid API Key provided.", type_="invalid_request_error"
            ).reply
        try:
            for method, pattern, handler in self.routes:
                if method != ctx.method:
                    continue
                match = pattern.fullmatch(ctx.path)
                if match is None:
                    continue
                reply = await handler(ctx, **match.groupdict())
                if reply is not None:
                    return reply
            return await self.passthrough.forward(ctx)
        except StripeApiError as error:
            return error.reply

    def authorized(self, ctx: Ctx) -> bool:
        """Secret keys everywhere; publishable keys only where localstripe allows them."""
        if re.fullmatch(r"Bearer sk_\S+", ctx.authorization):
            return True
        basic = re.fullmatch(r"Basic (\S+)", ctx.authorization)  # curl -u sk_...:
        if basic:
            with contextlib.suppress(ValueError):
                user = base64.b64decode(basic.group(1)).decode().split(":")[0]
                if re.fullmatch(r"sk_\S+", user):
                    return True
        return ctx.method == "POST" and bool(
            re.fullmatch(
                r"/v1/(tokens|sources|setup_intents/\w+/(confirm|cancel)"
                r"|payment_intents/\w+/_authenticate)",
                ctx.path,
            )
        )

    async def backend_call(
        self,
        ctx: Ctx,
        method: str,
        path: str,
        *,
        params: Json | None = None,
        query: str = "",
        raw: bytes | None = None,
        content_type: str | None = None,
    ) -> Reply:
        assert self.session is not None
        headers: dict[str, str] = {}
        if ctx.authorization:
            headers["Authorization"] = ctx.authorization
        data: bytes | None = None
        if params is not None:
            data = json.dumps(params).encode()
            headers["Content-Type"] = "application/json"
        elif raw is not None:
            data = raw
            if content_type:
                headers["Content-Type"] = content_type
        url = self.backend + path + (f"?{query}" if query else "")
        async with self.session.request(method, url, data=data, headers=headers) as response:
            body = await response.read()
            reply = Reply(response.status, body, response.headers.get("Content-Type", ""))
        if reply.status >= 400 and reply.json() is None:
            # localstripe answers unknown routes with aiohttp's text 404/405; make it
            # Stripe-shaped so the SDK raises InvalidRequestError, not a parse error.
            return StripeApiError(
                reply.status,
                f"Unrecognized request URL ({method}: {path}) (not emulated by fake_stripe).",
            ).reply
        return reply

    async def backend_json(self, ctx: Ctx, method: str, path: str, **kw: Any) -> Json:
        """A backend call whose failure is passed on to the client as is."""
        reply = await self.backend_call(ctx, method, path, **kw)
        payload = reply.json()
        if reply.status != 200 or payload is None:
            error = StripeApiError(reply.status or 500, "backend error")
            error.reply = reply
            raise error
        return payload

    async def non_api(self, request: web.Request, raw: bytes) -> Reply:
        found = re.fullmatch(r"/_fake/invoices/(in_\w+)", request.path)
        if found and found.group(1) in self.invoices.by_id:
            return hosted_invoice_page(self.invoices.by_id[found.group(1)], self.tax_rates)
        assert self.session is not None
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("content-type", "authorization", "origin", "accept")
        }
        url = self.backend + request.path_qs
        async with self.session.request(
            request.method, url, data=raw or None, headers=headers
        ) as response:
            body = await response.read()
            return Reply(response.status, body, response.headers.get("Content-Type", ""))

    # -- events (the store is events.EventBus) -----------------------------

    async def list_events(self, ctx: Ctx) -> Reply:
        try:
            return json_reply(200, self.events.page(ctx.query))
        except EventListError as error:
            raise StripeApiError(
                error.status, str(error), code=error.code, param=error.param
            ) from error

    async def retrieve_event(self, ctx: Ctx, id: str) -> Reply:
        event = self.events.get(id)
        if event is None:
            raise missing("event", id)
        return json_reply(200, event)
