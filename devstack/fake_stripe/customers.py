"""What the proxy adds to localstripe's customers: search, deleted customers,
``tax_exempt``.

* ``/v1/customers/search`` (404 in localstripe) over the customers that passed through the
  proxy (all of them do), with Stripe's query language (``search.py``). Real search is
  eventually consistent ("under normal operating conditions, data is searchable in under
  1 minute", https://docs.stripe.com/search#data-freshness); a customer younger than
  ``search_visibility_delay`` is not found. The search filters an index of the fields
  that change only through ``POST /v1/customers[/{id}]`` (id, created, metadata, email,
  name), then reads only the page's customers, so thousands of accounts stay linear.
* A deleted customer reads as ``{id, object, deleted}``, as at Stripe, not a 404.
* ``tax_exempt`` (``none`` | ``exempt`` | ``reverse``; refused by localstripe) is kept here
  and shown on every customer the proxy answers with.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from devstack.fake_stripe.search import search_clauses, search_filter, search_page
from devstack.fake_stripe.wire import (
    Ctx,
    Json,
    Reply,
    StripeApiError,
    check_params,
    json_reply,
    missing,
)

if TYPE_CHECKING:
    from devstack.fake_stripe.proxy import Emulator

# Customer fields that change only through POST /v1/customers[/{id}] (search's index).
INDEXED_CUSTOMER_FIELDS = ("id", "created", "metadata", "email", "name")


class Customers:
    """Customer state localstripe lacks; used on the proxy's event loop only."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.seen_at: dict[str, float] = {}  # created when (monotonic), for search's lag
        # What customer search filters on, kept from the customers that pass through here
        # (all of them do): searching then needs no full listing of localstripe's customers,
        # which costs O(customers) of export and JSON per search.
        self.index: dict[str, Json] = {}
        self.deleted: set[str] = set()
        self.tax_exempt: dict[str, str] = {}

    async def retrieve_deleted_customer(self, ctx: Ctx, id: str) -> Reply | None:
        """Stripe still answers a deleted customer's id (``{id, object, deleted}``);
        localstripe forgets it (404)."""
        if id not in self.deleted:
            return None
        return json_reply(200, {"id": id, "object": "customer", "deleted": True})

    def customer_view(self, payload: Json) -> Json:
        """A customer as Stripe shows it: with the ``tax_exempt`` localstripe lacks."""
        if payload.get("object") == "customer":
            payload["tax_exempt"] = self.tax_exempt.get(str(payload["id"]), "none")
        return payload

    async def all_customers(self, ctx: Ctx) -> list[Json]:
        customers: list[Json] = []
        after: str | None = None
        while True:
            query = {"limit": "100", **({"starting_after": after} if after else {})}
            page = await self.emulator.backend_json(
                ctx, "GET", "/v1/customers", query=urlencode(query)
            )
            customers.extend(page["data"])
            if not page.get("has_more") or not page["data"]:
                return customers
            after = page["data"][-1]["id"]

    async def search_customers(self, ctx: Ctx) -> Reply:
        params = ctx.query
        check_params(params, {"query", "limit", "page", "expand"})
        if not params.get("query"):
            raise StripeApiError(400, "Missing required param: query.", param="query")
        horizon = time.monotonic() - self.emulator.search_visibility_delay
        _, clauses = search_clauses(params["query"], "customers")
        # Filter the index where it holds every field the query names, then read only the
        # page's customers, fresh; otherwise list them all.
        indexed = all(c.field in INDEXED_CUSTOMER_FIELDS for c in clauses)
        candidates = list(self.index.values()) if indexed else await self.all_customers(ctx)
        visible = [c for c in candidates if self.seen_at.get(c["id"], 0.0) <= horizon]
        page = search_page(ctx.path, params, search_filter(params["query"], visible, "customers"))
        if indexed:
            page["data"] = [
                await self.emulator.backend_json(ctx, "GET", f"/v1/customers/{c['id']}")
                for c in page["data"]
            ]
        page["data"] = [self.customer_view(c) for c in page["data"]]
        return json_reply(200, page)

    async def get_customer(self, ctx: Ctx, customer_id: str) -> Json:
        reply = await self.emulator.backend_call(ctx, "GET", f"/v1/customers/{customer_id}")
        payload = reply.json()
        if reply.status == 404 or payload is None or payload.get("deleted"):
            raise missing("customer", customer_id, "customer")
        if reply.status != 200:
            error = StripeApiError(reply.status, "backend error")
            error.reply = reply
            raise error
        return payload
