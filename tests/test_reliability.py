"""Reliability: the stack under failures, then an exact reconciliation.

A rig of its own, each failing part in a process that can be killed or restarted: a
Temporal dev server on its own port with its state in a SQLite file (so it survives a
restart), ``python -m worker`` as a subprocess, its own mail catcher (which can refuse
mail) and its own fake Stripe (with injected 500s, 429s, dropped connections and
delays beyond the client's timeout). The API runs in this process (tests.conftest's
``start_api``) on a client connected to that server.

After each failure the books must be exact: every usage report counted once (the ledger
holds each reported call once, the workflow's totals equal the ledger's, every repeat is
a duplicate), every notice sent once, one invoice and one charge per period, and the
invoice equal to the closed period and the ledger.

``make soak`` runs the long soak at the end (``OVERTIME_SOAK=1``): many accounts, short
periods, a worker killed and Stripe failing on the way, then the same reconciliation for
every period.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
from sqlmodel import select
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client

from activities.ledger import ledger_totals
from billing.rules import cost_cents
from devstack.fake_stripe import FakeStripe
from devstack.mail_catcher import MailCatcher
from devstack.processes import loopback_dev_server_argv, stop_process
from overtime.db import as_utc, session_scope
from overtime.models import ClosedPeriod, Invoice, Notification, UsageEntry, WebhookDelivery
from overtime.settings import Settings
from overtime.temporal import connect
from tests.conftest import (
    TEMPORAL_CLI,
    Api,
    WebhookReceiver,
    eventually,
    free_port,
    stack_settings,
    start_api,
    stop_api,
    worker_env,
)
from workflows.account import AccountWorkflow
from workflows.types import workflow_id_for

ROOT = Path(__file__).resolve().parent.parent
STARTER_INCLUDED = 6000
STARTER_PRICE = 39
SHORT_PERIOD = 12  # seconds, for the month-end tests (set-up must fit in one)

# --- the rig ------------------------------------------------------------------------------


class TemporalServer:
    """A dev server whose state lives in a file, so it can be stopped and started again."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.db = directory / "temporal.db"
        self.log = directory / "temporal.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            loopback_dev_server_argv(TEMPORAL_CLI, self.port, self.db),
            stdin=subprocess.DEVNULL,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    async def ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                client = await Client.connect(self.address)
                await client.workflow_service.describe_namespace(
                    DescribeNamespaceRequest(namespace="default")
                )
                return
            except Exception:
                if time.monotonic() > deadline or (self.proc and self.proc.poll() is not None):
                    raise RuntimeError(
                        f"Temporal dev server did not come up: {self.log.read_text()[-2000:]}"
                    ) from None
                await asyncio.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 20)
        self.proc = None


@dataclass
class Rig:
    settings: Settings
    temporal: TemporalServer
    mail: MailCatcher
    stripe: FakeStripe
    directory: Path
    client: Client | None = None
    api: Api | None = None  # periods of an hour, grants of 300 s
    month_end: Api | None = None  # periods of SHORT_PERIOD seconds, grants of 7,200 s
    worker: subprocess.Popen[bytes] | None = None
    workers_started: int = 0
    _servers: list[Any] = field(default_factory=list)

    def start_worker(self) -> None:
        assert self.worker is None or self.worker.poll() is not None
        self.workers_started += 1
        log = self.directory / f"worker-{self.workers_started}.log"
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "worker"],
            cwd=ROOT,
            env=worker_env(self.settings),
            stdin=subprocess.DEVNULL,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def kill_worker(self) -> None:
        assert self.worker is not None and self.worker.poll() is None, "worker not running"
        self.worker.send_signal(signal.SIGKILL)  # no goodbye: in-flight tasks are lost
        self.worker.wait(10)

    def stop_worker(self) -> None:
        if self.worker is not None:
            stop_process(self.worker, 20)

    def db(self) -> str:
        return self.settings.resolved_database_url()


