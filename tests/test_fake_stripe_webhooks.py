"""The fake Stripe's events and webhooks (devstack/fake_stripe/events.py).

Webhooks go to a real HTTP receiver on this test's loop, which checks every delivery with
the stripe library's own ``stripe.Webhook.construct_event``; events are read back through
the stripe SDK's ``v1.events`` service. The fake here is this module's own, so its
forwarding never disturbs the session's API (tests/conftest.py forwards to that).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import stripe
from aiohttp import web

from devstack.fake_stripe import FakeStripe
from overtime.observability import free_port
from tests.conftest import eventually

# The fake Stripe alone: no database; the PostgreSQL pass would repeat it unchanged.
pytestmark = pytest.mark.sqlite_only

SECRET = "whsec_fake_stripe_webhooks"
RETRY_CAP_SECONDS = 0.4


@dataclass
class Received:
    event: stripe.Event
    body: str
    signature: str
    at: float


@dataclass
class Receiver:
    """A webhook endpoint: verifies like a Stripe integration, answers as told."""

    port: int = 0
    answers: list[int] = field(default_factory=list)  # statuses to give first, then 200
    delay: float = 0.0  # seconds before each answer
    requests: int = 0
    accepted: list[Received] = field(default_factory=list)  # verified and answered 2xx
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.text()
        signature = request.headers.get("Stripe-Signature", "")
        # Raises (a 500, so a retry) on a bad signature; every test expects none.
        event = stripe.Webhook.construct_event(body, signature, SECRET)
        if self.delay:
            await asyncio.sleep(self.delay)
        status = self.answers.pop(0) if self.answers else 200
        if 200 <= status < 300:
            self.accepted.append(Received(event, body, signature, time.time()))
        return web.json_response({"received": True}, status=status)

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def ids(self) -> list[str]:
        return [r.event.id for r in self.accepted]


@pytest.fixture(scope="module")
def module_fake() -> Iterator[FakeStripe]:
    with FakeStripe(webhook_retry_max_seconds=RETRY_CAP_SECONDS) as fake:
        yield fake


@pytest.fixture
def fake(module_fake: FakeStripe) -> Iterator[FakeStripe]:
    """The module's fake with the test defaults, no forwarding and an empty delivery log."""
    module_fake.webhook_max_jitter_seconds = 0.3
    module_fake.webhook_duplicate_rate = 0.2
    module_fake.webhook_seed = 0
    module_fake.clear_webhook_deliveries()
    yield module_fake
    module_fake.stop_forwarding()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = await Receiver().start()
    try:
        yield found
    finally:
        await found.stop()


def client_for(fake: FakeStripe) -> stripe.StripeClient:
    return stripe.StripeClient(
        fake.secret_key, base_addresses={"api": fake.api_base}, max_network_retries=0
    )


def invoice(number: int, status: str = "paid") -> dict[str, Any]:
    return {"id": f"in_test_{number}", "object": "invoice", "status": status}


async def settled(fake: FakeStripe) -> None:
    """Every delivery of every event so far has ended (success, or forwarding stopped)."""
    await eventually(lambda: fake.webhook_backlog == 0, timeout=30)


async def test_a_delivery_is_an_event_stripes_library_accepts(
    fake: FakeStripe, receiver: Receiver
) -> None:
    fake.webhook_max_jitter_seconds = 0
    fake.webhook_duplicate_rate = 0
    fake.forward_webhooks(receiver.url, SECRET)
    sent = fake.emit_event(
        "invoice.paid",
        invoice(1),
        previous_attributes={"status": "open"},
        request_id="req_test_1",
        idempotency_key="key-1",
    )
    await eventually(lambda: len(receiver.accepted) == 1)
    got = receiver.accepted[0]
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", got.signature)
    assert abs(int(got.signature[2:].split(",")[0]) - time.time()) < 5
    event = got.event
    assert event.id == sent["id"] and event.id.startswith("evt_")
    assert event.object == "event" and event.type == "invoice.paid"
    assert event.api_version == stripe.api_version == "2026-10-28.endive"
    assert event.livemode is False and event.pending_webhooks == 1
    assert event.data.object["id"] == "in_test_1"
    assert event.data.previous_attributes.to_dict() == {"status": "open"}
    assert event.request.id == "req_test_1" and event.request.idempotency_key == "key-1"
    # Signed with the secret given, and only that one.
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(got.body, got.signature, "whsec_someone_else")
    [delivery] = fake.webhook_deliveries
    assert (delivery.event_id, delivery.type, delivery.attempt, delivery.status) == (
        sent["id"],
        "invoice.paid",
        1,
        200,
    )
    assert delivery.copy == 0 and delivery.ok and delivery.answer == '{"received": true}'
    # Delivered: nothing pending any more.
    assert client_for(fake).v1.events.retrieve(sent["id"]).pending_webhooks == 0


