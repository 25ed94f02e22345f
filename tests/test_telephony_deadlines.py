"""Every telephony answer within the telephony timeout, and nothing half-recorded.

The API of this module answers telephony requests within 1 s (``telephony_timeout_seconds``,
the production default) and admin calls within 3 s (``dispatch_deadline_seconds``). With
the worker stopped, or Temporal itself (a dev server of this module's own), requests are
answered 503 ``unavailable`` with ``Retry-After``; once it is back, a retried usage report
is counted exactly once, grants whose answer never reached the caller hold no room, and
the per-account in-flight bound held all along. The dispatcher's timing rules (deadline,
slots kept until the RPC ends, retries only while someone waits, the same ids on every
retry) are also checked alone, against a scripted client.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlmodel import select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from billing.rules import ExtraMinutesSettings, PlanTerms
from devstack.processes import stop_process
from overtime.db import session_scope
from overtime.models import UsageEntry
from overtime.settings import Settings
from overtime.temporal import connect
from starter.dispatcher import AccountDispatcher, DispatchTimeout
from tests.conftest import (
    Api,
    WorkerControl,
    eventually,
    start_api,
    stop_api,
)
from tests.test_reliability import TemporalServer
from tests.test_scale_out import spawn_worker
from workflows.types import (
    AUTHORIZE,
    AccountProfile,
    AccountWorkflowInput,
    SettingsChange,
    TelephonyRequest,
    TelephonyResult,
)

TELEPHONY_TIMEOUT = 1.0
ADMIN_DEADLINE = 3.0
# Generous for CI on two cores: the promise is 1 s (plus the HTTP round trip).
ANSWER_BOUND = 3.0
# After a worker restart the first workflow task may wait for the sticky queue's
# schedule-to-start timeout (10 s) before it moves to the normal queue.
RECOVERY = 60.0


@pytest.fixture(scope="module")
async def stack(
    settings: Settings, temporal_client: Client, worker: WorkerControl
) -> AsyncIterator[tuple[Api, AccountDispatcher]]:
    fast = settings.model_copy(
        update={
            "telephony_timeout_seconds": TELEPHONY_TIMEOUT,
            "dispatch_deadline_seconds": ADMIN_DEADLINE,
        }
    )
    server, task, api = await start_api(fast, temporal_client)
    dispatcher: AccountDispatcher = server.config.app.state.dispatcher
    try:
        yield api, dispatcher
    finally:
        await stop_api(server, task, api)


async def post(api: Api, path: str, **body: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await api.telephony.post(path, json=body)
    return response, time.monotonic() - started


def assert_unavailable(response: httpx.Response, elapsed: float) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "unavailable"
    assert int(response.headers["Retry-After"]) >= 1
    assert elapsed < ANSWER_BOUND, f"answered after {elapsed:.2f} s"


async def until_ok(api: Api, path: str, **body: Any) -> dict[str, Any]:
    """Retry as the telephony backend does: after a 503, wait Retry-After, same body."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + RECOVERY
    while True:
        response, _ = await post(api, path, **body)
        if response.status_code == 200:
            return response.json()
        assert response.status_code == 503, response.text
        assert loop.time() < give_up, "never answered"
        await asyncio.sleep(float(response.headers["Retry-After"]) / 4)


def ledger_rows(api: Api, account: str, call_id: str) -> list[UsageEntry]:
    with session_scope(api.settings.resolved_database_url()) as session:
        return list(
            session.exec(
                select(UsageEntry).where(
                    UsageEntry.account_id == account, UsageEntry.call_id == call_id
                )
            )
        )


async def state_when(api: Api, account: str, **expected: int) -> dict[str, Any]:
    async def check() -> dict[str, Any]:
        state = await api.state(account)
        for key, value in expected.items():
            assert state[key] == value, (key, state[key], value)
        return state

    return await eventually(check, timeout=RECOVERY, interval=0.25)


async def warm(api: Api, account: str) -> None:
    """One answered request: the workflow runs and sits in the worker's cache."""
    await until_ok(api, "/v1/calls/authorize", account_id=account, call_id="warm")
    await until_ok(api, "/v1/calls/usage", account_id=account, call_id="warm", seconds=0)