@pytest.fixture(scope="module")
def rig_parts(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, webhook_receiver: WebhookReceiver
) -> Iterator[Rig]:
    directory = tmp_path_factory.mktemp("reliability")
    temporal = TemporalServer(directory)
    mail = MailCatcher().start()
    fake = FakeStripe().start()
    settings = stack_settings(
        data_dir=directory,
        database_url=database_url,
        temporal_host="127.0.0.1",
        temporal_port=temporal.port,
        task_queue=f"reliability-{uuid.uuid4().hex[:8]}",
        mail=mail,
        webhook_receiver=webhook_receiver,
        fake_stripe=fake,
    )
    rig = Rig(settings, temporal, mail, fake, directory)
    try:
        yield rig
    finally:
        rig.stop_worker()
        temporal.stop()
        fake.stop()
        mail.stop()


@pytest.fixture(scope="module")
async def rig(rig_parts: Rig) -> AsyncIterator[Rig]:
    rig = rig_parts
    rig.temporal.start()
    await rig.temporal.ready()
    rig.start_worker()
    rig.client = await connect(rig.settings)
    main = await start_api(rig.settings, rig.client)
    short_settings = rig.settings.model_copy(
        update={"period_seconds": SHORT_PERIOD, "grant_chunk_seconds": 7200}
    )
    short = await start_api(short_settings, rig.client)
    rig._servers = [main, short]
    rig.api, rig.month_end = main[2], short[2]
    # Stripe's webhooks reach the product as in production (signed, at least once, some
    # twice, out of order), through every fault below: a Temporal restart answers them
    # 503 and the fake delivers again, as Stripe does.
    rig.stripe.forward_webhooks(
        f"{rig.api.base_url}/v1/stripe/webhook", rig.settings.stripe_webhook_secret
    )

    async def healthy() -> bool:
        assert rig.api is not None
        return (await rig.api.anonymous.get("/healthz")).status_code == 200

    await eventually(healthy, timeout=60)
    try:
        yield rig
    finally:
        rig.stripe.stop_forwarding()
        for server, task, api in rig._servers:
            await stop_api(server, task, api)


# --- traffic as a telephony backend sends it ------------------------------------------------


@dataclass
class Traffic:
    """What the telephony backend reported, and how often it had to try again."""

    reported: dict[str, dict[str, int]] = field(default_factory=dict)  # account → call → s
    retries: int = 0
    refused: int = 0


async def send(client: httpx.AsyncClient, path: str, body: dict[str, Any], traffic: Traffic) -> Any:
    """POST as a telephony backend does: a 503 or a broken connection is tried again.

    Bounded: 60 tries, 0.5 s apart. Repeating is safe by design (reports are idempotent
    by call id; a repeated authorisation at most holds a second grant until the report).
    """
    for _ in range(60):
        try:
            response = await client.post(path, json=body)
        except httpx.TransportError:
            traffic.retries += 1
            await asyncio.sleep(0.5)
            continue
        if response.status_code == 503:
            traffic.retries += 1
            await asyncio.sleep(0.5)
            continue
        assert response.status_code == 200, response.text
        return response.json()
    raise AssertionError(f"{path} never answered")


async def call(api: Api, traffic: Traffic, account: str, call_id: str, seconds: int) -> int:
    """One call: ask (and ask again) until ``seconds`` are granted or refused, then report."""
    granted = 0
    while granted < seconds:
        answer = await send(
            api.telephony,
            "/v1/calls/authorize",
            {"account_id": account, "call_id": call_id},
            traffic,
        )
        if not answer["allowed"]:
            traffic.refused += 1
            break
        granted += answer["granted_seconds"]
    talked = min(seconds, granted)
    if granted:
        answer = await send(
            api.telephony,
            "/v1/calls/usage",
            {"account_id": account, "call_id": call_id, "seconds": talked},
            traffic,
        )
        assert answer["recorded"] is True
        traffic.reported.setdefault(account, {})[call_id] = talked
    return talked


# The day of an account with 10 extra minutes (600 s): 20 calls of 300 s use the 6,000
# included seconds, then 300 s (50 %), 250 s (91.7 %: the warning), a call that is cut
# after the 50 s left (100 %: the stop), and one that is refused.
LIMIT_DAY = [300] * 20 + [300, 250, 300, 120]
LIMIT_DAY_TALKED = [300] * 20 + [300, 250, 50, 0]


