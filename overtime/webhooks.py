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
    """Raise :class:`SignatureError` unless ``header`` signs ``body`` with ``secret``.

    The timestamp must lie within ``tolerance_seconds`` of now in either direction (a
    far-future one would keep a captured request replayable), and appear exactly once:
    with two, which one was signed is ambiguous. Several ``v1`` values are allowed (a
    sender rotating its secret signs with both); one must match.
    """
    stamps: list[str] = []
    given: list[str] = []
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            raise SignatureError("malformed signature header")
        if name == "t":
            stamps.append(value)
        elif name == "v1":
            given.append(value)
    if len(stamps) != 1 or not given or not (stamps[0].isascii() and stamps[0].isdigit()):
        raise SignatureError("malformed signature header")
    ts = int(stamps[0])
    current = int(time.time()) if now is None else now
    if abs(current - ts) > tolerance_seconds:
        raise SignatureError("signature timestamp outside tolerance")
    expected = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    # Compare with every candidate (no early exit on the first match).
    matches = [hmac.compare_digest(expected, candidate) for candidate in given]
    if not any(matches):
        raise SignatureError("signature mismatch")
