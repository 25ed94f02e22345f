"""Signed webhooks to the telephony backend (``service.stopped`` / ``service.resumed``).

The signature scheme follows Stripe's: header ``Overtime-Signature: t=<unix>,v1=<hex>``
where ``hex = HMAC-SHA256(secret, f"{t}.{body}")``. Receivers verify it with
:func:`verify_signature` (or its equivalent) and dedupe on the event's ``id``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

SIGNATURE_HEADER = "Overtime-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


class SignatureError(ValueError):
    pass


def encode_event(event: dict[str, object]) -> bytes:
    return json.dumps(event, separators=(",", ":"), sort_keys=True).encode()


def sign(body: bytes, secret: str, timestamp: int | None = None) -> str:
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


def verify_signature(
    body: bytes,
    header: str,
    secret: str,
    *,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: int | None = None,
) -> None:
    """Raise :class:`SignatureError` unless ``header`` signs ``body`` with ``secret``."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        ts = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError) as err:
        raise SignatureError("malformed signature header") from err
    current = int(time.time()) if now is None else now
    if abs(current - ts) > tolerance_seconds:
        raise SignatureError("signature timestamp outside tolerance")
    expected = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given):
        raise SignatureError("signature mismatch")
