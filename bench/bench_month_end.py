"""Month-end close of many accounts against the fake Stripe at Stripe's live rate limit.

N accounts (default 300, ``BENCH_SCALE=full``: 10,000) get short periods that end within
a few seconds of each other, each with extra minutes to invoice. Stripe's budget is
OVERTIME_STRIPE_REQUESTS_PER_SECOND=100 (Stripe's live-mode limit), kept per request by
the limiter every process shares (overtime/stripe_rate.py; the worker's calls are
background: 90 of each second). Measured: the time from the first period end to the last
invoice paid, against the bound the rate allows (the Stripe requests the close actually
made ÷ 100/s) and against the old activity throttle (100/s ÷
Settings.stripe_calls_per_activity = 20 activities/s, two activities per invoice), and
the most requests in any 1 s: at the fake Stripe (its request log's length, sampled every
50 ms, over every sliding 1 s) and per calendar second and 100 ms window by the rows the
limiter recorded. ``BENCH_WORKERS=2`` runs two workers sharing the budget.

``--limiter-only``: the limiter alone, without Temporal or the fake Stripe, so the figure
is the limiter's and not the machine's: as many requests as the close makes (7 per
account) from two OS processes of 32 threads each, every "request" a 250 ms sleep (about
Stripe's answer time), all background; meanwhile one interactive caller (a customer) asks
five times a second. Measured: the time to grant them all against requests ÷ 100/s, the
most granted in any 1 s (sliding, from the grant times the threads noted) and per
second and window by the limiter's rows, and how long the interactive caller waited.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    Refused,
    StackOptions,
    closed_loop,
    header,
    save,
    scale,
    stack,
    table,
)
from sqlalchemy import create_engine, text

from overtime.settings import Settings
from overtime.stripe_rate import DEFAULT_NAME, window_budget

ACCOUNTS = scale(300, 10_000)
# Set-up (a payment method each: the API's Stripe requests, in the same budget) must
# finish before the periods end: 300 accounts took ~50 s on 2 cores, so 10,000 get 40 min.
# (150 s, not 60: on 2 cores shared with other work the 300 took up to 180 s; the close
# is measured from the first period end, so the periods' length does not enter it.)
PERIOD_SECONDS = scale(150, 2400)
# Set-up steps answered 503 (the account's workflow busy past the deadline on a loaded
# machine) are sent again: each is idempotent, and only the close is measured.
SET_UP_ATTEMPTS = 3
RATE = 100.0
WORKERS = int(os.environ.get("BENCH_WORKERS", "1"))
CALLS_PER_ACTIVITY: int = Settings.model_fields["stripe_calls_per_activity"].default
# The throttle before the per-request limiter: activities/s = requests/s ÷ calls each.
OLD_ACTIVITY_RATE = RATE / CALLS_PER_ACTIVITY
BACKGROUND_RATE = window_budget(RATE).background_slots / window_budget(RATE).period_seconds


async def main() -> None:
    header(f"Month-end close of {ACCOUNTS} accounts at {RATE:.0f} Stripe requests/s")
    options = StackOptions(
        stripe=True,
        period_seconds=PERIOD_SECONDS,
        stripe_requests_per_second=RATE,
        workers=WORKERS,
        # One authorisation covers the 6,000 included seconds and the extra ones.
        extra_env={"OVERTIME_GRANT_CHUNK_SECONDS": "7200"},
    )
    async with stack(options) as s:
        assert s.fake_stripe is not None
        run = uuid.uuid4().hex[:6]
        began = time.monotonic()
        accounts = await s.create_accounts(ACCOUNTS, prefix=f"close-{run}", concurrency=24)
        created = time.monotonic() - began
        extra = {a: 60 + 7 * (i % 80) for i, a in enumerate(accounts)}

        async def again(step: Callable[[], Awaitable[Any]]) -> Any:
            for attempt in range(SET_UP_ATTEMPTS):
                try:
                    return await step()
                except Refused as err:
                    if " 503 " not in str(err) or attempt == SET_UP_ATTEMPTS - 1:
                        raise

        async def prepare(i: int) -> None:
            account = accounts[i]
            await again(
                lambda: s.post(
                    f"/v1/accounts/{account}/payment-method",
                    {"payment_method_id": "pm_card_visa"},
                    s.admin,
                )
            )
            await again(
                lambda: s.put(
                    f"/v1/accounts/{account}/extra-minutes",
                    {"enabled": True, "limit_minutes": 100},
                    s.admin,
                )
            )
            granted = await again(lambda: s.authorize(account, "call"))
            if granted.get("granted_seconds", 0) < 6000 + extra[account]:
                raise Refused(f"grant {granted}")
            await again(lambda: s.usage(account, "call", 6000 + extra[account]))

        prepared = await closed_loop(16, ACCOUNTS, prepare, max_seconds=PERIOD_SECONDS)
        setup = time.monotonic() - began
        if prepared.errors or setup > PERIOD_SECONDS - 2:
            raise SystemExit(
                f"set-up took {setup:.0f} s (periods are {PERIOD_SECONDS} s) or failed "
                f"({prepared.error_kinds}); raise PERIOD_SECONDS"
            )
        s.fake_stripe.clear_request_log()
        close_began_ms = int(time.time() * 1000)

        engine = create_engine(s.database_url)
        ours = {"p": f"close-{run}-%"}  # this run's accounts, for LIKE :p

        def progress() -> tuple[int, int]:
            with engine.connect() as conn:
                closed = conn.execute(
                    text("SELECT count(*) FROM closed_period WHERE account_id LIKE :p"),
                    ours,
                ).scalar_one()
                paid = conn.execute(
                    text(
                        "SELECT count(*) FROM invoice WHERE status = 'paid' AND account_id LIKE :p"
                    ),
                    ours,
                ).scalar_one()
            return int(closed), int(paid)

        # The request log's length, sampled, gives Stripe's request rate over time.
        samples: list[tuple[float, int]] = []
        deadline = time.monotonic() + PERIOD_SECONDS + 60 + 8 * ACCOUNTS / OLD_ACTIVITY_RATE
        next_check = 0.0
        while time.monotonic() < deadline:
            samples.append((time.monotonic(), len(s.fake_stripe.request_log)))
            if time.monotonic() >= next_check:
                closed, paid = await asyncio.to_thread(progress)
                if paid >= ACCOUNTS:
                    break
                next_check = time.monotonic() + 0.5
            await asyncio.sleep(0.05)

        with engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT min(created_at), max(created_at) FROM account WHERE account_id LIKE :p"
                ),
                ours,
            ).one()
            last_paid = conn.execute(
                text("SELECT max(updated_at) FROM invoice WHERE account_id LIKE :p"),
                ours,
            ).scalar_one()
            amounts = conn.execute(
                text(
                    "SELECT count(*), sum(i.amount_cents), sum(c.extra_cost_cents) FROM invoice i "
                    "JOIN closed_period c ON c.account_id = i.account_id "
                    "AND c.period_start = i.period_start WHERE i.account_id LIKE :p"
                ),
                ours,
            ).one()
            # What the limiter granted per window (100 ms at this rate) during the close.
            limiter_windows = {
                int(start): int(used)
                for start, used in conn.execute(
                    text(
                        "SELECT window_start_ms, used FROM stripe_rate_window "
                        "WHERE name = :n AND window_start_ms >= :since"
                    ),
                    {"n": DEFAULT_NAME, "since": close_began_ms - 1000},
                )
            }
        log = s.fake_stripe.request_log
        closed, paid = progress()

    from overtime.models import UTCDateTime

    convert = UTCDateTime().process_result_value
    first_end = convert(_dt(row[0]), None) + timedelta(seconds=PERIOD_SECONDS)
    last_end = convert(_dt(row[1]), None) + timedelta(seconds=PERIOD_SECONDS)
    done = convert(_dt(last_paid), None)
    total = (done - first_end).total_seconds()
    after_last_end = (done - last_end).total_seconds()
    requests = len(log)
    by_path = collections.Counter(_shape(r.method, r.path) for r in log)
    request_bound = requests / RATE
    peak = peak_rate(samples, window=1.0)
    activity_bound = 2 * ACCOUNTS / OLD_ACTIVITY_RATE
    background_bound = requests / BACKGROUND_RATE
    window_peak, second_peak = peaks_by_limiter(limiter_windows)
    rows = [
        ["accounts closed / invoices paid", f"{closed} / {paid} of {ACCOUNTS}"],
        [
            "period ends spread over (account creation)",
            f"{(last_end - first_end).total_seconds():.1f} s (created in {created:.1f} s, "
            f"set up in {setup:.1f} s)",
        ],
        ["first period end → last invoice paid", f"{total:.1f} s"],
        ["last period end → last invoice paid", f"{after_last_end:.1f} s"],
        ["Stripe requests made by the close", requests],
        ["bound from Stripe's rate: requests ÷ 100/s", f"{request_bound:.1f} s"],
        [
            f"bound at the background share: requests ÷ {BACKGROUND_RATE:.0f}/s",
            f"{background_bound:.1f} s",
        ],
        [
            f"old activity throttle: 2 activities × N ÷ {OLD_ACTIVITY_RATE:.1f}/s",
            f"{activity_bound:.1f} s",
        ],
        ["measured ÷ old throttle bound", f"{total / activity_bound:.2f}×"],
        ["measured ÷ Stripe-rate bound", f"{total / request_bound:.2f}×" if requests else "-"],
        ["achieved Stripe requests/s (mean)", f"{requests / total:.1f}" if total > 0 else "-"],
        [
            "highest Stripe requests in any 1 s (fake Stripe, sliding)",
            f"{peak} (budget {RATE:.0f})",
        ],
        [
            "highest second / 100 ms window by the limiter's rows",
            f"{second_peak} / {window_peak} (background cap {BACKGROUND_RATE:.0f} / "
            f"{window_budget(RATE).background_caps[0]})",
        ],
        ["workers", WORKERS],
        [
            "invoice total = closed periods' cost",
            f"{amounts[1]} = {amounts[2]} ct ({amounts[0]} invoices)",
        ],
    ]
    print()
    print(table(["what", "value"], rows))
    print("\nStripe requests per invoice, by endpoint:")
    for shape, count in sorted(by_path.items(), key=lambda kv: -kv[1]):
        print(f"  {count / max(1, ACCOUNTS):5.2f}  {shape}")
    save(
        "month_end",
        {
            "accounts": ACCOUNTS,
            "period_seconds": PERIOD_SECONDS,
            "rate": RATE,
            "closed": closed,
            "paid": paid,
            "total_seconds": total,
            "after_last_period_end_seconds": after_last_end,
            "stripe_requests": requests,
            "request_bound_seconds": request_bound,
            "peak_requests_per_second": peak,
            "peak_limiter_window": window_peak,
            "peak_limiter_second": second_peak,
            "limiter_windows": len(limiter_windows),
            "workers": WORKERS,
            "background_bound_seconds": background_bound,
            "activity_bound_seconds": activity_bound,
            "requests_by_endpoint": dict(by_path),
            "invoiced_cents": amounts[1],
            "closed_cost_cents": amounts[2],
        },
    )


def peak_rate(samples: list[tuple[float, int]], window: float) -> int:
    """The most requests logged within any ``window`` seconds: over every pair of samples
    (50 ms apart) at most ``window`` apart, so a lower bound of the true figure by at most
    one sampling gap's requests."""
    best, j = 0, 0
    for i in range(len(samples)):
        while samples[i][0] - samples[j][0] > window:
            j += 1
        best = max(best, samples[i][1] - samples[j][1])
    return best


