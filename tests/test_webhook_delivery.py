"""Stripe webhooks during a Temporal outage: 503 and nothing recorded, so Stripe retries.

The event id is recorded only once the signal reached the invoice's workflow; a
redelivery after recovery is handled once, and a second delivery of one event is never
a second signal (Temporal deduplicates the signal's request id). Signature timestamps
are checked both ways.

The outage is real: the API's Temporal connection runs through a TCP relay that the test
cuts (connection refused from then on), or points at a port where nothing listens. The
session's dev server keeps running for everyone else. The invoice's workflow is a
workflow execution on a task queue no worker polls: the signal lands in its history,
where the test counts it.

The last tests take what the fake Stripe itself sends (tests/conftest.py forwards its
events to the session's API, like ``stripe listen --forward-to``): its own signed
deliveries, every event twice, reach the product once; and a real period invoice paid by
SEPA debit is known from its ``invoice.paid`` webhook, long before any re-read is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import stripe
from sqlmodel import select
from temporalio.client import Client, WorkflowHandle

from billing.rules import period_key
from devstack.fake_stripe import FakeStripe
from overtime import webhooks
from overtime.db import session_scope
from overtime.models import Invoice, StripeEvent
from overtime.observability import free_port
from overtime.settings import Settings
from overtime.temporal import data_converter_for
from starter.payments import STRIPE_EVENT_SIGNAL
from tests.conftest import (
    SHORT_PERIOD_SECONDS,
    STRIPE_WEBHOOK_SECRET,
    Api,
    eventually,
    start_api,
    stop_api,
)
from tests.test_invoicing import account_with_extra_minutes, invoice_with_status
from workflows.types import PaymentEvent, invoice_workflow_id

WEBHOOK = "/v1/stripe/webhook"


def signed(event: dict[str, Any], timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(event).encode()
    ts = int(time.time()) if timestamp is None else timestamp
    signature = stripe.WebhookSignature._compute_signature(
        f"{ts}.{body.decode()}", STRIPE_WEBHOOK_SECRET
    )
    return body, {"Stripe-Signature": f"t={ts},v1={signature}"}


def paid_event(stripe_invoice_id: str) -> dict[str, Any]:
    return {
        "id": f"evt_{uuid.uuid4().hex[:20]}",
        "object": "event",
        "type": "invoice.paid",
        "data": {"object": {"id": stripe_invoice_id, "object": "invoice"}},
    }


class Target:
    """An invoice row and a running workflow under the invoice workflow's id."""

    def __init__(self, settings: Settings, client: Client, account_id: str) -> None:
        self.settings, self.client, self.account_id = settings, client, account_id
        self.stripe_invoice_id = f"in_test_{uuid.uuid4().hex[:16]}"
        self.period_start = datetime.now(UTC).replace(microsecond=0)
        self.workflow_id = invoice_workflow_id(account_id, period_key(self.period_start))
        self.handle: WorkflowHandle[Any, Any] | None = None

    async def start(self) -> Target:
        now = datetime.now(UTC)
        with session_scope(self.settings.resolved_database_url()) as session:
            session.add(
                Invoice(
                    account_id=self.account_id,
                    period_start=self.period_start,
                    period_end=self.period_start + timedelta(hours=1),
                    extra_seconds=60,
                    unit_price_cents=39,
                    amount_cents=39,
                    status="open",
                    stripe_invoice_id=self.stripe_invoice_id,
                    created_at=now,
                    updated_at=now,
                )
            )
            session.commit()
        self.handle = await self.client.start_workflow(
            "InvoiceStandIn", id=self.workflow_id, task_queue=f"nobody-{uuid.uuid4().hex[:8]}"
        )
        return self

    async def signals(self) -> int:
        assert self.handle is not None
        history = await self.handle.fetch_history()
        return sum(
            1
            for e in history.events
            if e.HasField("workflow_execution_signaled_event_attributes")
            and e.workflow_execution_signaled_event_attributes.signal_name == STRIPE_EVENT_SIGNAL
        )

    async def signalled_events(self) -> list[PaymentEvent]:
        """The signals' inputs, decoded as the invoice workflow's worker decodes them."""
        assert self.handle is not None
        history = await self.handle.fetch_history()
        found = []
        for e in history.events:
            if e.HasField("workflow_execution_signaled_event_attributes"):
                payloads = e.workflow_execution_signaled_event_attributes.input.payloads
                found += await self.client.data_converter.decode(payloads, [PaymentEvent])
        return found

    async def finish(self) -> None:
        assert self.handle is not None
        with contextlib.suppress(Exception):
            await self.handle.terminate("test over")