async def test_an_error_answer_is_retried_until_accepted(
    fake: FakeStripe, receiver: Receiver
) -> None:
    fake.webhook_duplicate_rate = 0
    receiver.answers = [500, 503, 400]
    fake.forward_webhooks(receiver.url, SECRET)
    sent = fake.emit_event("invoice.payment_failed", invoice(2, "open"))
    await eventually(lambda: receiver.ids() == [sent["id"]], timeout=20)
    attempts = [(d.attempt, d.status) for d in fake.webhook_deliveries]
    assert attempts == [(1, 500), (2, 503), (3, 400), (4, 200)]
    assert receiver.requests == 4
    # Backing off: each wait at least as long as the one before, never above the cap.
    times = [d.at for d in fake.webhook_deliveries]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert all(gap <= RETRY_CAP_SECONDS + 1.0 for gap in gaps), gaps
    assert gaps[-1] >= gaps[0] * 0.8, gaps


async def test_a_receiver_that_was_down_gets_the_events_later(fake: FakeStripe) -> None:
    fake.webhook_duplicate_rate = 0
    down = Receiver(port=free_port())
    fake.forward_webhooks(down.url, SECRET)
    sent = [fake.emit_event("invoice.paid", invoice(n)).get("id") for n in (3, 4)]
    # Connection refused, again and again, for both events.
    await eventually(
        lambda: sum(1 for d in fake.webhook_deliveries if d.status == 0) >= 6, timeout=20
    )
    assert not any(d.ok for d in fake.webhook_deliveries)
    assert all(d.error for d in fake.webhook_deliveries)
    events = client_for(fake).v1.events
    pending = events.list({"delivery_success": False, "limit": 100})
    assert set(sent) <= {e.id for e in pending.data}
    assert all(e.pending_webhooks == 1 for e in pending.data if e.id in sent)

    await down.start()  # back up, on the same port
    try:
        await eventually(lambda: sorted(down.ids()) == sorted(sent), timeout=20)
        delivered = events.list({"delivery_success": True, "limit": 100})
        assert set(sent) <= {e.id for e in delivered.data}
    finally:
        await down.stop()


async def test_deliveries_come_out_of_order_and_some_twice_with_the_knobs(
    fake: FakeStripe, receiver: Receiver
) -> None:
    fake.webhook_max_jitter_seconds = 0.3
    fake.webhook_duplicate_rate = 0.5
    fake.webhook_seed = 7
    fake.forward_webhooks(receiver.url, SECRET)
    first = [fake.emit_event("invoice.paid", invoice(n))["id"] for n in range(30)]
    await settled(fake)
    received = receiver.ids()
    assert set(received) == set(first)
    twice = [i for i in first if received.count(i) == 2]
    assert twice and len(received) == len(first) + len(twice)
    assert {d.event_id for d in fake.webhook_deliveries if d.copy == 1} == set(twice)
    first_arrivals = list(dict.fromkeys(received))
    assert first_arrivals != first, "30 events within 0.3 s arrived exactly in order"

    # Repeatable: the same seed makes the same choices for the same sequence of events.
    fake.webhook_seed = 7
    fake.clear_webhook_deliveries()
    second = [fake.emit_event("invoice.paid", invoice(n))["id"] for n in range(30)]
    await settled(fake)
    again = {second.index(d.event_id) for d in fake.webhook_deliveries if d.copy == 1}
    assert again == {first.index(i) for i in twice}


