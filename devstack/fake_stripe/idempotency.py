"""Idempotency keys, as Stripe honours them (localstripe ignores them).

The response of every POST/DELETE that carries an ``Idempotency-Key`` is stored, scoped
by API key, and replayed for the same key with ``Idempotent-Replayed: true``; the same key
with another method, path or parameters is Stripe's 400 ``idempotency_error``; a key still
in flight is a 409 ``idempotency_key_in_use``. Like Stripe, a request refused before it
began executing is not stored, so the corrected retry with the same key runs
(https://docs.stripe.com/api/idempotent_requests).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from devstack.fake_stripe.wire import Ctx, Reply, StripeApiError


def executed(reply: Reply) -> bool:
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


@dataclass
class StoredResponse:
    fingerprint: str
    reply: Reply


class IdempotencyStore:
    """Stored answers by (authorization, key); used on the proxy's event loop only."""

    def __init__(self) -> None:
        self.stored: dict[tuple[str, str], StoredResponse] = {}
        self.in_flight: set[tuple[str, str]] = set()

    async def run(
        self, scope: tuple[str, str], ctx: Ctx, execute: Callable[[], Awaitable[Reply]]
    ) -> tuple[Reply, bool]:
        """The answer for ``ctx`` under ``scope`` and whether it is a replay; ``execute``
        runs the request when nothing is stored for the key."""
        idem_key = scope[1]
        method, path = ctx.method, ctx.path
        replayed = False
        fingerprint = json.dumps([method, path, ctx.params], sort_keys=True)
        stored = self.stored.get(scope)
        if stored is not None and stored.fingerprint != fingerprint:
            reply = StripeApiError(
                400,
                "Keys for idempotent requests can only be used with the same parameters "
                f"they were first used with. Try using a key other than '{idem_key}' if "
                "you meant to execute a different request.",
                type_="idempotency_error",
            ).reply
        elif stored is not None:
            reply = Reply(
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
                reply = await execute()
            finally:
                self.in_flight.discard(scope)
            if executed(reply):
                self.stored[scope] = StoredResponse(fingerprint, reply)
        return reply, replayed
