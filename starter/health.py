"""Readiness (``GET /healthz``) and liveness (``GET /livez``).

``/healthz`` answers 200 only when the API can do its work: Temporal answers, a worker
is polling each task queue the account workflows need, and the database answers a read
of a real table (and, on SQLite, would grant the write lock). Each check gives up after
``health_timeout_seconds`` (at most 2 s) and all run at once, so the answer comes within
that time whatever hangs; the body names every dependency and what is down. A load
balancer takes the process out of rotation on 503; nothing should restart it for that
(the dependency is what is down): ``/livez`` says only that the process answers.

The worker. Temporal lists a task queue's pollers with the time each last polled, and
keeps listing a dead worker for minutes (five, the dev server's poller history). A live
idle worker's poll is held by the server for up to ``matching.longPollExpirationInterval``
(a minute by default) before it polls again, so its last poll can be that old: a worker
counts as up when it polled within ``health_worker_seen_seconds`` (75 s by default).
Measured against the dev server (Temporal CLI 1.9.1, server 1.32.0): an idle live
worker's last poll ages to ~60 s, then resets; a stopped worker stays listed, its age
growing without bound. The queues checked: the workflow queue (workflow and activity
pollers: the account workflows and their ledger activities) and the Stripe activity
queue. The sticky queues are the workers' own and die with them: not checked.
The comparison uses this machine's clock against the Temporal server's (keep them in
sync; NTP is far tighter than the margin above).

The pollers alone take up to ``health_worker_seen_seconds`` to show a dead worker, so each
worker process also writes a heartbeat row per task queue every
``worker_heartbeat_seconds`` (overtime/worker_heartbeat.py; only while it reaches
Temporal). The worker is up for a queue when its pollers pass the rule above AND a
heartbeat for it is newer than ``HEARTBEAT_MISSES`` intervals: a crashed or cut-off worker
shows within ~15 s by default, a graceful stop (which marks its rows stopped) at once, and
an idle live worker beats all the same. No heartbeat row for a queue at all means workers
older than the heartbeat (an upgrade under way): the pollers alone decide, and the detail
says so; likewise when the database did not answer (it is reported down itself). The
heartbeat is read by the database probe below, in the same connection and time bound, and
its times come from the workers' clocks (the same NTP caveat).

The database probe runs on a daemon thread of its own, never the shared thread pool, and
at most ``MAX_PROBE_THREADS`` (2) ever run: a hung database must not pile up threads.
Probes use an engine of their own (one connection, overtime/db.py ``bounded_engine``) with
database-side timeouts (a slow statement or a lock wait ends with the timeout) and, on
PostgreSQL, TCP keepalives and ``tcp_user_timeout``: a connection black-holed by a
failover fails within a few seconds instead of sitting in ``recv`` for the kernel's ~15
minutes. A probe still running past its timeout is abandoned: the next round starts a
second one on a fresh engine (so a database back after a failover is seen at once, not
when the stuck connection finally errors), and the abandoned engine is disposed of when
its probe returns. While both are running the database is reported down at once,
without starting another.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    DescribeTaskQueueRequest,
    DescribeTaskQueueResponse,
)
from temporalio.client import Client

from overtime.db import bounded_engine
from overtime.settings import Settings
from starter import schemas

log = logging.getLogger(__name__)

# The table the probe reads: the one every telephony request reads on a cache miss.
PROBE_TABLE = "account"
# A worker is down when none of its heartbeats is newer than this many intervals (one
# beat lost to a slow write or a Temporal blip is not an alarm).
HEARTBEAT_MISSES = 3
# Database probe threads alive at once, at most: one abandoned past its timeout, and a
# fresh one beside it.
MAX_PROBE_THREADS = 2


@dataclass(frozen=True)
class Beat:
    """The newest heartbeats recorded for one task queue."""

    newest_live: datetime | None  # the newest beat of a worker not stopped
    newest: datetime  # the newest beat or goodbye of any worker
    stopped: bool  # the newest is a graceful stop


# Per task queue; only queues with at least one row (none: judged by the pollers alone).
Beats = dict[str, Beat]

router = APIRouter()


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str | None = None

    def out(self) -> schemas.CheckOut:
        return schemas.CheckOut(ok=self.ok, detail=self.detail)


# How long one round of checks answers every /healthz (short: a dependency that goes down
# shows within a second).
ANSWER_REUSE_SECONDS = 1.0


class HealthChecker:
    """The checks behind ``/healthz`` for one API process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.timeout = settings.health_timeout_seconds
        self._url = settings.resolved_database_url()
        # The engine new probes use; replaced when a probe on it is abandoned.
        self._engine: Engine | None = None
        # The newest database probe and when it started; probes still running (the
        # newest, and any abandoned past its timeout), at most MAX_PROBE_THREADS.
        self._probe: concurrent.futures.Future[Beats] | None = None
        self._probe_started = 0.0
        self._running: set[concurrent.futures.Future[Beats]] = set()
        # Instruments (tests): probe threads started.
        self.probes_started = 0
        # The latest round of checks (see check()).
        self._round: asyncio.Future[dict[schemas.Dependency, Check]] | None = None
        self._round_started = 0.0

    async def check(self, client: Client | None) -> dict[schemas.Dependency, Check]:
        """The checks, shared: concurrent callers wait for the same round, and a round's
        answer serves everyone for ``ANSWER_REUSE_SECONDS`` (``/healthz`` is public, so a
        flood of it must not become a flood of Temporal RPCs and database probes)."""
        loop = asyncio.get_running_loop()
        if self._round is not None and (
            not self._round.done() or loop.time() - self._round_started < ANSWER_REUSE_SECONDS
        ):
            return await asyncio.shield(self._round)
        self._round_started = loop.time()
        self._round = asyncio.ensure_future(self._check_now(client))
        return await asyncio.shield(self._round)

    async def _check_now(self, client: Client | None) -> dict[schemas.Dependency, Check]:
        (temporal, polls), (database, beats) = await asyncio.gather(
            self._temporal(client), self._database()
        )
        worker = self._worker(polls, beats) if temporal.ok else polls
        return {"temporal": temporal, "worker": worker, "database": database}

    def _worker(self, polls: Check, beats: Beats | None) -> Check:
        """The poller rule (``polls``) and the heartbeat, both, per queue."""
        problems = [polls.detail] if polls.detail else []
        notes: list[str] = []
        now = datetime.now(UTC)
        limit = HEARTBEAT_MISSES * self.settings.worker_heartbeat_seconds
        for queue in dict.fromkeys(name for name, _, _ in self._queues()):
            if beats is None:
                notes.append(f"{queue}: heartbeat unknown (database), judged by polls alone")
                continue
            beat = beats.get(queue)
            if beat is None:
                notes.append(f"{queue}: no worker heartbeat recorded, judged by polls alone")
                continue
            if beat.newest_live is not None and _age(now, beat.newest_live) <= limit:
                continue
            stopped = " (stopped)" if beat.stopped else ""
            problems.append(
                f"{queue}: no worker heartbeat for {_age(now, beat.newest):.0f} s{stopped}"
            )
        if problems:
            return Check(False, "; ".join(problems + notes))
        return Check(True, "; ".join(notes) or None)

    # --- Temporal and the worker ------------------------------------------------------

    def _queues(self) -> list[tuple[str, TaskQueueType.ValueType, str]]:
        s = self.settings
        return [
            (s.task_queue, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, "workflow"),
            (s.task_queue, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY, "activity"),
            (s.stripe_task_queue, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY, "activity"),
        ]

    async def _temporal(self, client: Client | None) -> tuple[Check, Check]:
        if client is None:
            down = Check(False, "not connected yet")
            return down, down
        queues = self._queues()
        answers = await asyncio.gather(
            *(self._describe(client, name, kind) for name, kind, _ in queues),
            return_exceptions=True,
        )
        failures = [a for a in answers if isinstance(a, BaseException)]
        if len(failures) == len(answers):
            detail = _failure(failures[0], self.timeout)
            log.warning("health: Temporal down", extra={"error": repr(failures[0])})
            return Check(False, detail), Check(False, "unknown: Temporal did not answer")
        now = datetime.now(UTC)
        stale: list[str] = []
        for (name, _, label), answer in zip(queues, answers, strict=True):
            if isinstance(answer, BaseException):
                stale.append(f"{name} ({label}): {_failure(answer, self.timeout)}")
                continue
            ages = [
                (now - p.last_access_time.ToDatetime(UTC)).total_seconds()
                for p in answer.pollers
                if p.HasField("last_access_time")
            ]
            if not ages:
                stale.append(f"{name} ({label}): no poller")
            elif min(ages) > self.settings.health_worker_seen_seconds:
                stale.append(f"{name} ({label}): last polled {min(ages):.0f} s ago")
        if stale:
            return Check(True), Check(False, "; ".join(stale))
        return Check(True), Check(True)

    async def _describe(
        self, client: Client, name: str, kind: TaskQueueType.ValueType
    ) -> DescribeTaskQueueResponse:
        request = DescribeTaskQueueRequest(
            namespace=self.settings.temporal_namespace,
            task_queue=TaskQueue(name=name),
            task_queue_type=kind,
        )
        # The RPC's own deadline, and ours around it (the SDK's retries included).
        async with asyncio.timeout(self.timeout):
            return await client.workflow_service.describe_task_queue(
                request, retry=False, timeout=timedelta(seconds=self.timeout)
            )

    # --- the database -----------------------------------------------------------------

    async def _database(self) -> tuple[Check, Beats | None]:
        """The database check, and the heartbeats the probe read (None: not read)."""
        now = time.monotonic()
        probe = self._probe
        self._running = {f for f in self._running if not f.done()}
        if probe is not None and not probe.done() and now - self._probe_started < self.timeout:
            pass  # another /healthz started it just now: share its answer
        elif len(self._running) >= MAX_PROBE_THREADS:
            stuck_for = now - self._probe_started
            detail = f"the previous probe has not answered for {stuck_for:.0f} s"
            return Check(False, detail), None
        else:
            if probe is not None and not probe.done():
                self._abandon(probe)
            probe = self._start_probe()
        remaining = self._probe_started + self.timeout - now
        waiting = asyncio.wrap_future(probe)
        done, _ = await asyncio.wait({waiting}, timeout=max(remaining, 0))
        if not done:
            # Only this wait ends: the probe runs on (a running future cannot be
            # cancelled), and its late outcome is not left unretrieved on this wrapper.
            waiting.cancel()
            log.warning("health: database probe timed out", extra={"seconds": self.timeout})
            return Check(False, f"did not answer within {self.timeout:g} s"), None
        waiting.exception()  # retrieved on the wrapper too (read from the probe below)
        error = probe.exception()
        if error is not None:
            log.warning("health: database down", extra={"error": repr(error)})
            return Check(False, _failure(error, self.timeout)), None
        return Check(True), probe.result()

    def _abandon(self, probe: concurrent.futures.Future[Beats]) -> None:
        """A probe stuck past its timeout: new probes get a fresh engine (its connection may
        be the dead one), and the old engine is disposed of when the probe returns."""
        engine, self._engine = self._engine, None
        if engine is not None:
            # Runs on the probe's thread when it finishes (never on the event loop).
            probe.add_done_callback(lambda _: engine.dispose())
        log.warning("health: database probe abandoned past its timeout")

    def _start_probe(self) -> concurrent.futures.Future[Beats]:
        future: concurrent.futures.Future[Beats] = concurrent.futures.Future()
        future.set_running_or_notify_cancel()
        # Chosen here, on the event loop: the thread never races _abandon() for it.
        engine = None if self._is_sqlite() else self._probe_engine()

        def run() -> None:
            try:
                beats = self._probe_database(engine)
            except BaseException as err:  # reported to whoever waits
                future.set_exception(err)
            else:
                future.set_result(beats)

        self._probe, self._probe_started = future, time.monotonic()
        self._running.add(future)
        self.probes_started += 1
        # A daemon thread: one stuck in a database call must not keep the process from
        # exiting (a pool's threads are joined at exit).
        threading.Thread(target=run, name="overtime-health-db", daemon=True).start()
        return future

    def _heartbeat_query(self) -> tuple[str, dict[str, str]]:
        """The newest beats per queue: one row per queue, however many workers ran."""
        queues = list(dict.fromkeys(name for name, _, _ in self._queues()))
        params = {f"q{i}": queue for i, queue in enumerate(queues)}
        names = ", ".join(f":{key}" for key in params)
        return (
            "SELECT task_queue, MAX(CASE WHEN stopped_at IS NULL THEN seen_at END), "
            f"MAX(seen_at), MAX(stopped_at) FROM worker_heartbeat WHERE task_queue IN ({names}) "
            "GROUP BY task_queue",
            params,
        )

    def _is_sqlite(self) -> bool:
        return make_url(self._url).get_backend_name() == "sqlite"

    def _probe_database(self, engine: Engine | None) -> Beats:
        if engine is None:
            return self._probe_sqlite(make_url(self._url).database or "")
        query, params = self._heartbeat_query()
        with engine.connect() as connection:
            connection.execute(text(f"SELECT 1 FROM {PROBE_TABLE} LIMIT 1"))
            rows = connection.execute(text(query), params).fetchall()
        return _beats([tuple(row) for row in rows])

    def _probe_sqlite(self, path: str) -> Beats:
        """A read, then the write lock taken and given back at once.

        In WAL mode (overtime/db.py) readers never wait for a writer, so a read alone
        would call a database healthy that no one can write to for as long as another
        connection holds its write lock (every usage report, sign-in, account waits).
        """
        deadline = time.monotonic() + self.timeout
        # mode=rw: a missing file is an error, not a new empty database.
        connection = sqlite3.connect(
            f"file:{quote(path)}?mode=rw", timeout=self.timeout, isolation_level=None, uri=True
        )
        try:
            connection.execute(f"SELECT 1 FROM {PROBE_TABLE} LIMIT 1").fetchall()
            query, params = self._heartbeat_query()
            rows = connection.execute(query, params).fetchall()
            left_ms = max(1, int((deadline - time.monotonic()) * 1000))
            connection.execute(f"PRAGMA busy_timeout = {left_ms}")
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("ROLLBACK")
        finally:
            connection.close()
        return _beats(rows)

    def _probe_engine(self) -> Engine:
        """One connection of its own, every wait bounded (PostgreSQL: server-side
        timeouts, TCP keepalives and ``tcp_user_timeout``)."""
        if self._engine is None:
            self._engine = bounded_engine(self._url, self.timeout)
        return self._engine


