"""Stripe's events and webhooks for the fake: an event store and a ``stripe listen``.

``EventBus.emit`` is called by the proxy (on its event loop) at every state change Stripe
would announce. It records the event in Stripe's shape (``object: "event"``, the pinned
``api_version``, ``data.object`` as the API shows it, passed through
``shapes.conform``), serves it to ``GET /v1/events`` and
``GET /v1/events/{id}``, and, while webhooks are forwarded, schedules its delivery.

Forwarding works like ``stripe listen --forward-to URL [--events a,b]``: only events
created while it is on (of the types asked for, if any) are sent, to one URL, signed with
one secret. Delivery behaves as Stripe documents it
for webhook endpoints (https://docs.stripe.com/webhooks): each event is POSTed with a
``Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`` header
that ``stripe.Webhook.construct_event`` accepts, signed afresh on every attempt;

* at least once: an answer other than 2xx, a refused or broken connection or no answer
  within ``timeout_seconds`` is retried with exponential backoff (capped at
  ``retry_max_seconds``, a few seconds in tests where Stripe waits hours), until it
  succeeds, ``retry_window_seconds`` have passed (Stripe gives up after three days) or
  forwarding stops;
* out of order: each delivery first waits a random 0..``max_jitter_seconds``, so events
  created a moment apart arrive in either order. With no jitter, deliveries go one at a
  time in the order the events were created (a failing one holds back the rest);
* sometimes twice: with probability ``duplicate_rate`` an event is delivered a second,
  independent time (own jitter, own retries), as Stripe occasionally does.

The random choices come from one ``random.Random(seed)``, drawn on the proxy's loop in
the order events are emitted, so a run with the same seed and the same events makes the
same choices. Every attempt is logged as a ``WebhookDelivery``.

All state is touched on the proxy's event loop except where noted (``lock``): the
``FakeStripe`` methods that configure forwarding and read the delivery log are called
from the test's thread.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import hmac
import json
import random
import secrets
import string
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import stripe

from devstack.fake_stripe.shapes import conform

Json = dict[str, Any]

EVENT_LIST_PARAMS = {
    "created",
    "delivery_success",
    "ending_before",
    "expand",
    "limit",
    "starting_after",
    "type",
    "types",
}
MAX_TYPES = 20  # "An array of up to 20 strings" (EventListParams.types)
USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"
_ID_ALPHABET = string.ascii_letters + string.digits


def _event_id() -> str:
    return "evt_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


def sign_payload(body: str, secret: str, timestamp: int) -> str:
    """The ``Stripe-Signature`` header Stripe sends for ``body`` at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


@dataclass(frozen=True)
class WebhookDelivery:
    """One delivery attempt as the receiver saw it (or did not)."""

    event_id: str
    type: str
    attempt: int  # 1 for the first try of this copy, 2 for its first retry, ...
    status: int  # the receiver's HTTP status; 0: no answer (refused, broken, timed out)
    copy: int = 0  # 0: the delivery, 1: the duplicate Stripe sometimes sends
    at: float = 0.0  # time.time() when the attempt ended
    error: str | None = None  # why there was no answer
    answer: str | None = None  # the receiver's response body (its first 2000 characters)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass
class WebhookSettings:
    """The delivery knobs; ``FakeStripe`` exposes each as a constructor argument."""

    max_jitter_seconds: float = 0.3
    duplicate_rate: float = 0.2
    seed: int | None = 0
    retry_initial_seconds: float = 0.1
    retry_max_seconds: float = 2.0
    retry_window_seconds: float = 3 * 24 * 3600.0
    timeout_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.max_jitter_seconds < 0:
            raise ValueError("webhook_max_jitter_seconds must not be negative")
        if not 0.0 <= self.duplicate_rate <= 1.0:
            raise ValueError("webhook_duplicate_rate must be between 0 and 1")
        if self.retry_initial_seconds <= 0 or self.retry_max_seconds <= 0:
            raise ValueError("webhook retry delays must be positive")


@dataclass(frozen=True)
class _Target:
    url: str
    secret: str
    # Like ``stripe listen --events`` (an endpoint's enabled_events): names or patterns
    # such as ``invoice.*``; None: every event.
    events: tuple[str, ...] | None = None

    def wants(self, event_type: str) -> bool:
        return self.events is None or any(
            fnmatch.fnmatchcase(event_type, pattern) for pattern in self.events
        )


@dataclass
class _Copy:
    """One scheduled delivery of one event: its random wait is drawn at emit time."""

    event: Json
    copy: int
    jitter: float
    target: _Target
    in_order: bool