async def test_with_the_knobs_off_every_event_comes_once_and_in_order(
    fake: FakeStripe, receiver: Receiver
) -> None:
    fake.webhook_max_jitter_seconds = 0
    fake.webhook_duplicate_rate = 0
    fake.forward_webhooks(receiver.url, SECRET)
    sent = [fake.emit_event("invoice.paid", invoice(n))["id"] for n in range(30)]
    await settled(fake)
    assert receiver.ids() == sent
    assert all(d.copy == 0 and d.attempt == 1 for d in fake.webhook_deliveries)


async def test_only_the_event_types_asked_for_are_forwarded(
    fake: FakeStripe, receiver: Receiver
) -> None:
    fake.webhook_max_jitter_seconds = 0
    fake.webhook_duplicate_rate = 0
    fake.forward_webhooks(receiver.url, SECRET, ["invoice.paid", "payment_intent.*"])
    sent = {
        t: fake.emit_event(t, invoice(n))["id"]
        for n, t in enumerate(["invoice.paid", "invoice.finalized", "payment_intent.succeeded"])
    }
    await settled(fake)
    assert receiver.ids() == [sent["invoice.paid"], sent["payment_intent.succeeded"]]
    # Not forwarded is not pending: no endpoint wanted it.
    assert client_for(fake).v1.events.retrieve(sent["invoice.finalized"]).pending_webhooks == 0


async def test_a_slow_receiver_never_holds_up_the_api(fake: FakeStripe, receiver: Receiver) -> None:
    receiver.delay = 1.5
    fake.forward_webhooks(receiver.url, SECRET)
    sent = fake.emit_event("invoice.paid", invoice(5))
    await eventually(lambda: receiver.requests >= 1)
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=fake.api_base) as http:
        answer = await http.get(
            f"/v1/events/{sent['id']}", headers={"Authorization": f"Bearer {fake.secret_key}"}
        )
    assert answer.status_code == 200 and answer.json()["id"] == sent["id"]
    assert time.monotonic() - started < 1.0
    assert fake.webhook_backlog >= 1  # still waiting for the receiver


async def test_stopping_drops_what_is_under_way_and_sends_nothing_new(
    fake: FakeStripe, receiver: Receiver
) -> None:
    before = fake.emit_event("invoice.paid", invoice(6))  # not forwarding yet: never sent
    down = Receiver(port=free_port())
    fake.forward_webhooks(down.url, SECRET)
    fake.emit_event("invoice.paid", invoice(7))
    await eventually(lambda: any(d.status == 0 for d in fake.webhook_deliveries))
    fake.stop_forwarding()
    assert fake.webhook_backlog == 0 and fake.forwarding_to is None
    tried = len(fake.webhook_deliveries)
    fake.emit_event("invoice.paid", invoice(8))
    await asyncio.sleep(RETRY_CAP_SECONDS * 2)
    assert len(fake.webhook_deliveries) == tried
    assert before["id"] not in {d.event_id for d in fake.webhook_deliveries}

    # Forwarding again: new events only, like a new `stripe listen`.
    fake.webhook_duplicate_rate = 0
    fake.forward_webhooks(receiver.url, SECRET)
    after = fake.emit_event("invoice.paid", invoice(9))
    await settled(fake)
    assert receiver.ids() == [after["id"]]


async def test_stop_ends_deliveries_under_way_promptly() -> None:
    fake = FakeStripe(webhook_retry_max_seconds=RETRY_CAP_SECONDS)
    await asyncio.to_thread(fake.start)
    try:
        fake.forward_webhooks(f"http://127.0.0.1:{free_port()}/hook", SECRET)
        fake.emit_event("invoice.paid", invoice(10))
        await eventually(lambda: len(fake.webhook_deliveries) >= 2)
        assert fake.webhook_backlog == 1
    finally:
        started = time.monotonic()
        await asyncio.to_thread(fake.stop)
    assert time.monotonic() - started < 5
    assert not fake.running and fake.forwarding_to is not None  # kept for a restart


