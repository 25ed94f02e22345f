"""Calls as the telephony backend makes them, and their bare-Temporal counterpart.

A *call* is ``POST /v1/calls/authorize`` and then ``POST /v1/calls/usage`` for the same
call id, one after the other, by one client: what the backend does for every call (here
with no time between them: the benchmark measures what a call costs, not how long it
lasts). Its baseline, a *bare call*, is one ``execute_update`` and one ``signal`` to a
trivial workflow (``harness.trivial``) on the same dev server: the least Temporal itself
asks for a request that must be answered and a report that need not be.

Only the HTTP contract and the ledger table are used, so the figures hold however the
API and the workflow do their work (update-with-start or not, ledger activities, local
activities or batches). CPU is counted per process (``Stack.cpu()``) from before a load
until the work it left behind is done: for calls, until every answered report has its row
in ``usage_entry`` and the processes are idle again; for bare calls, until the trivial
worker has processed the signals.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil

from harness import (
    Latencies,
    LedgerWatch,
    Refused,
    Stack,
    closed_loop,
    cpu_ms_per,
    percentile,
)
from harness.trivial import TASK_QUEUE, TrivialWorkflow

# Seconds per usage report: the accounts are on the largest plan (500 included minutes),
# so every call of a run stays within included minutes and every authorisation is a grant
# (each account takes at most a few hundred calls in a run).
REPORT_SECONDS = 6
PLAN = "business"
LAG_SAMPLES = 300
EXPECTED_USAGE = {"recorded": True, "duplicate": False}


@dataclass
class CallRun:
    """One closed loop of calls (or bare calls) at one concurrency."""

    kind: str  # "calls", "bare calls" or "bare updates"
    concurrency: int
    loop: Latencies  # the whole call (authorise + report; Update + signal)
    first: list[float] = field(default_factory=list)  # authorize / bare Update
    second: list[float] = field(default_factory=list)  # usage / bare signal
    lags: list[float] = field(default_factory=list)  # report sent → its ledger row
    lag_sampled: int = 0
    ledger_rows: int | None = None  # rows found for the answered reports
    reports_answered: int = 0
    cpu_ms: dict[str, float] = field(default_factory=dict)  # per call, by process
    counted: Sequence[str] = ()  # the processes the figure below sums
    machine_busy_cores: float = float("nan")  # all of this machine's processes, not ours only

    @property
    def calls(self) -> int:
        return len(self.loop.samples)

    @property
    def per_second(self) -> float:
        return self.loop.throughput

    @property
    def operations_per_second(self) -> float:
        """Requests per second: two per call (HTTP requests; Update + signal)."""
        ops = len(self.first) + len(self.second)
        return ops / self.loop.wall if self.loop.wall else float("nan")

    @property
    def cpu_ms_per_call(self) -> float:
        return sum(self.cpu_ms.get(name, 0.0) for name in self.counted)

    def summary(self) -> dict[str, Any]:
        def pct(values: list[float], p: float) -> float:
            return round(percentile(values, p) * 1000, 2)

        return {
            "kind": self.kind,
            "concurrency": self.concurrency,
            "loop": self.loop.summary(),
            "operations_per_second": round(self.operations_per_second, 1),
            "first_p50_ms": pct(self.first, 50),
            "first_p99_ms": pct(self.first, 99),
            "second_p50_ms": pct(self.second, 50),
            "second_p99_ms": pct(self.second, 99),
            "lag_p50_ms": pct(self.lags, 50),
            "lag_p99_ms": pct(self.lags, 99),
            "lag_samples": len(self.lags),
            "lag_sampled": self.lag_sampled,
            "ledger_rows": self.ledger_rows,
            "reports_answered": self.reports_answered,
            "cpu_ms_per_call": round(self.cpu_ms_per_call, 3),
            "cpu_ms_by_process": self.cpu_ms,
            "counted_processes": list(self.counted),
            "machine_busy_cores": round(self.machine_busy_cores, 2),
        }


def _busy_seconds() -> float:
    """CPU seconds this whole machine has been busy (every process, every core)."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


async def create_call_accounts(s: Stack, count: int, prefix: str) -> list[str]:
    return await s.create_accounts(count, prefix=prefix, plan=PLAN, concurrency=16)


async def start_trivial(s: Stack, count: int, prefix: str) -> list[Any]:
    assert s.plain_client is not None
    return [
        await s.plain_client.start_workflow(
            TrivialWorkflow.run, id=f"{prefix}-{i}", task_queue=TASK_QUEUE
        )
        for i in range(count)
    ]


async def finish_trivial(handles: Sequence[Any]) -> None:
    for handle in handles:
        await handle.signal(TrivialWorkflow.finish)


