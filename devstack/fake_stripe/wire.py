"""What crosses the proxy's wire: the request context, replies, Stripe-shaped errors, and
Stripe's parameter forms (nested form bodies, booleans, integers, decimals, metadata).

Every other module of the fake builds its answers from these, so an error raised anywhere
is the same ``{"error": {...}}`` body Stripe sends.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import string
import time
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

Json = dict[str, Any]

# The proxy's own calls to localstripe (the browser confirms with a publishable key, which
# may not read or attach payment methods).
INTERNAL_AUTHORIZATION = "Bearer sk_test_overtime_proxy"

_ID_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


def unix_now() -> int:
    return int(time.time())


@dataclass
class Reply:
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


def json_reply(status: int, payload: Json) -> Reply:
    return Reply(status, json.dumps(payload, indent=2, sort_keys=True).encode())


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
        self.reply = json_reply(status, {"error": error})


def missing(kind: str, object_id: str, param: str = "id") -> StripeApiError:
    return StripeApiError(
        404, f"No such {kind}: '{object_id}'", code="resource_missing", param=param
    )


def unflatten(pairs: list[tuple[str, str]]) -> Json:
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


def parse_body(raw: bytes) -> Json:
    """Form bodies (the SDKs) and JSON bodies (localstripe's Stripe.js stand-in)."""
    text = raw.decode("utf-8", errors="replace").strip()
    if not text:
        return {}
    if text.startswith("{"):
        with contextlib.suppress(ValueError):
            value = json.loads(text)
            if isinstance(value, dict):
                return value
    return unflatten(parse_qsl(text, keep_blank_values=True))


def as_bool(value: Any, param: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise StripeApiError(400, f"Invalid boolean: {value}", param=param)


def as_int(value: Any, param: str) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    raise StripeApiError(400, f"Invalid integer: {value}", param=param)


def check_params(params: Json, allowed: set[str]) -> None:
    for key in params:
        if key not in allowed:
            raise StripeApiError(400, f"Received unknown parameter: {key}", param=key)


def expand_list(params: Json) -> list[str]:
    value = params.get("expand") or []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def as_decimal(value: Any, param: str, places: int) -> Decimal:
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


def cents(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def merge_metadata(current: dict[str, str], update: Any) -> dict[str, str]:
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


@dataclass
class Ctx:
    """One request as the handlers see it: ``query`` and ``params`` already unflattened."""

    method: str
    path: str
    query_string: str
    query: Json
    params: Json
    raw_body: bytes
    content_type: str
    authorization: str


def internal_ctx(ctx: Ctx | None = None) -> Ctx:
    """A context for the proxy's own reads (timers have no request; the browser's
    publishable key may not read PaymentMethods)."""
    if ctx is None:
        return Ctx(
            method="GET",
            path="",
            query_string="",
            query={},
            params={},
            raw_body=b"",
            content_type="",
            authorization=INTERNAL_AUTHORIZATION,
        )
    return replace(ctx, authorization=INTERNAL_AUTHORIZATION)
