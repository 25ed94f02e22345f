"""Worker memory per active account workflow, and how it grows with the number of accounts.

The worker runs as its own process (``python -m worker``, its cache size from
OVERTIME_WORKER_MAX_CACHED_WORKFLOWS) and its resident set size is read with psutil after
each step of account creation (each creation starts the account's workflow, whose first task the
worker runs and keeps in its workflow cache).

Two workers, one after the other:
* the cache large enough for every account (``max_cached_workflows`` above the largest
  step): the growth per account is the memory of one cached AccountWorkflow;
* the worker as shipped (the setting's default): memory stops growing at the cache size,
  and every request to an evicted account replays its history.

Then, in this process, what one workflow run costs the worker per runner before its first
activation (overtime/sandbox.py): the production runner (our ``workflows`` package passed
through the sandbox) beside the SDK's default sandbox, which re-imports
``workflows.account`` for every run. tracemalloc groups the bytes by file, so the table
says what a run's memory is; the CPU column is what each cache miss or eviction replay pays
before it replays a single event.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Stack, StackOptions, header, save, scale, stack, table

from overtime.sandbox import strict_workflow_runner, workflow_runner
from overtime.settings import Settings

STEPS = scale([1000, 2000, 3000], [1000, 10000, 50000])
DEFAULT_CACHE = Settings.model_fields["worker_max_cached_workflows"].default
DEFAULT_CACHE_STEPS = scale([1000, 2000, 3000], [1000, 10000, 12000])
MIB = 2**20
RUNS_PER_RUNNER = 200


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


def _instance_details() -> Any:
    """What the worker hands a runner for a new AccountWorkflow run (the SDK's own
    validation info: no server needed)."""
    import temporalio.converter
    import temporalio.workflow
    from temporalio.api.common.v1.message_pb2 import Payloads
    from temporalio.api.failure.v1.message_pb2 import Failure
    from temporalio.worker._workflow_instance import WorkflowInstanceDetails
    from temporalio.worker.workflow_sandbox._runner import _fake_info

    from workflows.account import AccountWorkflow

    converter = temporalio.converter.DataConverter.default
    return WorkflowInstanceDetails(
        payload_converter_factory=converter._new_payload_converter,
        failure_converter_class=converter.failure_converter_class,
        interceptor_classes=[],
        defn=temporalio.workflow._Definition.must_from_class(AccountWorkflow),
        info=_fake_info,
        randomness_seed=-1,
        extern_functions={},
        disable_eager_activity_execution=False,
        worker_level_failure_exception_types=[],
        patch_activation_callback=None,
        last_completion_result=Payloads(),
        last_failure=Failure(),
    )


async def runner_costs() -> list[dict[str, Any]]:
    """Bytes and CPU of one new workflow run per runner, and where the bytes are."""
    rows = []
    for name, runner in (
        ("production (workflows passed through)", workflow_runner()),
        ("SDK default sandbox", strict_workflow_runner()),
    ):
        details = _instance_details()
        runner.prepare_workflow(details.defn)
        runner.create_instance(details)  # the first one pays the process's own imports
        began = time.process_time()
        for _ in range(20):
            runner.create_instance(details)
        cpu_ms = (time.process_time() - began) * 1000 / 20
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        kept = [runner.create_instance(details) for _ in range(RUNS_PER_RUNNER)]
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        by_file = after.compare_to(before, "filename")
        total = sum(stat.size_diff for stat in by_file)
        top = [
            (Path(stat.traceback[0].filename).name, stat.size_diff / 1024 / RUNS_PER_RUNNER)
            for stat in by_file[:5]
        ]
        rows.append(
            {
                "runner": name,
                "kib_per_run": round(total / 1024 / RUNS_PER_RUNNER, 1),
                "cpu_ms_per_new_run": round(cpu_ms, 2),
                "top_files": [(f, round(kib, 1)) for f, kib in top],
            }
        )
        del kept
    return rows


async def main() -> None:
    header("Worker memory per active account workflow")
    runners = await runner_costs()
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
    print("\n### one new workflow run before its first activation, per runner\n")
    print(
        table(
            ["runner", "KiB per run (tracemalloc)", "CPU ms per new run", "largest files (KiB)"],
            [
                [
                    r["runner"],
                    r["kib_per_run"],
                    r["cpu_ms_per_new_run"],
                    ", ".join(f"{f} {kib}" for f, kib in r["top_files"]),
                ]
                for r in runners
            ],
        )
    )
    save(
        "memory",
        {
            "runners": runners,
            "big_cache": big_cache,
            "cached": big,
            "default_cache": default,
            "marginal_kib_per_account": slope,
        },
    )


if __name__ == "__main__":
    asyncio.run(main())
