"""Per-account dispatch of telephony requests to the account workflow.

Temporal accepts at most 10 Updates in flight per workflow and 2,000 per run. Sending one
Update per HTTP request would fail a busy account's 11th concurrent call, so each API
process keeps at most ``dispatch_max_in_flight`` Updates per account and coalesces every
request that arrives meanwhile into the next batch: 50 simultaneous authorisations
become a handful of Updates, each answered item by item.

Every Update is sent as update-with-start (conflict policy USE_EXISTING), so the first
request for an account whose workflow is not running starts it. Rejections the workflow
marks ``retry_later`` (it is closing a period or handing over to a new run), resource
exhaustion and transient RPC errors are retried with backoff under a deadline, reusing
the Update id so a retry can never apply a batch twice within a run.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
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
    AccountSnapshot,
    AccountWorkflowInput,
    PaymentMethodChange,
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


class DispatchTimeout(Exception):
    """The workflow did not accept the request within the dispatch deadline."""


class WorkflowRejected(Exception):
    """The workflow's validator refused the request; ``code`` is the rejection type."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass
class _AccountQueue:
    start_input: AccountWorkflowInput
    pending: list[tuple[TelephonyRequest, asyncio.Future[TelephonyResult]]] = field(
        default_factory=list
    )
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
    ) -> None:
        self._client = client
        self._task_queue = task_queue
        self._max_in_flight = max_in_flight
        self._max_batch = max_batch
        self._deadline = deadline_seconds
        self._queues: dict[str, _AccountQueue] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.updates_sent = 0

    # --- telephony --------------------------------------------------------------------

    async def telephony(
        self, start_input: AccountWorkflowInput, request: TelephonyRequest
    ) -> TelephonyResult:
        account_id = start_input.profile.account_id
        queue = self._queues.get(account_id)
        if queue is None:
            queue = self._queues[account_id] = _AccountQueue(start_input)
        future: asyncio.Future[TelephonyResult] = asyncio.get_running_loop().create_future()
        queue.pending.append((request, future))
        self._pump(account_id, queue)
        return await future

    def _pump(self, account_id: str, queue: _AccountQueue) -> None:
        while queue.pending and queue.in_flight < self._max_in_flight:
            batch = queue.pending[: self._max_batch]
            del queue.pending[: self._max_batch]
            queue.in_flight += 1
            task = asyncio.create_task(self._send(account_id, queue, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(
        self,
        account_id: str,
        queue: _AccountQueue,
        batch: list[tuple[TelephonyRequest, asyncio.Future[TelephonyResult]]],
    ) -> None:
        try:
            results: list[TelephonyResult] = await self._update_with_start(
                queue.start_input,
                AccountWorkflow.telephony,
                TelephonyBatch([request for request, _ in batch]),
            )
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
        except Exception as err:  # every waiter must hear about the failure
            for _, future in batch:
                if not future.done():
                    future.set_exception(err)
        finally:
            queue.in_flight -= 1
            if queue.pending:
                self._pump(account_id, queue)
            elif queue.in_flight == 0 and self._queues.get(account_id) is queue:
                del self._queues[account_id]

    # --- settings and queries -----------------------------------------------------------

    async def change_settings(
        self, start_input: AccountWorkflowInput, change: SettingsChange
    ) -> AccountSnapshot:
        return await self._update_with_start(start_input, AccountWorkflow.change_settings, change)

    async def payment_method(
        self, start_input: AccountWorkflowInput, change: PaymentMethodChange
    ) -> AccountSnapshot:
        return await self._update_with_start(start_input, AccountWorkflow.payment_method, change)

    async def snapshot(self, start_input: AccountWorkflowInput) -> AccountSnapshot:
        workflow_id = workflow_id_for(start_input.profile.account_id)

        async def query() -> AccountSnapshot:
            try:
                handle = self._client.get_workflow_handle(workflow_id)
                return await handle.query(AccountWorkflow.snapshot)
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
            await self.ensure_started(start_input)
            raise _Retry("workflow started")

        return await self._retrying(query)

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
        self, start_input: AccountWorkflowInput, update: Any, arg: Any
    ) -> Any:
        update_id = str(uuid.uuid4())

        async def attempt() -> Any:
            operation = WithStartWorkflowOperation(
                AccountWorkflow.run,
                start_input,
                id=workflow_id_for(start_input.profile.account_id),
                task_queue=self._task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
            self.updates_sent += 1
            try:
                return await self._client.execute_update_with_start_workflow(
                    update, arg, start_workflow_operation=operation, id=update_id
                )
            except WorkflowUpdateFailedError as err:
                cause = err.cause
                if isinstance(cause, ApplicationError):
                    if cause.type == RETRY_LATER:
                        raise _Retry(cause.message) from err
                    raise WorkflowRejected(cause.type or "rejected", cause.message) from err
                raise

        return await self._retrying(attempt)

    async def _retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._deadline
        delay = 0.01
        while True:
            try:
                return await attempt()
            except _Retry:
                pass
            except WorkflowUpdateRPCTimeoutOrCancelledError:
                pass
            except RPCError as err:
                if err.status not in TRANSIENT_RPC:
                    raise
            if loop.time() + delay > deadline:
                raise DispatchTimeout("the account workflow did not answer in time")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class _Retry(Exception):
    pass
