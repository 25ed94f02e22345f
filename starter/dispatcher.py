"""Per-account dispatch of telephony requests to the account workflow.

Temporal accepts at most 10 Updates in flight per workflow and 2,000 per run. Sending one
Update per HTTP request would fail a busy account's 11th concurrent call, so each API
process keeps at most ``dispatch_max_in_flight`` Updates per account and coalesces every
request that arrives meanwhile into the next batch: 50 simultaneous authorisations
become a handful of Updates, each answered item by item.

Every Update goes to the running workflow as a plain Update (the server's cheapest path:
about half the CPU of update-with-start, and no start input to encode and send). Only
when the server answers that no run is there (a new account, a workflow that ended) is
it sent again, with the same Update id, as update-with-start (conflict policy
USE_EXISTING), which starts the workflow. Rejections the workflow
marks ``retry_later`` (it is closing a period or handing over to a new run), resource
exhaustion and transient RPC errors are retried with jittered backoff, reusing the
Update id (and every request's ``request_id``) so a retry can never apply a batch twice.

Deadlines. A telephony request waits at most ``telephony_timeout_seconds`` from its
arrival (the request carries that deadline to the workflow, which refuses a late
authorisation by itself); then its caller gets :class:`DispatchTimeout` (503), whatever
the RPC is doing. A batch is retried only while one of its waiters still waits. Its RPC
attempt is not abandoned with its waiters: the Update may be admitted on the server,
where it counts against the workflow's in-flight limit until the workflow has handled
it, so the batch keeps its slot until the attempt has really ended, at most
``deadline_seconds`` after it was sent (then the attempt is cancelled). A batch whose
waiters have all given up before it is sent is never sent.

Every request the API answered 503 after it may have reached the workflow is reported
to the workflow afterwards (signal ``abandon``, batched per account, retried briefly in
the background, never in front of an answer): the workflow takes back a grant it made
and refuses the request if it is processed later, so an answer that never reached the
caller holds no room.

Settings, payment-method changes and state queries (admin and web app) wait up to
``deadline_seconds``; their attempts are cut off at that deadline too.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from workflows.account import RETRY_LATER, AccountWorkflow
from workflows.types import (
    AUTHORIZE,
    AbandonedRequest,
    AbandonedRequests,
    AccountSnapshot,
    AccountWorkflowInput,
    AlertsChange,
    PaymentMethodChange,
    PlanChange,
    SettingsChange,
    TelephonyBatch,
    TelephonyRequest,
    TelephonyResult,
    workflow_id_for,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT_RPC = {
    RPCStatusCode.RESOURCE_EXHAUSTED,
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.ABORTED,
}
# What a 503 tells the caller to wait before trying again (the Retry-After header).
RETRY_AFTER_SECONDS = 1
# The abandon signal: ids per signal, and how long a failing signal is retried. The
# workflow's own deadline check catches whatever a lost signal could not report.
ABANDON_BATCH = 500
# How long abandoned requests wait for the account's next batch before a signal of their
# own carries them (a quiet account: no batch is coming).
ABANDON_COALESCE_SECONDS = 1.0
ABANDON_RETRY_SECONDS = 10.0
ABANDON_RPC_TIMEOUT = 2.0


class DispatchTimeout(Exception):
    """The workflow did not answer within the request's deadline (API: 503)."""

    retry_after = RETRY_AFTER_SECONDS


