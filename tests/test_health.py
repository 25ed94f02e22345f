"""``/healthz`` tells the truth; ``/livez`` only says the process answers.

A Temporal dev server of this module's own, whose long poll ends after 2 s instead of a
minute: a live idle worker then polls every 2 s. ``health_worker_seen_seconds`` keeps its
production default (75 s), so a stopped worker's pollers look alive for the whole of a
test: it is the worker heartbeat (every second here) that names it. Where the pollers
alone decide (no heartbeat rows), a test shortens the rule on the running checker. The
database is the suite's (SQLite, or PostgreSQL in the second pass), hung by another
connection holding a lock.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import delete, select
from temporalio.testing import WorkflowEnvironment

from overtime.db import engine_for, init_db
from overtime.settings import Settings
from overtime.temporal import with_codec
from overtime.worker_heartbeat import TABLE, WorkerHeartbeatRunner
from starter.health import (
    ANSWER_REUSE_SECONDS,
    HEARTBEAT_MISSES,
    MAX_PROBE_THREADS,
    HealthChecker,
)
from tests.conftest import TEMPORAL_CLI, Api, WorkerControl, eventually, start_api, stop_api
from tests.db_locks import table_locked

LONG_POLL_SECONDS = 2
# The poller rule, shortened on the checker only where the pollers alone decide.
WORKER_SEEN_SECONDS = 5.0
HEARTBEAT_SECONDS = 1.0
# The checks give up after 2 s (health_timeout_seconds); the answer comes just after.
ANSWER_BOUND = 2.5


@dataclass
class Stack:
    env: WorkflowEnvironment
    worker: WorkerControl
    api: Api
    server: uvicorn.Server
    temporal_stopped: bool = False

    @property
    def checker(self) -> HealthChecker:
        return self.server.config.app.state.health  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
async def stack(settings: Settings) -> AsyncIterator[Stack]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(TEMPORAL_CLI),
        dev_server_log_level="error",
        dev_server_startup_timeout=timedelta(seconds=60),  # see tests/conftest.py
        dev_server_extra_args=[
            "--dynamic-config-value",
            "frontend.enableUpdateWorkflowExecution=true",
            "--dynamic-config-value",
            f'matching.longPollExpirationInterval="{LONG_POLL_SECONDS}s"',
        ],
    )
    host, port = env.client.service_client.config.target_host.split(":")
    own = settings.model_copy(
        update={
            "temporal_host": host,
            "temporal_port": int(port),
            "task_queue": f"overtime-health-{uuid.uuid4().hex[:8]}",
            "worker_heartbeat_seconds": HEARTBEAT_SECONDS,
        }
    )
    client = with_codec(env.client, own)
    with ThreadPoolExecutor(max_workers=32) as executor:
        worker = WorkerControl(client, own, executor)
        await worker.start()
        server, task, api = await start_api(own, client)
        stack = Stack(env, worker, api, server)
        try:
            yield stack
        finally:
            await stop_api(server, task, api)
            if worker.workers:
                await worker.stop()
            if not stack.temporal_stopped:
                await env.shutdown()


async def health(api: Api) -> tuple[int, dict[str, Any], float]:
    started = time.monotonic()
    response = await api.anonymous.get("/healthz")
    return response.status_code, response.json(), time.monotonic() - started


async def assert_alive(api: Api) -> None:
    started = time.monotonic()
    response = await api.anonymous.get("/livez")
    assert (response.status_code, response.json()) == (200, {"status": "alive"})
    assert time.monotonic() - started < 1.0


def assert_down(status: int, body: dict[str, Any], *names: str) -> None:
    assert status == 503, body
    assert body["status"] == "degraded"
    assert body["down"] == list(names)
    for name in ("temporal", "worker", "database"):
        assert body[name] is (name not in names)  # the flags kept for existing monitors
        assert body["checks"][name]["ok"] is (name not in names)
        if name in names:
            assert body["checks"][name]["detail"], body


async def test_all_up_is_200_naming_each_check(stack: Stack) -> None:
    _, body, elapsed = await eventually(
        lambda: _when(health(stack.api), lambda r: r[0] == 200), timeout=20
    )
    assert body["status"] == "ok" and body["down"] == []
    assert {name: check["ok"] for name, check in body["checks"].items()} == {
        "temporal": True,
        "worker": True,
        "database": True,
    }
    assert elapsed < ANSWER_BOUND
    assert body["checks"]["worker"]["detail"] is None  # pollers and heartbeat both seen
    # An idle live worker stays up: its polls come every LONG_POLL_SECONDS and its
    # heartbeat every HEARTBEAT_SECONDS, for many times the heartbeat limit.
    for _ in range(4):
        await asyncio.sleep(LONG_POLL_SECONDS)
        status, body, _ = await health(stack.api)
        assert status == 200, body
    await assert_alive(stack.api)


def worker_detail(body: dict[str, Any]) -> str:
    return body["checks"]["worker"]["detail"] or ""


async def wait_for_503(stack: Stack, within: float) -> tuple[dict[str, Any], float]:
    """Polls /healthz until it says 503; each answer in time, /livez alive throughout."""
    started = time.monotonic()
    while True:
        status, body, elapsed = await health(stack.api)
        assert elapsed < ANSWER_BOUND
        await assert_alive(stack.api)
        if status == 503:
            return body, time.monotonic() - started
        assert time.monotonic() - started < within, body
        await asyncio.sleep(0.25)


async def test_a_stopped_worker_is_named_at_once_by_its_heartbeat(stack: Stack) -> None:
    await eventually(lambda: _when(health(stack.api), lambda r: r[0] == 200), timeout=20)
    await stack.worker.stop()
    try:
        # A graceful stop marks the heartbeat stopped: the next round of checks sees it.
        body, detected = await wait_for_503(stack, within=ANSWER_REUSE_SECONDS + 2)
        assert_down(503, body, "worker")
        detail = worker_detail(body)
        assert f"{stack.api.settings.task_queue}: no worker heartbeat" in detail, body
        assert "(stopped)" in detail, body
        # The pollers (75 s rule) still look alive: the heartbeat is what told.
        assert "last polled" not in detail, body
    finally:
        await stack.worker.start()
    await eventually(lambda: _when(health(stack.api), lambda r: r[0] == 200), timeout=20)
    print(f"graceful stop named after {detected:.1f} s")


async def crash(control: WorkerControl) -> None:
    """The worker process as if killed: its heartbeat just stops (no goodbye written) and
    its Temporal workers stop polling (the server keeps listing their pollers)."""
    for runnable, task in zip(control.workers, control.tasks, strict=True):
        if isinstance(runnable, WorkerHeartbeatRunner):
            task.cancel()
        else:
            await runnable.shutdown()
    await asyncio.gather(*control.tasks, return_exceptions=True)
    control.workers, control.tasks = [], []


async def test_a_crashed_worker_is_named_within_three_heartbeats(stack: Stack) -> None:
    await eventually(lambda: _when(health(stack.api), lambda r: r[0] == 200), timeout=20)
    await crash(stack.worker)
    limit = HEARTBEAT_MISSES * HEARTBEAT_SECONDS
    try:
        body, detected = await wait_for_503(stack, within=limit + ANSWER_REUSE_SECONDS + 2)
        assert_down(503, body, "worker")
        detail = worker_detail(body)
        assert f"{stack.api.settings.task_queue}: no worker heartbeat for" in detail, body
        assert "(stopped)" not in detail and "last polled" not in detail, body
        # Not before the heartbeat had aged past the limit (less the last beat's interval).
        assert detected >= limit - HEARTBEAT_SECONDS - 0.5, detected
    finally:
        await stack.worker.start()
    await eventually(lambda: _when(health(stack.api), lambda r: r[0] == 200), timeout=20)
    print(f"crashed worker named after {detected:.1f} s")


def delete_heartbeats(settings: Settings) -> None:
    with engine_for(settings.resolved_database_url()).begin() as connection:
        connection.execute(
            delete(TABLE).where(
                TABLE.c.task_queue.in_([settings.task_queue, settings.stripe_task_queue])
            )
        )


async def test_without_heartbeat_rows_the_pollers_alone_decide(stack: Stack) -> None:
    """Workers older than the heartbeat write none: /healthz falls back to the pollers."""
    await eventually(lambda: _when(health(stack.api), lambda r: r[0] == 200), timeout=20)
    checker = stack.checker
    original = checker.settings
    await stack.worker.stop()
    stopped = time.monotonic()
    delete_heartbeats(stack.api.settings)
    try:
        await asyncio.sleep(ANSWER_REUSE_SECONDS)  # past the answer given before
        # The pollers' 75 s rule still passes: up, and the detail says how it was judged.
        status, body, _ = await health(stack.api)
        assert status == 200, body
        assert "no worker heartbeat recorded, judged by polls alone" in worker_detail(body)
        # A short poller rule: the pollers alone then name the stopped worker.
        checker.settings = original.model_copy(
            update={"health_worker_seen_seconds": WORKER_SEEN_SECONDS}
        )
        body, _ = await wait_for_503(stack, within=WORKER_SEEN_SECONDS + LONG_POLL_SECONDS + 3)
        detected = time.monotonic() - stopped
        assert_down(503, body, "worker")
        detail = worker_detail(body)
        # The server still lists the dead worker's pollers; their age is what tells.
        assert f"{stack.api.settings.task_queue} (workflow): last polled" in detail, body
        assert "judged by polls alone" in detail and "heartbeat for" not in detail, body
        assert detected >= WORKER_SEEN_SECONDS - LONG_POLL_SECONDS - 1, detected
    finally:
        checker.settings = original
        await stack.worker.start()
    await eventually(lambda: _when(health(stack.api), lambda r: r[0] == 200), timeout=20)


async def test_the_heartbeat_outlives_a_database_outage(
    stack: Stack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A heartbeat whose database cannot be opened logs each failed write, keeps beating,
    writes once the database is back, and stops cleanly."""
    url = f"sqlite:///{tmp_path / 'not-yet' / 'heartbeat.db'}"  # its directory is missing
    own = stack.api.settings.model_copy(
        update={"database_url": url, "worker_heartbeat_seconds": 0.2}
    )
    heartbeat = WorkerHeartbeatRunner(stack.worker.client, own, [own.task_queue])
    task = asyncio.create_task(heartbeat.run())
    try:
        with caplog.at_level(logging.WARNING, logger="overtime.worker_heartbeat"):
            await eventually(lambda: heartbeat.failures >= 3, timeout=5)
        assert not task.done()
        assert heartbeat.beats == 0
        failed = [r for r in caplog.records if "database write failed" in r.getMessage()]
        assert len(failed) >= 3, caplog.text
        # The database comes back: the next beat writes.
        (tmp_path / "not-yet").mkdir()
        init_db(url)
        await eventually(lambda: heartbeat.beats >= 1, timeout=5)
        with engine_for(url).connect() as connection:
            row = connection.execute(select(TABLE)).one()
        assert row.worker_id == heartbeat.worker_id and row.stopped_at is None
    finally:
        await asyncio.wait_for(heartbeat.shutdown(), timeout=5)
        await task
    with engine_for(url).connect() as connection:
        assert connection.execute(select(TABLE.c.stopped_at)).scalar_one() is not None