async def limited_accounts(rig: Rig, count: int) -> list[str]:
    assert rig.api is not None
    accounts = []
    for _ in range(count):
        account = await rig.api.create_account(locale="en")
        response = await rig.api.enable(account, limit_minutes=10)
        assert response.status_code == 200, response.text
        accounts.append(account)
    return accounts


async def limit_day(rig: Rig, traffic: Traffic, account: str, pause: float = 0.05) -> list[int]:
    assert rig.api is not None
    talked = []
    for i, seconds in enumerate(LIMIT_DAY):
        talked.append(await call(rig.api, traffic, account, f"{account}-c{i}", seconds))
        await asyncio.sleep(pause)
    return talked


# --- the reconciliation ------------------------------------------------------------------


def ledger_rows(rig: Rig, account: str) -> list[UsageEntry]:
    with session_scope(rig.db()) as session:
        return list(session.exec(select(UsageEntry).where(UsageEntry.account_id == account)))


async def snapshot(rig: Rig, account: str) -> Any:
    assert rig.client is not None
    handle = rig.client.get_workflow_handle(workflow_id_for(account))
    return await handle.query(AccountWorkflow.snapshot)


async def assert_usage_counted_once(rig: Rig, traffic: Traffic, account: str) -> None:
    """Ledger = reports = workflow state, and every report repeated is a duplicate."""
    assert rig.api is not None
    reported = traffic.reported[account]

    def ledger_complete() -> list[UsageEntry] | None:
        rows = ledger_rows(rig, account)
        return rows if len(rows) >= len(reported) else None

    rows = await eventually(ledger_complete, timeout=60)
    assert sorted(r.call_id for r in rows) == sorted(reported), "ledger ≠ reports"
    for row in rows:
        assert row.reported_seconds == reported[row.call_id], row
        assert row.excess_seconds == 0, row
        assert row.billed_included_seconds + row.billed_extra_seconds == row.reported_seconds

    state = await snapshot(rig, account)
    assert state.used_seconds == sum(reported.values())
    assert state.calls_recorded == len(reported)
    assert state.excess_seconds == 0
    assert state.reserved_seconds == 0
    with session_scope(rig.db()) as session:
        assert ledger_totals(session, account, state.period_start) == (
            state.used_seconds - state.extra_seconds,
            state.extra_seconds,
            state.calls_recorded,
        )
    assert state.extra_cost_cents == cost_cents(state.extra_seconds, STARTER_PRICE)

    # The telephony backend repeats every report (say, after losing the answers).
    for call_id, seconds in reported.items():
        again = await rig.api.usage(account, call_id, seconds)
        assert again == {"recorded": True, "duplicate": True}, call_id
    after = await snapshot(rig, account)
    assert (after.used_seconds, after.calls_recorded) == (state.used_seconds, len(reported))
    assert len(ledger_rows(rig, account)) == len(reported)


async def assert_notices_once(rig: Rig, account: str, kinds: dict[str, int]) -> None:
    """Each notice recorded once and emailed once (one message, one Message-ID)."""
    email = f"{account}@example.com"

    def delivered() -> bool:
        return all(len(rig.mail.with_notice(email, kind)) >= n for kind, n in kinds.items())

    await eventually(delivered, timeout=60)
    await asyncio.sleep(1.0)  # room for a duplicate to show up, were there one
    with session_scope(rig.db()) as session:
        rows = list(session.exec(select(Notification).where(Notification.account_id == account)))
    recorded = {kind: sum(1 for r in rows if r.kind == kind) for kind in kinds}
    assert recorded == kinds, [(r.kind, r.notice_key) for r in rows]
    for kind, n in kinds.items():
        messages = rig.mail.with_notice(email, kind)
        assert len({m.header("Message-ID") for m in messages}) == n, kind
        assert len(messages) == n, f"{kind} emailed {len(messages)} times"
    # Besides the confirmations every account gets on the way (payment method, switched on).
    confirmations = {"payment_method_changed", "extra_minutes_enabled"}
    sent = {m.header("X-Overtime-Notice") for m in rig.mail.to(email)}
    unexpected = sent - set(kinds) - confirmations
    assert not unexpected, unexpected