async def test_events_are_listed_newest_first_with_stripes_filters(fake: FakeStripe) -> None:
    types = [
        "invoice.created",
        "invoice.finalized",
        "invoice.payment_failed",
        "invoice.paid",
        "payment_intent.succeeded",
    ]
    sent = [fake.emit_event(t, invoice(20 + n))["id"] for n, t in enumerate(types)]
    newest_first = sent[::-1]
    events = client_for(fake).v1.events

    page = events.list({"limit": 5})
    assert [e.id for e in page.data] == newest_first
    assert page.url == "/v1/events" and page.has_more is True  # other tests' events

    paid = events.list({"type": "invoice.paid", "limit": 100})
    assert sent[3] in {e.id for e in paid.data}
    assert {e.type for e in paid.data} == {"invoice.paid"}
    wildcard = events.list({"type": "payment_intent.*", "limit": 100})
    assert sent[4] in {e.id for e in wildcard.data}
    assert all(e.type.startswith("payment_intent.") for e in wildcard.data)
    several = events.list({"types": ["invoice.created", "invoice.finalized"], "limit": 100})
    assert {sent[0], sent[1]} <= {e.id for e in several.data}
    assert {e.type for e in several.data} <= {"invoice.created", "invoice.finalized"}

    created = events.retrieve(sent[0]).created
    recent = events.list({"created": {"gte": created}, "limit": 100})
    assert set(sent) <= {e.id for e in recent.data}
    assert all(e.created >= created for e in recent.data)
    older = events.list({"created": {"lt": created}, "limit": 100})
    assert not set(sent) & {e.id for e in older.data}

    # Cursor pages: forward with starting_after, back with ending_before.
    first = events.list({"limit": 2})
    second = events.list({"limit": 2, "starting_after": first.data[-1].id})
    assert [e.id for e in [*first.data, *second.data]] == newest_first[:4]
    back = events.list({"limit": 2, "ending_before": second.data[0].id})
    assert [e.id for e in back.data] == newest_first[:2] and back.has_more is False
    within = events.list({"type": "invoice.*", "limit": 1, "starting_after": sent[4]})
    assert [e.id for e in within.data] == [sent[3]]  # the cursor needs not match the filter


async def test_an_event_is_retrieved_by_id_and_a_missing_one_is_a_404(
    fake: FakeStripe,
) -> None:
    sent = fake.emit_event("invoice.voided", invoice(30, "void"))
    events = client_for(fake).v1.events
    event = events.retrieve(sent["id"])
    assert event.id == sent["id"] and event.type == "invoice.voided"
    assert event.data.object["status"] == "void"
    assert event.request.id is None  # an automatic event, as Stripe's settle-time events

    with pytest.raises(stripe.InvalidRequestError) as missing:
        events.retrieve("evt_doesnotexist")
    assert missing.value.http_status == 404
    assert missing.value.code == "resource_missing" and missing.value.param == "id"
    assert "evt_doesnotexist" in str(missing.value.user_message)

    with pytest.raises(stripe.InvalidRequestError) as bad_cursor:
        events.list({"starting_after": "evt_doesnotexist"})
    assert bad_cursor.value.code == "resource_missing"
    assert bad_cursor.value.param == "starting_after"


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("colour=red", "colour"),
        ("type=invoice.paid&types[]=invoice.paid", "types"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("created[gte]=soon", "created[gte]"),
    ],
)
async def test_a_bad_listing_is_a_400_naming_the_parameter(
    fake: FakeStripe, query: str, param: str
) -> None:
    async with httpx.AsyncClient(base_url=fake.api_base) as http:
        answer = await http.get(
            f"/v1/events?{query}", headers={"Authorization": f"Bearer {fake.secret_key}"}
        )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param


async def test_an_event_is_a_snapshot_of_its_object(fake: FakeStripe) -> None:
    obj = invoice(40, "open")
    sent = fake.emit_event("invoice.finalized", obj)
    obj["status"] = "paid"  # the emulator goes on changing its objects
    event = client_for(fake).v1.events.retrieve(sent["id"])
    assert event.data.object["status"] == "open"
