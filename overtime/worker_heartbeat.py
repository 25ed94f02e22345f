"""The worker's heartbeat: a row in ``worker_heartbeat`` renewed every few seconds.

``/healthz`` (starter/health.py) cannot tell a dead worker from an idle one quickly by
Temporal's pollers alone: the server holds an idle worker's long poll for about a minute
and keeps listing a dead worker's pollers for about five. So each worker process also
writes, every ``worker_heartbeat_seconds``, one row per task queue it serves, and the API
calls the worker down when no row is newer than three intervals.

A beat is written only when this process can reach Temporal (``GetSystemInfo``, with a
short deadline) and none of its Temporal workers has stopped: a worker cut off from the server is
as useless as a dead one. The database work runs on one thread of its own, never on the
event loop or the activity pool (a daemon thread: a write hung on a dead database never
keeps the process from exiting); a write still running when the next beat is due makes
that beat skip (a hung database never piles up threads), and a failed write is logged and
tried again next beat. Nothing here stops or crashes the worker.

The writes use an engine of their own (overtime/db.py ``bounded_engine``: one connection,
no overflow), never the shared pool of the activities: with 32 activity threads busy, or
the pool exhausted at peak load, beats would wait for a connection and every API would
call the worker down exactly when it is busiest. Every wait of a write ends after
``db_timeout_seconds()`` (a few seconds, well inside the 3-beat window): connecting, a
statement, a lock (PostgreSQL ``statement_timeout``/``lock_timeout``; SQLite's busy
timeout) and a dead network (TCP keepalives, ``tcp_user_timeout``), so a locked table
costs a beat or two, not the worker's health, and the next beat after the lock is gone
succeeds.

A graceful stop (``shutdown()``) marks the process's rows stopped, so ``/healthz`` names
it at once; a crash leaves them to age. Rows are kept for a day (then deleted by any
running worker): an empty table means no worker with a heartbeat ran, and ``/healthz``
then judges by the pollers alone (workers older than the heartbeat, during an upgrade).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy import Table, delete, insert, update
from sqlalchemy.engine import Engine
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

from overtime.db import bounded_engine, table_of
from overtime.models import WorkerHeartbeat
from overtime.settings import Settings

log = logging.getLogger(__name__)

# Rows whose last beat is older than this are deleted (a crashed worker's leftovers).
RETENTION = timedelta(days=1)
PRUNE_EVERY_SECONDS = 3600.0
# A Temporal check or a goodbye write waits at most this long.
CALL_TIMEOUT_SECONDS = 2.0
# A beat waits for its write this much longer than the write's own database timeouts.
WRITE_GRACE_SECONDS = 1.0

TABLE: Table = table_of(WorkerHeartbeat)

T = TypeVar("T")


def db_timeout_seconds(interval: float) -> float:
    """How long any one wait of a heartbeat write may take: about one interval, at least
    a second (a connect needs it) and at most three (a stuck write costs one beat, maybe
    two, of the three /healthz allows)."""
    return min(3.0, max(1.0, interval))


class _SerialThread:
    """Runs submitted calls one after another on one daemon thread.

    Not a ``ThreadPoolExecutor``: its threads are joined at interpreter exit, so a write
    hung on a dead database would keep ``python -m worker`` from exiting."""

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[tuple[Any, concurrent.futures.Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._name = name
        self._thread: threading.Thread | None = None  # started by the first call

    def submit(self, fn: Any, *args: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._calls.put(((fn, args), future))
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        return future

    def close(self) -> None:
        """The thread ends after the calls already submitted (without waiting for them)."""
        self._calls.put(None)

    def _run(self) -> None:
        while (item := self._calls.get()) is not None:
            (fn, args), future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as err:
                future.set_exception(err)
            else:
                future.set_result(result)


async def _wait(future: concurrent.futures.Future[T], seconds: float) -> bool:
    """Whether ``future`` finished within ``seconds``. Only the wait ends: the call runs
    on, and its late outcome is never left unretrieved on an asyncio wrapper ("Future
    exception was never retrieved")."""
    waiting = asyncio.wrap_future(future)
    done, _ = await asyncio.wait({waiting}, timeout=seconds)
    if not done:
        waiting.cancel()  # a running call cannot be cancelled; the wrapper is
        return False
    waiting.exception()  # retrieved (the caller reads the outcome from ``future``)
    return True


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
        self._thread = _SerialThread("overtime-heartbeat")
        # Its own engine, never the activities' pool (see the module's docstring).
        self.db_timeout = db_timeout_seconds(self.interval)
        self.engine: Engine = bounded_engine(self._url, self.db_timeout)
        self._write: concurrent.futures.Future[None] | None = None
        self._write_settled = True  # its outcome counted (beat or failure)
        self._write_prunes = False
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
                try:
                    await self._beat()
                except Exception as err:  # a bug here must not end the beating for good
                    self._missed("an unexpected error", err)
                try:
                    await asyncio.wait_for(self._stop.wait(), self.interval)
                except TimeoutError:
                    pass
            # Only a graceful stop says goodbye: a cancelled run (the process going down
            # hard) just stops beating, and its rows age like a crash's.
            await self._goodbye()
        finally:
            # After the goodbye (in order on the thread); a hung write leaves the daemon
            # thread behind, which never holds up the process's exit.
            self._thread.submit(self.engine.dispose)
            self._thread.close()
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
        if self._write is not None and not self._write_settled:
            if not self._write.done():
                self._missed("the previous write has not finished")
                return
            self._settle()  # it ended after its beat stopped waiting: count it now
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
        self._write_settled, self._write_prunes = False, prune
        # Every wait of the write ends after db_timeout (a connect, a lock, a statement),
        # so this wait normally sees its outcome, a failure included.
        if await _wait(self._write, self.db_timeout + WRITE_GRACE_SECONDS):
            self._settle()
        # else still running: the next beat sees it and skips

    def _settle(self) -> None:
        """Counts the outcome of the latest write, once."""
        if self._write is None or not self._write.done():
            return
        self._write_settled = True
        error = self._write.exception()
        if error is not None:
            self._missed("the database write failed", error)
            return
        self.beats += 1
        if self._write_prunes:
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
        with self.engine.begin() as connection:
            for task_queue in self.task_queues:
                # Only this process writes its rows: update-then-insert needs no upsert
                # dialect and cannot race.
                updated = connection.execute(
                    update(TABLE)
                    .where(TABLE.c.worker_id == self.worker_id, TABLE.c.task_queue == task_queue)
                    .values(seen_at=now, stopped_at=None)
                )
                if updated.rowcount == 0:
                    connection.execute(
                        insert(TABLE).values(
                            worker_id=self.worker_id,
                            task_queue=task_queue,
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
        if not await _wait(goodbye, CALL_TIMEOUT_SECONDS):
            log.warning("worker heartbeat: the stop was not recorded in time")
        elif goodbye.exception() is not None:
            log.warning(
                "worker heartbeat: the stop was not recorded",
                extra={"error": repr(goodbye.exception())},
            )

    def _write_goodbye(self) -> None:
        now = datetime.now(UTC)
        with self.engine.begin() as connection:
            connection.execute(
                update(TABLE)
                .where(TABLE.c.worker_id == self.worker_id)
                .values(seen_at=now, stopped_at=now)
            )