async def test_worker_down_answers_503_at_once_and_nothing_is_half_recorded(
    stack: tuple[Api, AccountDispatcher], worker: WorkerControl
) -> None:
    api, _ = stack
    account = await api.create_account()
    await warm(api, account)
    running = await until_ok(api, "/v1/calls/authorize", account_id=account, call_id="running")
    assert running == {"allowed": True, "granted_seconds": 300}
    await state_when(api, account, reserved_seconds=300, used_seconds=0)

    await worker.stop()
    try:
        # A new call, a re-ask of the running call, and the running call's report.
        new_call, elapsed = await post(
            api, "/v1/calls/authorize", account_id=account, call_id="new", request_id="new-1"
        )
        assert_unavailable(new_call, elapsed)
        reask, elapsed = await post(
            api,
            "/v1/calls/authorize",
            account_id=account,
            call_id="running",
            request_id="running-2",
        )
        assert_unavailable(reask, elapsed)
        report, elapsed = await post(
            api,
            "/v1/calls/usage",
            account_id=account,
            call_id="running",
            seconds=120,
            request_id="running-usage",
        )
        assert_unavailable(report, elapsed)
        # Admin calls have their own, longer deadline, and answer 503 at it too.
        started = time.monotonic()
        state = await api.admin.get(f"/v1/accounts/{account}/state")
        assert_unavailable_admin(state, time.monotonic() - started)
    finally:
        await worker.start()

    # The report, retried with the same request id, is counted exactly once.
    answer = await until_ok(
        api,
        "/v1/calls/usage",
        account_id=account,
        call_id="running",
        seconds=120,
        request_id="running-usage",
    )
    assert answer["recorded"] is True
    again = await until_ok(
        api, "/v1/calls/usage", account_id=account, call_id="running", seconds=120
    )
    assert again == {"recorded": True, "duplicate": True}
    # Nothing the caller never heard of holds room: no grant of "new" or of the re-ask.
    await state_when(api, account, used_seconds=120, reserved_seconds=0)
    await eventually(lambda: len(ledger_rows(api, account, "running")) == 1, timeout=RECOVERY)

    # A settled call is never granted again: a normal refusal.
    ended = await until_ok(api, "/v1/calls/authorize", account_id=account, call_id="running")
    assert ended == {"allowed": False, "reason": "call_ended"}
    # The new call's retry, with its request id, is granted now, once.
    first = await until_ok(
        api, "/v1/calls/authorize", account_id=account, call_id="new", request_id="new-1"
    )
    assert first == {"allowed": True, "granted_seconds": 300}
    repeat = await until_ok(
        api, "/v1/calls/authorize", account_id=account, call_id="new", request_id="new-1"
    )
    assert repeat == first
    await state_when(api, account, reserved_seconds=300)


def assert_unavailable_admin(response: httpx.Response, elapsed: float) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "unavailable"
    assert int(response.headers["Retry-After"]) >= 1
    assert elapsed < ADMIN_DEADLINE + ANSWER_BOUND, f"answered after {elapsed:.2f} s"


async def test_in_flight_bound_holds_after_timeouts(
    stack: tuple[Api, AccountDispatcher], worker: WorkerControl
) -> None:
    api, dispatcher = stack
    account = await api.create_account()
    await warm(api, account)
    bound = api.settings.dispatch_max_in_flight
    before, signals_before = dispatcher.batches_sent, dispatcher.abandon_signals_sent

    async def wave(tag: str) -> list[tuple[httpx.Response, float]]:
        return await asyncio.gather(
            *(
                post(api, "/v1/calls/authorize", account_id=account, call_id=f"{tag}-{i}")
                for i in range(25)
            )
        )

    await worker.stop()
    try:
        for tag in ("first", "second"):
            for response, elapsed in await wave(tag):
                assert_unavailable(response, elapsed)
        # The batches whose waiters gave up keep their slots while their Updates may be
        # in flight: never more than the bound at once, and what came after them waited,
        # was answered 503 and was mostly never sent (a held attempt that the server ends
        # early, e.g. when the stopping worker fails its task, frees its slot for one more).
        assert dispatcher.max_in_flight_seen <= bound
        assert dispatcher.batches_sent - before <= 2 * bound
    finally:
        await worker.start()

    # The Updates sent meanwhile grant nothing: the API reported them abandoned (and
    # one processed more than 2 s after its deadline would be refused anyway).
    await eventually(lambda: dispatcher.abandon_signals_sent > signals_before)
    await state_when(api, account, reserved_seconds=0)
    answer = await until_ok(api, "/v1/calls/authorize", account_id=account, call_id="after")
    assert answer == {"allowed": True, "granted_seconds": 300}
    await state_when(api, account, reserved_seconds=300)
    assert dispatcher.max_in_flight_seen <= bound


