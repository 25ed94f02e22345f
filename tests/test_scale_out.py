"""Scale-out: two worker processes share the task queues; one is SIGKILLed mid-traffic.

Workers are stateless, so the survivor picks up the dead one's workflow and activity
tasks (after Temporal's task timeouts) and nothing is lost or counted twice.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import select
from temporalio.client import Client

from overtime.db import session_scope
from overtime.models import UsageEntry
from overtime.settings import Settings
from tests.conftest import Api, eventually, start_api, stop_api, worker_env

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def spawn_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "worker"],
        cwd=ROOT,
        env=worker_env(settings),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


@pytest.fixture
async def two_worker_api(
    settings: Settings, temporal_client: Client, tmp_path: Path
) -> AsyncIterator[tuple[Api, list[subprocess.Popen[bytes]]]]:
    own = settings.model_copy(update={"task_queue": f"scale-{uuid.uuid4().hex[:8]}"})
    workers = [spawn_worker(own, tmp_path / f"worker-{i}.log") for i in range(2)]
    server, task, api = await start_api(own, temporal_client)
    try:
        yield api, workers
    finally:
        await stop_api(server, task, api)
        for proc in workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in workers:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def test_a_killed_worker_loses_and_doubles_nothing(
    two_worker_api: tuple[Api, list[subprocess.Popen[bytes]]], settings: Settings
) -> None:
    api, workers = two_worker_api

    async def healthy() -> bool:
        return (await api.anonymous.get("/healthz")).status_code == 200

    await eventually(healthy, timeout=30)  # workers polling before traffic starts
    await asyncio.sleep(1.0)  # ... both of them
    accounts = [await api.create_account() for _ in range(6)]
    calls_per_account = 12

    async def traffic(account: str) -> int:
        talked = 0
        for i in range(calls_per_account):
            talked += await api.call(account, f"{account}-c{i}", 30)
            await asyncio.sleep(0.05)
        return talked

    running = [asyncio.create_task(traffic(account)) for account in accounts]
    await asyncio.sleep(1.0)
    workers[0].send_signal(signal.SIGKILL)  # mid-traffic, no goodbye
    workers[0].wait(timeout=10)
    talked = await asyncio.gather(*running)

    assert talked == [30 * calls_per_account] * len(accounts)
    for account in accounts:
        state = await api.state(account)
        assert state["used_seconds"] == 30 * calls_per_account
        assert state["reserved_seconds"] == 0
        # Every report once more: all duplicates, nothing counted twice.
        again = await api.usage(account, f"{account}-c0", 30)
        assert again == {"recorded": True, "duplicate": True}

    def ledger_complete() -> bool:
        with session_scope(settings.resolved_database_url()) as session:
            rows = session.exec(
                select(
                    UsageEntry.account_id,
                    func.count(),
                    func.sum(UsageEntry.billed_included_seconds),
                )
                .where(UsageEntry.account_id.in_(accounts))  # type: ignore[attr-defined]
                .group_by(UsageEntry.account_id)
            ).all()
        return sorted(rows) == sorted(
            (account, calls_per_account, 30 * calls_per_account) for account in accounts
        )

    await eventually(ledger_complete, timeout=40)
    assert workers[1].poll() is None  # the survivor carried on
