"""Stripe's object shapes for the fake: the last pass over every JSON body leaving it.

localstripe answers in the shapes of an older API version (``customer.account_balance``,
``payment_intent.charges``, lists with ``total_count``, no ``amount_received`` …), and
the proxy's own objects are written by hand. ``conform`` brings any of them to the shape
of the API version the product pins (2026-10-28): by each object's ``object`` type,
recursively (expanded objects, list items, an event's ``data.object``), it drops fields
Stripe removed and fills fields Stripe always sends with the value Stripe sends when
nothing else is known. ``conform_error`` completes error bodies the same way.

The tables are written out rather than derived from the SDK on purpose: the contract
test (``tests/contract``) checks the result against schemas generated from the SDK, so
the two are independent, and a field that appears here is a decision with its reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

Json = dict[str, Any]
Default = Callable[[Json], Any]


def _const(value: Any) -> Default:
    return lambda _obj: value


def _nulls(*names: str) -> Default:
    return lambda _obj: dict.fromkeys(names)


def _created(obj: Json) -> int:
    return int(obj.get("created") or obj.get("date") or time.time())


def _succeeded_amount(obj: Json) -> int:
    return int(obj.get("amount") or 0) if obj.get("status") == "succeeded" else 0


def _period(obj: Json) -> Json:
    moment = _created(obj)
    return {"start": moment, "end": moment}


_BILLING_DETAILS = _nulls("address", "email", "name", "phone", "tax_id")

# Fields that Stripe removed from the pinned API version, per object type, with when.
REMOVED: dict[str, frozenset[str]] = {
    # 2019-10-17: account_balance became balance; business_vat_id gave way to tax_ids.
    "customer": frozenset({"account_balance", "business_vat_id"}),
    # 2022-11-15: PaymentIntent.charges removed (latest_charge instead); 2025-03-31: the
    # invoice link moved to the invoice's payments (InvoicePayment).
    "payment_intent": frozenset({"charges", "invoice"}),
    # 2025-03-31: Charge.invoice removed with the same change.
    "charge": frozenset({"invoice"}),
    # 2025-03-31: invoice items' plan/price/subscription moved under pricing and parent;
    # an invoice item has ``date``, never had ``created``.
    "invoiceitem": frozenset({"subscription", "plan", "price", "created", "unit_amount"}),
    # 2020-08-27: lists carry total_count only when it is expanded; the product never is.
    "list": frozenset({"total_count"}),
    # Same for search results (``expand[]=total_count``).
    "search_result": frozenset({"total_count"}),
}

# Fields of sub-objects that localstripe adds and Stripe does not have (SEPA mandates are
# their own objects: ``mandate`` on the SetupIntent / charge, not on the payment method).
NESTED_REMOVED: dict[str, dict[str, frozenset[str]]] = {
    "payment_method": {"sepa_debit": frozenset({"mandate_reference", "mandate_url"})},
}

# Fields Stripe always sends, per object type, and the value when the source lacks it.
DEFAULTS: dict[str, dict[str, Default]] = {
    "customer": {"livemode": _const(False), "created": _created},
    "payment_method": {
        "billing_details": _BILLING_DETAILS,
        "livemode": _const(False),
        "created": _created,
    },
    "setup_intent": {
        "livemode": _const(False),
        "payment_method_types": _const(["card"]),
        "usage": _const("off_session"),
        "created": _created,
    },
    "payment_intent": {
        "amount_capturable": _const(0),
        "amount_received": _succeeded_amount,
        # The default for API versions since 2024-04-10.
        "capture_method": _const("automatic_async"),
        "confirmation_method": _const("automatic"),
        "livemode": _const(False),
        "metadata": _const({}),
        "payment_method_types": _const(["card"]),
        "created": _created,
    },
    "charge": {
        "amount_captured": lambda c: int(c.get("amount") or 0) if c.get("captured") else 0,
        "amount_refunded": _const(0),
        "billing_details": _BILLING_DETAILS,
        "captured": lambda c: c.get("status") == "succeeded",
        "disputed": _const(False),
        "livemode": _const(False),
        "metadata": _const({}),
        "paid": lambda c: c.get("status") == "succeeded",
        "refunded": _const(False),
        "created": _created,
    },
    "invoiceitem": {
        "date": _created,
        "discountable": _const(True),
        "livemode": _const(False),
        "period": _period,
        "proration": _const(False),
        "quantity": _const(1),
        "quantity_decimal": lambda i: str(i.get("quantity") or 1),
    },
    "line_item": {
        "discountable": _const(True),
        "discounts": _const([]),
        "livemode": _const(False),
        "metadata": _const({}),
        "period": _period,
        "subtotal": lambda line: int(line.get("amount") or 0),
    },
    "invoice_payment": {"livemode": _const(False), "is_default": _const(True)},
    "tax_id": {"livemode": _const(False), "created": _created},
    "tax_rate": {"livemode": _const(False), "created": _created},
    "event": {"livemode": _const(False), "pending_webhooks": _const(0)},
}

_NOTHING: frozenset[str] = frozenset()

# Expandable fields localstripe expands although nobody asked; Stripe sends the id.
COLLAPSED: dict[str, frozenset[str]] = {
    "payment_intent": frozenset({"latest_charge"}),
}


def conform(payload: Any) -> Any:
    """``payload`` as Stripe (API 2026-10-28) would shape it; a new value, the input is
    left alone."""
    if isinstance(payload, list):
        return [conform(item) for item in payload]
    if not isinstance(payload, dict):
        return payload
    kind = payload.get("object")
    if not isinstance(kind, str):
        kind = ""
    elif payload.get("deleted") is True:
        # What DELETE answers (and a read of a deleted customer): nothing else.
        return {k: payload[k] for k in ("id", "object", "deleted") if k in payload}
    removed = REMOVED.get(kind, _NOTHING)
    collapsed = COLLAPSED.get(kind, _NOTHING)
    shaped: Json = {}
    for name, value in payload.items():
        if name in removed:
            continue
        if not isinstance(value, dict | list):
            shaped[name] = value  # most fields: nothing below them to shape
        elif name in collapsed and isinstance(value, dict) and "id" in value:
            shaped[name] = value["id"]
        else:
            shaped[name] = conform(value)
    if not kind:
        return shaped
    for name, fields in NESTED_REMOVED.get(kind, {}).items():
        if isinstance(shaped.get(name), dict):
            shaped[name] = {k: v for k, v in shaped[name].items() if k not in fields}
    for name, default in DEFAULTS.get(kind, {}).items():
        if name not in shaped:
            shaped[name] = default(shaped)
    if kind in ("payment_intent", "setup_intent"):
        for name in ("last_payment_error", "last_setup_error"):
            error = shaped.get(name)
            if isinstance(error, dict) and "type" not in error:
                # localstripe leaves the type out; its only failures are card declines.
                shaped[name] = {**error, "type": "card_error"}
    return shaped


def doc_url(code: str) -> str:
    """Where Stripe's error bodies point for a code (hyphens, as Stripe writes them)."""
    return f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"


def request_log_url(request_id: str, now: int | None = None) -> str:
    return f"https://dashboard.stripe.com/test/logs/{request_id}?t={now or int(time.time())}"


def conform_error(body: Json, status: int, request_id: str) -> Json:
    """An error body as Stripe sends it: a 404 names ``resource_missing`` (and the ``id``
    it could not find), a coded error links its documentation, and every error links the
    request's log entry."""
    error = dict(body["error"])
    if status == 404 and not error.get("code"):
        error["code"] = "resource_missing"
        error.setdefault("param", "id")
    code = error.get("code")
    if isinstance(code, str) and code and not error.get("doc_url"):
        error["doc_url"] = doc_url(code)
    error.setdefault("request_log_url", request_log_url(request_id))
    error.setdefault("type", "api_error" if status >= 500 else "invalid_request_error")
    return conform({"error": error})