class WorkflowRejected(Exception):
    """The workflow's validator refused the request; ``code`` is the rejection type."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(eq=False)
class _Waiter:
    """One HTTP request waiting for its answer."""

    request: TelephonyRequest
    future: asyncio.Future[TelephonyResult]
    deadline: float  # event-loop time
    # The request may have reached the workflow (it was put in a batch).
    sent: bool = False
    gave_up: bool = False

    @property
    def waiting(self) -> bool:
        return not self.gave_up and not self.future.done()


@dataclass
class _AccountQueue:
    start_input: AccountWorkflowInput
    pending: list[_Waiter] = field(default_factory=list)
    in_flight: int = 0


class AccountDispatcher:
    def __init__(
        self,
        client: Client,
        task_queue: str,
        *,
        max_in_flight: int = 2,
        max_batch: int = 100,
        deadline_seconds: float = 20.0,
        telephony_timeout_seconds: float = 1.0,
    ) -> None:
        self._client = client
        self._task_queue = task_queue
        self._max_in_flight = max_in_flight
        self._max_batch = max_batch
        self._deadline = deadline_seconds
        self._telephony_timeout = telephony_timeout_seconds
        self._queues: dict[str, _AccountQueue] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._abandoned: dict[str, list[AbandonedRequest]] = {}
        self._signalling: set[str] = set()
        self._closed = False
        # Instruments (tests, benchmarks).
        self.updates_sent = 0  # RPC attempts
        self.starts_sent = 0  # attempts that had to start the workflow (update-with-start)
        self.batches_sent = 0  # distinct telephony Updates
        self.max_in_flight_seen = 0  # per account, ever
        self.timeouts = 0
        self.abandon_signals_sent = 0
        self.abandoned_dropped = 0

    # --- telephony --------------------------------------------------------------------

    async def telephony(
        self,
        start_input: AccountWorkflowInput,
        request: TelephonyRequest,
        arrived: float | None = None,
    ) -> TelephonyResult:
        """The workflow's answer, or :class:`DispatchTimeout` at the request's deadline.

        ``request.request_id`` (the caller's, stable across its retries) defaults to a
        new uuid; the deadline is the telephony timeout after ``arrived`` (the event
        loop's clock when the HTTP request came in: loading the account counts against
        the same budget), or after now.
        """
        loop = asyncio.get_running_loop()
        now = loop.time()
        remaining = self._telephony_timeout - (now - arrived if arrived is not None else 0.0)
        if remaining <= 0:
            # Spent before it could be queued (the account load took the whole budget):
            # sending it now would only make the workflow grant and then take it back.
            self.timeouts += 1
            raise DispatchTimeout("the request's time ran out before it could be sent")
        account_id = start_input.profile.account_id
        queue = self._queues.get(account_id)
        if queue is None:
            queue = self._queues[account_id] = _AccountQueue(start_input)
        request = replace(
            request,
            request_id=request.request_id or str(uuid.uuid4()),
            deadline=datetime.now(UTC) + timedelta(seconds=remaining),
        )
        waiter = _Waiter(request, loop.create_future(), deadline=now + remaining)
        queue.pending.append(waiter)
        timer = loop.call_at(waiter.deadline, self._give_up, account_id, waiter)
        self._pump(account_id, queue)
        try:
            return await waiter.future
        except asyncio.CancelledError:
            self._give_up(account_id, waiter, cancelled=True)  # the caller went away
            raise
        finally:
            timer.cancel()

    def _give_up(self, account_id: str, waiter: _Waiter, *, cancelled: bool = False) -> None:
        """The waiter's deadline passed (or its caller went away) before its answer came."""
        if waiter.gave_up or (waiter.future.done() and not cancelled):
            return
        waiter.gave_up = True
        if not waiter.future.done():
            self.timeouts += 1
            waiter.future.set_exception(
                DispatchTimeout("the account workflow did not answer in time")
            )
        queue = self._queues.get(account_id)
        if queue is not None and waiter in queue.pending:
            queue.pending.remove(waiter)  # never sent: nothing to take back
            self._forget_if_idle(account_id, queue)
        elif waiter.sent:
            assert waiter.request.request_id is not None
            self._abandon(account_id, waiter.request)

    def _pump(self, account_id: str, queue: _AccountQueue) -> None:
        while queue.in_flight < self._max_in_flight and not self._closed:
            queue.pending[:] = [w for w in queue.pending if w.waiting]
            if not queue.pending:
                break
            batch = queue.pending[: self._max_batch]
            del queue.pending[: self._max_batch]
            for waiter in batch:
                waiter.sent = True
            queue.in_flight += 1
            self.batches_sent += 1
            self.max_in_flight_seen = max(self.max_in_flight_seen, queue.in_flight)
            self._spawn(self._send(account_id, queue, batch))
        self._forget_if_idle(account_id, queue)

    def _forget_if_idle(self, account_id: str, queue: _AccountQueue) -> None:
        if not queue.pending and queue.in_flight == 0 and self._queues.get(account_id) is queue:
            del self._queues[account_id]

    async def _send(self, account_id: str, queue: _AccountQueue, batch: list[_Waiter]) -> None:
        loop = asyncio.get_running_loop()
        # Requests given up on ride along with the account's next batch: no signal, no
        # extra workflow task for an account that is already slow to answer.
        carried = self._abandoned.pop(account_id, [])
        try:
            results: list[TelephonyResult] = await self._update_with_start(
                queue.start_input,
                AccountWorkflow.telephony,
                TelephonyBatch([w.request for w in batch], abandoned=carried),
                retry_until=max(w.deadline for w in batch),
                retry_while=lambda: any(w.waiting for w in batch),
                cut_at=loop.time() + self._deadline,
            )
            for waiter, result in zip(batch, results, strict=True):
                if waiter.waiting:
                    waiter.future.set_result(result)
        except Exception as err:  # every waiter must hear about the failure
            if carried:  # maybe not delivered: the signal fallback sends them again
                self._abandoned.setdefault(account_id, [])[:0] = carried
                self._schedule_abandon_signal(account_id)
            for waiter in batch:
                if not waiter.waiting:
                    continue
                if isinstance(err, DispatchTimeout):
                    self._give_up(account_id, waiter)  # 503, and abandoned
                    continue
                waiter.future.set_exception(err)
                if not isinstance(err, WorkflowRejected) and waiter.request.request_id:
                    # An unexpected failure (500): the request may have been applied.
                    self._abandon(account_id, waiter.request)
        finally:
            queue.in_flight -= 1  # the queue stays registered while it has one in flight
            self._pump(account_id, queue)

    # --- abandoned requests -----------------------------------------------------------

    def _abandon(self, account_id: str, request: TelephonyRequest) -> None:
        if request.kind != AUTHORIZE:
            return  # only a grant holds room; a report is settled once however often it comes
        assert request.request_id is not None  # every telephony request gets one
        self._abandoned.setdefault(account_id, []).append(
            AbandonedRequest(request.call_id, request.request_id, request.deadline)
        )
        self._schedule_abandon_signal(account_id)

    def _schedule_abandon_signal(self, account_id: str) -> None:
        if account_id not in self._signalling and not self._closed:
            self._signalling.add(account_id)
            self._spawn(self._signal_abandoned(account_id))

    async def _signal_abandoned(self, account_id: str) -> None:
        """Tell the workflow which requests were answered 503: best effort, batched."""
        loop = asyncio.get_running_loop()
        handle = self._client.get_workflow_handle(workflow_id_for(account_id))
        delay = 0.05
        give_up_at = loop.time() + ABANDON_RETRY_SECONDS
        try:
            # A burst of time-outs becomes one signal (each signal is a workflow task for
            # an account that is already slow to answer).
            await asyncio.sleep(ABANDON_COALESCE_SECONDS)
            while ids := self._abandoned.get(account_id):
                chunk = ids[:ABANDON_BATCH]
                try:
                    async with asyncio.timeout(ABANDON_RPC_TIMEOUT):
                        await handle.signal(
                            AccountWorkflow.abandon,
                            AbandonedRequests(list(chunk)),
                            rpc_timeout=timedelta(seconds=ABANDON_RPC_TIMEOUT),
                        )
                except Exception as err:  # Temporal down, a time-out: try again shortly
                    not_found = isinstance(err, RPCError) and err.status == RPCStatusCode.NOT_FOUND
                    if not_found or loop.time() + delay > give_up_at:
                        log.warning(
                            "abandoned requests not reported",
                            extra={"account_id": account_id, "requests": len(ids)},
                        )
                        self.abandoned_dropped += len(ids)
                        ids.clear()
                        break
                    await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                    delay = min(delay * 2, 1.0)
                    continue
                self.abandon_signals_sent += 1
                del ids[: len(chunk)]  # later ids were only appended behind them
                give_up_at = loop.time() + ABANDON_RETRY_SECONDS
        finally:
            self._signalling.discard(account_id)
            if not self._abandoned.get(account_id):
                self._abandoned.pop(account_id, None)

    # --- settings and queries -----------------------------------------------------------

    async def change_settings(
        self, start_input: AccountWorkflowInput, change: SettingsChange
    ) -> AccountSnapshot:
        change = replace(change, change_id=change.change_id or str(uuid.uuid4()))
        return await self._admin_update(start_input, AccountWorkflow.change_settings, change)

    async def payment_method(
        self, start_input: AccountWorkflowInput, change: PaymentMethodChange
    ) -> AccountSnapshot:
        change = replace(change, change_id=change.change_id or str(uuid.uuid4()))
        return await self._admin_update(start_input, AccountWorkflow.payment_method, change)

    async def change_alerts(
        self, start_input: AccountWorkflowInput, change: AlertsChange
    ) -> AccountSnapshot:
        change = replace(change, change_id=change.change_id or str(uuid.uuid4()))
        return await self._admin_update(start_input, AccountWorkflow.change_alerts, change)

    async def change_plan(
        self, start_input: AccountWorkflowInput, change: PlanChange
    ) -> AccountSnapshot:
        change = replace(change, change_id=change.change_id or str(uuid.uuid4()))
        return await self._admin_update(start_input, AccountWorkflow.change_plan, change)

    async def _admin_update(
        self, start_input: AccountWorkflowInput, update: Any, arg: Any
    ) -> AccountSnapshot:
        deadline = asyncio.get_running_loop().time() + self._deadline
        return await self._update_with_start(
            start_input, update, arg, retry_until=deadline, cut_at=deadline
        )

    async def snapshot(self, start_input: AccountWorkflowInput) -> AccountSnapshot:
        workflow_id = workflow_id_for(start_input.profile.account_id)
        deadline = asyncio.get_running_loop().time() + self._deadline

        async def query(rpc_timeout: timedelta) -> AccountSnapshot:
            try:
                handle = self._client.get_workflow_handle(workflow_id)
                # Reservations as of now, not of the workflow's last task.
                return await handle.query(
                    AccountWorkflow.snapshot, datetime.now(UTC), rpc_timeout=rpc_timeout
                )
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
            await self.ensure_started(start_input)
            raise _Retry("workflow started")

        return await self._retrying(query, retry_until=deadline, cut_at=deadline)

    async def ensure_started(self, start_input: AccountWorkflowInput) -> None:
        await self._client.start_workflow(
            AccountWorkflow.run,
            start_input,
            id=workflow_id_for(start_input.profile.account_id),
            task_queue=self._task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )

    # --- plumbing ---------------------------------------------------------------------

    async def _update_with_start(
        self,
        start_input: AccountWorkflowInput,
        update: Any,
        arg: Any,
        *,
        retry_until: float,
        cut_at: float,
        retry_while: Callable[[], bool] = lambda: True,
    ) -> Any:
        update_id = str(uuid.uuid4())
        workflow_id = workflow_id_for(start_input.profile.account_id)
        handle = self._client.get_workflow_handle(workflow_id)
        # Whether the workflow is running as far as this request knows: a plain Update
        # first, update-with-start only once the server said there is no such workflow.
        running = True

        async def attempt(rpc_timeout: timedelta) -> Any:
            nonlocal running
            self.updates_sent += 1
            try:
                if running:
                    try:
                        return await handle.execute_update(
                            update, arg, id=update_id, rpc_timeout=rpc_timeout
                        )
                    except RPCError as err:
                        if err.status != RPCStatusCode.NOT_FOUND:
                            raise
                        # No run to take it (never started, or its last run closed):
                        # nothing was applied, so the same Update id starts one now.
                        running = False
                        self.starts_sent += 1
                return await self._with_start(
                    start_input, workflow_id, update, arg, update_id, rpc_timeout
                )
            except WorkflowUpdateFailedError as err:
                cause = err.cause
                if isinstance(cause, ApplicationError):
                    if cause.type == RETRY_LATER:
                        raise _Retry(cause.message) from err
                    raise WorkflowRejected(cause.type or "rejected", cause.message) from err
                raise

        return await self._retrying(
            attempt, retry_until=retry_until, cut_at=cut_at, retry_while=retry_while
        )

    async def _with_start(
        self,
        start_input: AccountWorkflowInput,
        workflow_id: str,
        update: Any,
        arg: Any,
        update_id: str,
        rpc_timeout: timedelta,
    ) -> Any:
        operation = WithStartWorkflowOperation(
            AccountWorkflow.run,
            start_input,
            id=workflow_id,
            task_queue=self._task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        try:
            return await self._client.execute_update_with_start_workflow(
                update,
                arg,
                start_workflow_operation=operation,
                id=update_id,
                rpc_timeout=rpc_timeout,
            )
        finally:
            _forget_start_outcome(operation)

    async def _retrying(
        self,
        attempt: Callable[[timedelta], Awaitable[T]],
        *,
        retry_until: float,
        cut_at: float,
        retry_while: Callable[[], bool] = lambda: True,
    ) -> T:
        """``attempt`` until it succeeds or fails for good.

        Transient failures are retried with jittered backoff while ``retry_while()``
        holds and the next try would start before ``retry_until``; every attempt is
        cancelled at ``cut_at`` (loop times). Either way out is :class:`DispatchTimeout`.
        """
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        delay = 0.01
        while True:
            remaining = cut_at - loop.time()
            if remaining <= 0:
                raise DispatchTimeout("the account workflow did not answer in time")
            try:
                async with asyncio.timeout_at(cut_at):
                    return await attempt(timedelta(seconds=remaining))
            except _Retry:
                pass
            except (WorkflowUpdateRPCTimeoutOrCancelledError, TimeoutError):
                # The SDK reports a cancelled RPC as this error, not as CancelledError.
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError() from None
            except RPCError as err:
                if not _transient(err):
                    raise
            pause = delay * random.uniform(0.5, 1.5)
            if not retry_while() or loop.time() + pause > min(retry_until, cut_at):
                raise DispatchTimeout("the account workflow did not answer in time")
            await asyncio.sleep(pause)
            if not retry_while():  # everyone gave up meanwhile
                raise DispatchTimeout("the account workflow did not answer in time")
            delay = min(delay * 2, 0.5)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        self._closed = True  # nothing new is sent; whoever still waits gets 503 in time
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _transient(err: RPCError) -> bool:
    """Worth another try with the same Update id.

    Besides the transient statuses: an Update that reached a run in the very workflow
    task that continues it as new (or in a task that failed) is failed by the server with
    FAILED_PRECONDITION, "unexpected workflow task failure" (WorkflowNotReadyFailure). It
    was not applied; the next run takes it, like a ``retry_later`` rejection.
    """
    if err.status in TRANSIENT_RPC:
        return True
    return err.status == RPCStatusCode.FAILED_PRECONDITION and (
        b"WorkflowNotReadyFailure" in (err.raw_grpc_status or b"")
        or "unexpected workflow task failure" in err.message
    )


def _forget_start_outcome(operation: WithStartWorkflowOperation[Any, Any]) -> None:
    """Mark the start operation's own outcome as seen: when an attempt fails or is cut
    off, the SDK sets it to that error, which nobody awaits (else asyncio logs "Future
    exception was never retrieved" for every cut-off attempt)."""
    future = getattr(operation, "_workflow_handle", None)
    if isinstance(future, asyncio.Future) and future.done() and not future.cancelled():
        future.exception()


class _Retry(Exception):
    pass