def recorded(settings: Settings, event_id: str) -> bool:
    with session_scope(settings.resolved_database_url()) as session:
        return (
            session.exec(select(StripeEvent).where(StripeEvent.event_id == event_id)).first()
            is not None
        )


@pytest.fixture
async def target(api: Api, temporal_client: Client) -> AsyncIterator[Target]:
    account = await api.create_account()
    found = await Target(api.settings, temporal_client, account).start()
    try:
        yield found
    finally:
        await found.finish()


class Relay:
    """A TCP relay to the Temporal frontend that can be cut like a failed network."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.server: asyncio.Server | None = None
        self.transports: list[asyncio.BaseTransport] = []
        self.address = ""

    async def start(self) -> Relay:
        self.server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.address = f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        except OSError:
            writer.transport.abort()
            return
        self.transports += [writer.transport, up_writer.transport]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65_536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        assert self.server is not None
        self.server.close()  # new connections are refused from now on
        for transport in self.transports:
            transport.abort()


@contextlib.asynccontextmanager
async def api_with(settings: Settings, client: Client) -> AsyncIterator[Api]:
    server, task, outage_api = await start_api(settings, client)
    try:
        yield outage_api
    finally:
        await stop_api(server, task, outage_api)


async def test_outage_answers_503_and_redelivery_is_handled_once(
    api: Api, settings: Settings, temporal_client: Client, target: Target
) -> None:
    quick = settings.model_copy(update={"stripe_webhook_signal_timeout_seconds": 1.0})
    host, port = temporal_client.service_client.config.target_host.split(":")
    relay = await Relay(host, int(port)).start()
    relayed = await Client.connect(
        relay.address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter_for(settings),
    )
    event = paid_event(target.stripe_invoice_id)
    body, headers = signed(event)
    async with api_with(quick, relayed) as outage_api:
        # Healthy first: the relay carries the API's Temporal traffic.
        assert (await outage_api.anonymous.get("/healthz")).json()["temporal"] is True
        relay.cut()
        started = time.monotonic()
        answer = await outage_api.anonymous.post(WEBHOOK, content=body, headers=headers)
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"] == "unavailable"
        assert int(answer.headers["Retry-After"]) >= 1
        assert time.monotonic() - started < 5, "the webhook waited too long for Temporal"
    assert not recorded(settings, event["id"]), "an undelivered event was marked seen"
    assert await target.signals() == 0

    # Never connected at all: the same answer.
    dead = await Client.connect(
        f"127.0.0.1:{free_port()}",
        namespace=settings.temporal_namespace,
        data_converter=data_converter_for(settings),
        lazy=True,
    )
    async with api_with(quick, dead) as unconnected_api:
        answer = await unconnected_api.anonymous.post(WEBHOOK, content=body, headers=headers)
        assert answer.status_code == 503, answer.text
    assert not recorded(settings, event["id"])

    # Stripe redelivers (freshly signed, as it does) to a healthy API: handled once.
    body, headers = signed(event)
    first = await api.anonymous.post(WEBHOOK, content=body, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json() == {"received": True, "handled": True}
    again = await api.anonymous.post(WEBHOOK, content=body, headers=headers)
    assert again.json() == {"received": True, "duplicate": True}
    assert recorded(settings, event["id"])
    assert await target.signals() == 1
    # Encrypted like any payload, and what the invoice workflow's handler takes.
    assert await target.signalled_events() == [PaymentEvent(event_id=event["id"], status="paid")]


async def test_one_signal_per_event_however_it_is_delivered(
    api: Api, settings: Settings, temporal_client: Client, target: Target
) -> None:
    event = paid_event(target.stripe_invoice_id)
    body, headers = signed(event)
    async with api_with(settings, temporal_client) as second_api:
        answers = await asyncio.gather(
            *(
                client.post(WEBHOOK, content=body, headers=headers)
                for _ in range(4)
                for client in (api.anonymous, second_api.anonymous)
            )
        )
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert sum(1 for a in answers if a.json().get("handled") is True) == 1
    assert await target.signals() == 1

    # Signalled, but the answer (and the record) lost: the retry signals the same
    # request id, which Temporal drops, and records the event.
    with session_scope(settings.resolved_database_url()) as session:
        row = session.get(StripeEvent, event["id"])
        assert row is not None
        session.delete(row)
        session.commit()
    retried = await api.anonymous.post(WEBHOOK, content=body, headers=headers)
    assert retried.json() == {"received": True, "handled": True}
    assert await target.signals() == 1

    # Another event is another signal.
    other = paid_event(target.stripe_invoice_id)
    body, headers = signed(other)
    assert (await api.anonymous.post(WEBHOOK, content=body, headers=headers)).json()["handled"]
    assert await target.signals() == 2


async def test_finished_workflow_is_handled_false_and_recorded(
    api: Api, settings: Settings, target: Target
) -> None:
    await target.finish()
    event = paid_event(target.stripe_invoice_id)
    body, headers = signed(event)
    answer = await api.anonymous.post(WEBHOOK, content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"received": True, "handled": False}
    assert recorded(settings, event["id"])


@pytest.mark.parametrize(
    ("offset", "status"),
    # Refused offsets keep a margin past the 300 s tolerance: the server reads its clock a
    # moment after the header was dated, and on a loaded machine that moment is seconds.
    [(0, 200), (60, 200), (-60, 200), (330, 400), (3600, 400), (10**8, 400), (-3600, 400)],
)
async def test_signature_timestamps_are_checked_both_ways(
    api: Api, settings: Settings, offset: int, status: int
) -> None:
    # An event for no invoice of ours: accepted (200) or refused (400) on the signature.
    event = paid_event(f"in_unknown_{uuid.uuid4().hex[:8]}")
    body, headers = signed(event, int(time.time()) + offset)
    answer = await api.anonymous.post(WEBHOOK, content=body, headers=headers)
    assert answer.status_code == status, answer.text
    if status == 400:
        assert answer.json()["error"] == "invalid_signature"
        assert not recorded(settings, event["id"])


async def test_two_timestamps_in_one_header_are_refused(api: Api) -> None:
    event = paid_event("in_whatever")
    body, headers = signed(event)
    future = int(time.time()) + 10**6
    headers["Stripe-Signature"] = headers["Stripe-Signature"] + f",t={future}"
    answer = await api.anonymous.post(WEBHOOK, content=body, headers=headers)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_signature"


def test_our_own_webhook_signatures_are_checked_both_ways() -> None:
    """overtime/webhooks.py, what the telephony backend's receiver runs (or mirrors)."""
    body, secret, now = b'{"id":"evt_1"}', "s3cret", 1_800_000_000
    header = webhooks.sign(body, secret, timestamp=now)
    webhooks.verify_signature(body, header, secret, now=now)
    webhooks.verify_signature(body, header, secret, now=now + 299)
    webhooks.verify_signature(body, header, secret, now=now - 299)
    for moment in (now + 301, now - 301):  # too old, and from too far in the future
        with pytest.raises(webhooks.SignatureError, match="tolerance"):
            webhooks.verify_signature(body, header, secret, now=moment)
    # A second signature (secret rotation): one matching v1 is enough.
    rotated = f"{header},v1={'0' * 64}"
    webhooks.verify_signature(body, rotated, secret, now=now)
    for bad in (
        f"{header},t={now + 10**6}",  # two timestamps: which one was signed?
        header.replace(f"t={now}", f"t=+{now}"),
        "t=1",
        "garbage",
        "",
    ):
        with pytest.raises(webhooks.SignatureError):
            webhooks.verify_signature(body, bad, secret, now=now)
    with pytest.raises(webhooks.SignatureError, match="mismatch"):
        webhooks.verify_signature(body + b" ", header, secret, now=now)