async def test_a_retry_with_the_same_request_id_gets_the_same_grant(
    stack: tuple[Api, AccountDispatcher],
) -> None:
    api, _ = stack
    account = await api.create_account()
    await warm(api, account)
    request_id = f"req-{uuid.uuid4().hex}"
    first = await until_ok(
        api, "/v1/calls/authorize", account_id=account, call_id="c", request_id=request_id
    )
    assert first == {"allowed": True, "granted_seconds": 300}
    answers = await asyncio.gather(
        *(
            until_ok(
                api,
                "/v1/calls/authorize",
                account_id=account,
                call_id="c",
                request_id=request_id,
            )
            for _ in range(5)
        )
    )
    assert answers == [first] * 5
    await state_when(api, account, reserved_seconds=300)
    # A re-ask is a new request: a second grant.
    reask = await until_ok(
        api, "/v1/calls/authorize", account_id=account, call_id="c", request_id=f"{request_id}-2"
    )
    assert reask == {"allowed": True, "granted_seconds": 300}
    await state_when(api, account, reserved_seconds=600)


async def test_request_ids_are_checked_and_503_is_documented(
    stack: tuple[Api, AccountDispatcher],
) -> None:
    api, _ = stack
    bad = await api.telephony.post(
        "/v1/calls/authorize",
        json={"account_id": "acct-x", "call_id": "c", "request_id": "no spaces allowed"},
    )
    assert bad.status_code == 422
    assert bad.json()["error"] == "invalid_request"
    spec = (await api.anonymous.get("/openapi.json")).json()
    for path in ("/v1/calls/authorize", "/v1/calls/usage"):
        unavailable = spec["paths"][path]["post"]["responses"]["503"]
        assert "Retry-After" in unavailable["headers"]
    reasons = spec["components"]["schemas"]["AuthorizeOut"]["properties"]["reason"]
    assert "call_ended" in str(reasons)


# --- the dispatcher alone, against a scripted client (fast, exact timing) -----------------


