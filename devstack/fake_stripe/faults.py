"""Reliability testing: injected faults and delays, and the log of every request.

``FakeStripe.inject_faults`` / ``inject_delay`` queue a ``Fault`` / ``Delay`` here; the
proxy takes the first matching one per request (``take_fault``, ``take_delay``) before it
does anything else. A fault answers with a Stripe-shaped error before the request reaches
the backend, or (``after_forward``) after, so the work is done but the answer is lost;
status 0 drops the connection. Injected faults are never stored under an idempotency key
(``proxy.py`` answers them outside the store), so a retry reaches the backend as a retry
after a lost connection would. ``log`` lists every request so tests can assert "one
invoice, one charge".

The journal is shared with the caller's thread (the test's), hence its lock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from devstack.fake_stripe.wire import Reply, StripeApiError


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
class Fault:
    status: int
    remaining: int
    path_prefix: str
    method: str | None
    after_forward: bool


@dataclass
class Delay:
    seconds: float
    remaining: int
    path_prefix: str
    method: str | None


class RequestJournal:
    """Queued faults and delays, and the request log; every access holds ``lock``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.faults: list[Fault] = []
        self.delays: list[Delay] = []
        self.log: list[RequestRecord] = []

    def record(
        self,
        method: str,
        path: str,
        idem_key: str | None,
        reply: Reply,
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

    def take_fault(self, method: str, path: str) -> Fault | None:
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


def injected_error(status: int) -> StripeApiError:
    """The Stripe-shaped error an injected fault answers with (429: rate limited)."""
    if status == 429:
        return StripeApiError(
            429,
            "Too many requests hit the API too quickly (injected by fake_stripe).",
            code="rate_limit",
        )
    return StripeApiError(
        status,
        "An unknown error occurred (injected by fake_stripe).",
        type_="api_error",
    )