def probe_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "overtime-health-db")


async def test_a_hung_database_is_named_in_time_without_piling_up_threads(
    stack: Stack, settings: Settings
) -> None:
    await eventually(lambda: _when(health(stack.api), lambda r: r[0] == 200), timeout=20)
    started_before = stack.checker.probes_started
    with table_locked(settings.resolved_database_url(), "account"):
        await asyncio.sleep(ANSWER_REUSE_SECONDS)  # past the answer given before the hang
        # Many at once: one probe answers them all, in time.
        answers = await asyncio.gather(*(health(stack.api) for _ in range(10)))
        for status, body, elapsed in answers:
            assert_down(status, body, "database")
            assert elapsed < ANSWER_BOUND, elapsed
        assert stack.checker.probes_started == started_before + 1
        # Asked again and again while it hangs: a probe stuck past its timeout gets one
        # fresh probe beside it, never more threads than that.
        for _ in range(3):
            status, body, elapsed = await health(stack.api)
            assert_down(status, body, "database")
            assert elapsed < ANSWER_BOUND, elapsed
            assert probe_threads() <= MAX_PROBE_THREADS
            await assert_alive(stack.api)
    await eventually(lambda: _when(health(stack.api), lambda r: r[0] == 200), timeout=10)
    await eventually(lambda: probe_threads() == 0, timeout=5)


