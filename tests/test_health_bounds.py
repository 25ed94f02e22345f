"""Every database wait behind ``/healthz`` and the worker heartbeat is bounded.

The probe engine and the heartbeat engine carry the libpq options that make a dead
network fail within seconds (keepalives, ``tcp_user_timeout``: the server-side timeouts
cannot end a ``recv`` on a black-holed connection); the heartbeat writes on an engine of
its own (one connection), never the activities' shared pool; a heartbeat write blocked by
a held lock gives up within its timeout and the next beat after the lock is released
succeeds; and a Temporal worker's fatal error ends ``python -m worker``'s ``run()`` with
that error (so the process exits non-zero and its supervisor restarts it).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.engine import Engine
from temporalio.client import Client
from temporalio.worker._activity import _ActivityWorker

import worker as worker_module
from overtime.db import engine_for, init_db, postgres_bounded_args
from overtime.settings import Settings
from overtime.worker_heartbeat import TABLE, WorkerHeartbeatRunner, db_timeout_seconds
from starter.health import HealthChecker
from tests.conftest import eventually
from tests.db_locks import table_locked

PG_URL = "postgresql+psycopg2://nobody@127.0.0.1:1/never"
KEEPALIVE_KEYS = (
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "connect_timeout",
)


class _Captured(Exception):
    pass


def connect_params(engine: Engine) -> dict[str, Any]:
    """The keyword arguments the engine hands the DBAPI's connect (captured before any
    connection is made: the URL points nowhere)."""
    captured: dict[str, Any] = {}

    @event.listens_for(engine, "do_connect")
    def capture(_dialect: Any, _record: Any, _args: Any, params: dict[str, Any]) -> None:
        captured.update(params)
        raise _Captured

    with pytest.raises(_Captured), engine.connect():
        pass
    return captured


def assert_bounded(params: dict[str, Any], seconds: float) -> None:
    assert params["keepalives"] == 1
    # A dead connection fails within a few seconds, not the kernel's ~15 minutes.
    dead_after = (
        params["keepalives_idle"] + params["keepalives_interval"] * (params["keepalives_count"])
    )
    assert dead_after <= seconds + 3, params
    assert 1000 <= params["tcp_user_timeout"] <= (seconds + 3) * 1000, params
    ms = int(seconds * 1000)
    assert f"statement_timeout={ms}" in params["options"], params
    assert f"lock_timeout={ms}" in params["options"], params
    assert 2 <= params["connect_timeout"] <= seconds + 2, params


def test_the_probe_and_heartbeat_engines_bound_a_dead_network_on_postgresql(
    settings: Settings, temporal_client: Client
) -> None:
    pg = settings.model_copy(update={"database_url": PG_URL})
    checker = HealthChecker(pg)
    assert_bounded(connect_params(checker._probe_engine()), pg.health_timeout_seconds)
    heartbeat = WorkerHeartbeatRunner(temporal_client, pg, [pg.task_queue])
    assert_bounded(connect_params(heartbeat.engine), heartbeat.db_timeout)
    # Below the 3-beat window /healthz allows, for any interval.
    for interval in (0.2, 1.0, 5.0, 60.0):
        assert 1.0 <= db_timeout_seconds(interval) <= min(3.0, max(1.0, interval))
    assert postgres_bounded_args(0.5)["connect_timeout"] == 2  # libpq's minimum


def test_the_heartbeat_has_an_engine_of_its_own(
    settings: Settings, temporal_client: Client
) -> None:
    url = settings.resolved_database_url()
    heartbeat = WorkerHeartbeatRunner(temporal_client, settings, [settings.task_queue])
    engine = heartbeat.engine
    assert engine is not engine_for(url)  # never the activities' shared pool
    assert engine.pool.size() == 1  # type: ignore[attr-defined]
    assert engine.pool._max_overflow == 0  # type: ignore[attr-defined]
    assert engine.pool.timeout() == heartbeat.db_timeout  # type: ignore[attr-defined]
    ms = int(heartbeat.db_timeout * 1000)
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            assert connection.execute(text("PRAGMA busy_timeout")).scalar_one() == ms
        else:
            shown = {
                name: connection.execute(text(f"SHOW {name}")).scalar_one()
                for name in ("statement_timeout", "lock_timeout")
            }
            assert all(value in (f"{ms}ms", f"{ms // 1000}s") for value in shown.values()), shown
            dsn = connection.connection.dbapi_connection.info.dsn_parameters  # type: ignore[union-attr]
            for key in KEEPALIVE_KEYS:
                assert key in dsn, dsn
    engine.dispose()


async def test_a_locked_heartbeat_write_gives_up_in_time_and_the_next_beat_writes(
    settings: Settings, temporal_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    url = settings.resolved_database_url()
    init_db(url)
    own = settings.model_copy(
        update={
            "task_queue": f"overtime-hb-{uuid.uuid4().hex[:8]}",
            "worker_heartbeat_seconds": 0.5,
        }
    )
    heartbeat = WorkerHeartbeatRunner(temporal_client, own, [own.task_queue])
    caplog.set_level(logging.WARNING)
    task = asyncio.create_task(heartbeat.run())
    try:
        await eventually(lambda: heartbeat.beats >= 1, timeout=5)
        with table_locked(url, "worker_heartbeat"):
            locked_at = time.time()
            failures_before = heartbeat.failures
            await eventually(lambda: heartbeat.failures > failures_before, timeout=5)
            failed = [r for r in caplog.records if "database write failed" in r.getMessage()]
            assert failed, caplog.text
            # The blocked write ended with its timeout (an error, not a hang): within
            # its timeout and the beat's interval of the lock.
            assert failed[0].created - locked_at <= heartbeat.db_timeout + 1.0 + 0.5
            await asyncio.sleep(1.0)
            beats_locked = heartbeat.beats
        await eventually(lambda: heartbeat.beats > beats_locked, timeout=3)
        with engine_for(url).connect() as connection:
            seen = connection.execute(
                select(TABLE.c.seen_at).where(TABLE.c.worker_id == heartbeat.worker_id)
            ).scalar_one()
        assert seen is not None
    finally:
        await asyncio.wait_for(heartbeat.shutdown(), timeout=5)
        await task
    # Waits that timed out left no asyncio wrapper with an unretrieved exception.
    gc.collect()
    await asyncio.sleep(0)
    assert "exception was never retrieved" not in caplog.text


async def test_a_fatal_temporal_worker_error_ends_the_worker_process_run(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = settings.model_copy(
        update={
            "task_queue": f"overtime-fatal-{uuid.uuid4().hex[:8]}",
            "stripe_task_queue": f"overtime-fatal-stripe-{uuid.uuid4().hex[:8]}",
            "worker_metrics_port": 0,
        }
    )

    async def fatal(self: _ActivityWorker) -> None:
        raise RuntimeError("simulated fatal worker error")

    async def no_schedule(*_: Any) -> bool:
        return False  # the suite's schedule stays as it is

    # The SDK's activity poller loop failing is a Temporal worker's fatal error.
    monkeypatch.setattr(_ActivityWorker, "run", fatal)
    monkeypatch.setattr(worker_module, "ensure_close_schedule", no_schedule)
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "add_signal_handler", lambda *_: None)
    with pytest.raises(RuntimeError, match="simulated fatal worker error"):
        await asyncio.wait_for(worker_module.run(own), timeout=90)  # a loaded CI machine


async def test_a_stuck_probe_gets_one_fresh_probe_beside_it_never_more(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A probe stuck past its timeout (a connection black-holed by a failover) is
    abandoned: the next round starts one more on a fresh engine, so a database back
    behind a new address answers at once; while both hang no third thread starts."""
    init_db(settings.resolved_database_url())
    checker = HealthChecker(settings.model_copy(update={"health_timeout_seconds": 0.3}))
    release = threading.Event()
    engines: list[Engine | None] = []
    real = checker._probe_database

    def stuck(engine: Engine | None) -> Any:
        engines.append(engine)
        release.wait(10)
        return real(engine)

    monkeypatch.setattr(checker, "_probe_database", stuck)
    try:
        first, _ = await checker._database()
        assert not first.ok and first.detail == "did not answer within 0.3 s"
        second, _ = await checker._database()  # a fresh probe beside the stuck one
        assert not second.ok and checker.probes_started == 2
        for _ in range(3):  # both stuck: answered at once, no third thread
            started = time.monotonic()
            third, _ = await checker._database()
            assert not third.ok and "has not answered" in (third.detail or ""), third
            assert time.monotonic() - started < 0.1
        assert checker.probes_started == 2
        assert sum(t.name == "overtime-health-db" for t in threading.enumerate()) <= 2
        if engines[0] is not None:  # PostgreSQL: the fresh probe got a fresh engine
            assert engines[1] is not None and engines[1] is not engines[0]
    finally:
        release.set()
    await eventually(
        lambda: not any(t.name == "overtime-health-db" for t in threading.enumerate()),
        timeout=5,
    )
    monkeypatch.setattr(checker, "_probe_database", real)
    check, beats = await checker._database()
    assert check.ok and beats is not None, check
