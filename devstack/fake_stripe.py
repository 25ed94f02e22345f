"""A local Stripe for tests and the demo stack: the real localstripe behind a gap-filling proxy.

``FakeStripe`` starts localstripe 1.15.10 as a child process on a free loopback port and
an aiohttp proxy (own thread, own event loop) in front of it. Clients, including
``overtime.stripe_gateway`` and the browser stand-in for Stripe.js, talk only to the
proxy (``fake.api_base``). Most requests pass through unchanged; the proxy fills only the
gaps our gateway relies on, and keeps real semantics there (declines decline, unknown ids
404, state lives as long as the server).

Why localstripe is launched through a bootstrap instead of its ``localstripe`` script:
the script binds every interface (``::``) and pickles its whole store to the fixed path
``/tmp/localstripe.pickle`` after every write, so two instances on one machine (parallel
test runs, the demo stack, a developer's own localstripe) overwrite each other's file and
one restarted with a stale file resurrects old objects. The bootstrap runs the same
``localstripe.server.app`` on 127.0.0.1 with persistence switched off, and exits when
our end of its stdin pipe closes, so a killed parent never leaks it.

Gaps measured with stripe 16.1.0 (API 2026-10-28.endive) and how the proxy fills them:

* **Idempotency-Key is ignored** (a repeated key creates a second object). The proxy
  stores the response of every POST/DELETE that carries a key (scoped by API key) and
  replays it for the same key with ``Idempotent-Replayed: true``; the same key with
  other method, path or parameters gets Stripe's 400 ``idempotency_error``; a key that
  is still in flight gets 409. Injected faults are never stored, so a retry reaches the
  backend exactly like a retry after a lost connection would. Like Stripe, a request
  refused before it began executing (a 400/404 ``invalid_request_error`` naming its
  ``param``, a 401) is not stored either: the corrected retry with the same key runs.
* **Test payment-method ids** (``pm_card_visa`` is re-created on every *read* by
  localstripe, the rest are 404): ids from ``MAGIC_PAYMENT_METHODS`` (Stripe's documented
  ids, https://docs.stripe.com/testing; anything else, e.g. the old ``pm_sepa_debit``, is a
  404 ``resource_missing``) are replaced, in the path and in ``payment_method`` /
  ``default_payment_method`` parameters, by a real localstripe PaymentMethod built from
  the matching test card or IBAN, memoised per (test id, customer). They mean what they
  mean at Stripe (``devstack/fake_stripe_payments.py`` has the tables): the decline cards
  (``pm_card_visa_chargeDeclined``, its legacy alias ``pm_card_chargeDeclined``,
  ``…InsufficientFunds``, ``…LostCard``, ``…StolenCard``, ``…ExpiredCard``,
  ``…IncorrectCvc``, ``…ProcessingError``) are refused already at attach, SetupIntent
  confirm (also the Stripe.js stand-in's typed card) and ``/pay`` with a 402 ``card_error``
  carrying Stripe's ``code``, ``decline_code`` and ``doc_url``, nothing attached and the
  SetupIntent left ``requires_payment_method`` with ``last_setup_error``;
  ``pm_card_chargeCustomerFail`` attaches and fails every charge;
  ``pm_card_authenticationRequired`` fails off-session with ``authentication_required``.
  Outcomes follow the card number / IBAN (by fingerprint), so typed test numbers behave
  like their ids. localstripe labels every card ``visa``; the proxy remembers the brand of
  cards it saw being created and corrects ``card.brand`` in responses.
* **Standalone invoices** (``POST /v1/invoices`` without a subscription is a 404 "No
  upcoming invoices", ``collection_method``/``auto_advance`` are a 500, ``/finalize`` is a
  404, search does not exist). The proxy owns invoices: create (draft, pending items
  excluded unless ``pending_invoice_items_behavior=include``), retrieve, update, delete,
  list, ``/lines``, ``/finalize``, ``/pay``, ``/void``, ``/mark_uncollectible`` and
  ``/v1/invoices/search``, in Stripe's object shape including the ``payments`` list
  (expandable down to ``payments.data.payment.payment_intent``). Invoice items are
  still created in localstripe (its validation of customer, amount and currency
  applies) and then attached to the emulated invoice.
* **Invoice PaymentIntents** (localstripe cannot confirm a PaymentIntent twice): as at
  Stripe, finalising an invoice creates its PaymentIntent (``requires_payment_method``,
  the amount due, ``payment_method_types`` card + sepa_debit; a zero invoice is paid at
  once, without one) and every ``/pay`` confirms that same intent, so an invoice has one
  ``invoice_payment``. A decline is a 402 ``card_error`` (as Stripe does since 2017-12-14)
  and leaves the intent ``requires_payment_method`` with ``last_payment_error``. Each
  attempt makes a Charge. The proxy owns these intents and charges and serves them by
  ``GET /v1/payment_intents[/{id}]`` and ``GET /v1/charges[/{id}]`` (lists filtered by
  ``customer``, merged with localstripe's own).
* **SEPA debits stay processing**: the intent is ``processing`` and the invoice ``open``
  (another ``/pay`` is a 400 ``invoice_payment_intent_requires_action``) until a timer on
  the proxy loop settles it after ``sepa_processing_seconds`` (the "Delayed" test IBANs:
  ``sepa_delayed_processing_seconds``), with events, whether or not anybody reads:
  ``pm_success_de`` / ``pm_successDelayed_de`` succeed, ``pm_failed_de`` /
  ``pm_failedDelayed_de`` fail with ``generic_decline``, ``pm_insufficientFunds_de`` with
  ``insufficient_funds`` (the raw DE test IBANs the same). Invoice changes emit
  ``invoice.*``, ``invoice_payment.paid`` and ``payment_intent.*`` events.
* **Events and webhooks** (localstripe's own events are customer.* and its own
  PaymentIntents', and its webhooks need its config API): the proxy owns
  ``GET /v1/events[/{id}]`` (``fake_stripe_events``: Stripe's event shape for the pinned
  API version, newest first, ``type`` / ``types`` / ``created`` / ``delivery_success``
  filters, cursor pages) and, after ``forward_webhooks(url, secret)`` or
  ``--forward-webhooks URL --webhook-secret S`` (what ``stripe listen --forward-to`` does),
  POSTs each new event signed (``Stripe-Signature``) as Stripe does: at least once
  (retried with backoff on non-2xx or no answer), out of order
  (``webhook_max_jitter_seconds``), sometimes twice (``webhook_duplicate_rate``), from a
  seeded RNG (``webhook_seed``). ``webhook_deliveries`` logs every attempt.
* **Customer search** (``/v1/customers/search``, 404 in localstripe): emulated over
  localstripe's customer list. Both search endpoints understand Stripe's query language
  for what we use: ``field:'v'``, ``metadata['k']:'v'``, ``~`` substring, ``-``
  negation, numeric ``> < >= <=``, ``null``, joined by ``AND`` or ``OR``, on the fields
  Stripe lets each resource be searched by (``SEARCHABLE_FIELDS``; others are Stripe's
  400). Real search is eventually consistent (under a minute); ``search_visibility_delay``
  reproduces that, on by default (``DEFAULT_SEARCH_VISIBILITY_DELAY``).
* **Shapes of the pinned API version**: every JSON body leaving the proxy passes
  ``fake_stripe_shapes.conform`` (fields Stripe removed dropped, fields it always sends
  filled) and error bodies ``conform_error`` (``resource_missing`` + ``param`` on 404s,
  ``doc_url``, ``request_log_url``; every answer has a ``Request-Id``). A deleted customer
  reads as ``{id, object, deleted}``, not a 404. ``GET /v1/payment_methods?customer=`` and
  ``GET /v1/customers/{id}/payment_methods`` list every type (``type`` optional), newest
  first. ``tests/contract`` proves the shapes against the SDK's own classes.
* **Speed at benchmark sizes**: localstripe lists a type by scanning its whole store, and a
  customer search over its full list exports every customer as JSON, so thousands of
  accounts made set-up quadratic (one core saturated by the fake). The backend indexes its
  store by type, and customer search filters an index of the fields that change only
  through ``POST /v1/customers[/{id}]`` (id, created, metadata, email, name), then reads
  only the page's customers.
* **Tax rates and VAT on invoices** (localstripe's TaxRate refuses ``country`` and
  ``tax_type`` and taxes inclusive rates as if exclusive): the proxy owns tax rates
  (create, retrieve, update of the mutable fields only, list filtered by ``active`` and
  ``inclusive``; like Stripe there is no ``/v1/tax_rates/search``) and computes the tax of
  emulated invoices as Stripe does with Tax Rates: per line, on the line's amount, rounded
  half up to the cent; exclusive rates add ``round(amount × p/100)``, inclusive rates
  contain ``amount - round(amount / (1 + p/100))``. Invoices report ``subtotal``,
  ``subtotal_excluding_tax``, ``total``, ``total_excluding_tax``, ``amount_due`` and
  ``total_taxes`` (Stripe's fields since API 2025-03-31; ``tax`` and
  ``total_tax_amounts`` are gone), lines their ``taxes``. A line's rates are its own
  ``tax_rates``, else the invoice's ``default_tax_rates``; an inactive rate is refused
  for new items, as Stripe does.
* **Customer ``tax_exempt``** (``none`` | ``exempt`` | ``reverse``; refused by
  localstripe, as are ``limit`` and ``starting_after`` on a customer's ``tax_ids``
  list, which the proxy drops): kept by the proxy, shown on customers and copied to an invoice's
  ``customer_tax_exempt`` when it is created, as Stripe does. Invoices take a ``footer``.
* **Invoice items priced per unit**: ``quantity`` × ``unit_amount_decimal`` (a decimal
  string of at most 12 decimal places; the product rounded half up to the cent), refused
  together with ``amount`` (Stripe: "only one of amount, unit_amount_decimal") or a
  ``quantity`` other than 1 beside ``amount``.
* **SetupIntent confirm with ``mandate_data``** (400 in localstripe): the proxy checks
  it has ``customer_acceptance.type`` and drops it before forwarding. As in Stripe, a
  SetupIntent that succeeds attaches its PaymentMethod to its customer, and detaching a
  PaymentMethod clears it as the customer's default (localstripe does neither).
* Not filled (the gateway does not use them): Prices, billing meters, subscriptions
  through the proxy's invoice store, customer.* events, confirming or
  changing an invoice's PaymentIntent directly (400; pay the invoice), refunds.

Reliability testing: ``inject_faults(status=500|429|…, count=N, path_prefix=…)`` makes the
next N matching requests fail with a Stripe-shaped error before they reach the backend
(``after_forward=True``: after, so the work is done but the answer is lost; ``status=0``
drops the connection); ``inject_delay(seconds, count)`` delays them. ``request_log``
lists every request (method, path, idempotency key, status, replayed, injected,
object id) so tests can assert "one invoice, one charge".

Stripe.js: localstripe serves a stand-in at ``{api_base}/js.stripe.com/v3/``; the proxy
passes it (and everything else outside ``/v1/``) through. It derives its API base from
its own ``src``, so loading it from the proxy keeps the browser on the proxy.

Run standalone (demo stack): ``python -m devstack.fake_stripe --port 8420``.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import contextlib
import html
import json
import re
import secrets
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp
from aiohttp import web

from devstack.fake_stripe_events import (
    EventBus,
    EventListError,
    WebhookDelivery,
    WebhookSettings,
)
from devstack.fake_stripe_payments import (
    MAGIC_PAYMENT_METHODS,
    InvoicePayments,
    StripeTestCard,
)
from devstack.fake_stripe_shapes import conform, conform_error
from devstack.processes import stop_process

Json = dict[str, Any]

DEFAULT_PUBLISHABLE_KEY = "pk_test_overtime"

# Stripe's search trails writes ("under normal operating conditions, data is searchable
# in under 1 minute", https://docs.stripe.com/search#data-freshness). Tests get a lag by
# default, short enough to wait out, long enough that read-after-write through search
# fails in the tests as it would against Stripe.
DEFAULT_SEARCH_VISIBILITY_DELAY = 1.0

# Test cards are created with this expiry (Stripe: any future date, any CVC).
_CARD_EXPIRY = {"exp_month": "12", "exp_year": "2034", "cvc": "123"}

# Runs inside the child process; see the module docstring for why not the CLI script.
_BACKEND_BOOTSTRAP = r"""
import os, socket, sys, threading
from aiohttp import web
from localstripe import resources, server

