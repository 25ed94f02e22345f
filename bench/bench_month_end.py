"""Month-end close of many accounts against the fake Stripe at Stripe's live rate limit.

N accounts (default 300, ``BENCH_SCALE=full``: 2,000) get short periods that end within
a few seconds of each other, each with extra minutes to invoice. The worker's Stripe
queue is throttled for OVERTIME_STRIPE_REQUESTS_PER_SECOND=100 (Stripe's live-mode
limit). Measured: the time from the first period end to the last invoice paid, against
the bound the rate allows (the Stripe requests the close actually made ÷ 100/s), and
against Temporal's activity throttle (100/s ÷ Settings.stripe_calls_per_activity, 6, =
16.7 activities/s, two activities per invoice).
"""

from __future__ import annotations

import asyncio
import collections
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

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

ACCOUNTS = scale(300, 2000)
# Set-up (a payment method each) goes through the throttled Stripe queue too: at 2,000
# accounts it takes ~4 min, so the periods must outlast it.
PERIOD_SECONDS = scale(60, 600)
RATE = 100.0
CALLS_PER_ACTIVITY: int = Settings.model_fields["stripe_calls_per_activity"].default
ACTIVITY_RATE = RATE / CALLS_PER_ACTIVITY


async def main() -> None:
    header(f"Month-end close of {ACCOUNTS} accounts at {RATE:.0f} Stripe requests/s")
    options = StackOptions(
        stripe=True,
        period_seconds=PERIOD_SECONDS,
        stripe_requests_per_second=RATE,
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

        async def prepare(i: int) -> None:
            account = accounts[i]
            await s.post(
                f"/v1/accounts/{account}/payment-method",
                {"payment_method_id": "pm_card_visa"},
                s.admin,
            )
            await s.put(
                f"/v1/accounts/{account}/extra-minutes",
                {"enabled": True, "limit_minutes": 100},
                s.admin,
            )
            granted = await s.authorize(account, "call")
            if granted.get("granted_seconds", 0) < 6000 + extra[account]:
                raise Refused(f"grant {granted}")
            await s.usage(account, "call", 6000 + extra[account])

        prepared = await closed_loop(16, ACCOUNTS, prepare, max_seconds=PERIOD_SECONDS)
        setup = time.monotonic() - began
        if prepared.errors or setup > PERIOD_SECONDS - 2:
            raise SystemExit(
                f"set-up took {setup:.0f} s (periods are {PERIOD_SECONDS} s) or failed "
                f"({prepared.error_kinds}); raise PERIOD_SECONDS"
            )
        s.fake_stripe.clear_request_log()

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
        deadline = time.monotonic() + PERIOD_SECONDS + 60 + 4 * ACCOUNTS / ACTIVITY_RATE
        next_check = 0.0
        while time.monotonic() < deadline:
            samples.append((time.monotonic(), len(s.fake_stripe.request_log)))
            if time.monotonic() >= next_check:
                closed, paid = await asyncio.to_thread(progress)
                if paid >= ACCOUNTS:
                    break
                next_check = time.monotonic() + 0.5
            await asyncio.sleep(0.1)

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
    activity_bound = 2 * ACCOUNTS / ACTIVITY_RATE
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
            f"Temporal's throttle: 2 activities × N ÷ {ACTIVITY_RATE:.1f}/s",
            f"{activity_bound:.1f} s",
        ],
        ["measured ÷ throttle bound", f"{total / activity_bound:.2f}×"],
        ["measured ÷ Stripe-rate bound", f"{total / request_bound:.2f}×" if requests else "-"],
        ["achieved Stripe requests/s (mean)", f"{requests / total:.1f}" if total > 0 else "-"],
        ["highest Stripe requests in any 1 s window", f"{peak}"],
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
            "activity_bound_seconds": activity_bound,
            "requests_by_endpoint": dict(by_path),
            "invoiced_cents": amounts[1],
            "closed_cost_cents": amounts[2],
        },
    )


def peak_rate(samples: list[tuple[float, int]], window: float) -> int:
    """The most requests logged within any ``window`` seconds (from 0.1 s samples)."""
    best, j = 0, 0
    for i in range(len(samples)):
        while samples[i][0] - samples[j][0] > window:
            j += 1
        best = max(best, samples[i][1] - samples[j][1])
    return best


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


if __name__ == "__main__":
    asyncio.run(main())