class ScriptedClient:
    """Stands in for temporalio's Client: every Update runs ``behaviour``, whether it is
    sent plain (the dispatcher's first try) or with start."""

    def __init__(self, behaviour: Any) -> None:
        self.behaviour = behaviour
        self.attempts: list[tuple[str, list[str | None]]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.signals: list[list[str]] = []

    async def execute_update_with_start_workflow(
        self, update: Any, arg: Any, *, start_workflow_operation: Any, id: str, rpc_timeout: Any
    ) -> Any:
        self.attempts.append((id, [r.request_id for r in arg.requests]))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self.behaviour(arg)
        finally:
            self.in_flight -= 1

    def get_workflow_handle(self, workflow_id: str) -> Any:
        client = self

        class Handle:
            async def execute_update(
                self, update: Any, arg: Any, *, id: str, rpc_timeout: Any
            ) -> Any:
                return await client.execute_update_with_start_workflow(
                    update, arg, start_workflow_operation=None, id=id, rpc_timeout=rpc_timeout
                )

            async def signal(self, signal: Any, arg: Any, *, rpc_timeout: Any) -> None:
                client.signals.append([r.request_id for r in arg.requests])

        return Handle()


def start_input(account_id: str = "a1") -> AccountWorkflowInput:
    return AccountWorkflowInput(
        profile=AccountProfile(
            account_id, "a@example.com", "de", "Europe/Berlin", datetime.now(UTC)
        ),
        plan=PlanTerms("starter", 2900, 100, 39),
        settings=ExtraMinutesSettings(False),
    )


def dispatcher_for(client: ScriptedClient, *, timeout: float = 0.2, cap: float = 1.0) -> Any:
    return AccountDispatcher(
        client,  # type: ignore[arg-type]
        "q",
        max_in_flight=2,
        deadline_seconds=cap,
        telephony_timeout_seconds=timeout,
    )


def authorize(call_id: str, request_id: str | None = None) -> Any:
    return TelephonyRequest(AUTHORIZE, call_id, request_id=request_id)


def granted(batch: Any) -> list[Any]:
    return [
        TelephonyResult(AUTHORIZE, r.call_id, allowed=True, granted_seconds=300)
        for r in batch.requests
    ]


async def timed(coro: Any) -> tuple[Any, float]:
    started = time.monotonic()
    try:
        return await coro, time.monotonic() - started
    except Exception as err:
        return err, time.monotonic() - started


async def test_a_hung_rpc_answers_at_the_deadline_and_keeps_its_slot_until_the_cap() -> None:
    async def hang(batch: Any) -> Any:
        await asyncio.Event().wait()

    client = ScriptedClient(hang)
    dispatcher = dispatcher_for(client, timeout=0.2, cap=1.0)
    outcomes = await asyncio.gather(
        *(timed(dispatcher.telephony(start_input(), authorize(f"c{i}"))) for i in range(6))
    )
    for outcome, elapsed in outcomes:
        assert isinstance(outcome, DispatchTimeout)
        assert elapsed < 0.5
    # Two batches sent (the bound); the other four gave up before a slot came free and
    # were never sent. The two hung attempts still hold their slots.
    assert len(client.attempts) == 2 and client.in_flight == 2
    # A request now waits for a slot, which the hung attempts keep until the cap.
    late, elapsed = await timed(dispatcher.telephony(start_input(), authorize("late")))
    assert isinstance(late, DispatchTimeout) and len(client.attempts) == 2
    # Both sent requests were reported abandoned, in one signal or two, never in front
    # of an answer.
    sent = {rid for _, ids in client.attempts for rid in ids}
    await eventually(lambda: {rid for ids in client.signals for rid in ids} == sent, timeout=2)
    await eventually(lambda: client.in_flight == 0, timeout=3)  # cut at the cap
    assert client.max_in_flight == 2 and dispatcher.max_in_flight_seen == 2
    assert not dispatcher._queues
    await dispatcher.aclose()


async def test_retries_reuse_update_and_request_ids_while_a_waiter_waits() -> None:
    failures = 0

    async def flaky(batch: Any) -> Any:
        nonlocal failures
        if failures < 3:
            failures += 1
            raise RPCError("down", RPCStatusCode.UNAVAILABLE, b"")
        return granted(batch)

    client = ScriptedClient(flaky)
    dispatcher = dispatcher_for(client, timeout=2.0)
    result = await dispatcher.telephony(start_input(), authorize("c", "req-1"))
    assert result.allowed
    assert len(client.attempts) == 4
    assert {update_id for update_id, _ in client.attempts} == {client.attempts[0][0]}
    assert all(ids == ["req-1"] for _, ids in client.attempts)
    assert client.signals == []
    await dispatcher.aclose()


async def test_no_retry_once_every_waiter_gave_up() -> None:
    async def down(batch: Any) -> Any:
        await asyncio.sleep(0.01)
        raise RPCError("down", RPCStatusCode.UNAVAILABLE, b"")

    client = ScriptedClient(down)
    dispatcher = dispatcher_for(client, timeout=0.2)
    outcome, elapsed = await timed(dispatcher.telephony(start_input(), authorize("c")))
    assert isinstance(outcome, DispatchTimeout) and elapsed < 0.5
    tries = len(client.attempts)
    await asyncio.sleep(0.5)
    assert len(client.attempts) == tries  # nobody waits: no more attempts
    await eventually(lambda: client.signals, timeout=2)
    await dispatcher.aclose()


async def test_a_late_answer_reaches_nobody_and_frees_the_slot_when_it_arrives() -> None:
    release = asyncio.Event()

    async def slow(batch: Any) -> Any:
        await release.wait()
        return granted(batch)

    client = ScriptedClient(slow)
    dispatcher = dispatcher_for(client, timeout=0.1, cap=5.0)
    first = asyncio.create_task(timed(dispatcher.telephony(start_input(), authorize("c1"))))
    second = asyncio.create_task(timed(dispatcher.telephony(start_input(), authorize("c2"))))
    await asyncio.sleep(0.3)
    assert first.done() and second.done() and client.in_flight == 2
    release.set()
    await eventually(lambda: client.in_flight == 0, timeout=2)
    assert not dispatcher._queues
    # The account answers again at once.
    result = await dispatcher.telephony(start_input(), authorize("c3"))
    assert result.allowed
    await dispatcher.aclose()


async def test_settings_changes_are_cut_at_their_own_deadline() -> None:
    async def hang(arg: Any) -> Any:
        await asyncio.Event().wait()

    class Client(ScriptedClient):
        async def execute_update_with_start_workflow(  # type: ignore[override]
            self, update: Any, arg: Any, **kwargs: Any
        ) -> Any:
            self.attempts.append((kwargs["id"], [arg.change_id]))
            return await hang(arg)

    client = Client(hang)
    dispatcher = dispatcher_for(client, cap=0.5)
    change = SettingsChange(ExtraMinutesSettings(False), actor="admin")
    outcome, elapsed = await timed(dispatcher.change_settings(start_input(), change))
    assert isinstance(outcome, DispatchTimeout)
    assert 0.4 < elapsed < 1.5
    [(_, [change_id])] = client.attempts
    assert change_id  # one id per change, set before the first attempt
    await dispatcher.aclose()


async def test_an_update_failed_by_a_hand_over_is_retried_against_the_next_run() -> None:
    """FAILED_PRECONDITION "unexpected workflow task failure": the Update met the task
    that continued the run as new; it was not applied, and the next run takes it."""
    failed = False

    async def hand_over(batch: Any) -> Any:
        nonlocal failed
        if not failed:
            failed = True
            raise RPCError(
                "Unable to perform workflow execution update due to unexpected workflow "
                "task failure.",
                RPCStatusCode.FAILED_PRECONDITION,
                b"...WorkflowNotReadyFailure",
            )
        return granted(batch)

    client = ScriptedClient(hand_over)
    dispatcher = dispatcher_for(client, timeout=1.0)
    result = await dispatcher.telephony(start_input(), authorize("c", "req-h"))
    assert result.allowed and len(client.attempts) == 2
    assert client.attempts[0] == client.attempts[1]  # same Update id, same request ids
    await dispatcher.aclose()


# --- Temporal itself stopped: a dev server of this module's own --------------------------


@pytest.fixture(scope="module")
async def own_temporal(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Api, TemporalServer]]:
    """Temporal (state in a file, so it can restart), a worker process and the API."""
    directory = tmp_path_factory.mktemp("deadlines")
    temporal = TemporalServer(directory)
    temporal.start()
    own = settings.model_copy(
        update={
            "temporal_host": "127.0.0.1",
            "temporal_port": temporal.port,
            "task_queue": f"deadlines-{uuid.uuid4().hex[:8]}",
            "telephony_timeout_seconds": TELEPHONY_TIMEOUT,
            "dispatch_deadline_seconds": ADMIN_DEADLINE,
        }
    )
    worker_process: subprocess.Popen[bytes] | None = None
    try:
        await temporal.ready()
        worker_process = spawn_worker(own, directory / "worker.log")
        client = await connect(own)
        server, task, api = await start_api(own, client)
        try:
            yield api, temporal
        finally:
            await stop_api(server, task, api)
    finally:
        if worker_process is not None:
            stop_process(worker_process, 20)
        temporal.stop()


