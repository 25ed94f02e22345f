"""Call authorisation over HTTP against a bare Temporal Update round-trip.

``POST /v1/calls/authorize`` (HTTP → API → update-with-start → AccountWorkflow → answer)
at rising concurrency over many accounts, beside ``execute_update`` on as many trivial
workflows on the same dev server, at the same concurrency, in the same run. Prints p50 /
p99 latency and throughput per level and plots latency against load
(docs/bench/authorize_latency.png).
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    CHART_DIR,
    Refused,
    StackOptions,
    closed_loop,
    cpu_ms_per,
    header,
    ms,
    ratio,
    save,
    scale,
    stack,
    table,
)
from harness.trivial import TASK_QUEUE, TrivialWorkflow

from workflows.types import workflow_id_for

# The "AccountWorkflow Update" column sends the workflow's own Update type, the only part
# of this script that depends on the workflow's internals: if they change shape, that
# column shows errors (and a note) instead of stopping `make bench`.
try:
    from workflows.account import AccountWorkflow
    from workflows.types import AUTHORIZE, TelephonyBatch, TelephonyRequest
except ImportError as err:  # pragma: no cover - only while the workflow's types change
    DIRECT_UNAVAILABLE: str | None = f"{type(err).__name__}: {err}"
else:
    DIRECT_UNAVAILABLE = None

ACCOUNTS = scale(48, 200)
LEVELS = scale([1, 4, 16, 64], [1, 4, 16, 64, 128])
REQUESTS_PER_LEVEL = scale(
    {1: 150, 4: 400, 16: 1000, 64: 2000}, {1: 300, 4: 1000, 16: 3000, 64: 6000, 128: 8000}
)
SECONDS_PER_LEVEL = scale(15.0, 40.0)


async def main() -> None:
    header("Call authorisation (HTTP) vs bare Temporal Update")
    options = StackOptions(stripe=True, trivial_worker=True)
    async with stack(options) as s:
        assert s.plain_client is not None
        run = uuid.uuid4().hex[:6]
        accounts = await s.create_accounts(
            ACCOUNTS, prefix=f"auth-{run}", limit={"limit_minutes": 100_000}
        )
        handles = [
            await s.plain_client.start_workflow(
                TrivialWorkflow.run, id=f"trivial-{run}-{i}", task_queue=TASK_QUEUE
            )
            for i in range(ACCOUNTS)
        ]
        calls = itertools.count()

        async def authorize(i: int) -> None:
            answer = await s.authorize(accounts[i % ACCOUNTS], f"c{next(calls)}")
            if not answer.get("allowed"):
                raise Refused(f"not allowed: {answer}")

        async def update(i: int) -> None:
            await handles[i % ACCOUNTS].execute_update(TrivialWorkflow.ping, i)

        assert s.client is not None
        account_handles = [
            s.client.get_workflow_handle(workflow_id_for(account)) for account in accounts
        ]

        async def direct(i: int) -> None:
            """The same authorisation as a plain Update from a Temporal client: no HTTP, no
            API, no update-with-start (the workflow is known to run)."""
            if DIRECT_UNAVAILABLE:
                raise RuntimeError(DIRECT_UNAVAILABLE)
            [result] = await account_handles[i % ACCOUNTS].execute_update(
                AccountWorkflow.telephony,
                TelephonyBatch([TelephonyRequest(kind=AUTHORIZE, call_id=f"d{next(calls)}")]),
            )
            if not result.allowed:
                raise Refused(f"not allowed: {result}")

        # Warm-up: every workflow in the worker's cache, connections open.
        await closed_loop(8, ACCOUNTS, authorize)
        await closed_loop(8, ACCOUNTS, update)

        rows, results = [], []
        for level in LEVELS:
            total = REQUESTS_PER_LEVEL[level]
            before = s.cpu()
            base = await closed_loop(level, total, update, max_seconds=SECONDS_PER_LEVEL)
            middle = s.cpu()
            product = await closed_loop(level, total, authorize, max_seconds=SECONDS_PER_LEVEL)
            after = s.cpu()
            plain = await closed_loop(level, total, direct, max_seconds=SECONDS_PER_LEVEL)
            results.append(
                {
                    "concurrency": level,
                    "product": product.summary(),
                    "baseline": base.summary(),
                    "direct_update": plain.summary(),
                    # CPU milliseconds per request, by process.
                    "product_cpu_ms": cpu_ms_per(middle, after, len(product.samples)),
                    "baseline_cpu_ms": cpu_ms_per(before, middle, len(base.samples)),
                }
            )
            rows.append(
                [
                    level,
                    ms(_p(product.samples, 50)),
                    ms(_p(product.samples, 99)),
                    f"{product.throughput:.0f}",
                    ms(_p(base.samples, 50)),
                    ms(_p(base.samples, 99)),
                    f"{base.throughput:.0f}",
                    ratio(_p(product.samples, 50), _p(base.samples, 50)),
                    ratio(product.throughput, base.throughput),
                    ms(_p(plain.samples, 50)),
                    f"{plain.throughput:.0f}",
                    product.errors,
                ]
            )
        for handle in handles:
            await handle.signal(TrivialWorkflow.finish)
        product_names, baseline_names = s.product_names(), s.baseline_names()

    print(
        f"\n{ACCOUNTS} accounts / {ACCOUNTS} trivial workflows; closed loop, each level "
        f"bounded by count and {SECONDS_PER_LEVEL:.0f} s\n"
    )
    print(
        table(
            [
                "concurrency",
                "authorize p50 ms",
                "p99 ms",
                "req/s",
                "bare Update p50 ms",
                "p99 ms",
                "upd/s",
                "p50 ratio",
                "throughput ratio",
                "AccountWorkflow Update p50 ms",
                "upd/s",
                "errors",
            ],
            rows,
        )
    )
    print("\nCPU time per request (ms), by process, at the highest level:\n")
    top = results[-1]
    product_cpu, baseline_cpu = top["product_cpu_ms"], top["baseline_cpu_ms"]
    names = sorted(set(product_cpu) | set(baseline_cpu))
    print(
        table(
            ["process", "authorize", "bare Update"],
            [[n, f"{product_cpu.get(n, 0):.2f}", f"{baseline_cpu.get(n, 0):.2f}"] for n in names],
        )
    )
    # The processes each request runs through (not the load generator, not the other
    # side's idle processes).
    product_total = sum(product_cpu.get(n, 0.0) for n in product_names)
    baseline_total = sum(baseline_cpu.get(n, 0.0) for n in baseline_names)
    print(
        f"\nCPU per request, {' + '.join(product_names)}: {product_total:.2f} ms; bare Update, "
        f"{' + '.join(baseline_names)}: {baseline_total:.2f} ms; "
        f"ratio {ratio(product_total, baseline_total)}"
    )
    for result in results:
        if result["direct_update"]["errors"]:
            print(
                f"AccountWorkflow Update at {result['concurrency']}: "
                f"{result['direct_update']['error_kinds']}"
            )
    chart = plot(results)
    save("authorize", {"accounts": ACCOUNTS, "levels": results, "chart": str(chart)})


def _p(samples: list[float], pct: float) -> float:
    from harness import percentile

    return percentile(samples, pct)


def plot(results: list[dict]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    CHART_DIR.mkdir(parents=True, exist_ok=True)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    levels = [r["concurrency"] for r in results]
    for key, label, color in (
        ("product", "POST /v1/calls/authorize", "tab:blue"),
        ("direct_update", "Update to AccountWorkflow (no HTTP)", "tab:green"),
        ("baseline", "bare Temporal Update", "tab:gray"),
    ):
        left.plot(
            levels, [r[key]["p50_ms"] for r in results], "o-", color=color, label=f"{label} p50"
        )
        left.plot(
            levels, [r[key]["p99_ms"] for r in results], "s--", color=color, label=f"{label} p99"
        )
        right.plot(levels, [r[key]["per_second"] for r in results], "o-", color=color, label=label)
    for axis in (left, right):
        axis.set_xscale("log", base=2)
        axis.set_xticks(levels, [str(level) for level in levels])
        axis.set_xlabel("load: concurrent clients (closed loop)")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    left.set_yscale("log")
    left.set_ylabel("latency (ms)")
    left.set_title("Latency against load")
    right.set_ylabel("requests per second")
    right.set_title("Throughput against load")
    fig.suptitle("Call authorisation vs a bare Temporal Update (same server, same run)")
    fig.tight_layout()
    path = CHART_DIR / "authorize_latency.png"
    fig.savefig(path)
    plt.close(fig)
    print(f"chart: {path}")
    return path


if __name__ == "__main__":
    asyncio.run(main())