def peaks_by_limiter(windows: dict[int, int]) -> tuple[int, int]:
    """The most requests the limiter granted in one of its windows and in one calendar
    second (its windows' starts, ms → the second they fall in)."""
    seconds: collections.Counter[int] = collections.Counter()
    for start_ms, used in windows.items():
        seconds[start_ms // 1000] += used
    return max(windows.values(), default=0), max(seconds.values(), default=0)


def _dt(value):  # type: ignore[no-untyped-def]
    """SQLite hands back strings through a plain connection; PostgreSQL datetimes."""
    from datetime import datetime

    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _shape(method: str, path: str) -> str:
    parts = [
        "{id}" if "_" in p and p.split("_")[0] in {"in", "cus", "pm", "ii", "pi"} else p
        for p in path.split("/")
    ]
    return f"{method} {'/'.join(parts)}"


LIMITER_PROCESSES = 2
LIMITER_THREADS = 32
LIMITER_LATENCY_SECONDS = 0.25
REQUESTS_PER_INVOICE = 7


def limiter_only() -> None:
    from overtime.db import init_db
    from overtime.stripe_rate import StripeRateLimiter

    requests = REQUESTS_PER_INVOICE * ACCOUNTS
    header(
        f"Stripe limiter alone: {requests} requests ({ACCOUNTS} invoices) from "
        f"{LIMITER_PROCESSES} processes × {LIMITER_THREADS} threads at {RATE:.0f}/s"
    )
    url = os.environ.get("BENCH_DATABASE_URL") or (
        f"sqlite:///{Path(tempfile.mkdtemp(prefix='overtime-limiter-')) / 'overtime.db'}"
    )
    init_db(url)
    name = f"bench-{uuid.uuid4().hex[:8]}"
    share = requests // LIMITER_PROCESSES
    children = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--limiter-child",
                url,
                name,
                str(share + (i == 0) * (requests % LIMITER_PROCESSES)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(LIMITER_PROCESSES)
    ]
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    customer = StripeRateLimiter(url, RATE, name=name)
    waits: list[float] = []
    done = threading.Event()

    def interactive() -> None:
        while not done.is_set():
            asked = time.monotonic()
            customer.acquire("interactive")
            waits.append(time.monotonic() - asked)
            time.sleep(0.2)

    began = time.time()
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    customer_thread = threading.Thread(target=interactive, daemon=True)
    customer_thread.start()
    granted: list[float] = []
    for child in children:
        out, _ = child.communicate(timeout=3600)
        granted.extend(json.loads(out))
    done.set()
    customer_thread.join(timeout=5)
    granted.sort()
    total = granted[-1] - began
    bound = requests / RATE
    sliding, j = 0, 0
    for i in range(len(granted)):
        while granted[i] - granted[j] >= 1.0:
            j += 1
        sliding = max(sliding, i - j + 1)
    from sqlalchemy import create_engine
    from sqlalchemy import text as sql

    with create_engine(url).connect() as conn:
        rows = {
            int(start): int(used)
            for start, used in conn.execute(
                sql("SELECT window_start_ms, used FROM stripe_rate_window WHERE name = :n"),
                {"n": name},
            )
        }
    window_peak, second_peak = peaks_by_limiter(rows)
    ordered = sorted(waits)
    rows_out = [
        ["background requests granted", f"{len(granted)} of {requests}"],
        ["first → last granted", f"{total:.1f} s"],
        [f"bound from the rate: requests ÷ {RATE:.0f}/s", f"{bound:.1f} s"],
        ["measured ÷ Stripe-rate bound", f"{total / bound:.2f}×"],
        [
            f"bound at the background share: ÷ {BACKGROUND_RATE:.0f}/s",
            f"{requests / BACKGROUND_RATE:.1f} s",
        ],
        ["most requests in any 1 s (sliding, grant times; background only)", sliding],
        [
            "highest second / 100 ms window by the limiter's rows (all callers)",
            f"{second_peak} / {window_peak} (budget {RATE:.0f})",
        ],
        [
            "interactive caller: requests / wait p50 / max",
            f"{len(waits)} / {ordered[len(ordered) // 2] * 1000:.0f} ms"
            f" / {ordered[-1] * 1000:.0f} ms"
            if ordered
            else "-",
        ],
    ]
    print()
    print(table(["what", "value"], rows_out))
    save(
        "month_end_limiter",
        {
            "requests": requests,
            "processes": LIMITER_PROCESSES,
            "threads": LIMITER_THREADS,
            "rate": RATE,
            "total_seconds": total,
            "bound_seconds": bound,
            "peak_sliding_1s": sliding,
            "peak_window": window_peak,
            "peak_second": second_peak,
            "windows": len(rows),
            "interactive_waits_seconds": ordered,
        },
    )


def limiter_child(url: str, name: str, count: int) -> None:
    """One process of ``--limiter-only``: ``count`` requests over its threads; prints the
    times they were granted (JSON)."""
    from overtime.stripe_rate import StripeRateLimiter

    limiter = StripeRateLimiter(url, RATE, name=name)
    left = iter(range(count))
    lock = threading.Lock()
    granted: list[float] = []
    print("ready", flush=True)
    sys.stdin.readline()

    def run() -> None:
        while True:
            with lock:
                if next(left, None) is None:
                    return
            limiter.acquire("background")
            with lock:
                granted.append(time.time())
            time.sleep(LIMITER_LATENCY_SECONDS)  # the request itself

    threads = [threading.Thread(target=run) for _ in range(LIMITER_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps(granted), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--limiter-only"]:
        limiter_only()
    elif sys.argv[1:2] == ["--limiter-child"]:
        limiter_child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        asyncio.run(main())