class EventListError(Exception):
    """A refused ``GET /v1/events``; the proxy turns it into Stripe's error body."""

    def __init__(
        self, status: int, message: str, param: str | None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.param, self.code = status, param, code


@dataclass
class EventBus:
    """The fake's event store and webhook sender."""

    # The version the stripe SDK pins, as Stripe renders events for the account's version.
    api_version: str = stripe.api_version
    # The final pass over every object leaving the proxy (shapes.py).
    conform: Callable[[Any], Any] = conform
    settings: WebhookSettings = field(default_factory=WebhookSettings)
    # Stripe keeps events 30 days; a benchmark run must not grow without bound.
    max_events: int = 20_000

    def __post_init__(self) -> None:
        self.lock = threading.Lock()  # store, target, RNG and delivery log: callers' threads
        self._events: deque[Json] = deque()  # oldest first
        self._by_id: dict[str, Json] = {}
        self._target: _Target | None = None
        self._rng = random.Random(self.settings.seed)
        self._deliveries: list[WebhookDelivery] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_order: asyncio.Lock | None = None
        self._session: aiohttp.ClientSession | None = None

    # -- the store ---------------------------------------------------------------------

    def emit(
        self,
        type: str,
        obj: Json,
        *,
        previous_attributes: Json | None = None,
        request_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Json:
        """Record ``type`` for ``obj`` (the object as the API would show it, unexpanded)
        and schedule its delivery; returns the event. Never blocks, never raises on a
        receiver's failure. Call it on the proxy's event loop."""
        # A snapshot: the emulator goes on changing its objects, an event never changes.
        data: Json = {"object": self.conform(json.loads(json.dumps(obj)))}
        if previous_attributes is not None:
            data["previous_attributes"] = json.loads(json.dumps(previous_attributes))
        event: Json = {
            "id": _event_id(),
            "object": "event",
            "api_version": self.api_version,
            "created": int(time.time()),
            "data": data,
            "livemode": False,
            "pending_webhooks": 0,
            "request": {"id": request_id, "idempotency_key": idempotency_key},
            "type": type,
        }
        with self.lock:
            copies = self._draw_copies(event)
            event["pending_webhooks"] = 1 if copies else 0  # one endpoint: ours
            if len(self._events) == self.max_events:
                self._by_id.pop(self._events.popleft()["id"], None)
            self._events.append(event)
            self._by_id[event["id"]] = event
        if copies:
            loop = asyncio.get_running_loop()
            for scheduled in copies:
                task = loop.create_task(self._send(scheduled))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return event

    def _draw_copies(self, event: Json) -> list[_Copy]:
        """The deliveries of one event (none while not forwarding); under ``lock``."""
        if self._target is None or not self._target.wants(event["type"]):
            return []
        knobs = self.settings
        in_order = knobs.max_jitter_seconds == 0
        count = 2 if self._rng.random() < knobs.duplicate_rate else 1
        return [
            _Copy(
                event, index, self._rng.uniform(0, knobs.max_jitter_seconds), self._target, in_order
            )
            for index in range(count)
        ]

    def get(self, event_id: str) -> Json | None:
        with self.lock:
            return self._by_id.get(event_id)

    def events(self) -> list[Json]:
        """Every stored event, oldest first."""
        with self.lock:
            return list(self._events)

    def page(self, query: Json) -> Json:
        """``GET /v1/events``: filtered, newest first, cursor-paginated like Stripe's lists."""
        for key in query:
            if key not in EVENT_LIST_PARAMS:
                raise EventListError(400, f"Received unknown parameter: {key}", key)
        if "type" in query and "types" in query:
            raise EventListError(
                400, "You may pass either `type` or `types`, but not both.", "types"
            )
        if "types" in query:
            types = query["types"]
            types = list(types.values()) if isinstance(types, dict) else types
            query = {**query, "types": types if isinstance(types, list) else [types]}
            if len(query["types"]) > MAX_TYPES:
                raise EventListError(400, f"You may pass at most {MAX_TYPES} types.", "types")
        limit = _int_param(query.get("limit", 10), "limit")
        if not 1 <= limit <= 100:
            raise EventListError(400, "This value must be between 1 and 100 (inclusive).", "limit")
        if "starting_after" in query and "ending_before" in query:
            raise EventListError(
                400,
                "You may only specify one of these parameters: ending_before, starting_after.",
                "ending_before",
            )
        with self.lock:
            newest_first = list(reversed(self._events))
        matches = [e for e in newest_first if _matches(e, query)]
        if "starting_after" in query or "ending_before" in query:
            # A cursor marks a place in time, whether or not it passes the filters.
            param = "starting_after" if "starting_after" in query else "ending_before"
            cursor = str(query[param])
            position = {e["id"]: i for i, e in enumerate(newest_first)}
            if cursor not in position:
                raise EventListError(404, f"No such event: '{cursor}'", param, "resource_missing")
            at = position[cursor]
            if param == "starting_after":
                older = [e for e in matches if position[e["id"]] > at]
                data, has_more = older[:limit], len(older) > limit
            else:  # the page just before the cursor, still newest first
                newer = [e for e in matches if position[e["id"]] < at]
                data, has_more = newer[-limit:], len(newer) > limit
        else:
            data, has_more = matches[:limit], len(matches) > limit
        return {"object": "list", "data": data, "has_more": has_more, "url": "/v1/events"}

    # -- forwarding (configured from any thread) -------------------------------------------

    def forward(self, url: str, secret: str, events: list[str] | None = None) -> None:
        with self.lock:
            self._target = _Target(url, secret, tuple(events) if events is not None else None)

    async def stop_forwarding(self) -> None:
        """No new deliveries, and the ones under way are dropped (like ending ``stripe
        listen``); on the proxy's loop."""
        with self.lock:
            self._target = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def aclose(self) -> None:
        await self.stop_forwarding()
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def forwarding_to(self) -> str | None:
        with self.lock:
            return self._target.url if self._target is not None else None

    def reseed(self, seed: int | None) -> None:
        with self.lock:
            self.settings.seed = seed
            self._rng = random.Random(seed)

    @property
    def deliveries(self) -> list[WebhookDelivery]:
        with self.lock:
            return list(self._deliveries)

    def clear_deliveries(self) -> None:
        with self.lock:
            self._deliveries.clear()

    @property
    def backlog(self) -> int:
        """Deliveries not finished yet (waiting, sending or retrying)."""
        return len(self._tasks)

    # -- delivery ------------------------------------------------------------------------

    async def _send(self, scheduled: _Copy) -> None:
        if scheduled.jitter:
            await asyncio.sleep(scheduled.jitter)
        if scheduled.in_order:
            if self._in_order is None:
                self._in_order = asyncio.Lock()  # FIFO: waiters are served in order
            async with self._in_order:
                await self._attempts(scheduled)
        else:
            await self._attempts(scheduled)

    async def _attempts(self, scheduled: _Copy) -> None:
        event, knobs = scheduled.event, self.settings
        give_up = time.monotonic() + knobs.retry_window_seconds
        attempt = 0
        while True:
            attempt += 1
            status, error, answer = await self._post(scheduled)
            record = WebhookDelivery(
                event["id"],
                event["type"],
                attempt,
                status,
                scheduled.copy,
                time.time(),
                error,
                answer,
            )
            with self.lock:
                self._deliveries.append(record)
            if record.ok:
                event["pending_webhooks"] = 0
                return
            backoff = min(knobs.retry_max_seconds, knobs.retry_initial_seconds * 2 ** (attempt - 1))
            if time.monotonic() + backoff > give_up:
                return
            await asyncio.sleep(backoff)

    async def _post(self, scheduled: _Copy) -> tuple[int, str | None, str | None]:
        if self._session is None:
            # No connection reuse: a receiver restarted between attempts is met afresh.
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        body = json.dumps(scheduled.event, indent=2)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": sign_payload(body, scheduled.target.secret, int(time.time())),
            "User-Agent": USER_AGENT,
        }
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_seconds)
        try:
            async with self._session.post(
                scheduled.target.url, data=body.encode(), headers=headers, timeout=timeout
            ) as response:
                answer = (await response.read())[:2000].decode(errors="replace")
                return response.status, None, answer
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            return 0, f"{type(err).__name__}: {err}", None


def _int_param(value: Any, param: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise EventListError(400, f"Invalid integer: {value}", param) from None


def _matches(event: Json, query: Json) -> bool:
    if "type" in query and not fnmatch.fnmatchcase(event["type"], str(query["type"])):
        return False
    if "types" in query and event["type"] not in query["types"]:
        return False
    if "created" in query and not _created_matches(event["created"], query["created"]):
        return False
    if "delivery_success" in query:
        wanted = str(query["delivery_success"]).lower()
        if wanted not in ("true", "false"):
            raise EventListError(400, f"Invalid boolean: {wanted}", "delivery_success")
        if (event["pending_webhooks"] == 0) != (wanted == "true"):
            return False
    return True


def _created_matches(created: int, condition: Any) -> bool:
    if not isinstance(condition, dict):
        return created == _int_param(condition, "created")
    tests = {
        "gt": lambda bound: created > bound,
        "gte": lambda bound: created >= bound,
        "lt": lambda bound: created < bound,
        "lte": lambda bound: created <= bound,
    }
    for key, value in condition.items():
        if key not in tests:
            raise EventListError(400, f"Received unknown parameter: created[{key}]", "created")
        if not tests[key](_int_param(value, f"created[{key}]")):
            return False
    return True
