"""The worker's heartbeat: a row in ``worker_heartbeat`` renewed every few seconds.

``/healthz`` (starter/health.py) cannot tell a dead worker from an idle one quickly by
Temporal's pollers alone: the server holds an idle worker's long poll for about a minute
and keeps listing a dead worker's pollers for about five. So each worker process also
writes, every ``worker_heartbeat_seconds``, one row per task queue it serves, and the API
calls the worker down when no row is newer than three intervals.

A beat is written only when this process can reach Temporal (``GetSystemInfo``, with a
short deadline) and none of its Temporal workers has stopped: a worker cut off from the server is
as useless as a dead one. The database work runs on one thread of its own, never on the
event loop or the activity pool; a write still running when the next beat is due makes
that beat skip (a hung database never piles up threads), and a failed write is logged and
tried again next beat. Nothing here stops or crashes the worker.

A graceful stop (``shutdown()``) marks the process's rows stopped, so ``/healthz`` names
it at once; a crash leaves them to age. Rows are kept for a day (then deleted by any
running worker): an empty table means no worker with a heartbeat ran, and ``/healthz``
then judges by the pollers alone (workers older than the heartbeat, during an upgrade).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Table, delete, insert, update
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

from overtime.db import engine_for
from overtime.models import WorkerHeartbeat
from overtime.settings import Settings

log = logging.getLogger(__name__)

# Rows whose last beat is older than this are deleted (a crashed worker's leftovers).
RETENTION = timedelta(days=1)
PRUNE_EVERY_SECONDS = 3600.0
# A Temporal check or a goodbye write waits at most this long.
CALL_TIMEOUT_SECONDS = 2.0

TABLE: Table = WorkerHeartbeat.__table__  # type: ignore[assignment]


class Runnable(Protocol):
    """What ``python -m worker`` and the tests run: a Temporal ``Worker`` or the
    heartbeat. ``run()`` returns once ``shutdown()`` has finished."""

    async def run(self) -> None: ...

    async def shutdown(self) -> None: ...

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, exc_type: type[BaseException] | None, *args: Any) -> None: ...


class _Stoppable(Protocol):
    @property
    def is_shutdown(self) -> bool: ...


class WorkerHeartbeatRunner:
    """Beats for this process's workers until ``shutdown()``."""

    def __init__(
        self,
        client: Client,
        settings: Settings,
        task_queues: Sequence[str],
        workers: Sequence[_Stoppable] = (),
    ) -> None:
        self._client = client
        self._url = settings.resolved_database_url()
        self.interval = settings.worker_heartbeat_seconds
        self.task_queues = list(dict.fromkeys(task_queues))
        # The client's identity (pid@host) names the process; the suffix tells apart two
        # runs of it (a restart in the same process, two in one test process).
        self.worker_id = f"{client.identity}/{uuid.uuid4().hex[:8]}"[:255]
        self._workers = list(workers)
        self._started_at = datetime.now(UTC)
        self._stop = asyncio.Event()
        self._done = asyncio.Event()
        self._running = False
        # One thread: writes run in order (a goodbye can never be overtaken by a late
        # beat) and a hung database holds one thread, not more.
        self._thread = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="overtime-heartbeat"
        )
        self._write: concurrent.futures.Future[None] | None = None
        self._last_prune = -PRUNE_EVERY_SECONDS
        self._context_task: asyncio.Task[None] | None = None
        # Instruments (tests, logs): beats written and beats that failed or were skipped.
        self.beats = 0
        self.failures = 0

    # --- the Runnable shape ----------------------------------------------------------

    async def run(self) -> None:
        if self._running or self._done.is_set():
            raise RuntimeError("the heartbeat runs once")
        self._running = True
        try:
            while not self._stop.is_set():
                await self._beat()
                try:
                    await asyncio.wait_for(self._stop.wait(), self.interval)
                except TimeoutError:
                    pass
            # Only a graceful stop says goodbye: a cancelled run (the process going down
            # hard) just stops beating, and its rows age like a crash's.
            await self._goodbye()
        finally:
            self._thread.shutdown(wait=False)
            self._done.set()

    async def shutdown(self) -> None:
        self._stop.set()
        if self._running:
            await self._done.wait()

    async def __aenter__(self) -> WorkerHeartbeatRunner:
        self._context_task = asyncio.create_task(self.run(), name="overtime-heartbeat")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *args: Any) -> None:
        await self.shutdown()
        if self._context_task is not None:
            await self._context_task

    # --- one beat --------------------------------------------------------------------

    async def _beat(self) -> None:
        if self._write is not None and not self._write.done():
            self._missed("the previous write has not finished")
            return
        stopped = sum(1 for w in self._workers if w.is_shutdown)
        if stopped:
            # A Temporal worker that stopped (a fatal error) leaves the process useless.
            self._missed(f"{stopped} worker(s) stopped")
            return
        try:
            async with asyncio.timeout(CALL_TIMEOUT_SECONDS):
                await self._client.workflow_service.get_system_info(
                    GetSystemInfoRequest(),
                    retry=False,
                    timeout=timedelta(seconds=CALL_TIMEOUT_SECONDS),
                )
        except Exception as err:
            self._missed("Temporal did not answer", err)
            return
        prune = time.monotonic() - self._last_prune >= PRUNE_EVERY_SECONDS
        self._write = self._thread.submit(self._write_beat, prune)
        done, _ = await asyncio.wait({asyncio.wrap_future(self._write)}, timeout=self.interval)
        if not done:
            return  # still running: the next beat sees it and skips
        error = self._write.exception()
        if error is not None:
            self._missed("the database write failed", error)
            return
        self.beats += 1
        if prune:
            self._last_prune = time.monotonic()

    def _missed(self, why: str, error: BaseException | None = None) -> None:
        self.failures += 1
        log.warning(
            "worker heartbeat: no beat, %s",
            why,
            extra={"worker_id": self.worker_id, "error": repr(error) if error else None},
        )

    def _write_beat(self, prune: bool) -> None:
        now = datetime.now(UTC)
        with engine_for(self._url).begin() as connection:
            for queue in self.task_queues:
                # Only this process writes its rows: update-then-insert needs no upsert
                # dialect and cannot race.
                updated = connection.execute(
                    update(TABLE)
                    .where(TABLE.c.worker_id == self.worker_id, TABLE.c.task_queue == queue)
                    .values(seen_at=now, stopped_at=None)
                )
                if updated.rowcount == 0:
                    connection.execute(
                        insert(TABLE).values(
                            worker_id=self.worker_id,
                            task_queue=queue,
                            started_at=self._started_at,
                            seen_at=now,
                            stopped_at=None,
                        )
                    )
            if prune:
                connection.execute(delete(TABLE).where(TABLE.c.seen_at < now - RETENTION))

    # --- the goodbye -----------------------------------------------------------------

    async def _goodbye(self) -> None:
        goodbye = self._thread.submit(self._write_goodbye)
        done, _ = await asyncio.wait({asyncio.wrap_future(goodbye)}, timeout=CALL_TIMEOUT_SECONDS)
        if not done:
            log.warning("worker heartbeat: the stop was not recorded in time")
        elif goodbye.exception() is not None:
            log.warning(
                "worker heartbeat: the stop was not recorded",
                extra={"error": repr(goodbye.exception())},
            )

    def _write_goodbye(self) -> None:
        now = datetime.now(UTC)
        with engine_for(self._url).begin() as connection:
            connection.execute(
                update(TABLE)
                .where(TABLE.c.worker_id == self.worker_id)
                .values(seen_at=now, stopped_at=now)
            )