def assert_stop_webhook_once(rig: Rig, account: str) -> None:
    with session_scope(rig.db()) as session:
        rows = list(
            session.exec(select(WebhookDelivery).where(WebhookDelivery.account_id == account))
        )
    assert [r.event for r in rows] == ["service.stopped"], [(r.event, r.reason) for r in rows]


async def assert_limit_day_exact(rig: Rig, traffic: Traffic, account: str) -> None:
    assert list(traffic.reported[account].values()) == [t for t in LIMIT_DAY_TALKED if t]
    await assert_usage_counted_once(rig, traffic, account)
    state = await snapshot(rig, account)
    assert (state.extra_seconds, state.extra_allowed_seconds) == (600, 600)
    assert state.extra_cost_cents == cost_cents(600, STARTER_PRICE) == 390
    assert state.stop_reason == "limit_reached"
    await assert_notices_once(rig, account, {"limit_warning": 1, "limit_reached": 1})
    await eventually(lambda: assert_stop_webhook_once(rig, account) or True, timeout=30)


# --- failures during traffic ------------------------------------------------------------


async def test_temporal_server_restarted_during_traffic(rig: Rig) -> None:
    accounts = await limited_accounts(rig, 3)
    traffic = Traffic()
    running = [asyncio.create_task(limit_day(rig, traffic, a, pause=0.1)) for a in accounts]
    await asyncio.sleep(1.0)
    assert not any(task.done() for task in running), "traffic ended before the restart"
    rig.temporal.stop()  # mid-traffic: requests in flight fail or wait
    await asyncio.sleep(2.0)
    rig.temporal.start()
    await rig.temporal.ready()
    talked = await asyncio.wait_for(asyncio.gather(*running), timeout=120)

    assert talked == [LIMIT_DAY_TALKED] * len(accounts)
    for account in accounts:
        await assert_limit_day_exact(rig, traffic, account)
    assert rig.worker is not None and rig.worker.poll() is None, "the worker died with Temporal"


async def test_worker_killed_during_traffic(rig: Rig) -> None:
    accounts = await limited_accounts(rig, 3)
    traffic = Traffic()
    running = [asyncio.create_task(limit_day(rig, traffic, a, pause=0.1)) for a in accounts]
    await asyncio.sleep(1.0)
    assert not any(task.done() for task in running), "traffic ended before the kill"
    rig.kill_worker()
    await asyncio.sleep(1.0)
    rig.start_worker()
    talked = await asyncio.wait_for(asyncio.gather(*running), timeout=120)

    assert talked == [LIMIT_DAY_TALKED] * len(accounts)
    for account in accounts:
        await assert_limit_day_exact(rig, traffic, account)


async def test_smtp_down_for_a_while(rig: Rig) -> None:
    accounts = await limited_accounts(rig, 2)
    traffic = Traffic()
    rig.mail.set_refusing(True)
    try:
        talked = await asyncio.gather(*(limit_day(rig, traffic, a, pause=0) for a in accounts))
        assert talked == [LIMIT_DAY_TALKED] * len(accounts)
        await asyncio.sleep(4.0)  # the notices are due, the mail server says 451 to each
        for account in accounts:
            # (The confirmations of switching on went out before the outage.)
            limit_mail = [
                m
                for m in rig.mail.to(f"{account}@example.com")
                if m.header("X-Overtime-Notice") in ("limit_warning", "limit_reached")
            ]
            assert limit_mail == []
            with session_scope(rig.db()) as session:
                assert not session.exec(
                    select(Notification).where(
                        Notification.account_id == account,
                        Notification.kind.in_(("limit_warning", "limit_reached")),  # type: ignore[attr-defined]
                    )
                ).all()
            # Calls are refused at the limit all the same: the stop does not wait for mail.
            state = await snapshot(rig, account)
            assert (state.accepting_calls, state.stop_reason) == (False, "limit_reached")
    finally:
        rig.mail.set_refusing(False)
    for account in accounts:
        await assert_limit_day_exact(rig, traffic, account)