# --- the fake Stripe's own webhooks (tests/conftest.py forwards them to ``api``) -------------


def webhook_answers(fake: FakeStripe, event_id: str) -> list[dict[str, Any]]:
    """What the product answered to each accepted delivery of one event."""
    return [
        json.loads(d.answer or "{}")
        for d in fake.webhook_deliveries
        if d.event_id == event_id and d.ok
    ]


async def both_answers(fake: FakeStripe, event_id: str) -> list[dict[str, Any]]:
    """The product's answers to an event's two deliveries, once both were accepted."""

    def check() -> list[dict[str, Any]]:
        found = webhook_answers(fake, event_id)
        assert len(found) == 2, f"accepted deliveries so far: {found}"
        return found

    return await eventually(check, timeout=30)


@contextlib.contextmanager
def every_event_twice(fake: FakeStripe) -> Iterator[None]:
    """Stripe sometimes delivers an event twice; here it always does."""
    previous = fake.webhook_duplicate_rate
    fake.webhook_duplicate_rate = 1.0
    try:
        yield
    finally:
        fake.webhook_duplicate_rate = previous


@contextlib.contextmanager
def forwarding_only(fake: FakeStripe, api: Api, *types: str) -> Iterator[None]:
    """``stripe listen --events ...`` for a while, then every event again (as conftest)."""
    url, secret = f"{api.base_url}{WEBHOOK}", api.settings.stripe_webhook_secret
    fake.forward_webhooks(url, secret, list(types))
    try:
        yield
    finally:
        fake.forward_webhooks(url, secret)


