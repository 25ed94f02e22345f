"""Worker memory per active account workflow, and how it grows with the number of accounts.

The worker runs as its own process (``python -m worker``, its cache size from
OVERTIME_WORKER_MAX_CACHED_WORKFLOWS) and its resident set size is read with psutil after
each step of account creation (each creation starts the account's workflow, whose first task the
worker runs and keeps in its workflow cache).

Two workers, one after the other:
* the cache large enough for every account (``max_cached_workflows`` above the largest
  step): the growth per account is the memory of one cached AccountWorkflow;
* the worker as shipped (the setting's default, 2,000 cached workflows): memory stops
  growing at the cache size, and every request to an evicted account replays its history.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Stack, StackOptions, header, save, scale, stack, table

from overtime.settings import Settings

STEPS = scale([1000, 2000, 3000], [1000, 10000, 50000])
DEFAULT_CACHE = Settings.model_fields["worker_max_cached_workflows"].default
DEFAULT_CACHE_STEPS = scale([1000, 2000, 3000], [1000, 10000])
MIB = 2**20


async def settled_rss(s: Stack) -> float:
    """RSS once it stops moving (the worker has caught up with the starts)."""
    worker = s.procs["worker"]
    last = worker.rss()
    for _ in range(30):
        await asyncio.sleep(1.0)
        now = worker.rss()
        if abs(now - last) < 2 * MIB:
            return now / MIB
        last = now
    return last / MIB


async def measure(cache: int | None, steps: list[int]) -> list[dict]:
    rows = []
    async with stack(StackOptions(worker_cache=cache)) as s:
        run = uuid.uuid4().hex[:6]
        idle = await settled_rss(s)
        rows.append({"accounts": 0, "rss_mib": round(idle, 1), "create_per_second": None})
        made = 0
        for step in steps:
            began = time.perf_counter()
            await s.create_accounts(step - made, prefix=f"mem-{run}-{made}", concurrency=24)
            rate = (step - made) / (time.perf_counter() - began)
            made = step
            gc.collect()
            # One authorisation on the first account: a workflow task on a busy cache.
            await s.authorize(f"mem-{run}-0-0", "probe")
            rss = await settled_rss(s)
            rows.append(
                {
                    "accounts": step,
                    "rss_mib": round(rss, 1),
                    "per_account_kib": round((rss - idle) * 1024 / step, 1),
                    "create_per_second": round(rate, 1),
                }
            )
    return rows


def rss_table(rows: list[dict]) -> str:
    return table(
        ["active accounts", "worker RSS MiB", "KiB per account above idle", "accounts/s"],
        [
            [
                f"{r['accounts']:,}",
                r["rss_mib"],
                r.get("per_account_kib", "-"),
                r["create_per_second"] or "-",
            ]
            for r in rows
        ],
    )


async def main() -> None:
    header("Worker memory per active account workflow")
    big_cache = max(STEPS) + 1000
    big = await measure(big_cache, STEPS)
    default = await measure(None, DEFAULT_CACHE_STEPS)
    print(f"\n### max_cached_workflows = {big_cache:,} (every account stays cached)\n")
    print(rss_table(big))
    print(f"\n### as shipped: max_cached_workflows = {DEFAULT_CACHE:,} (the setting's default)\n")
    print(rss_table(default))
    slope = None
    if len(big) >= 3:
        (a, b) = big[1], big[-1]
        slope = (b["rss_mib"] - a["rss_mib"]) * 1024 / (b["accounts"] - a["accounts"])
        print(
            f"\nmarginal memory per cached account workflow: {slope:.1f} KiB "
            f"({a['accounts']:,} → {b['accounts']:,} accounts)"
        )
    save(
        "memory",
        {
            "big_cache": big_cache,
            "cached": big,
            "default_cache": default,
            "marginal_kib_per_account": slope,
        },
    )


if __name__ == "__main__":
    asyncio.run(main())