# --- month end: Stripe failing, the worker killed ------------------------------------------


async def invoiced_accounts(rig: Rig, extras: list[int]) -> tuple[list[str], Traffic]:
    """Accounts that use their included minutes and ``extra`` seconds in one short period."""
    api = rig.month_end
    assert api is not None
    traffic = Traffic()

    async def one(extra: int) -> str:
        account = await api.create_account(locale="en")
        assert (await api.enable(account, limit_minutes=30)).status_code == 200
        assert await call(api, traffic, account, "month", STARTER_INCLUDED + extra) == (
            STARTER_INCLUDED + extra
        )
        return account

    accounts = list(await asyncio.gather(*(one(extra) for extra in extras)))
    for account, extra in zip(accounts, extras, strict=True):
        state = await snapshot(rig, account)
        assert state.extra_seconds == extra, "the period ended during set-up"
    return accounts, traffic


def stripe_invoices(rig: Rig, account: str) -> list[Any]:
    """Every invoice of the account at Stripe, by metadata search. Like Stripe's, the
    fake's search shows an invoice only ``search_visibility_delay`` after its creation:
    waiting that out first makes every invoice written so far visible."""
    time.sleep(rig.stripe.search_visibility_delay + 0.2)
    client = stripe.StripeClient(rig.stripe.secret_key, base_addresses={"api": rig.stripe.api_base})
    found = client.v1.invoices.search(
        params={"query": f"metadata['account_id']:'{account}'", "limit": 100}
    )
    # Every page: an account of the soak has more invoices than one page of 10.
    return [
        client.v1.invoices.retrieve(i.id, params={"expand": ["payments"]})
        for i in found.auto_paging_iter()
    ]


async def assert_one_invoice_one_charge(rig: Rig, account: str, extra: int) -> None:
    """closed period = ledger = invoice row = Stripe invoice, paid by exactly one charge."""

    def paid() -> Invoice | None:
        with session_scope(rig.db()) as session:
            rows = list(session.exec(select(Invoice).where(Invoice.account_id == account)))
        assert len(rows) <= 1, rows
        return rows[0] if rows and rows[0].status == "paid" else None

    invoice = await eventually(paid, timeout=150, interval=0.5)
    with session_scope(rig.db()) as session:
        closed = session.exec(select(ClosedPeriod).where(ClosedPeriod.account_id == account)).all()
        # Short periods keep closing; the invoiced one is the first, the rest are empty.
        [period] = [p for p in closed if as_utc(p.period_start) == as_utc(invoice.period_start)]
        assert all(p.calls_recorded == p.extra_used_seconds == 0 for p in closed if p is not period)
        ledger = ledger_totals(session, account, period.period_start)
    assert ledger == (STARTER_INCLUDED, extra, 1)
    assert (period.included_used_seconds, period.extra_used_seconds, period.calls_recorded) == (
        ledger
    )
    amount = cost_cents(extra, STARTER_PRICE)
    assert period.extra_cost_cents == invoice.amount_cents == amount
    assert invoice.extra_seconds == extra
    assert as_utc(invoice.period_start) == as_utc(period.period_start)

    in_stripe = await asyncio.to_thread(stripe_invoices, rig, account)
    assert [i.id for i in in_stripe] == [invoice.stripe_invoice_id]
    only = in_stripe[0]
    assert only.status == "paid"
    # The catalog's prices are net: Stripe adds the VAT and charges the total once.
    assert (only.subtotal, only.amount_paid) == (amount, only.total)
    assert only.total == amount + invoice.tax_cents and invoice.tax_cents > 0
    assert len(only.lines.data) == 1
    charges = [p for p in only.payments.data if p.status == "paid"]
    assert len(charges) == 1, only.payments
    pays = [
        r
        for r in rig.stripe.request_log
        if r.path == f"/v1/invoices/{only.id}/pay" and r.status == 200 and not r.replayed
    ]
    assert len(pays) <= 1, pays  # a second charge attempt would be a second 200
    email = f"{account}@example.com"
    await eventually(lambda: len(rig.mail.with_notice(email, "invoice")) >= 1, timeout=30)
    await asyncio.sleep(0.5)
    assert len(rig.mail.with_notice(email, "invoice")) == 1