async def test_the_fakes_own_webhook_is_handled_once_and_its_duplicate_is_a_duplicate(
    api: Api, settings: Settings, fake_stripe: FakeStripe, target: Target
) -> None:
    assert fake_stripe.forwarding_to == f"{api.base_url}{WEBHOOK}"
    with every_event_twice(fake_stripe):
        # Made by the test (no payment of the emulation behind it), delivered by the fake.
        event = fake_stripe.emit_event(
            "invoice.paid", {"id": target.stripe_invoice_id, "object": "invoice"}
        )
        answers = await both_answers(fake_stripe, event["id"])
    assert sorted(answers, key=json.dumps) == [
        {"duplicate": True, "received": True},
        {"handled": True, "received": True},
    ]
    assert recorded(settings, event["id"])
    assert await target.signals() == 1
    assert await target.signalled_events() == [PaymentEvent(event_id=event["id"], status="paid")]


def stripe_event_types(settings: Settings, event_ids: set[str]) -> dict[str, str]:
    with session_scope(settings.resolved_database_url()) as session:
        rows = session.exec(select(StripeEvent).where(StripeEvent.event_id.in_(event_ids)))  # type: ignore[attr-defined]
        return {row.event_id: row.type for row in rows}


async def test_a_period_invoice_paid_by_debit_reaches_the_product_by_its_invoice_paid_webhook(
    patient_api: Api, api: Api, settings: Settings, fake_stripe: FakeStripe
) -> None:
    # invoice.paid alone: at settle time invoice_payment.paid and invoice.payment_succeeded
    # say the same, and whichever arrives first ends the invoice's workflow, after which
    # the others are (rightly) handled false. Here the product's news is invoice.paid.
    with every_event_twice(fake_stripe), forwarding_only(fake_stripe, api, "invoice.paid"):
        account = await account_with_extra_minutes(patient_api, "pm_success_de", 60)
        # Charged by the product at period end: the debit is on its way, the invoice open.
        row = await invoice_with_status(patient_api, account, "processing", "paid")
        stripe_invoice_id = row["stripe_invoice_id"]

        def paid_events() -> list[dict[str, Any]]:
            return [
                e
                for e in fake_stripe.events
                if e["type"] == "invoice.paid" and e["data"]["object"]["id"] == stripe_invoice_id
            ]

        # Stripe settles the debit on its own and announces it: nobody asked.
        [event] = await eventually(paid_events, timeout=SHORT_PERIOD_SECONDS + 30)
        answers = await both_answers(fake_stripe, event["id"])
    assert event["data"]["object"]["status"] == "paid"
    assert event["api_version"] == stripe.api_version
    assert sorted(answers, key=json.dumps) == [
        {"duplicate": True, "received": True},
        {"handled": True, "received": True},
    ]
    assert stripe_event_types(settings, {event["id"]}) == {event["id"]: "invoice.paid"}
    # The workflow re-read the invoice on that news, long before any reconcile was due.
    settled = await invoice_with_status(patient_api, account, "paid")
    assert settled["stripe_invoice_id"] == stripe_invoice_id