resources.Store.dump_to_disk = lambda self: None
resources.Store.try_load_from_disk = lambda self: None

# localstripe lists a type by scanning its whole store (every object of every type) on each
# request, which makes a benchmark's thousands of accounts quadratic. Index the store by
# type: the same objects in the same (insertion) order, found without the scan.
_by_type = {}

def _type_of(key):
    kind, colon, _ = key.partition(":")
    return kind if colon else None

def _setitem(self, key, value):
    dict.__setitem__(self, key, value)
    kind = _type_of(key)
    if kind:
        _by_type.setdefault(kind, {})[key] = value

def _delitem(self, key):
    dict.__delitem__(self, key)
    _by_type.get(_type_of(key), {}).pop(key, None)

def _clear(self):
    dict.clear(self)
    _by_type.clear()

def _list_all(cls, url, limit=None, starting_after=None, **kwargs):
    if kwargs:
        raise resources.UserError(400, "Unexpected " + ", ".join(kwargs.keys()))
    li = resources.List(url, limit=limit, starting_after=starting_after)
    li._list = list(_by_type.get(cls.object, {}).values())
    return li

resources.Store.__setitem__ = _setitem
resources.Store.__delitem__ = _delitem
resources.Store.clear = _clear
resources.StripeObject._api_list_all = classmethod(_list_all)

# localstripe lists a customer's cards only; Stripe lists every type, or the one asked for
# (type is optional), newest first.
def _list_payment_methods(cls, url, customer=None, type=None, limit=None, starting_after=None):
    if not (isinstance(customer, str) and customer.startswith("cus_")):
        raise resources.UserError(400, "Bad request")
    resources.Customer._api_retrieve(customer)  # 404 for an unknown customer
    li = resources.List(url, limit=limit, starting_after=starting_after)
    li._list = [
        pm for pm in reversed(list(_by_type.get("payment_method", {}).values()))
        if pm.customer == customer and type in (None, pm.type)
    ]
    return li

resources.PaymentMethod._api_list_all = classmethod(_list_payment_methods)

def _exit_with_parent():
    sys.stdin.buffer.read()  # EOF once the parent has closed the pipe or died
    os._exit(0)

threading.Thread(target=_exit_with_parent, daemon=True).start()
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
web.run_app(server.app, sock=sock, access_log=None, print=None)
"""

_ID_ALPHABET = string.ascii_letters + string.digits


def _new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


def _now() -> int:
    return int(time.time())


# --- HTTP helpers -----------------------------------------------------------------------


@dataclass
class _Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Json | None:
        if "json" not in self.content_type:
            return None
        try:
            value = json.loads(self.body)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


def _json_reply(status: int, payload: Json) -> _Reply:
    return _Reply(status, json.dumps(payload, indent=2, sort_keys=True).encode())


class StripeApiError(Exception):
    """Raised inside handlers to answer with a Stripe-shaped error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        error: Json = {"type": type_, "message": message, **extra}
        if code is not None:
            error["code"] = code
        if param is not None:
            error["param"] = param
        self.reply = _json_reply(status, {"error": error})


def _executed(reply: _Reply) -> bool:
    """Whether Stripe would store this answer under its idempotency key. It stores the
    result of every request that began executing, failures included (a decline replays
    as a decline), but not one refused before: a parameter that failed validation (a 400
    or 404 ``invalid_request_error`` naming its ``param``) or a refused API key
    (https://docs.stripe.com/api/idempotent_requests)."""
    if reply.status == 401:
        return False
    if reply.status not in (400, 404):
        return True
    error = (reply.json() or {}).get("error")
    if not isinstance(error, dict) or error.get("type") != "invalid_request_error":
        return True
    return not error.get("param")


def _missing(kind: str, object_id: str, param: str = "id") -> StripeApiError:
    return StripeApiError(
        404, f"No such {kind}: '{object_id}'", code="resource_missing", param=param
    )


def _unflatten(pairs: list[tuple[str, str]]) -> Json:
    """``a[b][0]=x`` form pairs into nested dicts/lists, the way Stripe reads them."""
    root: Json = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+|\[\]", key)
        if not parts:
            continue
        node: Any = root
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if part == "[]":  # "expand[]=x": append
                part = str(len(node))
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
    return _listify(root)


def _listify(node: Any) -> Any:
    if isinstance(node, dict):
        converted = {k: _listify(v) for k, v in node.items()}
        if converted and all(k.isdigit() for k in converted):
            return [converted[k] for k in sorted(converted, key=int)]
        return converted
    return node


def _parse_body(raw: bytes) -> Json:
    """Form bodies (the SDKs) and JSON bodies (localstripe's Stripe.js stand-in)."""
    text = raw.decode("utf-8", errors="replace").strip()
    if not text:
        return {}
    if text.startswith("{"):
        with contextlib.suppress(ValueError):
            value = json.loads(text)
            if isinstance(value, dict):
                return value
    return _unflatten(parse_qsl(text, keep_blank_values=True))