async def test_a_flood_of_healthz_costs_one_round_of_checks(stack: Stack) -> None:
    """/healthz is public: many callers, at once or one after another within the reuse
    window, share one round of checks (one database probe, one set of Temporal RPCs)."""
    await eventually(lambda: _when(health(stack.api), lambda r: r[0] == 200), timeout=20)
    await asyncio.sleep(ANSWER_REUSE_SECONDS)
    started_before = stack.checker.probes_started
    answers = await asyncio.gather(*(health(stack.api) for _ in range(20)))
    answers.append(await health(stack.api))
    assert all(status == 200 for status, _, _ in answers)
    assert stack.checker.probes_started == started_before + 1
    await asyncio.sleep(ANSWER_REUSE_SECONDS + 0.1)
    status, _, _ = await health(stack.api)
    assert status == 200 and stack.checker.probes_started == started_before + 2


async def test_temporal_down_is_named_and_answered_in_time(stack: Stack) -> None:
    await stack.worker.stop()
    await stack.env.shutdown()
    stack.temporal_stopped = True
    await asyncio.sleep(ANSWER_REUSE_SECONDS)  # past the answer given before the outage
    status, body, elapsed = await health(stack.api)
    assert_down(status, body, "temporal", "worker")
    assert elapsed < ANSWER_BOUND
    await assert_alive(stack.api)


async def _when(
    result: Any, accept: Callable[[tuple[int, dict[str, Any], float]], bool]
) -> tuple[int, dict[str, Any], float] | None:
    value = await result
    return value if accept(value) else None