async def product_calls(
    s: Stack,
    accounts: Sequence[str],
    *,
    concurrency: int,
    total: int,
    prefix: str,
    max_seconds: float,
    lag_samples: int = LAG_SAMPLES,
) -> CallRun:
    """``total`` calls over ``accounts`` in turn, by ``concurrency`` clients.

    ``prefix`` starts every call id of this run (letters, digits and ``-`` only: the
    ledger is searched with LIKE). Up to ``lag_samples`` reports, spread over the run,
    are timed from sending to their row in the ledger.
    """
    watch = LedgerWatch(s.database_url)
    every = max(1, total // max(1, lag_samples))
    run = CallRun("calls", concurrency, Latencies(), counted=s.product_names())

    async def call(i: int) -> None:
        account, call_id = accounts[i % len(accounts)], f"{prefix}{i}"
        started = time.perf_counter()
        granted = await s.authorize(account, call_id)
        asked = time.perf_counter()
        if not granted.get("allowed"):
            raise Refused(f"not allowed: {granted}")
        run.first.append(asked - started)
        if i % every == 0:
            watch.sent[call_id] = time.time()
        answer = await s.usage(account, call_id, REPORT_SECONDS)
        if answer != EXPECTED_USAGE:
            raise Refused(f"unexpected usage answer {answer}")
        run.second.append(time.perf_counter() - asked)
        run.reports_answered += 1

    poller = asyncio.create_task(watch.run())
    try:
        before = await s.settled_cpu(list(s.procs))
        busy = _busy_seconds()
        run.loop = await closed_loop(concurrency, total, call, max_seconds=max_seconds)
        busy = _busy_seconds() - busy
        # The report's row may be written after its answer (a batch on a timer): the
        # call's cost and its lag run until it is there.
        run.ledger_rows = await watch.wait_for_rows(prefix, run.reports_answered, 60)
        await watch.drain(10)
        after = await s.settled_cpu(run.counted)
    finally:
        watch.stop()
        await poller
        watch.close()
    run.lags, run.lag_sampled = watch.lags(), len(watch.sent)
    run.cpu_ms = cpu_ms_per(before, after, run.calls)
    run.machine_busy_cores = busy / run.loop.wall if run.loop.wall else float("nan")
    return run


async def bare_calls(
    s: Stack,
    handles: Sequence[Any],
    *,
    concurrency: int,
    total: int,
    max_seconds: float,
    signal: bool = True,
) -> CallRun:
    """``total`` bare calls (an Update, then a signal, to one trivial workflow) over
    ``handles`` in turn; with ``signal=False`` bare Updates only."""
    run = CallRun(
        "bare calls" if signal else "bare updates",
        concurrency,
        Latencies(),
        counted=s.baseline_names(),
    )

    async def call(i: int) -> None:
        handle = handles[i % len(handles)]
        started = time.perf_counter()
        await handle.execute_update(TrivialWorkflow.ping, i)
        answered = time.perf_counter()
        run.first.append(answered - started)
        if signal:
            await handle.signal(TrivialWorkflow.bump)
            run.second.append(time.perf_counter() - answered)

    before = await s.settled_cpu(list(s.procs))
    busy = _busy_seconds()
    run.loop = await closed_loop(concurrency, total, call, max_seconds=max_seconds)
    busy = _busy_seconds() - busy
    after = await s.settled_cpu(run.counted)  # the signals' workflow tasks included
    run.cpu_ms = cpu_ms_per(before, after, run.calls)
    run.machine_busy_cores = busy / run.loop.wall if run.loop.wall else float("nan")
    return run


def cpu_by_process(runs: Sequence[CallRun]) -> list[list[Any]]:
    """Rows of CPU ms per call by process, one column per run (the counted ones first)."""
    names: list[str] = []
    for run in runs:
        names += [n for n in run.counted if n not in names]
    names += sorted({n for run in runs for n in run.cpu_ms} - set(names))
    rows = [
        [name, *(f"{run.cpu_ms.get(name, 0.0):.2f}" for run in runs)]
        for name in names
        if any(abs(run.cpu_ms.get(name, 0.0)) >= 0.005 for run in runs)
    ]
    rows.append(["**counted total**", *(f"**{run.cpu_ms_per_call:.2f}**" for run in runs)])
    return rows


__all__ = [
    "LAG_SAMPLES",
    "PLAN",
    "REPORT_SECONDS",
    "CallRun",
    "bare_calls",
    "cpu_by_process",
    "create_call_accounts",
    "finish_trivial",
    "product_calls",
    "start_trivial",
]
