"""Scale-out: calls per second with one and two API processes and workers.

One stack, one Temporal dev server, processes added while it runs (``Stack.add_api()``,
``Stack.add_worker()``): calls (authorise + report, ``harness.calls``) by a closed loop of
64 clients with

1. 1 API process, 1 worker, over accounts set A;
2. 2 API processes (requests round robin), 1 worker, over set A;
3. 2 API processes, 2 workers, over a new set B created once both workers poll.

Set B is new because a workflow stays on the worker that has it cached (its sticky task
queue): a worker added to a running system takes only workflows that start, or are
evicted, after it came; B's workflows are spread over both workers from their first task.
Beside them, bare calls (an Update and a signal to trivial workflows) on the same server.

This machine has 2 cores shared by the dev server, the workers, the APIs and the load
generator, so more processes cannot add much here: the figure that carries over to more
cores is CPU per call (summed over all processes), printed beside calls/s and how busy
the machine was. ``BENCH_SCALE_CALLS``, ``BENCH_SCALE_ACCOUNTS``, ``BENCH_SCALE_SECONDS``
change the sizes.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import StackOptions, header, ms, percentile, save, scale, stack, table
from harness.calls import (
    CallRun,
    bare_calls,
    cpu_by_process,
    create_call_accounts,
    finish_trivial,
    product_calls,
    start_trivial,
)

ACCOUNTS = int(os.environ.get("BENCH_SCALE_ACCOUNTS") or scale(48, 200))
CALLS = int(os.environ.get("BENCH_SCALE_CALLS") or scale(1500, 6000))
SECONDS = float(os.environ.get("BENCH_SCALE_SECONDS") or scale(15.0, 60.0))
CONCURRENCY = 64


async def main() -> None:
    header("Scale-out: calls/s with 1 and 2 API processes and workers")
    steps: list[tuple[str, CallRun]] = []
    async with stack(StackOptions(trivial_worker=True)) as s:
        run = uuid.uuid4().hex[:6]

        async def warm(accounts: list[str], tag: str) -> None:
            await product_calls(
                s,
                accounts,
                concurrency=8,
                total=2 * len(accounts),
                prefix=f"w{tag}-{run}-",
                max_seconds=60,
            )

        async def measure(label: str, accounts: list[str], tag: str) -> None:
            result = await product_calls(
                s,
                accounts,
                concurrency=CONCURRENCY,
                total=CALLS,
                prefix=f"s{tag}-{run}-",
                max_seconds=SECONDS,
            )
            steps.append((label, result))
            print(
                f"[{label}] {result.per_second:.0f} calls/s, "
                f"{result.cpu_ms_per_call:.1f} ms CPU per call; "
                f"load average {os.getloadavg()[0]:.2f}",
                flush=True,
            )

        handles = await start_trivial(s, ACCOUNTS, f"trivial-{run}")
        await bare_calls(s, handles, concurrency=8, total=2 * ACCOUNTS, max_seconds=60)
        bare = await bare_calls(
            s, handles, concurrency=CONCURRENCY, total=CALLS, max_seconds=SECONDS
        )
        first = await create_call_accounts(s, ACCOUNTS, f"a-{run}")
        await warm(first, "a")
        await measure("1 API, 1 worker", first, "a1")
        await s.add_api()
        await warm(first, "a2")
        await measure("2 APIs, 1 worker", first, "a2")
        await s.add_worker()
        second = await create_call_accounts(s, ACCOUNTS, f"b-{run}")
        await warm(second, "b")
        await measure("2 APIs, 2 workers", second, "b")
        await finish_trivial(handles)

    report(steps, bare)


def report(steps: list[tuple[str, CallRun]], bare: CallRun) -> None:
    print(
        f"\n{CONCURRENCY} clients, {ACCOUNTS} accounts per set, up to {CALLS} calls or "
        f"{SECONDS:.0f} s per step; load average at end "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}\n"
    )
    base_rate = steps[0][1].per_second
    rows = []
    for label, result in steps:
        api = sum(v for k, v in result.cpu_ms.items() if k.startswith("api"))
        worker = sum(v for k, v in result.cpu_ms.items() if k.startswith("worker"))
        rows.append(
            [
                label,
                f"{result.per_second:.0f}",
                f"{result.per_second / base_rate:.2f}×" if base_rate else "-",
                f"{result.operations_per_second:.0f}",
                ms(percentile(result.first, 50)),
                ms(percentile(result.lags, 99)),
                f"{result.cpu_ms_per_call:.2f}",
                f"{result.cpu_ms_per_call / bare.cpu_ms_per_call:.2f}×"
                if bare.cpu_ms_per_call
                else "-",
                f"{api:.2f} / {worker:.2f} / {result.cpu_ms.get('temporal', 0.0):.2f}",
                f"{result.machine_busy_cores:.1f}",
                result.loop.errors,
            ]
        )
    rows.append(
        [
            "bare Update + signal",
            f"{bare.per_second:.0f}",
            "-",
            f"{bare.operations_per_second:.0f}",
            ms(percentile(bare.first, 50)),
            "-",
            f"{bare.cpu_ms_per_call:.2f}",
            "1.00×",
            f"- / {bare.cpu_ms.get('trivial', 0.0):.2f} / {bare.cpu_ms.get('temporal', 0.0):.2f}",
            f"{bare.machine_busy_cores:.1f}",
            bare.loop.errors,
        ]
    )
    print(
        table(
            [
                "processes",
                "calls/s",
                "vs 1 + 1",
                "HTTP req/s",
                "authorize p50 ms",
                "ledger lag p99 ms",
                "CPU ms per call",
                "vs bare call",
                "CPU ms: APIs / workers / Temporal",
                "machine busy cores",
                "errors",
            ],
            rows,
        )
    )
    print("\nCPU ms per call by process:\n")
    print(
        table(
            ["process", *(label for label, _ in steps), "bare Update + signal"],
            cpu_by_process([*(result for _, result in steps), bare]),
        )
    )
    for label, result in steps:
        if result.loop.errors:
            print(f"errors, {label}: {result.loop.error_kinds}")
    cores = os.cpu_count() or 1
    print(
        f"\nOn more cores: calls/s ≈ cores × 1000 / CPU ms per call while no single process "
        f"is the bottleneck (here {cores} cores: ≈ "
        f"{cores * 1000 / steps[-1][1].cpu_ms_per_call:.0f} calls/s at the last step's cost, "
        "if nothing else ran)."
        if steps[-1][1].cpu_ms_per_call
        else ""
    )
    results: dict[str, Any] = {
        "concurrency": CONCURRENCY,
        "accounts_per_set": ACCOUNTS,
        "steps": [{"processes": label, **result.summary()} for label, result in steps],
        "bare": bare.summary(),
    }
    save("scale", results)


if __name__ == "__main__":
    asyncio.run(main())