async def test_stripe_500_429_drops_and_timeouts_at_month_end(rig: Rig) -> None:
    extras = [61, 125, 333]
    accounts, _ = await invoiced_accounts(rig, extras)
    stripe_fake = rig.stripe
    stripe_fake.clear_request_log()
    # Queued in this order; each request takes the first fault that matches it.
    stripe_fake.inject_faults(status=500, count=2, path_prefix="/v1/invoices", method="POST")
    stripe_fake.inject_faults(status=0, count=1, path_prefix="/v1/invoices/search")
    stripe_fake.inject_faults(
        status=500, count=2, path_prefix="/v1/invoiceitems", after_forward=True
    )
    stripe_fake.inject_faults(status=429, count=3, path_prefix="/v1/invoices/", method="POST")
    # Held past the client's 30 s timeout: the SDK gives up and tries again with the same
    # idempotency key, and the held request still reaches Stripe afterwards.
    stripe_fake.inject_delay(31.0, count=1, path_prefix="/v1/invoices/", method="POST")
    try:
        for account, extra in zip(accounts, extras, strict=True):
            await assert_one_invoice_one_charge(rig, account, extra)
    finally:
        stripe_fake.clear_faults()
    injected = [r for r in stripe_fake.request_log if r.injected]
    assert len(injected) >= 8, injected  # the faults did happen
    assert any(r.replayed for r in stripe_fake.request_log), "no idempotent replay seen"


@pytest.mark.slow
async def test_worker_killed_during_month_end_close(rig: Rig) -> None:
    """SIGKILL while an invoice is half made at Stripe (its item request held and then
    executed after the worker died). The activity is retried once its 60 s
    start-to-close timeout passes, on a new worker: still one invoice, one line, one
    charge."""
    extras = [90, 180]
    accounts, _ = await invoiced_accounts(rig, extras)
    stripe_fake = rig.stripe
    stripe_fake.clear_request_log()
    stripe_fake.inject_delay(2.0, count=1, path_prefix="/v1/invoiceitems")

    def invoice_created() -> bool:
        return any(
            r.method == "POST" and r.path == "/v1/invoices" and r.status == 200
            for r in stripe_fake.request_log
        )

    await eventually(invoice_created, timeout=SHORT_PERIOD * 4, interval=0.05)
    await asyncio.sleep(0.5)  # the item request is being held now
    rig.kill_worker()
    rig.start_worker()
    try:
        for account, extra in zip(accounts, extras, strict=True):
            await assert_one_invoice_one_charge(rig, account, extra)
    finally:
        stripe_fake.clear_faults()


# --- the soak -------------------------------------------------------------------------------


SOAK = os.environ.get("OVERTIME_SOAK") == "1"