async def test_temporal_down_answers_503_at_once_and_counts_the_report_once(
    own_temporal: tuple[Api, TemporalServer],
) -> None:
    api, temporal = own_temporal
    account = await api.create_account()
    await warm(api, account)
    running = await until_ok(api, "/v1/calls/authorize", account_id=account, call_id="running")
    assert running["allowed"]

    temporal.stop()
    try:
        for path, body in (
            ("/v1/calls/authorize", {"call_id": "new", "request_id": "t-new-1"}),
            ("/v1/calls/authorize", {"call_id": "running", "request_id": "t-running-2"}),
            ("/v1/calls/usage", {"call_id": "running", "seconds": 90, "request_id": "t-u"}),
        ):
            for _ in range(3):  # and again, as the backend retries
                response, elapsed = await post(api, path, account_id=account, **body)
                assert_unavailable(response, elapsed)
    finally:
        temporal.start()
    await temporal.ready()

    answer = await until_ok(
        api,
        "/v1/calls/usage",
        account_id=account,
        call_id="running",
        seconds=90,
        request_id="t-u",
    )
    assert answer["recorded"] is True
    await state_when(api, account, used_seconds=90, reserved_seconds=0)
    await eventually(lambda: len(ledger_rows(api, account, "running")) == 1, timeout=RECOVERY)


async def test_time_spent_before_dispatch_counts_against_the_same_deadline() -> None:
    """The account load and the workflow's answer share one budget from the request's
    arrival: a request that spent most of its timeout loading the account gets only the
    rest for the workflow, never a fresh timeout."""

    async def slow(batch: Any) -> Any:
        await asyncio.sleep(0.3)
        return granted(batch)

    client = ScriptedClient(slow)
    dispatcher = dispatcher_for(client, timeout=0.5, cap=2.0)
    loop = asyncio.get_running_loop()
    # Arrived 0.35 s ago (spent loading): 0.15 s remain, less than the workflow needs.
    late, elapsed = await timed(
        dispatcher.telephony(start_input(), authorize("c1"), loop.time() - 0.35)
    )
    assert isinstance(late, DispatchTimeout)
    assert elapsed < 0.3
    # Arrived longer ago than the whole budget: answered at once, nothing sent.
    attempts = len(client.attempts)
    spent, elapsed = await timed(
        dispatcher.telephony(start_input(), authorize("c0"), loop.time() - 0.6)
    )
    assert isinstance(spent, DispatchTimeout) and elapsed < 0.05
    assert len(client.attempts) == attempts
    # Arrived just now: the whole budget, and the answer comes.
    fresh, _ = await timed(dispatcher.telephony(start_input(), authorize("c2"), loop.time()))
    assert not isinstance(fresh, Exception) and fresh.allowed
    await dispatcher.aclose()
