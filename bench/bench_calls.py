"""Calls (authorise + report over HTTP) against a bare Update plus a bare signal.

A call is what the telephony backend does for every call: ``POST /v1/calls/authorize``,
then ``POST /v1/calls/usage`` for the same call id (``harness.calls``). Closed loops of 1
and 64 clients over many accounts (48; ``BENCH_SCALE=full``: 200), beside bare calls (an
``execute_update`` and a ``signal`` to as many trivial workflows) on the same dev server,
at the same concurrency, in the same run; at 64 also bare Updates alone (the throughput
baseline for HTTP requests). Printed: issue 12's targets as ratios against those
baselines, the figures per level, and CPU per call by process.

Sizes: ``BENCH_CALLS_ACCOUNTS``, ``BENCH_CALLS`` (calls at 64 clients; a tenth of it, at
least 100, at 1 client), ``BENCH_CALLS_SECONDS`` (each loop's time bound).
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import StackOptions, header, ms, percentile, save, scale, stack, table
from harness.calls import (
    PLAN,
    REPORT_SECONDS,
    CallRun,
    bare_calls,
    cpu_by_process,
    create_call_accounts,
    finish_trivial,
    product_calls,
    start_trivial,
)

ACCOUNTS = int(os.environ.get("BENCH_CALLS_ACCOUNTS") or scale(48, 200))
CALLS_AT_64 = int(os.environ.get("BENCH_CALLS") or scale(2000, 6000))
CALLS = {1: max(100, CALLS_AT_64 // 10), 64: CALLS_AT_64}
SECONDS = float(os.environ.get("BENCH_CALLS_SECONDS") or scale(20.0, 60.0))
LEVELS = (1, 64)


def p50(values: list[float]) -> float:
    return percentile(values, 50)


def p99(values: list[float]) -> float:
    return percentile(values, 99)


TARGET_HEADER = ["figure", "measured", "baseline", "ratio", "target", "met"]


def target_row(
    figure: str,
    value: float,
    baseline: float | None,
    unit: str,
    target: str,
    limit: float,
    *,
    at_least: bool = False,
) -> list[str]:
    """A row of the targets table: ``value / baseline`` (or ``value`` itself when there is
    no baseline: an absolute target) against ``limit``, at most or ``at_least``."""
    compared = value if baseline is None else (value / baseline if baseline else math.nan)
    if math.isnan(compared):
        met = "-"
    else:
        met = "yes" if (compared >= limit if at_least else compared <= limit) else "no"
    return [
        figure,
        f"{value:.2f} {unit}",
        "-" if baseline is None else f"{baseline:.2f} {unit}",
        "-" if baseline is None or math.isnan(compared) else f"{compared:.2f}×",
        target,
        met,
    ]


async def main() -> None:
    header("Calls (authorise + report, HTTP) vs bare Update + bare signal")
    measured: dict[int, dict[str, CallRun]] = {}
    async with stack(StackOptions(trivial_worker=True)) as s:
        run = uuid.uuid4().hex[:6]
        accounts = await create_call_accounts(s, ACCOUNTS, f"call-{run}")
        handles = await start_trivial(s, ACCOUNTS, f"trivial-{run}")
        # Warm-up: every workflow in its worker's cache, connections open, JIT-free Python
        # paths imported.
        await product_calls(
            s, accounts, concurrency=8, total=2 * ACCOUNTS, prefix=f"w-{run}-", max_seconds=60
        )
        await bare_calls(s, handles, concurrency=8, total=2 * ACCOUNTS, max_seconds=60)
        for level in LEVELS:
            total = CALLS[level]
            runs = {
                "bare": await bare_calls(
                    s, handles, concurrency=level, total=total, max_seconds=SECONDS
                ),
                "calls": await product_calls(
                    s,
                    accounts,
                    concurrency=level,
                    total=total,
                    prefix=f"k{level}-{run}-",
                    max_seconds=SECONDS,
                ),
            }
            if level == max(LEVELS):
                runs["updates"] = await bare_calls(
                    s, handles, concurrency=level, total=total, max_seconds=SECONDS, signal=False
                )
            measured[level] = runs
            print(
                f"[{level} clients] calls/s {runs['calls'].per_second:.0f}, "
                f"bare calls/s {runs['bare'].per_second:.0f}; "
                f"load average {os.getloadavg()[0]:.2f}",
                flush=True,
            )
        await finish_trivial(handles)

    report(measured)


def report(measured: dict[int, dict[str, CallRun]]) -> None:
    low, high = min(LEVELS), max(LEVELS)
    lo, hi = measured[low], measured[high]
    print(
        f"\n{ACCOUNTS} accounts (plan {PLAN}, reports of {REPORT_SECONDS} s) / {ACCOUNTS} "
        f"trivial workflows; closed loops, each bounded by count and {SECONDS:.0f} s; "
        f"load average at end {', '.join(f'{x:.2f}' for x in os.getloadavg())}\n"
    )
    targets = [
        target_row(
            f"CPU per call (all processes) vs bare Update + signal, {high} clients",
            hi["calls"].cpu_ms_per_call,
            hi["bare"].cpu_ms_per_call,
            "ms",
            "≤ 2×",
            2.0,
        ),
        target_row(
            f"CPU per call vs bare Update + signal, {low} client",
            lo["calls"].cpu_ms_per_call,
            lo["bare"].cpu_ms_per_call,
            "ms",
            "≤ 2×",
            2.0,
        ),
        target_row(
            f"authorise p50 vs bare Update p50, {low} client",
            p50(lo["calls"].first) * 1000,
            p50(lo["bare"].first) * 1000,
            "ms",
            "≤ 1.5×",
            1.5,
        ),
        target_row(
            f"authorise p50 vs bare Update p50, {high} clients",
            p50(hi["calls"].first) * 1000,
            p50(hi["bare"].first) * 1000,
            "ms",
            "≤ 1.5×",
            1.5,
        ),
        target_row(
            f"HTTP requests/s vs bare Updates/s, {high} clients",
            hi["calls"].operations_per_second,
            hi["updates"].per_second,
            "/s",
            "≥ 0.7×",
            0.7,
            at_least=True,
        ),
        target_row(
            f"ledger lag p99 (report → row), {high} clients",
            p99(hi["calls"].lags),
            None,
            "s",
            "≤ 1 s",
            1.0,
        ),
        target_row(
            f"ledger lag p99 (report → row), {low} client",
            p99(lo["calls"].lags),
            None,
            "s",
            "≤ 1 s",
            1.0,
        ),
    ]
    print("Issue 12's targets (ratios against the baseline of the same run):\n")
    print(table(TARGET_HEADER, targets))

    rows = []
    for level in LEVELS:
        calls, bare = measured[level]["calls"], measured[level]["bare"]
        rows.append(
            [
                level,
                calls.calls,
                f"{calls.per_second:.0f}",
                f"{calls.operations_per_second:.0f}",
                ms(p50(calls.first)),
                ms(p99(calls.first)),
                ms(p50(calls.second)),
                ms(p99(calls.second)),
                ms(p50(calls.lags)),
                ms(p99(calls.lags)),
                f"{bare.per_second:.0f}",
                ms(p50(bare.first)),
                ms(p99(bare.first)),
                ms(p50(bare.second)),
                f"{calls.per_second / bare.per_second:.2f}×" if bare.per_second else "-",
                f"{calls.machine_busy_cores:.1f} / {bare.machine_busy_cores:.1f}",
                calls.loop.errors + bare.loop.errors,
            ]
        )
    print("\nPer level (calls: authorise then report; bare calls: Update then signal):\n")
    print(
        table(
            [
                "clients",
                "calls",
                "calls/s",
                "HTTP req/s",
                "authorize p50 ms",
                "p99 ms",
                "usage p50 ms",
                "p99 ms",
                "ledger lag p50 ms",
                "p99 ms",
                "bare calls/s",
                "bare Update p50 ms",
                "p99 ms",
                "bare signal p50 ms",
                "calls/s ratio",
                "machine busy cores (calls / bare)",
                "errors",
            ],
            rows,
        )
    )
    updates = hi["updates"]
    print(
        f"\nbare Updates alone at {high} clients: {updates.per_second:.0f}/s, "
        f"p50 {ms(p50(updates.first))} ms, p99 {ms(p99(updates.first))} ms"
    )
    for level in LEVELS:
        runs = measured[level]
        print(f"\nCPU ms per call by process, {level} client(s):\n")
        print(
            table(
                ["process", "call (authorise + report)", "bare Update + signal"],
                cpu_by_process([runs["calls"], runs["bare"]]),
            )
        )
    for level in LEVELS:
        for run in measured[level].values():
            if run.loop.errors:
                print(f"errors, {run.kind} at {level}: {run.loop.error_kinds}")
        rows_found = measured[level]["calls"].ledger_rows
        answered = measured[level]["calls"].reports_answered
        if rows_found is not None and rows_found != answered:
            print(f"ledger at {level}: {rows_found} rows for {answered} answered reports")

    results: dict[str, Any] = {
        "accounts": ACCOUNTS,
        "plan": PLAN,
        "report_seconds": REPORT_SECONDS,
        "seconds_per_loop": SECONDS,
        "targets": [dict(zip(TARGET_HEADER, row, strict=True)) for row in targets],
        "levels": {
            str(level): {name: run.summary() for name, run in runs.items()}
            for level, runs in measured.items()
        },
    }
    save("calls", results)


if __name__ == "__main__":
    asyncio.run(main())