@pytest.mark.slow
@pytest.mark.skipif(not SOAK, reason="the long soak runs with `make soak` (OVERTIME_SOAK=1)")
async def test_soak_a_simulated_month_reconciles_exactly(rig: Rig) -> None:
    """Many accounts, short periods, random traffic; a worker killed and Stripe failing
    on the way; then every period of every account must reconcile exactly."""
    api = rig.month_end
    assert api is not None
    seconds = float(os.environ.get("OVERTIME_SOAK_SECONDS", "240"))
    rng = random.Random(int(os.environ.get("OVERTIME_SOAK_SEED", "7")))
    traffic = Traffic()
    accounts = []
    for i in range(int(os.environ.get("OVERTIME_SOAK_ACCOUNTS", "24"))):
        account = await api.create_account(locale=rng.choice(["de", "en"]))
        limit = rng.choice([5, 30, 200])
        assert (await api.enable(account, limit_minutes=limit)).status_code == 200
        accounts.append(account)
        del i
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + seconds

    async def account_traffic(account: str) -> None:
        n = 0
        while loop.time() < stop_at:
            length = min(9000, max(1, int(rng.expovariate(1 / 900))))
            await call(api, traffic, account, f"{account}-s{n}", length)
            n += 1
            await asyncio.sleep(rng.uniform(0.05, 0.6))

    async def trouble() -> None:
        await asyncio.sleep(seconds / 3)
        rig.kill_worker()
        await asyncio.sleep(1.0)
        rig.start_worker()
        await asyncio.sleep(seconds / 6)
        rig.stripe.inject_faults(status=500, count=3, path_prefix="/v1/invoices", method="POST")
        rig.stripe.inject_faults(status=429, count=3, path_prefix="/v1/invoices/")

    await asyncio.gather(trouble(), *(account_traffic(a) for a in accounts))
    await asyncio.sleep(SHORT_PERIOD * 2 + 5)  # the last periods close

    closed_total = invoiced = 0
    for account in accounts:
        reported = traffic.reported.get(account, {})

        def ledger_complete(account: str = account, n: int = len(reported)) -> bool:
            return len(ledger_rows(rig, account)) >= n

        await eventually(ledger_complete, timeout=90)
        rows = ledger_rows(rig, account)
        assert sorted(r.call_id for r in rows) == sorted(reported)
        assert all(r.reported_seconds == reported[r.call_id] for r in rows)
        with session_scope(rig.db()) as session:
            periods = session.exec(
                select(ClosedPeriod).where(ClosedPeriod.account_id == account)
            ).all()
            for period in periods:
                ledger = ledger_totals(session, account, period.period_start)
                assert ledger == (
                    period.included_used_seconds,
                    period.extra_used_seconds,
                    period.calls_recorded,
                ), (account, period.period_start)
                assert period.extra_cost_cents == cost_cents(
                    period.extra_used_seconds, STARTER_PRICE
                )
                if period.limit_cents is not None:
                    assert period.extra_cost_cents <= period.limit_cents
            notices = session.exec(
                select(Notification).where(Notification.account_id == account)
            ).all()
        keys = [(as_utc(n.period_start), n.notice_key) for n in notices]
        assert len(keys) == len(set(keys)), "a notice recorded twice"
        closed_total += len(periods)
        for period in periods:
            if period.extra_used_seconds == 0:
                continue

            def paid(account: str = account, start: datetime = period.period_start) -> bool:
                with session_scope(rig.db()) as session:
                    row = session.exec(
                        select(Invoice).where(
                            Invoice.account_id == account, Invoice.period_start == start
                        )
                    ).one_or_none()
                return row is not None and row.status == "paid"

            await eventually(paid, timeout=150, interval=0.5)
            with session_scope(rig.db()) as session:
                invoice = session.exec(
                    select(Invoice).where(
                        Invoice.account_id == account,
                        Invoice.period_start == period.period_start,
                    )
                ).one()
            assert invoice.amount_cents == period.extra_cost_cents
            invoiced += 1
        in_stripe = await asyncio.to_thread(stripe_invoices, rig, account)
        with session_scope(rig.db()) as session:
            ours = session.exec(select(Invoice).where(Invoice.account_id == account)).all()
        assert sorted(i.id for i in in_stripe) == sorted(i.stripe_invoice_id for i in ours)
        for invoice in in_stripe:
            assert invoice.amount_paid == invoice.amount_due
            assert len([p for p in invoice.payments.data if p.status == "paid"]) == 1
    calls = sum(len(r) for r in traffic.reported.values())
    print(
        f"\nsoak: {len(accounts)} accounts, {calls} calls reported, {closed_total} periods "
        f"closed, {invoiced} invoices paid once each, {traffic.refused} refusals at limits, "
        f"{traffic.retries} requests repeated by the client"
    )
    assert closed_total >= len(accounts) * int(seconds // SHORT_PERIOD) // 2
    assert invoiced >= len(accounts), "too little extra usage to prove invoicing"