def _as_bool(value: Any, param: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise StripeApiError(400, f"Invalid boolean: {value}", param=param)


def _as_int(value: Any, param: str) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    raise StripeApiError(400, f"Invalid integer: {value}", param=param)


def _check_params(params: Json, allowed: set[str]) -> None:
    for key in params:
        if key not in allowed:
            raise StripeApiError(400, f"Received unknown parameter: {key}", param=key)


def _expand_list(params: Json) -> list[str]:
    value = params.get("expand") or []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _as_decimal(value: Any, param: str, places: int) -> Decimal:
    """A decimal parameter ("19", "0.483333333333") with at most ``places`` decimals."""
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise StripeApiError(400, f"Invalid decimal: {value}", param=param) from None
    exponent = number.as_tuple().exponent
    if not number.is_finite() or (isinstance(exponent, int) and -exponent > places):
        raise StripeApiError(
            400, f"Invalid decimal: {value} (at most {places} decimal places)", param=param
        )
    return number


def _cents(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _line_tax(amount: int, rate: Json, percentage: Decimal) -> Json:
    """One tax rate on one line, the way Stripe computes Tax Rates (see the docstring)."""
    if rate["inclusive"]:
        tax = amount - _cents(Decimal(amount) * 100 / (100 + percentage))
        taxable = amount - tax
    else:
        tax, taxable = _cents(Decimal(amount) * percentage / 100), amount
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


def _merge_metadata(current: dict[str, str], update: Any) -> dict[str, str]:
    """Stripe semantics: keys merge, an empty value deletes, ``metadata=''`` clears all."""
    if update == "":
        return {}
    if not isinstance(update, dict):
        raise StripeApiError(400, "Invalid metadata", param="metadata")
    merged = dict(current)
    for key, value in update.items():
        if value in ("", None):
            merged.pop(key, None)
        else:
            merged[str(key)] = str(value)
    return merged


# --- Stripe search query language (the subset we emulate) ------------------------------

# Customer fields that change only through POST /v1/customers[/{id}] (search's index).
_INDEXED_CUSTOMER_FIELDS = ("id", "created", "metadata", "email", "name")

_CLAUSE = re.compile(
    r"""\s*(?P<neg>-)?
        (?P<field>metadata\[(?:'(?P<mk1>[^']*)'|"(?P<mk2>[^"]*)")\]|[a-z_]+)
        (?P<op>:|~|>=|<=|>|<)
        (?:'(?P<sq>(?:[^'\\]|\\.)*)'|"(?P<dq>(?:[^"\\]|\\.)*)"|(?P<num>-?\d+)|(?P<null>null))
        \s*""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Clause:
    negate: bool
    metadata_key: str | None
    field: str
    op: str
    value: str | int | None


def _parse_query(query: str) -> tuple[str, list[_Clause]]:
    """Return the connective ("AND"/"OR") and the clauses; 400 on anything else."""
    clauses: list[_Clause] = []
    connectives: set[str] = set()
    position = 0
    while True:
        match = _CLAUSE.match(query, position)
        if match is None:
            raise StripeApiError(400, f"Invalid search query: {query!r}", param="query")
        metadata_key = match["mk1"] if match["mk1"] is not None else match["mk2"]
        value: str | int | None
        if match["num"] is not None:
            value = int(match["num"])
        elif match["null"] is not None:
            value = None
        else:
            quoted = match["sq"] if match["sq"] is not None else match["dq"]
            value = re.sub(r"\\(.)", r"\1", quoted or "")
        clauses.append(
            _Clause(
                negate=bool(match["neg"]),
                metadata_key=metadata_key,
                field="metadata" if metadata_key is not None else match["field"],
                op=match["op"],
                value=value,
            )
        )
        position = match.end()
        if position >= len(query):
            break
        joiner = re.compile(r"(AND|OR)\s+").match(query, position)
        if joiner is None:
            raise StripeApiError(400, f"Invalid search query: {query!r}", param="query")
        connectives.add(joiner.group(1))
        position = joiner.end()
    if len(connectives) > 1:
        raise StripeApiError(400, "Search queries cannot mix AND and OR.", param="query")
    return (connectives.pop() if connectives else "AND"), clauses


# The fields Stripe's search accepts per resource; any other field is Stripe's 400
# (https://docs.stripe.com/search#query-fields-for-customers, …#query-fields-for-invoices).
SEARCHABLE_FIELDS: dict[str, frozenset[str]] = {
    "customers": frozenset({"created", "email", "metadata", "name", "phone"}),
    "invoices": frozenset(
        {
            "created",
            "currency",
            "customer",
            "last_finalization_error_code",
            "metadata",
            "number",
            "receipt_number",
            "status",
            "subscription",
            "total",
        }
    ),
}

# Query fields that are not top-level fields of the object: where their value lives.
_SEARCH_FIELD_PATHS: dict[str, tuple[str, ...]] = {
    "last_finalization_error_code": ("last_finalization_error", "code"),
    "subscription": ("parent", "subscription_details", "subscription"),
}


def _search_clauses(query: str, resource: str) -> tuple[str, list[_Clause]]:
    """``_parse_query`` plus Stripe's refusal of fields that ``resource`` cannot be
    searched by."""
    connective, clauses = _parse_query(query)
    allowed = SEARCHABLE_FIELDS[resource]
    for clause in clauses:
        if clause.field not in allowed:
            raise StripeApiError(
                400,
                f"Field '{clause.field}' is an unsupported search field for resource "
                f"'{resource}'. See https://stripe.com/docs/search#query-fields-for-{resource} "
                "for a list of supported fields.",
                param="query",
            )
    return connective, clauses


def _clause_matches(clause: _Clause, obj: Json) -> bool:
    if clause.metadata_key is not None:
        actual: Any = (obj.get("metadata") or {}).get(clause.metadata_key)
    else:
        actual = obj
        for step in _SEARCH_FIELD_PATHS.get(clause.field, (clause.field,)):
            actual = actual.get(step) if isinstance(actual, dict) else None
        if isinstance(actual, dict):  # an expanded object: compare its id
            actual = actual.get("id")
    wanted = clause.value
    if clause.op == ":":
        if wanted is None:
            result = actual is None
        else:
            result = actual is not None and str(actual).lower() == str(wanted).lower()
    elif clause.op == "~":
        result = actual is not None and str(wanted).lower() in str(actual).lower()
    else:
        if not isinstance(actual, int) or not isinstance(wanted, int):
            return False
        result = {
            ">": actual > wanted,
            "<": actual < wanted,
            ">=": actual >= wanted,
            "<=": actual <= wanted,
        }[clause.op]
    return not result if clause.negate else result


def _search_filter(query: str, objects: list[Json], resource: str) -> list[Json]:
    connective, clauses = _search_clauses(query, resource)
    combine = all if connective == "AND" else any
    return [o for o in objects if combine(_clause_matches(c, o) for c in clauses)]


def _search_page(path: str, params: Json, matches: list[Json]) -> Json:
    limit = _as_int(params.get("limit"), "limit") or 10
    if not 1 <= limit <= 100:
        raise StripeApiError(400, "limit must be between 1 and 100", param="limit")
    page = params.get("page")
    offset = 0
    if page:
        found = re.fullmatch(r"page_(\d+)", str(page))
        if found is None:
            raise StripeApiError(400, "Invalid page token", param="page")
        offset = int(found.group(1))
    matches = sorted(matches, key=lambda o: (o.get("created", 0), o["id"]), reverse=True)
    chunk = matches[offset : offset + limit]
    more = offset + limit < len(matches)
    return {
        "object": "search_result",
        "url": path,
        "data": chunk,
        "has_more": more,
        "next_page": f"page_{offset + limit}" if more else None,
        "total_count": len(matches),
    }


# --- emulated invoices -------------------------------------------------------------------


@dataclass
class _Payment:
    """The invoice's one ``invoice_payment``: its PaymentIntent (proxy-owned, see
    fake_stripe_payments) is created at finalisation and confirmed by every attempt."""

    id: str
    payment_intent: str
    amount: int
    created: int
    status: str = "open"  # open | paid | canceled
    paid_at: int | None = None
    canceled_at: int | None = None


@dataclass
class _Invoice:
    id: str
    customer: str
    customer_email: str | None
    customer_name: str | None
    currency: str
    collection_method: str
    auto_advance: bool
    description: str | None
    metadata: dict[str, str]
    created: int
    seen_at: float
    days_until_due: int | None = None
    due_date: int | None = None
    default_payment_method: str | None = None
    state: str = "draft"  # draft | open | paid | void | uncollectible
    number: str | None = None
    lines: list[Json] = field(default_factory=list)
    payments: list[_Payment] = field(default_factory=list)
    attempt_count: int = 0
    finalized_at: int | None = None
    paid_at: int | None = None
    voided_at: int | None = None
    uncollectible_at: int | None = None
    paid_out_of_band: bool = False
    default_tax_rates: list[str] = field(default_factory=list)
    footer: str | None = None
    customer_tax_exempt: str = "none"
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def subtotal(self) -> int:
        return sum(int(line["amount"]) for line in self.lines)

    def tax(self, behavior: str) -> int:
        return sum(
            int(tax["amount"])
            for line in self.lines
            for tax in line.get("taxes") or []
            if tax["tax_behavior"] == behavior
        )

    @property
    def total(self) -> int:
        """What is due: the lines plus exclusive tax (inclusive tax is inside the lines)."""
        return self.subtotal + self.tax("exclusive")

    def total_taxes(self) -> list[Json]:
        """Stripe's ``total_taxes``: the lines' taxes summed per tax rate."""
        summed: dict[str, Json] = {}
        for line in self.lines:
            for tax in line.get("taxes") or []:
                rate = tax["tax_rate_details"]["tax_rate"]
                entry = summed.setdefault(rate, {**tax, "amount": 0, "taxable_amount": 0})
                entry["amount"] += int(tax["amount"])
                entry["taxable_amount"] += int(tax["taxable_amount"])
        return list(summed.values())


@dataclass(frozen=True)
class RequestRecord:
    """One request as the proxy saw it; ``object_id`` is the ``id`` of a JSON answer."""

    method: str
    path: str
    idempotency_key: str | None
    status: int
    replayed: bool = False
    injected: str | None = None  # "fault" | "fault-after" | None
    object_id: str | None = None


@dataclass
class _Fault:
    status: int
    remaining: int
    path_prefix: str
    method: str | None
    after_forward: bool


@dataclass
class _Delay:
    seconds: float
    remaining: int
    path_prefix: str
    method: str | None


@dataclass
class _Ctx:
    method: str
    path: str
    query_string: str
    query: Json
    params: Json
    raw_body: bytes
    content_type: str
    authorization: str


@dataclass
class _StoredResponse:
    fingerprint: str
    reply: _Reply


_PAYMENT_METHOD_LIST_PARAMS = {"type", "limit", "starting_after", "expand", "allow_redisplay"}

_INVOICE_EXPANDABLE = {
    "payments",
    "payments.data.payment.payment_intent",
    "customer",
    "default_payment_method",
}


class _Emulator:
    """The proxy's request handling and state; lives entirely on the proxy's event loop
    except for the small lock-protected parts (faults, log) the public API touches."""

    def __init__(self, backend: str, public_base: str, search_visibility_delay: float) -> None:
        self.backend = backend
        self.public_base = public_base
        self.search_visibility_delay = search_visibility_delay
        self.session: aiohttp.ClientSession | None = None
        self.lock = threading.Lock()  # faults + log, shared with the caller's thread
        self.faults: list[_Fault] = []
        self.delays: list[_Delay] = []
        self.log: list[RequestRecord] = []
        self.idempotency: dict[tuple[str, str], _StoredResponse] = {}
        self.in_flight: set[tuple[str, str]] = set()
        self.invoices: dict[str, _Invoice] = {}
        self.item_to_invoice: dict[str, str] = {}
        self.invoice_counter = 0
        self.magic: dict[tuple[str, str | None], str] = {}
        self.card_brands: dict[str, str] = {}
        self.intent_overrides: dict[str, Json] = {}
        self.customer_seen_at: dict[str, float] = {}
        # What customer search filters on, kept from the customers that pass through here
        # (all of them do): searching then needs no full listing of localstripe's customers,
        # which costs O(customers) of export and JSON per search.
        self.customer_index: dict[str, Json] = {}
        self.tax_rates: dict[str, Json] = {}
        self.customer_tax_exempt: dict[str, str] = {}
        self.tax_percentages: dict[str, Decimal] = {}  # exact, as given (JSON has floats)
        # Pending items (no invoice yet) keep their rates here until an invoice takes them.
        self.pending_item_rates: dict[str, list[str]] = {}
        # Stripe's events (fake_stripe_events): emit() at every change Stripe announces.
        self.events = EventBus()
        self.routes: list[tuple[str, re.Pattern[str], Callable[..., Awaitable[_Reply]]]] = [
            ("GET", re.compile(r"/v1/events"), self.list_events),
            ("GET", re.compile(r"/v1/events/(?P<id>[^/]+)"), self.retrieve_event),
            ("POST", re.compile(r"/v1/tax_rates"), self.create_tax_rate),
            ("GET", re.compile(r"/v1/tax_rates"), self.list_tax_rates),
            ("GET", re.compile(r"/v1/tax_rates/(?P<id>txr_\w+)"), self.retrieve_tax_rate),
            ("POST", re.compile(r"/v1/tax_rates/(?P<id>txr_\w+)"), self.update_tax_rate),
            ("GET", re.compile(r"/v1/customers/search"), self.search_customers),
            ("GET", re.compile(r"/v1/invoices/search"), self.search_invoices),
            ("POST", re.compile(r"/v1/invoices"), self.create_invoice),
            ("GET", re.compile(r"/v1/invoices"), self.list_invoices),
            ("GET", re.compile(r"/v1/invoices/(?P<id>in_\w+)"), self.retrieve_invoice),
            ("POST", re.compile(r"/v1/invoices/(?P<id>in_\w+)"), self.update_invoice),
            ("DELETE", re.compile(r"/v1/invoices/(?P<id>in_\w+)"), self.delete_invoice),
            ("GET", re.compile(r"/v1/invoices/(?P<id>in_\w+)/lines"), self.invoice_lines),
            ("POST", re.compile(r"/v1/invoices/(?P<id>in_\w+)/finalize"), self.finalize_invoice),
            ("POST", re.compile(r"/v1/invoices/(?P<id>in_\w+)/pay"), self.pay_invoice),
            ("POST", re.compile(r"/v1/invoices/(?P<id>in_\w+)/void"), self.void_invoice),
            (
                "POST",
                re.compile(r"/v1/invoices/(?P<id>in_\w+)/mark_uncollectible"),
                self.mark_uncollectible,
            ),
            ("POST", re.compile(r"/v1/invoiceitems"), self.create_invoice_item),
            ("DELETE", re.compile(r"/v1/invoiceitems/(?P<id>ii_\w+)"), self.delete_invoice_item),
            ("GET", re.compile(r"/v1/payment_methods"), self.list_payment_methods),
            (
                "GET",
                re.compile(r"/v1/customers/(?P<id>cus_\w+)/payment_methods"),
                self.list_customer_payment_methods,
            ),
            ("GET", re.compile(r"/v1/customers/(?P<id>cus_\w+)"), self.retrieve_deleted_customer),
        ]
        self.deleted_customers: set[str] = set()
        # Invoice PaymentIntents, test payment methods, SEPA timers (fake_stripe_payments).
        self.payments = InvoicePayments(self)
        self.routes.extend(self.payments.routes())

    # -- plumbing --------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        method, path = request.method, request.path
        idem_key = request.headers.get("Idempotency-Key")
        if method == "OPTIONS":  # CORS preflight from the Stripe.js stand-in
            return self.to_response(_Reply(204, b"", "text/plain"), request)
        if not path.startswith("/v1/"):
            reply = await self.non_api(request, raw)
            self.record(method, path, idem_key, reply)
            return self.to_response(reply, request)

        fault = self.take_fault(method, path)
        delay = self.take_delay(method, path)
        if delay:
            await asyncio.sleep(delay)
        if fault is not None and not fault.after_forward:
            return self.injected(request, fault, idem_key)

        ctx = _Ctx(
            method=method,
            path=path,
            query_string=request.query_string,
            query=_unflatten(list(request.query.items())),
            params=_parse_body(raw) if method in ("POST", "DELETE") else {},
            raw_body=raw,
            content_type=request.headers.get("Content-Type", ""),
            authorization=request.headers.get("Authorization", ""),
        )
        scope = (ctx.authorization, idem_key) if idem_key and method != "GET" else None
        replayed = False
        if scope is not None:
            fingerprint = json.dumps([method, path, ctx.params], sort_keys=True)
            stored = self.idempotency.get(scope)
            if stored is not None and stored.fingerprint != fingerprint:
                reply = StripeApiError(
                    400,
                    "Keys for idempotent requests can only be used with the same parameters "
                    f"they were first used with. Try using a key other than '{idem_key}' if "
                    "you meant to execute a different request.",
                    type_="idempotency_error",
                ).reply
            elif stored is not None:
                reply = _Reply(
                    stored.reply.status,
                    stored.reply.body,
                    stored.reply.content_type,
                    {**stored.reply.headers, "Idempotent-Replayed": "true"},
                )
                replayed = True
            elif scope in self.in_flight:
                reply = StripeApiError(
                    409,
                    "There is currently another in-progress request using this Idempotent "
                    "Key (that probably means you submitted twice, and the other request is "
                    "still going through). Please retry your request.",
                    type_="idempotency_error",
                    code="idempotency_key_in_use",
                ).reply
            else:
                self.in_flight.add(scope)
                try:
                    reply = await self.dispatch(ctx)
                finally:
                    self.in_flight.discard(scope)
                if _executed(reply):
                    self.idempotency[scope] = _StoredResponse(fingerprint, reply)
        else:
            reply = await self.dispatch(ctx)

        if fault is not None:  # after_forward: the work is done, the answer is lost
            return self.injected(request, fault, idem_key, after=True)
        self.record(method, path, idem_key, reply, replayed=replayed)
        return self.to_response(reply, request)

    def to_response(self, reply: _Reply, request: web.Request) -> web.Response:
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
            # Stripe's shapes for the pinned API version (devstack/fake_stripe_shapes.py),
            # whoever built the body: localstripe, the emulation or a stored replay.
            request_id = headers.setdefault("Request-Id", _new_id("req_"))
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
        self, request: web.Request, fault: _Fault, idem_key: str | None, after: bool = False
    ) -> web.StreamResponse:
        label = "fault-after" if after else "fault"
        if fault.status == 0:  # a dropped connection: the client sees no answer at all
            self.record_raw(request.method, request.path, idem_key, 0, injected=label)
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)
        if fault.status == 429:
            error = StripeApiError(
                429,
                "Too many requests hit the API too quickly (injected by fake_stripe).",
                code="rate_limit",
            )
        else:
            error = StripeApiError(
                fault.status,
                "An unknown error occurred (injected by fake_stripe).",
                type_="api_error",
            )
        self.record_raw(request.method, request.path, idem_key, fault.status, injected=label)
        return self.to_response(error.reply, request)

    def record(
        self,
        method: str,
        path: str,
        idem_key: str | None,
        reply: _Reply,
        replayed: bool = False,
    ) -> None:
        payload = reply.json() if path.startswith("/v1/") else None
        object_id = payload.get("id") if payload and isinstance(payload.get("id"), str) else None
        self.record_raw(method, path, idem_key, reply.status, replayed, None, object_id)

    def record_raw(
        self,
        method: str,
        path: str,
        idem_key: str | None,
        status: int,
        replayed: bool = False,
        injected: str | None = None,
        object_id: str | None = None,
    ) -> None:
        with self.lock:
            self.log.append(
                RequestRecord(method, path, idem_key, status, replayed, injected, object_id)
            )

    def take_fault(self, method: str, path: str) -> _Fault | None:
        with self.lock:
            for fault in self.faults:
                if path.startswith(fault.path_prefix) and fault.method in (None, method):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def take_delay(self, method: str, path: str) -> float:
        with self.lock:
            for delay in self.delays:
                if path.startswith(delay.path_prefix) and delay.method in (None, method):
                    delay.remaining -= 1
                    if delay.remaining <= 0:
                        self.delays.remove(delay)
                    return delay.seconds
        return 0.0

    async def dispatch(self, ctx: _Ctx) -> _Reply:
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
            return await self.passthrough(ctx)
        except StripeApiError as error:
            return error.reply

    def authorized(self, ctx: _Ctx) -> bool:
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
        ctx: _Ctx,
        method: str,
        path: str,
        *,
        params: Json | None = None,
        query: str = "",
        raw: bytes | None = None,
        content_type: str | None = None,
    ) -> _Reply:
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
            reply = _Reply(response.status, body, response.headers.get("Content-Type", ""))
        if reply.status >= 400 and reply.json() is None:
            # localstripe answers unknown routes with aiohttp's text 404/405; make it
            # Stripe-shaped so the SDK raises InvalidRequestError, not a parse error.
            return StripeApiError(
                reply.status,
                f"Unrecognized request URL ({method}: {path}) (not emulated by fake_stripe).",
            ).reply
        return reply

    async def backend_json(self, ctx: _Ctx, method: str, path: str, **kw: Any) -> Json:
        """A backend call whose failure is passed on to the client as is."""
        reply = await self.backend_call(ctx, method, path, **kw)
        payload = reply.json()
        if reply.status != 200 or payload is None:
            error = StripeApiError(reply.status or 500, "backend error")
            error.reply = reply
            raise error
        return payload

    async def non_api(self, request: web.Request, raw: bytes) -> _Reply:
        found = re.fullmatch(r"/_fake/invoices/(in_\w+)", request.path)
        if found and found.group(1) in self.invoices:
            return self.hosted_invoice_page(self.invoices[found.group(1)])
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
            return _Reply(response.status, body, response.headers.get("Content-Type", ""))

    # -- events (the store is fake_stripe_events.EventBus) -----------------------------

    async def list_events(self, ctx: _Ctx) -> _Reply:
        try:
            return _json_reply(200, self.events.page(ctx.query))
        except EventListError as error:
            raise StripeApiError(
                error.status, str(error), code=error.code, param=error.param
            ) from error

    async def retrieve_event(self, ctx: _Ctx, id: str) -> _Reply:
        event = self.events.get(id)
        if event is None:
            raise _missing("event", id)
        return _json_reply(200, event)

    # -- pass-through with gap fixes ---------------------------------------------------

    async def passthrough(self, ctx: _Ctx) -> _Reply:
        path = ctx.path
        params = ctx.params
        modified = False

        found = re.fullmatch(r"/v1/payment_methods/(pm_\w+)(/attach|/detach)?", path)
        if found and found.group(1) in MAGIC_PAYMENT_METHODS:
            customer = params.get("customer") if found.group(2) == "/attach" else None
            real = await self.materialise(ctx, found.group(1), customer)
            path = f"/v1/payment_methods/{real}{found.group(2) or ''}"

        customer_in_path = re.fullmatch(r"/v1/customers/(cus_\w+)", path)
        customer_hint = customer_in_path.group(1) if customer_in_path else params.get("customer")
        if isinstance(params.get("payment_method"), str) and params["payment_method"] in (
            MAGIC_PAYMENT_METHODS
        ):
            params = {
                **params,
                "payment_method": await self.materialise(
                    ctx, params["payment_method"], customer_hint
                ),
            }
            modified = True
        settings = params.get("invoice_settings")
        if isinstance(settings, dict) and settings.get("default_payment_method") in (
            MAGIC_PAYMENT_METHODS
        ):
            real = await self.materialise(ctx, settings["default_payment_method"], customer_hint)
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
            before = await self.backend_call(ctx, "GET", f"/v1/payment_methods/{detaching[1]}")
            detached_from = (before.json() or {}).get("customer")

        query = ctx.query_string
        if ctx.method == "GET" and re.fullmatch(r"/v1/customers/cus_\w+/tax_ids", path):
            # localstripe refuses Stripe's paging parameters here (a customer has a few
            # tax ids: the whole list is one page).
            query = ""
        if exempt is not None and not params and path != "/v1/customers":
            # Only tax_exempt changed: localstripe refuses an empty update.
            reply = await self.backend_call(ctx, "GET", path)
        elif modified:
            reply = await self.backend_call(ctx, ctx.method, path, params=params, query=query)
        else:
            reply = await self.backend_call(
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
            self.customer_seen_at[payload["id"]] = time.monotonic()
        customer_path = re.fullmatch(r"/v1/customers(/cus_\w+)?", path)
        if ctx.method == "POST" and customer_path and payload.get("object") == "customer":
            self.customer_index[payload["id"]] = {
                k: payload.get(k) for k in _INDEXED_CUSTOMER_FIELDS
            }
        if ctx.method == "DELETE" and re.fullmatch(r"/v1/customers/cus_\w+", path):
            self.customer_index.pop(path.rsplit("/", 1)[1], None)
            self.deleted_customers.add(path.rsplit("/", 1)[1])
        if detaching and detached_from:
            # Stripe stops using a detached method as the customer's default; localstripe
            # keeps pointing at it.
            owner = await self.backend_json(ctx, "GET", f"/v1/customers/{detached_from}")
            settings = owner.get("invoice_settings") or {}
            if settings.get("default_payment_method") == detaching[1]:
                await self.backend_json(
                    ctx,
                    "POST",
                    f"/v1/customers/{detached_from}",
                    params={"invoice_settings": {"default_payment_method": ""}},
                )
        if ctx.method == "POST" and path == "/v1/payment_methods":
            card = params.get("card")
            if isinstance(card, dict) and isinstance(card.get("number"), str):
                self.card_brands[payload["id"]] = _brand_for(card["number"])
        if (
            re.fullmatch(r"/v1/setup_intents/\w+/confirm", path)
            and payload.get("status") == "succeeded"
            and payload.get("customer")
            and payload.get("payment_method")
        ):
            # Stripe attaches the method to the SetupIntent's customer; localstripe not.
            # The browser (Stripe.js) confirms with the publishable key, which may not
            # read or attach payment methods: these follow-up calls use a secret key.
            internal = replace(ctx, authorization="Bearer sk_test_overtime_proxy")
            method = await self.backend_json(
                internal, "GET", f"/v1/payment_methods/{payload['payment_method']}"
            )
            if method.get("customer") is None:
                await self.backend_json(
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
                self.card_brands[pm_id] = _brand_for(number)
        if exempt is not None and payload.get("object") == "customer":
            self.customer_tax_exempt[str(payload["id"])] = exempt
        return _json_reply(reply.status, self.customer_view(self.decorate(payload)))

    async def materialise(self, ctx: _Ctx, magic: str, customer: Any) -> str:
        """The real localstripe PaymentMethod standing in for a Stripe test id."""
        key = (magic, customer if isinstance(customer, str) else None)
        if key in self.magic:
            return self.magic[key]
        spec = MAGIC_PAYMENT_METHODS[magic]
        body: Json
        if isinstance(spec, StripeTestCard):
            body = {"type": "card", "card": {"number": spec.number, **_CARD_EXPIRY}}
        else:
            body = {
                "type": "sepa_debit",
                "sepa_debit": {"iban": spec.iban},
                "billing_details": {"name": "Jenny Rosen", "email": "jenny@example.com"},
            }
        created = await self.backend_json(ctx, "POST", "/v1/payment_methods", params=body)
        if isinstance(spec, StripeTestCard):
            self.card_brands[created["id"]] = spec.brand
        self.magic[key] = created["id"]
        return str(created["id"])

    async def retrieve_deleted_customer(self, ctx: _Ctx, id: str) -> _Reply | None:
        """Stripe still answers a deleted customer's id (``{id, object, deleted}``);
        localstripe forgets it (404)."""
        if id not in self.deleted_customers:
            return None
        return _json_reply(200, {"id": id, "object": "customer", "deleted": True})

    async def list_payment_methods(self, ctx: _Ctx) -> _Reply:
        """``GET /v1/payment_methods?customer=…[&type=…]``; ``type`` is optional, as in
        Stripe (localstripe insists on ``type=card``). A customer is required here: the
        fake keeps no payment methods that belong to nobody worth listing."""
        params = ctx.query
        _check_params(params, _PAYMENT_METHOD_LIST_PARAMS | {"customer"})
        customer = params.get("customer")
        if not isinstance(customer, str) or not customer:
            raise StripeApiError(400, "Missing required param: customer.", param="customer")
        return await self.payment_method_page(ctx, customer, params, "/v1/payment_methods")

    async def list_customer_payment_methods(self, ctx: _Ctx, id: str) -> _Reply:
        """``GET /v1/customers/{id}/payment_methods[?type=…]``."""
        _check_params(ctx.query, _PAYMENT_METHOD_LIST_PARAMS)
        return await self.payment_method_page(
            ctx, id, ctx.query, f"/v1/customers/{id}/payment_methods"
        )

    async def payment_method_page(self, ctx: _Ctx, customer: str, params: Json, url: str) -> _Reply:
        if customer in self.deleted_customers:
            raise _missing("customer", customer, "customer")
        limit = _as_int(params.get("limit"), "limit") or 10
        if not 1 <= limit <= 100:
            raise StripeApiError(400, "limit must be between 1 and 100", param="limit")
        query = {"customer": customer, "limit": str(limit)}
        for name in ("type", "starting_after"):
            if params.get(name):
                query[name] = str(params[name])
        reply = await self.backend_call(ctx, "GET", "/v1/payment_methods", query=urlencode(query))
        payload = reply.json()
        if reply.status != 200 or payload is None:
            return reply
        payload["url"] = url
        payload["data"] = self.decorate(payload["data"])
        return _json_reply(200, payload)

    def customer_view(self, payload: Json) -> Json:
        """A customer as Stripe shows it: with the ``tax_exempt`` localstripe lacks."""
        if payload.get("object") == "customer":
            payload["tax_exempt"] = self.customer_tax_exempt.get(str(payload["id"]), "none")
        return payload

    def decorate(self, payload: Any) -> Any:
        """Correct what localstripe reports differently from Stripe, wherever it appears:
        card brands (always "visa" there) and off-session PaymentIntents that needed
        authentication (Stripe fails them; localstripe leaves them waiting)."""
        if not self.card_brands and not self.intent_overrides:
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
        if fixed.get("object") == "payment_intent" and object_id in self.intent_overrides:
            fixed.update(self.intent_overrides[object_id])
        return fixed

    # -- customers ---------------------------------------------------------------------

    async def all_customers(self, ctx: _Ctx) -> list[Json]:
        customers: list[Json] = []
        after: str | None = None
        while True:
            query = {"limit": "100", **({"starting_after": after} if after else {})}
            page = await self.backend_json(ctx, "GET", "/v1/customers", query=urlencode(query))
            customers.extend(page["data"])
            if not page.get("has_more") or not page["data"]:
                return customers
            after = page["data"][-1]["id"]

    async def search_customers(self, ctx: _Ctx) -> _Reply:
        params = ctx.query
        _check_params(params, {"query", "limit", "page", "expand"})
        if not params.get("query"):
            raise StripeApiError(400, "Missing required param: query.", param="query")
        horizon = time.monotonic() - self.search_visibility_delay
        _, clauses = _search_clauses(params["query"], "customers")
        # Filter the index where it holds every field the query names, then read only the
        # page's customers, fresh; otherwise list them all.
        indexed = all(c.field in _INDEXED_CUSTOMER_FIELDS for c in clauses)
        candidates = (
            list(self.customer_index.values()) if indexed else await self.all_customers(ctx)
        )
        visible = [c for c in candidates if self.customer_seen_at.get(c["id"], 0.0) <= horizon]
        page = _search_page(ctx.path, params, _search_filter(params["query"], visible, "customers"))
        if indexed:
            page["data"] = [
                await self.backend_json(ctx, "GET", f"/v1/customers/{c['id']}")
                for c in page["data"]
            ]
        page["data"] = [self.customer_view(c) for c in page["data"]]
        return _json_reply(200, page)

    # -- tax rates ---------------------------------------------------------------------

    def tax_rate(self, rate_id: Any, param: str = "tax_rates") -> Json:
        rate = self.tax_rates.get(str(rate_id))
        if rate is None:
            raise _missing("tax_rate", str(rate_id), param)
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
            rate["active"] = bool(_as_bool(params["active"], "active"))
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
            rate["metadata"] = _merge_metadata(rate["metadata"], params["metadata"])

    async def create_tax_rate(self, ctx: _Ctx) -> _Reply:
        params = ctx.params
        _check_params(params, _TAX_RATE_MUTABLE | {"display_name", "inclusive", "percentage"})
        for required in ("display_name", "inclusive", "percentage"):
            if required not in params:
                raise StripeApiError(400, f"Missing required param: {required}.", param=required)
        inclusive = _as_bool(params["inclusive"], "inclusive")
        percentage = _as_decimal(params["percentage"], "percentage", 4)
        if not Decimal(0) <= percentage <= Decimal(100):
            raise StripeApiError(400, "percentage must be between 0 and 100.", param="percentage")
        rate: Json = {
            "id": _new_id("txr_"),
            "object": "tax_rate",
            "active": True,
            "country": None,
            "created": _now(),
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
        self.tax_rates[rate["id"]] = rate
        self.tax_percentages[rate["id"]] = percentage
        return _json_reply(200, rate)

    async def retrieve_tax_rate(self, ctx: _Ctx, id: str) -> _Reply:
        return _json_reply(200, self.tax_rate(id, "id"))

    async def update_tax_rate(self, ctx: _Ctx, id: str) -> _Reply:
        rate = self.tax_rate(id, "id")
        # percentage and inclusive are fixed for good: Stripe refuses them here.
        _check_params(ctx.params, _TAX_RATE_MUTABLE)
        updated = dict(rate)
        self._tax_rate_fields(ctx.params, updated)
        rate.update(updated)
        return _json_reply(200, rate)

    async def list_tax_rates(self, ctx: _Ctx) -> _Reply:
        params = ctx.query
        _check_params(
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
        limit = _as_int(params.get("limit"), "limit") or 10
        if not 1 <= limit <= 100:
            raise StripeApiError(400, "limit must be between 1 and 100.", param="limit")
        rates = sorted(self.tax_rates.values(), key=lambda r: (r["created"], r["id"]), reverse=True)
        for name in ("active", "inclusive"):
            if name in params:
                wanted = _as_bool(params[name], name)
                rates = [r for r in rates if r[name] == wanted]
        ids = [r["id"] for r in rates]
        if params.get("starting_after"):
            if params["starting_after"] not in self.tax_rates:
                raise _missing("tax_rate", str(params["starting_after"]), "starting_after")
            if params["starting_after"] in ids:
                rates = rates[ids.index(params["starting_after"]) + 1 :]
        elif params.get("ending_before") in ids:
            rates = rates[: ids.index(params["ending_before"])][-limit:]
        return _json_reply(
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
            _line_tax(amount, self.tax_rates[rate_id], self.tax_percentages[rate_id])
            for rate_id in rate_ids
        ]

    # -- invoices ----------------------------------------------------------------------

    def emulated(self, invoice_id: str) -> _Invoice:
        invoice = self.invoices.get(invoice_id)
        if invoice is None:
            raise _missing("invoice", invoice_id)
        return invoice

    async def create_invoice(self, ctx: _Ctx) -> _Reply | None:
        params = ctx.params
        if params.get("subscription"):
            return None  # localstripe's own subscription invoices
        _check_params(
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
        default_tax_rates = self.usable_rates(params.get("default_tax_rates"), "default_tax_rates")
        customer_id = params.get("customer")
        if not isinstance(customer_id, str) or not customer_id:
            raise StripeApiError(400, "Missing required param: customer.", param="customer")
        customer = await self.get_customer(ctx, customer_id)
        collection = params.get("collection_method", "charge_automatically")
        if collection not in ("charge_automatically", "send_invoice"):
            raise StripeApiError(400, "Invalid collection_method", param="collection_method")
        days_until_due = _as_int(params.get("days_until_due"), "days_until_due")
        due_date = _as_int(params.get("due_date"), "due_date")
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
            default_pm = await self.materialise(ctx, default_pm, customer_id)
        self.invoice_counter += 1
        now = _now()
        invoice = _Invoice(
            id=_new_id("in_"),
            customer=customer_id,
            customer_email=customer.get("email"),
            customer_name=customer.get("name"),
            currency=str(params.get("currency") or customer.get("currency") or "eur").lower(),
            collection_method=collection,
            auto_advance=bool(_as_bool(params.get("auto_advance"), "auto_advance")),
            description=params.get("description") or None,
            metadata=_merge_metadata({}, params.get("metadata") or {}),
            created=now,
            seen_at=time.monotonic(),
            days_until_due=days_until_due,
            due_date=due_date,
            default_payment_method=default_pm,
            default_tax_rates=default_tax_rates,
            footer=params.get("footer") or None,
            customer_tax_exempt=self.customer_tax_exempt.get(customer_id, "none"),
        )
        self.invoices[invoice.id] = invoice
        if behavior == "include":
            pending = await self.backend_json(
                ctx,
                "GET",
                "/v1/invoiceitems",
                query=urlencode({"customer": customer_id, "limit": "100"}),
            )
            for item in pending["data"]:
                if item.get("invoice") is None and item.get("currency") == invoice.currency:
                    await self.attach_item(ctx, invoice, item)
        await self.payments.emit_invoice(ctx, "invoice.created", invoice)
        return await self.invoice_reply(ctx, invoice, _expand_list(params))

    async def get_customer(self, ctx: _Ctx, customer_id: str) -> Json:
        reply = await self.backend_call(ctx, "GET", f"/v1/customers/{customer_id}")
        payload = reply.json()
        if reply.status == 404 or payload is None or payload.get("deleted"):
            raise _missing("customer", customer_id, "customer")
        if reply.status != 200:
            error = StripeApiError(reply.status, "backend error")
            error.reply = reply
            raise error
        return payload

    async def attach_item(
        self,
        ctx: _Ctx,
        invoice: _Invoice,
        item: Json,
        *,
        tax_rates: list[str] | None = None,
        quantity: int = 1,
        unit_amount_decimal: Decimal | None = None,
    ) -> None:
        """Mark a localstripe invoice item as taken (so it is no longer pending) and add
        the line to our invoice, taxed by its own rates or else the invoice's defaults."""
        await self.backend_json(
            ctx, "POST", f"/v1/invoiceitems/{item['id']}", params={"invoice": invoice.id}
        )
        self.item_to_invoice[item["id"]] = invoice.id
        if tax_rates is None:
            tax_rates = self.pending_item_rates.pop(item["id"], None)
        rates = tax_rates or invoice.default_tax_rates
        amount = int(item["amount"])
        unit = unit_amount_decimal if unit_amount_decimal is not None else Decimal(amount)
        item["tax_rates"] = [self.tax_rates[r] for r in tax_rates or []]
        item["quantity"] = quantity
        item["pricing"] = {
            "price_details": None,
            "type": "price_details",
            "unit_amount_decimal": str(unit),
        }
        invoice.lines.append(
            {
                "id": _new_id("il_"),
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
                "period": dict(item.get("period") or {"start": _now(), "end": _now()}),
                "pretax_credit_amounts": [],
                "pricing": {
                    "price_details": None,
                    "type": "price_details",
                    "unit_amount_decimal": str(unit),
                },
                "quantity": quantity,
                "subtotal": amount,
                "taxes": self.line_taxes(amount, rates),
            }
        )

    async def create_invoice_item(self, ctx: _Ctx) -> _Reply | None:
        params = ctx.params
        invoice_id = params.get("invoice")
        ours = {"period", "tax_rates", "quantity", "unit_amount_decimal"}
        if not invoice_id and not ours & set(params):
            return None  # a plain pending item: localstripe handles it as is
        _check_params(
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
        tax_rates = self.usable_rates(params.get("tax_rates"), "tax_rates")
        quantity = _as_int(params.get("quantity"), "quantity")
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
            unit = _as_decimal(params["unit_amount_decimal"], "unit_amount_decimal", 12)
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
            invoice = self.emulated(str(invoice_id))
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
            forwarded["amount"] = _cents(unit * (quantity if quantity is not None else 1))
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
            reply = await self.backend_call(ctx, "POST", "/v1/invoiceitems", params=forwarded)
            pending = reply.json()
            if reply.status == 200 and pending is not None and tax_rates:
                self.pending_item_rates[str(pending["id"])] = tax_rates
            return reply
        async with invoice.lock:
            item = await self.backend_json(ctx, "POST", "/v1/invoiceitems", params=forwarded)
            await self.attach_item(
                ctx,
                invoice,
                item,
                tax_rates=tax_rates,
                quantity=quantity if quantity is not None else 1,
                unit_amount_decimal=unit,
            )
            item["invoice"] = invoice.id
        return _json_reply(200, item)

    async def delete_invoice_item(self, ctx: _Ctx, id: str) -> _Reply | None:
        invoice_id = self.item_to_invoice.get(id)
        if invoice_id is None:
            return None
        invoice = self.invoices[invoice_id]
        async with invoice.lock:
            if invoice.state != "draft":
                raise StripeApiError(400, "You can only delete items of draft invoices.")
            invoice.lines = [
                line
                for line in invoice.lines
                if line["parent"]["invoice_item_details"]["invoice_item"] != id
            ]
            del self.item_to_invoice[id]
            return await self.backend_call(ctx, "DELETE", f"/v1/invoiceitems/{id}")

    async def retrieve_invoice(self, ctx: _Ctx, id: str) -> _Reply | None:
        if id not in self.invoices:
            return None
        invoice = self.invoices[id]
        await self.refresh(ctx, invoice)
        return await self.invoice_reply(ctx, invoice, _expand_list(ctx.query))

    async def update_invoice(self, ctx: _Ctx, id: str) -> _Reply | None:
        if id not in self.invoices:
            return None
        invoice = self.invoices[id]
        params = ctx.params
        _check_params(
            params, {"metadata", "description", "auto_advance", "default_payment_method", "expand"}
        )
        async with invoice.lock:
            if "metadata" in params:
                invoice.metadata = _merge_metadata(invoice.metadata, params["metadata"])
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
                invoice.auto_advance = bool(_as_bool(params["auto_advance"], "auto_advance"))
            if "default_payment_method" in params:
                invoice.default_payment_method = params["default_payment_method"] or None
        return await self.invoice_reply(ctx, invoice, _expand_list(params))

    async def delete_invoice(self, ctx: _Ctx, id: str) -> _Reply | None:
        if id not in self.invoices:
            return None
        invoice = self.invoices[id]
        async with invoice.lock:
            if invoice.state != "draft":
                raise StripeApiError(
                    400, "You can only delete draft invoices.", code="invoice_not_editable"
                )
            for line in invoice.lines:
                item_id = line["parent"]["invoice_item_details"]["invoice_item"]
                self.item_to_invoice.pop(item_id, None)
                await self.backend_call(ctx, "DELETE", f"/v1/invoiceitems/{item_id}")
            del self.invoices[id]
        return _json_reply(200, {"id": id, "object": "invoice", "deleted": True})

    async def list_invoices(self, ctx: _Ctx) -> _Reply | None:
        params = ctx.query
        if params.get("subscription"):
            return None
        _check_params(params, {"customer", "status", "limit", "starting_after", "expand"})
        limit = _as_int(params.get("limit"), "limit") or 10
        invoices = sorted(self.invoices.values(), key=lambda i: (i.created, i.id), reverse=True)
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
        expand = [e.removeprefix("data.") for e in _expand_list(params)]
        data = [await self.invoice_json(ctx, i, expand) for i in invoices[:limit]]
        return _json_reply(
            200,
            {
                "object": "list",
                "url": "/v1/invoices",
                "data": data,
                "has_more": len(invoices) > limit,
            },
        )

    async def search_invoices(self, ctx: _Ctx) -> _Reply:
        params = ctx.query
        _check_params(params, {"query", "limit", "page", "expand"})
        if not params.get("query"):
            raise StripeApiError(400, "Missing required param: query.", param="query")
        horizon = time.monotonic() - self.search_visibility_delay
        expand = [e.removeprefix("data.") for e in _expand_list(params)]
        candidates = []
        for invoice in list(self.invoices.values()):
            if invoice.seen_at > horizon:
                continue
            await self.refresh(ctx, invoice)
            candidates.append(await self.invoice_json(ctx, invoice, []))
        page = _search_page(
            ctx.path, params, _search_filter(params["query"], candidates, "invoices")
        )
        if expand:
            page["data"] = [
                await self.invoice_json(ctx, self.invoices[item["id"]], expand)
                for item in page["data"]
            ]
        return _json_reply(200, page)

    async def invoice_lines(self, ctx: _Ctx, id: str) -> _Reply | None:
        if id not in self.invoices:
            return None
        invoice = self.invoices[id]
        return _json_reply(
            200,
            {
                "object": "list",
                "url": f"/v1/invoices/{id}/lines",
                "data": [dict(line) for line in invoice.lines],
                "has_more": False,
            },
        )

    async def finalize_invoice(self, ctx: _Ctx, id: str) -> _Reply | None:
        if id not in self.invoices:
            return None
        invoice = self.invoices[id]
        _check_params(ctx.params, {"auto_advance", "expand"})
        async with invoice.lock:
            if invoice.state != "draft":
                raise StripeApiError(
                    400,
                    "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
                    code="invoice_not_editable",
                )
            if "auto_advance" in ctx.params:
                invoice.auto_advance = bool(_as_bool(ctx.params["auto_advance"], "auto_advance"))
            await self.finalize(ctx, invoice)
        return await self.invoice_reply(ctx, invoice, _expand_list(ctx.params))

    async def finalize(self, ctx: _Ctx, invoice: _Invoice) -> None:
        self.invoice_counter += 1
        invoice.state = "open"
        invoice.finalized_at = _now()
        invoice.number = f"FAKE{invoice.customer[-6:].upper()}-{self.invoice_counter:04d}"
        if invoice.total == 0:  # Stripe settles zero invoices at finalization, no PaymentIntent
            invoice.state = "paid"
            invoice.paid_at = invoice.finalized_at
        else:  # the PaymentIntent every attempt confirms
            self.payments.open_intent(ctx, invoice)
        await self.payments.emit_invoice(ctx, "invoice.finalized", invoice)
        if invoice.state == "paid":
            await self.payments.emit_invoice(ctx, "invoice.paid", invoice)
            await self.payments.emit_invoice(ctx, "invoice.payment_succeeded", invoice)

    async def pay_invoice(self, ctx: _Ctx, id: str) -> _Reply | None:
        if id not in self.invoices:
            return None
        invoice = self.invoices[id]
        params = ctx.params
        _check_params(
            params, {"off_session", "payment_method", "paid_out_of_band", "forgive", "expand"}
        )
        async with invoice.lock:
            await self.refresh(ctx, invoice)
            if invoice.state == "paid":
                raise StripeApiError(400, "Invoice is already paid", code="invoice_already_paid")
            if invoice.state == "void":
                raise StripeApiError(400, "You cannot pay a void invoice.")
            if invoice.state == "draft":
                await self.finalize(ctx, invoice)
                if invoice.state == "paid":
                    return await self.invoice_reply(ctx, invoice, _expand_list(params))
            if self.payments.processing(invoice):
                raise StripeApiError(
                    400,
                    "This invoice's payment is processing; it cannot be paid again until "
                    "that payment succeeds or fails.",
                    code="invoice_payment_intent_requires_action",
                )
            if _as_bool(params.get("paid_out_of_band"), "paid_out_of_band"):
                await self.payments.cancel(ctx, invoice, None)
                invoice.state, invoice.paid_at, invoice.paid_out_of_band = "paid", _now(), True
                await self.payments.emit_invoice(ctx, "invoice.paid", invoice)
                return await self.invoice_reply(ctx, invoice, _expand_list(params))
            payment_method = await self.payment_method_for(ctx, invoice, params)
            # Confirms the invoice's PaymentIntent; a decline raises its 402 once recorded.
            await self.payments.confirm(ctx, invoice, payment_method)
            return await self.invoice_reply(ctx, invoice, _expand_list(params))

    async def payment_method_for(self, ctx: _Ctx, invoice: _Invoice, params: Json) -> Json:
        """The PaymentMethod to charge, as localstripe has it (brands corrected). A test id
        of a card Stripe refuses to attach is charged (and declines) unattached."""
        chosen = params.get("payment_method") or invoice.default_payment_method
        spec = MAGIC_PAYMENT_METHODS.get(chosen) if isinstance(chosen, str) else None
        if spec is not None:
            chosen = await self.materialise(ctx, str(chosen), invoice.customer)
        if not chosen:
            customer = await self.get_customer(ctx, invoice.customer)
            chosen = (customer.get("invoice_settings") or {}).get("default_payment_method")
            chosen = chosen or customer.get("default_source")
        if not chosen:
            raise StripeApiError(
                400,
                "This customer has no attached payment source or default payment method. "
                "Please consider adding a default payment method.",
            )
        method = await self.backend_call(ctx, "GET", f"/v1/payment_methods/{chosen}")
        payload = method.json()
        if method.status != 200 or payload is None:
            raise _missing("payment_method", str(chosen), "payment_method")
        declines_at_attach = isinstance(spec, StripeTestCard) and spec.attach_decline is not None
        if payload.get("customer") != invoice.customer and not declines_at_attach:
            raise StripeApiError(
                400,
                f"The PaymentMethod {chosen} does not belong to the invoice's customer.",
                param="payment_method",
            )
        return dict(self.decorate(payload))

    async def void_invoice(self, ctx: _Ctx, id: str) -> _Reply | None:
        if id not in self.invoices:
            return None
        invoice = self.invoices[id]
        async with invoice.lock:
            await self.refresh(ctx, invoice)
            if invoice.state not in ("open", "uncollectible"):
                raise StripeApiError(
                    400, f"You can only void open invoices; {id} is {invoice.state}."
                )
            if self.payments.processing(invoice):
                raise StripeApiError(
                    400,
                    f"You can't void {id} while its payment is processing.",
                    code="invoice_payment_intent_requires_action",
                )
            await self.payments.cancel(ctx, invoice, "void_invoice")
            invoice.state, invoice.voided_at = "void", _now()
            await self.payments.emit_invoice(ctx, "invoice.voided", invoice)
        return await self.invoice_reply(ctx, invoice, _expand_list(ctx.params))

    async def mark_uncollectible(self, ctx: _Ctx, id: str) -> _Reply | None:
        if id not in self.invoices:
            return None
        invoice = self.invoices[id]
        async with invoice.lock:
            await self.refresh(ctx, invoice)
            if invoice.state != "open":
                raise StripeApiError(
                    400, f"You can only mark open invoices uncollectible; {id} is {invoice.state}."
                )
            invoice.state, invoice.uncollectible_at = "uncollectible", _now()
            await self.payments.emit_invoice(ctx, "invoice.marked_uncollectible", invoice)
        return await self.invoice_reply(ctx, invoice, _expand_list(ctx.params))

    async def refresh(self, ctx: _Ctx, invoice: _Invoice) -> None:
        """Settle a SEPA debit whose time has come (its timer may not have run yet)."""
        await self.payments.settle_due(invoice)

    async def invoice_reply(self, ctx: _Ctx, invoice: _Invoice, expand: list[str]) -> _Reply:
        return _json_reply(200, await self.invoice_json(ctx, invoice, expand))

    async def invoice_json(self, ctx: _Ctx, invoice: _Invoice, expand: list[str]) -> Json:
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
        hosted = f"{self.public_base}/_fake/invoices/{invoice.id}" if finalized else None
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
            "default_tax_rates": [dict(self.tax_rates[r]) for r in invoice.default_tax_rates],
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
            payload["customer"] = self.decorate(await self.get_customer(ctx, invoice.customer))
        if "default_payment_method" in expand and invoice.default_payment_method:
            payload["default_payment_method"] = self.decorate(
                await self.backend_json(
                    ctx, "GET", f"/v1/payment_methods/{invoice.default_payment_method}"
                )
            )
        if "payments" in expand or "payments.data.payment.payment_intent" in expand:
            with_intents = "payments.data.payment.payment_intent" in expand
            payload["payments"] = {
                "object": "list",
                "url": "/v1/invoice_payments",
                "data": [
                    self.payments.payment_json(invoice, payment, with_intents)
                    for payment in invoice.payments
                ],
                "has_more": False,
            }
        return payload

    def hosted_invoice_page(self, invoice: _Invoice) -> _Reply:
        """A stand-in for Stripe's hosted invoice page, so demo links lead somewhere."""
        rows = "".join(
            f"<tr><td>{html.escape(str(line.get('description') or ''))}</td>"
            f"<td style='text-align:right'>{int(line['amount']) / 100:.2f} "
            f"{invoice.currency.upper()}</td></tr>"
            for line in invoice.lines
        )
        taxes = "".join(
            f"<p>{html.escape(self.tax_rates[t['tax_rate_details']['tax_rate']]['display_name'])} "
            f"{self.tax_percentages[t['tax_rate_details']['tax_rate']].normalize()} % "
            f"({t['tax_behavior']}): {int(t['amount']) / 100:.2f} {invoice.currency.upper()}</p>"
            for t in invoice.total_taxes()
        )
        body = (
            "<!doctype html><meta charset='utf-8'><title>Invoice "
            f"{html.escape(invoice.number or invoice.id)}</title>"
            f"<h1>Invoice {html.escape(invoice.number or invoice.id)}</h1>"
            f"<p>Status: <strong>{invoice.state}</strong></p><table>{rows}</table>"
            f"{taxes}<p>Total: {invoice.total / 100:.2f} {invoice.currency.upper()}</p>"
            "<p><small>Served by devstack.fake_stripe, not by Stripe.</small></p>"
        )
        return _Reply(200, body.encode(), "text/html; charset=utf-8")


def _brand_for(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if re.match(r"5[1-5]|2[2-7]", number):
        return "mastercard"
    if re.match(r"3[47]", number):
        return "amex"
    if number.startswith("6"):
        return "discover"
    return "unknown"


class FakeStripe:
    """localstripe plus the gap-filling proxy; ``start()``/``stop()`` are idempotent.

    Usable from synchronous code (``with FakeStripe() as fake: ...``) and from asyncio
    (``async with FakeStripe() as fake: ...`` runs the blocking start/stop in a thread).
    The proxy runs on its own thread and event loop, so a test's loop never serves it.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        publishable_key: str = DEFAULT_PUBLISHABLE_KEY,
        public_host: str | None = None,
        search_visibility_delay: float = DEFAULT_SEARCH_VISIBILITY_DELAY,
        startup_timeout: float = 20.0,
        # Webhook delivery (fake_stripe_events): out of order by up to this much, a second
        # delivery of this share of events, choices from this seed, retries backing off
        # to at most this many seconds (Stripe: hours; a test waits seconds).
        webhook_max_jitter_seconds: float = 0.3,
        webhook_duplicate_rate: float = 0.2,
        webhook_seed: int | None = 0,
        webhook_retry_max_seconds: float = 2.0,
        # SEPA debits stay "processing" this long before they settle (Stripe: days; its
        # test IBANs a few seconds, the "Delayed" ones about three minutes).
        sepa_processing_seconds: float = 1.0,
        sepa_delayed_processing_seconds: float = 6.0,
    ) -> None:
        self._sepa_processing_seconds = sepa_processing_seconds
        self._sepa_delayed_processing_seconds = sepa_delayed_processing_seconds
        self._webhooks = WebhookSettings(
            max_jitter_seconds=webhook_max_jitter_seconds,
            duplicate_rate=webhook_duplicate_rate,
            seed=webhook_seed,
            retry_max_seconds=webhook_retry_max_seconds,
        )
        # (url, secret, event types or None for all) while forwarding
        self._forward: tuple[str, str, list[str] | None] | None = None
        self._host = host
        self._requested_port = port
        self._public_host = public_host
        self._publishable_key = publishable_key
        self._search_visibility_delay = search_visibility_delay
        self._startup_timeout = startup_timeout
        self._state_lock = threading.Lock()
        self._backend: subprocess.Popen[bytes] | None = None
        self._backend_log: Path | None = None
        self._backend_url: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._emulator: _Emulator | None = None
        self._port: int | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> FakeStripe:
        with self._state_lock:
            if self._emulator is not None:
                return self
            try:
                self._start_backend()
                self._start_proxy()
                self._configure_events()
            except BaseException:
                self._stop_locked()
                raise
            atexit.register(self.stop)
            return self

    def stop(self) -> None:
        with self._state_lock:
            self._stop_locked()
        atexit.unregister(self.stop)

    def _start_backend(self) -> None:
        log_fd, log_name = tempfile.mkstemp(prefix="fake-stripe-", suffix=".log")
        self._backend_log = Path(log_name)
        with open(log_fd, "wb") as log:
            self._backend = subprocess.Popen(
                [sys.executable, "-c", _BACKEND_BOOTSTRAP],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,  # a Ctrl-C meant for the parent is ours to relay
            )
        assert self._backend.stdout is not None
        port_line = self._read_port_line(self._backend)
        self._backend_url = f"http://127.0.0.1:{port_line}"
        deadline = time.monotonic() + self._startup_timeout
        while True:  # the port is bound before run_app serves; wait for an answer
            try:
                with socket.create_connection(("127.0.0.1", port_line), timeout=0.5):
                    return
            except OSError as error:
                if time.monotonic() > deadline or self._backend.poll() is not None:
                    tail = self._backend_tail()
                    raise RuntimeError(f"localstripe did not start: {tail}") from error
                time.sleep(0.05)

    def _read_port_line(self, process: subprocess.Popen[bytes]) -> int:
        stdout = process.stdout
        assert stdout is not None
        result: list[bytes] = []
        # readline() has no timeout; a helper thread bounds the wait on a hung child.
        reader = threading.Thread(target=lambda: result.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(self._startup_timeout)
        line = result[0].strip() if result else b""
        if not line.isdigit():
            raise RuntimeError(f"localstripe did not start: {self._backend_tail()}")
        return int(line)

    def _backend_tail(self) -> str:
        if self._backend_log is None or not self._backend_log.exists():
            return "(no log)"
        return self._backend_log.read_text(errors="replace")[-2000:] or "(empty log)"

    def _start_proxy(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=self._run_loop, args=(loop,), name="fake-stripe-proxy", daemon=True
        )
        self._thread.start()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._requested_port))
        self._port = int(sock.getsockname()[1])
        public_base = f"http://{self._public_host or self._host}:{self._port}"
        assert self._backend_url is not None
        emulator = _Emulator(self._backend_url, public_base, self._search_visibility_delay)
        emulator.payments.sepa_processing_seconds = self._sepa_processing_seconds
        emulator.payments.sepa_delayed_processing_seconds = self._sepa_delayed_processing_seconds
        future = asyncio.run_coroutine_threadsafe(self._serve(emulator, sock), loop)
        future.result(self._startup_timeout)
        self._emulator = emulator

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        loop.run_forever()

    async def _serve(self, emulator: _Emulator, sock: socket.socket) -> None:
        emulator.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", emulator.handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        self._runner = runner

    async def _shutdown(self) -> None:
        if self._emulator is not None:  # webhooks under way end with the server
            await self._emulator.events.aclose()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._emulator is not None and self._emulator.session is not None:
            await self._emulator.session.close()

    def _stop_locked(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
        if loop is not None and not loop.is_running():
            loop.close()
        self._loop = self._thread = self._runner = None
        self._emulator = None
        backend, self._backend = self._backend, None
        if backend is not None:
            with contextlib.suppress(OSError):
                if backend.stdin is not None:
                    backend.stdin.close()  # the bootstrap exits on EOF
            stop_process(backend, 5, kill_timeout=5)
            if backend.stdout is not None:
                backend.stdout.close()
        if self._backend_log is not None:
            self._backend_log.unlink(missing_ok=True)
            self._backend_log = None

    def __enter__(self) -> FakeStripe:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> FakeStripe:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    # -- what clients need ---------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._emulator is not None

    @property
    def api_base(self) -> str:
        if self._port is None or self._emulator is None:
            raise RuntimeError("FakeStripe is not running; call start() first")
        return self._emulator.public_base

    @property
    def publishable_key(self) -> str:
        return self._publishable_key

    @property
    def backend_pid(self) -> int | None:
        """The localstripe child's pid while running (tests assert it is gone after stop)."""
        return self._backend.pid if self._backend is not None else None

    @property
    def secret_key(self) -> str:
        """Any ``sk_`` key is accepted; this one is as good as another."""
        return "sk_test_overtime"

    @property
    def stripe_js_url(self) -> str:
        return f"{self.api_base}/js.stripe.com/v3/"

    # -- test controls -------------------------------------------------------------------

    def _require(self) -> _Emulator:
        if self._emulator is None:
            raise RuntimeError("FakeStripe is not running; call start() first")
        return self._emulator

    def inject_faults(
        self,
        status: int = 500,
        count: int = 1,
        path_prefix: str = "/v1/",
        *,
        method: str | None = None,
        after_forward: bool = False,
    ) -> None:
        """Fail the next ``count`` matching requests with ``status`` (0: drop the connection).

        ``after_forward=False`` (default): the request never reaches localstripe.
        ``after_forward=True``: it is executed (and its idempotent result stored), then the
        answer is replaced by the error, the case idempotency keys exist for.
        """
        if count < 1:
            raise ValueError("count must be at least 1")
        emulator = self._require()
        with emulator.lock:
            emulator.faults.append(
                _Fault(
                    status, count, path_prefix, method.upper() if method else None, after_forward
                )
            )

    def inject_delay(
        self,
        seconds: float,
        count: int = 1,
        path_prefix: str = "/v1/",
        *,
        method: str | None = None,
    ) -> None:
        """Hold the next ``count`` matching requests for ``seconds`` before handling them."""
        if count < 1:
            raise ValueError("count must be at least 1")
        emulator = self._require()
        with emulator.lock:
            emulator.delays.append(
                _Delay(seconds, count, path_prefix, method.upper() if method else None)
            )

    def clear_faults(self) -> None:
        emulator = self._require()
        with emulator.lock:
            emulator.faults.clear()
            emulator.delays.clear()

    @property
    def sepa_processing_seconds(self) -> float:
        return self._sepa_processing_seconds

    @sepa_processing_seconds.setter
    def sepa_processing_seconds(self, seconds: float) -> None:
        """How long a SEPA debit stays processing (debits started from now on)."""
        if seconds < 0:
            raise ValueError("sepa_processing_seconds must not be negative")
        self._sepa_processing_seconds = seconds
        if self._emulator is not None:
            self._emulator.payments.sepa_processing_seconds = seconds

    @property
    def sepa_delayed_processing_seconds(self) -> float:
        return self._sepa_delayed_processing_seconds

    @sepa_delayed_processing_seconds.setter
    def sepa_delayed_processing_seconds(self, seconds: float) -> None:
        """The same for the "Delayed" test IBANs (pm_successDelayed_de, pm_failedDelayed_de)."""
        if seconds < 0:
            raise ValueError("sepa_delayed_processing_seconds must not be negative")
        self._sepa_delayed_processing_seconds = seconds
        if self._emulator is not None:
            self._emulator.payments.sepa_delayed_processing_seconds = seconds

    @property
    def search_visibility_delay(self) -> float:
        return self._search_visibility_delay

    @search_visibility_delay.setter
    def search_visibility_delay(self, seconds: float) -> None:
        """Objects younger than this are invisible to search, like Stripe's lagging index."""
        self._search_visibility_delay = seconds
        if self._emulator is not None:
            self._emulator.search_visibility_delay = seconds

    @property
    def request_log(self) -> list[RequestRecord]:
        emulator = self._require()
        with emulator.lock:
            return list(emulator.log)

    def requests(
        self, method: str | None = None, path: str | None = None, *, prefix: str | None = None
    ) -> list[RequestRecord]:
        """The log filtered by method and exact path (or path prefix)."""
        return [
            r
            for r in self.request_log
            if (method is None or r.method == method.upper())
            and (path is None or r.path == path)
            and (prefix is None or r.path.startswith(prefix))
        ]

    def clear_request_log(self) -> None:
        emulator = self._require()
        with emulator.lock:
            emulator.log.clear()

    # -- events and webhooks (devstack/fake_stripe_events.py) ------------------------------

    def _configure_events(self) -> None:
        """Hand the webhook knobs (and a forwarding asked for before start) to the bus."""
        events = self._require().events
        events.settings = self._webhooks
        events.reseed(self._webhooks.seed)
        if self._forward is not None:
            events.forward(*self._forward)

    def _on_loop(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    def forward_webhooks(self, url: str, secret: str, events: list[str] | None = None) -> None:
        """Send every event created from now on (of ``events``, names or patterns such as
        ``invoice.*``, if given) to ``url``, signed with ``secret``, the way ``stripe listen
        --forward-to url --events ...`` does; kept across stop()/start()."""
        self._forward = (url, secret, events)
        if self._emulator is not None:
            self._emulator.events.forward(url, secret, events)

    def stop_forwarding(self) -> None:
        """No more deliveries; those still waiting or retrying are dropped."""
        self._forward = None
        if self._emulator is not None:
            self._on_loop(self._emulator.events.stop_forwarding())

    @property
    def forwarding_to(self) -> str | None:
        return self._forward[0] if self._forward is not None else None

    def emit_event(self, type: str, obj: Json, **details: Any) -> Json:
        """Emit an event as the proxy does (tests: events the emulation does not make)."""
        events = self._require().events

        async def emit() -> Json:
            return events.emit(type, obj, **details)

        return dict(self._on_loop(emit()))

    @property
    def events(self) -> list[Json]:
        """Every stored event, oldest first (``GET /v1/events`` serves them newest first)."""
        return self._require().events.events()

    @property
    def webhook_deliveries(self) -> list[WebhookDelivery]:
        """Every delivery attempt so far, in the order they ended."""
        return self._require().events.deliveries

    def clear_webhook_deliveries(self) -> None:
        self._require().events.clear_deliveries()

    @property
    def webhook_backlog(self) -> int:
        """Deliveries not finished yet (waiting for their jitter, sending or retrying)."""
        return self._require().events.backlog

    @property
    def webhook_max_jitter_seconds(self) -> float:
        return self._webhooks.max_jitter_seconds

    @webhook_max_jitter_seconds.setter
    def webhook_max_jitter_seconds(self, seconds: float) -> None:
        """0: deliveries one at a time in creation order (no reordering at all)."""
        if seconds < 0:
            raise ValueError("webhook_max_jitter_seconds must not be negative")
        self._webhooks.max_jitter_seconds = seconds

    @property
    def webhook_duplicate_rate(self) -> float:
        return self._webhooks.duplicate_rate

    @webhook_duplicate_rate.setter
    def webhook_duplicate_rate(self, rate: float) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError("webhook_duplicate_rate must be between 0 and 1")
        self._webhooks.duplicate_rate = rate

    @property
    def webhook_seed(self) -> int | None:
        return self._webhooks.seed

    @webhook_seed.setter
    def webhook_seed(self, seed: int | None) -> None:
        """Restart the delivery choices from ``seed`` (None: unrepeatable)."""
        self._webhooks.seed = seed
        if self._emulator is not None:
            self._emulator.events.reseed(seed)

    @property
    def webhook_retry_max_seconds(self) -> float:
        return self._webhooks.retry_max_seconds

    @webhook_retry_max_seconds.setter
    def webhook_retry_max_seconds(self, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError("webhook_retry_max_seconds must be positive")
        self._webhooks.retry_max_seconds = seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--public-host", default=None, help="host name for URLs handed to browsers")
    parser.add_argument("--publishable-key", default=DEFAULT_PUBLISHABLE_KEY)
    parser.add_argument(
        "--forward-webhooks",
        metavar="URL",
        default=None,
        help="send signed webhooks for every event to URL (like stripe listen --forward-to)",
    )
    parser.add_argument(
        "--webhook-secret", default=None, help="the signing secret (whsec_...) URL checks"
    )
    parser.add_argument("--webhook-max-jitter-seconds", type=float, default=0.3)
    parser.add_argument("--webhook-duplicate-rate", type=float, default=0.2)
    parser.add_argument("--webhook-seed", type=int, default=None)
    parser.add_argument(
        "--webhook-events", default=None, help="only these event types (comma-separated)"
    )
    parser.add_argument("--webhook-retry-max-seconds", type=float, default=2.0)
    parser.add_argument(
        "--sepa-processing-seconds",
        type=float,
        default=1.0,
        help="how long a SEPA debit stays processing before it settles",
    )
    parser.add_argument(
        "--sepa-delayed-processing-seconds",
        type=float,
        default=6.0,
        help="the same for the Delayed test IBANs",
    )
    args = parser.parse_args(argv)
    if args.forward_webhooks and not args.webhook_secret:
        parser.error("--forward-webhooks needs --webhook-secret")

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    fake = FakeStripe(
        host=args.host,
        port=args.port,
        publishable_key=args.publishable_key,
        public_host=args.public_host,
        webhook_max_jitter_seconds=args.webhook_max_jitter_seconds,
        webhook_duplicate_rate=args.webhook_duplicate_rate,
        webhook_seed=args.webhook_seed,
        webhook_retry_max_seconds=args.webhook_retry_max_seconds,
        sepa_processing_seconds=args.sepa_processing_seconds,
        sepa_delayed_processing_seconds=args.sepa_delayed_processing_seconds,
    )
    if args.forward_webhooks:
        events = args.webhook_events.split(",") if args.webhook_events else None
        fake.forward_webhooks(args.forward_webhooks, args.webhook_secret, events)
    fake.start()
    try:
        print(f"fake Stripe API base:  {fake.api_base}", flush=True)
        print(f"Stripe.js stand-in:    {fake.stripe_js_url}", flush=True)
        if fake.forwarding_to:
            print(f"webhooks forwarded to: {fake.forwarding_to}", flush=True)
        print(
            f"keys: secret {fake.secret_key} (any sk_...), publishable {fake.publishable_key}",
            flush=True,
        )
        while not stop.wait(1.0):
            pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