def _beats(rows: list[tuple[Any, ...]]) -> Beats:
    return {
        queue: Beat(
            newest_live=_utc(live) if live is not None else None,
            newest=_utc(newest),
            stopped=stopped is not None and _utc(stopped) >= _utc(newest),
        )
        for queue, live, newest, stopped in rows
    }


def _utc(value: datetime | str) -> datetime:
    """A time as stored: aware on PostgreSQL; on SQLite, UTC text (overtime/models.py)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _age(now: datetime, then: datetime) -> float:
    return max(0.0, (now - then).total_seconds())


def _failure(error: BaseException, timeout: float) -> str:
    """What the public body says: the kind of failure, never the server's message."""
    if isinstance(error, TimeoutError | asyncio.TimeoutError):
        return f"did not answer within {timeout:g} s"
    status = getattr(error, "status", None)
    name = getattr(status, "name", None)
    return f"failed: {type(error).__name__}" + (f" ({name})" if name else "")


@router.get(
    "/healthz",
    response_model=schemas.HealthOut,
    responses={503: {"model": schemas.HealthOut, "description": "A dependency is down."}},
)
async def healthz(request: Request) -> JSONResponse:
    """Readiness: 200 when Temporal, a worker and the database all answer, else 503."""
    checker: HealthChecker = request.app.state.health
    checks = await checker.check(getattr(request.app.state, "temporal", None))
    down = [name for name, check in checks.items() if not check.ok]
    body = schemas.HealthOut(
        status="degraded" if down else "ok",
        temporal=checks["temporal"].ok,
        worker=checks["worker"].ok,
        database=checks["database"].ok,
        down=down,
        checks={name: check.out() for name, check in checks.items()},
    )
    return JSONResponse(body.model_dump(), status_code=503 if down else 200)


@router.get("/livez", response_model=schemas.LiveOut)
async def livez() -> schemas.LiveOut:
    """Liveness: the process answers; no dependency is asked."""
    return schemas.LiveOut(status="alive")


def install_health(app: FastAPI, settings: Settings) -> None:
    app.state.health = HealthChecker(settings)
    app.include_router(router)
